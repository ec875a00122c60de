"""The production instance: Dagster's storage in a real PostgreSQL (started on loopback by the
tests, stopped afterwards), reached through ``$LO2_POSTGRES_URL``: the whole graph through
`lo2-dagster run`, staleness and an automation tick after a changed file, two commands at once
on one instance, and a batched backfill through `dagster dev` (webserver and daemon)."""

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from lo2_dagster import settings
from lo2_dagster.definitions import defs
from lo2_dagster.defs.ingest.sensors import observe_sources
from lo2_dagster.defs.keys import RAW_EVENTS
from lo2_dagster.defs.resources import FpAllowlistFile, Lo2Root
from lo2_dagster.defs.runs import RUNS
from lo2_dagster.devserver import deployment
from lo2_dagster.synth import SynthConfig, generate
from lo2_dagster_tests.servers import new_database, postgres_server
from lo2_dagster_tests.staleness import STALE, stale_status

pytestmark = pytest.mark.postgres

CLI = str(Path(sys.executable).parent / "lo2-dagster")
EXTRA_LINE = ("2024-06-28 16:59:59.999 [XNIO-1 task-2]  abc DEBUG "
              "c.n.o.t.h.Oauth2TokenPostHandler handleRequest - an extra line\n")


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    with postgres_server() as url:
        yield url


def env_for(home: Path, url: str, data: Path, warehouse: Path) -> dict[str, str]:
    env = dict(os.environ, DAGSTER_HOME=str(home), LO2_POSTGRES_URL=url)
    env[settings.ENV_ROOT], env[settings.ENV_WAREHOUSE] = str(data), str(warehouse)
    return env


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, "run", *args], env=env, capture_output=True, text=True,
                          timeout=600)


def test_the_whole_graph_and_its_staleness_on_postgres(postgres, tmp_path, monkeypatch):
    url = new_database(postgres, "graph")
    data, warehouse = tmp_path / "lo2", tmp_path / "warehouse"
    generate(data, SynthConfig(runs=2, seed=3, token_lines=5))
    env = env_for(tmp_path / "home", url, data, warehouse)
    first = run(env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "2 runs, 9 Dagster runs, 0 failed" in first.stdout
    config = (tmp_path / "home" / "dagster.yaml").read_text()
    assert "postgres_url:\n      env: LO2_POSTGRES_URL" in config
    assert not list((tmp_path / "home").rglob("*.db"))  # nothing in SQLite

    # Another DAGSTER_HOME on the same database sees the same instance.
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "other"))
    monkeypatch.setenv(settings.ENV_POSTGRES_URL, url)
    monkeypatch.setenv(settings.ENV_ROOT, str(data))
    monkeypatch.setenv(settings.ENV_WAREHOUSE, str(warehouse))
    settings.prepare_dagster_home()
    runs = sorted(p.name for p in (data / "logs").iterdir())
    with dg.DagsterInstance.get() as instance:
        assert sorted(instance.get_dynamic_partitions(RUNS.name)) == runs
        assert len(instance.get_run_records()) == 9
        assert instance.get_materialized_partitions(RAW_EVENTS) == set(runs)

        # A changed file: the run's raw events are stale, and an automation tick requests them.
        definitions = defs()
        cursor = dg.evaluate_automation_conditions(defs=definitions, instance=instance).cursor
        log = data / "logs" / runs[0] / "correct" / "light-oauth2-oauth2-token-1.log"
        log.write_text(log.read_text() + EXTRA_LINE)
        observe_sources(instance, Lo2Root(), FpAllowlistFile(), runs)
        graph = definitions.resolve_asset_graph()
        [(status, _)] = stale_status(instance, graph, [(RAW_EVENTS, runs[0])]).values()
        assert status == STALE
        tick = dg.evaluate_automation_conditions(defs=definitions, instance=instance,
                                                 cursor=cursor)
        assert tick.get_requested_partitions(RAW_EVENTS) == {runs[0]}

    # Two commands at once from two homes on this instance and warehouse: one waits for the
    # other (the warehouse's lock), both succeed, the changed run is rebuilt once.
    homes = [tmp_path / "a", tmp_path / "b"]
    procs = [subprocess.Popen([CLI, "run"], env=env_for(home, url, data, warehouse),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for home in homes]
    results = [(p.wait(timeout=600), *p.communicate()) for p in procs]
    for code, out, err in results:
        assert code == 0, out + err
        assert "Traceback" not in out + err
    assert sum("waiting for another lo2-dagster command" in err for _, _, err in results) == 1
    with dg.DagsterInstance.get() as instance:
        rebuilt = instance.fetch_materializations(dg.AssetRecordsFilter(
            asset_key=RAW_EVENTS, asset_partitions=[runs[0]]), limit=10).records
        assert len(rebuilt) == 2  # the first build and one rebuild, not two


def test_a_sqlite_home_is_refused_when_postgres_is_asked_for(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = env_for(home, "postgresql://nobody@127.0.0.1:1/none", settings.default_lo2_root(),
                  tmp_path / "w")
    result = run(env)
    assert result.returncode == 2
    assert "LO2_POSTGRES_URL is set but" in result.stderr and "Traceback" not in result.stderr


def test_a_batched_backfill_through_dagster_dev_on_postgres(postgres, tmp_path):
    url = new_database(postgres, "backfill")
    with deployment(tmp_path, env={settings.ENV_POSTGRES_URL: url,
                                   "LO2_BACKFILL_RUNS_PER_BATCH": "2"}) as deployed:
        dev = deployed.dev
        assert "postgres" in (dev.home / "dagster.yaml").read_text()
        per_run = [a for a in dev.materializable_assets()
                   if a["path"][-1] in ("raw_events", "raw_sequences", "message_counts")]
        backfill = dev.launch_backfill(per_run)
        assert dev.wait_backfill(backfill) == "COMPLETED_SUCCESS", dev.tail()
        # 3 runs in batches of 2: two Dagster runs, each over a range of runs or one run.
        assert len(dev.backfill_runs(backfill)) == 2, dev.backfill_runs(backfill)
        for run_name in deployed.runs:
            assert (deployed.warehouse / "lo2" / "raw_events" / f"{run_name}.parquet").exists()
