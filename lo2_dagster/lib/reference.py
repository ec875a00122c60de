"""What explanations and drift compare a run with: the :class:`Reference`, fitted with the model
on its training runs and stored in the model bundle.

It holds the training scores and the events per Drain template (for drift), and the template
counts of the normal training sequences (for rare templates and nearest normals). Built one
training-run batch at a time by :class:`ReferenceBuilder`.

Bundles pickled before this module existed name the class ``lo2_dagster.lib.explain.Reference``;
they still load because :mod:`lo2_dagster.lib.explain` imports it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy import sparse

from lo2_dagster.lib.vectorize import token_counts

#: The sequence column that holds a sequence's Drain template ids, one per event.
TEMPLATES = "e_event_drain_id"
IDENTITY = ("seq_id", "run", "test_case", "service")


@dataclass
class Reference:
    """What explanations and drift compare a run with: fitted with the model, on its training
    runs (never on holdout or new runs)."""

    #: The score of every training sequence (drift of a run's scores).
    scores: np.ndarray
    #: Events per Drain template over the training runs (drift of a run's template mix).
    template_events: dict[str, int]
    #: Columns of ``normal_counts``: every template of the normal training sequences, sorted.
    templates: tuple[str, ...]
    #: ``seq_id``, run, test case and service of the normal training sequences.
    normal_meta: pl.DataFrame
    #: Their template counts (rows of ``normal_meta`` x ``templates``), sparse.
    normal_counts: sparse.csr_matrix

    @property
    def normal_sequences(self) -> int:
        return len(self.normal_meta)

    def normal_shares(self) -> pl.DataFrame:
        """Per service and template: the share of that service's normal training sequences
        that contain the template (``service``, ``token``, ``normal_share``)."""
        counts = sparse.coo_matrix(self.normal_counts)
        services = self.normal_meta["service"]
        pairs = pl.DataFrame({"service": services.gather(counts.row),
                              "token": pl.Series(self.templates, dtype=pl.String)
                              .gather(counts.col)},
                             schema={"service": pl.String, "token": pl.String})
        sizes = self.normal_meta.group_by("service").agg(pl.len().alias("sequences"))
        return (pairs.group_by("service", "token").agg(pl.len().alias("containing"))
                .join(sizes, on="service")
                .select("service", "token",
                        (pl.col("containing") / pl.col("sequences")).alias("normal_share")))

    def template_matrix(self, frame: pl.DataFrame) -> tuple[sparse.csr_matrix, np.ndarray]:
        """``frame``'s template counts over :attr:`templates` (sparse), and each row's norm
        over all its templates, the unseen ones included."""
        pairs = token_counts(frame, TEMPLATES)
        columns = pl.DataFrame({"token": self.templates,
                                "col": np.arange(len(self.templates), dtype=np.uint32)},
                               schema={"token": pl.String, "col": pl.UInt32})
        known = pairs.join(columns, on="token", how="inner")
        matrix = sparse.csr_matrix(
            (known["count"].cast(pl.Float64).to_numpy(),
             (known["row"].to_numpy(), known["col"].to_numpy())),
            shape=(len(frame), len(self.templates)))
        squares = np.zeros(len(frame))
        np.add.at(squares, pairs["row"].to_numpy(),
                  pairs["count"].cast(pl.Float64).to_numpy() ** 2)
        return matrix, np.sqrt(squares)


def template_event_counts(frame: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame | pl.LazyFrame:
    """Events per Drain template (``token``, ``events``) in enhanced sequences."""
    return (frame.select(pl.col(TEMPLATES).explode().alias("token")).drop_nulls()
            .group_by("token").agg(pl.len().alias("events")))


class ReferenceBuilder:
    """Collects the reference from training-run batches (with ``normal`` and the template
    column), one batch at a time: event counts per template, and the normal sequences'
    template counts (a few per run)."""

    def __init__(self) -> None:
        self._events: list[pl.DataFrame] = []
        self._meta: list[pl.DataFrame] = []
        self._pairs: list[pl.DataFrame] = []
        self._rows = 0

    def add(self, batch: pl.DataFrame) -> None:
        self._events.append(template_event_counts(batch))
        normal = batch.filter("normal")
        if len(normal):
            self._meta.append(normal.select(IDENTITY))
            self._pairs.append(token_counts(normal, TEMPLATES)
                               .with_columns(pl.col("row") + self._rows))
            self._rows += len(normal)

    def build(self, scores: np.ndarray) -> Reference:
        events = (pl.concat(self._events).group_by("token").agg(pl.col("events").sum())
                  .sort("token") if self._events else pl.DataFrame(
                      schema={"token": pl.String, "events": pl.UInt32}))
        meta = pl.concat(self._meta) if self._meta else pl.DataFrame(
            schema=dict.fromkeys(IDENTITY, pl.String))
        pairs = pl.concat(self._pairs) if self._pairs else pl.DataFrame(
            schema={"row": pl.UInt32, "token": pl.String, "count": pl.UInt32})
        templates = pairs["token"].unique().sort()
        index = pl.DataFrame({"token": templates,
                              "col": np.arange(len(templates), dtype=np.uint32)})
        pairs = pairs.join(index, on="token")
        counts = sparse.csr_matrix(
            (pairs["count"].cast(pl.Float64).to_numpy(),
             (pairs["row"].to_numpy(), pairs["col"].to_numpy())),
            shape=(len(meta), len(templates)))
        return Reference(
            scores=np.sort(np.asarray(scores, dtype=np.float64)),
            template_events=dict(zip(events["token"].to_list(),
                                     events["events"].cast(pl.Int64).to_list(), strict=True)),
            templates=tuple(templates.to_list()),
            normal_meta=meta, normal_counts=counts)
