"""Discovery: a new run folder under the LO2 root becomes a partition and is ingested."""

import json

import dagster as dg

from lo2_dagster.defs.ingest.jobs import ingest_job
from lo2_dagster.defs.ingest.partitions import RUNS
from lo2_dagster.defs.resources import Lo2Root
from lo2_dagster.lib.layout import LayoutError

SENSOR_NAME = "lo2_new_runs"


def ingest_run_key(run: str) -> str:
    """Deterministic run key: Dagster launches at most one ingest per run folder from here."""
    return f"ingest:{run}"


@dg.sensor(
    name=SENSOR_NAME,
    job=ingest_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
    description=(
        "Adds a partition for each new run folder under the LO2 root that holds logs, and "
        "requests its ingest. The cursor remembers the folders already seen, so a partition "
        "deleted by hand is not re-added; run keys make each request launch once."
    ),
)
def lo2_new_runs(context: dg.SensorEvaluationContext, lo2_root: Lo2Root) -> dg.SensorResult:
    try:
        found, skipped = lo2_root.scan()
    except LayoutError as e:
        return dg.SensorResult(skip_reason=str(e))
    for reason in skipped:
        context.log.warning(f"Skipped run folder {reason}")
    seen = set(json.loads(context.cursor)) if context.cursor else set()
    existing = set(context.instance.get_dynamic_partitions(RUNS.name))
    candidates = [run for run in found if run not in seen and run not in existing]
    # A folder still being created or copied has no logs yet: not seen until it has some.
    new = [run for run in candidates if lo2_root.has_logs(run)]
    waiting = sorted(set(candidates) - set(new))
    cursor = json.dumps(sorted(seen | (set(found) - set(waiting))))
    if not new:
        note = f"; waiting for logs in {', '.join(waiting)}" if waiting else ""
        return dg.SensorResult(
            skip_reason=f"No new run folders under {lo2_root.resolve()} ({len(found)} known)"
            + note,
            cursor=cursor,
        )
    context.log.info(f"{len(new)} new run(s): {', '.join(new[:5])}{' ...' if len(new) > 5 else ''}")
    return dg.SensorResult(
        run_requests=[dg.RunRequest(partition_key=run, run_key=ingest_run_key(run)) for run in new],
        dynamic_partitions_requests=[RUNS.build_add_request(new)],
        cursor=cursor,
    )
