"""Staleness, automation and the catch-up schedule, on a real generated warehouse and a real
(temporary, on-disk) Dagster instance: what becomes stale, and what the automation requests,
when nothing changes, when one run's file changes, when a code version changes, when a run is
added and when a new model arrives."""

import datetime as dt
import shutil
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from lo2_dagster.definitions import defs
from lo2_dagster.defs.ingest.sensors import observe_sources
from lo2_dagster.defs.jobs import CATCH_UP_SCHEDULE, PER_RUN, SCORING
from lo2_dagster.defs.keys import (
    ANOMALY_MODEL,
    DRAIN_TEMPLATES,
    EVENTS_ENHANCED,
    MESSAGE_COUNTS,
    RAW_EVENTS,
    RAW_SEQUENCES,
)
from lo2_dagster.defs.resources import FpAllowlistFile, Lo2Root
from lo2_dagster.defs.runs import RUNS
from lo2_dagster.pipeline import materialize_all
from lo2_dagster.synth import SynthConfig, generate
from lo2_dagster_tests.staleness import FRESH, STALE, describe, stale_status

EXTRA_LINE = ("2024-06-28 16:59:59.999 [XNIO-1 task-2]  abc DEBUG "
              "c.n.o.t.h.Oauth2TokenPostHandler handleRequest - an extra line\n")


@dataclass
class World:
    base: Path
    runs: list[str]
    instance: dg.DagsterInstance
    defs: dg.Definitions

    def observe(self) -> list[dg.AssetObservation]:
        return observe_sources(self.instance, Lo2Root(), FpAllowlistFile(),
                               self.instance.get_dynamic_partitions(RUNS.name))

    def statuses(self, definitions: dg.Definitions | None = None) -> dict[str, tuple]:
        """'lo2/asset[run]' -> (status, causes) for every materializable asset and run."""
        graph = (definitions or self.defs).resolve_asset_graph()
        runs = self.instance.get_dynamic_partitions(RUNS.name)
        targets = [(k, run if graph.get(k).is_partitioned else None)
                   for k in graph.materializable_asset_keys
                   for run in (runs if graph.get(k).is_partitioned else [None])]
        return {k.to_user_string() + (f"[{p}]" if p else ""): v
                for (k, p), v in stale_status(self.instance, graph, targets).items()}

    def not_fresh(self, definitions: dg.Definitions | None = None) -> set[str]:
        return {k for k, (status, _) in self.statuses(definitions).items()
                if status != FRESH}

    def materialize(self, keys: list[dg.AssetKey], partition: str | None = None,
                    config: dict | None = None) -> None:
        run_config = {"ops": {"lo2__" + keys[0].path[-1]: {"config": config}}} if config else None
        result = self.defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=self.instance, asset_selection=keys, partition_key=partition,
            run_config=run_config)
        assert result.success

    def version(self, key: dg.AssetKey, partition: str | None = None) -> str:
        records = self.instance.fetch_materializations(dg.AssetRecordsFilter(
            asset_key=key, asset_partitions=[partition] if partition else None), limit=1).records
        return records[0].asset_materialization.tags["dagster/data_version"]

    def change_file(self, run: str) -> None:
        log = self.base / "lo2" / "logs" / run / "correct" / "light-oauth2-oauth2-token-1.log"
        log.write_text(log.read_text() + EXTRA_LINE)


@pytest.fixture
def world(built_copy) -> World:
    base, runs, instance = built_copy
    return World(base, runs, instance, defs())


def chain(run: str, keys=PER_RUN) -> set[str]:
    return {f"{k.to_user_string()}[{run}]" for k in keys}


def test_after_a_build_everything_is_fresh_and_an_unchanged_reread_changes_nothing(world):
    assert world.not_fresh() == set()
    assert world.observe() == []  # the files are as observed
    run = world.runs[0]
    before = world.version(RAW_EVENTS, run)
    world.materialize([RAW_EVENTS], run)  # re-read, same content
    assert world.version(RAW_EVENTS, run) == before
    assert world.not_fresh() == set()


