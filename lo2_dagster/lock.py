"""One ``lo2-dagster run`` at a time per DAGSTER_HOME and per warehouse.

Two runs on the same instance race its SQLite storage (a new DAGSTER_HOME's schema is created by
whichever process comes first) and write the same warehouse files. Each command that writes
takes an exclusive lock on ``<DAGSTER_HOME>/.lo2-dagster.lock`` and, when the warehouse is a
local folder, ``<warehouse>/.lo2-dagster.lock`` (both git-ignored runtime state); the second
command waits for the first, saying so, or with ``--no-wait`` exits. The operating system drops
the locks when the process ends, however it ends (kill -9 included), so a stale lock cannot
block anyone.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

LOCK_FILE = ".lo2-dagster.lock"


class LockError(RuntimeError):
    """The lock cannot be taken; the message names the file, the cause and the fix."""


class Busy(LockError):
    """Another process holds the lock and the caller chose not to wait."""


@contextlib.contextmanager
def exclusive(home: Path, warehouse: str, wait: bool = True,
              notice: Callable[[str], object] = print) -> Iterator[None]:
    """Hold the locks of ``home`` and of a local ``warehouse`` (in that order, so two
    processes never wait on each other crosswise)."""
    folders = [Path(home)]
    if "://" not in warehouse:
        folders.append(Path(warehouse))
    with contextlib.ExitStack() as stack:
        seen: set[Path] = set()
        for folder in folders:
            path = (folder / LOCK_FILE).resolve()
            if path not in seen:
                seen.add(path)
                try:
                    folder.mkdir(parents=True, exist_ok=True)
                    stack.enter_context(_locked(path, wait, notice))
                except OSError as e:
                    raise LockError(
                        f"cannot lock {path}: {e.strerror or e}. Fix: make {folder} a writable "
                        "folder, or set DAGSTER_HOME / --warehouse to one") from None
        yield


@contextlib.contextmanager
def _locked(path: Path, wait: bool, notice: Callable[[str], object]) -> Iterator[None]:
    """An exclusive ``flock`` on ``path``; the file records the holder's pid and start."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            if not wait:
                raise Busy(f"another lo2-dagster command ({holder}) is using {path.parent}; "
                           "run again when it has finished, or leave out --no-wait to wait "
                           "for it") from None
            notice(f"waiting for another lo2-dagster command ({holder}) that is using "
                   f"{path.parent} to finish (Ctrl-C to stop waiting) ...")
            began = time.monotonic()
            fcntl.flock(fd, fcntl.LOCK_EX)
            notice(f"... it finished after {time.monotonic() - began:.0f} s; going on")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}, since {time.strftime('%H:%M:%S')}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def _holder(fd: int) -> str:
    """What the lock file says about the process holding it."""
    try:
        return os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown pid"
    except OSError:
        return "unknown pid"
