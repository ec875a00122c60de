"""Loader throughput in lines/s, per core and on all cores, on the real LO2 excerpt and on
generated runs, on demand (never in the test suite).

    .venv/bin/python bench/bench_loader.py [--token-lines 6500] [--repeat 3]

Two inputs, each read by ``lib.loader.load_run`` (decode, classify every line, join
continuations, label, account) in fresh processes:

  excerpt    a run folder in LO2's layout whose 378 service files (54 test cases x 7 services)
             are each the real 300-line excerpt of ../shared/lo2 (its copy in
             lo2_dagster_tests/fixtures): 113,400 real lines;
  generated  one generated run (``SynthConfig(runs=1, token_lines=N)``, cached under
             bench/out/).

Per core: the child is pinned to one CPU (``sched_setaffinity``) with POLARS_MAX_THREADS=1;
all cores: no pinning. The best of ``--repeat`` runs is printed (the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
EXCERPT = HERE.parent / "lo2_dagster_tests" / "fixtures" / "real-token-correct-excerpt.log"
RUN = "light-oauth2-data-1719592986"


def excerpt_root() -> Path:
    """An LO2 root with one run whose every service file is the real excerpt."""
    from lo2_dagster.lib.names import SERVICES, TEST_CASES, service_file_name

    root = HERE / "out" / "loader-excerpt"
    if not (root / "logs" / RUN).is_dir():
        for case in TEST_CASES:
            folder = root / "logs" / RUN / case
            folder.mkdir(parents=True, exist_ok=True)
            for service in SERVICES:
                shutil.copyfile(EXCERPT, folder / service_file_name(service))
    return root


def generated_root(token_lines: int) -> Path:
    from lo2_dagster.synth import SynthConfig, generate

    root = HERE / "out" / f"loader-generated-{token_lines}"
    if not (root / "logs").is_dir():
        generate(root, SynthConfig(runs=1, seed=1, token_lines=token_lines, metrics=False))
    return root


def child(root: str, one_core: bool) -> None:
    if one_core:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    from lo2_dagster.lib import loader

    run = sorted(p.name for p in (Path(root) / "logs").iterdir())[0]
    started = time.perf_counter()
    loaded = loader.load_run(Path(root), run)
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "lines": loaded.totals()["lines"],
                      "events": loaded.totals()["event"]}))


def measure(root: Path, one_core: bool, repeat: int) -> dict:
    env = dict(os.environ, **({"POLARS_MAX_THREADS": "1"} if one_core else {}))
    best = None
    for _ in range(repeat):
        done = subprocess.run([sys.executable, __file__, "--child", str(root)]
                              + (["--one-core"] if one_core else []),
                              env=env, check=True, capture_output=True, text=True)
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        if best is None or figures["seconds"] < best["seconds"]:
            best = figures
    assert best is not None
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--token-lines", type=int, default=6500)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--one-core", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.one_core)
    cores = len(os.sched_getaffinity(0))
    print(f"{cores} cores; best of {args.repeat}")
    print(f"  {'input':<34} {'lines':>10} {'cores':>5} {'seconds':>8} {'lines/s':>11} "
          f"{'lines/s per core':>17}")
    for name, root in (("excerpt (real lines, 378 copies)", excerpt_root()),
                       (f"generated (token lines {args.token_lines})",
                        generated_root(args.token_lines))):
        for one_core in (True, False):
            f = measure(root, one_core, args.repeat)
            used = 1 if one_core else cores
            rate = f["lines"] / f["seconds"]
            print(f"  {name:<34} {f['lines']:>10,} {used:>5} {f['seconds']:>8.2f} "
                  f"{rate:>11,.0f} {rate / used:>17,.0f}", flush=True)


if __name__ == "__main__":
    main()
