"""The code location loads where users load it: `dg check defs`, and `dagster dev` on 127.0.0.1
answering GraphQL with our assets, sensor and job. Real processes, stopped by process group."""

import socket
import subprocess
from pathlib import Path

import pytest

from lo2_dagster import settings
from lo2_dagster.devserver import BIN, clean_env, dagster_dev
from lo2_dagster_tests.test_defs import GRAPH

pytestmark = pytest.mark.integration


def test_dg_check_defs_passes_from_the_repo_root(tmp_path):
    result = subprocess.run(
        [str(BIN / "dg"), "check", "defs"], cwd=settings.REPO_ROOT, env=clean_env(tmp_path),
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All definitions loaded successfully" in result.stdout + result.stderr


def test_dagster_dev_serves_the_code_location(tmp_path, isolated_env):
    with dagster_dev(tmp_path) as dev:
        data = dev.graphql("""{ assetNodes { assetKey { path } groupName isPartitioned }
                     workspaceOrError { ... on Workspace { locationEntries { name
                       locationOrLoadError { __typename } } } } }""")
        entries = data["workspaceOrError"]["locationEntries"]
        assert [e["name"] for e in entries] == ["lo2_dagster"]
        assert entries[0]["locationOrLoadError"]["__typename"] == "RepositoryLocation"
        nodes = {"/".join(n["assetKey"]["path"]): n for n in data["assetNodes"]}
        assert set(nodes) == set(GRAPH)  # every asset of the code location, as served
        assert nodes["lo2/raw_events"]["isPartitioned"]
        assert nodes["lo2/events_enhanced"]["isPartitioned"]
        assert not nodes["lo2/drain_templates"]["isPartitioned"]
        # The webserver listens on loopback only.
        assert _listening_addresses(dev.port) == {"127.0.0.1"}
    assert dev.process.returncode is not None


def _listening_addresses(port: int) -> set[str]:
    """IPv4 addresses with a socket in LISTEN state on ``port`` (Linux /proc/net/tcp)."""
    found = set()
    for row in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = row.split()[1], row.split()[3]
        address, port_hex = local.split(":")
        if state == "0A" and int(port_hex, 16) == port:
            found.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return found
