"""The feature assets through Dagster: real runs on a real (ephemeral) instance and real files."""

import logging
from pathlib import Path

import dagster as dg
import fsspec
import polars as pl
import pytest
from upath import UPath

from lo2_dagster import settings
from lo2_dagster.definitions import defs
from lo2_dagster.defs.features.assets import _drain_ids_check, _schema_check
from lo2_dagster.defs.features.exports import EVENTS_DATASET, SEQUENCES_DATASET
from lo2_dagster.defs.keys import (
    DRAIN_TEMPLATES,
    ENHANCED_EXPORTS,
    EVENTS_ENHANCED,
    FP_ALLOWLIST,
    MESSAGE_COUNTS,
    RAW_EVENTS,
    RAW_SEQUENCES,
    SEQUENCES_ENHANCED,
)
from lo2_dagster.defs.runs import RUNS
from lo2_dagster.lib import templates as drain
from lo2_dagster.lib.enhance import EVENTS_ENHANCED_SCHEMA, SEQUENCES_ENHANCED_SCHEMA
from lo2_dagster.lib.masking import MAX_FEATURE_CHARS
from lo2_dagster_tests.conftest import EXCERPT, RUN, line
from lo2_dagster_tests.staleness import FRESH, STALE, stale_status

RUN_B = "light-oauth2-data-1719610000"
ERROR_CASE = "access_token_client_secret_wrong_401"
ENHANCED = [EVENTS_ENHANCED, SEQUENCES_ENHANCED]


@pytest.fixture
def env(isolated_env, monkeypatch, write_run) -> dict[str, Path]:
    text = EXCERPT.read_text()
    trace = line("16:31:00.000", "ApiException: ERR12001 client not found", level="ERROR") \
        + "\n\tat a.B.c(B.java:1)\n"
    files = {("correct", "token"): text,
             ("correct", "code"): "\n".join(text.splitlines()[:150]) + "\n",
             (ERROR_CASE, "token"): text + trace}
    write_run(files, run=RUN)
    write_run({**files, ("correct", "user"): "\n".join(text.splitlines()[100:180]) + "\n"},
              run=RUN_B)
    allowlist = isolated_env["root"].parent / "fp_allowlist.toml"
    allowlist.write_text('[[event]]\nname = "cfg"\nmessage = \'^Config loaded\'\n')
    monkeypatch.setenv(settings.ENV_ALLOWLIST, str(allowlist))
    return {**isolated_env, "allowlist": allowlist}


@pytest.fixture
def instance(env):
    with dg.DagsterInstance.ephemeral() as inst:
        yield inst


def execute(instance, keys, partition=None, config=None) -> dg.ExecuteInProcessResult:
    job = defs().resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(instance=instance, asset_selection=keys,
                                    partition_key=partition, run_config=config,
                                    raise_on_error=False)
    return result


def ingest(instance, runs) -> None:
    new = [r for r in runs if not instance.has_dynamic_partition(RUNS.name, r)]
    instance.add_dynamic_partitions(RUNS.name, new)
    for run in runs:
        assert execute(instance, [RAW_EVENTS, RAW_SEQUENCES, MESSAGE_COUNTS], run).success


def everything(instance, runs=(RUN, RUN_B)) -> None:
    assert execute(instance, [FP_ALLOWLIST]).success
    ingest(instance, runs)
    assert execute(instance, [DRAIN_TEMPLATES]).success
    for run in runs:
        result = execute(instance, ENHANCED, run)
        assert result.success
        evaluations = result.get_asset_check_evaluations()
        assert len(evaluations) == 8  # 4 checks x 2 tables, recorded for this run's partition
        assert {c.partition for c in evaluations} == {run}
        assert [c.check_name for c in evaluations if not c.passed] == []
    assert execute(instance, [ENHANCED_EXPORTS]).success


def warehouse_file(env, key: dg.AssetKey, run: str) -> Path:
    return env["warehouse"].joinpath(*key.path, f"{run}.parquet")


