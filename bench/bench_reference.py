"""Ours against the reference, side by side on the same data, on demand (never in the tests).

    .venv/bin/python bench/bench_reference.py [--runs 2] [--token-lines 6500] [--seed 7]
                                              [--data DIR] [--skip-ours] [--skip-reference]
                                              [--reference-no-seq-trigrams]
                                              [--max-rss-mb MB] [--repeat N] [--json OUT]

Generates (once, cached under bench/out/ by its parameters) N runs x 54 test cases x 7 services
with the project's generator (no metrics: neither pipeline reads them), or takes an LO2 root
(--data: the folder that holds logs/, or the one that holds the run folders), then runs:

  ours       `lo2-dagster run` (the console script) with a fresh, empty DAGSTER_HOME and a fresh
             warehouse (temporary folders; LO2_ROOT, LO2_WAREHOUSE, DAGSTER_HOME set): the whole
             asset graph, from the files to predictions and explanations. Afterwards the
             instance of that DAGSTER_HOME gives the seconds of every step (asset) of every
             Dagster run, summed per step key, and each run's overhead (its wall time minus
             its steps).
  reference  LogLead 2.0 (PyPI `loglead==2.0.0`, in its own venv bench/out/loglead-venv,
             created on the first call; never a dependency of the project) running what its
             LO2 demo does: LO2Loader (all runs, `correct` and every error case) and
             execute(); EventLogEnhancer mask (the old normalize), words, trigrams,
             parse_drain, length; SequenceEnhancer seq_len, duration, tokens(e_words),
             tokens(e_trigrams), events (Drain ids); the enhanced events and sequences written
             to Parquet (the demo's --save-enhancers); an IsolationForest through
             AnomalyDetector on the sequences' words, trained on the loader's normal
             sequences (the demo's settings: 200 trees, contamination 0.1), predict. The
             script is REFERENCE_SCRIPT below, written to bench/out/ at run time; it prints
             its stages' seconds as JSON.

Each command runs under a small wrapper process (this script as `--child measure`): wall time of
the whole command, start-up and imports included; peak RSS = getrusage(RUSAGE_CHILDREN).ru_maxrss
once it has ended (Linux: the largest single process of the command's tree); tree peak = the
largest sum of RSS over the command's processes, sampled from /proc every 0.2 s. Both commands
read the same files from a warm page cache (the data is read once before, to count it).

The reference is killed once its processes pass --max-rss-mb (default: 90% of the memory
available when it starts, at most 22 GiB), before the kernel's OOM killer picks a process of the
machine: at the default size (1.79 M lines) its SequenceEnhancer.tokens("e_trigrams") does not
fit in 24 GB. It is then reported as not finished, with the stages it got through, and the
ratios become bounds. --reference-no-seq-trigrams leaves that one stage out (ours still computes
sequence trigrams), so that the rest of the reference can be timed to the end.

Not the same work, line for line: LogLead's LO2 loader keeps every physical line that starts
with a timestamp (stack-trace lines are dropped, nothing is trimmed), ours joins continuation
lines to their event and trims the start-up lines of each file (see docs/design.md); ours also
writes every table with checks and metadata, the notebook exports, a model report,
explanations and drift. The events count of each side is printed.

--repeat N runs ours N times (each with a fresh home; the machine's timings vary by ~10% from
call to call) and reports the call with the median wall time, beside every call's wall and peak.

--skip-ours / --skip-reference reuse the figures a previous call saved for the same dataset
(bench/out/ours-<dataset>.json, bench/out/reference-<dataset>.json).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
BIN = Path(sys.executable).parent
LOGLEAD = "loglead==2.0.0"
LOGLEAD_VENV = OUT / "loglead-venv"
SAMPLE_SECONDS = 0.2

# --- the reference: run by the LogLead venv's python, never imported here ------------------

REFERENCE_SCRIPT = r'''
"""LogLead's LO2 demo, all stages in one process:
python reference_pipeline.py LOGS OUT_DIR [no-seq-trigrams]"""
import json, os, random, resource, sys, time

logs, out_dir, options = sys.argv[1], sys.argv[2], set(sys.argv[3:])
stages = []
started = time.perf_counter()


def stage(name, since):
    """Record a finished stage; also printed at once (STAGE line), so a killed run shows
    how far it got."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    stages.append([name, time.perf_counter() - since, peak])
    print("STAGE " + json.dumps(stages[-1]), flush=True)
    return time.perf_counter()


