"""The ingest assets through Dagster: real runs on a real (ephemeral) instance."""

import logging

import dagster as dg
import polars as pl
import pytest

from lo2_dagster.definitions import defs
from lo2_dagster.defs.ingest.assets import _line_accounting_check
from lo2_dagster.defs.keys import LINE_ACCOUNTING_CHECK, RAW_EVENTS, RAW_SEQUENCES
from lo2_dagster.defs.runs import RUNS
from lo2_dagster.lib import loader
from lo2_dagster_tests.conftest import EXCERPT, RUN, line
from lo2_dagster_tests.staleness import FRESH, STALE, stale_status

RUN_B = "light-oauth2-data-1719610000"
ERROR_CASE = "access_token_client_secret_wrong_401"


@pytest.fixture
def definitions() -> dg.Definitions:
    return defs()


@pytest.fixture
def instance(isolated_env) -> dg.DagsterInstance:
    with dg.DagsterInstance.ephemeral() as inst:
        yield inst


@pytest.fixture
def two_runs(write_run, isolated_env):
    text = EXCERPT.read_text()
    trace = line("16:31:00.000", "ApiException", level="ERROR") + "\n\tat a.B.c(B.java:1)\n"
    code = "\n".join(text.splitlines()[:150]) + "\n"
    files = {("correct", "token"): text, ("correct", "code"): code,
             (ERROR_CASE, "token"): text + trace}
    write_run(files, run=RUN)
    write_run(files, run=RUN_B)
    return isolated_env["root"]


def ingest(definitions, instance, run, **raw_events_config) -> dg.ExecuteInProcessResult:
    instance.add_dynamic_partitions(RUNS.name, [run])
    config = {"ops": {"lo2__raw_events": {"config": raw_events_config}}} if raw_events_config \
        else None
    return definitions.resolve_implicit_global_asset_job_def().execute_in_process(
        partition_key=run, instance=instance, run_config=config, raise_on_error=False,
        asset_selection=[RAW_EVENTS, RAW_SEQUENCES])


def data_version(instance, key, run) -> str:
    event = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[run]), limit=1).records[0]
    return event.asset_materialization.tags["dagster/data_version"]


def test_ingest_writes_events_and_sequences_with_metadata(definitions, instance, two_runs,
                                                          isolated_env):
    result = ingest(definitions, instance, RUN)
    assert result.success
    events_path = isolated_env["warehouse"] / "lo2" / "raw_events" / f"{RUN}.parquet"
    events = pl.read_parquet(events_path)
    expected = loader.load_run(two_runs, RUN).events
    assert events.equals(expected)
    assert events.schema == pl.Schema(loader.EVENT_SCHEMA)
    seqs = pl.read_parquet(isolated_env["warehouse"] / "lo2" / "raw_sequences" / f"{RUN}.parquet")
    assert sorted(seqs["seq_id"]) == sorted(
        f"{RUN}__{tc}__{svc}" for tc, svc in [("correct", "token"), ("correct", "code"),
                                             (ERROR_CASE, "token")])

    [mat] = result.asset_materializations_for_node("lo2__raw_events")
    meta = {k: v.value for k, v in mat.metadata.items()}
    assert meta["dagster/row_count"] == len(events) == meta["events"]
    kinds = ("events", "continuation_lines", "trimmed_lines", "blank_lines", "rejected_lines")
    assert sum(meta[k] for k in kinds) == meta["lines"]
    assert meta["lines"] == 300 + (300 + 2) + 150  # the error case adds an event + a frame
    assert meta["continuation_lines"] == 1 and meta["files_read"] == 3
    assert meta["trimmed_lines"] == 300
    columns = [c.name for c in meta["dagster/column_schema"].columns]
    assert columns == list(loader.EVENT_SCHEMA)
    assert {r.data["service"] for r in meta["per_service"].records} == {"code", "token"}
    assert "correct/light-oauth2-oauth2-user-1.log" in meta["missing_service_files"]
    assert meta["files_without_events"] == "none"
    [check] = result.get_asset_check_evaluations()
    assert (check.check_name, check.passed) == (LINE_ACCOUNTING_CHECK, True)
    # What the metadata lists is also said in the run log, as a warning.
    warnings = [e.user_message for e in instance.all_logs(result.run_id)
                if e.level == logging.WARNING]
    assert any("service log files are missing" in w for w in warnings)


