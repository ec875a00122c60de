"""Honest evaluation: a split by run, and metrics on holdout runs only, at three levels."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass

import numpy as np
import polars as pl
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

#: Why there are no event-level figures (metrics.json says so under "event").
NO_EVENT_LEVEL = ("every registry model scores sequences (run x test case x service), not "
                  "single events")


@dataclass(frozen=True)
class Split:
    training: tuple[str, ...]
    holdout: tuple[str, ...]


def trainable_runs(normal_sequences: Mapping[str, int], gone: Collection[str] = ()
                   ) -> tuple[list[str], dict[str, str]]:
    """The runs a model may learn from and be calibrated on, and why the others are left out: a
    run whose folder is gone (``gone``), and a run without ``correct`` sequences (its files were
    empty, or it lacks the test case), which could neither teach normal nor set a threshold.
    ``normal_sequences``: run -> its number of ``correct`` sequences."""
    left_out: dict[str, str] = {}
    for run, count in sorted(normal_sequences.items()):
        if run in gone:
            left_out[run] = ("its run folder is gone; forget the partition with "
                             f"`lo2-dagster forget {run}` (or delete it in the UI: Assets > "
                             "lo2/raw_events > Partitions)")
        elif count == 0:
            left_out[run] = ("it has no correct sequences (empty files, or no correct test "
                             "case): nothing to learn normal from or calibrate on")
    return [run for run in sorted(normal_sequences) if run not in left_out], left_out


def split_runs(runs: list[str], holdout_fraction: float, seed: int) -> Split:
    """Runs, not rows: a run is entirely on one side. ``ceil(fraction x runs)`` holdout runs
    (at least one, and at least one left to train), drawn with ``seed``; sorted."""
    runs = sorted(set(runs))
    if not 0 < holdout_fraction < 1:
        raise ValueError(f"holdout_fraction must be between 0 and 1, got {holdout_fraction}")
    if len(runs) < 2:
        raise ValueError(f"an honest evaluation needs at least 2 runs (one to train, one to "
                         f"hold out); there are {len(runs)}: ingest more runs")
    count = min(max(1, math.ceil(holdout_fraction * len(runs))), len(runs) - 1)
    chosen = set(np.random.default_rng(seed).choice(len(runs), size=count, replace=False))
    return Split(training=tuple(r for i, r in enumerate(runs) if i not in chosen),
                 holdout=tuple(r for i, r in enumerate(runs) if i in chosen))


def by_test_case(sequences: pl.DataFrame) -> pl.DataFrame:
    """Roll sequences up to test cases (run x test case): the max score over its services; the
    label is whether any of its sequences is anomalous (the prediction likewise, if given)."""
    predicted = [pl.col("pred").any()] if "pred" in sequences.columns else []
    return (sequences.group_by("run", "test_case", maintain_order=True)
            .agg(pl.col("score").max(), pl.col("anomaly").any(), pl.col("normal").all(),
                 *predicted)
            .sort("run", "test_case"))


def calibrate(holdout: pl.DataFrame, percentile: float) -> tuple[float, np.ndarray, str]:
    """The threshold: ``percentile`` of the holdout ``correct`` sequences' scores. And, for the
    evaluation, a threshold per holdout row that its own run did not set: each holdout run is
    judged by the threshold of the other holdout runs' ``correct`` scores (leave one run out),
    so the FP rate, precision and F1 are not in-sample. With one holdout run there is no other:
    its own threshold is used, and the returned label says so."""
    normal = holdout.filter("normal")
    if not len(normal):
        raise ValueError("the holdout runs have no correct sequences to calibrate the "
                         "threshold on: check the runs' test-case folders")
    threshold = float(np.percentile(normal["score"].to_numpy(), percentile))
    per_run, in_sample = {}, False
    for run in holdout["run"].unique().sort():
        others = normal.filter(pl.col("run") != run)["score"].to_numpy()
        in_sample |= not len(others)
        per_run[run] = float(np.percentile(others, percentile)) if len(others) else threshold
    calibration = ("in-sample (a single holdout run, or only one with correct sequences)"
                   if in_sample else "leave-one-holdout-run-out")
    rows = holdout["run"].replace_strict(per_run, return_dtype=pl.Float64).to_numpy()
    return threshold, rows, calibration


def format_figure(value: object, digits: int = 3, missing: str = "undefined") -> str:
    """A figure for people: rounded, or ``missing`` (e.g. ROC AUC of a one-class holdout)."""
    if isinstance(value, float | int) and not isinstance(value, bool):
        return f"{value:.{digits}f}"
    return missing


def psi(expected: np.ndarray, actual: np.ndarray, bins: int = 10) -> float | None:
    """Population stability index of ``actual`` against ``expected`` over ``expected``'s
    quantile bins (0.1 = some shift, 0.25 = a large one)."""
    if len(expected) == 0 or len(actual) == 0:
        return None
    edges = np.unique(np.quantile(expected, np.linspace(0, 1, bins + 1)))
    if len(edges) < 2:  # constant scores: one bin
        return 0.0 if np.all(actual == edges[0]) else None
    inner = edges[1:-1]
    e = np.bincount(np.searchsorted(inner, expected, side="right"), minlength=len(edges) - 1)
    a = np.bincount(np.searchsorted(inner, actual, side="right"), minlength=len(edges) - 1)
    return float(psi_terms(e, a).sum())


#: The share a bin (or category) gets in PSI when one side has none of it.
PSI_EPSILON = 1e-6


def psi_terms(expected: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """Each bin's PSI term ``(a - e) * ln(a / e)`` from the two sides' counts per bin; a share
    of 0 counts as :data:`PSI_EPSILON`, so a bin one side lacks weighs a bounded amount."""
    e_share = np.clip(expected / expected.sum(), PSI_EPSILON, None)
    a_share = np.clip(actual / actual.sum(), PSI_EPSILON, None)
    return (a_share - e_share) * np.log(a_share / e_share)


def level_metrics(holdout: pl.DataFrame, training: pl.DataFrame, k: int,
                  alpha: float) -> dict[str, object]:
    """Metrics of one level on holdout rows (``anomaly``, ``normal``, ``score``, ``pred``);
    ``training`` rows only give the reference score distribution (PSI, the alpha threshold)."""
    labels = holdout["anomaly"].to_numpy().astype(bool)
    scores = holdout["score"].to_numpy().astype(np.float64)
    predicted = holdout["pred"].to_numpy().astype(bool)
    both = 0 < labels.sum() < len(labels)
    tn, fp, fn, tp = (int(v) for v in confusion_matrix(labels, predicted,
                                                       labels=[False, True]).ravel())
    top = np.argsort(-scores, kind="stable")[: min(k, len(scores))]
    train_normal = training.filter("normal")["score"].to_numpy()
    alpha_threshold = float(np.quantile(train_normal, 1 - alpha)) if len(train_normal) else None
    holdout_normal = scores[holdout["normal"].to_numpy().astype(bool)]
    return {
        "rows": len(labels),
        "anomalous": int(labels.sum()),
        "accuracy": float(accuracy_score(labels, predicted)),
        "precision": float(precision_score(labels, predicted, zero_division=0)),
        "recall": float(recall_score(labels, predicted, zero_division=0)),
        "f1": float(f1_score(labels, predicted, zero_division=0)),
        "roc_auc": float(roc_auc_score(labels, scores)) if both else None,
        "pr_auc": float(average_precision_score(labels, scores)) if labels.any() else None,
        "precision_at_k": float(labels[top].mean()) if len(top) else None,
        "k": len(top),
        "fp_rate": fp / (fp + tn) if fp + tn else None,
        # The threshold a user would set from training normals alone at false-alarm rate
        # alpha, and the share of holdout normals it flags. Training scores are in-sample, so
        # this measures how far holdout normals drift from what the model fitted.
        "alpha": alpha,
        "alpha_threshold": alpha_threshold,
        "fp_rate_at_alpha": (float(np.mean(holdout_normal > alpha_threshold))
                             if alpha_threshold is not None and len(holdout_normal) else None),
        "psi_train_vs_holdout": psi(training["score"].to_numpy(), scores),
        "confusion_matrix": {"tn": tn, "fp": fp, "fn": fn, "tp": tp},
    }


def recall_tables(holdout: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """Holdout recall per test case (over runs, test cases rolled up) and per service (over
    sequences), with the false positives each."""
    def table(frame: pl.DataFrame, by: str, unit: str) -> pl.DataFrame:
        flagged = pl.col("pred")
        return (frame.group_by(by).agg(
            pl.len().alias(unit),
            pl.col("anomaly").sum().alias("anomalous"),
            (flagged & pl.col("anomaly")).sum().alias("detected"),
            (flagged & ~pl.col("anomaly")).sum().alias("false_positives"),
        ).with_columns(
            pl.when(pl.col("anomalous") > 0).then(pl.col("detected") / pl.col("anomalous"))
            .alias("recall"),
        ).sort(by))
    return {"test_case": table(by_test_case(holdout), "test_case", "runs"),
            "service": table(holdout, "service", "sequences")}


def judged(holdout: pl.DataFrame, thresholds: np.ndarray) -> pl.DataFrame:
    """Holdout sequences with the ``threshold`` each is judged by and ``pred``: above it and
    not allowlisted, as in ``lo2/predictions``."""
    return holdout.with_columns(pl.Series("threshold", thresholds, dtype=pl.Float64)).with_columns(
        ((pl.col("score") > pl.col("threshold")) & ~pl.col("is_fp_allowlisted")).alias("pred"))


def false_positives(holdout: pl.DataFrame) -> pl.DataFrame:
    """The false positives of a judged holdout (:func:`judged`): predicted anomalous, labelled
    normal (``correct`` sequences; allowlisted ones are never predicted), most anomalous first."""
    return (holdout.filter(pl.col("pred") & ~pl.col("anomaly"))
            .sort(["score", "seq_id"], descending=[True, False]))


def evaluate(holdout: pl.DataFrame, training: pl.DataFrame, thresholds: np.ndarray, k: int,
             alpha: float) -> dict[str, object]:
    """Every figure of the model's evaluation, from holdout sequences (``run``, ``test_case``,
    ``service``, ``anomaly``, ``normal``, ``is_fp_allowlisted``, ``score``) and a threshold per
    row (:func:`judged`). ``training`` sequences only serve as the reference distribution."""
    holdout = judged(holdout, thresholds)
    tables = recall_tables(holdout)
    return {
        "event": {"applicable": False, "reason": NO_EVENT_LEVEL},
        "sequence": level_metrics(holdout, training, k, alpha),
        "test_case": level_metrics(by_test_case(holdout), by_test_case(training), k, alpha),
        "recall_by_test_case": tables["test_case"].to_dicts(),
        "recall_by_service": tables["service"].to_dicts(),
    }
