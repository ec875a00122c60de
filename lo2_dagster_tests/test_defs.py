"""The code location as a reviewer sees it: graph snapshot, and the instance configuration."""

import os
import shutil

import dagster as dg
import pytest

from lo2_dagster import settings
from lo2_dagster.definitions import defs
from lo2_dagster.defs.runs import BACKFILL_POLICY

ENHANCED_CHECKS = ["drain_ids_known", "no_row_lost", "schema_matches_contract", "seq_id_not_null"]

# Keys, deps, groups, partitioning and code versions: a rename or a lost edge shows up here.
PER_RUN = "on_new_or_changed_data"
RETRAIN = "on_retrain_cron(0 3 * * 0)"
GRAPH = {
    "lo2/run_logs": {"deps": [], "group": "ingest", "partitions": "lo2_runs",
                     "code_version": None, "checks": [], "automation": None},
    "lo2/raw_events": {"deps": ["lo2/run_logs"], "group": "ingest", "partitions": "lo2_runs",
                       "code_version": "parser-2", "checks": ["every_line_accounted_for"],
                       "automation": PER_RUN},
    "lo2/raw_sequences": {"deps": ["lo2/raw_events"], "group": "ingest",
                          "partitions": "lo2_runs", "code_version": "1", "checks": [],
                          "automation": PER_RUN},
    "lo2/fp_allowlist": {"deps": [], "group": "features", "partitions": None,
                         "code_version": None, "checks": [], "automation": None},
    "lo2/message_counts": {"deps": ["lo2/raw_events"], "group": "features",
                           "partitions": "lo2_runs", "code_version": "enhancer-3", "checks": [],
                           "automation": PER_RUN},
    "lo2/drain_templates": {"deps": ["lo2/message_counts"], "group": "features",
                            "partitions": None, "code_version": "drain-3", "checks": [],
                            "automation": RETRAIN},
    "lo2/events_enhanced": {
        "deps": ["lo2/drain_templates", "lo2/fp_allowlist", "lo2/raw_events"],
        "group": "features", "partitions": "lo2_runs", "code_version": "enhancer-3",
        "checks": ENHANCED_CHECKS, "automation": PER_RUN},
    "lo2/sequences_enhanced": {
        "deps": ["lo2/drain_templates", "lo2/events_enhanced", "lo2/fp_allowlist",
                 "lo2/raw_sequences"],
        "group": "features", "partitions": "lo2_runs", "code_version": "enhancer-3",
        "checks": ENHANCED_CHECKS, "automation": PER_RUN},
    "lo2/enhanced_exports": {
        "deps": ["lo2/events_enhanced", "lo2/sequences_enhanced"], "group": "features",
        "partitions": None, "code_version": "2", "checks": [], "automation": RETRAIN},
    "lo2/training_set": {
        "deps": ["lo2/sequences_enhanced"], "group": "model", "partitions": None,
        "code_version": "fingerprint-1", "checks": [], "automation": "on_any_run_changed"},
    "lo2/anomaly_model": {
        "deps": ["lo2/drain_templates", "lo2/sequences_enhanced", "lo2/training_set"],
        "group": "model", "partitions": None, "code_version": "model-4",
        "checks": ["holdout_test_case_roc_auc_above_floor"],
        "automation": "on_retrain_cron(0 3 * * 0)_or_new_templates"},
    "lo2/predictions": {
        "deps": ["lo2/anomaly_model", "lo2/sequences_enhanced"], "group": "detect",
        "partitions": "lo2_runs", "code_version": "predict-1", "checks": [],
        "automation": PER_RUN},
    "lo2/model_report": {
        "deps": ["lo2/anomaly_model", "lo2/drain_templates", "lo2/events_enhanced",
                 "lo2/sequences_enhanced"],
        "group": "detect", "partitions": None, "code_version": "report-2",
        "checks": ["no_signal_gives_labels_away"], "automation": "on_new_model"},
    "lo2/explanations": {
        "deps": ["lo2/anomaly_model", "lo2/drain_templates", "lo2/events_enhanced",
                 "lo2/predictions", "lo2/sequences_enhanced"],
        "group": "explain", "partitions": "lo2_runs", "code_version": "explain-1",
        "checks": [], "automation": PER_RUN},
    "lo2/score_drift": {
        "deps": ["lo2/anomaly_model", "lo2/drain_templates", "lo2/predictions",
                 "lo2/sequences_enhanced"],
        "group": "explain", "partitions": "lo2_runs", "code_version": "drift-1",
        "checks": ["drift_below_warning_level"], "automation": PER_RUN},
}


