"""`lo2-dagster run`, the README's main command, end to end (`lo2-dagster synth` + `lo2-dagster
run` as a user types them), the order it runs requests in, and the committed sample."""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from lo2_dagster import settings
from lo2_dagster.defs.runs import RUNS
from lo2_dagster.pipeline import materialize_all
from lo2_dagster.synth import SynthConfig, generate

CLI = str(Path(sys.executable).parent / "lo2-dagster")


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=600)


def test_synth_then_run_end_to_end(tmp_path):
    env = dict(os.environ, DAGSTER_HOME=str(tmp_path / "home"))
    env.pop(settings.ENV_ROOT, None)
    env.pop(settings.ENV_WAREHOUSE, None)
    data, warehouse = tmp_path / "lo2", tmp_path / "warehouse"
    synth = cli("synth", str(data), "--runs", "2", "--token-lines", "5", "--seed", "3", env=env)
    assert synth.returncode == 0, synth.stderr
    runs = sorted(p.name for p in (data / "logs").iterdir())
    assert len(runs) == 2

    # A third run folder with logs but without test cases: it fails alone, named; the others
    # are written. A folder without any logs is not a run, and is said to be skipped.
    (data / "logs" / "light-oauth2-data-1900000000" / "stray").mkdir(parents=True)
    (data / "logs" / "light-oauth2-data-1900000000" / "stray" / "notes.log").write_text("?")
    (data / "logs" / "pre_run_results").mkdir()
    result = cli("run", "--root", str(data), "--warehouse", str(warehouse), env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "light-oauth2-data-1900000000 has no test-case folders" in result.stdout
    assert "not runs (no log files in them): pre_run_results" in result.stdout
    # As the automation conditions request them: 3 x raw (a new run's raw events, message
    # counts and sequences in one Dagster run), the templates, 2 x enhanced (the bad run's
    # inputs are missing), exports + training set + model, 2 x predictions, the report.
    assert "3 runs, 10 Dagster runs, 1 failed" in result.stdout
    assert "missing for light-oauth2-data-1900000000, not requested" in result.stdout
    for run in runs:
        events = pl.read_parquet(warehouse / "lo2" / "raw_events" / f"{run}.parquet")
        seqs = pl.read_parquet(warehouse / "lo2" / "raw_sequences" / f"{run}.parquet")
        assert len(seqs) == 54 * 7 and events["seq_id"].n_unique() == 54 * 7
        enhanced = pl.read_parquet(warehouse / "lo2" / "sequences_enhanced" / f"{run}.parquet")
        assert enhanced["seq_len"].sum() == len(events) and len(enhanced) == 54 * 7
    assert (warehouse / "lo2" / "drain_templates" / "drain3_state.json").exists()
    exported = pl.scan_parquet(warehouse / "exports" / "lo2_events_enhanced" / "*.parquet")
    assert exported.select(pl.len()).collect().item() == sum(
        pl.scan_parquet(warehouse / "lo2" / "raw_events" / f"{r}.parquet")
        .select(pl.len()).collect().item() for r in runs)
    assert f"files:  {warehouse}/lo2/<asset>/<run>.parquet" in result.stdout
    model_yml = warehouse / "lo2" / "anomaly_model" / "model.yml"
    trained = model_yml.read_text()
    assert "training_runs:" in trained and f"model:  {warehouse}/lo2/anomaly_model/" in \
        result.stdout
    for run in runs:
        predictions = pl.read_parquet(warehouse / "lo2" / "predictions" / f"{run}.parquet")
        assert len(predictions) == 54 * 7 and predictions["rank"].min() == 1
    assert "http://127.0.0.1:3000" in result.stdout

    # The persistent instance has the partitions and the history the UI shows.
    os.environ["DAGSTER_HOME"], saved = env["DAGSTER_HOME"], os.environ.get("DAGSTER_HOME")
    try:
        with dg.DagsterInstance.get() as instance:
            assert set(instance.get_dynamic_partitions("lo2_runs")) == {
                *runs, "light-oauth2-data-1900000000"}
            done = instance.get_materialized_partitions(dg.AssetKey(["lo2", "raw_sequences"]))
            assert done == set(runs)
            assert len(instance.get_run_records()) == 10
    finally:
        if saved is None:
            os.environ.pop("DAGSTER_HOME")
        else:
            os.environ["DAGSTER_HOME"] = saved

    # Only the good runs, by name, nothing changed: nothing is rewritten, and it says so.
    files = sorted(p for p in warehouse.rglob("*.*") if not p.name.startswith("."))  # no lock
    written = {p: p.stat().st_mtime_ns for p in files}
    again = cli("run", "--root", str(data), "--warehouse", str(warehouse), "--runs", *runs,
                env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "2 runs, 0 Dagster runs, 0 failed (nothing was requested" in again.stdout
    assert "source files unchanged since last observed" in again.stdout
    assert "[lo2/raw_events, lo2/message_counts, lo2/raw_sequences, lo2/events_enhanced, " \
        "lo2/sequences_enhanced, lo2/predictions, lo2/explanations, lo2/score_drift]: up to " \
        "date for 2 of 2" in again.stdout
    assert {p: p.stat().st_mtime_ns for p in files} == written

    # One log file of the first run changes: that run's chain is rewritten, the other run's
    # files are not; the templates, exports and model are kept until the retrain cron.
    log = data / "logs" / runs[0] / "correct" / "light-oauth2-oauth2-token-1.log"
    log.write_text(log.read_text() + "2024-06-28 16:59:59.999 [XNIO-1 task-2]  abc DEBUG "
                   "c.n.o.t.h.Oauth2TokenPostHandler handleRequest - an extra line\n")
    changed = cli("run", "--root", str(data), "--warehouse", str(warehouse), "--runs", *runs,
                  env=env)
    assert changed.returncode == 0, changed.stdout + changed.stderr
    assert f"[observe]: new or changed: lo2/run_logs[{runs[0]}] (1)" in changed.stdout
    assert "keep lo2/drain_templates (already materialized" in changed.stdout
    assert "keep lo2/anomaly_model (already materialized" in changed.stdout
    assert model_yml.read_text() == trained
    rewritten = {p for p in files if p.stat().st_mtime_ns != written[p]}
    per_run = {p for p in rewritten if p.suffix == ".parquet" and p.parent.parent.name == "lo2"}
    assert {p.stem for p in per_run} == {runs[0]}
    assert {p.parent.name for p in per_run} == {
        "raw_events", "raw_sequences", "message_counts", "events_enhanced",
        "sequences_enhanced", "predictions", "explanations", "score_drift"}
    assert warehouse / "lo2" / "training_set.parquet" in rewritten
    assert "keep lo2/enhanced_exports (already materialized" in changed.stdout

    # --force rewrites everything, the model included (retrained on the same data: same bytes).
    forced = cli("run", "--root", str(data), "--warehouse", str(warehouse), "--force", env=env)
    assert "3 runs, 9 Dagster runs, 1 failed" in forced.stdout, forced.stdout
    # (the exports copy a run again only when its data version changes: same data, kept)
    assert all(p.stat().st_mtime_ns != written[p] for p in files
               if p.suffix == ".parquet" and "exports" not in p.parts)


def test_run_without_runs_says_what_to_do(tmp_path):
    env = dict(os.environ, DAGSTER_HOME=str(tmp_path / "home"))
    (tmp_path / "empty" / "logs").mkdir(parents=True)
    result = cli("run", "--root", str(tmp_path / "empty"), "--warehouse", str(tmp_path / "w"),
                 env=env)
    assert result.returncode == 2
    assert "no run folders under" in result.stderr and "lo2-dagster synth" in result.stderr


def test_requests_run_in_dependency_order_per_run_and_whole_dataset(tmp_path):
    """What is requested at once runs upstream first: per run, what does not wait for an asset
    over every run shares one Dagster run; the assets over every run run between, each as
    soon as what it reads is done."""
    runs = RUNS

    @dg.asset(partitions_def=runs)
    def a(): ...

    @dg.asset(partitions_def=runs, deps=[a])
    def b(): ...

    @dg.asset(deps=[b])
    def model(): ...

    @dg.asset(partitions_def=runs, deps=[b, model])
    def predictions(): ...

    @dg.asset(deps=[predictions])
    def report(): ...

    @dg.asset
    def standalone(): ...

    definitions = dg.Definitions(
        assets=[a, b, model, predictions, report, standalone],
        resources={"io_manager": dg.FilesystemIOManager(base_dir=str(tmp_path))})
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(RUNS.name, ["r1", "r2"])
        outcomes = materialize_all(definitions, instance, ["r1", "r2"], report=lambda _: None,
                                   force=True)
    assert [(o.partition, {k.to_user_string() for k in o.keys}) for o in outcomes] == [
        ("r1", {"a", "b"}),
        ("r2", {"a", "b"}),
        (None, {"standalone"}),
        (None, {"model"}),
        ("r1", {"predictions"}),
        ("r2", {"predictions"}),
        (None, {"report"}),
    ]


def test_committed_sample_is_the_generators_output(tmp_path):
    """data/lo2-sample is exactly `lo2-dagster synth data/lo2-sample --runs 3 --seed 0`."""
    sample = settings.default_lo2_root()
    generate(tmp_path, SynthConfig(runs=3, seed=0))

    def digests(root: Path) -> dict[str, str]:
        return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(root.rglob("*")) if p.is_file()}

    committed = digests(sample)
    assert len(committed) == 3 * 54 * 7 + 3
    assert committed == digests(tmp_path)
    assert sum(p.stat().st_size for p in sample.rglob("*") if p.is_file()) < 15.5e6


def test_a_failed_whole_dataset_stage_stops_what_follows(tmp_path):
    @dg.asset(partitions_def=RUNS)
    def per_run(context: dg.AssetExecutionContext) -> int:
        if context.partition_key == "bad":
            raise ValueError("bad run")
        return 1

    @dg.asset(deps=[per_run])
    def whole() -> int:
        raise RuntimeError("model failed")

    @dg.asset(partitions_def=RUNS, deps=[whole])
    def after(): ...

    definitions = dg.Definitions(
        assets=[per_run, whole, after],
        resources={"io_manager": dg.FilesystemIOManager(base_dir=str(tmp_path))},
    )
    lines: list[str] = []
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(RUNS.name, ["good", "bad"])
        outcomes = materialize_all(definitions, instance, ["good", "bad"], report=lines.append,
                                   force=True)
    assert [(o.partition, o.success) for o in outcomes] == [  # runs in name order
        ("bad", False), ("good", True), (None, False)]
    assert "bad run" in outcomes[0].error and "model failed" in outcomes[2].error
    assert "  skip after[good]: whole failed" in lines
    assert "  skip after[bad]: whole failed" in lines


def test_the_commands_set_how_polars_allocator_returns_memory(monkeypatch):
    """`lo2-dagster` sets jemalloc's decay (unless the user set one) before polars is imported:
    importing the command's module must not import polars."""
    monkeypatch.delenv(settings.ENV_JEMALLOC, raising=False)
    settings.return_freed_memory()
    assert os.environ[settings.ENV_JEMALLOC] == settings.JEMALLOC_CONF
    monkeypatch.setenv(settings.ENV_JEMALLOC, "dirty_decay_ms:5000")
    settings.return_freed_memory()
    assert os.environ[settings.ENV_JEMALLOC] == "dirty_decay_ms:5000"
    probe = subprocess.run(
        [sys.executable, "-c", "import sys, lo2_dagster.cli; print('polars' in sys.modules)"],
        capture_output=True, text=True, check=True)
    assert probe.stdout.strip() == "False"


def test_the_run_command_makes_fewer_full_garbage_collections_and_restores_the_setting():
    """Within ``fewer_full_collections`` the oldest generation is collected at most once per
    FULL_COLLECTION_EVERY middle-generation collections (never more often than before); the
    process's thresholds are restored afterwards, also after an error."""
    import gc

    before = gc.get_threshold()
    with settings.fewer_full_collections():
        young, middle, old = gc.get_threshold()
        assert (young, middle) == before[:2]
        assert old == max(before[2], settings.FULL_COLLECTION_EVERY)
    assert gc.get_threshold() == before
    gc.set_threshold(before[0], before[1], 1000)
    try:
        with pytest.raises(RuntimeError), settings.fewer_full_collections(every=50):
            assert gc.get_threshold()[2] == 1000  # already rarer: kept
            raise RuntimeError("a failing command")
        assert gc.get_threshold() == (before[0], before[1], 1000)
    finally:
        gc.set_threshold(*before)


def test_the_dagster_runs_of_a_command_do_not_query_the_run_partitions(tmp_path):
    """`materialize_all` reads the run partitions once (``partitions_read_once``): the steps'
    contexts and metadata, which ask whether their partition exists, and the evaluations get
    their answers from that read, not from the storage (a query and, on SQLite, a connection
    each)."""
    @dg.asset(partitions_def=RUNS)
    def per_run(context: dg.AssetExecutionContext) -> int:
        context.add_output_metadata({"run": context.partition_key})
        return len(context.partition_keys)

    definitions = dg.Definitions(
        assets=[per_run],
        resources={"io_manager": dg.FilesystemIOManager(base_dir=str(tmp_path))},
    )
    with dg.DagsterInstance.ephemeral() as instance:
        storage = instance.event_log_storage
        asked: list[str] = []
        storage_has = storage.has_dynamic_partition

        def counting(partitions_def_name: str, partition_key: str) -> bool:
            asked.append(partition_key)
            return storage_has(partitions_def_name, partition_key)

        storage.has_dynamic_partition = counting  # type: ignore[method-assign]
        outcomes = materialize_all(definitions, instance, ["r1", "r2"], report=lambda _: None,
                                   force=True)
        assert [(o.partition, o.success) for o in outcomes] == [("r1", True), ("r2", True)]
        assert asked == []
        assert instance.has_dynamic_partition(RUNS.name, "r1")  # the storage again, afterwards
        assert asked == ["r1"]
