"""Jobs and the catch-up schedule: the per-run chain, training, rescoring.

- ``lo2_ingest`` (per run): raw events and sequences -> message counts -> enhanced tables ->
  predictions -> explanations and drift, with the current templates and model.
- ``lo2_training``: the Drain templates, the training-set fingerprint, the model (with its
  evaluation and quality gate) and its report, one at a time (concurrency pool
  ``lo2_training``).
- ``lo2_rescore`` (per run): predictions, explanations and drift, e.g. over every run after a
  retrain.
- ``lo2_catch_up`` schedule: requests the ingest job for each run partition with a missing or
  stale per-run asset; the alternative to the automation sensor (stopped by default).
"""

import dagster as dg

from lo2_dagster import settings
from lo2_dagster.defs.keys import (
    ANOMALY_MODEL,
    DRAIN_TEMPLATES,
    EVENTS_ENHANCED,
    EXPLANATIONS,
    MESSAGE_COUNTS,
    MODEL_REPORT,
    PREDICTIONS,
    RAW_EVENTS,
    RAW_SEQUENCES,
    SCORE_DRIFT,
    SEQUENCES_ENHANCED,
    TRAINING_SET,
)
from lo2_dagster.defs.runs import RUNS
from lo2_dagster.versions import FRESH, stale_status

INGEST_JOB = "lo2_ingest"
TRAINING_JOB = "lo2_training"
RESCORE_JOB = "lo2_rescore"
CATCH_UP_SCHEDULE = "lo2_catch_up"

#: Every asset with one partition per run, in the order they are computed.
PER_RUN = (RAW_EVENTS, RAW_SEQUENCES, MESSAGE_COUNTS, EVENTS_ENHANCED, SEQUENCES_ENHANCED,
           PREDICTIONS, EXPLANATIONS, SCORE_DRIFT)
#: The per-run assets that apply the model.
SCORING = (PREDICTIONS, EXPLANATIONS, SCORE_DRIFT)

ingest_job = dg.define_asset_job(
    INGEST_JOB,
    selection=dg.AssetSelection.assets(*PER_RUN),
    description="One LO2 run (partition), from its files to its predictions, explanations and "
                "drift, with the current Drain templates and model. Backfills batch runs (see "
                "the assets' policy).",
)

training_job = dg.define_asset_job(
    TRAINING_JOB,
    selection=dg.AssetSelection.assets(DRAIN_TEMPLATES, TRAINING_SET, ANOMALY_MODEL,
                                       MODEL_REPORT),
    description="Retrain the Drain templates and the model on every run, and evaluate the model "
                "on the holdout runs (quality gate). If the templates change, the model waits "
                "for the runs' enhanced tables to be rebuilt with them (the automation does).",
)

rescore_job = dg.define_asset_job(
    RESCORE_JOB,
    selection=dg.AssetSelection.assets(*SCORING),
    description="Score, explain and check the drift of runs with the current model (never "
                "refitted).",
)


def runs_to_catch_up(instance: dg.DagsterInstance, graph: object,
                     runs: list[str]) -> dict[str, list[str]]:
    """Run partitions with a missing or stale per-run asset, with what is missing or stale
    (``graph``: the repository's asset graph)."""
    targets = [(key, run) for run in runs for key in PER_RUN]
    todo: dict[str, list[str]] = {}
    for (key, run), (status, _) in stale_status(instance, graph, targets).items():
        if status != FRESH:
            todo.setdefault(run, []).append(f"{key.to_user_string()} {status.lower()}")
    return todo


@dg.schedule(
    name=CATCH_UP_SCHEDULE,
    job=ingest_job,
    cron_schedule=settings.catch_up_cron(),
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Hourly ($LO2_CATCH_UP_CRON): one ingest run per run partition that has a "
                "missing or stale per-run asset. For deployments that keep the automation "
                "sensor off; with it on, there is nothing to catch up.",
)
def lo2_catch_up(context: dg.ScheduleEvaluationContext):
    runs = context.instance.get_dynamic_partitions(RUNS.name)
    todo = runs_to_catch_up(context.instance, context.repository_def.asset_graph, runs)
    if not todo:
        yield dg.SkipReason(f"All {len(runs)} run partitions are up to date.")
        return
    tick = context.scheduled_execution_time.isoformat()
    for run, reasons in todo.items():
        context.log.info(f"{run}: {', '.join(reasons)}")
        yield dg.RunRequest(partition_key=run, run_key=f"catch-up:{run}:{tick}")
