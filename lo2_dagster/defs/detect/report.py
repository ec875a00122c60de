"""The model report: what the model learned and where it errs, from its holdout evaluation."""

import time
from collections.abc import Iterator

import dagster as dg
import polars as pl
from upath import UPath

from lo2_dagster.defs.automation import on_new_model
from lo2_dagster.defs.keys import (
    ANOMALY_MODEL,
    DETECT_GROUP,
    DRAIN_TEMPLATES,
    EVENTS_ENHANCED,
    LEAK_CHECK,
    MODEL_REPORT,
    OWNERS,
    SEQUENCES_ENHANCED,
)
from lo2_dagster.defs.runs import ALL_RUNS
from lo2_dagster.lib.explain import example_lines, explain, sequence_columns
from lo2_dagster.lib.leaks import leak_warning
from lo2_dagster.lib.metrics import false_positives
from lo2_dagster.lib.model import BATCH_ROWS, ModelBundle
from lo2_dagster.lib.report import (
    curves_png,
    global_top_features,
    markdown_image,
    score_distributions_png,
    top_features_png,
)
from lo2_dagster.lib.templates import Templates
from lo2_dagster.meta import markdown_table, model_quality
from lo2_dagster.storage import Warehouse, iter_parquet, write_bytes, write_parquet

#: The report's folder under the warehouse's ``reports/``.
REPORT_FOLDER = "model_report"
PLOTS = {
    "curves": ("roc_pr_curves.png", "ROC and precision-recall curves"),
    "scores": ("score_distributions.png", "Score distributions"),
    "features": ("top_features.png", "Top features"),
}
FP_COLUMNS = ["seq_id", "run", "test_case", "service", "score", "threshold", "reason",
              "top_features", "rare_templates", "nearest_normal", "template_differences"]


