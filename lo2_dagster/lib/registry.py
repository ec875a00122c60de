"""The model registry: which estimators a user can choose, how each is built, fitted and scored.

Every model scores a sequence with "higher = more anomalous". Unsupervised models learn from
``correct`` sequences only; supervised ones from every training sequence and its label.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator
from sklearn.ensemble import GradientBoostingClassifier, IsolationForest, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, MaxAbsScaler
from sklearn.tree import DecisionTreeClassifier

from lo2_dagster.lib.detector import TemplateRateDetector
from lo2_dagster.lib.vectorize import DEFAULT_FEATURES, EVENTS, OOV, SequenceVectorizer


def log1p(matrix: Any) -> Any:
    """log(1 + count): a template seen 1,000 times is not 1,000 times as telling as once."""
    return matrix.log1p() if sparse.issparse(matrix) else np.log1p(matrix)


def _log_counts() -> FunctionTransformer:
    return FunctionTransformer(log1p, accept_sparse=True)


class RareTokenDetector(BaseEstimator):
    """Out-of-vocabulary / rare-template detector, fitted on normal sequences only.

    Each token column gets a rarity ``-log((df + 1) / (n + 2))``, where ``df`` is the number of
    the ``n`` normal training sequences that contain the token. A sequence's score is the sum of
    the rarities of the distinct tokens it contains, plus the maximum rarity for each distinct
    token the training data never showed (the vectorizer's ``<oov>`` columns). A sequence made
    of what every normal sequence has scores near 0.
    """

    def __init__(self, token_columns: int = 0, oov_columns: tuple[int, ...] = ()):
        self.token_columns = token_columns
        self.oov_columns = oov_columns

    def fit(self, X: Any, y: Any = None) -> RareTokenDetector:
        present = sparse.csc_matrix(X[:, : self.token_columns]) > 0
        n = X.shape[0]
        df = np.asarray(present.sum(axis=0)).ravel()
        rarity = -np.log((df + 1.0) / (n + 2.0))
        unseen = -np.log(1.0 / (n + 2.0))
        for column in self.oov_columns:
            rarity[column] = unseen
        self.rarity_ = rarity
        self.n_features_in_ = X.shape[1]
        return self

    def _weights(self) -> tuple[np.ndarray, np.ndarray]:
        """Rarity per present token (known columns) and per unseen token (<oov> columns)."""
        oov = np.zeros(self.token_columns, dtype=bool)
        oov[list(self.oov_columns)] = True
        return np.where(oov, 0.0, self.rarity_), np.where(oov, self.rarity_, 0.0)

    def score_samples(self, X: Any) -> np.ndarray:
        tokens = sparse.csr_matrix(X[:, : self.token_columns], dtype=np.float64)
        known, unseen = self._weights()
        # <oov> columns hold a number of distinct unseen tokens: each counts in full.
        return np.asarray(tokens.sign() @ known + tokens @ unseen).ravel()


@dataclass(frozen=True)
class ModelKind:
    """A registry entry: how to build the estimator and how to score with it."""

    name: str
    supervised: bool
    description: str
    build: Callable[[int, SequenceVectorizer], BaseEstimator]  # (seed, fitted vectorizer)
    #: ``score_samples`` is higher for normal rows (scikit-learn's outlier detectors).
    negate: bool = False
    #: The features it uses when the config names none.
    features: tuple[str, ...] = DEFAULT_FEATURES
    #: Fitted on every training sequence and told which are ``correct`` (not their error
    #: labels): it learns the normal mix from all of them and what is new from correct ones.
    reads_all: bool = False
    #: Features it cannot work without (the config is refused without them), and why.
    requires: tuple[str, ...] = ()
    requires_why: str = ""

    @property
    def fits_all_rows(self) -> bool:
        """Whether fitting (and the vectorizer's vocabulary) sees every training sequence."""
        return self.supervised or self.reads_all

    def scores(self, estimator: Any, matrix: Any) -> np.ndarray:
        """Anomaly scores: higher = more anomalous."""
        if self.supervised:
            return estimator.predict_proba(matrix)[:, 1]
        scores = estimator.score_samples(matrix)
        return -scores if self.negate else scores


def _isolation_forest(seed: int, vectorizer: SequenceVectorizer) -> BaseEstimator:
    return Pipeline([("log1p", _log_counts()),
                     ("model", IsolationForest(n_estimators=200, random_state=seed))])


def _rare_tokens(seed: int, vectorizer: SequenceVectorizer) -> BaseEstimator:
    return RareTokenDetector(token_columns=vectorizer.token_columns,
                             oov_columns=tuple(i for i, n in enumerate(vectorizer.feature_names)
                                               if n.endswith(f":{OOV}")))


def _template_rates(seed: int, vectorizer: SequenceVectorizer) -> BaseEstimator:
    services = tuple(vectorizer.column(f"service:{s}") for s in vectorizer.services) \
        if "service" in vectorizer.spec.features else ()
    return TemplateRateDetector(templates=vectorizer.bag_columns("drain"), services=services,
                                events=vectorizer.column(EVENTS))


def _logistic_regression(seed: int, vectorizer: SequenceVectorizer) -> BaseEstimator:
    return Pipeline([("log1p", _log_counts()), ("scale", MaxAbsScaler()),
                     ("model", LogisticRegression(class_weight="balanced", max_iter=5000,
                                                  random_state=seed))])


def _decision_tree(seed: int, vectorizer: SequenceVectorizer) -> BaseEstimator:
    # Shallow: on LO2 a deep tree puts holdout correct sequences in pure "anomalous" leaves
    # (most sequences of an error case look like correct ones), so every score saturates at 1.
    return DecisionTreeClassifier(class_weight="balanced", max_depth=5, min_samples_leaf=5,
                                  random_state=seed)


def _random_forest(seed: int, vectorizer: SequenceVectorizer) -> BaseEstimator:
    return RandomForestClassifier(n_estimators=200, class_weight="balanced",
                                  min_samples_leaf=2, n_jobs=-1, random_state=seed)


def _gradient_boosting(seed: int, vectorizer: SequenceVectorizer) -> BaseEstimator:
    return GradientBoostingClassifier(n_estimators=150, max_depth=3, random_state=seed)


REGISTRY: dict[str, ModelKind] = {k.name: k for k in (
    ModelKind("template_rates", False, "per-service template rates: templates the service's "
              "normal traffic never shows, plus the largest rise of a template's share of the "
              "sequence over its typical share, each in units of normal variation (fair to "
              "length)", _template_rates, features=("drain", "service", "events"),
              reads_all=True, requires=("drain", "events"),
              requires_why="it reads template rates (and service, to calibrate per service)"),
    ModelKind("isolation_forest", False, "scikit-learn IsolationForest on log counts, trained "
              "on correct sequences only", _isolation_forest, negate=True),
    ModelKind("rare_tokens", False, "out-of-vocabulary / rare-template detector: sum of the "
              "rarities (in correct training sequences) of the tokens a sequence contains",
              _rare_tokens),
    ModelKind("logistic_regression", True, "LogisticRegression (balanced classes) on scaled "
              "log counts", _logistic_regression),
    ModelKind("decision_tree", True, "DecisionTreeClassifier, depth 5 (balanced classes)",
              _decision_tree),
    ModelKind("random_forest", True, "RandomForestClassifier, 200 trees (balanced classes)",
              _random_forest),
    ModelKind("gradient_boosting", True, "GradientBoostingClassifier, 150 trees of depth 3",
              _gradient_boosting),
)}


def model_kind(name: str) -> ModelKind:
    """The registry entry, or an error that lists the choices."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}: choose one of {sorted(REGISTRY)}") from None


def fit(kind: ModelKind, estimator: Any, matrix: Any, labels: np.ndarray,
        normal: np.ndarray, test_cases: np.ndarray) -> Any:
    """Fit: unsupervised models on the rows given (the caller passes normal rows only), models
    that read all rows with the ``normal`` flags and ``test_cases``, supervised ones with the
    ``labels`` (gradient boosting with balanced sample weights: it has no class_weight)."""
    if kind.reads_all:
        return estimator.fit(matrix, normal, test_cases)
    if not kind.supervised:
        return estimator.fit(matrix)
    if len(np.unique(labels)) < 2:
        raise ValueError(f"{kind.name} needs anomalous and normal training sequences; the "
                         "training runs have only one kind")
    if isinstance(estimator, GradientBoostingClassifier):
        positive = labels.mean()
        weights = np.where(labels, 0.5 / positive, 0.5 / (1 - positive))
        return estimator.fit(matrix, labels, sample_weight=weights)
    return estimator.fit(matrix, labels)
