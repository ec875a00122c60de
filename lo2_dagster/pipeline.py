"""``lo2-dagster run``, headless: bring the asset graph up to date in a persistent Dagster
instance by asking the automation conditions (``lo2_dagster.defs.automation``) what to run, as
the automation sensor does, running it in-process, and asking again until they request nothing.

What needs running is defined once, by the conditions. Beside what they request, the command
runs a few things, each named in its output:

- assets whose code version changed since they were materialized (the automation leaves those
  to a backfill, so that a deployment does not recompute every run by itself; a user who types
  the command wants them rebuilt),
- assets whose stored file is damaged or missing (Dagster does not look at files),
- with ``retrain``: what the retrain cron triggers, as at a tick,
- with ``force``: everything.

Requests run in dependency order, one in-process Dagster run per partition and step, so a
failing run does not stop the others and the UI shows every run and materialization afterwards.
The conditions' cursor is kept in the instance between commands (``CURSOR``), apart from the
automation sensor's own.
"""

from __future__ import annotations

import re
import time
import warnings
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from lo2_dagster.defs.automation import retrains_on_cron
from lo2_dagster.defs.ingest.sensors import observe_sources
from lo2_dagster.defs.keys import ANOMALY_MODEL, DRAIN_TEMPLATES
from lo2_dagster.defs.runs import RUNS
from lo2_dagster.storage import Warehouse, stored_problem
from lo2_dagster.versions import (
    evaluate_conditions,
    load_cursor,
    partitions_read_once,
    save_cursor,
)

#: Where ``lo2-dagster run`` keeps the automation cursor in the instance's storage.
CURSOR = "lo2_dagster/run_command_automation_cursor"
#: More evaluations than this in one command means the conditions keep requesting each other.
MAX_EVALUATIONS = 50

Item = tuple[dg.AssetKey, str | None]  # an asset and its partition (None: unpartitioned)
AC = dg.AutomationCondition


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


def add_run_partitions(instance: dg.DagsterInstance, runs: Sequence[str]) -> list[str]:
    """Add a partition for each run that has none yet; returns the ones added."""
    existing = set(instance.get_dynamic_partitions(RUNS.name))
    new = [run for run in runs if run not in existing]
    if new:
        instance.add_dynamic_partitions(RUNS.name, new)
    return new


def name(item: Item) -> str:
    key, partition = item
    return key.to_user_string() + (f"[{partition}]" if partition else "")


def with_code_changes(defs: dg.Definitions) -> dg.Definitions:
    """``defs`` with each asset's automation condition extended by "or its code version changed
    since the previous evaluation": what this command evaluates (with a cursor of its own)."""
    def extend(spec: dg.AssetSpec) -> dg.AssetSpec:
        code = AC.code_version_changed()
        own = spec.automation_condition
        return spec.replace_attributes(automation_condition=own | code if own else code)

    with warnings.catch_warnings():  # map_resolved_asset_specs is a preview API
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return defs.map_resolved_asset_specs(func=extend, selection=dg.AssetSelection.all())


def requested_items(result: Any, graph: Any) -> set[Item]:
    """Every (asset, partition) an ``EvaluateAutomationConditionsResult`` requests."""
    return {(key, partition) for key in graph.materializable_asset_keys
            for partition in result.get_requested_partitions(key)}


def materialize_all(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    runs: Sequence[str],
    report: Callable[[str], object] = print,
    log_level: str = "INFO",
    force: bool = False,
    retrain: bool = False,
) -> list[Outcome]:
    """Bring the graph up to date for ``runs`` as the automation conditions define it (see the
    module docstring), plus code changes and damaged files; ``retrain``: also what the retrain
    cron triggers; ``force``: everything, for ``runs`` and once."""
    graph = defs.resolve_asset_graph()
    other = [k.to_user_string() for k in graph.materializable_asset_keys
             if graph.get(k).is_partitioned and graph.get(k).partitions_def != RUNS]
    if other:
        raise ValueError(f"materialize_all handles per-run partitions only; not: {other}")
    # One command asks the instance about the run partitions hundreds of times (evaluations,
    # each step's context): they are read once, and again after this command adds some.
    with partitions_read_once(instance):
        runner = Runner(defs, instance, report, log_level)
        cursor = load_cursor(instance, CURSOR)
        if cursor is None:
            # The first command on this instance: what the conditions see before the runs are
            # added and their files observed is the baseline against which those changes count.
            report("[automation]: first evaluation on this instance")
            cursor = runner.settle(cursor, set())
        # Added after the baseline, a run is newly missing for every per-run asset: its chain up
        # to the first asset over every run is requested at once, in one Dagster run.
        added = add_run_partitions(instance, runs)
        if added:
            report(f"added {len(added)} run partition(s)")
        _observe(defs, instance, runs, report)
        if force:
            cursor = runner.settle(cursor, runner.everything(runs), why="--force")
        else:
            cursor = runner.settle(cursor, runner.damaged(runs))
        if retrain:
            for key in runner.retrained_on_cron():
                if (key, None) in runner.done or runner.blocked((key, None)):
                    continue
                report(f"[retrain]: {key.to_user_string()}, as at a tick of the retrain cron")
                cursor = runner.settle(cursor, {(key, None)})
        runner.report_skipped(runs)
        return runner.outcomes


