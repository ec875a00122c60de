"""Per run: why each predicted-anomalous sequence scored high, and how far the run drifted from
the runs the model was trained on."""

import time

import dagster as dg
import numpy as np
import polars as pl

from lo2_dagster import settings
from lo2_dagster.defs.keys import (
    ANOMALY_MODEL,
    DRAIN_TEMPLATES,
    DRIFT_CHECK,
    EVENTS_ENHANCED,
    EXPLAIN_GROUP,
    EXPLANATIONS,
    PREDICTIONS,
    SCORE_DRIFT,
    SEQUENCES_ENHANCED,
)
from lo2_dagster.defs.runs import RUNS, RunPart, materialize_runs, per_run_asset
from lo2_dagster.lib.drift import TEMPLATE_DRIFT_SCHEMA, drift, template_events
from lo2_dagster.lib.explain import (
    EXPLANATIONS_SCHEMA,
    RARE_SHARE,
    TEMPLATES,
    example_lines,
    explain,
    run_summary,
    sequence_columns,
)
from lo2_dagster.lib.metrics import format_figure
from lo2_dagster.lib.model import ModelBundle
from lo2_dagster.lib.templates import Templates
from lo2_dagster.meta import column_schema, markdown_table
from lo2_dagster.storage import Warehouse

EXPLANATION_COLUMNS = {
    "rank": "The sequence's rank in the run (1 = most anomalous), as in lo2/predictions.",
    "reason": "The top reason in one line: the feature that pushed the score up most (a "
              "template never or rarely seen in normal training, with an example line).",
    "value": "What the contributions add up to (value_kind): base + sum of all contributions.",
    "base": "The model's value with no feature (intercept, prior or root value; 0 for "
            "rare_tokens).",
    "value_kind": "What value is for this model (score, log-odds, minus the isolation depth).",
    "top_features": "The features with the largest positive contributions, their text and an "
                    "example line of the sequence for templates.",
    "rare_templates": f"Templates of the sequence that at most {RARE_SHARE:.0%} of the same "
                      "service's normal training sequences contain (absent first), with an "
                      "example line.",
    "nearest_normal": "The correct training sequence of the same service with the most similar "
                      "template counts (cosine).",
    "nearest_similarity": "Cosine similarity of the template counts (1 = same mix).",
    "template_differences": "Templates whose counts differ most from the nearest normal "
                            "sequence (count - normal_count).",
}


def _reference(model: ModelBundle) -> None:
    if model.reference is None:
        raise dg.Failure(description=(
            "lo2/anomaly_model was trained before explanations and drift existed: its bundle "
            "has no reference of the training runs. Materialize lo2/anomaly_model again."))


@per_run_asset(
    key=EXPLANATIONS,
    ins={"predictions": dg.AssetIn(PREDICTIONS), "sequences": dg.AssetIn(SEQUENCES_ENHANCED),
         "events": dg.AssetIn(EVENTS_ENHANCED), "model": dg.AssetIn(ANOMALY_MODEL),
         "templates": dg.AssetIn(DRAIN_TEMPLATES)},
    group_name=EXPLAIN_GROUP,
    code_version="explain-1",
    kinds={"scikit-learn"},
    description=(
        "Why each predicted-anomalous sequence of a run scored high: the features that pushed "
        "its score up with their exact contributions (adding up to the model's value), its Drain "
        "templates that normal training sequences rarely or never show with an example line, "
        "and its nearest normal sequence (same service, cosine on template counts) with the "
        "template counts that differ. The metadata summarizes the run for people."
    ),
)
def explanations(
    context: dg.AssetExecutionContext,
    predictions: dict[str, pl.LazyFrame],
    sequences: dict[str, pl.LazyFrame],
    events: dict[str, pl.LazyFrame],
    model: ModelBundle,
    templates: Templates,
    warehouse: Warehouse,
):
    _reference(model)
    labels = templates.texts

    def one_run(run: str) -> RunPart:
        started = time.perf_counter()
        scored = predictions[run].select("seq_id", "test_case", "rank", "pred_ano").collect()
        flagged = scored.filter("pred_ano")
        ids = flagged["seq_id"].to_list()
        frame = (sequences[run].select(sequence_columns(model))
                 .filter(pl.col("seq_id").is_in(ids)).collect()
                 .join(flagged.select("seq_id", "rank"), on="seq_id"))
        out = explain(model, frame, example_lines(events[run], ids), labels)
        summary = run_summary(out, scored["test_case"].n_unique(), model.threshold)
        seconds = time.perf_counter() - started
        shown = summary.splitlines()
        context.log.info(f"{run}: explained {len(out)} sequences in {seconds:.2f} s\n"
                         + "\n".join(shown[:12])
                         + (f"\n... {len(shown) - 12} more test cases in the metadata"
                            if len(shown) > 12 else ""))
        cases = out.sort("rank").unique("test_case", keep="first", maintain_order=True)
        return RunPart(out, {
            "dagster/column_schema": column_schema(EXPLANATIONS_SCHEMA, EXPLANATION_COLUMNS),
            "summary": dg.MetadataValue.md(summary),
            "explained_sequences": len(out),
            "anomalous_test_cases": len(cases),
            "top_reasons": markdown_table(cases.select(
                "rank", "test_case", "service", "score", "reason").head(20)),
            "model": model.model,
            "model_sha256": model.sha256 or "",
            "value_kind": out["value_kind"].first() if len(out) else "",
            "seconds": round(seconds, 3),
        })

    yield from materialize_runs(context, warehouse, one_run)


