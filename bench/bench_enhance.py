"""Feature throughput and peak memory, on demand (never in the test suite).

    .venv/bin/python bench/bench_enhance.py [--runs 2] [--token-lines 10000] [--data DIR]
                                            [--single-process] [--warehouse DIR]
    .venv/bin/python bench/bench_enhance.py --long-line

--long-line instead times the same chain on a run whose one file holds one log line of 1 M and
of 10 M characters (one token, and words): features come from a prefix of such a line
(masking.MAX_FEATURE_CHARS), so every stage should take about as long as for a short line.

Generates (once, cached under bench/out/, shared with bench_ingest.py) a dataset of N runs x
54 test cases x 7 services, then runs the chain the feature assets run, with the same library
calls, writing Parquet into a temporary warehouse:

  raw         per run: loader.load_run, raw events and loader.build_sequences to Parquet
  templates   all runs: drain.message_counts per run, merge_counts, train (+ save the state)
  events      per run: enhance_events(raw events scan, templates, allowlist) sunk to Parquet
  sequences   per run: sequence_tables(raw sequences, events_enhanced scan) via Batches

By default each run's raw stage, the templates and each run's events + sequences run in a
fresh child process, one partition (run) at a time, as Dagster's multiprocess executor runs
them: its peak RSS is per partition and does not grow with the number of runs. The sequences
row shows that child's peak since start-up, i.e. of events and sequences together.

--single-process runs everything for all runs in one child process: its peak RSS is the
honest "all runs together" figure (each row shows the peak so far).

Lines/s counts physical log lines (the run's lines; templates: all runs' lines). The issue's
target: <= 13 s and <= 2 GB peak RSS for two runs on 2 cores (reference: ~130 s / 17 GB).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_ingest import HERE, ensure_data  # same folder: the dataset cache is shared

ALLOWLIST = HERE.parent / "data" / "fp_allowlist.toml"


# --- the stages (run in a child process) ---------------------------------------------------

def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _file(wh: Path, asset: str, run: str | None = None) -> Path:
    path = wh / "lo2" / asset / (f"{run}.parquet" if run else "")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def stage_raw(root: Path, run: str, wh: Path, trim: int | None = None) -> list[dict]:
    from lo2_dagster.lib import loader

    started = time.perf_counter()
    loaded = loader.load_run(root, run, trim_lines=loader.DEFAULT_TRIM_LINES if trim is None
                             else trim)
    loaded.events.write_parquet(_file(wh, "raw_events", run), compression="zstd",
                                statistics=True)
    sequences = loader.build_sequences(loaded.events)
    sequences.write_parquet(_file(wh, "raw_sequences", run), compression="zstd",
                            statistics=True)
    seconds = time.perf_counter() - started
    totals = loaded.totals()
    return [{"stage": "raw", "run": run, "seconds": seconds, "peak_rss_mb": _peak_mb(),
             "lines": totals["lines"], "bytes": totals["bytes"],
             "events": len(loaded.events), "sequences": len(sequences)}]


def stage_templates(wh: Path, runs: list[str]) -> list[dict]:
    import polars as pl

    from lo2_dagster.lib import templates as drain

    started = time.perf_counter()
    counts = drain.merge_counts(
        {run: drain.message_counts(pl.scan_parquet(_file(wh, "raw_events", run))) for run in runs})
    tm = drain.train(counts)
    folder = _file(wh, "drain_templates")
    folder.mkdir(parents=True, exist_ok=True)
    tm.table.write_parquet(folder / "templates.parquet", compression="zstd", statistics=True)
    (folder / "settings.json").write_text(tm.settings.to_json())
    (folder / "drain3_state.json").write_bytes(tm.state())
    seconds = time.perf_counter() - started
    return [{"stage": "templates", "run": "(all)", "seconds": seconds,
             "peak_rss_mb": _peak_mb(), "templates": len(tm.table),
             "distinct_messages": len(counts), "training_lines": int(counts["count"].sum()),
             "unmatched_in_training": tm.unmatched_in_training}]


def _load_templates(wh: Path):
    """As the drain_store IO manager loads them for each partition."""
    import polars as pl

    from lo2_dagster.lib import templates as drain

    folder = _file(wh, "drain_templates")
    return drain.Templates.from_state(
        (folder / "drain3_state.json").read_bytes(),
        pl.read_parquet(folder / "templates.parquet"),
        drain.DrainSettings.from_json((folder / "settings.json").read_text()))


def stage_enhanced(wh: Path, run: str) -> list[dict]:
    import polars as pl
    import pyarrow.parquet as pq

    from lo2_dagster.lib.allowlist import load_allowlist
    from lo2_dagster.lib.enhance import SEQUENCES_DICTIONARY_COLUMNS, SEQUENCES_ENHANCED_SCHEMA
    from lo2_dagster.lib.enhanced_tables import enhance_events, sequence_tables
    from lo2_dagster.storage import Batches

    raw_events, raw_sequences = _file(wh, "raw_events", run), _file(wh, "raw_sequences", run)
    events_out = _file(wh, "events_enhanced", run)
    sequences_out = _file(wh, "sequences_enhanced", run)

    started = time.perf_counter()
    tm = _load_templates(wh)
    allowlist = load_allowlist(ALLOWLIST)
    enhanced = enhance_events(pl.scan_parquet(raw_events), tm, allowlist)
    enhanced.frame.sink_parquet(events_out, compression="zstd", statistics=True)
    events_seconds = time.perf_counter() - started
    events_peak = _peak_mb()

    started = time.perf_counter()
    sequences = pl.read_parquet(raw_sequences)
    written = Batches(SEQUENCES_ENHANCED_SCHEMA,
                      sequence_tables(sequences, pl.scan_parquet(events_out), allowlist),
                      dictionary=SEQUENCES_DICTIONARY_COLUMNS).write(sequences_out)
    sequences_seconds = time.perf_counter() - started
    sequences_peak = _peak_mb()

    # Counts to check, read after the clock and the peak were taken (footers and one column).
    raw_rows = pq.ParquetFile(raw_events).metadata.num_rows
    event_rows = pq.ParquetFile(events_out).metadata.num_rows
    seq_len_sum = int(pl.scan_parquet(sequences_out).select(pl.col("seq_len").sum())
                      .collect().item())
    return [
        {"stage": "events_enhanced", "run": run, "seconds": events_seconds,
         "peak_rss_mb": events_peak, "raw_events": raw_rows, "events": event_rows,
         "rows_reported": enhanced.rows, "unmatched_lines": enhanced.unmatched_lines,
         "allowlisted_lines": enhanced.allowlisted_lines,
         "relabelled_lines": enhanced.relabelled_lines,
         "distinct_messages": len(enhanced.vocabulary), "mb_out": events_out.stat().st_size / 1e6},
        {"stage": "sequences_enhanced", "run": run, "seconds": sequences_seconds,
         "peak_rss_mb": sequences_peak, "raw_sequences": len(sequences), "sequences": written,
         "seq_len_sum": seq_len_sum, "mb_out": sequences_out.stat().st_size / 1e6},
    ]


def child_main(argv: list[str]) -> None:
    """``--child KIND [--trim=N] ...``: one stage (or all of them), results as JSON on the last
    line."""
    kind, *rest = argv
    trim = None
    if rest and rest[0].startswith("--trim="):  # the loader's trim_lines (default: its own)
        trim, rest = int(rest[0].removeprefix("--trim=")), rest[1:]
    if kind == "raw":
        records = stage_raw(Path(rest[0]), rest[1], Path(rest[2]), trim)
    elif kind == "templates":
        records = stage_templates(Path(rest[0]), rest[1:])
    elif kind == "enhanced":
        records = stage_enhanced(Path(rest[0]), rest[1])
    elif kind == "retemplate":  # WH TRAINING_RUN... -- RUN...: templates from some runs only
        wh, rest = Path(rest[0]), rest[1:]
        cut = rest.index("--")
        records = stage_templates(wh, rest[:cut])
        for run in rest[cut + 1:]:
            records += stage_enhanced(wh, run)
    elif kind == "all":
        root, wh, runs = Path(rest[0]), Path(rest[1]), rest[2:]
        records = []
        for run in runs:
            records += stage_raw(root, run, wh, trim)
        records += stage_templates(wh, runs)
        for run in runs:
            records += stage_enhanced(wh, run)
    else:
        raise SystemExit(f"unknown child kind {kind}")
    print(json.dumps({"records": records, "final_peak_rss_mb": _peak_mb()}))


# --- the parent: children, checks, summary ---------------------------------------------------

def long_line() -> None:
    """Seconds per stage for one run whose one file holds one 1 M or 10 M character line."""
    from lo2_dagster.lib.names import service_file_name

    run = "light-oauth2-data-1719592986"
    print(f"  {'message':<27} {'raw':>7} {'templates':>10} {'events':>7} {'sequences':>10} "
          f"{'wall (child)':>13}")
    for chars in (1_000_000, 10_000_000):
        for kind, unit in (("one token", "loremipsum"), ("words", "lorem ipsum dolor sit ")):
            message = (unit * (chars // len(unit) + 1))[:chars]
            with tempfile.TemporaryDirectory(prefix="bench-long-line-") as tmp:
                log = Path(tmp) / "lo2" / "logs" / run / "correct" / service_file_name("token")
                log.parent.mkdir(parents=True)
                log.write_text(f"16:31:00.000 [XNIO-1 task-2]  tz9i6iqUQCSoCc4UiqxjIw DEBUG "
                               f"c.n.o.t.h.Oauth2TokenPostHandler handleRequest - {message}\n")
                records, wall, _ = run_child("all", "--trim=0", str(Path(tmp) / "lo2"),
                                             str(Path(tmp) / "warehouse"), run)
            seconds = {r["stage"]: r["seconds"] for r in records}
            print(f"  {f'{chars:,} chars, {kind}':<27} {seconds['raw']:>7.2f} "
                  f"{seconds['templates']:>10.2f} {seconds['events_enhanced']:>7.2f} "
                  f"{seconds['sequences_enhanced']:>10.2f} {wall:>12.1f}s")


def run_child(*args: str) -> tuple[list[dict], float, float]:
    """Records, wall seconds (start-up and imports included) and peak RSS of one child."""
    started = time.perf_counter()
    out = subprocess.run([sys.executable, __file__, "--child", *args], check=True,
                         capture_output=True, text=True)
    wall = time.perf_counter() - started
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return result["records"], wall, result["final_peak_rss_mb"]


def check(records: list[dict]) -> list[str]:
    """Row counts that must agree; returns the problems."""
    problems = []
    raw = {r["run"]: r for r in records if r["stage"] == "raw"}
    for r in records:
        run = r["run"]
        if r["stage"] == "events_enhanced":
            if not r["events"] == r["raw_events"] == r["rows_reported"] == raw[run]["events"]:
                problems.append(f"{run}: events_enhanced {r['events']:,} rows vs raw "
                                f"{r['raw_events']:,} / loader {raw[run]['events']:,}")
        elif r["stage"] == "sequences_enhanced":
            if r["sequences"] != r["raw_sequences"] or r["sequences"] != raw[run]["sequences"]:
                problems.append(f"{run}: sequences_enhanced {r['sequences']:,} rows vs raw "
                                f"{r['raw_sequences']:,}")
            if r["seq_len_sum"] != raw[run]["events"]:
                problems.append(f"{run}: sum(seq_len) {r['seq_len_sum']:,} vs "
                                f"{raw[run]['events']:,} events")
    return problems


def summary(records: list[dict], single: bool) -> None:
    lines = {r["run"]: r["lines"] for r in records if r["stage"] == "raw"}
    all_lines = sum(lines.values())
    peak_label = "peak RSS MB (process, so far)" if single else "peak RSS MB (child)"
    print(f"\n  {'stage':<19} {'run':<34} {'seconds':>8} {'lines/s':>12} {peak_label}")
    for r in records:
        n = all_lines if r["run"] == "(all)" else lines[r["run"]]
        print(f"  {r['stage']:<19} {r['run']:<34} {r['seconds']:>8.2f} "
              f"{n / r['seconds']:>12,.0f} {r['peak_rss_mb']:>8,.0f}")
    print()
    total = 0.0
    for stage in ("raw", "templates", "events_enhanced", "sequences_enhanced"):
        rows = [r for r in records if r["stage"] == stage]
        seconds = sum(r["seconds"] for r in rows)
        total += seconds
        print(f"  {stage + ' (all runs)':<54} {seconds:>8.2f} {all_lines / seconds:>12,.0f} "
              f"{max(r['peak_rss_mb'] for r in rows):>8,.0f}")
    enhance = sum(r["seconds"] for r in records
                  if r["stage"] in ("events_enhanced", "sequences_enhanced"))
    print(f"  {'raw + templates + events + sequences (all runs)':<54} {total:>8.2f} "
          f"{all_lines / total:>12,.0f} {max(r['peak_rss_mb'] for r in records):>8,.0f}")
    print(f"  {'events + sequences only (all runs)':<54} {enhance:>8.2f} "
          f"{all_lines / enhance:>12,.0f}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child_main(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--token-lines", type=int, default=10_000)
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--single-process", action="store_true",
                        help="all stages of all runs in one process")
    parser.add_argument("--warehouse", type=Path, default=None,
                        help="write (and keep) the Parquet files here, not in a temp folder")
    parser.add_argument("--long-line", action="store_true",
                        help="time one run with one 1 M / 10 M character line instead")
    args = parser.parse_args()
    if args.long_line:
        long_line()
        return
    data = args.data or HERE / "out" / f"ingest-{args.runs}x{args.token_lines}"
    ensure_data(data, args.runs, args.token_lines)

    from lo2_dagster.lib.layout import scan_runs

    runs = scan_runs(data)[0]
    size = sum(p.stat().st_size for p in data.rglob("*.log"))
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    print(f"dataset {data}: {len(runs)} runs, {size / 1e6:.0f} MB of logs; machine: "
          f"{os.cpu_count()} cores (os.cpu_count), {affinity} usable")
    mode = "one process for everything" if args.single_process else "one process per partition"
    print(f"mode: {mode}")

    with tempfile.TemporaryDirectory(prefix="bench-enhance-") as tmp:
        wh = args.warehouse or Path(tmp)
        wall_started = time.perf_counter()
        records: list[dict] = []
        if args.single_process:
            records, wall, peak = run_child("all", str(data), str(wh), *runs)
            print(f"  one child: {wall:.1f} s wall incl. start-up, peak RSS {peak:,.0f} MB")
        else:
            for run in runs:
                got, wall, peak = run_child("raw", str(data), run, str(wh))
                records += got
                print(f"  child raw {run}: {wall:.1f} s wall, peak RSS {peak:,.0f} MB")
            got, wall, peak = run_child("templates", str(wh), *runs)
            records += got
            print(f"  child templates: {wall:.1f} s wall, peak RSS {peak:,.0f} MB")
            for run in runs:
                got, wall, peak = run_child("enhanced", str(wh), run)
                records += got
                print(f"  child enhanced {run}: {wall:.1f} s wall, peak RSS {peak:,.0f} MB")
        wall = time.perf_counter() - wall_started

    raw = [r for r in records if r["stage"] == "raw"]
    lines, events = sum(r["lines"] for r in raw), sum(r["events"] for r in raw)
    sequences = sum(r["sequences"] for r in raw)
    print(f"\ndataset: {lines:,} lines, {sum(r['bytes'] for r in raw) / 1e6:.0f} MB -> "
          f"{events:,} events, {sequences:,} sequences")
    t = next(r for r in records if r["stage"] == "templates")
    print(f"templates: {t['templates']} from {t['distinct_messages']:,} distinct messages, "
          f"{t['unmatched_in_training']:,} training lines unmatched")
    for r in records:
        if r["stage"] == "events_enhanced":
            print(f"events_enhanced {r['run']}: {r['events']:,} rows ({r['mb_out']:.0f} MB), "
                  f"{r['distinct_messages']:,} distinct messages, {r['unmatched_lines']:,} "
                  f"unmatched, {r['allowlisted_lines']:,} allowlisted, "
                  f"{r['relabelled_lines']:,} relabelled")
        elif r["stage"] == "sequences_enhanced":
            print(f"sequences_enhanced {r['run']}: {r['sequences']:,} rows "
                  f"({r['mb_out']:.0f} MB), sum(seq_len) {r['seq_len_sum']:,}")
    problems = check(records)
    print("counts: " + ("ok" if not problems else "MISMATCH\n  " + "\n  ".join(problems)))

    summary(records, args.single_process)
    print(f"\nwall time of the whole benchmark (process start-ups, imports, checks included): "
          f"{wall:.1f} s; target <= 13 s and <= 2,048 MB for 2 runs on 2 cores")


if __name__ == "__main__":
    main()
