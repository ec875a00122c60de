"""Anomaly model quality beside trivial baselines, on the project's own and on foreign data.

    .venv/bin/python bench/bench_model.py [--runs 24] [--datasets standard hard ...]
                                          [--models NAME ...] [--splits 5]
                                          [--memory-runs 100] [--skip-eval] [--json OUT]

Datasets (each built once, cached under bench/out/model-<dataset>-<runs>/: the logs in ``lo2``,
the enhanced tables in ``warehouse``, by bench_enhance.py's library calls in one child):

  standard        lo2-dagster synth --seed 7 --token-lines 100 (start-up at every file's head,
                  the loader's default trim of 100 lines removes it)
  hard            lo2-dagster synth --seed 7 --hard --token-lines 1000 (start-up only in each
                  run's first test case, so no trim; failing requests adding 0.5-2 % to the
                  traffic lines; shared failures in correct traffic; half of the error cases
                  frequency shifts only; varied values)
  hard-large      the same with 4000 token lines (real LO2 has ~40,000 per 100 s): shares
                  of a few % become counts a sequence can show
  alien-standard  bench/alien_synth.py --mode standard --rate 20: a generator written apart
  alien-hard      from the project (it never read its code), LO2-shaped, with its own
                  wording, ids and rates; hard: 23 error cases are frequency shifts only

For each dataset: every registry model (or --models) with its default features, trained by
``lo2_dagster.lib.model.train`` in a fresh child (seconds, peak RSS), on the default run split
(holdout fraction 0.2, seed 0); its holdout test-case ROC AUC beside the baselines on the same
split, on masked lines (``e_message_normalized``) and on templates: distinct unseen tokens per
service, the largest frequency excess, their sum; and the leak audit of the data.
``--splits K`` repeats the default model and the baselines on K splits (seeds 0..K-1) and prints
mean and minimum: with 5 holdout ``correct`` test cases, one split's ROC AUC is coarse.
The default model's bundle is trained and serialized twice in one child (same sha256 =
deterministic). --memory-runs N trains the default model on N standard runs (time, peak RSS).

The pipeline mines templates on every run it has, the holdout runs included (the values they
make wildcards are the same either way, but a holdout-only shape gets a template of its own).
``--training-templates`` also mines them on the training runs of split 0 only, enhances every
run with those (a holdout line no template fits is ``e0``), and evaluates the default model and
the baselines on that split: the figure for runs that arrive after the templates were mined.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
ENHANCE = HERE / "bench_enhance.py"
ALIEN = HERE / "alien_synth.py"
BOUND_MB = 4 * 1024
#: name -> (generator command after the output folder and run count, the loader's trim)
DATASETS: dict[str, tuple[list[str], int]] = {
    "standard": ([str(BIN / "lo2-dagster"), "synth", "{out}", "--runs", "{runs}", "--seed", "7",
                  "--token-lines", "100", "--no-metrics"], 100),
    "hard": ([str(BIN / "lo2-dagster"), "synth", "{out}", "--runs", "{runs}", "--seed", "7",
              "--hard", "--token-lines", "1000", "--no-metrics"], 0),
    "hard-large": ([str(BIN / "lo2-dagster"), "synth", "{out}", "--runs", "{runs}", "--seed",
                    "7", "--hard", "--token-lines", "4000", "--no-metrics"], 0),
    "alien-standard": ([sys.executable, str(ALIEN), "{out}", "--runs", "{runs}", "--seed", "1",
                        "--mode", "standard", "--rate", "20"], 0),
    "alien-hard": ([sys.executable, str(ALIEN), "{out}", "--runs", "{runs}", "--seed", "1",
                    "--mode", "hard", "--rate", "20"], 0),
}


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- the training (run in a child process) -------------------------------------------------

def _sources(wh: Path) -> dict:
    """Run name -> callable(columns) yielding polars batches of its sequences_enhanced table,
    read as lo2/anomaly_model reads them."""
    from upath import UPath

    from lo2_dagster.lib.model import BATCH_ROWS
    from lo2_dagster.storage import iter_parquet

    folder = wh / "lo2" / "sequences_enhanced"
    return {p.stem: functools.partial(iter_parquet, UPath(p), batch_rows=BATCH_ROWS)
            for p in sorted(folder.glob("*.parquet"))}


def _sha(bundle) -> str:
    from lo2_dagster.lib.model import bundle_files

    return bundle_files(bundle, None).sha256


def child_train(wh: Path, model: str, seed: int, twice: bool) -> dict:
    """One training; ``twice``: a second one in the same process, and both bundles' sha256."""
    from lo2_dagster.lib.model import TrainingConfig, train

    runs = _sources(wh)
    config = TrainingConfig(model=model, seed=seed)
    started = time.perf_counter()
    bundle = train(runs, config)
    seconds = time.perf_counter() - started
    peak = _peak_mb()  # before serializing: the training's own peak
    m = bundle.metrics
    record = {
        "model": model, "features": ",".join(config.features.features), "runs": len(runs),
        "seed": seed, "seconds": seconds, "peak_rss_mb": peak,
        "columns": len(bundle.vectorizer.feature_names), "threshold": bundle.threshold,
        "training_runs": list(bundle.split.training), "holdout_runs": list(bundle.split.holdout),
        "fitted_rows": bundle.fitted_rows, "test_case": m["test_case"],
        "sequence": m["sequence"], "baselines": m["baselines"]["test_case_roc_auc"],
        "leak_audit": m["leak_audit"], "sha256": [_sha(bundle)],
    }
    if twice:
        del bundle
        record["sha256"].append(_sha(train(runs, config)))
    return record


