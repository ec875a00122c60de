"""Anomaly model quality, training time and peak memory, on demand (never in the test suite).

    .venv/bin/python bench/bench_model.py [--runs 20] [--token-lines 25]
                                          [--features drain,numeric ...] [--models NAME ...]
                                          [--memory-runs 100] [--memory-models NAME ...]
                                          [--skip-eval] [--build all|staged] [--json OUT]

Builds (once, cached under bench/out/model-<runs>x<token_lines>/) a dataset with the project's
generator (``lo2-dagster synth --seed 7 --no-metrics``, default size: 25 token lines) and its
enhanced sequence tables with bench_enhance.py's child stages (raw, templates, enhanced), into
``<cache>/lo2`` (the logs) and ``<cache>/warehouse`` (``lo2/sequences_enhanced/<run>.parquet``).

Evaluation (the default): every registry model (lo2_dagster.lib.models.REGISTRY) x every
feature set, each training in a fresh child process, so seconds and peak RSS are per training.
Training is ``lo2_dagster.lib.model.train`` with the default TrainingConfig (holdout fraction,
seed, threshold percentile), reading each run's Parquet 256 rows at a time. The table shows the
holdout metrics at test-case level (run x test case) and sequence level (run x test case x
service). The default model's bundle is serialized (``bundle_files``, fixed timestamp) after
two trainings in one child and once more in another child: equal sha256s = deterministic.

--memory-runs N builds an N-run dataset and trains the default model (or --memory-models) with
the default features and with drain,words,trigrams,numeric, one child each: seconds and peak
RSS. The issue's bound: training over 100 runs of the generator's default size within 4 GB.
--skip-eval skips the evaluation (e.g. to run the memory mode alone).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
ENHANCE = HERE / "bench_enhance.py"
FEATURE_SETS = ("drain,numeric", "drain,words,numeric", "drain,words,trigrams,numeric")
MEMORY_FEATURE_SETS = (None, "drain,words,trigrams,numeric")  # None: FeatureSpec's default
BOUND_MB = 4 * 1024
FIXED_TIME = "2024-01-01T00:00:00+00:00"


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- the training (run in a child process) -------------------------------------------------

def _sources(wh: Path) -> dict:
    """Run name -> callable(columns) yielding polars batches of its sequences_enhanced table,
    read as lo2/anomaly_model reads them."""
    import functools

    from upath import UPath

    from lo2_dagster.lib.model import BATCH_ROWS
    from lo2_dagster.storage import iter_parquet

    folder = wh / "lo2" / "sequences_enhanced"
    return {p.stem: functools.partial(iter_parquet, UPath(p), batch_rows=BATCH_ROWS)
            for p in sorted(folder.glob("*.parquet"))}


def _sha(bundle) -> str:
    import datetime as dt

    from lo2_dagster.lib.model import bundle_files

    return bundle_files(bundle, dt.datetime.fromisoformat(FIXED_TIME), None).sha256


def child_train(wh: Path, model: str, features: str, twice: bool) -> dict:
    """One training; ``twice``: a second one in the same process, and both bundles' sha256."""
    from lo2_dagster.lib.model import TrainingConfig, train
    from lo2_dagster.lib.vectorize import FeatureSpec

    runs = _sources(wh)
    spec = FeatureSpec(features=tuple(features.split(","))) if features else FeatureSpec()
    config = TrainingConfig(model=model, features=spec)
    started = time.perf_counter()
    bundle = train(runs, config)
    seconds = time.perf_counter() - started
    peak = _peak_mb()  # before serializing: the training's own peak
    m = bundle.metrics
    record = {
        "model": model, "features": ",".join(spec.features), "runs": len(runs),
        "seconds": seconds, "peak_rss_mb": peak,
        "columns": len(bundle.vectorizer.feature_names), "threshold": bundle.threshold,
        "training_runs": list(bundle.split.training), "holdout_runs": list(bundle.split.holdout),
        "training_rows": bundle.training_rows, "holdout_rows": bundle.holdout_rows,
        "fitted_on_sequences": bundle.vectorizer.fitted_rows,
        "vectorizer": bundle.vectorizer.summary(), "gate": bundle.gate,
        "test_case": m["test_case"], "sequence": m["sequence"],
    }
    started = time.perf_counter()
    record["sha256"] = [_sha(bundle)]
    record["serialize_seconds"] = time.perf_counter() - started
    if twice:
        del bundle
        started = time.perf_counter()
        again = train(runs, config)
        record["second_seconds"] = time.perf_counter() - started
        record["sha256"].append(_sha(again))
    return record


