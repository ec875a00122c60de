"""One partition per LO2 run folder (the key is the folder name), and how per-run assets
materialize one run or a batch of runs in one Dagster run."""

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import dagster as dg
import polars as pl
from upath import UPath

from lo2_dagster import settings
from lo2_dagster.defs.automation import on_new_or_changed_data
from lo2_dagster.defs.keys import OWNERS
from lo2_dagster.lib.names import InvalidRunKey, validate_run_key
from lo2_dagster.meta import bullet_list
from lo2_dagster.storage import Batches, Warehouse
from lo2_dagster.versions import fingerprint_of

RUNS = dg.DynamicPartitionsDefinition(name="lo2_runs")

#: Input metadata of an unpartitioned asset that reads "every run materialized so far".
ALL_RUNS = {"allow_missing_partitions": True}

#: Per-run assets are backfilled this many runs per Dagster run: a backfill of hundreds of
#: runs pays the start-up of a Dagster run (a process that loads the code location) a few
#: times, not hundreds. Memory stays that of one run: a batch is read and written run by run.
RUNS_PER_BATCH = settings.runs_per_backfill_batch()
BACKFILL_POLICY = dg.BackfillPolicy.multi_run(max_partitions_per_run=RUNS_PER_BATCH)


def per_run_asset(**kwargs: Any) -> Callable[..., dg.AssetsDefinition]:
    """``dg.asset`` for an asset with one partition per run: what makes an asset per-run is
    declared here once (partitions, the batching backfill policy, the data-driven automation,
    owners, Parquet in the warehouse). The asset's body goes through ``materialize_runs``."""
    return dg.asset(partitions_def=RUNS, backfill_policy=BACKFILL_POLICY,
                    automation_condition=on_new_or_changed_data(), owners=OWNERS,
                    kinds={"polars", "parquet", *kwargs.pop("kinds", ())}, **kwargs)


def validated(run: str) -> str:
    """A partition key, validated as a run folder name (a bad key fails with the fix)."""
    try:
        return validate_run_key(run)
    except InvalidRunKey as e:
        raise dg.Failure(description=str(e)) from e


@dataclass
class RunPart:
    """One run's share of a per-run asset: what to write, its metadata, and what to check on
    the written file."""

    value: pl.DataFrame | pl.LazyFrame | Batches
    metadata: dict[str, Any]
    #: The run's own data version (e.g. a hash of its files); None: Dagster derives one from
    #: the code version and the inputs' data versions.
    data_version: str | None = None
    #: Checks on the written file: (path, rows written: known for a DataFrame or Batches,
    #: None for a LazyFrame) -> results.
    checks: Callable[[UPath, int | None], Iterable[dg.AssetCheckResult]] | None = None


def materialize_runs(
    context: dg.AssetExecutionContext,
    warehouse: Warehouse,
    compute: Callable[[str], RunPart],
) -> Iterator[dg.MaterializeResult]:
    """Materialize the runs of this Dagster run (one partition, or a batch from a backfill) one
    after the other: compute a run, write its file (through the warehouse IO manager, which
    reads it back downstream), record its metadata, check it, then the next, so a batch never
    holds more than one run in memory.

    Dagster records one data version per asset and step, so the runs of a batch share one: a
    hash of their own versions (a single run keeps its own). A check is evaluated per run; in a
    batch, its one result passes only if every run passes and names the runs that fail. A run
    that fails stops the batch with its name (runs written before it keep their new files, which
    Dagster records only when the batch succeeds).
    """
    key = context.asset_key
    store = warehouse.store()  # the IO manager that reads these files back
    runs = [validated(run) for run in context.partition_keys]
    versions: dict[str, str | None] = {}
    checks: dict[str, dict[str, dg.AssetCheckResult]] = {}
    for i, run in enumerate(runs, 1):
        if len(runs) > 1:
            context.log.info(f"[{i}/{len(runs)}] {key.to_user_string()}[{run}]")
        try:
            part = compute(run)
        except dg.Failure as e:
            if len(runs) == 1 or run in (e.description or ""):
                raise
            raise dg.Failure(description=f"{run}: {e.description}", metadata=e.metadata) from e
        path, rows = store.write(key, run, part.value)
        metadata = {**part.metadata, "path": dg.MetadataValue.path(str(path))}
        if rows is not None:
            metadata["dagster/row_count"] = rows
        context.add_asset_metadata(metadata, partition_key=run)
        versions[run] = part.data_version
        for result in part.checks(path, rows) if part.checks else ():
            checks.setdefault(result.check_name, {})[run] = result
    yield dg.MaterializeResult(
        data_version=_combined_version(versions),
        check_results=[_combined_check(name, by_run) for name, by_run in checks.items()],
    )


def _combined_version(versions: dict[str, str | None]) -> dg.DataVersion | None:
    """One run: its version. A batch: a hash of every run's version (None if any has none)."""
    if not versions or any(v is None for v in versions.values()):
        return None
    if len(versions) == 1:
        return dg.DataVersion(next(iter(versions.values())))  # type: ignore[arg-type]
    return dg.DataVersion(fingerprint_of(versions))  # type: ignore[arg-type]


def _combined_check(name: str, by_run: dict[str, dg.AssetCheckResult]) -> dg.AssetCheckResult:
    """A check's result for the runs of this Dagster run: the run's own result for one run;
    for a batch, passed only if all passed, with the failing runs and their metadata."""
    if len(by_run) == 1:
        return next(iter(by_run.values()))
    failed = {run: r for run, r in by_run.items() if not r.passed}
    first = next(iter(by_run.values()))
    details = [f"{run}: " + ", ".join(f"{k}={v.value}" for k, v in r.metadata.items()
                                      if not isinstance(v.value, str) or len(v.value) < 80)
               for run, r in failed.items()]
    return dg.AssetCheckResult(
        check_name=name, asset_key=first.asset_key, passed=not failed,
        severity=first.severity,
        metadata={"runs_checked": len(by_run), "runs_failed": len(failed),
                  "failed_runs": bullet_list(details)},
        description=(f"Failed for {len(failed)} of {len(by_run)} runs of this batch, e.g. "
                     f"{next(iter(failed))}" if failed else None),
    )
