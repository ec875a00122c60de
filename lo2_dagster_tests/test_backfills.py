"""Backfills as users launch them, against a real `dagster dev` (webserver + daemon) on a tiny
generated dataset: discovered by the source-files sensor, then backfilled through GraphQL
(what the UI's "Materialize all" does) and through the CLI; the files and the stale statuses
are checked afterwards."""

import time

import polars as pl
import pytest

from lo2_dagster_tests.dagster_dev import FINISHED, deployment

pytestmark = pytest.mark.integration

def test_backfills_through_graphql_and_the_cli(tmp_path):
    # The source-files sensor (running by default) has discovered the runs.
    with deployment(tmp_path) as deployed:
        dev, runs, warehouse = deployed.dev, deployed.runs, deployed.warehouse

        # GraphQL (what the UI's "Materialize all" -> All sends): every asset, every run. The
        # per-run assets run as batches (one Dagster run for the 3 runs at each stage).
        started = time.monotonic()
        backfill = dev.launch_backfill(dev.materializable_assets())
        assert dev.wait_backfill(backfill) == "COMPLETED_SUCCESS", dev.tail()
        seconds = time.monotonic() - started
        launched = dev.backfill_runs(backfill)
        batches = [r for _, r in launched if r]
        assert len(launched) == 5 and {s for s, _ in launched} == {"SUCCESS"}, launched
        assert len(batches) == 3 and all(set(b.split(",")) <= set(runs) for b in batches)
        for run in runs:
            predictions = pl.read_parquet(warehouse / "lo2" / "predictions" / f"{run}.parquet")
            assert len(predictions) == 54 * 7
        assert (warehouse / "lo2" / "anomaly_model" / "model.yml").exists()
        assert set(dev.stale_statuses(runs).values()) == {"FRESH"}

        # The CLI: rescore every run with the current model.
        before = {run: (warehouse / "lo2" / "predictions" / f"{run}.parquet").stat().st_mtime_ns
                  for run in runs}
        known = {b["id"] for b in dev.backfills()}
        cli = dev.dagster("job", "backfill", "-w", "workspace.yaml", "-j", "lo2_rescore",
                          "--all", "--noprompt")
        assert cli.returncode == 0, cli.stdout + cli.stderr
        [new] = dev.wait_for("the CLI's backfill",
                             lambda: [b["id"] for b in dev.backfills() if b["id"] not in known])
        assert dev.wait_backfill(new) in {"COMPLETED", "COMPLETED_SUCCESS"}, dev.tail()
        # A job backfill is done once its runs are launched (one per partition): wait for them.
        done = dev.wait_for("the CLI backfill's runs", lambda: (
            lambda found: found if len(found) == len(runs) and all(
                status in FINISHED for status, _ in found) else None)(dev.backfill_runs(new)))
        assert sorted(done) == [("SUCCESS", run) for run in runs], dev.tail()
        after = {run: (warehouse / "lo2" / "predictions" / f"{run}.parquet").stat().st_mtime_ns
                 for run in runs}
        assert all(after[run] != before[run] for run in runs)
        assert set(dev.stale_statuses(runs).values()) == {"FRESH"}
    print(f"GraphQL backfill of {len(runs)} runs, whole graph: {seconds:.0f} s")
