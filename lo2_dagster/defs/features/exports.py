"""The notebook exports: all runs' enhanced tables as two Parquet files, as docs/schemas.md
describes."""

import time

import dagster as dg
from upath import UPath

from lo2_dagster.defs.automation import on_retrain_cron
from lo2_dagster.defs.keys import (
    ENHANCED_EXPORTS,
    EVENTS_ENHANCED,
    FEATURES_GROUP,
    OWNERS,
    SEQUENCES_ENHANCED,
)
from lo2_dagster.defs.lineage import current_templates
from lo2_dagster.defs.runs import ALL_RUNS
from lo2_dagster.lib.enhance import SEQUENCES_ENHANCED_SCHEMA
from lo2_dagster.meta import bullet_list
from lo2_dagster.storage import Batches, Warehouse, concat_parquet, write_parquet

EVENTS_FILE = "lo2_events_enhanced.parquet"
SEQUENCES_FILE = "lo2_sequences_enhanced.parquet"


@dg.asset(
    key=ENHANCED_EXPORTS,
    ins={"events": dg.AssetIn(EVENTS_ENHANCED, metadata=ALL_RUNS),
         "sequences": dg.AssetIn(SEQUENCES_ENHANCED, metadata=ALL_RUNS)},
    automation_condition=on_retrain_cron(),
    group_name=FEATURES_GROUP,
    code_version="1",
    kinds={"parquet"},
    owners=OWNERS,
    description=(
        f"`<warehouse>/exports/{EVENTS_FILE}` and `{SEQUENCES_FILE}`: every materialized run's "
        "enhanced events and sequences in one file each, for notebooks "
        "(pl.scan_parquet(...)). Streamed file by file, a batch at a time."
    ),
)
def enhanced_exports(
    context: dg.AssetExecutionContext,
    events: dict[str, UPath],
    sequences: dict[str, UPath],
    warehouse: Warehouse,
) -> dg.MaterializeResult:
    if not events:
        raise dg.Failure(description="No run has lo2/events_enhanced yet: materialize it for "
                                     "at least one run first.")
    runs, seq_runs = sorted(events), sorted(sequences)
    current_templates(context, {EVENTS_ENHANCED: runs, SEQUENCES_ENHANCED: seq_runs})
    folder = warehouse.folder("exports")
    started = time.perf_counter()
    event_rows = concat_parquet([events[r] for r in runs], folder / EVENTS_FILE, 65_536)
    context.log.info(f"{event_rows:,} events of {len(runs)} runs -> {folder / EVENTS_FILE}")
    missing = sorted(set(runs) - set(seq_runs))
    if missing:
        context.log.warning(f"{len(missing)} runs have enhanced events but no enhanced "
                            f"sequences yet (e.g. {missing[0]}): materialize "
                            "lo2/sequences_enhanced for them; the sequences file leaves them out.")
    if seq_runs:
        # Sequences carry all their events' words and trigrams: a few rows make a large batch.
        sequence_rows = concat_parquet([sequences[r] for r in seq_runs],
                                       folder / SEQUENCES_FILE, 8)
    else:  # no stale file from an earlier export: an empty one with the schema
        sequence_rows = write_parquet(folder / SEQUENCES_FILE,
                                      Batches(SEQUENCES_ENHANCED_SCHEMA, [])) or 0
    context.log.info(f"{sequence_rows:,} sequences -> {folder / SEQUENCES_FILE}")
    return dg.MaterializeResult(metadata={
        "events_path": dg.MetadataValue.path(str(folder / EVENTS_FILE)),
        "sequences_path": dg.MetadataValue.path(str(folder / SEQUENCES_FILE)),
        "event_rows": event_rows,
        "sequence_rows": sequence_rows,
        "runs": len(runs),
        "runs_without_sequences": bullet_list(missing),
        "seconds": round(time.perf_counter() - started, 2),
        "read_with": dg.MetadataValue.md(
            f"```python\nimport polars as pl\nevents = pl.scan_parquet(\"{folder / EVENTS_FILE}\")"
            f"\nsequences = pl.scan_parquet(\"{folder / SEQUENCES_FILE}\")\n```"),
    })