t = time.perf_counter()
import polars as pl
from loglead import AnomalyDetector  # lazy: sklearn and xgboost are imported here
from loglead.enhancers import EventLogEnhancer, SequenceEnhancer
from loglead.loaders import LO2Loader
t = stage("import", t)

random.seed(0)  # the loader samples error cases (here: all of them, in a random order)
runs = [d for d in os.listdir(logs) if os.path.isdir(os.path.join(logs, d))]
loader = LO2Loader(filename=logs, n_runs=len(runs), errors_per_run=10_000, dup_errors=True)
loader.execute()
df, df_seq = loader.df, loader.df_seq
t = stage("load: LO2Loader.execute", t)

enhancer = EventLogEnhancer(df)
enhancer.mask()
t = stage("events: mask (normalize)", t)
enhancer.words()
t = stage("events: words", t)
enhancer.trigrams()
t = stage("events: trigrams", t)
enhancer.parse_drain()
t = stage("events: parse_drain", t)
df = enhancer.length()
t = stage("events: length", t)

seq = SequenceEnhancer(df=df, df_seq=df_seq)
seq.seq_len()
t = stage("sequences: seq_len", t)
seq.duration()
t = stage("sequences: duration", t)
seq.tokens(token="e_words")
t = stage("sequences: tokens(e_words)", t)
if "no-seq-trigrams" not in options:
    seq.tokens(token="e_trigrams")
    t = stage("sequences: tokens(e_trigrams)", t)
df_seq = seq.events()
t = stage("sequences: events(drain)", t)

df.write_parquet(os.path.join(out_dir, "lo2_events_enhanced.parquet"))
df_seq.write_parquet(os.path.join(out_dir, "lo2_sequences_enhanced.parquet"))
t = stage("save: enhanced Parquet", t)

detector = AnomalyDetector(item_list_col="e_words", print_scores=False)
detector.train_df = df_seq
detector.test_df = df_seq
detector.prepare_train_test_data()
t = stage("model: vectorize", t)
detector.train_IsolationForest(filter_anos=True, n_estimators=200, contamination=0.1)
t = stage("model: train_IsolationForest", t)
predictions = detector.predict()
t = stage("model: predict", t)