def test_the_whole_chain_with_checks_metadata_and_exports(env, instance):
    everything(instance)
    for run in (RUN, RUN_B):
        raw = pl.read_parquet(warehouse_file(env, RAW_EVENTS, run))
        events = pl.read_parquet(warehouse_file(env, EVENTS_ENHANCED, run))
        sequences = pl.read_parquet(warehouse_file(env, SEQUENCES_ENHANCED, run))
        assert events.schema == pl.Schema(EVENTS_ENHANCED_SCHEMA)
        assert sequences.schema == pl.Schema(SEQUENCES_ENHANCED_SCHEMA)
        assert events["row_id"].equals(raw["row_id"])
        counts = pl.read_parquet(warehouse_file(env, MESSAGE_COUNTS, run))
        assert counts["count"].sum() == len(raw)
        keys = raw.select("level", "logger", "method").with_columns(
            events["e_message_normalized"]).select(drain.message_key())
        assert counts[drain.KEY].unique().sort().equals(keys[drain.KEY].unique().sort())
        assert sequences["seq_len"].sum() == len(raw)
        flagged = events.filter("is_fp_allowlisted")
        assert len(flagged) and flagged["m_message"].str.starts_with("Config loaded").all()

    record = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=EVENTS_ENHANCED, asset_partitions=[RUN]), limit=1
    ).records[0].asset_materialization
    meta = {k: v.value for k, v in record.metadata.items()}
    assert meta["dagster/row_count"] == len(pl.read_parquet(
        warehouse_file(env, RAW_EVENTS, RUN)))
    assert meta["unmatched_lines"] == 0 and meta["fp_allowlisted_lines"] > 0
    assert meta["relabelled_lines"] > 0  # Config lines of the error case
    seq_record = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=SEQUENCES_ENHANCED, asset_partitions=[RUN]), limit=1
    ).records[0].asset_materialization
    assert seq_record.metadata["dagster/row_count"].value == 3

    templates = instance.fetch_materializations(DRAIN_TEMPLATES, limit=1).records[0]
    tmeta = templates.asset_materialization.metadata
    assert tmeta["training_run_count"].value == 2
    assert tmeta["templates"].value == len(tmeta["template_table"].value.records) > 5
    state = env["warehouse"] / "lo2" / "drain_templates" / "drain3_state.json"
    assert state.read_bytes().startswith(b'{"py/object": "drain3.drain.Drain"')

    # The exports hold every run's rows, in run order, exactly as the partition files.
    exported = pl.read_parquet(env["warehouse"] / "exports" / EVENTS_DATASET / "*.parquet")
    parts = [pl.read_parquet(warehouse_file(env, EVENTS_ENHANCED, r)) for r in sorted((RUN,
                                                                                      RUN_B))]
    assert exported.equals(pl.concat(parts))
    exported_seqs = pl.read_parquet(env["warehouse"] / "exports" / SEQUENCES_DATASET /
                                    "*.parquet")
    assert exported_seqs.equals(pl.concat(
        [pl.read_parquet(warehouse_file(env, SEQUENCES_ENHANCED, r)) for r in sorted((RUN,
                                                                                     RUN_B))]))


def test_exports_rewrite_only_the_runs_that_changed(env, instance):
    """One run's enhanced tables change: the next export copies that run's files only; a run
    whose partition is gone is removed from the datasets."""
    everything(instance)
    folder = env["warehouse"] / "exports"
    mtimes = {p: p.stat().st_mtime_ns for p in folder.rglob("*.parquet")}
    assert len(mtimes) == 4  # 2 runs x (events, sequences)
    assert execute(instance, [ENHANCED_EXPORTS]).success  # nothing changed: nothing copied
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*.parquet")} == mtimes
    meta = instance.get_latest_materialization_event(ENHANCED_EXPORTS) \
        .asset_materialization.metadata
    assert meta["event_runs_written"].value == 0 and meta["event_runs_unchanged"].value == 2

    # RUN's enhanced tables rebuilt with other data (another allowlist version would do; here
    # a changed log line re-read): a new data version, so RUN's files are copied again.
    log = env["root"] / "logs" / RUN / "correct" / "light-oauth2-oauth2-token-1.log"
    log.write_text(log.read_text() + line("16:34:00.000", "token issued again") + "\n")
    assert execute(instance, [RAW_EVENTS, RAW_SEQUENCES, MESSAGE_COUNTS], RUN).success
    assert execute(instance, ENHANCED, RUN).success
    assert execute(instance, [ENHANCED_EXPORTS]).success
    changed = {p.parent.name + "/" + p.stem for p, t in mtimes.items()
               if p.stat().st_mtime_ns != t}
    assert changed == {f"{EVENTS_DATASET}/{RUN}", f"{SEQUENCES_DATASET}/{RUN}"}
    exported = pl.read_parquet(folder / EVENTS_DATASET / "*.parquet")
    assert exported.equals(pl.concat([pl.read_parquet(warehouse_file(env, EVENTS_ENHANCED, r))
                                      for r in sorted((RUN, RUN_B))]))

    # RUN_B's partition deleted: its files leave the datasets.
    instance.delete_dynamic_partition(RUNS.name, RUN_B)
    assert execute(instance, [ENHANCED_EXPORTS]).success
    assert sorted(p.name for p in (folder / EVENTS_DATASET).glob("*.parquet")) == \
        [f"{RUN}.parquet"]


