"""LO2 v2 end to end, as a user types it: `lo2-dagster synth --layout v2`, then `lo2-dagster run`.
v2 names its runs `oauth2_logs_LO2_run_<epoch>`, keeps pre-run results beside them, shuffles
the test order (start-up output in whichever test case ran first), has per-test-case metrics
folders, and some runs lack a few error cases: none of that is an error."""

import os

import dagster as dg
import polars as pl

from lo2_dagster import settings
from lo2_dagster.defs.keys import ANOMALY_MODEL, RAW_EVENTS
from lo2_dagster.defs.runs import RUNS
from lo2_dagster.lib.layout import scan_runs
from lo2_dagster.lib.names import RUN_PREFIX_V2, run_start
from lo2_dagster.synth import SynthConfig, plan_runs
from lo2_dagster_tests.test_main_job import cli


def test_lo2_v2_download_end_to_end(tmp_path):
    env = dict(os.environ, DAGSTER_HOME=str(tmp_path / "home"))
    env.pop(settings.ENV_ROOT, None)
    env.pop(settings.ENV_WAREHOUSE, None)
    data, warehouse = tmp_path / "lo2", tmp_path / "warehouse"
    synth = cli("synth", str(data), "--layout", "v2", "--runs", "3", "--token-lines", "25",
                "--seed", "0", env=env)
    assert synth.returncode == 0, synth.stderr
    plans = plan_runs(SynthConfig.lo2_v2(runs=3, token_lines=25, seed=0))
    lacking = {p.name: p.missing for p in plans if p.missing}
    assert lacking, "the generator should make a run that lacks some error cases"
    runs = scan_runs(data).runs
    assert runs == sorted(p.name for p in plans) and all(
        r.startswith(RUN_PREFIX_V2) for r in runs)

    result = cli("run", "--root", str(data), "--warehouse", str(warehouse), env=env)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "not runs (no log files in them): pre_run_results" in result.stdout
    assert "Ignored" not in out and "carries no epoch" not in out  # metrics are known entries
    assert "3 runs," in result.stdout and "0 failed" in result.stdout

    os.environ["DAGSTER_HOME"], saved = env["DAGSTER_HOME"], os.environ.get("DAGSTER_HOME")
    try:
        with dg.DagsterInstance.get() as instance:
            assert sorted(instance.get_dynamic_partitions(RUNS.name)) == runs
            for run in runs:
                record = instance.fetch_materializations(
                    dg.AssetRecordsFilter(asset_key=RAW_EVENTS, asset_partitions=[run]),
                    limit=1).records[0]
                meta = record.asset_materialization.metadata
                missing = meta["missing_test_cases"].value
                if run in lacking:  # said once, in the metadata; not an error
                    assert all(tc in missing for tc in lacking[run])
                    assert meta["test_cases"].value == 54 - len(lacking[run])
                else:
                    assert missing.startswith("none (all 54")
                assert "correct/metrics/node_load1.json" in meta["metrics_files"].value
                assert f"metrics/{run}.csv" in meta["metrics_files"].value
                assert meta["ignored_entries"].value.startswith("none")
            model = instance.get_latest_materialization_event(ANOMALY_MODEL)
            assert model is not None
    finally:
        if saved is None:
            os.environ.pop("DAGSTER_HOME")
        else:
            os.environ["DAGSTER_HOME"] = saved

    for plan in plans:
        events = pl.read_parquet(warehouse / "lo2" / "raw_events" / f"{plan.name}.parquet")
        # Dated from the v2 name's epoch, not 1970.
        assert events["m_timestamp"].min().date() == run_start(plan.name).date()
        tested = set(events["test_case"].unique())
        assert tested == {w.test_case for w in plan.windows}
        predictions = pl.read_parquet(warehouse / "lo2" / "predictions" / f"{plan.name}.parquet")
        assert set(predictions["test_case"].unique()) == tested