class ScoreDriftConfig(dg.Config):
    warn_psi: float | None = None
    """Warn when a PSI exceeds this level (default: $LO2_DRIFT_WARN_PSI, else 0.25)."""


@per_run_asset(
    key=SCORE_DRIFT,
    ins={"predictions": dg.AssetIn(PREDICTIONS), "sequences": dg.AssetIn(SEQUENCES_ENHANCED),
         "model": dg.AssetIn(ANOMALY_MODEL), "templates": dg.AssetIn(DRAIN_TEMPLATES)},
    group_name=EXPLAIN_GROUP,
    code_version="drift-1",
    check_specs=[dg.AssetCheckSpec(
        DRIFT_CHECK, asset=SCORE_DRIFT, partitions_def=RUNS, blocking=False,
        description="Warns when the run's score or template-mix PSI against the model's "
                    "training runs exceeds the warning level (run config warn_psi, "
                    f"${settings.ENV_DRIFT_WARN_PSI}, default 0.25): time to look at the run "
                    "and perhaps retrain.")],
    description=(
        "How far a run drifted from the runs the model was trained on: population stability "
        "index (PSI) of its sequence scores (over the training scores' deciles) and of its Drain "
        "template mix (each template's share of the events). One row per template with both "
        "shares and its PSI term, the templates that moved most first. A warning check fires "
        "above the configured level."
    ),
)
def score_drift(
    context: dg.AssetExecutionContext,
    config: ScoreDriftConfig,
    predictions: dict[str, pl.LazyFrame],
    sequences: dict[str, pl.LazyFrame],
    model: ModelBundle,
    templates: Templates,
    warehouse: Warehouse,
):
    _reference(model)
    try:
        level = settings.drift_warn_psi(config.warn_psi)
    except ValueError as e:
        raise dg.Failure(description=str(e)) from e
    labels = templates.texts
    split = {**dict.fromkeys(model.split.training, "training"),
             **dict.fromkeys(model.split.holdout, "holdout")}

    def one_run(run: str) -> RunPart:
        scores = predictions[run].select("score").collect()["score"].to_numpy()
        result = drift(model.reference, scores,  # type: ignore[arg-type]
                       template_events(sequences[run].select(TEMPLATES)))
        drifted = result.exceeds(level)
        figures = (f"score PSI {format_figure(result.score_psi)}, template PSI "
                   f"{format_figure(result.template_psi)} (warning above {level})")
        context.log.log("WARNING" if drifted else "INFO",
                        f"{run}: {figures}" + (f": {' and '.join(drifted)} drifted" if drifted
                                               else ""))
        moved = result.templates.head(10).with_columns(
            pl.col("template_id").replace_strict(labels, default="").alias("template"))

        def check(path: object, rows: int | None) -> list[dg.AssetCheckResult]:
            return [dg.AssetCheckResult(
                check_name=DRIFT_CHECK, asset_key=SCORE_DRIFT, passed=not drifted,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={"score_psi": _number(result.score_psi),
                          "template_psi": _number(result.template_psi), "warn_psi": level},
                description=(f"{' and '.join(drifted).capitalize()} drifted from the training "
                             f"runs ({figures}): look at the templates that moved most "
                             "(lo2/score_drift) and consider retraining lo2/anomaly_model."
                             if drifted else None))]

        return RunPart(result.templates, {
            "dagster/column_schema": column_schema(TEMPLATE_DRIFT_SCHEMA),
            "score_psi": _number(result.score_psi),
            "template_psi": _number(result.template_psi),
            "warn_psi": level,
            "drifted": ", ".join(drifted) or "no",
            "split": split.get(run, "new"),
            "templates_moved_most": markdown_table(moved.select(
                "template_id", "template", "training_share", "run_share", "psi_term"), digits=4),
            "model_sha256": model.sha256 or "",
        }, checks=check)

    yield from materialize_runs(context, warehouse, one_run)


def _number(value: float | None) -> dg.MetadataValue:
    return dg.MetadataValue.float(float(value)) if value is not None and np.isfinite(value) \
        else dg.MetadataValue.null()
