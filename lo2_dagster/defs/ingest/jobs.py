"""The per-run ingest job: everything that is computed from one run's files."""

import dagster as dg

INGEST_JOB_NAME = "lo2_ingest"

ingest_job = dg.define_asset_job(
    INGEST_JOB_NAME,
    selection=dg.AssetSelection.groups("ingest"),
    description="Read one LO2 run (partition) into raw events and raw sequences.",
)
