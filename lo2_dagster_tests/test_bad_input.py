"""Bad input through the real pipeline (real files, a real instance, `lo2-dagster run`'s code path):
odd files are read and warned about by name, a run of empty files or a deleted run folder
never blocks the model, damaged warehouse files are found and rebuilt, and a warehouse that
cannot be written fails in one line that names the path, the cause and the fix."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from lo2_dagster import cli
from lo2_dagster.definitions import defs
from lo2_dagster.defs.keys import ANOMALY_MODEL, PREDICTIONS, RAW_EVENTS, RAW_SEQUENCES
from lo2_dagster.defs.runs import RUNS
from lo2_dagster.lib.layout import run_files
from lo2_dagster.lib.loader import startup_files
from lo2_dagster.lib.model import load_bundle
from lo2_dagster.lib.names import run_start, service_file_name
from lo2_dagster.pipeline import failure_summary, materialize_all
from lo2_dagster_tests.conftest import line


def run_all(instance: dg.DagsterInstance, runs: list[str], retrain: bool = False
            ) -> tuple[list, list[str]]:
    """`lo2-dagster run`'s code path (``retrain``: with --retrain); returns the outcomes and
    what it reported."""
    said: list[str] = []
    outcomes = materialize_all(defs(), instance, runs, report=said.append, retrain=retrain)
    return outcomes, said


def warnings_of(instance: dg.DagsterInstance, outcomes: list) -> list[str]:
    """Every WARNING the assets logged in these Dagster runs."""
    return [entry.user_message for o in outcomes for entry in instance.all_logs(o.run_id)
            if entry.level == 30 and entry.user_message]


def metadata_of(outcomes: list, asset: str, partition: str | None = None) -> dict:
    """The last recorded metadata of an asset (partition) among the outcomes."""
    found = [o.metadata[asset] for o in outcomes
             if asset in o.metadata and o.partition == partition]
    assert found, f"{asset}[{partition}] was not materialized"
    return found[-1]


@pytest.mark.parametrize("world", ["built_copy", "built_v2_copy"])
def test_odd_files_are_read_and_warned_about_by_name(world, request, tmp_path, monkeypatch):
    base, runs, instance = request.getfixturevalue(world)
    run = runs[0]
    folder = base / "lo2" / "logs" / run
    before = pl.read_parquet(base / "warehouse" / "lo2" / "raw_events" / f"{run}.parquet")
    # An empty file; a file with CR-only line breaks (old Mac); continuation lines right after
    # the trimmed start-up block (a multi-line start-up event straddling the cut); a link to a
    # file outside the LO2 root.
    layout = run_files(base / "lo2", run)
    first = {f.service: f.path for f in layout.files
             if f.path in startup_files(layout.files, run_start(run))}
    (folder / "correct" / service_file_name("token")).write_bytes(b"")
    straddled = first["code"]  # where the code container's start-up output is trimmed
    cr_file = next(p for p in (folder / "get_token_404" / service_file_name("code"),
                               folder / "get_user_404_no_user" / service_file_name("code"))
                   if p != straddled)
    code_404 = before.filter(pl.col("seq_id") == f"{run}__{cr_file.parent.name}__code")
    cr_file.write_bytes(cr_file.read_bytes().replace(b"\n", b"\r"))
    lines = straddled.read_text().split("\n")
    members = ["Members {size:7, ver:7} [", *[f"\tMember [172.18.0.{i}]:5701" for i in range(7)],
               "]"]
    straddled.write_text("\n".join(lines[:100] + members + lines[100:]))
    secret = tmp_path / "outside.log"
    secret.write_text(line("23:00:00.000", "SECRET from outside the root") + "\n")
    linked = folder / "correct" / service_file_name("user")
    linked.unlink()
    linked.symlink_to(secret)

    outcomes, _ = run_all(instance, runs)
    assert all(o.success for o in outcomes), [o.error for o in outcomes]
    meta = metadata_of(outcomes, "lo2/raw_events", run)
    empty = f"correct/{service_file_name('token')}: empty file (0 bytes)"
    assert empty in meta["files_without_events"]
    assert meta["rejected_lines"] == 0  # the Members block is part of the trimmed event
    # 100 start-up lines of each file that opens with start-up output (v1-shaped data: every
    # file; v2: each container's first), and the 9 lines of the event that straddles the cut.
    opening = startup_files(run_files(base / "lo2", run).files, run_start(run))
    assert straddled in opening and len(opening) >= 7
    assert meta["trimmed_lines"] == 100 * len(opening) + len(members)
    assert service_file_name("user") in meta["symlinks_not_followed"]
    warned = warnings_of(instance, outcomes)
    assert any(empty in w for w in warned), warned
    assert any("symbolic link" in w and str(secret) in w for w in warned), warned
    after = pl.read_parquet(base / "warehouse" / "lo2" / "raw_events" / f"{run}.parquet")
    assert not after["m_message"].str.contains("SECRET").any()
    cr_events = after.filter(pl.col("seq_id") == f"{run}__{cr_file.parent.name}__code")
    assert cr_events["m_message"].to_list() == code_404["m_message"].to_list()
    # The empty file's sequence is gone (said above), the CR-only one is whole.
    sequences = pl.read_parquet(base / "warehouse" / "lo2" / "predictions" / f"{run}.parquet")
    assert f"{run}__correct__token" not in sequences["seq_id"].to_list()
    assert f"{run}__{cr_file.parent.name}__code" in sequences["seq_id"].to_list()

    # The documented opt-in follows the link: the run's signature changes, it is read again.
    monkeypatch.setenv("LO2_FOLLOW_SYMLINKS", "1")
    outcomes, _ = run_all(instance, runs)
    assert all(o.success for o in outcomes), [o.error for o in outcomes]
    assert metadata_of(outcomes, "lo2/raw_events", run)["symlinks_not_followed"] == "none"
    followed = pl.read_parquet(base / "warehouse" / "lo2" / "raw_events" / f"{run}.parquet")
    assert followed["m_message"].str.contains("SECRET").sum() == 1


def test_a_run_of_empty_files_or_a_deleted_run_never_blocks_the_model(built_copy, monkeypatch):
    base, runs, instance = built_copy
    empty_run = runs[1]
    for log in (base / "lo2" / "logs" / empty_run).rglob("*.log"):
        log.write_bytes(b"")
    outcomes, _ = run_all(instance, runs, retrain=True)
    assert all(o.success for o in outcomes), [o.error for o in outcomes]
    warned = warnings_of(instance, outcomes)
    assert any(f"Run {empty_run}: none of its" in w and "forget" in w for w in warned), warned
    model = metadata_of(outcomes, "lo2/anomaly_model")
    assert f"{empty_run}: it has no correct sequences" in model["runs_left_out"]
    assert any(f"leaves out run {empty_run}" in w for w in warned)

    # Its folder deleted by hand: the model, retrained, leaves the partition out and says how
    # to forget it; `lo2-dagster forget` does.
    shutil.rmtree(base / "lo2" / "logs" / empty_run)
    job = defs().resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(instance=instance, asset_selection=[ANOMALY_MODEL],
                                    raise_on_error=False)
    assert result.success, failure_summary(result)
    left_out = result.asset_materializations_for_node("lo2__anomaly_model")[0] \
        .metadata["runs_left_out"].value
    assert f"{empty_run}: its run folder is gone" in left_out
    assert f"lo2-dagster forget {empty_run}" in left_out
    bundle = load_bundle(base / "warehouse" / "lo2" / "anomaly_model")
    assert sorted(bundle.split.training + bundle.split.holdout) == [runs[0], runs[2]]
    monkeypatch.setenv("DAGSTER_HOME", str(base / "home"))
    assert cli.main(["forget", empty_run]) == 0
    assert empty_run not in instance.get_dynamic_partitions(RUNS.name)


def test_damaged_warehouse_files_are_found_before_use_and_rebuilt(built_copy):
    base, runs, instance = built_copy
    warehouse = base / "warehouse" / "lo2"
    events = warehouse / "raw_events" / f"{runs[0]}.parquet"
    sequences = warehouse / "sequences_enhanced" / f"{runs[1]}.parquet"
    model = warehouse / "anomaly_model" / "model.joblib"
    for path in (events, sequences):
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])  # truncated, as by a full disk or a kill
    model.write_bytes(model.read_bytes() + b"tampered")

    # A step that reads a damaged file fails naming the file and the fix: the Parquet footer is
    # checked before any read, the model's sha256 before it is unpickled.
    job = defs().resolve_implicit_global_asset_job_def()
    for asset, partition, named in ((RAW_SEQUENCES, runs[0], str(events)),
                                    (PREDICTIONS, runs[2], str(model))):
        result = job.execute_in_process(instance=instance, asset_selection=[asset],
                                        partition_key=partition, raise_on_error=False)
        message = failure_summary(result)
        assert not result.success and named in message and "lo2-dagster run" in message, message

    # `lo2-dagster run` finds them although Dagster thinks everything is up to date, and rebuilds.
    outcomes, said = run_all(instance, runs)
    assert all(o.success for o in outcomes), [o.error for o in outcomes]
    report = "\n".join(said)
    assert f"[{runs[0]}]: rebuild lo2/raw_events: its stored file is damaged" in report
    assert f"[{runs[1]}]: rebuild lo2/sequences_enhanced" in report
    assert "[all runs]: rebuild lo2/anomaly_model" in report and "sha256" in report
    for path in (events, sequences):
        assert len(pl.read_parquet(path)) > 0
    load_bundle(model.parent)  # verifies against model.yml
    # Rebuilt from the same input, the content is the same: nothing downstream was redone.
    assert {o.keys for o in outcomes} <= {(RAW_EVENTS,), (dg.AssetKey(["lo2",
                                          "sequences_enhanced"]),), (ANOMALY_MODEL,)}
    again, said = run_all(instance, runs)
    assert again == [], said


def run_on_tmpfs(root: Path, warehouse: Path, options: str, home: Path
                 ) -> subprocess.CompletedProcess:
    """`lo2-dagster run` with its warehouse on a real small filesystem (a tmpfs mounted in a
    private mount namespace: a full disk, or a read-only one), then a listing of any temporary
    file left in it."""
    warehouse.mkdir(parents=True, exist_ok=True)
    script = ('mount -t tmpfs -o "$1" tmpfs "$2" || exit 99; shift 2; "$@"; code=$?; '
              'find "$W" -name ".tmp-*" -printf "LEFTOVER %p\\n"; exit $code')
    cli_path = str(Path(sys.executable).parent / "lo2-dagster")
    env = dict(os.environ, DAGSTER_HOME=str(home), W=str(warehouse))
    # A private mount namespace where the kernel allows it; as root, a mount of our own.
    private = subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode == 0
    assert private or os.geteuid() == 0, "needs `unshare -rm` (user namespaces) or root"
    prefix = ["unshare", "-rm"] if private else []
    try:
        return subprocess.run(
            [*prefix, "sh", "-c", script, "sh", options, str(warehouse), cli_path, "run",
             "--root", str(root), "--warehouse", str(warehouse)],
            env=env, capture_output=True, text=True, timeout=600)
    finally:
        if not private:
            subprocess.run(["umount", "-l", str(warehouse)], capture_output=True)


def test_a_read_only_warehouse_fails_at_once_in_one_line(built, tmp_path):
    base, _ = built
    warehouse = tmp_path / "ro"
    result = run_on_tmpfs(base / "lo2", warehouse, "size=1m,ro", tmp_path / "home")
    assert result.returncode == 2, result.stdout + result.stderr
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and f"Cannot write {warehouse}" in errors[0], result.stderr
    assert "Read-only file system" in errors[0] and "Fix: make" in errors[0]
    assert "Traceback" not in result.stderr + result.stdout


def test_a_full_disk_fails_naming_path_cause_and_fix_and_leaves_nothing_partial(built, tmp_path):
    base, runs = built
    warehouse = tmp_path / "full"
    result = run_on_tmpfs(base / "lo2", warehouse, "size=64k", tmp_path / "home")
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    failed = [ln for ln in out.splitlines()  # the summary's lines, one per failed run
              if any(ln.startswith(f"  FAILED {run}: ") for run in runs)]
    assert len(failed) == len(runs), out
    assert all(": Cannot write" in ln and "No space left on device" in ln and
               "Fix: free space" in ln and str(warehouse) in ln for ln in failed), failed
    assert "LEFTOVER" not in out and "Traceback" not in out + result.stderr


def test_two_runs_at_once_on_a_new_home_wait_for_each_other(tmp_path):
    """Two `lo2-dagster run` started together on a new DAGSTER_HOME: both succeed, the second
    says it waits; no SQLite traceback."""
    from lo2_dagster.synth import SynthConfig, generate

    generate(tmp_path / "lo2", SynthConfig(runs=2, seed=4, token_lines=5))
    env = dict(os.environ, DAGSTER_HOME=str(tmp_path / "home"))
    command = [str(Path(sys.executable).parent / "lo2-dagster"), "run", "--root",
               str(tmp_path / "lo2"), "--warehouse", str(tmp_path / "warehouse")]
    logs = [(tmp_path / f"out{i}.txt", tmp_path / f"err{i}.txt") for i in range(2)]
    procs = []
    for out, err in logs:  # files, not pipes: a full pipe would block the lock's holder
        with out.open("w") as stdout, err.open("w") as stderr:
            procs.append(subprocess.Popen(command, env=env, stdout=stdout, stderr=stderr))
    codes = [p.wait(timeout=600) for p in procs]
    results = [(code, out.read_text(), err.read_text())
               for code, (out, err) in zip(codes, logs, strict=True)]
    for code, out, err in results:
        assert code == 0, out + err
        assert "Traceback" not in out + err
    assert sum("waiting for another lo2-dagster command" in err for _, _, err in results) == 1
    assert sum("nothing was requested" in out for _, out, _ in results) == 1
    # --no-wait exits at once with the holder named.
    from lo2_dagster.lock import exclusive

    with exclusive(tmp_path / "home", str(tmp_path / "warehouse")):
        busy = subprocess.run([*command, "--no-wait"], env=env, capture_output=True, text=True,
                              timeout=120)
    assert busy.returncode == 3 and f"pid {os.getpid()}" in busy.stderr
    assert "Traceback" not in busy.stderr
