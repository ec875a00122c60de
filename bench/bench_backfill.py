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
import sys
import tempfile
import time
from pathlib import Path

from lo2_dagster.devserver import deployment
from lo2_dagster.synth import SynthConfig, generate

HERE = Path(__file__).resolve().parent


def dataset(runs: int, token_lines: int) -> Path:
    root = HERE / "out" / f"backfill-{runs}x{token_lines}"
    if not (root / "logs").is_dir():
        generate(root, SynthConfig(runs=runs, seed=1, token_lines=token_lines, metrics=False))
    return root


def measure(root: Path, batch: int, runs: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-backfill-") as tmp:
        env = {"LO2_BACKFILL_RUNS_PER_BATCH": str(batch)}
        with deployment(Path(tmp), root, env, timeout=300) as deployed:
            dev, names = deployed.dev, deployed.runs
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
