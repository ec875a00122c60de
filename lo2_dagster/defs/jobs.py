"""Jobs and the catch-up schedule: the per-run chain, training, rescoring.

- ``lo2_ingest`` (per run): raw events and sequences -> message counts -> enhanced tables ->
  predictions -> explanations and drift, with the current templates and model.
- ``lo2_training``: the Drain templates, the training-set fingerprint, the model (with its
  evaluation and quality gate) and its report, one at a time (concurrency pool
  ``lo2_training``).
- ``lo2_ingest_on_workers`` (per run): ``lo2_ingest`` with its steps on Celery workers.
- ``lo2_rescore`` (per run): predictions, explanations and drift, e.g. over every run after a
  retrain.
- ``lo2_catch_up`` schedule: what the automation conditions request since its last tick (its
  own cursor), as runs; the alternative to the automation sensor (stopped by default).
"""

import dagster as dg
from dagster_celery import celery_executor

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
from lo2_dagster.versions import evaluate_conditions, load_cursor, save_cursor

INGEST_JOB = "lo2_ingest"
WORKERS_JOB = "lo2_ingest_on_workers"
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

ingest_on_workers_job = dg.define_asset_job(
    WORKERS_JOB,
    selection=dg.AssetSelection.assets(*PER_RUN),
    # The broker and result backend the workers listen to (e.g. redis://broker:6379/0 and
    # redis://broker:6379/1), read when a run starts, not when the code loads.
    executor_def=celery_executor.configured(
        {"broker": {"env": settings.ENV_CELERY_BROKER},
         "backend": {"env": settings.ENV_CELERY_BACKEND}}, name="celery_from_env"),
    description="lo2_ingest with every step sent to Celery workers (dagster-celery), for a "
                "deployment that runs steps on other machines: $LO2_CELERY_BROKER and "
                "$LO2_CELERY_BACKEND name the broker, the instance is shared (PostgreSQL) and "
                "every worker sees the warehouse (docs/deployment.md).",
)

rescore_job = dg.define_asset_job(
    RESCORE_JOB,
    selection=dg.AssetSelection.assets(*SCORING),
    description="Score, explain and check the drift of runs with the current model (never "
                "refitted).",
)


#: Where the catch-up schedule keeps its automation cursor in the instance's storage.
CATCH_UP_CURSOR = "lo2_dagster/catch_up_automation_cursor"


@dg.schedule(
    name=CATCH_UP_SCHEDULE,
    target=dg.AssetSelection.all(),
    cron_schedule=settings.catch_up_cron(),
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Hourly ($LO2_CATCH_UP_CRON): what the assets' automation conditions request "
                "since its last tick, one run per run partition (and one for the assets over "
                "every run). For deployments that keep the automation sensor off; with it on, "
                "there is nothing to catch up.",
)
def lo2_catch_up(context: dg.ScheduleEvaluationContext):
    from lo2_dagster.definitions import defs  # the code location this schedule belongs to

    definitions = defs()
    graph = definitions.resolve_asset_graph()
    result = evaluate_conditions(definitions, context.instance,
                                 load_cursor(context.instance, CATCH_UP_CURSOR),
                                 context.scheduled_execution_time)
    save_cursor(context.instance, CATCH_UP_CURSOR, result.cursor)
    by_partition: dict[str | None, list[dg.AssetKey]] = {}
    for key in graph.toposorted_asset_keys:
        for partition in sorted(result.get_requested_partitions(key), key=str):
            by_partition.setdefault(partition, []).append(key)
    if not by_partition:
        runs = context.instance.get_dynamic_partitions(RUNS.name)
        yield dg.SkipReason(f"All {len(runs)} run partitions are up to date.")
        return
    tick = context.scheduled_execution_time.isoformat()
    for partition, keys in sorted(by_partition.items(), key=lambda i: (i[0] is None, str(i[0]))):
        context.log.info(f"{partition or 'all runs'}: "
                         f"{', '.join(k.to_user_string() for k in keys)}")
        yield dg.RunRequest(partition_key=partition, asset_selection=keys,
                            run_key=f"catch-up:{partition or 'all-runs'}:{tick}")
