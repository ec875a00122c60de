"""Steps on workers: the job ``lo2_ingest_on_workers`` sends each step to Celery workers
(dagster-celery, Redis as the broker), the instance in PostgreSQL, the warehouse on storage
every worker sees. Real servers and two real worker processes on loopback, stopped after."""

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from lo2_dagster import settings
from lo2_dagster.definitions import defs
from lo2_dagster.defs.ingest.sensors import observe_sources
from lo2_dagster.defs.keys import MESSAGE_COUNTS, RAW_EVENTS, RAW_SEQUENCES
from lo2_dagster.defs.resources import FpAllowlistFile, Lo2Root
from lo2_dagster.defs.runs import RUNS
from lo2_dagster.lib.layout import scan_runs
from lo2_dagster.synth import SynthConfig, generate
from lo2_dagster.versions import partition_data_versions
from lo2_dagster_tests.servers import celery_workers, new_database, postgres_server, redis_server

pytestmark = [pytest.mark.celery, pytest.mark.postgres]

KEYS = [RAW_EVENTS, RAW_SEQUENCES, MESSAGE_COUNTS]
RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"
#: One Dagster run of the job on the workers (tags: argv[1]); prints its run id.
LAUNCH = """
import json, sys
import dagster as dg
from lo2_dagster.defs.keys import MESSAGE_COUNTS, RAW_EVENTS, RAW_SEQUENCES
from lo2_dagster.workers import ingest_on_workers
with dg.DagsterInstance.get() as instance:
    result = dg.execute_job(dg.reconstructable(ingest_on_workers), instance,
                            tags=json.loads(sys.argv[1]),
                            asset_selection=[RAW_EVENTS, RAW_SEQUENCES, MESSAGE_COUNTS])
    print(result.run_id)
"""


@pytest.fixture
def servers() -> Iterator[tuple[str, str]]:
    with postgres_server() as postgres, redis_server() as redis:
        yield postgres, redis


def batches(runs: list[str]) -> list[dict[str, str]]:
    """Two backfill batches of two runs each, as the run tags of a partition-range run."""
    return [{RANGE_START: runs[i], RANGE_END: runs[i + 1]} for i in (0, 2)]


def test_a_backfill_runs_its_steps_on_two_workers(servers, tmp_path, monkeypatch):
    postgres, redis = servers
    url = new_database(postgres, "workers")
    data = tmp_path / "lo2"
    generate(data, SynthConfig(runs=4, seed=6, token_lines=5))
    runs = scan_runs(data).runs
    for name, value in {"DAGSTER_HOME": str(tmp_path / "home"), settings.ENV_POSTGRES_URL: url,
                        settings.ENV_ROOT: str(data),
                        settings.ENV_WAREHOUSE: str(tmp_path / "warehouse"),
                        settings.ENV_CELERY_BROKER: f"{redis}/0",
                        settings.ENV_CELERY_BACKEND: f"{redis}/1"}.items():
        monkeypatch.setenv(name, value)
    settings.prepare_dagster_home()
    env = dict(os.environ)
    with dg.DagsterInstance.get() as instance, \
            celery_workers(2, f"{redis}/0", f"{redis}/1", env, tmp_path) as workers:
        instance.add_dynamic_partitions(RUNS.name, runs)
        observe_sources(instance, Lo2Root(), FpAllowlistFile(), runs)
        # Two backfill batches at once, each a Dagster run in a process of its own (as the
        # daemon launches them); their steps go to the workers.
        launches = [subprocess.Popen([sys.executable, "-c", LAUNCH, json.dumps(tags)], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                    for tags in batches(runs)]
        outputs = [launch.communicate(timeout=600) for launch in launches]
        assert all(launch.returncode == 0 for launch in launches), outputs
        run_ids = [out.strip().splitlines()[-1] for out, _ in outputs]
        errors = [str(record.dagster_event.event_specific_data)[:3000]
                  for r in run_ids for record in instance.all_logs(r)
                  if record.level >= 40 and record.dagster_event]
        assert all(instance.get_run_by_id(r).is_success for r in run_ids), errors

        # Every step ran on a worker, and both workers did work.
        used = {}
        for run_id in run_ids:
            for record in instance.all_logs(run_id):
                event = record.dagster_event
                if event is not None and event.is_engine_event and \
                        "Celery worker" in event.engine_event_data.metadata:
                    worker = event.engine_event_data.metadata["Celery worker"].value
                    used.setdefault(worker, []).append(event.step_key)
        assert set(used) == set(workers), used
        assert sorted(s for steps in used.values() for s in steps) == sorted(
            f"lo2__{k.path[-1]}" for k in KEYS for _ in range(2))
        versions = {k: partition_data_versions(instance, k, runs) for k in KEYS}

    # The same batches in-process on a fresh instance and warehouse: the same data versions
    # and the same rows, run by run.
    monkeypatch.delenv(settings.ENV_POSTGRES_URL)
    monkeypatch.setenv(settings.ENV_WAREHOUSE, str(tmp_path / "local"))
    job = defs().resolve_implicit_global_asset_job_def()
    with dg.DagsterInstance.ephemeral() as local:
        local.add_dynamic_partitions(RUNS.name, runs)
        observe_sources(local, Lo2Root(), FpAllowlistFile(), runs)
        for tags in batches(runs):
            assert job.execute_in_process(instance=local, tags=tags, asset_selection=KEYS).success
        assert {k: partition_data_versions(local, k, runs) for k in KEYS} == versions
    for key in KEYS:
        for run in runs:
            shared = Path(tmp_path / "warehouse" / "lo2" / key.path[-1] / f"{run}.parquet")
            alone = Path(tmp_path / "local" / "lo2" / key.path[-1] / f"{run}.parquet")
            assert pl.read_parquet(shared).equals(pl.read_parquet(alone)), (key, run)
