"""`dagster dev` as a user starts it, for integration and browser tests: a temporary
DAGSTER_HOME with the project's dagster.yaml, 127.0.0.1 on a free port, its own process group
(so SIGTERM reaches the webserver, the daemon and the code server), and GraphQL."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from lo2_dagster import settings

BIN = Path(sys.executable).parent
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ, DAGSTER_HOME=str(home), **(extra or {}))
    env.pop("VIRTUAL_ENV", None)
    return env


@dataclass
class DagsterDev:
    port: int
    home: Path
    log: Path
    env: dict[str, str]
    process: subprocess.Popen

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def graphql(self, query: str, variables: Mapping[str, Any] | None = None) -> dict:
        request = urllib.request.Request(
            f"{self.url}/graphql",
            data=json.dumps({"query": query, "variables": variables or {}}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            body = json.loads(response.read())
        assert "errors" not in body, body["errors"]
        return body["data"]

    def wait_for(self, what: str, probe: Callable[[], T | None], timeout: float = 300,
                 every: float = 1.0) -> T:
        """Poll ``probe`` until it returns something truthy; fail with the server log."""
        deadline = time.monotonic() + timeout
        while True:
            assert self.process.poll() is None, f"dagster dev exited:\n{self.tail()}"
            value = probe()
            if value:
                return value
            assert time.monotonic() < deadline, f"{what}: not within {timeout} s\n{self.tail()}"
            time.sleep(every)

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def dagster(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        """The dagster CLI against this instance and code location, as a user types it."""
        return subprocess.run([str(BIN / "dagster"), *args], cwd=settings.REPO_ROOT,
                              env=self.env, capture_output=True, text=True, timeout=timeout)


@contextmanager
def dagster_dev(tmp_path: Path, env: Mapping[str, str] | None = None) -> Iterator[DagsterDev]:
    """Start `dagster dev` in the checkout, wait until the code location is loaded, stop it
    (and everything it started) afterwards."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(settings.REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    port = free_port()
    log_path = tmp_path / "dagster-dev.log"
    full_env = clean_env(home, env)
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [str(BIN / "dagster"), "dev", "-h", "127.0.0.1", "-p", str(port)],
            cwd=settings.REPO_ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        dev = DagsterDev(port, home, log_path, full_env, process)
        try:
            dev.wait_for("webserver", lambda: _answers(dev.url), timeout=180)
            dev.wait_for("code location", lambda: _location_loaded(dev), timeout=180)
            yield dev
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/server_info", timeout=5):
            return True
    except OSError:
        return False


def _location_loaded(dev: DagsterDev) -> bool:
    data = dev.graphql("""{ workspaceOrError { ... on Workspace { locationEntries { name
        locationOrLoadError { __typename } } } } }""")
    entries = data["workspaceOrError"]["locationEntries"]
    return bool(entries and entries[0]["locationOrLoadError"])