def child_main(argv: list[str]) -> None:
    """``--child train WAREHOUSE MODEL FEATURES [--twice]``: a JSON record on the last line."""
    kind, *rest = argv
    if kind != "train":
        raise SystemExit(f"unknown child kind {kind}")
    wh, model, features = Path(rest[0]), rest[1], rest[2]
    record = child_train(wh, model, features, "--twice" in rest[3:])
    record["final_peak_rss_mb"] = _peak_mb()
    print(json.dumps(record))


# --- the dataset ---------------------------------------------------------------------------

def _run_json(cmd: list[str]) -> tuple[dict, float]:
    started = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if out.returncode != 0:
        sys.stderr.write(out.stdout[-4000:] + out.stderr[-8000:])
        raise SystemExit(f"child failed ({out.returncode}): {' '.join(cmd[:6])} ...")
    return json.loads(out.stdout.strip().splitlines()[-1]), wall


def _enhance_child(*args: str) -> tuple[list[dict], float, float]:
    result, wall = _run_json([sys.executable, str(ENHANCE), "--child", *args])
    return result["records"], wall, result["final_peak_rss_mb"]


def ensure_dataset(runs: int, token_lines: int, build: str) -> Path:
    """``bench/out/model-<runs>x<token_lines>``: ``lo2`` (logs) and ``warehouse`` (enhanced
    tables), built once; ``.complete`` marks a finished build."""
    folder = HERE / "out" / f"model-{runs}x{token_lines}"
    if (folder / ".complete").exists():
        return folder
    data, wh = folder / "lo2", folder / "warehouse"
    if not (data / ".complete").exists():
        shutil.rmtree(data, ignore_errors=True)
        print(f"generating {runs} runs (--token-lines {token_lines}) into {data} ...",
              flush=True)
        started = time.perf_counter()
        subprocess.run([str(BIN / "lo2-dagster"), "synth", str(data), "--runs", str(runs),
                        "--seed", "7", "--token-lines", str(token_lines), "--no-metrics"],
                       check=True)
        print(f"  synth: {time.perf_counter() - started:.1f} s", flush=True)
        (data / ".complete").write_text("ok")

    from lo2_dagster.lib.layout import scan_runs

    names = scan_runs(data)[0]
    if len(names) != runs:
        raise SystemExit(f"{data} holds {len(names)} runs, not {runs}: delete it and rerun")
    shutil.rmtree(wh, ignore_errors=True)
    print(f"enhancing {runs} runs with bench_enhance.py children ({build}) ...", flush=True)
    started = time.perf_counter()
    if build == "all":
        records, wall, peak = _enhance_child("all", str(data), str(wh), *names)
        print(f"  one child: {wall:.1f} s, peak RSS {peak:,.0f} MB", flush=True)
    else:
        workers = max(1, min(len(os.sched_getaffinity(0)), 2))
        with ThreadPoolExecutor(workers) as pool:
            raw = list(pool.map(lambda r: _enhance_child("raw", str(data), r, str(wh)), names))
            stage_peak = max(p for _, _, p in raw)
            print(f"  raw: {len(raw)} children, {time.perf_counter() - started:.1f} s, "
                  f"max peak RSS {stage_peak:,.0f} MB", flush=True)
            templates = _enhance_child("templates", str(wh), *names)
            print(f"  templates: {templates[1]:.1f} s, peak RSS {templates[2]:,.0f} MB",
                  flush=True)
            enhanced = list(pool.map(lambda r: _enhance_child("enhanced", str(wh), r), names))
            print(f"  enhanced: {len(enhanced)} children, max peak RSS "
                  f"{max(p for _, _, p in enhanced):,.0f} MB", flush=True)
        records = [r for part in (*raw, templates, *enhanced) for r in part[0]]
    sys.path.insert(0, str(HERE))
    from bench_enhance import check

    problems = check(records)
    if problems:
        raise SystemExit("enhanced tables disagree with the raw ones:\n  " + "\n  ".join(problems))
    lines = sum(r["lines"] for r in records if r["stage"] == "raw")
    sequences = sum(r["sequences"] for r in records if r["stage"] == "sequences_enhanced")
    print(f"  {lines:,} log lines -> {sequences:,} sequences, counts ok, "
          f"{time.perf_counter() - started:.1f} s", flush=True)
    (folder / ".complete").write_text(json.dumps({"lines": lines, "sequences": sequences}))
    return folder


