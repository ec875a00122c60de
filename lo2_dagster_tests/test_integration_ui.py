"""The code location loads where users load it: `dg check defs`, and `dagster dev` on 127.0.0.1
answering GraphQL with our assets, sensor and job. Real processes, stopped by process group."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from lo2_dagster import settings
from lo2_dagster_tests.test_defs import GRAPH

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(home: Path) -> dict[str, str]:
    env = dict(os.environ, DAGSTER_HOME=str(home))
    env.pop("VIRTUAL_ENV", None)
    return env


def _graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["data"]


def test_dg_check_defs_passes_from_the_repo_root(tmp_path):
    result = subprocess.run(
        [str(BIN / "dg"), "check", "defs"], cwd=settings.REPO_ROOT, env=_env(tmp_path),
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All definitions loaded successfully" in result.stdout + result.stderr


def test_dagster_dev_serves_the_code_location(tmp_path, isolated_env):
    home = tmp_path / "home"
    home.mkdir()
    shutil.copyfile(settings.REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    port = _free_port()
    log = (tmp_path / "dagster-dev.log").open("w")
    proc = subprocess.Popen(
        [str(BIN / "dagster"), "dev", "-h", "127.0.0.1", "-p", str(port)],
        cwd=settings.REPO_ROOT, env=_env(home), stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, (tmp_path / "dagster-dev.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5):
                    break
            except OSError:
                assert time.monotonic() < deadline, "dagster dev did not answer in 180 s"
                time.sleep(1)
        query = """{ assetNodes { assetKey { path } groupName isPartitioned }
                     workspaceOrError { ... on Workspace { locationEntries { name
                       locationOrLoadError { __typename } } } } }"""
        while True:  # the code server may still be loading the location
            data = _graphql(port, query)
            entries = data["workspaceOrError"]["locationEntries"]
            if entries and entries[0]["locationOrLoadError"]:
                break
            assert time.monotonic() < deadline
            time.sleep(1)
        assert [e["name"] for e in entries] == ["lo2_dagster"]
        assert entries[0]["locationOrLoadError"]["__typename"] == "RepositoryLocation"
        nodes = {"/".join(n["assetKey"]["path"]): n for n in data["assetNodes"]}
        assert set(nodes) == set(GRAPH)  # every asset of the code location, as served
        assert nodes["lo2/raw_events"]["isPartitioned"]
        assert nodes["lo2/events_enhanced"]["isPartitioned"]
        assert not nodes["lo2/drain_templates"]["isPartitioned"]
        # The webserver listens on loopback only.
        assert _listening_addresses(port) == {"127.0.0.1"}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()
    assert proc.returncode is not None


def _listening_addresses(port: int) -> set[str]:
    """IPv4 addresses with a socket in LISTEN state on ``port`` (Linux /proc/net/tcp)."""
    found = set()
    for row in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = row.split()[1], row.split()[3]
        address, port_hex = local.split(":")
        if state == "0A" and int(port_hex, 16) == port:
            found.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return found
