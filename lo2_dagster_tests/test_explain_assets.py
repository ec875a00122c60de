"""Explanations, the model report and drift through Dagster: a real generated warehouse, a real
on-disk instance, real files and check results."""

import base64
import io
import shutil
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest
from matplotlib.image import imread

from lo2_dagster.definitions import defs
from lo2_dagster.defs.detect.report import PLOTS, REPORT_FOLDER
from lo2_dagster.defs.keys import (
    ANOMALY_MODEL,
    DRIFT_CHECK,
    EXPLANATIONS,
    MODEL_REPORT,
    SCORE_DRIFT,
)
from lo2_dagster.defs.runs import RUNS
from lo2_dagster.lib import explain as ex
from lo2_dagster.lib.metrics import false_positives
from lo2_dagster.lib.model import load_bundle
from lo2_dagster.pipeline import materialize_all
from lo2_dagster.synth import SynthConfig, generate
from lo2_dagster_tests.test_explain_lib import PNG, noise


@pytest.fixture
def world(built_copy):
    return built_copy


def latest(instance, key, partition=None) -> dg.AssetMaterialization:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition] if partition else None),
        limit=1).records
    return records[0].asset_materialization


def execute(instance, keys, partition=None, config=None) -> dg.ExecuteInProcessResult:
    run_config = {"ops": {"lo2__" + keys[0].path[-1]: {"config": config}}} if config else None
    job = defs().resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(instance=instance, asset_selection=keys,
                                    partition_key=partition, run_config=run_config)
    assert result.success
    return result


def test_every_run_s_predicted_anomalies_are_explained(world):
    base, runs, instance = world
    lo2 = base / "warehouse" / "lo2"
    bundle = load_bundle(lo2 / "anomaly_model")
    for run in runs:
        predictions = pl.read_parquet(lo2 / "predictions" / f"{run}.parquet")
        out = pl.read_parquet(lo2 / "explanations" / f"{run}.parquet")
        flagged = predictions.filter("pred_ano").sort("rank")
        assert len(flagged) > 0
        assert out["seq_id"].to_list() == flagged["seq_id"].to_list()  # most anomalous first
        np.testing.assert_allclose(out["score"], flagged["score"])
        # Exact: the contributions add up to the model's value for each sequence.
        sequences = pl.read_parquet(lo2 / "sequences_enhanced" / f"{run}.parquet")
        rows = sequences.join(out.select("seq_id"), on="seq_id", maintain_order="right")
        value = ex.model_value(bundle.estimator, bundle.vectorizer.transform(rows))
        np.testing.assert_allclose(out["value"], value, rtol=1e-9)
        # Each nearest normal is a correct training sequence of the same service.
        normals = dict(bundle.reference.normal_meta.select("seq_id", "service").iter_rows())
        # (None only when no normal sequence of the service shares a template with it.)
        assert out["nearest_normal"].null_count() < len(out) / 2
        for seq_id, service, nearest in out.drop_nulls("nearest_normal").select(
                "seq_id", "service", "nearest_normal").iter_rows():
            assert normals[nearest] == service and "__correct__" in nearest, seq_id
            assert nearest.split("__")[0] in bundle.split.training
        features = out.select(pl.col("top_features").explode().struct.field("label"))["label"]
        assert not noise(features, lo2, [run])
        assert out["reason"].str.len_chars().min() > 10

        metadata = latest(instance, EXPLANATIONS, run).metadata
        summary = metadata["summary"].value
        cases = flagged["test_case"].unique().to_list()
        assert summary.startswith(f"**{len(cases)} of 54 test cases look anomalous**")
        assert all(f"`{case}`" in summary for case in cases)
        assert metadata["explained_sequences"].value == len(out)


def test_the_model_report_lists_the_holdout_false_positives_and_shows_its_plots(world):
    base, _, instance = world
    # A lower threshold percentile than the default gives false positives to list.
    execute(instance, [ANOMALY_MODEL], config={"threshold_percentile": 80.0})
    execute(instance, [MODEL_REPORT])
    bundle = load_bundle(base / "warehouse" / "lo2" / "anomaly_model")
    expected = false_positives(bundle.holdout)
    assert len(expected) == bundle.metrics["sequence"]["confusion_matrix"]["fp"] > 0

    folder = base / "warehouse" / "reports" / REPORT_FOLDER
    listed = pl.read_parquet(folder / "false_positives.parquet")
    assert listed["seq_id"].to_list() == expected["seq_id"].to_list()
    np.testing.assert_allclose(listed["threshold"], expected["threshold"])
    assert (listed["score"] > listed["threshold"]).all()
    assert listed["test_case"].eq("correct").all()
    examples = listed.select(pl.col("top_features").explode().struct.field("example"))
    assert examples["example"].str.len_chars().max() > 0  # the lines that drove them

    metadata = latest(instance, MODEL_REPORT).metadata
    assert metadata["false_positives"].value == len(expected)
    assert metadata["model_sha256"].value == bundle.sha256
    for name, (file, title) in PLOTS.items():
        png = (folder / file).read_bytes()
        assert png.startswith(PNG) and imread(io.BytesIO(png), format="png").shape[0] > 200
        markdown = metadata[f"plot_{name}"].value
        assert markdown == f"![{title}](data:image/png;base64,{base64.b64encode(png).decode()})"
    assert "| label |" in metadata["global_top_features"].value
    assert "| test_case |" in metadata["recall_by_test_case"].value
    assert (folder / "model_report.md").read_text().count("](") >= len(PLOTS)


def _add_run(base: Path, instance, seed: int, epoch: int, mix_shift: float = 0.0) -> str:
    generate(base / f"new-{seed}", SynthConfig(runs=1, seed=seed, token_lines=5,
                                               start_epoch=epoch, mix_shift=mix_shift))
    run = f"light-oauth2-data-{epoch}"
    shutil.copytree(base / f"new-{seed}" / "logs" / run, base / "lo2" / "logs" / run)
    instance.add_dynamic_partitions(RUNS.name, [run])
    return run


def test_the_drift_check_warns_on_a_shifted_template_mix_not_on_an_ordinary_run(world):
    base, _, instance = world
    ordinary = _add_run(base, instance, seed=21, epoch=1900000000)
    shifted = _add_run(base, instance, seed=22, epoch=1900100000, mix_shift=0.6)
    # New runs arrive; the templates and model stay (until the retrain cron's tick).
    outcomes = materialize_all(defs(), instance, [ordinary, shifted], report=lambda _: None)
    assert all(o.success for o in outcomes), [o.error for o in outcomes if not o.success]

    def check(run: str, config=None) -> dg.AssetCheckEvaluation:
        result = execute(instance, [SCORE_DRIFT], run, config)
        [evaluation] = result.get_asset_check_evaluations()
        assert evaluation.check_name == DRIFT_CHECK
        return evaluation

    quiet = check(ordinary)
    assert quiet.passed
    assert quiet.metadata["template_psi"].value < 0.1
    warned = check(shifted)
    assert not warned.passed and warned.severity == dg.AssetCheckSeverity.WARN
    assert warned.metadata["template_psi"].value > warned.metadata["warn_psi"].value == 0.25
    assert "drifted from the training runs" in warned.description
    # The level is configurable: a loose one lets the shifted run pass.
    assert check(shifted, {"warn_psi": 50.0}).passed
    moved = pl.read_parquet(base / "warehouse" / "lo2" / "score_drift" / f"{shifted}.parquet")
    assert moved["psi_term"].is_sorted(descending=True)
    assert moved["psi_term"].sum() == pytest.approx(warned.metadata["template_psi"].value)
