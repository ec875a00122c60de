"""Ingest throughput and peak memory, on demand (never in the test suite).

    .venv/bin/python bench/bench_ingest.py [--runs 2] [--token-lines 10000] [--data DIR]

Generates (once, cached under bench/out/) a dataset of N runs x 54 test cases x 7 services,
then measures:
  1. the loader alone (lib): lines/s and peak RSS of a fresh process per run;
  2. the whole pipeline headless (`lo2-dagster run`: raw_events + raw_sequences through
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
from typing import Any

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent

# --- the children (each in a fresh process: `bench_ingest.py --child KIND ...`) --------------


def child_loader(root: str, run: str) -> None:
    """Load one run and build its sequences; seconds, counts and peak RSS as JSON."""
    import resource

    from lo2_dagster.lib import loader

    t = time.perf_counter()
    loaded = loader.load_run(Path(root), run)
    seqs = loader.build_sequences(loaded.events)
    seconds = time.perf_counter() - t
    print(json.dumps({"seconds": seconds, "totals": loaded.totals(),
                      "events": len(loaded.events), "sequences": len(seqs),
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def child_main_job(root: str, warehouse: str) -> int:
    """`lo2-dagster run` on ``root`` into ``warehouse``; peak RSS on the last line."""
    import resource

    from lo2_dagster.cli import main

    rc = main(["run", "--root", root, "--warehouse", warehouse])
    print("PEAK", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return rc


CHILDREN = {"loader": child_loader, "main-job": child_main_job}


def run_child(kind: str, *args: str, **kwargs: Any) -> subprocess.CompletedProcess:
    """This script as ``--child KIND ARGS`` in a fresh Python process."""
    return subprocess.run([sys.executable, __file__, "--child", kind, *args], check=True,
                          capture_output=True, text=True, **kwargs)


# --- the parent --------------------------------------------------------------------------------


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
        out = run_child("loader", str(data), run)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        lines, mb = r["totals"]["lines"], r["totals"]["bytes"] / 1e6
        total_lines += lines
        total_seconds += r["seconds"]
        print(f"  loader {run}: {lines:,} lines ({mb:.0f} MB) -> {r['events']:,} events, "
              f"{r['sequences']} sequences in {r['seconds']:.2f} s = "
              f"{lines / r['seconds']:,.0f} lines/s, {mb / r['seconds']:.0f} MB/s, "
              f"peak RSS {r['peak_rss_mb']:.0f} MB")
    print(f"  loader overall: {total_lines / total_seconds:,.0f} lines/s")


def bench_main_job(data: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, DAGSTER_HOME=f"{tmp}/home")
        started = time.perf_counter()
        out = run_child("main-job", str(data), f"{tmp}/warehouse", env=env)
        seconds = time.perf_counter() - started
    peak = float(out.stdout.strip().splitlines()[-1].split()[1])
    print(f"  lo2-dagster run (2 assets per run through Dagster, Parquet writes): "
          f"{seconds:.1f} s wall incl. start-up, peak RSS {peak:.0f} MB")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        sys.exit(CHILDREN[sys.argv[2]](*sys.argv[3:]))
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
