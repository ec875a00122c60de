"""Reruns are byte-identical: the whole asset graph materialized again from the same input, on
the same warehouse and instance, writes the same bytes into every file of the warehouse."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import dagster as dg
import pytest

from lo2_dagster_tests.conftest import NO_TELEMETRY, build_warehouse

#: A forced rerun in a fresh process (``argv``: DAGSTER_HOME of the on-disk instance; LO2_ROOT
#: and LO2_WAREHOUSE come from the environment): another hash seed for str hashes (set
#: iteration order) and for polars' hash tables, cold caches, one polars thread.
RERUN = textwrap.dedent("""
    import os
    import sys
    from pathlib import Path

    import dagster as dg
    from lo2_dagster.definitions import defs
    from lo2_dagster.lib.layout import scan_runs
    from lo2_dagster.pipeline import materialize_all

    runs = scan_runs(Path(os.environ["LO2_ROOT"])).runs
    with dg.DagsterInstance.local_temp(tempdir=sys.argv[1],
                                       overrides={"telemetry": {"enabled": False}}) as instance:
        outcomes = materialize_all(defs(), instance, runs, report=lambda _: None, force=True)
    failed = [o.error for o in outcomes if not o.success]
    sys.exit(f"failed: {failed}" if failed else 0)
""")


def snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder``, by path relative to it."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def mtimes(folder: Path) -> dict[str, int]:
    """Modification time of every file under ``folder``: to tell that a rerun rewrote it."""
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns
            for p in folder.rglob("*") if p.is_file()}


def differences(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """Files written differently, or only once, by name."""
    return sorted(name for name in before.keys() | after.keys()
                  if before.get(name) != after.get(name))


@pytest.mark.parametrize(("hard", "fresh_process"), [(False, False), (True, True)],
                         ids=["standard-same-process", "hard-fresh-process"])
def test_forced_rerun_writes_the_same_bytes(hard, fresh_process, tmp_path, isolated_env,
                                            monkeypatch):
    """Generate 3 small runs, materialize every asset, then every asset again (``force``) on
    the same input, warehouse and instance: in the same process (warm caches), or, for the
    hard generator mode's more varied values, in a fresh process with another hash seed and
    one polars thread (set iteration order, polars' hash tables, thread order). Each rerun
    costs as much as the first materialization, so each mode does one."""
    from lo2_dagster.definitions import defs
    from lo2_dagster.pipeline import materialize_all
    from lo2_dagster.synth import SynthConfig

    # Hard mode's varied values, shared and background faults, start-up output only in each
    # run's first test case, in LO2 v2's layout (pre-run results, metrics, missing cases).
    config = {k: v for k, v in vars(SynthConfig.hard(layout="v2")).items()
              if k not in ("runs", "seed", "token_lines")} if hard else {}
    home, warehouse = tmp_path / "home", tmp_path / "warehouse"
    home.mkdir()
    with dg.DagsterInstance.local_temp(tempdir=str(home), overrides=NO_TELEMETRY) as instance:
        runs = build_warehouse(tmp_path, runs=3, seed=7, instance=instance,
                               monkeypatch=monkeypatch, **config)
        first, written = snapshot(warehouse), mtimes(warehouse)
        # Every asset wrote something: per-run files, the templates, the model, the report.
        for folder in ("lo2/raw_events", "lo2/message_counts", "lo2/events_enhanced",
                       "lo2/predictions", "lo2/explanations", "lo2/score_drift"):
            assert {f"{folder}/{run}.parquet" for run in runs} <= first.keys()
        for name in ("lo2/drain_templates/drain3_state.json", "lo2/anomaly_model/model.yml",
                     "lo2/anomaly_model/model.joblib", "reports/model_report/model_report.md"):
            assert name in first
        if not fresh_process:
            outcomes = materialize_all(defs(), instance, runs, report=lambda _: None,
                                       force=True)
            assert all(o.success for o in outcomes), \
                [o.error for o in outcomes if not o.success]
            where = "in the same process"

    if fresh_process:
        seed = "2" if os.environ.get("PYTHONHASHSEED") == "1" else "1"
        env = dict(os.environ, PYTHONHASHSEED=seed, POLARS_MAX_THREADS="1")
        rerun = subprocess.run([sys.executable, "-c", RERUN, str(home)], env=env,
                               capture_output=True, text=True, timeout=300)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        where = f"in another process (PYTHONHASHSEED={seed}, one polars thread)"
    # Everything is rewritten, except the exports' copies: they are copied again only when a
    # run's data version changes, and a deterministic rerun keeps every data version.
    kept = sorted(k for k, v in mtimes(warehouse).items() if written.get(k) == v
                  and not k.startswith("exports/"))
    assert not kept, f"the rerun did not rewrite {kept}"
    differ = differences(first, snapshot(warehouse))
    assert not differ, f"{len(differ)} of {len(first)} files differ after a forced rerun " \
                       f"{where}: {differ}"