print(json.dumps({
    "stages": stages, "seconds": time.perf_counter() - started,
    "events": df.height, "sequences": df_seq.height,
    "normal_sequences": int(df_seq["normal"].sum()),
    "templates": df["e_event_drain_id"].n_unique(),
    "flagged": int(predictions["pred_ano"].sum()),
    "flagged_anomalous": int(predictions.filter(pl.col("anomaly"))["pred_ano"].sum()),
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
'''


# --- the children (each in a fresh process: `bench_reference.py --child KIND ...`) ----------

def _tree_rss(root_pid: int) -> int:
    """Bytes of RSS of ``root_pid`` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    total, todo, page = 0, [root_pid], os.sysconf("SC_PAGE_SIZE")
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            with open(f"/proc/{pid}/statm", "rb") as f:
                total += int(f.read().split()[1]) * page
        except OSError:
            continue
    return total


def child_measure(log: str, cap_mb: str, *command: str) -> int:
    """Run ``command`` (output to ``log``): wall time, exit code and peak RSS as JSON. Its
    process group is killed once the tree's RSS passes ``cap_mb`` (0: no cap), before the
    kernel's OOM killer would pick some process of the machine."""
    tree_peak, cap, capped = 0, float(cap_mb) * 2**20, False
    with open(log, "wb") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        while proc.poll() is None:
            tree_peak = max(tree_peak, _tree_rss(proc.pid))
            if cap and tree_peak > cap and not capped:
                capped = True
                os.killpg(proc.pid, signal.SIGKILL)
            time.sleep(SAMPLE_SECONDS)
        wall = time.perf_counter() - started
    print(json.dumps({"wall_s": wall, "rc": proc.returncode, "capped_at_mb": capped and cap_mb,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
                      "tree_peak_rss_mb": tree_peak / 2**20}))
    return 0


def child_stages() -> int:
    """Seconds per step key over every run of the instance in $DAGSTER_HOME, as JSON."""
    import dagster as dg

    steps: dict[str, dict[str, float]] = {}
    runs = []
    with dg.DagsterInstance.get() as instance:
        for record in instance.get_run_records():
            run = record.dagster_run
            step_seconds = 0.0
            for stat in instance.get_run_step_stats(run.run_id):
                if stat.start_time is None or stat.end_time is None:
                    continue
                seconds = stat.end_time - stat.start_time
                step_seconds += seconds
                entry = steps.setdefault(stat.step_key, {"seconds": 0.0, "count": 0})
                entry["seconds"] += seconds
                entry["count"] += 1
            wall = ((record.end_time - record.start_time)
                    if record.start_time and record.end_time else None)
            runs.append({"run_id": run.run_id, "job": run.job_name, "status": run.status.value,
                         "wall_s": wall, "steps_s": step_seconds})
    print(json.dumps({"runs": runs, "steps": steps}))
    return 0


CHILDREN = {"measure": child_measure, "stages": child_stages}


def run_child(kind: str, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """This script as ``--child KIND ARGS`` in a fresh process; its last line, as JSON."""
    out = subprocess.run([sys.executable, __file__, "--child", kind, *args], check=True,
                         capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- the parent ---------------------------------------------------------------------------------

def logs_dir(data: Path) -> Path:
    """The folder that holds the run folders (LogLead's loader is pointed there)."""
    return data / "logs" if (data / "logs").is_dir() else data


def ensure_data(data: Path, runs: int, token_lines: int, seed: int) -> None:
    marker = data / ".complete"
    if marker.exists():
        return
    from lo2_dagster.synth import SynthConfig, generate

    print(f"generating {runs} runs x 54 x 7, ~{token_lines} token lines per file, seed {seed} "
          f"into {data} ...", flush=True)
    summary = generate(data, SynthConfig(runs=runs, seed=seed, token_lines=token_lines,
                                         metrics=False))
    print(f"  {summary.files:,} files, {summary.lines:,} lines, {summary.bytes / 1e6:.0f} MB "
          f"in {summary.seconds:.1f} s")
    marker.write_text("ok")


def count_data(data: Path) -> dict[str, int]:
    """Files, physical lines and bytes of the .log files (and a warm page cache for both)."""
    files = lines = size = 0
    for path in sorted(logs_dir(data).rglob("*.log")):
        files += 1
        with open(path, "rb") as f:
            while chunk := f.read(1 << 22):
                lines += chunk.count(b"\n")
                size += len(chunk)
    return {"files": files, "lines": lines, "bytes": size}


def dataset_key(args: argparse.Namespace) -> tuple[Path, str]:
    if args.data:
        data = args.data.resolve()
        digest = hashlib.sha1(str(data).encode()).hexdigest()[:8]
        return data, f"{data.name}-{digest}"
    key = f"ref-{args.runs}x{args.token_lines}-seed{args.seed}"
    return OUT / key, key


def measure(command: list[str], log: Path, env: dict[str, str], check: bool = True,
            cap_mb: float = 0) -> dict[str, Any]:
    load = os.getloadavg()[0]
    result = run_child("measure", str(log), f"{cap_mb:.0f}", *command, env=env)
    result["load_before"] = load
    if check and result["rc"] != 0:
        tail = log.read_text(errors="replace").splitlines()[-30:]
        raise SystemExit(f"{command[0]} exited {result['rc']}; the end of {log}:\n  "
                         + "\n  ".join(tail))
    return result


def run_ours(data: Path, key: str) -> dict[str, Any]:
    log = OUT / f"ours-{key}.log"
    with tempfile.TemporaryDirectory(prefix="bench-reference-") as tmp:
        env = {k: v for k, v in os.environ.items() if k != "LO2_POSTGRES_URL"}  # SQLite
        env.update(LO2_ROOT=str(data), LO2_WAREHOUSE=f"{tmp}/warehouse",
                   DAGSTER_HOME=f"{tmp}/home")
        print("ours: lo2-dagster run (fresh DAGSTER_HOME and warehouse) ...", flush=True)
        result = measure([str(BIN / "lo2-dagster"), "run"], log, env)
        result.update(run_child("stages", env=env))
    result["log"] = str(log)
    return result


def ensure_loglead() -> Path:
    python = LOGLEAD_VENV / "bin" / "python"
    marker = LOGLEAD_VENV / f".{LOGLEAD}-installed"
    if python.exists() and marker.exists():
        return python
    print(f"creating {LOGLEAD_VENV} with {LOGLEAD} (once) ...", flush=True)
    shutil.rmtree(LOGLEAD_VENV, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(LOGLEAD_VENV)], check=True)
    log = OUT / "loglead-install.log"
    with open(log, "wb") as out:
        pip = subprocess.run([str(python), "-m", "pip", "install", LOGLEAD], stdout=out,
                             stderr=subprocess.STDOUT)
    if pip.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-20:]
        raise SystemExit(f"pip install {LOGLEAD} failed; the end of {log}:\n  "
                         + "\n  ".join(tail))
    marker.write_text(LOGLEAD)
    return python


def default_cap_mb() -> float:
    """90% of the memory available now (MemAvailable), at most 22 GiB."""
    with open("/proc/meminfo") as f:
        info = {line.split(":")[0]: int(line.split()[1]) for line in f}
    return min(0.9 * info["MemAvailable"] / 1024, 22 * 1024)


def run_reference(data: Path, key: str, cap_mb: float, options: list[str]) -> dict[str, Any]:
    python = ensure_loglead()
    script = OUT / "reference_pipeline.py"
    script.write_text(REFERENCE_SCRIPT)
    log = OUT / f"reference-{key}{''.join('-' + o for o in options)}.log"
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    with tempfile.TemporaryDirectory(prefix="bench-reference-out-", dir=OUT) as tmp:
        print(f"reference: LogLead 2.0 LO2 pipeline ({python}) ...", flush=True)
        print(f"  (killed if its processes pass {cap_mb:,.0f} MB of RSS)", flush=True)
        result = measure([str(python), str(script), str(logs_dir(data)), tmp, *options], log,
                         env, check=False, cap_mb=cap_mb)
    lines = log.read_text(errors="replace").strip().splitlines()
    stages = [json.loads(line[6:]) for line in lines if line.startswith("STAGE ")]
    result["log"], result["options"] = str(log), options
    if result["rc"] == 0:
        result["script"] = json.loads(lines[-1])
        return result
    # Killed or failed: keep what it got through (a SIGKILL is, here, the kernel's OOM killer).
    if result["capped_at_mb"]:
        why = f"was killed by the benchmark at {result['capped_at_mb']} MB of RSS"
    elif result["rc"] == -9:
        why = "was killed (SIGKILL: the kernel's OOM killer?)"
    else:
        why = f"exited {result['rc']}"
    print(f"the reference {why} after {result['wall_s']:.0f} s; the end of {log}:\n  "
          + "\n  ".join(lines[-8:]))
    result["script"] = {"stages": stages, "failed": why,
                        "seconds": sum(stage[1] for stage in stages)}
    return result


def saved(path: Path, what: str) -> dict[str, Any] | None:
    if not path.exists():
        print(f"{what}: skipped, and no figures saved in {path}")
        return None
    figures = json.loads(path.read_text())
    print(f"{what}: reusing the figures saved in {path} ({figures.get('measured_at', '?')})")
    return figures


def print_table(data: dict[str, int], ours: dict | None, ref: dict | None) -> None:
    print(f"\ndata: {data['files']:,} files, {data['lines']:,} lines, "
          f"{data['bytes'] / 1e6:,.0f} MB; machine: os.cpu_count() = {os.cpu_count()}")
    print(f"\n  {'pipeline':<62} {'wall s':>8} {'peak RSS MB':>12} {'tree peak MB':>13} "
          f"{'events':>11} {'load avg':>9}")
    rows = []
    if ours:
        events = (ours.get("asset_rows") or {}).get("lo2/raw_events")
        rows.append(("ours: lo2-dagster run", ours, events))
    if ref:
        failed = ref["script"].get("failed")
        name = "reference: LogLead 2.0 LO2 demo" + (
            ", no seq. trigrams" if "no-seq-trigrams" in ref.get("options", []) else "") + (
            " (DID NOT FINISH)" if failed else "")
        rows.append((name, ref, ref["script"].get("events")))
    for name, r, events in rows:
        shown = f"{events:,}" if isinstance(events, int) else "?"
        print(f"  {name:<62} {r['wall_s']:>8.1f} {r['peak_rss_mb']:>12,.0f} "
              f"{r['tree_peak_rss_mb']:>13,.0f} {shown:>11} {r['load_before']:>9.2f}")
    calls = (ours or {}).get("calls") or []
    if len(calls) > 1:
        walls = ", ".join(f"{c['wall_s']:.1f}" for c in calls)
        print(f"\n  ours over {len(calls)} calls (fresh home each): wall {walls} s (the median "
              f"call is shown); peak RSS at most {max(c['peak_rss_mb'] for c in calls):,.0f} MB, "
              f"tree peak at most {max(c['tree_peak_rss_mb'] for c in calls):,.0f} MB")
    if ours and ref:
        # A reference that did not finish gives bounds: it would have taken longer.
        bound = ">= " if ref["script"].get("failed") else ""
        print(f"\n  speed  (reference wall / ours wall): "
              f"{bound}{ref['wall_s'] / ours['wall_s']:.2f}x")
        bound = "<= " if bound else ""
        print(f"  memory (ours peak RSS / reference peak RSS): "
              f"{bound}{ours['peak_rss_mb'] / ref['peak_rss_mb']:.3f} (tree peaks: "
              f"{bound}{ours['tree_peak_rss_mb'] / ref['tree_peak_rss_mb']:.3f})")
        if ref["script"].get("failed"):
            print(f"  the reference {ref['script']['failed']}: its figures are when it stopped")


def print_ours(ours: dict) -> None:
    runs, steps = ours["runs"], ours["steps"]
    run_wall = sum(r["wall_s"] or 0.0 for r in runs)
    step_sum = sum(s["seconds"] for s in steps.values())
    print(f"\nours, per step over {len(runs)} Dagster runs "
          f"({', '.join(sorted({r['status'] for r in runs}))}):")
    rows = [(key, s["seconds"], s["count"]) for key, s in steps.items()]
    rows.append(("(Dagster run overhead: run wall - its steps)", run_wall - step_sum, len(runs)))
    rows.append(("(outside Dagster runs: command wall - run walls)", ours["wall_s"] - run_wall, 1))
    print(f"  {'step key':<52} {'seconds':>8} {'times':>6} {'share':>6}")
    for key, seconds, count in sorted(rows, key=lambda row: -row[1]):
        print(f"  {key:<52} {seconds:>8.2f} {count:>6} {seconds / ours['wall_s']:>6.1%}")
    print(f"  {'command wall time':<52} {ours['wall_s']:>8.2f}")


def print_reference(ref: dict) -> None:
    s = ref["script"]
    if s.get("failed"):
        print(f"\nreference, per stage: it {s['failed']} after these stages (the next one "
              "did not end):")
    else:
        print(f"\nreference, per stage (inside the script; {s['events']:,} events, "
              f"{s['sequences']:,} sequences of which {s['normal_sequences']:,} normal, "
              f"{s['templates']:,} Drain templates; IsolationForest flagged {s['flagged']:,}, "
              f"{s['flagged_anomalous']:,} of them anomalous):")
    print(f"  {'stage':<52} {'seconds':>8} {'share':>6} {'peak RSS MB so far':>19}")
    for name, seconds, peak in s["stages"]:
        print(f"  {name:<52} {seconds:>8.2f} {seconds / ref['wall_s']:>6.1%} {peak:>19,.0f}")
    print(f"  {'script total' + (' (finished stages)' if s.get('failed') else ''):<52} "
          f"{s['seconds']:>8.2f}")
    print(f"  {'command wall time (interpreter start-up included)':<52} {ref['wall_s']:>8.2f}")


def asset_rows(log: str) -> dict[str, int]:
    """The row totals `lo2-dagster run` prints at its end (`  lo2/raw_events  1,234 rows`)."""
    rows = {}
    for line in Path(log).read_text(errors="replace").splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] == "rows" and parts[0].startswith("lo2/"):
            rows[parts[0]] = int(parts[1].replace(",", ""))
    return rows


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        sys.exit(CHILDREN[sys.argv[2]](*sys.argv[3:]))
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--token-lines", type=int, default=6500)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--data", type=Path, default=None,
                        help="an existing LO2 root instead of generated data")
    parser.add_argument("--skip-ours", action="store_true",
                        help="reuse our figures saved by a previous call on this dataset")
    parser.add_argument("--skip-reference", action="store_true",
                        help="reuse the reference's figures saved by a previous call")
    parser.add_argument("--reference-no-seq-trigrams", action="store_true",
                        help="the reference without SequenceEnhancer.tokens('e_trigrams'), its "
                        "largest stage (needs more than 20 GB at the default size)")
    parser.add_argument("--max-rss-mb", type=float, default=None,
                        help="kill the reference past this RSS (default: 90%% of the memory "
                        "available at its start, at most 22 GiB); 0: no cap")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run ours this many times (fresh home each time) and report the "
                        "call with the median wall time, with every call's wall and peak")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    OUT.mkdir(parents=True, exist_ok=True)
    data, key = dataset_key(args)
    if not args.data:
        ensure_data(data, args.runs, args.token_lines, args.seed)
    counts = count_data(data)
    print(f"dataset {data} ({key}): {counts['lines']:,} lines, {counts['bytes'] / 1e6:,.0f} MB")

    options = ["no-seq-trigrams"] if args.reference_no_seq_trigrams else []
    ours_file = OUT / f"ours-{key}.json"
    ref_file = OUT / f"reference-{key}{''.join('-' + o for o in options)}.json"
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    if args.skip_ours:
        ours = saved(ours_file, "ours")
    else:
        calls = sorted((run_ours(data, key) for _ in range(args.repeat)),
                       key=lambda r: r["wall_s"])
        ours = calls[len(calls) // 2]  # the median call (the upper one of an even count)
        ours["calls"] = [{k: c[k] for k in ("wall_s", "peak_rss_mb", "tree_peak_rss_mb",
                                            "load_before")} for c in calls]
        ours["asset_rows"] = asset_rows(ours["log"])
        ours["measured_at"] = stamp
        ours_file.write_text(json.dumps(ours, indent=1))
    if args.skip_reference:
        ref = saved(ref_file, "reference")
    else:
        cap = default_cap_mb() if args.max_rss_mb is None else args.max_rss_mb
        ref = run_reference(data, key, cap, options)
        ref["measured_at"] = stamp
        ref_file.write_text(json.dumps(ref, indent=1))

    print_table(counts, ours, ref)
    if ours:
        print_ours(ours)
    if ref:
        print_reference(ref)
    if args.json:
        args.json.write_text(json.dumps({"dataset": str(data), "data": counts,
                                         "cpu_count": os.cpu_count(), "ours": ours,
                                         "reference": ref}, indent=1))
        print(f"\nfigures written to {args.json}")


if __name__ == "__main__":
    main()