@dg.asset(
    key=MODEL_REPORT,
    ins={"model": dg.AssetIn(ANOMALY_MODEL),
         "sequences": dg.AssetIn(SEQUENCES_ENHANCED, metadata=ALL_RUNS),
         "events": dg.AssetIn(EVENTS_ENHANCED, metadata=ALL_RUNS),
         "templates": dg.AssetIn(DRAIN_TEMPLATES)},
    automation_condition=on_new_model(),
    group_name=DETECT_GROUP,
    code_version="report-2",
    kinds={"matplotlib", "polars", "parquet"},
    owners=OWNERS,
    check_specs=[dg.AssetCheckSpec(
        LEAK_CHECK, asset=MODEL_REPORT, blocking=False,
        description="No signal outside the logs' content (duration, event count, start-up "
                    "lines, being the first test case of a run) separates the test cases' "
                    "labels by itself (ROC AUC below the audit's level, either direction). A "
                    "warning: the data leaks, as LO2 v1 does, so scores that use those signals "
                    "measure the layout, not anomalies.")],
    description=(
        "The model's report, from its holdout evaluation: global top features (mean "
        "|contribution| over holdout sequences), the false-positive list (holdout correct "
        "sequences above the threshold they were judged by and not allowlisted, with score, "
        "reasons and example "
        "lines: what a user needs to extend the FP allowlist), the recall tables, the model's "
        "ROC AUC beside trivial baselines on the same split, the leak audit (how well duration, "
        "event count, start-up lines or being first in the run alone separate the labels: a "
        "warning when one does), and PNG plots (ROC and PR curves, score distributions, top "
        "features) shown here and written to `<warehouse>/reports/model_report/` with "
        "`false_positives.parquet`, `top_features.parquet` and `model_report.md`."
    ),
)
def model_report(
    context: dg.AssetExecutionContext,
    model: ModelBundle,
    sequences: dict[str, UPath],
    events: dict[str, pl.LazyFrame],
    templates: Templates,
    warehouse: Warehouse,
) -> dg.MaterializeResult:
    started = time.perf_counter()
    holdout = model.holdout
    if holdout is None or model.reference is None:
        raise dg.Failure(description=(
            "lo2/anomaly_model was trained before the report existed: its bundle has no stored "
            "holdout evaluation. Materialize lo2/anomaly_model again."))
    missing = [run for run in model.split.holdout if run not in sequences or run not in events]
    if missing:
        raise dg.Failure(description=(
            f"The model's holdout runs {missing} have no lo2/sequences_enhanced or "
            "lo2/events_enhanced: materialize them (or retrain lo2/anomaly_model)."))
    labels = templates.texts
    columns = sequence_columns(model)
    audit = model.metrics.get("leak_audit", {})
    warning = leak_warning(audit)
    fps = false_positives(holdout)
    fp_ids = fps["seq_id"].to_list()
    fp_rows: list[pl.DataFrame] = []

    def holdout_batches() -> Iterator[pl.DataFrame]:
        """The holdout runs' sequences, read once: the false positives' rows are kept."""
        for run in model.split.holdout:
            for batch in iter_parquet(sequences[run], columns, BATCH_ROWS):
                fp_rows.append(batch.filter(pl.col("seq_id").is_in(fp_ids)))
                yield batch

    top = global_top_features(model, holdout_batches(), labels)
    fps = _explained(model, fps, pl.concat(fp_rows) if fp_rows else pl.DataFrame(), events,
                     labels)
    context.log.info(f"{len(fps)} false positives among {len(holdout)} holdout sequences; "
                     f"top feature: {top['label'].first() if len(top) else 'none'}")

    folder = warehouse.folder("reports") / REPORT_FOLDER
    pngs = {"curves": curves_png(holdout),
            "scores": score_distributions_png(holdout, model.threshold),
            "features": top_features_png(top)}
    for name, png in pngs.items():
        write_bytes(folder / PLOTS[name][0], png)
    write_parquet(folder / "false_positives.parquet", fps)
    write_parquet(folder / "top_features.parquet", top)
    fp_table = markdown_table(fps.select(
        "seq_id", "score", "threshold", "reason").head(50)) if len(fps) else dg.MetadataValue.md(
        "No holdout correct sequence scored above its threshold.")
    tables = {
        "global_top_features": markdown_table(top.select(
            "label", "mean_abs_contribution", "mean_contribution_anomalous",
            "mean_contribution_normal")),
        "false_positive_list": fp_table,
        "recall_by_test_case": markdown_table(pl.DataFrame(model.metrics["recall_by_test_case"])),
        "recall_by_service": markdown_table(pl.DataFrame(model.metrics["recall_by_service"])),
    }
    quality = model_quality(model.model, model.metrics)
    tables.update({k: quality[k] for k in ("model_vs_baselines", "leak_audit")})
    write_bytes(folder / "model_report.md", _report_markdown(model, tables).encode())
    seconds = time.perf_counter() - started
    if warning:
        context.log.warning(f"leak audit: {warning}")
    return dg.MaterializeResult(check_results=[dg.AssetCheckResult(
        check_name=LEAK_CHECK, passed=warning is None, severity=dg.AssetCheckSeverity.WARN,
        description=warning, metadata={"leaking": quality["leaking_signals"],
                                       "level": audit.get("level", 0.0)})], metadata={
        **{f"plot_{name}": dg.MetadataValue.md(markdown_image(png, PLOTS[name][1]))
           for name, png in pngs.items()},
        **tables,
        "false_positives": len(fps),
        "holdout_sequences": len(holdout),
        "holdout_runs": len(model.split.holdout),
        "model": model.model,
        "leaking_signals": quality["leaking_signals"],
        "model_sha256": model.sha256 or "",
        "threshold": model.threshold,
        "report_folder": dg.MetadataValue.path(str(folder)),
        "seconds": round(seconds, 2),
    })


def _explained(model: ModelBundle, fps: pl.DataFrame, rows: pl.DataFrame,
               events: dict[str, pl.LazyFrame], labels: dict[str, str]) -> pl.DataFrame:
    """The holdout false positives (``fps``, their sequence ``rows``), each explained like a
    predicted anomaly, with the threshold it was judged by."""
    parts = [explain(model, rows.filter(pl.col("run") == run),
                     example_lines(events[run], ids), labels)
             for run, ids in fps.group_by("run", maintain_order=True)
             .agg("seq_id").sort("run").iter_rows()]
    explained = pl.concat(parts) if parts else explain(model, rows.clear(), pl.DataFrame(),
                                                        labels)
    return (explained.join(fps.select("seq_id", "threshold"), on="seq_id", how="left")
            .sort(["score", "seq_id"], descending=[True, False]).select(FP_COLUMNS))


def _report_markdown(model: ModelBundle, tables: dict[str, dg.MarkdownMetadataValue]) -> str:
    """model_report.md: the same report as a file, with the plots beside it."""
    lines = [f"# Model report: {model.model}", "",
             f"sha256 `{model.sha256}`, threshold {model.threshold:.4g}, holdout runs: "
             + ", ".join(f"`{r}`" for r in model.split.holdout), ""]
    for file, title in PLOTS.values():
        lines += [f"![{title}]({file})", ""]
    for name, value in tables.items():
        lines += [f"## {name.replace('_', ' ').capitalize()}", "", value.md_str or "", ""]
    return "\n".join(lines)