def test_data_version_follows_file_content(definitions, instance, two_runs):
    for run in (RUN, RUN_B):
        assert ingest(definitions, instance, run).success
    before = {run: data_version(instance, RAW_EVENTS, run) for run in (RUN, RUN_B)}
    seq_before = {run: data_version(instance, RAW_SEQUENCES, run) for run in (RUN, RUN_B)}
    # Same file contents, but the run's name (its date) is part of what the files say.
    assert before[RUN] != before[RUN_B]

    # Unchanged files: re-reading gives the same versions, downstream stays fresh.
    assert ingest(definitions, instance, RUN).success
    assert data_version(instance, RAW_EVENTS, RUN) == before[RUN]
    assert data_version(instance, RAW_SEQUENCES, RUN) == seq_before[RUN]

    # One changed file in run A: only A's version changes.
    changed = two_runs / "logs" / RUN / "correct" / "light-oauth2-oauth2-code-1.log"
    changed.write_text(changed.read_text() + line("16:32:00.000", "one more line") + "\n")
    job = definitions.resolve_job_def("lo2_ingest")
    job.execute_in_process(partition_key=RUN, instance=instance, asset_selection=[RAW_EVENTS])
    job.execute_in_process(partition_key=RUN_B, instance=instance, asset_selection=[RAW_EVENTS])
    assert data_version(instance, RAW_EVENTS, RUN) != before[RUN]
    assert data_version(instance, RAW_EVENTS, RUN_B) == before[RUN_B]

    found = stale_status(instance, definitions.resolve_asset_graph(),
                         [(RAW_SEQUENCES, RUN), (RAW_SEQUENCES, RUN_B)])
    assert found[(RAW_SEQUENCES, RUN)][0] == STALE
    assert found[(RAW_SEQUENCES, RUN_B)][0] == FRESH


def test_trim_setting_is_config_and_part_of_the_version(definitions, instance, two_runs):
    assert ingest(definitions, instance, RUN).success
    default = data_version(instance, RAW_EVENTS, RUN)
    result = ingest(definitions, instance, RUN, trim_lines=0)
    [mat] = result.asset_materializations_for_node("lo2__raw_events")
    assert mat.metadata["trimmed_lines"].value == 0
    assert data_version(instance, RAW_EVENTS, RUN) != default


def test_bad_run_fails_alone_with_the_folder_named(definitions, instance, two_runs):
    empty = two_runs / "logs" / "light-oauth2-data-1719620000"
    (empty / "stray_folder").mkdir(parents=True)
    result = ingest(definitions, instance, "light-oauth2-data-1719620000")
    assert not result.success
    [failure] = [ev for ev in result.all_events if ev.is_step_failure]
    message = failure.step_failure_data.user_failure_data.description
    assert str(empty) in message and "no test-case folders" in message
    # Another run is not affected.
    assert ingest(definitions, instance, RUN).success


def test_bad_partition_key_is_a_clear_error(definitions, instance, two_runs):
    result = ingest(definitions, instance, "light-oauth2-data-1..x")
    assert not result.success
    [failure] = [ev for ev in result.all_events if ev.is_step_failure]
    assert "Invalid run partition key" in failure.step_failure_data.user_failure_data.description


def test_line_accounting_check_fails_when_lines_go_missing(two_runs):
    loaded = loader.load_run(two_runs, RUN)
    assert _line_accounting_check(loaded).passed
    loaded.files = loaded.files.with_columns(
        pl.when(pl.col("service") == "code").then(pl.col("lines") + 1).otherwise("lines")
        .alias("lines"))
    failed = _line_accounting_check(loaded)
    assert not failed.passed
    assert "correct/light-oauth2-oauth2-code-1.log" in failed.metadata["files_not_adding_up"].value


def test_empty_and_startup_only_files_are_listed(definitions, instance, write_run, isolated_env):
    write_run({("correct", "token"): EXCERPT.read_text(), ("correct", "key"): "",
               ("correct", "code"): "\n".join(EXCERPT.read_text().splitlines()[:100])})
    result = ingest(definitions, instance, RUN)
    [mat] = result.asset_materializations_for_node("lo2__raw_events")
    listed = mat.metadata["files_without_events"].value
    assert "correct/light-oauth2-oauth2-key-1.log" in listed
    assert "correct/light-oauth2-oauth2-code-1.log" in listed
    assert "token" not in listed
    assert mat.metadata["empty_files"].value == 1