def child_main(argv: list[str]) -> None:
    """``--child WAREHOUSE MODEL SEED [--twice]``: a JSON record on the last line."""
    wh, model, seed = Path(argv[0]), argv[1], int(argv[2])
    record = child_train(wh, model, seed, "--twice" in argv[3:])
    record["final_peak_rss_mb"] = _peak_mb()
    print(json.dumps(record))


def _run_json(cmd: list[str]) -> tuple[dict, float]:
    started = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if out.returncode != 0:
        sys.stderr.write(out.stdout[-4000:] + out.stderr[-8000:])
        raise SystemExit(f"child failed ({out.returncode}): {' '.join(cmd[:6])} ...")
    return json.loads(out.stdout.strip().splitlines()[-1]), wall


def train_child(wh: Path, model: str, seed: int = 0, twice: bool = False) -> dict:
    cmd = [sys.executable, __file__, "--child", str(wh), model, str(seed)]
    record, wall = _run_json(cmd + (["--twice"] if twice else []))
    record["wall_seconds"] = wall
    return record


# --- the datasets --------------------------------------------------------------------------

def ensure_dataset(name: str, runs: int) -> Path:
    """``bench/out/model-<name>-<runs>``: ``lo2`` (logs) and ``warehouse`` (enhanced tables),
    built once; ``.complete`` marks a finished build."""
    command, trim = DATASETS[name]
    folder = HERE / "out" / f"model-{name}-{runs}"
    if (folder / ".complete").exists():
        return folder
    data, wh = folder / "lo2", folder / "warehouse"
    shutil.rmtree(folder, ignore_errors=True)
    started = time.perf_counter()
    print(f"generating {name} ({runs} runs) into {data} ...", flush=True)
    subprocess.run([a.format(out=data, runs=runs) for a in command], check=True,
                   stdout=subprocess.DEVNULL)
    from lo2_dagster.lib.layout import scan_runs

    names = scan_runs(data)[0]
    print(f"  generated in {time.perf_counter() - started:.1f} s; enhancing (trim {trim}) ...",
          flush=True)
    result, wall = _run_json([sys.executable, str(ENHANCE), "--child", "all", f"--trim={trim}",
                              str(data), str(wh), *names])
    from bench_enhance import check  # a sibling script: bench/ is on sys.path (the script's)

    problems = check(result["records"])
    if problems:
        raise SystemExit("enhanced tables disagree with the raw ones:\n  "
                         + "\n  ".join(problems))
    lines = sum(r["lines"] for r in result["records"] if r["stage"] == "raw")
    templates = next(r for r in result["records"] if r["stage"] == "templates")
    print(f"  {lines:,} lines, {templates['templates']:,} templates, {wall:.1f} s", flush=True)
    (folder / ".complete").write_text(json.dumps({"lines": lines,
                                                  "templates": templates["templates"]}))
    return folder