def test_template_ids_are_the_same_for_any_partition_order_and_on_rerun(env, tmp_path,
                                                                        monkeypatch):
    states, ids = [], []
    for order in ((RUN, RUN_B), (RUN_B, RUN)):
        warehouse = tmp_path / "-".join(o[-4:] for o in order)
        monkeypatch.setenv(settings.ENV_WAREHOUSE, str(warehouse))
        with dg.DagsterInstance.ephemeral() as instance:
            everything(instance, order)
            version = _data_version(instance, DRAIN_TEMPLATES)
            assert execute(instance, [DRAIN_TEMPLATES]).success  # rematerialize: same version
            assert _data_version(instance, DRAIN_TEMPLATES) == version
        states.append((warehouse / "lo2" / "drain_templates" / "drain3_state.json").read_bytes())
        ids.append(pl.read_parquet(warehouse / "lo2" / "events_enhanced" / f"{RUN}.parquet")
                   ["e_event_drain_id"])
    assert states[0] == states[1]
    assert ids[0].equals(ids[1])


def _data_version(instance, key, partition=None) -> str:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition] if partition else None),
        limit=1).records
    return records[0].asset_materialization.tags["dagster/data_version"]


def test_editing_the_allowlist_makes_only_the_enhanced_tables_stale(env, instance):
    everything(instance)
    graph = defs().resolve_asset_graph()

    def statuses():
        keys = [RAW_EVENTS, RAW_SEQUENCES, *ENHANCED]
        found = stale_status(instance, graph, [(k, r) for k in keys for r in (RUN, RUN_B)]
                             + [(DRAIN_TEMPLATES, None)])
        per_run = {k: {r: found[(k, r)][0] for r in (RUN, RUN_B)} for k in keys}
        return per_run, found[(DRAIN_TEMPLATES, None)][0]

    fresh = {r: FRESH for r in (RUN, RUN_B)}
    assert statuses() == ({k: fresh for k in [RAW_EVENTS, RAW_SEQUENCES, *ENHANCED]},
                          FRESH)

    # Observing the unchanged file again, or with a new comment, changes nothing.
    env["allowlist"].write_text("# benign patterns\n" + env["allowlist"].read_text())
    assert execute(instance, [FP_ALLOWLIST]).success
    assert statuses()[0][EVENTS_ENHANCED] == fresh

    # An edit, once observed: the enhanced tables of every run are stale, nothing else.
    env["allowlist"].write_text(env["allowlist"].read_text()
                                + '\n[[sequence]]\nname = "code"\nseq_id = \'__code$\'\n')
    assert execute(instance, [FP_ALLOWLIST]).success
    per_run, templates = statuses()
    stale = {r: STALE for r in (RUN, RUN_B)}
    assert per_run == {RAW_EVENTS: fresh, RAW_SEQUENCES: fresh, EVENTS_ENHANCED: stale,
                       SEQUENCES_ENHANCED: stale}
    assert templates == FRESH

    # Rematerialized with the new rule: the code sequences are allowlisted, fresh again.
    for run in (RUN, RUN_B):
        result = execute(instance, ENHANCED, run)
        assert result.success
        assert not _warnings(instance, result, "differs from the last observation")
    sequences = pl.read_parquet(warehouse_file(env, SEQUENCES_ENHANCED, RUN))
    assert sequences.filter("is_fp_allowlisted")["service"].to_list() == ["code"]
    assert statuses()[0][SEQUENCES_ENHANCED] == fresh

    # Edited but not observed: the tables use the file as it is, and say it was not observed.
    env["allowlist"].write_text(env["allowlist"].read_text()
                                + '\n[[sequence]]\nname = "key"\nseq_id = \'__key$\'\n')
    result = execute(instance, [EVENTS_ENHANCED], RUN)
    assert result.success
    assert _warnings(instance, result, "differs from the last observation of lo2/fp_allowlist")


