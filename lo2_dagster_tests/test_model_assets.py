"""The model and the predictions through Dagster: real runs, a real instance, real files."""

import json

import dagster as dg
import numpy as np
import polars as pl
import pytest
import yaml

from lo2_dagster.definitions import defs
from lo2_dagster.defs.keys import ANOMALY_MODEL, MODEL_GATE_CHECK, PREDICTIONS
from lo2_dagster.lib import model as lib
from lo2_dagster.lib import registry
from lo2_dagster.lib.registry import ModelKind, RareTokenDetector
from lo2_dagster.lib.vectorize import SequenceVectorizer
from lo2_dagster.pipeline import failure_summary


@pytest.fixture
def trained(built_copy):
    """A copy of three generated runs through the whole graph, on an on-disk instance."""
    base, runs, instance = built_copy
    return {"instance": instance, "runs": runs, "warehouse": base / "warehouse",
            "folder": base / "warehouse" / "lo2" / "anomaly_model"}


def execute(instance, keys, partition=None, config=None) -> dg.ExecuteInProcessResult:
    job = defs().resolve_implicit_global_asset_job_def()
    return job.execute_in_process(instance=instance, asset_selection=keys,
                                  partition_key=partition, run_config=config,
                                  raise_on_error=False)


def latest(instance, key, partition=None) -> dg.AssetMaterialization:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition] if partition else None),
        limit=1).records
    return records[0].asset_materialization


def test_model_files_metadata_gate_and_predictions(trained):
    instance, folder = trained["instance"], trained["folder"]
    materialization = latest(instance, ANOMALY_MODEL)
    meta = materialization.metadata
    record = yaml.safe_load((folder / lib.RECORD_FILE).read_text())
    metrics = json.loads((folder / lib.METRICS_FILE).read_text())
    # One sha256 in model.yml, in the metadata and as the data version.
    assert record["sha256"] == meta["sha256"].value == materialization.tags[
        "dagster/data_version"]
    assert record["model"] == lib.DEFAULT_MODEL
    training, holdout = record["training_runs"], record["holdout_runs"]
    assert sorted(training + holdout) == trained["runs"] and len(holdout) == 1
    assert metrics["training_runs"] == training and metrics["holdout_runs"] == holdout
    assert metrics["test_case"]["rows"] == 54 and metrics["sequence"]["rows"] == 54 * 7
    assert isinstance(meta["test_case/roc_auc"], dg.FloatMetadataValue)
    assert meta["test_case/roc_auc"].value == metrics["test_case"]["roc_auc"]
    assert "| test_case |" in meta["recall_by_test_case"].value
    gate = [c for c in instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(ANOMALY_MODEL, MODEL_GATE_CHECK), limit=1)]
    assert gate and gate[0].status.value == "SUCCEEDED"

    for run in trained["runs"]:
        frame = pl.read_parquet(trained["warehouse"] / "lo2" / "predictions" / f"{run}.parquet")
        assert frame.schema == pl.Schema(lib.PREDICTIONS_SCHEMA) and len(frame) == 54 * 7
        assert set(frame["split"]) == {"holdout" if run in holdout else "training"}
        assert (frame["threshold"] == record["threshold"]).all()
        pmeta = latest(instance, PREDICTIONS, run).metadata
        assert pmeta["model_sha256"].value == record["sha256"]
        assert pmeta["predicted_anomalous_sequences"].value == int(frame["pred_ano"].sum())


def test_predictions_use_the_persisted_model_and_never_refit(trained, monkeypatch):
    run = trained["runs"][0]
    path = trained["warehouse"] / "lo2" / "predictions" / f"{run}.parquet"
    before = pl.read_parquet(path)

    def refuse(*args, **kwargs):
        raise AssertionError("predictions must not fit anything")

    # Every fit of the model library: the vectorizer's, the default model's and the one
    # function all registry models are fitted through.
    for target, name in ((SequenceVectorizer, "fit"), (RareTokenDetector, "fit"),
                         (registry, "fit"), (lib, "fit")):
        monkeypatch.setattr(target, name, refuse)
    record = (trained["folder"] / lib.RECORD_FILE).read_bytes()
    trainings = len(trained["instance"].fetch_materializations(ANOMALY_MODEL, limit=10).records)
    path.unlink()
    result = execute(trained["instance"], [PREDICTIONS], run)
    assert result.success, failure_summary(result)
    assert pl.read_parquet(path).equals(before)
    assert (trained["folder"] / lib.RECORD_FILE).read_bytes() == record
    assert len(trained["instance"].fetch_materializations(ANOMALY_MODEL,
                                                          limit=10).records) == trainings


def test_the_quality_gate_blocks_a_broken_model(trained, monkeypatch):
    instance, run = trained["instance"], trained["runs"][0]
    good_sha = latest(instance, ANOMALY_MODEL).metadata["sha256"].value
    normal = ModelKind.scores
    # A broken model: it learned nothing, every sequence scores the same.
    monkeypatch.setattr(ModelKind, "scores", lambda self, est, x: np.zeros(x.shape[0]))
    result = execute(instance, [ANOMALY_MODEL, PREDICTIONS], run)
    assert not result.success
    checks = result.get_asset_check_evaluations()
    assert [(c.check_name, c.passed) for c in checks] == [(MODEL_GATE_CHECK, False)]
    # In the same run, predictions did not run at all.
    assert not [e for e in result.get_asset_materialization_events()
                if e.asset_key == PREDICTIONS]
    broken = latest(instance, ANOMALY_MODEL)
    assert broken.metadata["sha256"].value != good_sha
    assert broken.metadata["test_case/roc_auc"].value == 0.5
    monkeypatch.setattr(ModelKind, "scores", normal)
    # Launched on its own, predictions refuse the model that failed its gate.
    alone = execute(instance, [PREDICTIONS], run)
    assert not alone.success
    assert "failed its quality gate" in failure_summary(alone)
    # ... unless told to, deliberately.
    forced = execute(instance, [PREDICTIONS], run,
                     {"ops": {"lo2__predictions": {"config": {"allow_failed_gate": True}}}})
    assert forced.success, failure_summary(forced)


def test_a_model_file_changed_after_training_is_refused(trained):
    """Even with model.yml rewritten to match: Dagster's record of the materialization says
    which file was trained."""
    instance, folder, run = trained["instance"], trained["folder"], trained["runs"][0]
    bundle = lib.load_bundle(folder)
    bundle.threshold = -1.0  # e.g. someone "tunes" the pickle by hand
    sha = lib.save_bundle(bundle, folder)  # writes model.joblib and a matching model.yml
    result = execute(instance, [PREDICTIONS], run)
    assert not result.success
    message = failure_summary(result)
    assert f"has sha256 {sha}" in message and "Dagster's record says" in message