class Runner:
    """Evaluates the conditions and runs what they request, in dependency order, keeping what
    ran, failed and was skipped in one command."""

    def __init__(self, defs: dg.Definitions, instance: dg.DagsterInstance,
                 report: Callable[[str], object], log_level: str) -> None:
        self.defs, self.instance, self.report, self.log_level = defs, instance, report, log_level
        self.evaluated = with_code_changes(defs)
        self.graph = defs.resolve_asset_graph()
        self.job = defs.resolve_implicit_global_asset_job_def()
        self.order = {k: i for i, k in enumerate(self.graph.toposorted_asset_keys)}
        self.outcomes: list[Outcome] = []
        self.done: set[Item] = set()
        self.failed: dict[Item, str] = {}  # item -> what failed (itself or an upstream item)

    # What to run -------------------------------------------------------------------------

    def _items(self, runs: Sequence[str]) -> list[Item]:
        return [(key, partition) for key in self.graph.toposorted_asset_keys
                if key in self.graph.materializable_asset_keys
                for partition in (runs if self.graph.get(key).is_partitioned else [None])]

    def everything(self, runs: Sequence[str]) -> set[Item]:
        return set(self._items(runs))

    def damaged(self, runs: Sequence[str]) -> set[Item]:
        """Materialized partitions whose stored file is damaged or missing."""
        warehouse = self.defs.resources.get("warehouse")
        if not isinstance(warehouse, Warehouse):
            return set()
        found = set()
        materialized = {key: self.instance.get_materialized_partitions(key)
                        for key in self.graph.materializable_asset_keys
                        if self.graph.get(key).is_partitioned}
        for key, partition in self._items(runs):
            if partition is not None and partition not in materialized[key]:
                continue
            problem = _damaged(self.instance, warehouse, key, partition)
            if problem:
                self.report(f"[{partition or 'all runs'}]: rebuild {key.to_user_string()}: its "
                            f"stored file is damaged ({problem})")
                found.add((key, partition))
        return found

    def retrained_on_cron(self) -> list[dg.AssetKey]:
        """The assets the retrain cron triggers, upstream first."""
        return [key for key in self.graph.toposorted_asset_keys
                if key in self.graph.materializable_asset_keys
                and retrains_on_cron(self.graph.get(key).automation_condition)]

    # Running -----------------------------------------------------------------------------

    def settle(self, cursor: Any, extra: set[Item], why: str | None = None) -> Any:
        """Run ``extra`` with what the conditions request, then ask them again, until they
        request nothing; returns the last cursor."""
        last: set[Item] = set()
        waiting: set[Item] = set()
        for _ in range(MAX_EVALUATIONS):
            result = evaluate_conditions(self.evaluated, self.instance, cursor)
            cursor = result.cursor
            # Built in the last pass after everything it reads: a request for it is its
            # condition seeing its own inputs change in that pass, not new work. What failed
            # in this command is not retried in it.
            requested = requested_items(result, self.graph) - last - set(self.failed)
            if requested - waiting:
                self._say_requested(requested - waiting, result)
            todo, extra = requested | extra | waiting, set()
            if not todo:
                save_cursor(self.instance, CURSOR, cursor)
                return cursor
            if why:
                self.report(f"[{why}]: {len(todo)} asset partitions")
                why = None
            waiting = self.run(todo)
            last = todo & self.done
            if not waiting:
                # Everything this cursor handled has run: an interrupted command resumes from
                # here; until then, the previous cursor makes the next command redo, not lose.
                save_cursor(self.instance, CURSOR, cursor)
        raise RuntimeError(f"the automation conditions still request work after "
                           f"{MAX_EVALUATIONS} evaluations: {', '.join(map(name, todo))}")

    def _say_requested(self, requested: set[Item], result: Any) -> None:
        labels = {}
        for r in result.results:  # [the asset's own condition |] code_version_changed()
            *own, code = r.child_results or [r]
            labels[r.key] = ("its code version changed" if code.true_subset.size or not own
                             else own[0].condition.get_label())
        by_key: dict[dg.AssetKey, list[str | None]] = {}
        for key, partition in requested:
            by_key.setdefault(key, []).append(partition)
        for key in sorted(by_key, key=self.order.__getitem__):
            partitions = by_key[key]
            which = "" if partitions == [None] else f" for {_some(partitions)}"
            self.report(f"[automation]: {key.to_user_string()}{which} "
                        f"({labels.get(key) or 'its automation condition'})")

    def blocked(self, item: Item) -> str | None:
        """What failed upstream of ``item`` in this command, if anything. An asset over every
        run is not held back by a failed run: it reads the runs there are."""
        for parent in self._parents(item, self.failed):
            if parent[1] is None or item[1] is not None:
                return self.failed[parent]
        return None

    def _parents(self, item: Item, among: Collection[Item]) -> Iterable[Item]:
        """The items among ``among`` that ``item`` reads (same run, the unpartitioned asset, or
        every run of a per-run asset for an unpartitioned one)."""
        key, partition = item
        for parent_key in sorted(self.graph.get(key).parent_keys, key=self.order.__getitem__):
            if parent_key not in self.graph.materializable_asset_keys:
                continue
            if not self.graph.get(parent_key).is_partitioned:
                candidates: Iterable[Item] = [(parent_key, None)]
            elif partition is not None:
                candidates = [(parent_key, partition)]
            else:
                candidates = [i for i in among if i[0] == parent_key]
            yield from (c for c in candidates if c in among)

    def run(self, items: set[Item]) -> set[Item]:
        """Run what of ``items`` does not wait for another partition's item among them: per
        partition, in one Dagster run, upstream first. What is downstream of a failure is
        skipped. Returns the items that wait: they run after the next evaluation, with what
        this run's new data triggers (e.g. the training-set fingerprint before the model)."""
        pending = set(items)
        for item in sorted(pending, key=self._sort_key):
            cause = self.blocked(item)
            if cause:
                self.report(f"  skip {name(item)}: {cause} failed")
                self.failed[item] = cause
                pending.discard(item)
        waiting: set[Item] = set()
        for item in sorted(pending, key=self._sort_key):  # upstream first
            if any(p[1] != item[1] or p in waiting for p in self._parents(item, pending)):
                waiting.add(item)
        ready: dict[str | None, list[dg.AssetKey]] = {}
        for key, partition in sorted(pending - waiting, key=self._sort_key):
            ready.setdefault(partition, []).append(key)
        for partition in sorted(ready, key=lambda p: (p is None, p or "")):
            keys = tuple(ready[partition])
            self.report(f"[{partition or 'all runs'}]: "
                        f"{', '.join(k.to_user_string() for k in keys)} ...")
            outcome = _execute(self.job, self.instance, keys, partition, self.log_level)
            self.outcomes.append(outcome)
            self.report(f"  {_describe(outcome)}")
            made = {dg.AssetKey.from_user_string(a) for a in outcome.metadata}
            for key in keys:
                if outcome.success or key in made:
                    self.done.add((key, partition))
                else:
                    self.failed[(key, partition)] = name((key, partition))
        return waiting

    def _sort_key(self, item: Item) -> tuple[int, bool, str]:
        return self.order[item[0]], item[1] is None, item[1] or ""

    # Saying what was not run -------------------------------------------------------------

    def report_skipped(self, runs: Sequence[str]) -> None:
        """What this command did not run, grouped, and why: up to date as far as the
        automation conditions go, kept until the retrain cron, or missing and not requested."""
        ran = self.done | set(self.failed)
        up_to_date: dict[tuple[str | None, ...], list[dg.AssetKey]] = {}
        missing: dict[tuple[str | None, ...], list[dg.AssetKey]] = {}
        for key in self.graph.toposorted_asset_keys:
            if key not in self.graph.materializable_asset_keys:
                continue
            node = self.graph.get(key)
            if node.is_partitioned:
                made = self.instance.get_materialized_partitions(key)
                left = [p for p in runs if (key, p) not in ran]
            else:
                made = {None} if self.instance.get_latest_materialization_event(key) else set()
                left = [None] if (key, None) not in ran else []
            absent = tuple(p for p in left if p not in made)
            if absent:
                missing.setdefault(absent, []).append(key)
            present = [p for p in left if p in made]
            if not present:
                continue
            inputs_changed = any((parent, p) in self.done for parent in node.parent_keys
                                 for p in [None, *runs])
            if not node.is_partitioned and inputs_changed and \
                    retrains_on_cron(node.automation_condition):
                self.report(f"keep {key.to_user_string()} (already materialized; its inputs "
                            "changed: it retrains at the retrain cron's tick, or now with "
                            "--retrain)")
                continue
            up_to_date.setdefault(tuple(present), []).append(key)
        for present, keys in up_to_date.items():
            names = ", ".join(k.to_user_string() for k in keys)
            self.report(f"[{names}]: up to date: skipped" if present == (None,) else
                        f"[{names}]: up to date for {len(present)} of {len(runs)} "
                        f"({_some(present)}): skipped")
        for absent, keys in missing.items():
            names = ", ".join(k.to_user_string() for k in keys)
            where = f" for {_some(absent)}" if absent != (None,) else ""
            self.report(f"[{names}]: missing{where}, not requested: an input is missing or "
                        "failed (a failed run is not retried until its inputs change; --force "
                        "retries)")


def _some(partitions: Iterable[str | None]) -> str:
    found = sorted(p or "all runs" for p in partitions)
    return ", ".join(found[:3]) + (f" (+{len(found) - 3} more)" if len(found) > 3 else "")


def _observe(defs: dg.Definitions, instance: dg.DagsterInstance, runs: Sequence[str],
             report: Callable[[str], object]) -> None:
    """Record the source files' current signatures (what the sensor does while the daemon
    runs), so that the conditions see changed files."""
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


def _damaged(instance: dg.DagsterInstance, warehouse: Warehouse, key: dg.AssetKey,
             partition: str | None) -> str | None:
    """What is wrong with the stored file of a materialized asset (partition), if anything: a
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