def snapshot(definitions: dg.Definitions) -> dict:
    graph = definitions.resolve_asset_graph()
    out = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        out[key.to_user_string()] = {
            "deps": sorted(p.to_user_string() for p in node.parent_keys),
            "group": node.group_name,
            "partitions": getattr(node.partitions_def, "name", None),
            "code_version": node.code_version,
            "checks": sorted(c.name for c in node.check_keys),
            "automation": node.automation_condition.get_label()
            if node.automation_condition else None,
        }
    return out


def test_asset_graph_snapshot():
    assert snapshot(defs()) == GRAPH


def test_every_asset_is_described_and_owned():
    for spec in defs().resolve_all_asset_specs():
        assert spec.description and len(spec.description) > 40, spec.key
        assert spec.owners and spec.kinds, spec.key


def test_per_run_assets_batch_backfills_and_training_is_pooled():
    graph = defs().resolve_asset_graph()
    for key in graph.materializable_asset_keys:
        node = graph.get(key)
        if node.is_partitioned:  # every per-run asset: many runs per Dagster run
            assert node.backfill_policy == BACKFILL_POLICY, key
            assert node.backfill_policy.max_partitions_per_run == 25
    pools = {k.to_user_string(): graph.get(k).pools for k in graph.materializable_asset_keys}
    assert pools["lo2/anomaly_model"] == pools["lo2/drain_templates"] == {"lo2_training"}


def test_jobs_schedules_sensors_and_resources():
    d = defs()
    jobs = {j.name: j for j in d.resolve_all_job_defs()}
    assert {"lo2_ingest", "lo2_training", "lo2_rescore"} <= set(jobs)
    selected = {name: sorted(k.to_user_string() for k in jobs[name].asset_layer.selected_asset_keys)
                for name in ("lo2_ingest", "lo2_training", "lo2_rescore")}
    assert selected == {
        "lo2_ingest": ["lo2/events_enhanced", "lo2/explanations", "lo2/message_counts",
                       "lo2/predictions", "lo2/raw_events", "lo2/raw_sequences",
                       "lo2/score_drift", "lo2/sequences_enhanced"],
        "lo2_training": ["lo2/anomaly_model", "lo2/drain_templates", "lo2/model_report",
                         "lo2/training_set"],
        "lo2_rescore": ["lo2/explanations", "lo2/predictions", "lo2/score_drift"],
    }
    sensors = d.get_repository_def().sensor_defs
    assert sorted(s.name for s in sensors) == ["lo2_automation", "lo2_source_files"]
    assert [s.name for s in d.get_repository_def().schedule_defs] == ["lo2_catch_up"]
    assert set(d.resources) == {"lo2_root", "fp_allowlist", "warehouse", "io_manager",
                                "drain_store", "model_store"}


def test_project_dagster_yaml_configures_the_instance(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.delenv(settings.ENV_POSTGRES_URL, raising=False)
    assert settings.prepare_dagster_home() == home
    assert (home / "dagster.yaml").read_text() == (settings.REPO_ROOT / "dagster.yaml").read_text()
    with dg.DagsterInstance.get() as instance:
        assert instance.root_directory == str(home)
        assert not instance.telemetry_enabled
        assert not instance.nux_enabled
        assert type(instance.run_storage).__name__ == "SqliteRunStorage"
        assert instance.storage_directory() == str(home / "storage")  # SQLite under the home
        concurrency = instance.get_concurrency_config()
        assert concurrency.run_queue_config.max_concurrent_runs == 2  # what the daemon reads
        assert concurrency.pool_config.default_pool_limit == 1
    # An existing dagster.yaml (the user's edits) is kept.
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    settings.prepare_dagster_home()
    assert (home / "dagster.yaml").read_text() == "telemetry:\n  enabled: false\n"
    shutil.rmtree(home)


def test_postgres_is_asked_for_by_one_variable(tmp_path, monkeypatch):
    """$LO2_POSTGRES_URL gives a new home PostgreSQL storage (with the driver named); the
    server itself is exercised in test_postgres.py."""
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv(settings.ENV_POSTGRES_URL, "postgresql://u:p@db:5432/dagster")
    assert settings.postgres_url() == "postgresql+psycopg2://u:p@db:5432/dagster"
    home = settings.prepare_dagster_home()
    config = (home / "dagster.yaml").read_text()
    assert config.startswith((settings.REPO_ROOT / "dagster.yaml").read_text())
    assert config.endswith(settings.POSTGRES_STORAGE)
    assert os.environ[settings.ENV_POSTGRES_URL].startswith("postgresql+psycopg2://")
    # A home that keeps SQLite state is refused while the variable is set.
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with pytest.raises(settings.InstanceConfigError, match="keeps Dagster's state in SQLite"):
        settings.prepare_dagster_home()
