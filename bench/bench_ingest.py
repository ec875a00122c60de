"""Ingest throughput and peak memory, on demand (never in the test suite).

    .venv/bin/python bench/bench_ingest.py [--runs 2] [--token-lines 10000] [--data DIR]

Generates (once, cached under bench/out/) a dataset of N runs x 54 test cases x 7 services,
then measures:
  1. the loader alone (lib): lines/s and peak RSS of a fresh process per run;
  2. the whole headless main job (`lo2-dagster run`: raw_events + raw_sequences through
     Dagster, Parquet writes included) in a fresh process: wall time and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent

CHILD = """
import json, resource, sys, time
from pathlib import Path
from lo2_dagster.lib import loader
root, run = Path(sys.argv[1]), sys.argv[2]
t = time.perf_counter()
loaded = loader.load_run(root, run)
seqs = loader.build_sequences(loaded.events)
seconds = time.perf_counter() - t
print(json.dumps({"seconds": seconds, "totals": loaded.totals(), "events": len(loaded.events),
                  "sequences": len(seqs),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def ensure_data(data: Path, runs: int, token_lines: int) -> Path:
    marker = data / ".complete"
    if not marker.exists():
        print(f"generating {runs} runs x 54 x 7 with ~{token_lines} token lines per file ...")
        subprocess.run([str(BIN / "lo2-dagster"), "synth", str(data), "--runs", str(runs),
                        "--token-lines", str(token_lines), "--seed", "7"], check=True)
        marker.write_text("ok")
    return data


def bench_loader(data: Path) -> None:
    from lo2_dagster.lib.layout import scan_runs

    total_lines = total_seconds = 0.0
    for run in scan_runs(data)[0]:
        out = subprocess.run([sys.executable, "-c", CHILD, str(data), run], check=True,
                             capture_output=True, text=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        lines, mb = r["totals"]["lines"], r["totals"]["bytes"] / 1e6
        total_lines += lines
        total_seconds += r["seconds"]
        print(f"  loader {run}: {lines:,} lines ({mb:.0f} MB) -> {r['events']:,} events, "
              f"{r['sequences']} sequences in {r['seconds']:.2f} s = "
              f"{lines / r['seconds']:,.0f} lines/s, {mb / r['seconds']:.0f} MB/s, "
              f"peak RSS {r['peak_rss_mb']:.0f} MB")
    print(f"  loader overall: {total_lines / total_seconds:,.0f} lines/s")


MAIN_JOB = """
import resource, sys
from lo2_dagster.cli import main
rc = main(["run", "--root", sys.argv[1], "--warehouse", sys.argv[2]])
print("PEAK", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
sys.exit(rc)
"""


def bench_main_job(data: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, DAGSTER_HOME=f"{tmp}/home")
        started = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", MAIN_JOB, str(data), f"{tmp}/warehouse"],
                             check=True, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - started
    peak = float(out.stdout.strip().splitlines()[-1].split()[1])
    print(f"  lo2-dagster run (2 assets per run through Dagster, Parquet writes): "
          f"{seconds:.1f} s wall incl. start-up, peak RSS {peak:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--token-lines", type=int, default=10_000)
    parser.add_argument("--data", type=Path, default=None)
    args = parser.parse_args()
    data = args.data or HERE / "out" / f"ingest-{args.runs}x{args.token_lines}"
    ensure_data(data, args.runs, args.token_lines)
    size = sum(p.stat().st_size for p in data.rglob("*.log"))
    print(f"dataset {data}: {size / 1e6:.0f} MB of logs; machine: {os.cpu_count()} cores")
    bench_loader(data)
    bench_main_job(data)


if __name__ == "__main__":
    main()
