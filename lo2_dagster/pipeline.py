"""The main job, headless: materialize the whole asset graph into a persistent Dagster instance.

The graph is cut into stages: a run of per-run (partitioned) assets, then the assets that
depend on all runs, then per-run assets downstream of those, and so on. Each per-run stage is
one in-process Dagster run per partition, so a failing run does not stop the others and the
UI shows every run and materialization afterwards.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

import dagster as dg
from dagster._core.definitions.assets.graph.asset_graph import AssetGraph
from dagster._core.execution.plan.objects import StepFailureData

from lo2_dagster.defs.ingest.partitions import RUNS


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


def plan_stages(graph: AssetGraph) -> list[Stage]:
    """Order the materializable assets into alternating per-run / whole-dataset stages."""
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
) -> list[Outcome]:
    """Materialize every asset for ``runs`` (per-run assets) and once (the others).

    Whole-dataset assets in ``reuse`` are kept as they are when already materialized (trained
    state that other runs were built with, e.g. the Drain templates when only some runs are
    processed); they are materialized only if they do not exist yet.
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
    observable = tuple(k for k in graph.toposorted_asset_keys if graph.get(k).is_observable)
    if observable:  # source files (the FP allowlist): record their current content's version
        names = ", ".join(k.to_user_string() for k in observable)
        report(f"[observe]: {names} ...")
        outcome = _execute(job, instance, observable, None, log_level)
        outcomes.append(outcome)
        report(f"  {_describe(outcome)}")
        if not outcome.success:
            failed_stage = names
    for stage in plan_stages(graph):
        names = ", ".join(k.to_user_string() for k in stage.keys)
        if failed_stage:
            report(f"skip {names}: {failed_stage} failed")
            continue
        if not stage.partitioned:
            kept = [k for k in stage.keys
                    if k in reuse and instance.get_latest_materialization_event(k) is not None]
            for key in kept:
                report(f"[all runs]: keep {key.to_user_string()} (already materialized; "
                       "a run without --runs retrains it)")
            stage = Stage(False, tuple(k for k in stage.keys if k not in kept))
            if not stage.keys:
                continue
            names = ", ".join(k.to_user_string() for k in stage.keys)
        partitions: list[str | None] = list(runs) if stage.partitioned else [None]
        for i, partition in enumerate(partitions, 1):
            if partition in failed_runs:
                report(f"  skip {partition}: an earlier stage failed for it")
                continue
            where = f"[{i}/{len(partitions)}] {partition}" if partition else "[all runs]"
            report(f"{where}: {names} ...")
            outcome = _execute(job, instance, stage.keys, partition, log_level)
            outcomes.append(outcome)
            report(f"  {_describe(outcome)}")
            if not outcome.success:
                if partition is None:
                    failed_stage = names  # everything after depends on the whole dataset
                else:
                    failed_runs.add(partition)
    return outcomes


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


def _failure_message(failure: StepFailureData) -> str:
    """What went wrong, in the user's words: a Failure's description, else the root cause."""
    if failure.user_failure_data and failure.user_failure_data.description:
        return failure.user_failure_data.description
    error = failure.error
    while error is not None and error.cause is not None:
        error = error.cause
    return error.message.strip() if error is not None else "step failed"


def _describe(outcome: Outcome) -> str:
    """One line per Dagster run for the terminal."""
    if not outcome.success:
        return f"FAILED after {outcome.seconds:.1f} s (run {outcome.run_id[:8]}): {outcome.error}"
    parts = []
    for asset, values in outcome.metadata.items():
        rows = values.get("dagster/row_count")
        parts.append(f"{asset.split('/')[-1]}={rows:,}" if isinstance(rows, int) else asset)
    return f"ok in {outcome.seconds:.1f} s: {', '.join(parts) or 'observed'}"
