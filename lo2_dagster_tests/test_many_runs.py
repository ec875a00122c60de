"""Past Dagster's 100-partition limit: the training-set fingerprint keeps the model's staleness
right when runs are added or changed, and per-run assets materialize 101 runs in one Dagster
run (a backfill batch). Tiny runs: one correct and one error test case of one service each."""

import dagster as dg
import polars as pl

from lo2_dagster.definitions import defs
from lo2_dagster.defs.ingest.sensors import observe_sources
from lo2_dagster.defs.keys import (
    ANOMALY_MODEL,
    DRAIN_TEMPLATES,
    EVENTS_ENHANCED,
    MESSAGE_COUNTS,
    RAW_EVENTS,
    RAW_SEQUENCES,
    SEQUENCES_ENHANCED,
    TRAINING_SET,
)
from lo2_dagster.defs.resources import FpAllowlistFile, Lo2Root
from lo2_dagster.defs.runs import RUNS, _combined_check, _combined_version
from lo2_dagster_tests.conftest import line
from lo2_dagster_tests.staleness import (
    FRESH,
    STALE,
    describe,
    stale_status,
    training_set_is_current,
)

# The run tags of a partition-range run, as a backfill launches it (Dagster's documented tags).
ASSET_PARTITION_RANGE_START_TAG = "dagster/asset_partition_range_start"
ASSET_PARTITION_RANGE_END_TAG = "dagster/asset_partition_range_end"
ERROR_CASE = "access_token_client_secret_wrong_401"


def tiny_run(write_run, number: int) -> str:
    run = f"light-oauth2-data-{1719000000 + 3600 * number}"
    ok = "\n".join(line(f"10:00:{s:02d}.000", f"token issued for client {s}") for s in range(3))
    bad = ok + "\n" + line("10:00:09.000", "ApiException invalid client secret", level="ERROR")
    write_run({("correct", "token"): ok + "\n", (ERROR_CASE, "token"): bad + "\n"}, run=run)
    return run


def test_the_model_turns_stale_past_100_runs(write_run, isolated_env):
    runs = [tiny_run(write_run, n) for n in range(101)]
    definitions = defs()
    job = definitions.resolve_implicit_global_asset_job_def()
    graph = definitions.resolve_asset_graph()
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(RUNS.name, runs)

        def observe() -> None:
            observe_sources(instance, Lo2Root(), FpAllowlistFile(),
                            instance.get_dynamic_partitions(RUNS.name))

        def run(keys, partition=None, first=None, last=None) -> None:
            tags = {ASSET_PARTITION_RANGE_START_TAG: first,
                    ASSET_PARTITION_RANGE_END_TAG: last} if first else None
            result = job.execute_in_process(
                instance=instance, asset_selection=keys, partition_key=partition, tags=tags,
                run_config={"ops": {"lo2__raw_events": {"config": {"trim_lines": 0}}}}
                if RAW_EVENTS in keys else None)
            assert result.success

        def status(key, partition=None) -> str:
            return stale_status(instance, graph, [(key, partition)])[(key, partition)][0]

        observe()
        # 101 runs in one Dagster run each stage, as a backfill batch would.
        run([RAW_EVENTS, RAW_SEQUENCES, MESSAGE_COUNTS], first=runs[0], last=runs[-1])
        run([DRAIN_TEMPLATES])
        run([EVENTS_ENHANCED, SEQUENCES_ENHANCED], first=runs[0], last=runs[-1])
        assert instance.get_materialized_partitions(SEQUENCES_ENHANCED) == set(runs)
        assert len(pl.read_parquet(isolated_env["warehouse"] / "lo2" / "sequences_enhanced" /
                                   f"{runs[57]}.parquet")) == 2
        run([TRAINING_SET, ANOMALY_MODEL])
        assert status(ANOMALY_MODEL) == FRESH and training_set_is_current(instance)

        # A batch records one data version for all its runs (Dagster keeps one per asset and
        # step), so a run first re-read on its own gets a version of its own, once. After
        # that, re-reading it with unchanged data keeps every data version and the fingerprint.
        chain = [RAW_EVENTS, RAW_SEQUENCES, EVENTS_ENHANCED, SEQUENCES_ENHANCED]
        run(chain, runs[3])
        assert not training_set_is_current(instance)
        run([TRAINING_SET, ANOMALY_MODEL])
        run(chain, runs[3])
        assert training_set_is_current(instance)

        # One run's file changes: its chain is rebuilt, and the fingerprint no longer matches.
        # Dagster's own staleness of the fingerprint asset cannot tell (>= 100 partitions) ...
        cursor = dg.evaluate_automation_conditions(defs=definitions, instance=instance).cursor
        log = isolated_env["root"] / "logs" / runs[57] / ERROR_CASE
        path = next(log.iterdir())
        path.write_text(path.read_text() + line("10:00:10.000", "a new error", level="ERROR")
                        + "\n")
        observe()
        assert status(RAW_EVENTS, runs[57]) == STALE
        run(chain, runs[57])
        assert status(TRAINING_SET) == FRESH  # Dagster's limit, as documented
        assert not training_set_is_current(instance)
        # ... so the automation refreshes it whenever a run's data changes, and then the
        # model is stale, naming the fingerprint.
        result = dg.evaluate_automation_conditions(defs=definitions, instance=instance,
                                                   cursor=cursor)
        assert result.get_requested_partitions(TRAINING_SET) == {None}
        assert result.get_requested_partitions(ANOMALY_MODEL) == set()
        run([TRAINING_SET])
        [cause] = stale_status(instance, graph, [(ANOMALY_MODEL, None)])[(ANOMALY_MODEL, None)][1]
        assert describe(cause).startswith("lo2/training_set ")

        # A 102nd run: the same.
        run([ANOMALY_MODEL])
        assert status(ANOMALY_MODEL) == FRESH
        new = tiny_run(write_run, 101)
        instance.add_dynamic_partitions(RUNS.name, [new])
        observe()
        run(chain, new)
        assert not training_set_is_current(instance)
        run([TRAINING_SET])
        assert status(ANOMALY_MODEL) == STALE


def test_a_batch_passes_a_check_only_if_every_run_does():
    def result(passed: bool, rows: int) -> dg.AssetCheckResult:
        return dg.AssetCheckResult(check_name="no_row_lost", asset_key=SEQUENCES_ENHANCED,
                                   passed=passed, metadata={"rows": rows})

    ok = _combined_check("no_row_lost", {"a": result(True, 1), "b": result(True, 2)})
    assert ok.passed and ok.metadata["runs_checked"].value == 2
    bad = _combined_check("no_row_lost", {"a": result(True, 1), "b": result(False, 7),
                                          "c": result(False, 9)})
    assert not bad.passed and bad.metadata["runs_failed"].value == 2
    assert "- `b: rows=7`" in bad.metadata["failed_runs"].value
    assert bad.description == "Failed for 2 of 3 runs of this batch, e.g. b"
    single = result(False, 3)
    assert _combined_check("no_row_lost", {"a": single}) is single  # one run: its own result
    assert _combined_version({"a": "v1"}) == dg.DataVersion("v1")
    assert _combined_version({"a": "v1", "b": None}) is None
    assert _combined_version({"b": "2", "a": "1"}) == _combined_version({"a": "1", "b": "2"})
