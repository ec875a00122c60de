"""The job whose steps run on Celery workers, as a reconstructable entry point: a worker loads
it from this module (``dg.reconstructable(ingest_on_workers)``), so run it from a checkout
every worker has too. The UI and the daemon launch it from the code location as any job."""

import dagster as dg


def ingest_on_workers() -> dg.JobDefinition:
    """``lo2_ingest_on_workers`` from the code location's definitions."""
    from lo2_dagster.definitions import defs
    from lo2_dagster.defs.jobs import WORKERS_JOB

    return defs().resolve_job_def(WORKERS_JOB)