def _warnings(instance, result, text: str) -> list[str]:
    return [e.user_message for e in instance.all_logs(result.run_id)
            if e.level == logging.WARNING and text in e.user_message]


def test_training_runs_are_configurable_and_checked(env, instance):
    ingest(instance, [RUN, RUN_B])
    config = {"ops": {"lo2__drain_templates": {"config": {"training_runs": [RUN]}}}}
    result = execute(instance, [DRAIN_TEMPLATES], config=config)
    assert result.success
    [mat] = result.asset_materializations_for_node("lo2__drain_templates")
    assert mat.metadata["training_run_count"].value == 1
    assert RUN in mat.metadata["training_runs"].value and RUN_B not in \
        mat.metadata["training_runs"].value

    unknown = {"training_runs": ["light-oauth2-data-1"]}
    config = {"ops": {"lo2__drain_templates": {"config": unknown}}}
    result = execute(instance, [DRAIN_TEMPLATES], config=config)
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert "light-oauth2-data-1" in failure.step_failure_data.user_failure_data.description


def test_templates_before_any_ingest_say_what_to_do(env, instance):
    instance.add_dynamic_partitions(RUNS.name, [RUN])
    result = execute(instance, [DRAIN_TEMPLATES])
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert "materialize lo2/raw_events" in failure.step_failure_data.user_failure_data.description


def test_an_invalid_allowlist_fails_the_step_naming_the_file(env, instance):
    ingest(instance, [RUN])
    assert execute(instance, [DRAIN_TEMPLATES]).success
    env["allowlist"].write_text('[[event]]\nname = "bad"\nmessage = "(unclosed"\n')
    result = execute(instance, [EVENTS_ENHANCED], RUN)
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    message = failure.step_failure_data.user_failure_data.description
    assert str(env["allowlist"]) in message and "invalid regex" in message


def test_the_checks_fail_on_drift():
    wrong = dict(EVENTS_ENHANCED_SCHEMA)
    wrong["e_words_len"] = pl.Int64()
    result = _schema_check(EVENTS_ENHANCED, pl.Schema(wrong), EVENTS_ENHANCED_SCHEMA)
    assert not result.passed and "e_words_len" in result.metadata["differences"].value
    short = dict(list(EVENTS_ENHANCED_SCHEMA.items())[:-1])
    assert not _schema_check(EVENTS_ENHANCED, pl.Schema(short), EVENTS_ENHANCED_SCHEMA).passed
    assert _schema_check(EVENTS_ENHANCED, pl.Schema(EVENTS_ENHANCED_SCHEMA),
                         EVENTS_ENHANCED_SCHEMA).passed

    templates = drain.train(drain.merge_counts({"run": pl.DataFrame(
        {"service": ["token"], drain.KEY: ["INFO x y - a b c"], "count": [1],
         "first_seen": [None]}, schema=drain.MESSAGE_COUNTS_SCHEMA)}))
    ok = _drain_ids_check(EVENTS_ENHANCED, pl.Series(["e1", drain.UNMATCHED]), templates)
    assert ok.passed and ok.metadata["unmatched_rows"].value == 1
    bad = _drain_ids_check(EVENTS_ENHANCED, pl.Series(["e1", "e77"]), templates)
    assert not bad.passed and "e77" in bad.metadata["unknown_ids"].value


def test_the_chain_works_on_a_remote_warehouse(env, monkeypatch):
    """An fsspec URL as warehouse (memory://, as s3:// would be): templates folder, streamed
    sequences, checks reading the written files and the exports all go through fsspec."""
    monkeypatch.setenv(settings.ENV_WAREHOUSE, "memory://lo2-test-warehouse")
    with dg.DagsterInstance.ephemeral() as instance:
        everything(instance)
    root = UPath("memory://lo2-test-warehouse")
    try:
        assert (root / "lo2" / "drain_templates" / "drain3_state.json").exists()
        with (root / "lo2" / "sequences_enhanced" / f"{RUN}.parquet").open("rb") as f:
            sequences = pl.read_parquet(f)
        assert sequences.schema == pl.Schema(SEQUENCES_ENHANCED_SCHEMA) and len(sequences) == 3
        with (root / "exports" / EVENTS_DATASET / f"{RUN}.parquet").open("rb") as f:
            assert pl.read_parquet(f).schema == pl.Schema(EVENTS_ENHANCED_SCHEMA)
    finally:
        fsspec.filesystem("memory").rm("/lo2-test-warehouse", recursive=True)


