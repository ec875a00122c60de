"""The default detector: per-service template rates, fair to length, robust to its own errors.

A sequence (one service's log of one test case) is a mix of templates. A failing request adds
lines whose shape normal traffic never shows (*novelty*) or raises the share of shapes some
error produces (*shift*). Both are measured without regard to how long the sequence is:

- ``novelty``: the number of distinct templates the service's normal traffic never shows;
- ``shift``: the largest standardized excess of a template's *rate* (its events / the
  sequence's events) over its normal rate, ``(rate - mean) / spread``, among the templates
  that some test case of the training runs produces in bulk (error lines, not chatter).

Repeating a sequence's lines (twice the duration) changes neither: rates and the set of
templates stay the same. Neither reads duration, event count or start-up lines.

**What is normal, per service and template.** LO2's labels belong to test cases: each error
case injects its own kind of failure into mostly valid traffic, and background errors can show
up in any test case. So the detector reads all training sequences of a service, test case by
test case, and for each template finds the test cases that *explain* it: those whose
sequences show it far more often than its overall share of sequences makes likely (binomial
tail below :data:`OUTLIER_P`), or, for a template most sequences show, whose mean rate is an
outlier among the test cases' (modified z-score above :data:`OUTLIER_Z`). The error case that
produces a line is such a test case; a background line has none. Then:

- the template's normal rate: mean and spread over the sequences of the other test cases; the
  spread is the largest of their standard deviation, the distance to their
  :data:`UPPER_QUANTILE` (sparse lines) and the sampling noise of a sequence of the service's
  median length;
- the template is *seen* (normal) if a ``correct`` training sequence shows it, or if it is
  background: shown in two test cases or more and explained by none. A line some error case
  produces in bulk is new wherever else it turns up, unless ``correct`` traffic shows it too.

**Calibration.** Each service is calibrated on all its training sequences, each one leaving out
what its own test case explains (so an error case's own lines do not count, and its other
traffic is as normal as ``correct``'s; ``correct`` sequences are also left out of the seen set
they are scored against): novelty as a Poisson count of rate ``lam`` (how often normal traffic
shows a new shape: low when masks and templates are good), shift by its mean ``m`` and spread
``v``. The score adds both in units of normal variation::

    score = (novelty - lam) / sqrt(lam) + (shift - m) / max(v, 1)

so ~0 is ordinary for any service, and a test case (the max over its services) compares like
with like. The score is exactly ``base + contributions``: each new template adds
``1 / sqrt(lam)``, the most shifted template ``shift / max(v, 1)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse
from scipy.stats import binom, norm
from sklearn.base import BaseEstimator

#: Added to a service's calibration novelty count before dividing by its sequences: with no
#: new template in any normal sequence, lam = 0.5 / sequences (Jeffreys' prior).
NOVELTY_PRIOR = 0.5
#: A test case whose sequences show a template more often than chance would at this level
#: (binomial tail, given the template's share of all the service's sequences) explains it ...
OUTLIER_P = 1e-3
#: ... and so does one whose mean rate of a template that most sequences show has a modified
#: z-score above this among the test cases' (Iglewicz and Hoaglin's 3.5).
OUTLIER_Z = 3.5
#: A rate's spread is at least the distance from its mean to this quantile of the sequences
#: of the test cases that do not explain it, in standard-normal units.
UPPER_QUANTILE = 0.99
_Z_UPPER = float(norm.ppf(UPPER_QUANTILE))


@dataclass(frozen=True)
class ServiceModel:
    """What the detector learned about one service."""

    mean: np.ndarray  # normal rate per template column
    spread: np.ndarray  # standardizing spread per template column
    seen: np.ndarray  # bool: normal traffic shows the template
    produced: np.ndarray  # bool: some test case produces the template in bulk
    lam: float  # novelty rate of normal sequences
    shift_mean: float
    shift_scale: float


@dataclass
class Evidence:
    """What a batch of rows showed the detector: ``score = base + novelty_weight * (len(new)
    + oov) + shift_weight * shift``."""

    new: list[np.ndarray]  # per row: the template columns (bag-relative) it shows that are new
    oov: np.ndarray  # per row: distinct templates the vectorizer has no column for (all new)
    shift: np.ndarray  # per row: the largest standardized rate excess (0: none)
    shift_column: np.ndarray  # per row: that template's column (bag-relative; -1: none)
    novelty_weight: np.ndarray  # 1 / sqrt(lam) of the row's service
    shift_weight: np.ndarray  # 1 / max(v, 1) of the row's service
    base: np.ndarray

    @property
    def novelty(self) -> np.ndarray:
        """Distinct new templates per row."""
        return np.array([len(n) for n in self.new], dtype=np.float64) + self.oov


class TemplateRateDetector(BaseEstimator):
    """Novelty + rate shift per service (see the module docstring). ``templates``: the column
    range of the Drain bag's tokens (its ``<oov>`` column follows); ``services``: the one-hot
    service columns, in order; ``events``: the column of the events the bag counted."""

    def __init__(self, templates: tuple[int, int] = (0, 0), services: tuple[int, ...] = (),
                 events: int = -1):
        self.templates = templates
        self.services = services
        self.events = events

    def fit(self, X: Any, y: Any = None, groups: Any = None) -> TemplateRateDetector:
        """Learn each service from all training sequences (``X``) grouped by test case
        (``groups``; None: each row its own), which of them are ``correct`` (``y``; None:
        all)."""
        x = sparse.csr_matrix(X, dtype=np.float64)
        normal = np.ones(x.shape[0], bool) if y is None else np.asarray(y, dtype=bool)
        cases = (np.arange(x.shape[0]) if groups is None
                 else np.unique(np.asarray(groups), return_inverse=True)[1])
        counts, oov, totals, service = self._parts(x)
        self.models_: dict[int, ServiceModel] = {}
        for s in np.unique(service[service >= 0]):
            rows = np.flatnonzero(service == s)
            self.models_[int(s)] = _fit_service(counts[rows], oov[rows], totals[rows],
                                                normal[rows], cases[rows])
        self.n_features_in_ = x.shape[1]
        return self

    def score_samples(self, X: Any) -> np.ndarray:
        """Anomaly scores, higher = more anomalous (see the module docstring)."""
        found = self.evidence(X)
        return (found.base + found.novelty_weight * found.novelty
                + found.shift_weight * found.shift)

    def evidence(self, X: Any) -> Evidence:
        """Per row: its new templates, its largest shift and that template, and the weights
        that turn them into the score (see :class:`Evidence`)."""
        x = sparse.csr_matrix(X, dtype=np.float64)
        counts, oov, totals, service = self._parts(x)
        rows = x.shape[0]
        found = Evidence(new=[], oov=oov, shift=np.zeros(rows),
                         shift_column=np.full(rows, -1), novelty_weight=np.zeros(rows),
                         shift_weight=np.zeros(rows), base=np.zeros(rows))
        # A service the training never showed: every template is new, weighed as in the
        # known service whose normal traffic shows new templates least often.
        strictest = min((m.lam for m in self.models_.values()), default=NOVELTY_PRIOR)
        for i in range(rows):
            model = self.models_.get(int(service[i]))
            lam = model.lam if model is not None else strictest
            found.novelty_weight[i] = 1.0 / np.sqrt(lam)
            found.base[i] = -np.sqrt(lam)
            lo, hi = counts.indptr[i], counts.indptr[i + 1]
            present, amount = counts.indices[lo:hi], counts.data[lo:hi]
            present, amount = present[amount > 0], amount[amount > 0]
            found.new.append(present if model is None else present[~model.seen[present]])
            if model is None:
                continue
            found.shift_weight[i] = 1.0 / model.shift_scale
            found.base[i] -= model.shift_mean / model.shift_scale
            shift, j = _largest_z(amount / max(totals[i], 1.0), model.mean[present],
                                  model.spread[present],
                                  model.seen[present] & model.produced[present])
            if j >= 0:
                found.shift[i], found.shift_column[i] = shift, int(present[j])
        return found

    def contributions(self, X: Any) -> tuple[sparse.csr_matrix, np.ndarray]:
        """Per row: each new template's share (its column, or ``<oov>``), the most shifted
        template's share, and the base; they add up to the score exactly. A row of a service
        the training data never showed has every template new, at the smallest novelty rate
        of the services it did show."""
        found = self.evidence(X)
        start, end = self.templates
        rows: list[int] = []
        cols: list[int] = []
        vals: list[float] = []
        for i, new in enumerate(found.new):
            rows += [i] * len(new)
            cols += [start + int(c) for c in new]
            vals += [found.novelty_weight[i]] * len(new)
            if found.oov[i] > 0:
                rows.append(i)
                cols.append(end)
                vals.append(found.novelty_weight[i] * found.oov[i])
            if found.shift_column[i] >= 0:
                rows.append(i)
                cols.append(start + int(found.shift_column[i]))
                vals.append(found.shift[i] * found.shift_weight[i])
        values = sparse.csr_matrix((vals, (rows, cols)), shape=(len(found.new),
                                                               self.n_features_in_))
        values.sum_duplicates()
        return values, found.base

    def _parts(self, x: sparse.csr_matrix
               ) -> tuple[sparse.csr_matrix, np.ndarray, np.ndarray, np.ndarray]:
        """Template counts (CSR), unseen distinct templates, events and the service index
        (-1: a service the one-hot columns do not know) of each row."""
        start, end = self.templates
        counts = x[:, start:end].tocsr()
        oov = x[:, end].toarray().ravel() if end < x.shape[1] else np.zeros(x.shape[0])
        totals = (x[:, self.events].toarray().ravel() if self.events >= 0
                  else np.asarray(counts.sum(axis=1)).ravel())
        if not self.services:  # no service feature: one group
            return counts, oov, totals, np.zeros(x.shape[0], dtype=np.int64)
        onehot = x[:, list(self.services)].toarray()
        return counts, oov, totals, np.where(onehot.any(axis=1), onehot.argmax(axis=1), -1)


def _largest_z(rates: np.ndarray, mean: np.ndarray, spread: np.ndarray,
               eligible: np.ndarray) -> tuple[float, int]:
    """The largest positive standardized rate excess among the eligible entries, and its
    index (-1: none above the mean)."""
    if not eligible.any():
        return 0.0, -1
    z = np.where(eligible, (rates - mean) / spread, -np.inf)
    j = int(np.argmax(z))
    return (float(z[j]), j) if z[j] > 0 else (0.0, -1)


def _fit_service(counts: sparse.csr_matrix, oov: np.ndarray, totals: np.ndarray,
                 normal: np.ndarray, cases: np.ndarray) -> ServiceModel:
    """One service: which test cases explain each template, its normal rate and spread from
    the others, what normal traffic shows, and the calibration (module docstring)."""
    n = counts.shape[0]
    rates = (sparse.diags(1.0 / np.maximum(totals, 1.0)) @ counts).tocsr()
    case_ids, case_of = np.unique(cases, return_inverse=True)
    by_case = sparse.csr_matrix((np.ones(n), (case_of, np.arange(n))),
                                shape=(len(case_ids), n))  # test case x row
    sizes = np.asarray(by_case.sum(axis=1)).ravel()
    case_sum = (by_case @ rates).toarray()  # test cases x templates
    case_present = (by_case @ (counts > 0).astype(np.float64)).toarray()
    keep = ~_explaining_cases(case_sum / sizes[:, None], case_present, sizes)
    produced = ~keep.all(axis=0)
    kept = (sizes[:, None] * keep).sum(axis=0)
    mean = (case_sum * keep).sum(axis=0) / np.maximum(kept, 1)
    squares = ((by_case @ rates.multiply(rates)).toarray() * keep).sum(axis=0)
    sd = np.sqrt(np.maximum(squares / np.maximum(kept, 1) - mean**2, 0.0))
    typical = float(np.median(np.maximum(totals, 1.0)))
    spread = np.maximum.reduce([sd, (_kept_quantile(rates.tocsc(), keep, case_of, kept) - mean)
                                / _Z_UPPER, np.sqrt((mean + 1.0 / typical) / typical)])
    in_correct = np.asarray((counts[np.flatnonzero(normal)] > 0).sum(axis=0)).ravel()
    background = (((case_present > 0) & keep).sum(axis=0) >= 2) & ~produced
    # How many normal sequences show each template (background: as good as all of them).
    showing = in_correct + np.where(background, n + 1, 0)
    novelty = np.zeros(n)
    shift = np.zeros(n)
    for i in range(n):
        lo, hi = rates.indptr[i], rates.indptr[i + 1]
        cols, r = rates.indices[lo:hi], rates.data[lo:hi]
        unexplained = keep[case_of[i], cols]  # what this row's own test case does not explain
        seen = showing[cols] - (1 if normal[i] else 0) > 0  # leave a correct row out of it
        novelty[i] = float(np.sum(~seen & unexplained)) + oov[i]
        shift[i] = _largest_z(r, mean[cols], spread[cols], seen & unexplained & produced[cols])[0]
    return ServiceModel(mean=mean, spread=spread, seen=showing > 0, produced=produced,
                        lam=float((novelty.sum() + NOVELTY_PRIOR) / n),
                        shift_mean=float(shift.mean()),
                        shift_scale=max(float(shift.std()), 1.0))


def _explaining_cases(case_mean: np.ndarray, case_present: np.ndarray, sizes: np.ndarray
                      ) -> np.ndarray:
    """Test cases x templates: where a template behaves unlike the other test cases (module
    docstring): shown far more often than its share of sequences makes likely, or, for a
    template most sequences show, an outlying mean rate."""
    share = case_present.sum(axis=0) / sizes.sum()
    unlikely = binom.sf(case_present - 1, sizes[:, None], share[None, :]) < OUTLIER_P
    median = np.median(case_mean, axis=0)
    mad = np.median(np.abs(case_mean - median), axis=0)
    common = np.median(case_present / sizes[:, None], axis=0) >= 0.5
    high = (0.6745 * (case_mean - median) / np.where(mad > 0, mad, np.inf) > OUTLIER_Z) & common
    return (unlikely & (case_present > 0)) | high


def _kept_quantile(rates: sparse.csc_matrix, keep: np.ndarray, case_of: np.ndarray,
                   kept: np.ndarray) -> np.ndarray:
    """Per template, the :data:`UPPER_QUANTILE` of its rate over the sequences of the test
    cases that do not explain it (zeros included): only the nonzero rates are sorted."""
    out = np.zeros(rates.shape[1])
    for j in range(rates.shape[1]):
        lo, hi = rates.indptr[j], rates.indptr[j + 1]
        values = rates.data[lo:hi][keep[case_of[rates.indices[lo:hi]], j]]
        total = int(kept[j])
        rank = UPPER_QUANTILE * (total - 1)
        zeros = total - len(values)
        if total == 0 or rank < zeros:
            continue  # the quantile is a zero
        values = np.sort(values)
        position = rank - zeros
        low = int(np.floor(position))
        high = min(low + 1, len(values) - 1)
        out[j] = values[low] + (values[high] - values[low]) * (position - low)
    return out
