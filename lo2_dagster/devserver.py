"""`dagster dev` as a user starts it, for the integration and browser tests and the backfill
benchmark (bench/bench_backfill.py): a temporary
DAGSTER_HOME with the project's dagster.yaml, 127.0.0.1 on a free port, its own process group
(so SIGTERM reaches the webserver, the daemon and the code server), and GraphQL."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from lo2_dagster import settings
from lo2_dagster.lib.layout import scan_runs

BIN = Path(sys.executable).parent
T = TypeVar("T")

LAUNCH = """mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on UnauthorizedError { message }
  } }"""
BACKFILL = """query($id: String!) { partitionBackfillOrError(backfillId: $id) {
  ... on PartitionBackfill { id status numPartitions } } }"""
BACKFILLS = """{ partitionBackfillsOrError(limit: 20) { ... on PartitionBackfills {
  results { id status numPartitions assetSelection { path } } } } }"""
BACKFILL_RUNS = """query($id: String!) { runsOrError(filter: {tags: [{key: "dagster/backfill",
  value: $id}]}) { ... on Runs { results { runId status tags { key value } } } } }"""
STALE = """query($key: AssetKeyInput!, $partition: String) {
  assetNodeOrError(assetKey: $key) { ... on AssetNode { staleStatus(partition: $partition) } } }"""
RANGE_TAGS = ("dagster/partition", "dagster/asset_partition_range_start",
              "dagster/asset_partition_range_end")
#: Final states of a backfill, and of a Dagster run.
DONE = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ, DAGSTER_HOME=str(home), **(extra or {}))
    env.pop("VIRTUAL_ENV", None)
    return env


@dataclass
class DagsterDev:
    port: int
    home: Path
    log: Path
    env: dict[str, str]
    process: subprocess.Popen

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def graphql(self, query: str, variables: Mapping[str, Any] | None = None) -> dict:
        request = urllib.request.Request(
            f"{self.url}/graphql",
            data=json.dumps({"query": query, "variables": variables or {}}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            body = json.loads(response.read())
        if "errors" in body:
            raise RuntimeError(f"GraphQL errors: {body['errors']}")
        return body["data"]

    def wait_for(self, what: str, probe: Callable[[], T | None], timeout: float = 300,
                 every: float = 1.0) -> T:
        """Poll ``probe`` until it returns something truthy; fail with the server log."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"dagster dev exited:\n{self.tail()}")
            value = probe()
            if value:
                return value
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{what}: not within {timeout} s\n{self.tail()}")
            time.sleep(every)

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    # --- what the UI asks and sends -------------------------------------------------------

    def run_partitions(self) -> list[str]:
        """The run partitions Dagster knows (added by the source-files sensor)."""
        data = self.graphql("""{ assetNodes(assetKeys: [{path: ["lo2", "raw_events"]}]) {
            partitionKeys } }""")
        return data["assetNodes"][0]["partitionKeys"]

    def materializable_assets(self) -> list[dict]:
        """Every materializable asset as a GraphQL asset key input (what "Materialize all"
        selects)."""
        data = self.graphql("{ assetNodes { assetKey { path } isMaterializable isObservable } }")
        return [{"path": n["assetKey"]["path"]} for n in data["assetNodes"]
                if n["isMaterializable"] and not n["isObservable"]]

    def launch_backfill(self, assets: list[dict], partition_names: list[str] | None = None
                        ) -> str:
        """``launchPartitionBackfill`` (all partitions unless named); returns its id."""
        params: dict[str, Any] = {"assetSelection": assets}
        params.update({"partitionNames": partition_names} if partition_names
                      else {"allPartitions": True})
        result = self.graphql(LAUNCH, {"params": params})["launchPartitionBackfill"]
        if result["__typename"] != "LaunchBackfillSuccess":
            raise RuntimeError(f"backfill not launched: {result}")
        return result["backfillId"]

    def backfills(self) -> list[dict]:
        """The latest backfills (id, status, numPartitions, assetSelection), newest first."""
        return self.graphql(BACKFILLS)["partitionBackfillsOrError"]["results"]

    def wait_backfill(self, backfill_id: str, timeout: float = 600) -> str:
        """Wait until a backfill is done; its final status."""
        def status() -> str | None:
            found = self.graphql(BACKFILL, {"id": backfill_id})["partitionBackfillOrError"]
            return found["status"] if found["status"] in DONE else None
        return self.wait_for(f"backfill {backfill_id}", status, timeout=timeout, every=2)

    def backfill_runs(self, backfill_id: str) -> list[tuple[str, str]]:
        """(status, partition or range) of each Dagster run a backfill launched."""
        found = self.graphql(BACKFILL_RUNS, {"id": backfill_id})["runsOrError"]["results"]
        return [(r["status"], ",".join(t["value"] for t in r["tags"] if t["key"] in RANGE_TAGS))
                for r in found]

    def backfill_run_ids(self, backfill_id: str) -> set[str]:
        """Ids of the Dagster runs a backfill launched."""
        found = self.graphql(BACKFILL_RUNS, {"id": backfill_id})["runsOrError"]["results"]
        return {r["runId"] for r in found}

    def stale_statuses(self, runs: list[str]) -> dict[str, str]:
        """'lo2/asset[run]' (or 'lo2/asset') -> staleStatus, as the UI shows it."""
        nodes = self.graphql("{ assetNodes { assetKey { path } isPartitioned isMaterializable "
                             "isObservable } }")["assetNodes"]
        statuses = {}
        for node in nodes:
            if not node["isMaterializable"] or node["isObservable"]:
                continue
            name = "/".join(node["assetKey"]["path"])
            for run in runs if node["isPartitioned"] else [None]:
                data = self.graphql(STALE, {"key": {"path": node["assetKey"]["path"]},
                                            "partition": run})
                statuses[name + (f"[{run}]" if run else "")] = \
                    data["assetNodeOrError"]["staleStatus"]
        return statuses

    def dagster(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        """The dagster CLI against this instance and code location, as a user types it."""
        return subprocess.run([str(BIN / "dagster"), *args], cwd=settings.REPO_ROOT,
                              env=self.env, capture_output=True, text=True, timeout=timeout)


@contextmanager
def dagster_dev(tmp_path: Path, env: Mapping[str, str] | None = None) -> Iterator[DagsterDev]:
    """Start `dagster dev` in the checkout, wait until the code location is loaded, stop it
    (and everything it started) afterwards."""
    home = tmp_path / "dagster_home"  # may hold an instance already (bench/bench_scale.py)
    home.mkdir(exist_ok=True)
    full_env = clean_env(home, env)
    (home / "dagster.yaml").write_text(
        settings.instance_config(postgres=bool(full_env.get(settings.ENV_POSTGRES_URL))))
    port = free_port()
    log_path = tmp_path / "dagster-dev.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [str(BIN / "dagster"), "dev", "-h", "127.0.0.1", "-p", str(port)],
            cwd=settings.REPO_ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        dev = DagsterDev(port, home, log_path, full_env, process)
        try:
            dev.wait_for("webserver", lambda: _answers(dev.url), timeout=180)
            dev.wait_for("code location", lambda: _location_loaded(dev), timeout=180)
            yield dev
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/server_info", timeout=5):
            return True
    except OSError:
        return False


def _location_loaded(dev: DagsterDev) -> bool:
    data = dev.graphql("""{ workspaceOrError { ... on Workspace { locationEntries { name
        locationOrLoadError { __typename } } } } }""")
    entries = data["workspaceOrError"]["locationEntries"]
    return bool(entries and entries[0]["locationOrLoadError"])


@dataclass
class Deployment:
    """`dagster dev` on an LO2 root whose runs the source-files sensor has discovered."""

    dev: DagsterDev
    runs: list[str]
    warehouse: Path


@contextmanager
def deployment(tmp_path: Path, lo2: Path | None = None, env: Mapping[str, str] | None = None,
               timeout: float = 180) -> Iterator[Deployment]:
    """`dagster dev` with the automation sensor off, on ``lo2`` (default: 3 small generated
    runs) and a warehouse in ``tmp_path``, once the sensor (running by default) has added a
    partition for every run folder."""
    from lo2_dagster.synth import SynthConfig, generate

    if lo2 is None:
        lo2 = tmp_path / "lo2"
        generate(lo2, SynthConfig(runs=3, seed=4, token_lines=5))
    runs = scan_runs(lo2).runs
    warehouse = tmp_path / "warehouse"
    full_env = {"LO2_ROOT": str(lo2), "LO2_WAREHOUSE": str(warehouse), "LO2_AUTOMATION": "off",
                **(env or {})}
    with dagster_dev(tmp_path, full_env) as dev:
        dev.wait_for("run partitions", lambda: sorted(dev.run_partitions()) == runs,
                     timeout=timeout)
        yield Deployment(dev, runs, warehouse)
