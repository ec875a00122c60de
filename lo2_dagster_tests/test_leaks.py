"""The leak audit: what gives LO2 v1's labels away, found on the data at hand and warned about;
start-up templates found by how they behave and left out of the features."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import polars as pl
import pytest

from lo2_dagster.defs.keys import LEAK_CHECK, MODEL_REPORT
from lo2_dagster.lib import leaks
from lo2_dagster.synth import SynthConfig, generate
from lo2_dagster_tests.conftest import NO_TELEMETRY, build_warehouse
from lo2_dagster_tests.test_detector import build

T0 = dt.datetime(2024, 6, 28, 10)


def rows(run: str, starts: dict[str, int], templates: dict[str, list[str]]) -> pl.DataFrame:
    """One service's sequences of a run: test case -> start (minutes) and templates."""
    return pl.DataFrame([{"run": run, "service": "token", "test_case": case,
                          "start_time": T0 + dt.timedelta(minutes=minute),
                          "e_event_drain_id": templates[case]}
                         for case, minute in starts.items()])


def test_start_up_templates_are_those_only_the_first_test_case_of_runs_shows():
    a = rows("a", {"correct": 0, "err": 5}, {"correct": ["boot", "t1"], "err": ["t1", "x"]})
    b = rows("b", {"err": 0, "correct": 5}, {"err": ["boot", "t1", "x"], "correct": ["t1"]})
    assert leaks.startup_templates([a, b]) == {"boot"}
    # A template only one run's first test case shows is not start-up output: chance.
    c = rows("c", {"correct": 0, "err": 5}, {"correct": ["rare", "t1"], "err": ["t1"]})
    assert leaks.startup_templates([a, b, c]) == {"boot"}
    # Test cases that start together: none of them is first.
    tie = rows("d", {"correct": 0, "err": 0}, {"correct": ["t1"], "err": ["t1"]})
    assert leaks.startup_templates([tie, tie.with_columns(pl.lit("e").alias("run"))]) \
        == frozenset()


@pytest.fixture(scope="module")
def v1_and_v2(tmp_path_factory) -> dict[str, dict[str, object]]:
    """The leak audit of LO2 v1-shaped runs (correct first, 60 s, with the start-up output)
    and of v2-shaped ones (shuffled, 20-180 s, start-up in whichever test case ran first)."""
    out = {}
    for name, schedule in (("v1", "v1"), ("v2", "shuffled")):
        root = tmp_path_factory.mktemp(name) / "lo2"
        generate(root, SynthConfig(runs=4, seed=9, token_lines=80, schedule=schedule,
                                   startup="first", metrics=False))
        _, frames = build(root, trim=0)
        startup = leaks.startup_templates(frames.values())
        signals = pl.concat(leaks.sequence_signals(f, startup) for f in frames.values())
        out[name] = {"startup": startup,
                     "audit": leaks.leak_audit(leaks.test_case_signals(signals))}
    return out


def test_lo2_v1s_layout_gives_the_labels_away_and_is_warned_about(v1_and_v2):
    audit = v1_and_v2["v1"]["audit"]
    assert set(audit["leaking"]) == {"duration", "events", "startup_lines", "first_in_run"}
    assert audit["signals"]["first_in_run"]["separation"] == 1.0
    warning = leaks.leak_warning(audit)
    assert warning and "duration" in warning and "LO2 v1" in warning
    table = leaks.audit_table(audit)
    assert table.filter("leaks")["signal"].to_list() == audit["leaking"]


def test_a_shuffled_v2_layout_does_not(v1_and_v2):
    audit = v1_and_v2["v2"]["audit"]
    assert audit["leaking"] == []
    assert leaks.leak_warning(audit) is None
    # A model trained before the audit existed has none: that is not a pass.
    assert "Retrain lo2/anomaly_model" in leaks.leak_warning({})
    assert all(s["separation"] < leaks.LEAK_AUC for s in audit["signals"].values())
    assert v1_and_v2["v2"]["startup"]  # start-up output was there, in the first test cases


def test_the_model_report_warns_when_the_data_leaks(tmp_path):
    """Through Dagster: v1-shaped runs (start-up at every file's head, trimmed; correct first
    for 60 s): the report's check fails with WARN severity and names the signals; the model's
    page shows the audit too."""
    with pytest.MonkeyPatch.context() as mp, \
            dg.DagsterInstance.local_temp(tempdir=str(tmp_path), overrides=NO_TELEMETRY) \
            as instance:
        build_warehouse(tmp_path / "world", runs=3, seed=2, instance=instance,
                        monkeypatch=mp, schedule="v1", token_lines=50)
        record = instance.get_latest_asset_check_evaluation_record(
            dg.AssetCheckKey(MODEL_REPORT, LEAK_CHECK))
        result = record.event.dagster_event.event_specific_data
        assert not result.passed and result.severity == dg.AssetCheckSeverity.WARN
        assert "duration" in result.metadata["leaking"].value
        assert "first_in_run" in result.metadata["leaking"].value
        model = instance.fetch_materializations(
            dg.AssetKey(["lo2", "anomaly_model"]), limit=1).records[0].asset_materialization
        assert "duration" in model.metadata["leaking_signals"].value
