"""How long an asset backfill of the whole graph takes through a real daemon, with the chosen
BackfillPolicy (many runs per Dagster run) and with one Dagster run per partition. On demand
(never in the test suite): it starts `dagster dev` once per setting.

    .venv/bin/python bench/bench_backfill.py [--runs 50] [--batches 25,1] [--token-lines 1]

Per setting: a fresh DAGSTER_HOME and warehouse, the same generated dataset (N runs x 54 test
cases x 7 services at the generator's smallest size, cached under bench/out/), the automation
sensor off; the source-files sensor adds the partitions, then the backfill is launched through
GraphQL (as the UI's "Materialize all" -> All does) and timed until it succeeds. Prints, per
setting, the wall time, the Dagster runs it launched and the seconds per run partition.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from lo2_dagster import settings
from lo2_dagster.synth import SynthConfig, generate

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
T = TypeVar("T")

# --- `dagster dev` through GraphQL ------------------------------------------------------------
# The few parts of lo2_dagster_tests/dagster_dev.py (the integration tests' driver) that this
# benchmark needs, copied: benchmarks import the package, never the tests.

LAUNCH = """mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on UnauthorizedError { message }
  } }"""
BACKFILL = """query($id: String!) { partitionBackfillOrError(backfillId: $id) {
  ... on PartitionBackfill { id status numPartitions } } }"""
BACKFILL_RUNS = """query($id: String!) { runsOrError(filter: {tags: [{key: "dagster/backfill",
  value: $id}]}) { ... on Runs { results { runId status tags { key value } } } } }"""
RANGE_TAGS = ("dagster/partition", "dagster/asset_partition_range_start",
              "dagster/asset_partition_range_end")
#: Final states of a backfill.
DONE = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}


class DagsterDev:
    """A running `dagster dev` on 127.0.0.1, asked what the UI asks."""

    def __init__(self, port: int, log: Path, process: subprocess.Popen) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        self.process = process

    def graphql(self, query: str, variables: Mapping[str, Any] | None = None) -> dict:
        request = urllib.request.Request(
            f"{self.url}/graphql",
            data=json.dumps({"query": query, "variables": variables or {}}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            body = json.loads(response.read())
        assert "errors" not in body, body["errors"]
        return body["data"]

    def wait_for(self, what: str, probe: Callable[[], T | None], timeout: float = 300,
                 every: float = 1.0) -> T:
        """Poll ``probe`` until it returns something truthy; fail with the server log."""
        deadline = time.monotonic() + timeout
        while True:
            assert self.process.poll() is None, f"dagster dev exited:\n{self.tail()}"
            value = probe()
            if value:
                return value
            assert time.monotonic() < deadline, f"{what}: not within {timeout} s\n{self.tail()}"
            time.sleep(every)

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def run_partitions(self) -> list[str]:
        """The run partitions Dagster knows (added by the source-files sensor)."""
        data = self.graphql("""{ assetNodes(assetKeys: [{path: ["lo2", "raw_events"]}]) {
            partitionKeys } }""")
        return data["assetNodes"][0]["partitionKeys"]

    def materializable_assets(self) -> list[dict]:
        """Every materializable asset (what "Materialize all" selects)."""
        data = self.graphql("{ assetNodes { assetKey { path } isMaterializable isObservable } }")
        return [{"path": n["assetKey"]["path"]} for n in data["assetNodes"]
                if n["isMaterializable"] and not n["isObservable"]]

    def launch_backfill(self, assets: list[dict]) -> str:
        """``launchPartitionBackfill`` of all partitions; returns its id."""
        params = {"assetSelection": assets, "allPartitions": True}
        result = self.graphql(LAUNCH, {"params": params})["launchPartitionBackfill"]
        assert result["__typename"] == "LaunchBackfillSuccess", result
        return result["backfillId"]

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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


@contextmanager
def deployment(tmp: Path, lo2: Path, env: Mapping[str, str], timeout: float = 180
               ) -> Iterator[tuple[DagsterDev, list[str]]]:
    """`dagster dev` in the checkout (a fresh DAGSTER_HOME with the project's dagster.yaml, a
    warehouse in ``tmp``, the automation sensor off) on ``lo2``, once the source-files sensor
    has added a partition for every run folder; stopped with everything it started."""
    home = tmp / "dagster_home"
    home.mkdir()
    shutil.copyfile(settings.REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    runs = sorted(p.name for p in (lo2 / "logs").iterdir())
    full_env = {**os.environ, "DAGSTER_HOME": str(home), "LO2_ROOT": str(lo2),
                "LO2_WAREHOUSE": str(tmp / "warehouse"), "LO2_AUTOMATION": "off", **env}
    full_env.pop("VIRTUAL_ENV", None)
    port = _free_port()
    log_path = tmp / "dagster-dev.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [str(BIN / "dagster"), "dev", "-h", "127.0.0.1", "-p", str(port)],
            cwd=settings.REPO_ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        dev = DagsterDev(port, log_path, process)
        try:
            dev.wait_for("webserver", lambda: _answers(dev.url), timeout=180)
            dev.wait_for("code location", lambda: _location_loaded(dev), timeout=180)
            dev.wait_for("run partitions", lambda: sorted(dev.run_partitions()) == runs,
                         timeout=timeout)
            yield dev, runs
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


# --- the benchmark ------------------------------------------------------------------------------


def dataset(runs: int, token_lines: int) -> Path:
    root = HERE / "out" / f"backfill-{runs}x{token_lines}"
    if not (root / "logs").is_dir():
        generate(root, SynthConfig(runs=runs, seed=1, token_lines=token_lines, metrics=False))
    return root


def measure(root: Path, batch: int, runs: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-backfill-") as tmp:
        env = {"LO2_BACKFILL_RUNS_PER_BATCH": str(batch)}
        with deployment(Path(tmp), root, env, timeout=300) as (dev, names):
            assert len(names) == runs
            started = time.monotonic()
            backfill = dev.launch_backfill(dev.materializable_assets())
            status = dev.wait_backfill(backfill, timeout=6 * 3600)
            seconds = time.monotonic() - started
            launched = dev.backfill_runs(backfill)
    return {"runs_per_batch": batch, "status": status, "seconds": round(seconds, 1),
            "dagster_runs": len(launched),
            "failed_dagster_runs": sum(s != "SUCCESS" for s, _ in launched),
            "seconds_per_partition": round(seconds / runs, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--batches", default="25,1",
                        help="runs per Dagster run to compare (1 = one run per partition)")
    parser.add_argument("--token-lines", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    root = dataset(args.runs, args.token_lines)
    print(f"{args.runs} runs from {root}; {os.cpu_count()} cores", flush=True)
    results = []
    for batch in (int(b) for b in args.batches.split(",")):
        figures = measure(root, batch, args.runs)
        results.append(figures)
        print(f"runs per batch {batch:>3}: {figures['status']} in {figures['seconds']:.0f} s, "
              f"{figures['dagster_runs']} Dagster runs ({figures['failed_dagster_runs']} failed), "
              f"{figures['seconds_per_partition']:.2f} s per run partition", flush=True)
    if args.json:
        print(json.dumps(results))
    return 0 if all(r["status"] == "COMPLETED_SUCCESS" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
