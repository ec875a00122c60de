"""Trivial baselines: what a short script scores on the same split, to judge a model by.

Per service, from the training runs' ``correct`` sequences:

- ``unseen``: the number of distinct tokens (masked lines, or templates) of a sequence that the
  service's normal training sequences never show;
- ``excess``: the largest excess of a token's count over its normal share of the sequence,
  ``max_t (count_t - events * share_t) / events``;
- ``unseen+excess``: their sum.

A test case scores the max over its services, as the models' test cases do. A model that does
not beat every baseline on the standard and the hard data is not worth its complexity.
"""

from __future__ import annotations

import polars as pl
from sklearn.metrics import roc_auc_score

from lo2_dagster.lib.metrics import by_test_case
from lo2_dagster.lib.vectorize import token_counts

BASELINES = ("unseen", "excess", "unseen+excess")


def normal_shares(normal: pl.DataFrame) -> pl.DataFrame:
    """Each token's share of its service's events in normal training sequences, from their
    token counts (``service``, ``token``, ``count``; any number of rows per token)."""
    return (normal.group_by("service", "token").agg(pl.col("count").sum())
            .with_columns((pl.col("count") / pl.col("count").sum().over("service"))
                          .alias("share"))
            .select("service", "token", "share"))


def baseline_scores(meta: pl.DataFrame, pairs: pl.DataFrame, shares: pl.DataFrame
                    ) -> pl.DataFrame:
    """``meta`` (one row per sequence, with ``service``) plus one column per baseline, from the
    sequences' token counts (``pairs``: row, token, count) and :func:`normal_shares`."""
    scored = (pairs.join(meta.select(pl.int_range(pl.len(), dtype=pl.UInt32).alias("row"),
                                     "service"), on="row")
              .join(shares, on=["service", "token"], how="left")
              .with_columns((pl.col("count") / pl.col("count").sum().over("row")).alias("rate"))
              .group_by("row")
              .agg(pl.col("share").is_null().sum().cast(pl.Float64).alias("unseen"),
                   (pl.col("rate") - pl.col("share").fill_null(0.0)).max().alias("excess")))
    return (meta.with_row_index("row")
            .with_columns(pl.col("row").cast(pl.UInt32))
            .join(scored, on="row", how="left", maintain_order="left")
            .with_columns(pl.col("unseen", "excess").fill_null(0.0))
            .with_columns((pl.col("unseen") + pl.col("excess")).alias("unseen+excess"))
            .drop("row"))


def baseline_roc_auc(scored: pl.DataFrame) -> dict[str, float | None]:
    """Test-case ROC AUC (max over services) of each baseline on scored holdout sequences
    (run, test_case, anomaly, normal and the baseline columns)."""
    out: dict[str, float | None] = {}
    for name in BASELINES:
        cases = by_test_case(scored.with_columns(pl.col(name).alias("score")))
        labels = cases["anomaly"].to_numpy().astype(bool)
        both = 0 < labels.sum() < len(labels)
        out[name] = float(roc_auc_score(labels, cases["score"].to_numpy())) if both else None
    return out


class BaselineCollector:
    """Collects what the baselines need from sequence batches, one batch at a time: the token
    counts of the training runs' normal sequences, and the holdout sequences' meta and token
    counts (a few distinct tokens per sequence)."""

    def __init__(self, column: str) -> None:
        self.column = column
        self._normal: list[pl.DataFrame] = []
        self._meta: list[pl.DataFrame] = []
        self._pairs: list[pl.DataFrame] = []
        self._rows = 0

    def add_training(self, batch: pl.DataFrame) -> None:
        normal = batch.filter("normal")
        counts = token_counts(normal, self.column).join(
            normal.select(pl.int_range(pl.len(), dtype=pl.UInt32).alias("row"), "service"),
            on="row")
        self._normal.append(counts.select("service", "token", "count"))

    def add_holdout(self, batch: pl.DataFrame) -> None:
        self._meta.append(batch.select("run", "test_case", "service", "normal", "anomaly"))
        self._pairs.append(token_counts(batch, self.column)
                           .with_columns(pl.col("row") + self._rows))
        self._rows += len(batch)

    def roc_auc(self) -> dict[str, float | None]:
        """Each baseline's holdout test-case ROC AUC (None without both labels)."""
        if not self._meta or not self._normal:
            return dict.fromkeys(BASELINES)
        scored = baseline_scores(pl.concat(self._meta), pl.concat(self._pairs),
                                 normal_shares(pl.concat(self._normal)))
        return baseline_roc_auc(scored)


def comparison(model: str, model_roc_auc: float | None,
               baselines: dict[str, float | None]) -> pl.DataFrame:
    """The model's holdout test-case ROC AUC beside the baselines' on the same split, and by
    how much it beats each (``margin``: model - baseline)."""
    rows = [{"scorer": model, "roc_auc": model_roc_auc, "margin": None}]
    rows += [{"scorer": f"baseline: {name}", "roc_auc": value,
              "margin": (model_roc_auc - value if model_roc_auc is not None
                         and value is not None else None)}
             for name, value in baselines.items()]
    return pl.DataFrame(rows, schema={"scorer": pl.String, "roc_auc": pl.Float64,
                                      "margin": pl.Float64})