# --- the parent: children and tables -------------------------------------------------------

def train_child(wh: Path, model: str, features: str, twice: bool = False) -> dict:
    cmd = [sys.executable, __file__, "--child", "train", str(wh), model, features]
    record, wall = _run_json(cmd + (["--twice"] if twice else []))
    record["wall_seconds"] = wall
    return record


def _f(value: float | None) -> str:
    from lo2_dagster.lib.metrics import format_figure

    return format_figure(value, missing="-")


def _short(runs: list[str], prefix: str) -> str:
    return ",".join(r.removeprefix(prefix) for r in runs)


def print_table(records: list[dict]) -> None:
    names = {r for rec in records for r in rec["holdout_runs"]}
    prefix = "light-oauth2-data-" if all(n.startswith("light-oauth2-data-") for n in names) \
        else ""
    head = (f"  {'model':<20} {'features':<28} {'sec':>6} {'MB':>6} | {'tc_roc':>6} "
            f"{'tc_pr':>6} {'tc_f1':>6} {'tc_rec':>6} {'tc_pre':>6} | {'sq_roc':>6} "
            f"{'sq_pr':>6} {'sq_f1':>6} | {'cols':>6} {'thresh':>9}  holdout ({prefix}*)")
    print(head)
    print("  " + "-" * (len(head) - 2))
    for r in records:
        tc, sq = r["test_case"], r["sequence"]
        print(f"  {r['model']:<20} {r['features']:<28} {r['seconds']:>6.1f} "
              f"{r['peak_rss_mb']:>6,.0f} | {_f(tc['roc_auc']):>6} {_f(tc['pr_auc']):>6} "
              f"{_f(tc['f1']):>6} {_f(tc['recall']):>6} {_f(tc['precision']):>6} | "
              f"{_f(sq['roc_auc']):>6} {_f(sq['pr_auc']):>6} {_f(sq['f1']):>6} | "
              f"{r['columns']:>6,} {r['threshold']:>9.4g}  "
              f"{_short(r['holdout_runs'], prefix)}")


def evaluate_all(wh: Path, models: list[str], feature_sets: list[str]) -> list[dict]:
    from lo2_dagster.lib.model import DEFAULT_MODEL

    records = []
    for features in feature_sets:
        for model in models:
            twice = model == DEFAULT_MODEL and features == feature_sets[0]
            record = train_child(wh, model, features, twice)
            record["kind"] = "evaluation"
            records.append(record)
            print(f"  {model} [{features}]: {record['seconds']:.1f} s training, "
                  f"{record['wall_seconds']:.1f} s child, peak {record['peak_rss_mb']:,.0f} MB",
                  flush=True)
    return records


