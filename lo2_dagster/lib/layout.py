"""Where the LO2 files are: the logs folder, the runs in it, and the files of one run.

Both LO2 versions' layouts are read: run folders named ``light-oauth2-data-<epoch>`` (v1) or
``oauth2_logs_LO2_run_<epoch>`` (v2), or anything else that holds test-case folders of logs. A
folder is a run by what it holds, not by its name: LO2 v2's archive keeps a folder of pre-run
results beside the runs, with no logs, and that is not a run.

Symbolic links are followed only while they stay inside the LO2 root (a link to ``/etc`` is not
read); ``follow_symlinks=True`` (``$LO2_FOLLOW_SYMLINKS=1``) is the opt-in for roots made of
links to other disks.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from lo2_dagster.lib.names import (
    SERVICES,
    TEST_CASES,
    InvalidRunKey,
    service_file_name,
    service_of_file,
    validate_run_key,
)

#: Folders that LO2 itself puts inside a run or test case folder: metrics, not logs.
METRICS_FOLDER = "metrics"


class LayoutError(ValueError):
    """The LO2 folder does not look like LO2; the message names the folder and the fix."""


def logs_dir(root: Path) -> Path:
    """The folder holding the run folders: ``<root>/logs`` if it exists, else ``<root>`` itself."""
    root = Path(root)
    if not root.is_dir():
        raise LayoutError(
            f"LO2 root {root} does not exist or is not a folder. Point LO2_ROOT (or --root) at "
            "the folder that holds 'logs/<run>/...' or the run folders themselves."
        )
    return root / "logs" if (root / "logs").is_dir() else root


def outside_root(path: Path, root: Path, follow_symlinks: bool) -> Path | None:
    """Where ``path`` really is, if it is a symbolic link that leads outside ``root`` (and links
    are not to be followed there), or its target if it leads nowhere (dangling, a loop); else
    None."""
    if follow_symlinks or not path.is_symlink():
        return None
    try:
        target = path.resolve(strict=True)
    except (OSError, RuntimeError):  # a dangling link or a loop: nothing to follow
        return Path(os.readlink(path))
    inside = target.is_relative_to(Path(root).resolve()) or target.is_relative_to(
        logs_dir(root).resolve())
    return None if inside else target


def _holds_logs(path: Path) -> bool:
    """Whether any sub-folder of ``path`` holds a ``.log`` file (test-case folders of a run).
    Raises OSError for a folder that cannot be listed."""
    return any(sub.is_dir() and any(sub.glob("*.log")) for sub in path.iterdir())


class RunScan(NamedTuple):
    """What a scan of the LO2 root found."""

    #: Run folder names, sorted: folders whose sub-folders hold ``.log`` files.
    runs: list[str]
    #: Folders that hold logs but cannot be runs, each with the reason and the fix (warned about).
    skipped: list[str]
    #: Folders without any logs, e.g. LO2 v2's pre-run results, or a run still being copied.
    other: list[str]


def scan_runs(root: Path, follow_symlinks: bool = False) -> RunScan:
    """The run folders under an LO2 root (either layout, either LO2 version)."""
    runs, skipped, other = [], [], []
    for path in sorted(logs_dir(root).iterdir()):
        if not path.is_dir() or path.name.startswith("."):
            continue
        target = outside_root(path, root, follow_symlinks)
        if target is not None:
            skipped.append(f"{path}: a symbolic link to {target}, outside the LO2 root; not "
                           "followed (set LO2_FOLLOW_SYMLINKS=1 to follow links out of the root)")
            continue
        try:
            holds_logs = _holds_logs(path)
        except OSError as e:
            skipped.append(f"{path}: cannot be listed ({e.strerror}); fix its permissions")
            continue
        if not holds_logs:
            other.append(path.name)
            continue
        try:
            runs.append(validate_run_key(path.name))
        except InvalidRunKey as e:
            skipped.append(f"{path}: {e}")
    return RunScan(runs, skipped, other)


def nested_roots(root: Path, follow_symlinks: bool = False) -> list[Path]:
    """Folders one or two levels below ``root`` that hold runs, for the error message when
    ``root`` itself holds none (an archive unpacked into a folder of its own)."""
    found = []
    for sub in sorted(p for p in Path(root).iterdir() if p.is_dir()):
        for candidate in (sub, *sorted(p for p in sub.iterdir() if p.is_dir())):
            try:
                if scan_runs(candidate, follow_symlinks).runs:
                    found.append(candidate)
                    break
            except (LayoutError, OSError):
                continue
    return found


def has_logs(root: Path, run: str, follow_symlinks: bool = False) -> bool:
    """Whether a run folder holds at least one service log in a known test-case folder (a run
    still being created or copied may not yet)."""
    try:
        return bool(run_files(root, run, follow_symlinks).files)
    except LayoutError:
        return False


@dataclass(frozen=True)
class LogFile:
    """One container log: the file and the labels its place in the layout gives it."""

    path: Path
    test_case: str
    service: str


@dataclass
class RunFiles:
    """The log files of one run, and what in its folder was not a log file we know."""

    run: str
    run_dir: Path
    files: list[LogFile] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # "<test_case>/<file>" expected, absent
    ignored: list[str] = field(default_factory=list)  # unknown entries, relative to run_dir
    #: Metrics beside the logs: ``<test_case>/metrics/<file>`` (LO2 v2's Prometheus JSON) and
    #: the run's ``metrics/<run>.csv`` at the LO2 root (its path relative to the root).
    metrics: list[str] = field(default_factory=list)
    #: Symbolic links that lead outside the LO2 root, not followed: ``<entry> -> <target>``.
    outside_root: list[str] = field(default_factory=list)

    @property
    def test_cases(self) -> list[str]:
        return sorted({f.test_case for f in self.files})

    @property
    def missing_test_cases(self) -> list[str]:
        """Known LO2 test cases that have no folder in this run."""
        present = {f.test_case for f in self.files} | {m.split("/")[0] for m in self.missing}
        return [tc for tc in TEST_CASES if tc not in present]


def run_files(root: Path, run: str, follow_symlinks: bool = False,
              list_metrics: bool = False) -> RunFiles:
    """List the log files of ``run``, sorted by test case then service.

    Unknown folders and files are reported in ``ignored``, absent service files in ``missing``,
    metrics in ``metrics`` (if ``list_metrics``: LO2 v2's archive is mostly metrics, so the
    sensor's signatures skip them), links out of the root in ``outside_root``. A run folder
    without any known test-case folder is an error naming the folder.
    """
    validate_run_key(run)
    base = logs_dir(root)
    run_dir = base / run
    if not run_dir.is_dir():
        raise LayoutError(
            f"Run folder {run_dir} not found. Is LO2_ROOT right (now {Path(root)})? If the run "
            f"was removed on purpose, forget its partition: lo2-dagster forget {run}"
        )
    target = outside_root(run_dir, root, follow_symlinks)
    if target is not None:
        raise LayoutError(
            f"Run folder {run_dir} is a symbolic link to {target}, outside the LO2 root: not "
            "followed. Set LO2_FOLLOW_SYMLINKS=1 if the root is made of links on purpose."
        )
    result = RunFiles(run=run, run_dir=run_dir)
    known_cases = set(TEST_CASES)
    for entry in sorted(run_dir.iterdir()):
        target = outside_root(entry, root, follow_symlinks)
        if target is not None:
            result.outside_root.append(f"{entry.name} -> {target}")
        elif entry.is_dir() and entry.name in known_cases:
            _add_test_case(result, entry, root, follow_symlinks, list_metrics)
        elif entry.is_dir() and entry.name == METRICS_FOLDER:
            result.metrics.extend(_metrics_files(entry, run_dir) if list_metrics else ())
        else:
            result.ignored.append(entry.name + ("/" if entry.is_dir() else ""))
    if not result.files and not result.missing:
        raise LayoutError(
            f"Run folder {run_dir} has no test-case folders (expected e.g. "
            f"{run_dir / 'correct' / service_file_name('token')}). Re-copy the run, or remove "
            f"the folder and forget its partition: lo2-dagster forget {run}"
        )
    if list_metrics:
        result.metrics.extend(_metrics_csv(root, run))
    return result


def _metrics_files(folder: Path, run_dir: Path) -> list[str]:
    """The files of a metrics folder, relative to the run folder."""
    return [str(p.relative_to(run_dir)) for p in sorted(folder.rglob("*")) if p.is_file()]


def _metrics_csv(root: Path, run: str) -> list[str]:
    """The run's ``metrics/<run>.csv`` beside the logs folder, if any (path from the root)."""
    base = logs_dir(root)
    for folder in dict.fromkeys((Path(root) / METRICS_FOLDER, base.parent / METRICS_FOLDER)):
        csv = folder / f"{run}.csv"
        if csv.is_file():
            return [str(csv.relative_to(base.parent))]
    return []


def _add_test_case(result: RunFiles, case_dir: Path, root: Path, follow_symlinks: bool,
                   list_metrics: bool) -> None:
    """Add one test case folder's service logs (and metrics) to ``result``."""
    present: dict[str, Path] = {}
    for entry in sorted(case_dir.iterdir()):
        target = outside_root(entry, root, follow_symlinks)
        service = service_of_file(entry.name) if entry.is_file() else None
        if target is not None:
            result.outside_root.append(f"{case_dir.name}/{entry.name} -> {target}")
        elif service is not None:
            present[service] = entry
        elif entry.is_dir() and entry.name == METRICS_FOLDER:
            result.metrics.extend(_metrics_files(entry, result.run_dir) if list_metrics else ())
        else:
            result.ignored.append(f"{case_dir.name}/{entry.name}" + ("/" if entry.is_dir() else ""))
    for service in SERVICES:
        if service in present:
            result.files.append(LogFile(present[service], case_dir.name, service))
        elif not any(o.startswith(f"{case_dir.name}/{service_file_name(service)} ")
                     for o in result.outside_root):
            result.missing.append(f"{case_dir.name}/{service_file_name(service)}")


def run_signature(root: Path, run: str, follow_symlinks: bool = False) -> str:
    """A cheap fingerprint of a run folder's log files (name, size, modification time; no
    content read): it changes when a file is added, removed, rewritten or touched. Reading a
    changed run tells whether its content changed too (the raw events' data version)."""
    digest = hashlib.sha256()
    for log in run_files(root, run, follow_symlinks).files:
        stat = log.path.stat()
        digest.update(f"{log.test_case}/{log.path.name}\t{stat.st_size}\t{stat.st_mtime_ns}\n"
                      .encode())
    return digest.hexdigest()[:32]


def folder_signature(root: Path, run: str) -> tuple[str, float]:
    """A cheaper fingerprint than ``run_signature``: the modification times of the run folder
    and of its sub-folders (a file added, removed or renamed changes its folder's), a few dozen
    stats instead of one per file; with the newest of those times (seconds since the epoch).
    A file rewritten in place does not change it."""
    run_dir = logs_dir(root) / validate_run_key(run)
    folders = [run_dir, *sorted(e for e in run_dir.iterdir() if e.is_dir())]
    stats = [(f.name, f.stat().st_mtime_ns) for f in folders]
    text = "".join(f"{name}\t{mtime}\n" for name, mtime in stats)
    return hashlib.sha256(text.encode()).hexdigest()[:32], max(m for _, m in stats) / 1e9
