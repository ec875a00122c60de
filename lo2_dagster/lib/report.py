"""The model report: global top features, the false-positive list and plots, from the model's
holdout evaluation (the judged holdout stored in the bundle). Plots are PNG bytes drawn with
matplotlib's object API on the Agg canvas (no display, no global pyplot state); matplotlib is
imported when a plot is drawn, not when the code location loads (it costs ~0.4 s)."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
from sklearn.metrics import precision_recall_curve, roc_curve

from lo2_dagster.lib.explain import contributions, feature_label
from lo2_dagster.lib.metrics import by_test_case

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Features in the global list and the bar plot.
TOP_FEATURES = 15
DPI = 100

TOP_FEATURES_SCHEMA: dict[str, pl.DataType] = {
    "feature": pl.String(), "label": pl.String(), "mean_abs_contribution": pl.Float64(),
    "mean_contribution_anomalous": pl.Float64(), "mean_contribution_normal": pl.Float64(),
}


def global_top_features(bundle: object, batches: Iterable[pl.DataFrame],
                        templates: Mapping[str, str], top: int = TOP_FEATURES) -> pl.DataFrame:
    """The features that weigh most over holdout sequences (batches with the model's columns
    and ``anomaly``): mean |contribution|, and the mean contribution over anomalous and over
    normal sequences. Accumulated batch by batch in vectors of the feature count."""
    names = bundle.vectorizer.feature_names  # type: ignore[attr-defined]
    width = len(names)
    absolute, anomalous, normal = np.zeros(width), np.zeros(width), np.zeros(width)
    rows = n_anomalous = n_normal = 0
    for batch in batches:
        matrix = bundle.vectorizer.transform(batch)  # type: ignore[attr-defined]
        values = contributions(bundle.estimator, matrix).values  # type: ignore[attr-defined]
        labels = batch["anomaly"].to_numpy().astype(bool)
        absolute += np.asarray(abs(values).sum(axis=0)).ravel()
        anomalous += np.asarray(values[labels].sum(axis=0)).ravel()
        normal += np.asarray(values[~labels].sum(axis=0)).ravel()
        rows += len(batch)
        n_anomalous += int(labels.sum())
        n_normal += int((~labels).sum())
    if not rows:
        return pl.DataFrame(schema=TOP_FEATURES_SCHEMA)
    order = np.lexsort((np.arange(width), -absolute))[:top]
    order = order[absolute[order] > 0]
    return pl.DataFrame({
        "feature": [names[i] for i in order],
        "label": [feature_label(names[i], templates) for i in order],
        "mean_abs_contribution": absolute[order] / rows,
        "mean_contribution_anomalous": anomalous[order] / max(n_anomalous, 1),
        "mean_contribution_normal": normal[order] / max(n_normal, 1),
    }, schema=TOP_FEATURES_SCHEMA)


def _figure(width: float, height: float) -> Figure:
    """A matplotlib figure on an Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    return figure


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def _levels(holdout: pl.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    cases = by_test_case(holdout)
    return {level: (frame["anomaly"].to_numpy().astype(bool),
                    frame["score"].to_numpy().astype(np.float64))
            for level, frame in (("test case", cases), ("sequence", holdout))}


def curves_png(holdout: pl.DataFrame) -> bytes:
    """ROC and precision-recall curves of the holdout, at test-case and sequence level."""
    figure = _figure(10, 4.2)
    roc, pr = figure.subplots(1, 2)
    for level, (labels, scores) in _levels(holdout).items():
        if 0 < labels.sum() < len(labels):
            fpr, tpr, _ = roc_curve(labels, scores)
            roc.plot(fpr, tpr, label=level)
            precision, recall, _ = precision_recall_curve(labels, scores)
            pr.plot(recall, precision, label=level, drawstyle="steps-post")
    roc.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    roc.set(title="ROC (holdout runs)", xlabel="false positive rate",
            ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.02))
    pr.set(title="Precision-recall (holdout runs)", xlabel="recall", ylabel="precision",
           xlim=(0, 1), ylim=(0, 1.02))
    for axes in (roc, pr):
        axes.legend(loc="lower right")
        axes.grid(alpha=0.3)
    figure.tight_layout()
    return _png(figure)


def score_distributions_png(holdout: pl.DataFrame, threshold: float) -> bytes:
    """Histograms of the holdout test cases' scores (max over services): ``correct`` vs error
    test cases, with the model's threshold."""
    cases = by_test_case(holdout)
    scores = cases["score"].to_numpy().astype(np.float64)
    figure = _figure(7, 4.2)
    axes = figure.subplots()
    edges = np.histogram_bin_edges(np.append(scores, threshold), bins=30)
    for name, mask in (("correct test cases", cases["normal"].to_numpy()),
                       ("error test cases", ~cases["normal"].to_numpy())):
        axes.hist(scores[mask], bins=edges, alpha=0.6, label=f"{name} ({int(mask.sum())})")
    axes.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.4g}")
    axes.set(title="Test-case scores (holdout runs)", xlabel="score (max over services)",
             ylabel="test cases")
    axes.legend()
    axes.grid(alpha=0.3)
    figure.tight_layout()
    return _png(figure)


def top_features_png(top: pl.DataFrame) -> bytes:
    """Horizontal bars of the global top features (mean |contribution|)."""
    figure = _figure(9, 0.35 * max(len(top), 3) + 1.2)
    axes = figure.subplots()
    labels = [label if len(label) <= 60 else label[:57] + "..." for label in top["label"]]
    axes.barh(range(len(top)), top["mean_abs_contribution"].to_list(), color="tab:red")
    axes.set_yticks(range(len(top)), labels, fontsize=8)
    axes.invert_yaxis()
    axes.set(title="Top features (mean |contribution| over holdout sequences)",
             xlabel="mean |contribution|")
    axes.grid(alpha=0.3, axis="x")
    figure.tight_layout()
    return _png(figure)


def markdown_image(png: bytes, title: str) -> str:
    """A PNG embedded in markdown (a data URL): the Dagster UI shows it on the asset page."""
    return f"![{title}](data:image/png;base64,{base64.b64encode(png).decode()})"