def test_new_runs_are_matched_and_exports_refuse_mixed_templates(env, instance):
    """Templates trained on RUN only; RUN_B has a message RUN never logged: it gets e0, is
    counted and warned about. Retraining on both runs renumbers ids: until RUN is rebuilt,
    the exports refuse to mix the two numberings."""
    extra = env["root"] / "logs" / RUN_B / "correct" / "light-oauth2-oauth2-token-1.log"
    novel = " ".join(f"word{chr(97 + i)}" for i in range(26))  # 26 tokens: no such template
    extra.write_text(extra.read_text() + line("16:33:00.000", novel) + "\n")
    assert execute(instance, [FP_ALLOWLIST]).success
    ingest(instance, [RUN, RUN_B])
    config = {"ops": {"lo2__drain_templates": {"config": {"training_runs": [RUN]}}}}
    assert execute(instance, [DRAIN_TEMPLATES], config=config).success
    for run in (RUN, RUN_B):
        assert execute(instance, ENHANCED, run).success
    result = execute(instance, ENHANCED, RUN_B)
    [mat] = [m for m in result.asset_materializations_for_node("lo2__events_enhanced")]
    assert mat.metadata["unmatched_lines"].value >= 1
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()
              if c.asset_key == EVENTS_ENHANCED}
    assert checks["drain_ids_known"].passed
    assert checks["drain_ids_known"].metadata["unmatched_rows"].value >= 1
    warnings = [e.user_message for e in instance.all_logs(result.run_id)
                if e.level == logging.WARNING]
    assert any("match no trained template" in w for w in warnings)
    assert execute(instance, [ENHANCED_EXPORTS]).success

    assert execute(instance, [DRAIN_TEMPLATES]).success  # now trained on both runs
    assert execute(instance, ENHANCED, RUN_B).success
    result = execute(instance, [ENHANCED_EXPORTS])
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    message = failure.step_failure_data.user_failure_data.description
    assert f"lo2/events_enhanced[{RUN}]" in message and RUN_B not in message
    assert execute(instance, ENHANCED, RUN).success
    assert execute(instance, [ENHANCED_EXPORTS]).success


def test_a_10_mb_line_is_stored_whole_and_its_cut_counted(env, instance):
    """One 10 MB line (one token, no spaces) in RUN: every step succeeds, events_enhanced
    stores the line whole, and the metadata and a warning say its features came from a
    prefix."""
    log = env["root"] / "logs" / RUN / "correct" / "light-oauth2-oauth2-token-1.log"
    message = ("loremipsum" * 1_000_000)
    log.write_text(log.read_text() + line("16:33:00.000", message) + "\n")
    everything(instance, runs=(RUN,))

    events = pl.read_parquet(warehouse_file(env, EVENTS_ENHANCED, RUN))
    [long] = events.filter(pl.col("e_chars_len") > MAX_FEATURE_CHARS).iter_rows(named=True)
    assert long["m_message"] == message
    assert len(long["e_message_normalized"]) <= MAX_FEATURE_CHARS
    assert long["e_trigrams_len"] == len(long["e_message_normalized"]) - 2
    meta = _metadata(instance, EVENTS_ENHANCED, RUN)
    assert meta["messages_cut_for_features"] == 1
    assert meta["max_feature_chars"] == MAX_FEATURE_CHARS
    counts = _metadata(instance, MESSAGE_COUNTS, RUN)
    assert counts["lines_cut_for_features"] == 1
    sequences = pl.read_parquet(warehouse_file(env, SEQUENCES_ENHANCED, RUN))
    assert [message in m for m in sequences["m_message"]].count(True) == 1

    result = execute(instance, [EVENTS_ENHANCED], RUN)  # the warning names the run and row
    [warning] = _warnings(instance, result, f"longer than {MAX_FEATURE_CHARS:,} characters")
    assert RUN in warning and f"row_id {long['row_id']} of {long['seq_id']}" in warning


def _metadata(instance, key: dg.AssetKey, run: str) -> dict[str, object]:
    record = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[run]), limit=1).records[0]
    return {k: v.value for k, v in record.asset_materialization.metadata.items()}
