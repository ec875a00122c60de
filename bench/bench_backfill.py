"""How long an asset backfill of the whole graph takes through a real daemon, with the chosen
BackfillPolicy (many runs per Dagster run) and with one Dagster run per partition. On demand
(never in the test suite): it starts `dagster dev` once per setting.

    .venv/bin/python bench/bench_backfill.py [--runs 50] [--batches 25,1] [--token-lines 1]

Per setting: a fresh DAGSTER_HOME and warehouse, the same generated dataset (N runs x 54 test
cases x 7 services at the generator's smallest size, cached under bench/out/), the automation
sensor off; the source-files sensor adds the partitions, then the backfill is launched through
GraphQL (as the UI's "Materialize all" -> All does) and timed until it succeeds. Prints, per
setting, the wall time, the Dagster runs it launched, the seconds per run partition, and the
peak RSS of the Dagster run processes (sampled from /proc every 0.2 s while they live; every
``multiprocessing.spawn`` child counts, so a few non-run children of the code server may too).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
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


class RunPeaks:
    """Samples the peak RSS (VmHWM) of every Dagster run process while it lives: the default
    run launcher has the code server start each run in a process of its own
    (``multiprocessing.spawn``)."""

    def __init__(self, every: float = 0.2) -> None:
        self.peaks: dict[int, float] = {}
        self._every, self._stop = every, threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> RunPeaks:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self._every):
            for proc in Path("/proc").iterdir():
                if not proc.name.isdigit():
                    continue
                try:
                    if b"spawn_main" not in (proc / "cmdline").read_bytes():
                        continue
                    status = (proc / "status").read_text()
                except OSError:
                    continue
                for line in status.splitlines():
                    if line.startswith("VmHWM:"):
                        mb = int(line.split()[1]) / 1024
                        pid = int(proc.name)
                        self.peaks[pid] = max(self.peaks.get(pid, 0.0), mb)


def measure(root: Path, batch: int, runs: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-backfill-") as tmp:
        env = {"LO2_BACKFILL_RUNS_PER_BATCH": str(batch)}
        with deployment(Path(tmp), root, env, timeout=300) as deployed, RunPeaks() as peaks:
            dev, names = deployed.dev, deployed.runs
            assert len(names) == runs
            started = time.monotonic()
            backfill = dev.launch_backfill(dev.materializable_assets())
            status = dev.wait_backfill(backfill, timeout=6 * 3600)
            seconds = time.monotonic() - started
            launched = dev.backfill_runs(backfill)
    rss = sorted(peaks.peaks.values())
    return {"runs_per_batch": batch, "status": status, "seconds": round(seconds, 1),
            "dagster_runs": len(launched),
            "failed_dagster_runs": sum(s != "SUCCESS" for s, _ in launched),
            "seconds_per_partition": round(seconds / runs, 2),
            "run_processes_sampled": len(rss),
            "run_peak_rss_mb": round(rss[-1]) if rss else None,
            "run_median_peak_rss_mb": round(rss[len(rss) // 2]) if rss else None}


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
              f"{figures['seconds_per_partition']:.2f} s per run partition; run processes' peak "
              f"RSS {figures['run_peak_rss_mb']} MB (median "
              f"{figures['run_median_peak_rss_mb']} MB over "
              f"{figures['run_processes_sampled']} sampled)", flush=True)
    if args.json:
        print(json.dumps(results))
    return 0 if all(r["status"] == "COMPLETED_SUCCESS" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