def test_one_changed_file_makes_only_that_runs_chain_stale(world):
    run, other = world.runs[0], world.runs[1]
    world.change_file(run)
    [observation] = world.observe()
    assert (observation.asset_key.to_user_string(), observation.partition) == \
        ("lo2/run_logs", run)
    statuses = world.statuses()
    assert world.not_fresh() == {f"lo2/raw_events[{run}]"}  # Dagster looks one step up
    [cause] = statuses[f"lo2/raw_events[{run}]"][1]
    assert cause.category.value == "DATA"
    assert describe(cause).startswith(f"lo2/run_logs[{run}] ")

    world.materialize([RAW_EVENTS], run)  # the content changed: a new data version
    assert world.not_fresh() == chain(run, [RAW_SEQUENCES, MESSAGE_COUNTS, EVENTS_ENHANCED])
    world.materialize([RAW_SEQUENCES, MESSAGE_COUNTS], run)
    assert "lo2/drain_templates" in world.not_fresh()
    assert not world.not_fresh() & chain(other)  # the other runs stay fresh

    # `lo2-dagster run --retrain` brings the rest up to date: this run's chain and what reads
    # every run (which, without --retrain, waits for the retrain cron).
    outcomes = materialize_all(world.defs, world.instance, world.runs, report=lambda _: None,
                               retrain=True)
    assert all(o.success for o in outcomes)
    touched = {(k.to_user_string(), o.partition) for o in outcomes for k in o.keys}
    assert {p for _, p in touched if p} == {run}
    # The model retrained to the same bytes (same data version), so its report, which follows
    # the model only (on_new_model), is not redrawn for one changed run.
    assert world.not_fresh() == {"lo2/model_report"}


def test_a_code_version_bump_makes_dependents_stale_with_a_code_cause(world):
    bumped = world.defs.map_asset_specs(func=lambda spec: spec.replace_attributes(
        code_version="2") if spec.key == RAW_SEQUENCES else spec)
    statuses = world.statuses(bumped)
    stale = {k for k, (s, _) in statuses.items() if s == STALE}
    assert stale == {f"lo2/raw_sequences[{run}]" for run in world.runs}
    for run in world.runs:
        [cause] = statuses[f"lo2/raw_sequences[{run}]"][1]
        assert cause.category.value == "CODE"
    # A deployment with new code does not recompute every run by itself: the assets show as
    # stale (CODE) and a backfill or `lo2-dagster run` rebuilds them when the user chooses.
    cursor = dg.evaluate_automation_conditions(defs=world.defs, instance=world.instance).cursor
    after = dg.evaluate_automation_conditions(defs=bumped, instance=world.instance,
                                              cursor=cursor)
    assert requested(after) == set()


def requested(result) -> set[str]:
    graph = defs().resolve_asset_graph()
    return {k.to_user_string() + (f"[{p}]" if p else "")
            for k in graph.get_all_asset_keys()
            for p in result.get_requested_partitions(k)}


def test_automation_requests_exactly_what_changed(world):
    ev = dg.evaluate_automation_conditions
    first = ev(defs=world.defs, instance=world.instance)
    assert requested(first) == set()
    cursor = first.cursor

    # A re-materialization with the same data triggers nothing downstream.
    world.materialize([RAW_EVENTS], world.runs[0])
    result = ev(defs=world.defs, instance=world.instance, cursor=cursor)
    assert requested(result) == set()
    cursor = result.cursor

    # A changed run: its raw events first; its chain follows once their data changed.
    run = world.runs[1]
    world.change_file(run)
    world.observe()
    result = ev(defs=world.defs, instance=world.instance, cursor=cursor)
    assert requested(result) == {f"lo2/raw_events[{run}]"}
    world.materialize([RAW_EVENTS], run)
    result = ev(defs=world.defs, instance=world.instance, cursor=result.cursor)
    assert requested(result) == chain(run, [RAW_SEQUENCES, MESSAGE_COUNTS, EVENTS_ENHANCED])
    cursor = result.cursor

    # A new run: its whole per-run chain at once (missing), with the current templates/model.
    generate(world.base / "new", SynthConfig(runs=1, seed=9, token_lines=5,
                                             start_epoch=1900000000))
    new = "light-oauth2-data-1900000000"
    shutil.copytree(world.base / "new" / "logs" / new, world.base / "lo2" / "logs" / new)
    world.instance.add_dynamic_partitions(RUNS.name, [new])
    world.observe()
    result = ev(defs=world.defs, instance=world.instance, cursor=cursor)
    assert requested(result) - chain(run) == chain(new)
    cursor = result.cursor

    # The same model retrained on the same data (same bytes, same data version): nothing.
    world.materialize([ANOMALY_MODEL])
    result = ev(defs=world.defs, instance=world.instance, cursor=cursor)
    assert requested(result) == set()

    # A new model (another seed: a new data version): every run is rescored, explained and
    # checked for drift, and the model's report is redrawn (the new run's waits for its
    # enhanced sequences). New runs alone never retrain the model.
    world.materialize([ANOMALY_MODEL], config={"seed": 1})
    result = ev(defs=world.defs, instance=world.instance, cursor=result.cursor)
    assert requested(result) == {"lo2/model_report"}.union(
        *(chain(r, SCORING) for r in world.runs))


