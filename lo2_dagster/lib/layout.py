"""Where the LO2 files are: the logs folder, the runs in it, and the files of one run."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from lo2_dagster.lib.names import (
    RUN_PREFIX,
    SERVICES,
    TEST_CASES,
    InvalidRunKey,
    service_file_name,
    service_of_file,
    validate_run_key,
)

#: Folders that LO2 itself puts inside a test case folder; not logs, ignored silently.
KNOWN_TEST_CASE_SUBFOLDERS = frozenset({"metrics"})


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


def _looks_like_run(path: Path) -> bool:
    """A run is a folder named like LO2 runs, or any folder holding test-case folders of logs."""
    if path.name.startswith(RUN_PREFIX):
        return True
    return any(sub.is_dir() and any(sub.glob("*.log")) for sub in path.iterdir())


def scan_runs(root: Path) -> tuple[list[str], list[str]]:
    """Sorted names of the run folders under an LO2 root (either layout), and the folders
    skipped because their name cannot be a partition key (each with the reason)."""
    runs, skipped = [], []
    for path in sorted(logs_dir(root).iterdir()):
        if not path.is_dir() or path.name.startswith(".") or not _looks_like_run(path):
            continue
        try:
            runs.append(validate_run_key(path.name))
        except InvalidRunKey as e:
            skipped.append(f"{path}: {e}")
    return runs, skipped


def has_logs(root: Path, run: str) -> bool:
    """Whether a run folder holds at least one service log in a known test-case folder (a run
    still being created or copied may not yet)."""
    try:
        return bool(run_files(root, run).files)
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

    @property
    def test_cases(self) -> list[str]:
        return sorted({f.test_case for f in self.files})

    @property
    def missing_test_cases(self) -> list[str]:
        """Known LO2 test cases that have no folder in this run."""
        present = {f.test_case for f in self.files} | {m.split("/")[0] for m in self.missing}
        return [tc for tc in TEST_CASES if tc not in present]


def run_files(root: Path, run: str) -> RunFiles:
    """List the log files of ``run``, sorted by test case then service.

    Unknown folders and files are reported in ``ignored``, absent service files in ``missing``.
    A run folder without any known test-case folder is an error naming the folder.
    """
    validate_run_key(run)
    base = logs_dir(root)
    run_dir = base / run
    if not run_dir.is_dir():
        raise LayoutError(
            f"Run folder {run_dir} not found. Is LO2_ROOT right (now {Path(root)})? If the run "
            "was removed, delete its partition in the Dagster UI."
        )
    result = RunFiles(run=run, run_dir=run_dir)
    known_cases = set(TEST_CASES)
    for entry in sorted(run_dir.iterdir()):
        if entry.is_dir() and entry.name in known_cases:
            _add_test_case(result, entry)
        else:
            result.ignored.append(entry.name + ("/" if entry.is_dir() else ""))
    if not result.files and not result.missing:
        raise LayoutError(
            f"Run folder {run_dir} has no test-case folders (expected e.g. "
            f"{run_dir / 'correct' / service_file_name('token')}). Re-copy the run, or remove "
            "the folder and its partition."
        )
    return result


def _add_test_case(result: RunFiles, case_dir: Path) -> None:
    """Add one test case folder's service logs to ``result``."""
    present: dict[str, Path] = {}
    for entry in sorted(case_dir.iterdir()):
        service = service_of_file(entry.name) if entry.is_file() else None
        if service is not None:
            present[service] = entry
        elif not (entry.is_dir() and entry.name in KNOWN_TEST_CASE_SUBFOLDERS):
            result.ignored.append(f"{case_dir.name}/{entry.name}" + ("/" if entry.is_dir() else ""))
    for service in SERVICES:
        if service in present:
            result.files.append(LogFile(present[service], case_dir.name, service))
        else:
            result.missing.append(f"{case_dir.name}/{service_file_name(service)}")


def run_signature(root: Path, run: str) -> str:
    """A cheap fingerprint of a run folder's log files (name, size, modification time; no
    content read): it changes when a file is added, removed, rewritten or touched. Reading a
    changed run tells whether its content changed too (the raw events' data version)."""
    digest = hashlib.sha256()
    for log in run_files(root, run).files:
        stat = log.path.stat()
        digest.update(f"{log.test_case}/{log.path.name}\t{stat.st_size}\t{stat.st_mtime_ns}\n"
                      .encode())
    return digest.hexdigest()[:32]