def masked_line_baselines(wh: Path, training: list[str], holdout: list[str]) -> dict:
    """The baselines on masked lines (``e_message_normalized`` per sequence), on a split."""
    import polars as pl

    from lo2_dagster.lib.baselines import baseline_roc_auc, baseline_scores, normal_shares

    metas, pairs, normal, offset = [], [], [], 0
    for run in [*training, *holdout]:
        seqs = pl.read_parquet(wh / "lo2" / "sequences_enhanced" / f"{run}.parquet",
                               columns=["seq_id", "run", "test_case", "service", "normal",
                                        "anomaly"])
        counts = (pl.scan_parquet(wh / "lo2" / "events_enhanced" / f"{run}.parquet")
                  .group_by("seq_id", "e_message_normalized")
                  .agg(pl.len().cast(pl.UInt32).alias("count")).collect()
                  .join(seqs.with_row_index("row").select(
                      pl.col("row").cast(pl.UInt32) + offset, "seq_id", "service", "normal"),
                      on="seq_id")
                  .rename({"e_message_normalized": "token"}))
        if run in training:
            normal.append(counts.filter("normal").select("service", "token", "count"))
        else:
            metas.append(seqs)
            pairs.append(counts.select("row", "token", "count"))
            offset += len(seqs)
    return baseline_roc_auc(baseline_scores(pl.concat(metas), pl.concat(pairs),
                                            normal_shares(pl.concat(normal))))


# --- the tables ----------------------------------------------------------------------------

def _f(value: float | None) -> str:
    from lo2_dagster.lib.metrics import format_figure

    return format_figure(value, missing="-")


def training_templates(folder: Path, training: list[str]) -> Path:
    """``<dataset>/warehouse-training-templates``: the raw tables of ``warehouse`` (linked),
    templates mined on ``training`` only, every run enhanced with them; rebuilt when the
    training runs differ."""
    wh, out = folder / "warehouse", folder / "warehouse-training-templates"
    marker = out / ".complete"
    if marker.exists() and json.loads(marker.read_text()) == training:
        return out
    shutil.rmtree(out, ignore_errors=True)
    (out / "lo2").mkdir(parents=True)
    for asset in ("raw_events", "raw_sequences"):
        (out / "lo2" / asset).symlink_to(wh / "lo2" / asset)
    runs = sorted(p.stem for p in (wh / "lo2" / "raw_events").glob("*.parquet"))
    result, wall = _run_json([sys.executable, str(ENHANCE), "--child", "retemplate", str(out),
                              *training, "--", *runs])
    templates = next(r for r in result["records"] if r["stage"] == "templates")
    print(f"  templates from the {len(training)} training runs only: {templates['templates']:,}"
          f" ({wall:.1f} s with enhancing)", flush=True)
    marker.write_text(json.dumps(training))
    return out


def evaluate_dataset(name: str, runs: int, models: list[str], splits: int,
                     with_training_templates: bool = False) -> dict:
    from lo2_dagster.lib.baselines import BASELINES
    from lo2_dagster.lib.model import DEFAULT_MODEL

    folder = ensure_dataset(name, runs)
    wh = folder / "warehouse"
    print(f"\n== {name}: {folder} ==", flush=True)
    records = []
    for model in models:
        record = train_child(wh, model, twice=model == DEFAULT_MODEL)
        records.append(record)
        print(f"  {model}: {record['seconds']:.1f} s training, peak {record['peak_rss_mb']:,.0f}"
              " MB", flush=True)
    first = records[0]
    masked = masked_line_baselines(wh, first["training_runs"], first["holdout_runs"])
    print(f"\n  holdout: {len(first['holdout_runs'])} runs, training: "
          f"{len(first['training_runs'])} runs (split seed 0)")
    print(f"  {'scorer':<36} {'features':<22} {'tc_roc':>7} {'tc_pr':>7} {'tc_f1':>7} "
          f"{'sq_roc':>7} {'sec':>6} {'MB':>6}")
    for r in records:
        tc, sq = r["test_case"], r["sequence"]
        print(f"  {r['model']:<36} {r['features']:<22} {_f(tc['roc_auc']):>7} "
              f"{_f(tc['pr_auc']):>7} {_f(tc['f1']):>7} {_f(sq['roc_auc']):>7} "
              f"{r['seconds']:>6.1f} {r['peak_rss_mb']:>6,.0f}")
    for tokens, values in (("masked lines", masked), ("templates", first["baselines"])):
        for baseline in BASELINES:
            print(f"  {'baseline ' + baseline + ' (' + tokens + ')':<36} {'':<22} "
                  f"{_f(values[baseline]):>7}")
    best = max(v for v in [*masked.values(), *first["baselines"].values()] if v is not None)
    default = next((r for r in records if r["model"] == DEFAULT_MODEL), None)
    if default is not None:
        value = default["test_case"]["roc_auc"]
        print(f"  -> default {DEFAULT_MODEL}: {_f(value)} vs best baseline {_f(best)} "
              f"({'above' if value is not None and value > best else 'NOT above'})")
        same = len(set(default["sha256"])) == 1
        print(f"  -> determinism: {'same sha256 twice' if same else 'DIFFERENT sha256'}")
    audit = first["leak_audit"]
    print("  leak audit (test cases): " + ", ".join(
        f"{k} {_f(v['separation'])}" for k, v in audit["signals"].items())
        + f"; leaking: {', '.join(audit['leaking']) or 'none'}")
    result = {"dataset": name, "records": records, "masked_baselines": masked}
    if with_training_templates:
        wh2 = training_templates(folder, first["training_runs"])
        record = train_child(wh2, DEFAULT_MODEL)
        assert record["holdout_runs"] == first["holdout_runs"], "not the same split"
        print(f"  templates mined on the training runs only: {DEFAULT_MODEL} "
              f"{_f(record['test_case']['roc_auc'])}; templates baselines " + ", ".join(
                  f"{k} {_f(v)}" for k, v in record["baselines"].items()))
        result["training_templates"] = record
    if splits > 1 and default is not None:
        result["splits"] = _splits(wh, splits)
    return result


