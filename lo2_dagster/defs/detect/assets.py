"""Predictions per run: the persisted model applied to the run's enhanced sequences."""

import dagster as dg
from upath import UPath

from lo2_dagster.defs.keys import ANOMALY_MODEL, DETECT_GROUP, PREDICTIONS, SEQUENCES_ENHANCED
from lo2_dagster.defs.lineage import templates_used
from lo2_dagster.defs.runs import RunPart, materialize_runs, per_run_asset
from lo2_dagster.lib.model import (
    BATCH_ROWS,
    PREDICTIONS_SCHEMA,
    ModelBundle,
    predict,
    top_test_cases,
)
from lo2_dagster.meta import column_schema, table
from lo2_dagster.storage import Warehouse, iter_parquet

PREDICTION_COLUMNS = {
    "score": "Anomaly score of the sequence (higher = more anomalous).",
    "threshold": "The model's threshold (calibrated on holdout correct sequences).",
    "pred_ano": "pred_ano_original and not is_fp_allowlisted.",
    "rank": "1 = the run's most anomalous sequence.",
    "anomaly": "Label after the FP allowlist.",
    "anomaly_original": "Folder label (test_case != 'correct').",
    "pred_ano_original": "score > threshold, before the FP allowlist.",
    "test_case_score": "Max score over the test case's sequences (services).",
    "test_case_pred_ano": "Any sequence of the test case predicted anomalous.",
    "test_case_anomaly": "Any sequence of the test case labelled anomalous.",
    "test_case_rank": "1 = the run's most anomalous test case.",
    "split": "training / holdout: the run trained or evaluated the model (scores of training "
             "runs are in-sample); new: the model never saw it.",
}


class PredictionsConfig(dg.Config):
    allow_failed_gate: bool = False
    """Score with a model that failed its quality gate (deliberately, e.g. to inspect it)."""


@per_run_asset(
    key=PREDICTIONS,
    ins={"sequences": dg.AssetIn(SEQUENCES_ENHANCED), "model": dg.AssetIn(ANOMALY_MODEL)},
    group_name=DETECT_GROUP,
    code_version="predict-1",
    kinds={"scikit-learn"},
    description=(
        "One run's sequences scored by the persisted lo2/anomaly_model (never refitted): score, "
        "threshold, prediction before and after the FP allowlist, rank in the run, labels, and "
        "the test-case roll-up (max score over the test case's services)."
    ),
)
def predictions(
    context: dg.AssetExecutionContext,
    config: PredictionsConfig,
    sequences: dict[str, UPath],
    model: ModelBundle,
    warehouse: Warehouse,
):
    def one_run(run: str) -> RunPart:
        _usable(context, model, run, config.allow_failed_gate)
        split = ("training" if run in model.split.training
                 else "holdout" if run in model.split.holdout else "new")
        frame = predict(model, iter_parquet(sequences[run], model.columns, BATCH_ROWS), split)
        flagged_cases = frame.filter("test_case_pred_ano")["test_case"].n_unique()
        context.log.info(f"{run} ({split}): {int(frame['pred_ano'].sum())} of {len(frame)} "
                         f"sequences and {flagged_cases} test cases above the threshold "
                         f"{model.threshold:.4g}")
        return RunPart(frame, {
            "dagster/column_schema": column_schema(PREDICTIONS_SCHEMA, PREDICTION_COLUMNS),
            "split": split,
            "model": model.model,
            "model_sha256": model.sha256 or "",
            "threshold": model.threshold,
            "predicted_anomalous_sequences": int(frame["pred_ano"].sum()),
            "suppressed_by_allowlist": int((frame["pred_ano_original"]
                                            & ~frame["pred_ano"]).sum()),
            "predicted_anomalous_test_cases": flagged_cases,
            "test_cases": frame["test_case"].n_unique(),
            "top_test_cases": table(top_test_cases(frame, 10)),
        })

    yield from materialize_runs(context, warehouse, one_run)


def _usable(context: dg.AssetExecutionContext, model: ModelBundle, run: str,
            allow_failed_gate: bool) -> None:
    """Refuse a model that failed its quality gate, or whose Drain ids are not the run's."""
    gate = model.gate
    if not gate["passed"] and not allow_failed_gate:
        raise dg.Failure(description=(
            f"lo2/anomaly_model failed its quality gate ({gate['metric']} {gate['value']} is "
            f"not above {gate['floor']}): no predictions are made with it (those already written "
            "stay as they are). Retrain with another model, features or data, or set "
            "allow_failed_gate to use it deliberately."))
    if "drain" not in model.vectorizer.spec.features or model.templates_digest is None:
        return
    if templates_used(context, SEQUENCES_ENHANCED, run) not in (model.templates_digest, None):
        raise dg.Failure(description=(
            f"lo2/sequences_enhanced[{run}] was built with other Drain templates than "
            "lo2/anomaly_model was trained with (template ids differ). Re-materialize the run's "
            "enhanced tables with the current templates and retrain lo2/anomaly_model."))
