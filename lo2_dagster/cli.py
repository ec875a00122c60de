"""``lo2-dagster``: generate a sample, run the whole pipeline headless, open the UI."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from lo2_dagster import settings


def main(argv: Sequence[str] | None = None) -> int:
    settings.return_freed_memory()  # before anything imports polars
    parser = argparse.ArgumentParser(
        prog="lo2-dagster", description="LO2 log anomaly detection on Dagster."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    synth = sub.add_parser("synth", help="generate a realistic synthetic LO2 dataset")
    synth.add_argument("out", type=Path, help="output folder (gets logs/ and metrics/)")
    synth.add_argument("--runs", type=int, default=3)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--token-lines", type=int, default=None,
                       help="average lines per token-service file (other services scale)")
    synth.add_argument("--start-epoch", type=int, default=None, help="first run's epoch (UTC)")
    synth.add_argument("--no-metrics", action="store_true", help="skip metrics/<run>.csv")
    synth.add_argument("--mix-shift", type=float, default=0.0,
                       help="shift the traffic mix toward background cache lines, 0..1 (a "
                            "drift for lo2/score_drift to find; default 0: LO2's mix)")
    synth.add_argument("--hard", action="store_true",
                       help="the hard mode: start-up only in each run's first test case, "
                            "failing requests adding 0.5-2 %% to the traffic, shared failures "
                            "in correct traffic too (half of the error cases are frequency "
                            "shifts only), varied values")
    synth.add_argument("--startup", choices=("every", "first"), default=None,
                       help="start-up output at the head of every file (default) or only in "
                            "each run's first test case (as in LO2)")
    synth.add_argument("--schedule", choices=("shuffled", "v1"), default=None,
                       help="shuffled order, 20-180 s each (default, LO2 v2), or LO2 v1's: "
                            "correct first for 60 s, then the error cases 10 s each")
    synth.add_argument("--layout", choices=("v1", "v2"), default="v1",
                       help="folder layout of LO2 v1 (default) or v2: v2 names runs "
                            "oauth2_logs_LO2_run_<epoch>, adds logs/pre_run_results/ and "
                            "per-test-case metrics/ JSON, lets some runs lack 1-3 error cases, "
                            "and plays v2's schedule (shuffled, start-up only in each run's "
                            "first test case) unless --schedule/--startup say otherwise; "
                            "combines with --hard")
    synth.set_defaults(func=_synth)

    run = sub.add_parser("run", help="bring the whole asset graph up to date for every run found: "
                                     "what the assets' automation conditions request, as the "
                                     "automation sensor would, plus code changes")
    run.add_argument("--root", help=f"LO2 root (default ${settings.ENV_ROOT} or the sample)")
    run.add_argument("--warehouse", help=f"warehouse root (default ${settings.ENV_WAREHOUSE} "
                                         "or data/warehouse)")
    run.add_argument("--runs", nargs="*", metavar="RUN",
                     help="only these run folders are added and looked at (what the automation "
                          "already owes other runs, e.g. rescoring after a new model, runs too)")
    run.add_argument("--retrain", action="store_true",
                     help="also retrain what the retrain cron retrains (the Drain templates, the "
                          "exports, the model), as at one of its ticks")
    run.add_argument("--force", action="store_true",
                     help="rematerialize everything, even what is up to date")
    run.add_argument("--log-level", default="INFO",
                     help="log level of the assets on the terminal (DEBUG, INFO, WARNING)")
    run.add_argument("--no-wait", action="store_true",
                     help="exit (code 3) instead of waiting when another lo2-dagster run is "
                          "using the same DAGSTER_HOME or warehouse")
    run.set_defaults(func=_run)

    forget = sub.add_parser("forget", help="forget run partitions whose folders were deleted "
                                           "(their warehouse files are kept)")
    forget.add_argument("runs", nargs="+", metavar="RUN")
    forget.add_argument("--root", help="LO2 root (to check that the folders are gone)")
    forget.add_argument("--warehouse", help="warehouse root (locked while forgetting)")
    forget.set_defaults(func=_forget)

    ui = sub.add_parser("ui", help="start the Dagster UI (dagster dev) on this DAGSTER_HOME")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=3000)
    ui.add_argument("--root", help="LO2 root for the sensor and assets")
    ui.add_argument("--warehouse", help="warehouse root")
    ui.set_defaults(func=_ui)

    args = parser.parse_args(argv)
    try:
        with settings.fewer_full_collections():  # imports and definitions included
            return int(args.func(args) or 0)
    except settings.InstanceConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _export_locations(args: argparse.Namespace) -> None:
    """Export the LO2 root and warehouse as absolute values (from the flags, else the
    environment), so the resources of this process and of `dagster dev` (which runs in the
    checkout) see the same folders, whatever the current directory."""
    os.environ[settings.ENV_ROOT] = str(settings.lo2_root(getattr(args, "root", None)))
    os.environ[settings.ENV_WAREHOUSE] = settings.warehouse_root(getattr(args, "warehouse", None))


def _synth(args: argparse.Namespace) -> int:
    from lo2_dagster.synth import HARD_VALUES, SynthConfig, generate

    # --hard's values (SynthConfig.hard's) go in first and explicit flags last, so that
    # --startup/--schedule win; --layout v2 builds on SynthConfig.lo2_v2, which these overrides
    # beat (it agrees with --hard on startup).
    overrides = {**(HARD_VALUES if args.hard else {}),
                 "runs": args.runs, "seed": args.seed, "metrics": not args.no_metrics,
                 "mix_shift": args.mix_shift}
    if args.token_lines is not None:
        overrides["token_lines"] = args.token_lines
    if args.start_epoch is not None:
        overrides["start_epoch"] = args.start_epoch
    for name in ("startup", "schedule"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    make = SynthConfig.lo2_v2 if args.layout == "v2" else SynthConfig
    config = make(**overrides)
    summary = generate(args.out, config)
    mb = summary.bytes / 1e6
    print(f"wrote {len(summary.runs)} runs, {summary.files} files, {summary.lines:,} lines, "
          f"{mb:.1f} MB to {summary.root} in {summary.seconds:.1f} s "
          f"({mb / max(summary.seconds, 1e-9):.0f} MB/s)")
    return 0


def _run(args: argparse.Namespace) -> int:
    _export_locations(args)
    from lo2_dagster.lib.layout import LayoutError, nested_roots, scan_runs

    root = settings.lo2_root()
    follow = settings.follow_symlinks()
    try:
        runs, skipped, other = scan_runs(root, follow)
    except LayoutError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for reason in skipped:
        print(f"warning: skipped run folder {reason}", file=sys.stderr)
    if other:
        print(f"note: not runs (no log files in them): {', '.join(other)}")
    if args.runs:
        unknown = sorted(set(args.runs) - set(runs))
        if unknown:
            print(f"error: no such run folder(s) under {root}: {', '.join(unknown)}",
                  file=sys.stderr)
            return 2
        runs = [r for r in runs if r in set(args.runs)]
    if not runs:
        nested = nested_roots(root, follow)
        hint = (f" The runs seem to be one level down: --root {nested[0]}" if nested else
                " Generate some with `lo2-dagster synth DIR` and pass --root DIR.")
        print(f"error: no run folders under {root} (expected {root}/logs/<run>/<test_case>/"
              f"*.log, LO2 v1 or v2 run folders).{hint}", file=sys.stderr)
        return 2
    warehouse = settings.warehouse_root()
    from lo2_dagster.lock import Busy, LockError, exclusive
    from lo2_dagster.storage import unwritable

    problem = unwritable(warehouse)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        with exclusive(settings.dagster_home(), warehouse, wait=not args.no_wait,
                       notice=lambda m: print(m, file=sys.stderr, flush=True)):
            return _run_locked(args, root, runs, warehouse)
    except Busy as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    except LockError as e:  # DAGSTER_HOME or the warehouse cannot hold the lock file
        print(f"error: {e}", file=sys.stderr)
        return 2


def _run_locked(args: argparse.Namespace, root: Path, runs: list[str], warehouse: str) -> int:
    """`lo2-dagster run`, once this process alone uses DAGSTER_HOME and the warehouse."""
    home = settings.prepare_dagster_home()
    import dagster as dg

    from lo2_dagster.definitions import defs
    from lo2_dagster.pipeline import materialize_all

    print(f"LO2 root:     {root} ({len(runs)} runs)")
    print(f"warehouse:    {warehouse}")
    print(f"DAGSTER_HOME: {home}")
    started = time.perf_counter()
    with dg.DagsterInstance.get() as instance:
        outcomes = materialize_all(defs(), instance, runs, log_level=args.log_level.upper(),
                                   force=args.force, retrain=args.retrain)
    _summary(outcomes, runs, warehouse, time.perf_counter() - started)
    return 0 if all(o.success for o in outcomes) else 1


def _forget(args: argparse.Namespace) -> int:
    """Delete run partitions (a run folder that was removed on purpose): the model stops
    training on them; their warehouse files stay until removed by hand."""
    from lo2_dagster.lib.layout import LayoutError, logs_dir
    from lo2_dagster.lock import exclusive

    _export_locations(args)
    try:
        present = [run for run in args.runs if (logs_dir(settings.lo2_root()) / run).is_dir()]
    except LayoutError:
        present = []
    if present:
        print(f"error: {', '.join(present)} still has a folder under {settings.lo2_root()}: "
              "the next run or sensor tick would add it back. Delete the folder first.",
              file=sys.stderr)
        return 2
    home = settings.dagster_home()
    with exclusive(home, settings.warehouse_root(), wait=True,
                   notice=lambda m: print(m, file=sys.stderr, flush=True)):
        settings.prepare_dagster_home()
        return _forget_locked(args.runs, home)


def _forget_locked(runs: list[str], home: Path) -> int:
    """Delete the partitions of ``runs`` from the instance (all of them known, or none)."""
    import dagster as dg

    from lo2_dagster.defs.runs import RUNS

    with dg.DagsterInstance.get() as instance:
        known = set(instance.get_dynamic_partitions(RUNS.name))
        unknown = [run for run in runs if run not in known]
        if unknown:
            print(f"error: no such run partition(s) in {home}: {', '.join(unknown)}",
                  file=sys.stderr)
            return 2
        for run in runs:
            instance.delete_dynamic_partition(RUNS.name, run)
            print(f"forgot {run} (its files under {settings.warehouse_root()}/lo2/*/{run}"
                  ".parquet are kept; delete them by hand if you like)")
    return 0


def _summary(outcomes: list, runs: Sequence[str], warehouse: str, seconds: float) -> None:
    """The few numbers a user wants after a run, and where to look next."""
    from lo2_dagster.lib.metrics import format_figure

    totals: dict[str, int] = {}
    for outcome in outcomes:
        for asset, values in outcome.metadata.items():
            rows = values.get("dagster/row_count")
            if isinstance(rows, int):
                totals[asset] = totals.get(asset, 0) + rows
    failed = [o for o in outcomes if not o.success]
    print()
    print(f"done in {seconds:.1f} s: {len(runs)} runs, {len(outcomes)} Dagster runs, "
          f"{len(failed)} failed" + ("" if outcomes else " (nothing was requested; "
                                     "--force rematerializes anyway)"))
    for asset, rows in totals.items():
        print(f"  {asset:<24} {rows:>12,} rows")
    for o in failed:
        print(f"  FAILED {o.partition or 'all runs'}: {o.error}")
    print(f"files:  {warehouse}/lo2/<asset>/<run>.parquet")
    model = next((o.metadata["lo2/anomaly_model"] for o in outcomes
                  if "lo2/anomaly_model" in o.metadata), None)
    if model is not None:
        print(f"model:  {warehouse}/lo2/anomaly_model/ (model.joblib, model.yml, metrics.json): "
              f"{model['model']}, holdout ROC AUC {format_figure(model['test_case/roc_auc'])} "
              f"(test cases), {format_figure(model['sequence/roc_auc'])} (sequences)")
        print(f"predictions: {warehouse}/lo2/predictions/<run>.parquet")
    report = next((o.metadata["lo2/model_report"] for o in outcomes
                   if "lo2/model_report" in o.metadata), None)
    if report is not None:
        print(f"report: {warehouse}/reports/model_report/ (model_report.md, plots, "
              f"{report['false_positives']} holdout false positives)")
    explained = [o for o in outcomes if "lo2/explanations" in o.metadata]
    if explained:
        print(f"why:    {warehouse}/lo2/explanations/<run>.parquet; each run's summary is on "
              "lo2/explanations' page in the UI")
    print("UI:     lo2-dagster ui   -> http://127.0.0.1:3000 (Assets, Runs)")


def _ui(args: argparse.Namespace) -> int:
    _export_locations(args)
    home = settings.prepare_dagster_home()
    print(f"DAGSTER_HOME={home}; UI on http://{args.host}:{args.port}", flush=True)
    cmd = [sys.executable, "-m", "dagster", "dev", "-h", args.host, "-p", str(args.port),
           "-w", str(settings.REPO_ROOT / "workspace.yaml")]
    return subprocess.call(cmd, cwd=settings.REPO_ROOT)


if __name__ == "__main__":
    sys.exit(main())
