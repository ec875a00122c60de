"""Drift of a run against the runs the model was trained on: population stability index (PSI)
of its sequence scores and of its Drain-template mix.

PSI sums ``(a - e) * ln(a / e)`` over bins, with ``e`` the training share and ``a`` the run's;
by a common rule of thumb, below 0.1 is stable, 0.1-0.25 some shift, above 0.25 a large one.
Scores are binned at the training scores' deciles (:func:`lo2_dagster.lib.metrics.psi`);
templates are categories: each template's share of the events. A template one side never
shows gets the share ``PSI_EPSILON`` (1e-6), so a new template counts, with a bounded weight.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import polars as pl

from lo2_dagster.lib.metrics import psi, psi_terms
from lo2_dagster.lib.reference import Reference, template_event_counts

#: Default warning level: a large shift by the usual rule of thumb.
DEFAULT_WARN_PSI = 0.25

TEMPLATE_DRIFT_SCHEMA: dict[str, pl.DataType] = {
    "template_id": pl.String(), "training_events": pl.Int64(), "run_events": pl.Int64(),
    "training_share": pl.Float64(), "run_share": pl.Float64(), "psi_term": pl.Float64(),
}


@dataclass(frozen=True)
class Drift:
    """One run's drift: both PSIs and the per-template terms, largest first."""

    score_psi: float | None
    template_psi: float | None
    templates: pl.DataFrame  # TEMPLATE_DRIFT_SCHEMA

    def exceeds(self, level: float) -> list[str]:
        """The measures above ``level`` (none: no warning)."""
        return [name for name, value in (("scores", self.score_psi),
                                         ("templates", self.template_psi))
                if value is not None and value > level]


def template_events(sequences: pl.DataFrame | pl.LazyFrame) -> dict[str, int]:
    """Events per Drain template in enhanced sequences (their ``e_event_drain_id`` lists)."""
    frame = template_event_counts(sequences.lazy()).collect(engine="streaming")
    return dict(zip(frame["token"].to_list(), frame["events"].cast(pl.Int64).to_list(),
                    strict=True))


def template_psi(expected: Mapping[str, int], actual: Mapping[str, int]
                 ) -> tuple[float | None, pl.DataFrame]:
    """PSI of the template mix ``actual`` (events per template) against ``expected``, and each
    template's term (the templates that moved most first)."""
    names = sorted(set(expected) | set(actual))
    e = np.array([expected.get(n, 0) for n in names], dtype=np.float64)
    a = np.array([actual.get(n, 0) for n in names], dtype=np.float64)
    if not e.sum() or not a.sum():
        return None, pl.DataFrame(schema=TEMPLATE_DRIFT_SCHEMA)
    terms = psi_terms(e, a)
    table = pl.DataFrame({
        "template_id": names, "training_events": e.astype(np.int64),
        "run_events": a.astype(np.int64), "training_share": e / e.sum(),
        "run_share": a / a.sum(), "psi_term": terms,
    }, schema=TEMPLATE_DRIFT_SCHEMA).sort(["psi_term", "template_id"], descending=[True, False])
    return float(terms.sum()), table


def drift(reference: Reference, scores: np.ndarray, events: Mapping[str, int]) -> Drift:
    """A run's drift against the model's training runs: its sequence ``scores`` and its
    ``events`` per template."""
    value, table = template_psi(reference.template_events, events)
    return Drift(score_psi=psi(reference.scores, np.asarray(scores, dtype=np.float64)),
                 template_psi=value, templates=table)
