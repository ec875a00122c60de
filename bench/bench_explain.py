"""Explanation time and memory per run, on demand (never in the test suite).

    .venv/bin/python bench/bench_explain.py [--runs 10] [--token-lines 25] [--json OUT]

Builds (once, cached under bench/out/explain-<runs>x<token_lines>/) a dataset with the
project's generator (``SynthConfig(seed=7)``, default size: the committed sample's 25 token
lines) and materializes the whole asset graph on it with `lo2-dagster run`'s code path
(``pipeline.materialize_all``, a Dagster instance in the cache folder).

Then, each in a fresh child process:

- the library: for the default model and features (rare_tokens on drain, numeric), for every
  bag (drain, words, trigrams, numeric: hundreds to thousands of columns) and for
  logistic_regression on every bag, a model is trained on the runs (as lo2/anomaly_model
  does) and ``lib.explain.explain`` explains one holdout run twice: its
  predicted-anomalous sequences (what the asset does) and all of its sequences (the worst
  case). Printed: feature columns, sequences, seconds and the peak of Python allocations
  during the explanation (tracemalloc: NumPy/SciPy and Python objects, not polars' Rust
  buffers), beside the size one dense float64 matrix of those sequences would take;
- the asset: ``lo2/explanations[run]`` materialized through Dagster (execute_in_process on the
  cached instance), wall seconds including loading the model, templates and inputs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: (model, features): the default, every bag, and a supervised model (its vectorizer is fitted
#: on every training sequence, so it has the most columns).
CONFIGS = (("rare_tokens", "drain,numeric"), ("rare_tokens", "drain,words,trigrams,numeric"),
           ("logistic_regression", "drain,words,trigrams,numeric"))


def build(cache: Path, runs: int, token_lines: int) -> list[str]:
    """The dataset and its whole asset graph, once."""
    import dagster as dg

    from lo2_dagster.synth import SynthConfig, generate

    done = cache / "built"
    if not done.exists():
        if cache.exists():
            import shutil
            shutil.rmtree(cache)
        (cache / "home").mkdir(parents=True)
        generate(cache / "lo2", SynthConfig(runs=runs, seed=7, token_lines=token_lines,
                                            metrics=False))
        _environment(cache)
        from lo2_dagster.definitions import defs
        from lo2_dagster.pipeline import add_run_partitions, materialize_all

        names = sorted(p.name for p in (cache / "lo2" / "logs").iterdir())
        started = time.perf_counter()
        with dg.DagsterInstance.local_temp(tempdir=str(cache / "home"),
                                       overrides={"telemetry": {"enabled": False}}) as instance:
            add_run_partitions(instance, names)
            outcomes = materialize_all(defs(), instance, names, report=lambda _: None)
        failed = [o.error for o in outcomes if not o.success]
        if failed:
            raise SystemExit(f"building the warehouse failed: {failed[0]}")
        print(f"built {runs} runs in {time.perf_counter() - started:.0f} s", flush=True)
        done.write_text("\n".join(names))
    return done.read_text().split("\n")


def _environment(cache: Path) -> None:
    os.environ["LO2_ROOT"] = str(cache / "lo2")
    os.environ["LO2_WAREHOUSE"] = str(cache / "warehouse")
    os.environ["DAGSTER_HOME"] = str(cache / "home")


def library(cache: Path, config: str) -> dict:
    """Train ``model:features``, then explain one holdout run (flagged and all sequences)."""
    import functools
    import tracemalloc

    import polars as pl
    from upath import UPath

    from lo2_dagster.lib import explain as ex
    from lo2_dagster.lib.model import TrainingConfig, train
    from lo2_dagster.lib.vectorize import FeatureSpec
    from lo2_dagster.storage import iter_parquet

    lo2 = cache / "warehouse" / "lo2"
    paths = {p.stem: UPath(p) for p in sorted((lo2 / "sequences_enhanced").glob("*.parquet"))}
    runs = {r: functools.partial(iter_parquet, p, batch_rows=256) for r, p in paths.items()}
    model, features = config.split(":")
    bundle = train(runs, TrainingConfig(model=model,
                                        features=FeatureSpec(tuple(features.split(",")))))
    templates = dict(pl.read_parquet(lo2 / "drain_templates" / "templates.parquet")
                     .select("template_id", "template").iter_rows())
    run = bundle.split.holdout[0]
    out = {"model": model, "features": features, "run": run,
           "columns": len(bundle.vectorizer.feature_names)}
    for label in ("flagged", "all"):
        tracemalloc.start()
        started = time.perf_counter()
        frame = pl.read_parquet(paths[run], columns=ex.sequence_columns(bundle))
        if label == "flagged":
            frame = frame.filter(pl.Series(bundle.scores(frame) > bundle.threshold))
        events = pl.scan_parquet(lo2 / "events_enhanced" / f"{run}.parquet")
        explained = ex.explain(bundle, frame, ex.example_lines(events, frame["seq_id"].to_list()),
                               templates)
        seconds = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        dense = len(frame) * out["columns"] * 8 / 2**20  # one float64 matrix, if densified
        out[label] = {"sequences": len(explained), "seconds": round(seconds, 3),
                      "peak_python_mb": round(peak, 1), "dense_matrix_mb": round(dense, 1)}
    return out


def asset(cache: Path, run: str) -> dict:
    """lo2/explanations[run] through Dagster, on the cached instance."""
    import dagster as dg

    _environment(cache)
    from lo2_dagster.definitions import defs
    from lo2_dagster.defs.keys import EXPLANATIONS

    job = defs().resolve_implicit_global_asset_job_def()
    with dg.DagsterInstance.local_temp(tempdir=str(cache / "home"),
                                       overrides={"telemetry": {"enabled": False}}) as instance:
        started = time.perf_counter()
        result = job.execute_in_process(instance=instance, asset_selection=[EXPLANATIONS],
                                        partition_key=run)
        seconds = time.perf_counter() - started
    return {"run": run, "success": result.success, "seconds": round(seconds, 2)}


def _child(*args: str) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", *args], check=True,
                          capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--token-lines", type=int, default=25)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, cache, value = args.child
        result = library(Path(cache), value) if kind == "library" else asset(Path(cache), value)
        print(json.dumps(result))
        return
    cache = HERE / "out" / f"explain-{args.runs}x{args.token_lines}"
    names = build(cache, args.runs, args.token_lines)
    print(f"{os.cpu_count()} cores; {len(names)} runs of {args.token_lines} token lines")
    results = {"library": [], "asset": None}
    for model, features in CONFIGS:
        row = _child("library", str(cache), f"{model}:{features}")
        results["library"].append(row)
        for label in ("flagged", "all"):
            r = row[label]
            print(f"  {model:<20} {features:<29} {row['columns']:>6,} columns  {label:<7} "
                  f"{r['sequences']:>4} sequences  {r['seconds']:>6.2f} s  peak "
                  f"{r['peak_python_mb']:>5.1f} MB (one dense matrix: "
                  f"{r['dense_matrix_mb']:.1f} MB)", flush=True)
    run = results["library"][0]["run"]
    results["asset"] = _child("asset", str(cache), run)
    print(f"  lo2/explanations[{run}] through Dagster: {results['asset']['seconds']:.2f} s "
          f"(success: {results['asset']['success']})")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
