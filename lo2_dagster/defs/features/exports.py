"""The notebook exports: every run's enhanced tables as two datasets (a folder of one Parquet
file per run each, read as one table), kept up to date incrementally, as docs/schemas.md
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
from lo2_dagster.meta import bullet_list
from lo2_dagster.storage import Warehouse, parquet_facts, sync_files
from lo2_dagster.versions import partition_data_versions

EVENTS_DATASET = "lo2_events_enhanced"
SEQUENCES_DATASET = "lo2_sequences_enhanced"
#: The single-file exports of code version 1, removed when found (the datasets replace them).
OLD_FILES = ("lo2_events_enhanced.parquet", "lo2_sequences_enhanced.parquet")


@dg.asset(
    key=ENHANCED_EXPORTS,
    ins={"events": dg.AssetIn(EVENTS_ENHANCED, metadata=ALL_RUNS),
         "sequences": dg.AssetIn(SEQUENCES_ENHANCED, metadata=ALL_RUNS)},
    automation_condition=on_retrain_cron(),
    group_name=FEATURES_GROUP,
    code_version="2",
    kinds={"parquet"},
    owners=OWNERS,
    description=(
        f"`<warehouse>/exports/{EVENTS_DATASET}/` and `{SEQUENCES_DATASET}/`: every materialized "
        "run's enhanced events and sequences, one Parquet file per run, read as one table each "
        f"(pl.scan_parquet('.../{EVENTS_DATASET}/*.parquet')). Incremental: only runs whose "
        "enhanced tables changed since the last export are copied (a file copy, streamed), "
        "runs that are gone are removed."
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
    for old in OLD_FILES:
        if (folder / old).exists():
            (folder / old).unlink()
            context.log.info(f"removed the single-file export {folder / old} (now a dataset)")
    missing = sorted(set(runs) - set(seq_runs))
    if missing:
        context.log.warning(f"{len(missing)} runs have enhanced events but no enhanced "
                            f"sequences yet (e.g. {missing[0]}): materialize "
                            "lo2/sequences_enhanced for them; the sequences leave them out.")
    metadata: dict[str, object] = {}
    for name, key, sources in ((EVENTS_DATASET, EVENTS_ENHANCED, events),
                               (SEQUENCES_DATASET, SEQUENCES_ENHANCED, sequences)):
        versions = partition_data_versions(context.instance, key, sorted(sources))
        synced = sync_files(sources, versions, folder / name)
        rows = sum(parquet_facts(folder / name / f"{run}.parquet")[1] for run in sources)
        context.log.info(f"{folder / name}: {len(synced.written)} runs written, "
                         f"{len(synced.kept)} unchanged, {len(synced.removed)} removed; "
                         f"{rows:,} rows")
        kind = "event" if key == EVENTS_ENHANCED else "sequence"
        metadata.update({
            f"{kind}s_path": dg.MetadataValue.path(str(folder / name)),
            f"{kind}_rows": rows,
            f"{kind}_runs_written": len(synced.written),
            f"{kind}_runs_unchanged": len(synced.kept),
            f"{kind}_runs_removed": len(synced.removed),
        })
    return dg.MaterializeResult(metadata={
        **metadata,
        "runs": len(runs),
        "runs_without_sequences": bullet_list(missing),
        "seconds": round(time.perf_counter() - started, 2),
        "read_with": dg.MetadataValue.md(
            f"```python\nimport polars as pl\n"
            f"events = pl.scan_parquet(\"{folder / EVENTS_DATASET}/*.parquet\")\n"
            f"sequences = pl.scan_parquet(\"{folder / SEQUENCES_DATASET}/*.parquet\")\n```"),
    })
