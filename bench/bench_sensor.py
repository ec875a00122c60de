"""The source-files sensor at full LO2 scale: a tick that discovers 1,740 run folders, a tick
with nothing new, and a tick with one new run; seconds and memory per tick.

Usage: ``.venv/bin/python bench/bench_sensor.py [--runs 1740] [--keep DIR]``.

The run folders hold the generator's smallest runs (one line per service file), hard-linked
from two generated runs so that 1,740 x 378 files take seconds to lay out; their folders get
an old modification time, as unpacking an archive leaves them (settled runs). The sensor runs
as the daemon runs it (``build_sensor_context``, a real on-disk instance), and what it returns
is applied as the daemon applies it (partitions added, observations recorded).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import dagster as dg

from lo2_dagster.defs.ingest.sensors import lo2_source_files
from lo2_dagster.defs.resources import FpAllowlistFile, Lo2Root
from lo2_dagster.synth import SynthConfig, generate

EPOCH = 1_700_000_000


def lay_out(root: Path, runs: int) -> list[str]:
    """``runs`` run folders under ``root/logs``, hard links to two generated runs' files."""
    source = root.parent / "source"
    generate(source, SynthConfig(runs=2, seed=1, token_lines=1, metrics=False))
    templates = sorted((source / "logs").iterdir())
    names = [f"light-oauth2-data-{EPOCH + 3600 * i}" for i in range(runs)]
    old = time.time() - 86_400
    for i, name in enumerate(names):
        template, target = templates[i % 2], root / "logs" / name
        for case in template.iterdir():
            (target / case.name).mkdir(parents=True)
            for log in case.iterdir():
                os.link(log, target / case.name / log.name)
            os.utime(target / case.name, (old, old))
        os.utime(target, (old, old))
    return names


def tick(instance: dg.DagsterInstance, root: Path, cursor: str | None
         ) -> tuple[dg.SensorResult, float, float, float]:
    """One sensor evaluation and the daemon's handling of it: (result, seconds of the
    evaluation, seconds to apply it, the process's peak RSS in MB so far)."""
    started = time.perf_counter()
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources={
            "lo2_root": Lo2Root(path=str(root)),
            "fp_allowlist": FpAllowlistFile(path=str(root / "none.toml"))}) as context:
        result = lo2_source_files(context)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3
    started = time.perf_counter()
    for request in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(request.partitions_def_name,
                                        list(request.partition_keys))
    for event in result.asset_events or []:
        instance.report_runless_asset_event(event)
    return result, seconds, time.perf_counter() - started, peak


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1740)
    parser.add_argument("--keep", type=Path, default=None, help="lay the runs out here")
    args = parser.parse_args(argv)
    base = args.keep or Path(tempfile.mkdtemp(prefix="lo2-bench-sensor-"))
    root = base / "lo2"
    try:
        started = time.perf_counter()
        names = lay_out(root, args.runs)
        files = sum(1 for _ in (root / "logs").rglob("*.log"))
        print(f"laid out {len(names)} runs, {files:,} files in "
              f"{time.perf_counter() - started:.1f} s ({os.cpu_count()} cores)")
        home = base / "home"
        home.mkdir(exist_ok=True)
        with dg.DagsterInstance.local_temp(tempdir=str(home), overrides={
                "telemetry": {"enabled": False}}) as instance:
            cursor, known = None, 0

            def run_tick(label: str) -> int:
                nonlocal cursor
                result, seconds, applied, peak = tick(instance, root, cursor)
                cursor = result.cursor
                added = sum(len(r.partition_keys) for r in result.dynamic_partitions_requests
                            or [])
                print(f"tick, {label}: {seconds:.2f} s, process peak RSS {peak:.0f} MB; "
                      f"{added} partitions added, "
                      f"{len(result.asset_events or [])} observations, applied in "
                      f"{applied:.1f} s; cursor {len(cursor or '') / 1e3:.0f} kB")
                return added

            started = time.perf_counter()
            while known < len(names):  # discovery, TICK_BUDGET_SECONDS of reading per tick
                known += run_tick(f"discovery ({known} of {len(names)} known before)")
            print(f"all {len(names)} runs discovered in {time.perf_counter() - started:.1f} s "
                  "of ticks (the daemon ticks every 60 s at most)")
            run_tick("nothing new")
            run_tick("nothing new (again)")
            new = f"light-oauth2-data-{EPOCH + 3600 * args.runs}"
            shutil.copytree(root / "logs" / names[0], root / "logs" / new)
            run_tick("one new run")
        print(f"process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3:.0f} "
              "MB")
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