def determinism(wh: Path, records: list[dict], feature_sets: list[str]) -> dict | None:
    """The default model's sha256: twice in one child, once more in a fresh child."""
    from lo2_dagster.lib.model import DEFAULT_MODEL

    first = next((r for r in records if r["model"] == DEFAULT_MODEL
                  and r["features"] == feature_sets[0] and len(r["sha256"]) == 2), None)
    if first is None:
        return None
    other = train_child(wh, DEFAULT_MODEL, feature_sets[0])
    shas = [*first["sha256"], *other["sha256"]]
    print(f"\ndeterminism of the default model {DEFAULT_MODEL} [{first['features']}] "
          f"(bundle_files(bundle, {FIXED_TIME}, None).sha256):")
    print(f"  child 1, training 1: {shas[0]}")
    print(f"  child 1, training 2: {shas[1]}  ({first['second_seconds']:.1f} s)")
    print(f"  child 2, training 1: {shas[2]}")
    same = len(set(shas)) == 1
    print("  -> " + ("identical: deterministic" if same else "DIFFERENT: not deterministic"))
    return {"kind": "determinism", "model": DEFAULT_MODEL, "features": first["features"],
            "sha256": shas, "identical": same}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child_main(sys.argv[2:])
        return
    from lo2_dagster.lib.model import DEFAULT_MODEL
    from lo2_dagster.lib.models import REGISTRY

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--token-lines", type=int, default=25)
    parser.add_argument("--features", nargs="+", default=list(FEATURE_SETS),
                        help="feature sets, each comma-separated (default: all three)")
    parser.add_argument("--models", nargs="+", default=list(REGISTRY), choices=list(REGISTRY))
    parser.add_argument("--skip-eval", action="store_true", help="no --runs evaluation")
    parser.add_argument("--memory-runs", type=int, default=0,
                        help="also train on this many runs for time and peak RSS (e.g. 100)")
    parser.add_argument("--memory-models", nargs="+", default=[DEFAULT_MODEL],
                        choices=list(REGISTRY))
    parser.add_argument("--build", choices=("all", "staged"), default="all",
                        help="enhance in one bench_enhance child (all runs, all stages), or "
                             "one child per run and stage, two at a time")
    parser.add_argument("--json", type=Path, default=None, help="write all records here")
    args = parser.parse_args()

    affinity = len(os.sched_getaffinity(0))
    print(f"machine: {os.cpu_count()} cores (os.cpu_count), {affinity} usable; "
          f"default model {DEFAULT_MODEL}")
    wall_started = time.perf_counter()
    records: list[dict] = []

    if not args.skip_eval:
        folder = ensure_dataset(args.runs, args.token_lines, args.build)
        wh = folder / "warehouse"
        print(f"\nevaluation on {folder} ({args.runs} runs, --token-lines {args.token_lines}):",
              flush=True)
        evaluation = evaluate_all(wh, args.models, args.features)
        records += evaluation
        first = evaluation[0]
        print(f"\nholdout metrics (tc = test case, sq = sequence; "
              f"{len(first['holdout_runs'])} holdout runs, {len(first['training_runs'])} "
              f"training runs):")
        print_table(evaluation)
        print(f"\nholdout runs: {', '.join(evaluation[0]['holdout_runs'])}")
        check = determinism(wh, evaluation, args.features)
        if check:
            records.append(check)

    if args.memory_runs:
        folder = ensure_dataset(args.memory_runs, args.token_lines, args.build)
        wh = folder / "warehouse"
        print(f"\nmemory: training on {folder} ({args.memory_runs} runs):", flush=True)
        memory = []
        for features in MEMORY_FEATURE_SETS:
            for model in args.memory_models:
                record = train_child(wh, model, features or "")
                record["kind"] = "memory"
                memory.append(record)
                print(f"  {model} [{record['features']}]: {record['seconds']:.1f} s, "
                      f"peak {record['peak_rss_mb']:,.0f} MB", flush=True)
        records += memory
        print(f"\n  {'model':<20} {'features':<28} {'runs':>5} {'rows':>8} {'cols':>6} "
              f"{'sec':>7} {'child s':>8} {'peak MB':>8}  bound {BOUND_MB:,} MB")
        for r in memory:
            ok = "ok" if r["peak_rss_mb"] <= BOUND_MB else "OVER"
            print(f"  {r['model']:<20} {r['features']:<28} {r['runs']:>5} "
                  f"{r['fitted_on_sequences']:>8,} {r['columns']:>6,} {r['seconds']:>7.1f} "
                  f"{r['wall_seconds']:>8.1f} {r['peak_rss_mb']:>8,.0f}  {ok}")
        print("  (rows: sequences the vectorizer was fitted on; tc_roc of these trainings: "
              + ", ".join(f"{r['model']}[{r['features']}] {_f(r['test_case']['roc_auc'])}"
                          for r in memory) + ")")

    wall = time.perf_counter() - wall_started
    print(f"\nwall time of the benchmark (builds, child start-ups included): {wall:.1f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"wall_seconds": wall, "records": records}, indent=1))
        print(f"records written to {args.json}")


if __name__ == "__main__":
    main()