def test_retraining_follows_the_cron_not_new_runs(world):
    ev = dg.evaluate_automation_conditions
    monday = dt.datetime(2026, 11, 23, 12, tzinfo=dt.UTC)
    first = ev(defs=world.defs, instance=world.instance, evaluation_time=monday)
    assert requested(first) == set()
    # New runs and changed runs do not retrain: the per-run chain follows, the model does not.
    world.change_file(world.runs[0])
    world.observe()
    changed = ev(defs=world.defs, instance=world.instance, cursor=first.cursor,
                 evaluation_time=monday + dt.timedelta(hours=1))
    assert requested(changed) == {f"lo2/raw_events[{world.runs[0]}]"}
    world.materialize([RAW_EVENTS], world.runs[0])

    # The cron tick (Sunday 03:00 UTC): the templates and the exports retrain; the model waits
    # for the templates, whose ids index its features.
    sunday = dt.datetime(2026, 11, 29, 3, 0, 30, tzinfo=dt.UTC)
    tick = ev(defs=world.defs, instance=world.instance, cursor=changed.cursor,
              evaluation_time=sunday)
    retrain = {"lo2/drain_templates", "lo2/enhanced_exports"}
    assert requested(tick) & {"lo2/drain_templates", "lo2/anomaly_model",
                              "lo2/enhanced_exports"} == retrain
    world.materialize([DRAIN_TEMPLATES])
    after = ev(defs=world.defs, instance=world.instance, cursor=tick.cursor,
               evaluation_time=sunday + dt.timedelta(minutes=1))
    assert "lo2/anomaly_model" in requested(after)


def test_the_catch_up_schedule_requests_what_the_conditions_request(world):
    schedule = world.defs.resolve_schedule_def(CATCH_UP_SCHEDULE)
    repo = world.defs.get_repository_def()
    hour = dt.datetime(2026, 11, 22, 10, tzinfo=dt.UTC)
    # A schedule context opens its own instance from the ref: `with` closes it (left open, it
    # leaves Dagster's current defs-state storage pointing at a disposed instance).
    with dg.build_schedule_context(instance=world.instance, repository_def=repo,
                                   scheduled_execution_time=hour) as context:
        [skip] = list(schedule(context))
    assert isinstance(skip, dg.SkipReason) and "All 3 run partitions are up to date" in \
        skip.skip_message
    world.change_file(world.runs[2])
    world.observe()
    with dg.build_schedule_context(instance=world.instance, repository_def=repo,
                                   scheduled_execution_time=hour) as context:
        [request] = list(schedule(context))
    assert request.partition_key == world.runs[2]
    assert request.run_key == f"catch-up:{world.runs[2]}:{hour.isoformat()}"
    # What the automation conditions request, as the automation sensor would: its raw events.
    assert request.asset_selection == [RAW_EVENTS]


