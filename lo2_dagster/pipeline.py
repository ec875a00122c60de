"""The main job, headless: bring the whole asset graph up to date in a persistent Dagster
instance, materializing only what is missing or stale (``force``: everything).

The graph is cut into stages: a run of per-run (partitioned) assets, then the assets that
depend on all runs, then per-run assets downstream of those, and so on. Each per-run stage is
one in-process Dagster run per partition, so a failing run does not stop the others and the
UI shows every run and materialization afterwards.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from lo2_dagster.defs.ingest.sensors import observe_sources
from lo2_dagster.defs.keys import ANOMALY_MODEL, DRAIN_TEMPLATES, TRAINING_SET
from lo2_dagster.defs.model.assets import training_set_is_current
from lo2_dagster.defs.runs import RUNS
from lo2_dagster.storage import Warehouse, stored_problem
from lo2_dagster.versions import FRESH, STALE, describe, stale_status


@dataclass(frozen=True)
class Stage:
    """Assets materialized together: per run (``partitioned``) or once."""

    partitioned: bool
    keys: tuple[dg.AssetKey, ...]


@dataclass
class Outcome:
    """What one Dagster run did."""

    partition: str | None
    keys: tuple[dg.AssetKey, ...]
    success: bool
    seconds: float
    run_id: str
    metadata: dict[str, dict[str, object]] = field(default_factory=dict)  # asset -> values
    error: str | None = None


def plan_stages(graph: Any) -> list[Stage]:
    """Order the materializable assets of ``graph`` (``Definitions.resolve_asset_graph()``)
    into alternating per-run / whole-dataset stages."""
    keys = [k for k in graph.toposorted_asset_keys if k in graph.materializable_asset_keys]
    stage_of: dict[dg.AssetKey, int] = {}
    for key in keys:
        node = graph.get(key)
        stage = max((stage_of[p] for p in node.parent_keys if p in stage_of), default=0)
        # Even stages are per-run, odd ones whole-dataset: step up to the next of the node's kind.
        if (stage % 2 == 0) != node.is_partitioned:
            stage += 1
        stage_of[key] = stage
    stages = []
    for number in sorted(set(stage_of.values())):
        members = tuple(k for k in keys if stage_of[k] == number)
        stages.append(Stage(partitioned=number % 2 == 0, keys=members))
    return stages


def add_run_partitions(instance: dg.DagsterInstance, runs: Sequence[str]) -> list[str]:
    """Add a partition for each run that has none yet; returns the ones added."""
    existing = set(instance.get_dynamic_partitions(RUNS.name))
    new = [run for run in runs if run not in existing]
    if new:
        instance.add_dynamic_partitions(RUNS.name, new)
    return new


def materialize_all(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    runs: Sequence[str],
    report: Callable[[str], object] = print,
    log_level: str = "INFO",
    reuse: Collection[dg.AssetKey] = (),
    force: bool = False,
) -> list[Outcome]:
    """Materialize what is missing or stale, for ``runs`` (per-run assets) and once (the
    others), as the UI's "Materialize unsynced" would; ``force``: everything.

    The source files are observed first (a changed run folder or allowlist makes what reads it
    stale). Within a stage, a run's assets are materialized, then their staleness is looked at
    again: a downstream asset is rewritten only if its inputs' data actually changed.
    Whole-dataset assets in ``reuse`` are kept as they are when already materialized (trained
    state that other runs were built with, e.g. the Drain templates when only some runs are
    processed).
    """
    graph = defs.resolve_asset_graph()
    other = [k.to_user_string() for k in graph.materializable_asset_keys
             if graph.get(k).is_partitioned and graph.get(k).partitions_def != RUNS]
    if other:
        raise ValueError(f"materialize_all handles per-run partitions only; not: {other}")
    job = defs.resolve_implicit_global_asset_job_def()
    outcomes: list[Outcome] = []
    failed_runs: set[str] = set()
    failed_stage: str | None = None
    _observe(defs, instance, runs, report)
    warehouse = defs.resources.get("warehouse")
    damaged = (functools.partial(_damaged, instance, warehouse)
               if isinstance(warehouse, Warehouse) else lambda key, partition: None)
    for stage in plan_stages(graph):
        names = ", ".join(k.to_user_string() for k in stage.keys)
        if failed_stage:
            report(f"skip {names}: {failed_stage} failed")
            continue
        partitions: list[str | None] = list(runs) if stage.partitioned else [None]
        up_to_date = []
        for partition in partitions:
            if partition in failed_runs:
                report(f"  skip {partition}: an earlier stage failed for it")
                continue
            where = partition or "all runs"
            done: set[dg.AssetKey] = set()
            while True:  # until nothing in the stage is missing or stale for this partition
                todo = _todo(instance, graph, stage.keys, partition, force, reuse, done, report,
                             damaged)
                if not todo:
                    break
                report(f"[{where}]: {', '.join(k.to_user_string() for k in todo)} ...")
                outcome = _execute(job, instance, tuple(todo), partition, log_level)
                outcomes.append(outcome)
                report(f"  {_describe(outcome)}")
                done.update(todo)
                if not outcome.success:
                    if partition is None:
                        failed_stage = names  # everything after depends on the whole dataset
                    else:
                        failed_runs.add(partition)
                    break
            if not done:
                up_to_date.append(where)
        if up_to_date:
            shown = ", ".join(up_to_date[:3]) + (" ..." if len(up_to_date) > 3 else "")
            report(f"[{names}]: up to date for {len(up_to_date)} of {len(partitions)} "
                   f"({shown}): skipped")
    return outcomes


def _observe(defs: dg.Definitions, instance: dg.DagsterInstance, runs: Sequence[str],
             report: Callable[[str], object]) -> None:
    """Record the source files' current signatures (what the sensor does while the daemon
    runs), so that staleness follows the files."""
    resources = defs.resources
    if "lo2_root" not in resources or "fp_allowlist" not in resources:
        return
    changed = observe_sources(instance, resources["lo2_root"], resources["fp_allowlist"],
                              list(runs), warn=lambda message: report(f"warning: {message}"))
    if changed:
        names = sorted({e.asset_key.to_user_string() + (f"[{e.partition}]" if e.partition
                                                         else "") for e in changed})
        report(f"[observe]: new or changed: {', '.join(names[:5])}"
               f"{' ...' if len(names) > 5 else ''} ({len(names)})")
    else:
        report("[observe]: source files unchanged since last observed")


def _todo(instance: dg.DagsterInstance, graph: Any, keys: Sequence[dg.AssetKey],
          partition: str | None, force: bool, reuse: Collection[dg.AssetKey],
          done: set[dg.AssetKey], report: Callable[[str], object],
          damaged: Callable[[dg.AssetKey, str | None], str | None]) -> list[dg.AssetKey]:
    """The stage's assets to materialize for ``partition`` now: missing, stale or damaged ones
    (all of them with ``force``), except those already done in this stage and reused ones (which
    are added to ``done``, so that they are reported once)."""
    pending = [k for k in keys if k not in done]
    if force:
        return [k for k in pending if not (k in reuse and _exists(instance, k))]
    todo = []
    statuses = stale_status(instance, graph, [(k, partition) for k in pending])
    for key in pending:
        status, causes = statuses[(key, partition)]
        if key == TRAINING_SET and status == FRESH and \
                not training_set_is_current(instance):
            status = STALE  # past 100 runs Dagster cannot tell: compare ourselves
        if status == FRESH:
            problem = damaged(key, partition)
            if problem is None:
                continue
            report(f"[{partition or 'all runs'}]: rebuild {key.to_user_string()}: its stored "
                   f"file is damaged ({problem})")
            todo.append(key)
            continue
        if key in reuse and status == STALE:
            report(f"[all runs]: keep {key.to_user_string()} (already materialized, though "
                   "stale; a run without --runs retrains it)")
            done.add(key)
            continue
        if causes and partition is None:
            report(f"[all runs]: {key.to_user_string()} is stale: {describe(causes[0])}"
                   + (f" (+{len(causes) - 1} more)" if len(causes) > 1 else ""))
        todo.append(key)
    return todo


def _damaged(instance: dg.DagsterInstance, warehouse: Warehouse, key: dg.AssetKey,
             partition: str | None) -> str | None:
    """What is wrong with the stored file of an up-to-date asset (partition), if anything: a
    per-run asset's Parquet file, or what an unpartitioned asset's IO manager stored (its last
    materialization's ``path`` says whether a Parquet file or a folder; the current warehouse
    says where). Footers and a hash only: no data is read."""
    if partition is not None:
        return stored_problem(warehouse.path_for(key, partition))
    event = instance.get_latest_materialization_event(key)
    materialization = event.asset_materialization if event else None
    path = materialization.metadata.get("path") if materialization else None
    if path is None or not isinstance(path.value, str):
        return None  # stores nothing the pipeline reads back (a report, an export)
    if key == ANOMALY_MODEL:
        return stored_problem(warehouse.folder_for(key), "model")
    if key == DRAIN_TEMPLATES:
        return stored_problem(warehouse.folder_for(key), "templates")
    return stored_problem(warehouse.path_for(key)) if path.value.endswith(".parquet") else None


def _exists(instance: dg.DagsterInstance, key: dg.AssetKey) -> bool:
    return instance.get_latest_materialization_event(key) is not None


def _execute(
    job: dg.JobDefinition,
    instance: dg.DagsterInstance,
    keys: tuple[dg.AssetKey, ...],
    partition: str | None,
    log_level: str,
) -> Outcome:
    """One in-process Dagster run of ``keys`` (for one partition, if given)."""
    started = time.perf_counter()
    result = job.execute_in_process(
        instance=instance,
        asset_selection=list(keys),
        partition_key=partition,
        raise_on_error=False,
        run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
        tags={"lo2/launched_by": "lo2-dagster run"},
    )
    metadata = {
        ev.materialization.asset_key.to_user_string(): {
            k: v.value for k, v in ev.materialization.metadata.items()
        }
        for ev in result.get_asset_materialization_events()
    }
    error = None if result.success else failure_summary(result)
    return Outcome(partition, keys, result.success, time.perf_counter() - started,
                   result.run_id, metadata, error)


def failure_summary(result: dg.ExecuteInProcessResult) -> str:
    """Every failed step's message, in the user's words."""
    failures = [ev.step_failure_data for ev in result.all_events if ev.is_step_failure]
    return "; ".join(_failure_message(f) for f in failures) or "run failed"


def _failure_message(failure: Any) -> str:
    """What went wrong, in the user's words: a Failure's description, else the root cause."""
    if failure.user_failure_data and failure.user_failure_data.description:
        return failure.user_failure_data.description
    error = failure.error
    while error is not None and error.cause is not None:
        error = error.cause
    if error is None:
        return "step failed"
    # Our own errors say everything in their message: drop "lo2_dagster.x.SomeError: ".
    return re.sub(r"^lo2_dagster(\.\w+)+: ", "", error.message.strip())


def _describe(outcome: Outcome) -> str:
    """One line per Dagster run for the terminal."""
    if not outcome.success:
        return f"FAILED after {outcome.seconds:.1f} s (run {outcome.run_id[:8]}): {outcome.error}"
    parts = []
    for asset, values in outcome.metadata.items():
        rows = values.get("dagster/row_count")
        parts.append(f"{asset.split('/')[-1]}={rows:,}" if isinstance(rows, int) else asset)
    return f"ok in {outcome.seconds:.1f} s: {', '.join(parts) or 'observed'}"
