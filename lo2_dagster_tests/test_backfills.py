"""Backfills as users launch them, against a real `dagster dev` (webserver + daemon) on a tiny
generated dataset: discovered by the source-files sensor, then backfilled through GraphQL
(what the UI's "Materialize all" does) and through the CLI; the files and the stale statuses
are checked afterwards."""

import time

import polars as pl
import pytest

from lo2_dagster.lib.synth import SynthConfig, generate
from lo2_dagster_tests.dagster_dev import DagsterDev, dagster_dev

pytestmark = pytest.mark.integration

LAUNCH = """mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on UnauthorizedError { message }
  } }"""
BACKFILL = """query($id: String!) { partitionBackfillOrError(backfillId: $id) {
  ... on PartitionBackfill { id status numPartitions } } }"""
BACKFILLS = """{ partitionBackfillsOrError(limit: 10) { ... on PartitionBackfills {
  results { id status timestamp } } } }"""
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}
DONE = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}


def partitions(dev: DagsterDev) -> list[str]:
    data = dev.graphql("""{ assetNodes(assetKeys: [{path: ["lo2", "raw_events"]}]) {
        partitionKeys } }""")
    return data["assetNodes"][0]["partitionKeys"]


def all_assets(dev: DagsterDev) -> list[dict]:
    data = dev.graphql("{ assetNodes { assetKey { path } isMaterializable isObservable } }")
    return [{"path": n["assetKey"]["path"]} for n in data["assetNodes"]
            if n["isMaterializable"] and not n["isObservable"]]


def wait_backfill(dev: DagsterDev, backfill_id: str, timeout: float = 600) -> str:
    def status():
        found = dev.graphql(BACKFILL, {"id": backfill_id})["partitionBackfillOrError"]
        return found["status"] if found["status"] in DONE else None
    return dev.wait_for(f"backfill {backfill_id}", status, timeout=timeout, every=2)


def backfill_runs(dev: DagsterDev, backfill_id: str) -> list[tuple[str, str]]:
    """(status, partition or range) of the Dagster runs a backfill launched."""
    query = """query($id: String!) { runsOrError(filter: {tags: [{key: "dagster/backfill",
        value: $id}]}) { ... on Runs { results { status tags { key value } } } } }"""
    runs = dev.graphql(query, {"id": backfill_id})["runsOrError"]["results"]
    return [(r["status"], ",".join(t["value"] for t in r["tags"] if t["key"] in (
        "dagster/partition", "dagster/asset_partition_range_start",
        "dagster/asset_partition_range_end"))) for r in runs]


def stale_statuses(dev: DagsterDev, runs: list[str]) -> dict[str, str]:
    """'lo2/asset[run]' (or 'lo2/asset') -> staleStatus, as the UI shows it."""
    nodes = dev.graphql("{ assetNodes { assetKey { path } isPartitioned isMaterializable "
                        "isObservable } }")["assetNodes"]
    statuses = {}
    for node in nodes:
        if not node["isMaterializable"] or node["isObservable"]:
            continue
        name = "/".join(node["assetKey"]["path"])
        for run in runs if node["isPartitioned"] else [None]:
            query = """query($key: AssetKeyInput!, $partition: String) {
                assetNodeOrError(assetKey: $key) { ... on AssetNode {
                  staleStatus(partition: $partition) } } }"""
            data = dev.graphql(query, {"key": {"path": node["assetKey"]["path"]},
                                       "partition": run})
            statuses[name + (f"[{run}]" if run else "")] = \
                data["assetNodeOrError"]["staleStatus"]
    return statuses


def test_backfills_through_graphql_and_the_cli(tmp_path):
    lo2, warehouse = tmp_path / "lo2", tmp_path / "warehouse"
    generate(lo2, SynthConfig(runs=3, seed=4, token_lines=5))
    runs = sorted(p.name for p in (lo2 / "logs").iterdir())
    env = {"LO2_ROOT": str(lo2), "LO2_WAREHOUSE": str(warehouse), "LO2_AUTOMATION": "off"}
    with dagster_dev(tmp_path, env) as dev:
        # The source-files sensor (running by default) discovers the runs.
        assert dev.wait_for("run partitions", lambda: sorted(partitions(dev)) == runs,
                            timeout=180)

        # GraphQL (what the UI's "Materialize all" -> all partitions launches): every asset.
        started = time.monotonic()
        launched = dev.graphql(LAUNCH, {"params": {"assetSelection": all_assets(dev),
                                                   "allPartitions": True}})
        result = launched["launchPartitionBackfill"]
        assert result["__typename"] == "LaunchBackfillSuccess", result
        assert wait_backfill(dev, result["backfillId"]) in {"COMPLETED", "COMPLETED_SUCCESS"}, \
            dev.tail()
        seconds = time.monotonic() - started
        print(backfill_runs(dev, result["backfillId"]))
        for run in runs:
            predictions = pl.read_parquet(warehouse / "lo2" / "predictions" / f"{run}.parquet")
            assert len(predictions) == 54 * 7
        assert (warehouse / "lo2" / "anomaly_model" / "model.yml").exists()
        assert set(stale_statuses(dev, runs).values()) == {"FRESH"}

        # The CLI: rescore every run with the current model.
        before = {run: (warehouse / "lo2" / "predictions" / f"{run}.parquet").stat().st_mtime_ns
                  for run in runs}
        known = {b["id"] for b in dev.graphql(BACKFILLS)["partitionBackfillsOrError"]["results"]}
        cli = dev.dagster("job", "backfill", "-w", "workspace.yaml", "-j", "lo2_rescore",
                          "--all", "--noprompt")
        assert cli.returncode == 0, cli.stdout + cli.stderr
        new = dev.wait_for("the CLI's backfill", lambda: [
            b["id"] for b in dev.graphql(BACKFILLS)["partitionBackfillsOrError"]["results"]
            if b["id"] not in known])
        assert wait_backfill(dev, new[0]) in {"COMPLETED", "COMPLETED_SUCCESS"}, dev.tail()
        # A job backfill is done once its runs are launched (one per partition): wait for them.
        launched_runs = dev.wait_for("the CLI backfill's runs", lambda: (
            lambda found: found if len(found) == len(runs) and all(
                status in FINISHED for status, _ in found) else None)(backfill_runs(dev, new[0])))
        assert sorted(launched_runs) == [("SUCCESS", run) for run in runs], dev.tail()
        after = {run: (warehouse / "lo2" / "predictions" / f"{run}.parquet").stat().st_mtime_ns
                 for run in runs}
        assert all(after[run] != before[run] for run in runs)
        assert set(stale_statuses(dev, runs).values()) == {"FRESH"}
    print(f"GraphQL backfill of {len(runs)} runs, whole graph: {seconds:.0f} s")