def test_the_run_command_adds_code_changes_and_retrains_on_request(world):
    """`lo2-dagster run` is the automation conditions plus two things it names: what a code
    change touches (the automation leaves that to the user) and, with --retrain, what the
    retrain cron would retrain."""
    said: list[str] = []
    bumped = world.defs.map_asset_specs(func=lambda spec: spec.replace_attributes(
        code_version="2") if spec.key == RAW_SEQUENCES else spec)
    outcomes = materialize_all(bumped, world.instance, world.runs, report=said.append)
    assert all(o.success for o in outcomes)
    touched = {(k, o.partition) for o in outcomes for k in o.keys}
    assert {(RAW_SEQUENCES, run) for run in world.runs} <= touched
    assert f"[automation]: lo2/raw_sequences for {', '.join(world.runs)} (its code version " \
        "changed)" in said
    assert DRAIN_TEMPLATES not in {k for k, _ in touched}  # kept until the cron
    assert any(line.startswith("keep lo2/anomaly_model (already materialized; its inputs "
                               "changed") for line in said), said

    said.clear()
    outcomes = materialize_all(world.defs, world.instance, world.runs, report=said.append,
                               retrain=True)
    assert all(o.success for o in outcomes)
    touched = {k.to_user_string() for o in outcomes for k in o.keys if o.partition is None}
    assert {"lo2/drain_templates", "lo2/enhanced_exports", "lo2/anomaly_model"} <= touched
    assert "[retrain]: lo2/drain_templates, as at a tick of the retrain cron" in said

    # Nothing changed since: nothing runs, and it says why.
    said.clear()
    assert materialize_all(world.defs, world.instance, world.runs, report=said.append) == []
    assert any("up to date for 3 of 3" in line for line in said), said


def test_an_evaluation_reads_the_run_partitions_once_and_the_instance_is_itself_again(tmp_path):
    """Within ``partitions_read_once`` the instance answers from one read (an evaluation asks
    hundreds of times, a Dagster run's steps ask whether their partition exists): what it
    adds or deletes itself is applied, a key it does not know is looked up (another process
    may have added it); afterwards it queries its storage again."""
    from lo2_dagster.versions import evaluate_conditions, partitions_read_once

    asset = dg.asset(partitions_def=RUNS, name="per_run",
                     automation_condition=dg.AutomationCondition.missing())(lambda: None)
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        instance.add_dynamic_partitions(RUNS.name, ["a", "b"])
        reads: list[str] = []
        storage_read = instance.get_dynamic_partitions

        def counting(partitions_def_name: str):
            reads.append(partitions_def_name)
            return storage_read(partitions_def_name)

        instance.get_dynamic_partitions = counting  # type: ignore[method-assign]
        with partitions_read_once(instance):
            assert instance.get_dynamic_partitions(RUNS.name) == ["a", "b"]
            assert instance.has_dynamic_partition(RUNS.name, "a")
            assert instance.get_existing_dynamic_partitions(RUNS.name, ["b", "x"]) == {"b"}
            assert reads == [RUNS.name]
            with partitions_read_once(instance):  # nested: the outer block's read
                assert instance.get_dynamic_partitions(RUNS.name) == ["a", "b"]
            assert reads == [RUNS.name]
            instance.add_dynamic_partitions(RUNS.name, ["c"])
            assert instance.get_dynamic_partitions(RUNS.name) == ["a", "b", "c"]
            instance.delete_dynamic_partition(RUNS.name, "a")
            assert not instance.has_dynamic_partition(RUNS.name, "a")
            assert reads == [RUNS.name] * 3
            # Another process adds "d": not in what was read, so looked up, then read again.
            instance.event_log_storage.add_dynamic_partitions(RUNS.name, ["d"])
            assert instance.get_dynamic_partitions(RUNS.name) == ["b", "c"]
            assert instance.has_dynamic_partition(RUNS.name, "d")
            assert instance.get_dynamic_partitions(RUNS.name) == ["b", "c", "d"]
        assert reads == [RUNS.name] * 4
        assert instance.get_dynamic_partitions(RUNS.name) == ["b", "c", "d"]
        assert reads == [RUNS.name] * 5
        assert "has_dynamic_partition" not in vars(instance)

        reads.clear()
        result = evaluate_conditions(dg.Definitions(assets=[asset]), instance, None)
        assert result.get_requested_partitions(asset.key) == {"b", "c", "d"}
        assert reads == [RUNS.name]  # one read for the whole evaluation
