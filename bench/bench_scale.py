"""The whole-dataset stages and the UI with full LO2's 1,740 run partitions: the training-set
fingerprint, the model's training, and Chromium loading an asset page and its partitions.

Usage: ``.venv/bin/python bench/bench_scale.py [--runs 1740] [--distinct 12] [--keep DIR]
[--skip-ui]``.

How the 1,740 runs are made without materializing 1,740 runs (25 min of backfill at the
generator's smallest size): ``--distinct`` runs are generated (one token line per file) and
built by ``lo2-dagster run``; then 1,740 run folders are hard links to them (cycling), and a
second instance gets 1,740 run partitions whose per-run warehouse files are hard links to the
built ones and whose materializations and observations are the built ones' events, reported
again under the new partition names (same metadata, same data-version and provenance tags).
Dagster then holds what a 1,740-run backfill would have left (asset checks excepted), and the
model trains on 1,740 runs' sequences (each distinct run 1,740 / distinct times).

Each whole-dataset stage runs as ``lo2-dagster run`` runs it (``execute_in_process`` of the
asset, a real on-disk instance) in a fresh process: its wall time and the process's peak RSS.
The UI: ``dagster dev`` on that instance, a real Chromium opening lo2/sequences_enhanced's
asset page and its partitions tab; seconds until each shows its content.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
EPOCH = 1_700_000_000
CHROMIUM = "/usr/bin/chromium"


def _env(home: Path, root: Path, warehouse: Path) -> dict[str, str]:
    env = dict(os.environ, DAGSTER_HOME=str(home), LO2_ROOT=str(root),
               LO2_WAREHOUSE=str(warehouse), LO2_AUTOMATION="off")
    env.pop("VIRTUAL_ENV", None)
    return env


def build_sources(base: Path, distinct: int) -> tuple[Path, Path, Path]:
    """``distinct`` generated runs, built by ``lo2-dagster run``: (root, home, warehouse)."""
    from lo2_dagster.synth import SynthConfig, generate

    root, home, warehouse = base / "source", base / "source-home", base / "source-warehouse"
    generate(root, SynthConfig(runs=distinct, seed=1, token_lines=1, metrics=False))
    home.mkdir()
    started = time.perf_counter()
    subprocess.run([str(BIN / "lo2-dagster"), "run", "--log-level", "WARNING"], check=True,
                   env=_env(home, root, warehouse), stdout=subprocess.DEVNULL)
    print(f"built {distinct} distinct runs in {time.perf_counter() - started:.1f} s")
    return root, home, warehouse


def lay_out(base: Path, sources: Path, source_warehouse: Path, runs: int
            ) -> tuple[Path, Path, dict[str, str]]:
    """1,740 run folders and their warehouse files, hard links to the sources':
    (root, warehouse, target run -> source run)."""
    from lo2_dagster.lib.layout import scan_runs

    distinct = scan_runs(sources).runs
    root, warehouse = base / "lo2", base / "warehouse"
    names = {f"light-oauth2-data-{EPOCH + 3600 * i}": distinct[i % len(distinct)]
             for i in range(runs)}
    for name, source in names.items():
        for case in (sources / "logs" / source).iterdir():
            (root / "logs" / name / case.name).mkdir(parents=True)
            for log in case.iterdir():
                os.link(log, root / "logs" / name / case.name / log.name)
    per_run = 0
    for path in sorted(source_warehouse.rglob("*")):
        target = warehouse / path.relative_to(source_warehouse)
        if path.is_dir():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.stem in distinct:
            for name, source in names.items():
                if source == path.stem:
                    os.link(path, target.with_name(name + path.suffix))
                    per_run += 1
        else:
            shutil.copy2(path, target)
    print(f"laid out {runs} run folders and {per_run:,} per-run warehouse files")
    return root, warehouse, names


def replay_events(source_home: Path, home: Path, names: dict[str, str]) -> float:
    """The source instance's latest per-partition materializations and observations, reported
    under every target partition; the unpartitioned assets' latest materializations once.
    Returns the seconds it took."""
    import dagster as dg

    from lo2_dagster import settings
    from lo2_dagster.definitions import defs
    from lo2_dagster.defs.runs import RUNS

    home.mkdir()
    (home / "dagster.yaml").write_text(settings.instance_config())
    specs = list(defs().resolve_all_asset_specs())
    started = time.perf_counter()
    os.environ["DAGSTER_HOME"] = str(source_home)
    with dg.DagsterInstance.get() as source:
        events = []
        for spec in specs:
            partitioned = spec.partitions_def is not None
            for run in sorted(set(names.values())) if partitioned else [None]:
                records_filter = dg.AssetRecordsFilter(
                    asset_key=spec.key, asset_partitions=[run] if run else None)
                found = [r.asset_materialization for r in source.fetch_materializations(
                    records_filter, limit=1).records]
                found += [r.asset_observation for r in source.fetch_observations(
                    records_filter, limit=1).records]
                for event in found:
                    if event is None:
                        continue
                    if partitioned:
                        events += [_renamed(event, target) for target, source_run in names.items()
                                   if source_run == run]
                    else:
                        events.append(event)
    os.environ["DAGSTER_HOME"] = str(home)
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions(RUNS.name, list(names))
        for event in events:
            instance.report_runless_asset_event(event)
    seconds = time.perf_counter() - started
    print(f"reported {len(events):,} materializations and observations in {seconds:.1f} s")
    return seconds


def _renamed(event, partition: str):
    import dagster as dg

    kind = type(event)
    if kind is dg.AssetObservation:
        return dg.AssetObservation(asset_key=event.asset_key, partition=partition,
                                   metadata=event.metadata, tags=event.tags)
    return dg.AssetMaterialization(asset_key=event.asset_key, partition=partition,
                                   metadata=event.metadata, tags=event.tags)


def child(stage: str) -> None:
    """Materialize one whole-dataset asset as ``lo2-dagster run`` does; print JSON figures."""
    import dagster as dg

    from lo2_dagster.definitions import defs
    from lo2_dagster.defs.keys import ANOMALY_MODEL, TRAINING_SET

    key = {"training_set": TRAINING_SET, "anomaly_model": ANOMALY_MODEL}[stage]
    job = defs().resolve_implicit_global_asset_job_def()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3
    with dg.DagsterInstance.get() as instance:
        started = time.perf_counter()
        result = job.execute_in_process(instance=instance, asset_selection=[key],
                                        raise_on_error=False)
        seconds = time.perf_counter() - started
    metadata = {ev.materialization.asset_key.to_user_string(): {
        k: v.value for k, v in ev.materialization.metadata.items()
        if isinstance(v.value, int | float | str) and len(str(v.value)) < 200}
        for ev in result.get_asset_materialization_events()}
    print(json.dumps({"success": result.success, "seconds": seconds,
                      "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3,
                      "peak_before_mb": before,
                      "metadata": metadata.get(key.to_user_string(), {})}))


def stage(name: str, env: dict[str, str]) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", name], env=env, check=True,
                          capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def ui(base: Path, root: Path, warehouse: Path, runs: int) -> dict[str, float]:
    """Chromium on lo2/sequences_enhanced's asset page and its partitions tab, against
    ``dagster dev`` on the prepared instance (sensors on, automation off)."""
    from playwright.sync_api import expect, sync_playwright

    from lo2_dagster.devserver import dagster_dev

    sys.path.insert(0, str(HERE.parent / "lo2_dagster_tests"))
    figures = {}
    env = {"LO2_ROOT": str(root), "LO2_WAREHOUSE": str(warehouse), "LO2_AUTOMATION": "off"}
    with dagster_dev(base, env) as dev, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.set_default_timeout(120_000)
        last = max(dev.run_partitions())
        for attempt in ("cold", "warm"):
            started = time.perf_counter()
            page.goto(f"{dev.url}/assets/lo2/sequences_enhanced")
            expect(page.get_by_text("Latest materialization").first).to_be_visible()
            expect(page.get_by_text("drain_templates_digest", exact=True).first).to_be_visible()
            figures[f"asset page ({attempt})"] = time.perf_counter() - started
            page.screenshot(path=str(HERE / "out" / f"scale-asset-{attempt}.png"))
            started = time.perf_counter()
            page.goto(f"{dev.url}/assets/lo2/sequences_enhanced?view=partitions")
            expect(page.get_by_text(f"Materialized ({runs})").or_(
                page.get_by_text(f"Materialized ({runs:,})")).first).to_be_visible()
            figures[f"partitions tab ({attempt})"] = time.perf_counter() - started
            started = time.perf_counter()
            page.get_by_placeholder("Filter by name").fill(last)
            page.get_by_text(last, exact=True).first.click()
            expect(page.get_by_text("drain_templates_digest", exact=True).first).to_be_visible()
            figures[f"one partition's details ({attempt})"] = time.perf_counter() - started
            page.screenshot(path=str(HERE / "out" / f"scale-partitions-{attempt}.png"))
        browser.close()
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1740)
    parser.add_argument("--distinct", type=int, default=12,
                        help="distinct generated runs the 1,740 are hard links to")
    parser.add_argument("--keep", type=Path, default=None, help="work here, keep the files")
    parser.add_argument("--skip-ui", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child)
    base = args.keep or Path(tempfile.mkdtemp(prefix="lo2-bench-scale-"))
    base.mkdir(parents=True, exist_ok=True)
    (HERE / "out").mkdir(exist_ok=True)
    try:
        sources, source_home, source_warehouse = build_sources(base, args.distinct)
        root, warehouse, names = lay_out(base, sources, source_warehouse, args.runs)
        home = base / "dagster_home"
        replay_events(source_home, home, names)
        env = _env(home, root, warehouse)
        rows = []
        for name in ("training_set", "anomaly_model"):
            figures = stage(name, env)
            rows.append((name, figures))
            meta = figures["metadata"]
            print(f"{name}: {'ok' if figures['success'] else 'FAILED'} in "
                  f"{figures['seconds']:.1f} s, peak RSS {figures['peak_mb']:.0f} MB "
                  f"(after imports {figures['peak_before_mb']:.0f} MB); "
                  + ", ".join(f"{k}={meta[k]}" for k in (
                      "runs", "training_rows", "fitted_rows", "test_case/roc_auc",
                      "sequence/roc_auc") if k in meta))
        if not args.skip_ui:
            for what, seconds in ui(base, root, warehouse, args.runs).items():
                print(f"UI, {args.runs} partitions: {what}: {seconds:.1f} s")
        print(f"cores: {os.cpu_count()}")
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