def _splits(wh: Path, splits: int) -> dict:
    """The default model and the baselines over ``splits`` split seeds: mean and minimum."""
    import numpy as np

    from lo2_dagster.lib.model import DEFAULT_MODEL

    rows = [train_child(wh, DEFAULT_MODEL, seed) for seed in range(splits)]
    model = [r["test_case"]["roc_auc"] for r in rows]
    base = {k: [r["baselines"][k] for r in rows] for k in rows[0]["baselines"]}
    masked = [masked_line_baselines(wh, r["training_runs"], r["holdout_runs"]) for r in rows]
    for k in masked[0]:
        base[f"{k} (masked lines)"] = [m[k] for m in masked]
    print(f"  over {splits} splits (seeds 0..{splits - 1}): {DEFAULT_MODEL} mean "
          f"{np.mean(model):.3f} min {np.min(model):.3f}; "
          + "; ".join(f"{k} mean {np.mean(v):.3f}" for k, v in base.items()))
    return {"model": model, "baselines": base}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child_main(sys.argv[2:])
        return
    from lo2_dagster.lib.model import DEFAULT_MODEL
    from lo2_dagster.lib.registry import REGISTRY

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=24)
    parser.add_argument("--datasets", nargs="+", choices=list(DATASETS),
                        default=[d for d in DATASETS if d != "hard-large"],
                        help="default: all but hard-large (about 20 M lines)")
    parser.add_argument("--models", nargs="+", default=list(REGISTRY), choices=list(REGISTRY))
    parser.add_argument("--splits", type=int, default=1,
                        help="also evaluate the default model on this many split seeds")
    parser.add_argument("--skip-eval", action="store_true", help="no evaluation")
    parser.add_argument("--training-templates", action="store_true",
                        help="also mine templates on split 0's training runs only")
    parser.add_argument("--memory-runs", type=int, default=0,
                        help="train the default model on this many standard runs (time, RSS)")
    parser.add_argument("--json", type=Path, default=None, help="write all records here")
    args = parser.parse_args()
    affinity = len(os.sched_getaffinity(0))
    print(f"machine: {os.cpu_count()} cores (os.cpu_count), {affinity} usable; default model "
          f"{DEFAULT_MODEL}")
    started = time.perf_counter()
    results = []
    if not args.skip_eval:
        models = [DEFAULT_MODEL, *(m for m in args.models if m != DEFAULT_MODEL)]
        results = [evaluate_dataset(d, args.runs, models, args.splits, args.training_templates)
                   for d in args.datasets]
    if args.memory_runs:
        wh = ensure_dataset("standard", args.memory_runs) / "warehouse"
        record = train_child(wh, DEFAULT_MODEL)
        ok = "ok" if record["peak_rss_mb"] <= BOUND_MB else "OVER"
        print(f"\nmemory: {DEFAULT_MODEL} on {args.memory_runs} standard runs: "
              f"{record['seconds']:.1f} s, peak {record['peak_rss_mb']:,.0f} MB ({ok}, bound "
              f"{BOUND_MB:,} MB)")
        results.append({"memory": record})
    wall = time.perf_counter() - started
    print(f"\nwall time of the benchmark (builds, child start-ups included): {wall:.1f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"wall_seconds": wall, "results": results}, indent=1))
        print(f"records written to {args.json}")


if __name__ == "__main__":
    main()
