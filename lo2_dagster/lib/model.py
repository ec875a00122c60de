"""Train, evaluate, persist and reuse the anomaly model, persisted so that a loaded model is the
one that was trained.

A :class:`ModelBundle` holds the fitted estimator, the vectorizer, the threshold, the run split
and the holdout metrics. It is stored as ``model.joblib`` beside ``model.yml`` (the readable
record, with the bundle's sha256) and ``metrics.json``. Reuse it in a notebook::

    from lo2_dagster.lib.model import load_bundle
    bundle = load_bundle("data/warehouse/lo2/anomaly_model")
    scored = bundle.score(pl.read_parquet(".../sequences_enhanced/<run>.parquet"))

``load_bundle`` refuses a file whose sha256 is not the one recorded at training time: joblib
files are pickles, and loading one runs code.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import json
import platform
import re
import subprocess
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import polars as pl
import yaml
from scipy import sparse

from lo2_dagster.lib.baselines import BaselineCollector
from lo2_dagster.lib.leaks import (
    AUDIT_COLUMNS,
    STARTUP_COLUMNS,
    leak_audit,
    leak_warning,
    sequence_signals,
    startup_templates,
    test_case_signals,
)
from lo2_dagster.lib.metrics import Split, calibrate, evaluate, judged, split_runs
from lo2_dagster.lib.reference import TEMPLATES, Reference, ReferenceBuilder
from lo2_dagster.lib.registry import fit, model_kind
from lo2_dagster.lib.vectorize import FeatureSpec, SequenceVectorizer

MODEL_FILE = "model.joblib"
RECORD_FILE = "model.yml"
METRICS_FILE = "metrics.json"
#: The registry model used when the config names none (see docs/model.md for why).
DEFAULT_MODEL = "template_rates"
#: Columns of ``lo2/sequences_enhanced`` that every model reads besides its features.
META_COLUMNS = ["seq_id", "run", "test_case", "service", "normal", "anomaly",
                "is_fp_allowlisted"]
FLAGS = ("normal", "anomaly", "is_fp_allowlisted")
#: Sequences per batch when reading a run's enhanced sequences (they carry all their trigrams).
BATCH_ROWS = 256
GATE_METRIC = "test_case.roc_auc"

#: One run's sequence table, read a batch at a time: columns -> batches.
RunBatches = Callable[[list[str]], Iterable[pl.DataFrame]]

PREDICTIONS_SCHEMA: dict[str, pl.DataType] = {
    "seq_id": pl.String(), "run": pl.String(), "test_case": pl.String(),
    "service": pl.String(), "score": pl.Float64(), "threshold": pl.Float64(),
    "pred_ano": pl.Boolean(), "rank": pl.UInt32(), "anomaly": pl.Boolean(),
    "anomaly_original": pl.Boolean(), "is_fp_allowlisted": pl.Boolean(),
    "pred_ano_original": pl.Boolean(), "test_case_score": pl.Float64(),
    "test_case_pred_ano": pl.Boolean(), "test_case_anomaly": pl.Boolean(),
    "test_case_rank": pl.UInt32(), "split": pl.String(),
}


def model_columns(spec: FeatureSpec) -> list[str]:
    """The sequence-table columns that training and scoring read."""
    return [*META_COLUMNS, *(c for c in spec.columns if c not in META_COLUMNS)]


class BundleError(ValueError):
    """A model bundle that must not be loaded (missing, tampered, not ours)."""


@dataclass(frozen=True)
class TrainingConfig:
    """Everything that decides a bundle, besides the data."""

    model: str = DEFAULT_MODEL
    #: None: the model's own default features (``ModelKind.features``).
    features: FeatureSpec = None  # type: ignore[assignment]
    holdout_fraction: float = 0.2
    seed: int = 0
    #: LO2 has 7 correct sequences per run: any lower default flags the correct test case of
    #: some holdout run (its max over services) by construction.
    threshold_percentile: float = 100.0
    alpha: float = 0.05  # false-alarm rate for the "FP rate at alpha" figure
    k: int = 20  # precision@k
    min_test_case_roc_auc: float = 0.6  # the quality gate's floor

    def __post_init__(self) -> None:
        kind = model_kind(self.model)
        if self.features is None:
            object.__setattr__(self, "features", FeatureSpec(kind.features))
        missing = [f for f in kind.requires if f not in self.features.features]
        if missing:
            raise ValueError(f"{kind.name} needs the features {', '.join(kind.requires)} "
                             f"({kind.requires_why}): add {', '.join(missing)}")
        if self.model == "rare_tokens" and not self.features.bags:
            raise ValueError("rare_tokens scores tokens: add drain, words or trigrams to the "
                             "features")
        if not 0 <= self.threshold_percentile <= 100:
            raise ValueError("threshold_percentile must be within 0..100")
        if not 0 < self.alpha < 1 or self.k < 1:
            raise ValueError("alpha must be within (0, 1) and k at least 1")


@dataclass
class ModelBundle:
    """The fitted model and everything needed to score new sequences the same way."""

    model: str
    estimator: Any
    vectorizer: SequenceVectorizer
    threshold: float
    threshold_percentile: float
    split: Split
    training_rows: int  # every sequence of the training runs
    fitted_rows: int  # those the model was fitted on (unsupervised: correct ones only)
    holdout_rows: int
    seed: int
    params: dict[str, Any]
    metrics: dict[str, Any]
    gate: dict[str, Any]
    versions: dict[str, str]
    templates_digest: str | None = None
    #: What explanations and drift compare with, from the training runs (None: a bundle
    #: written before explanations existed).
    reference: Reference | None = None
    #: The holdout evaluation, one row per holdout sequence: META_COLUMNS, ``score``, the
    #: ``threshold`` it was judged by (leave one holdout run out) and ``pred``.
    holdout: pl.DataFrame | None = None
    #: Set by :func:`load_bundle`: the verified sha256 of the file it came from.
    sha256: str | None = None

    @property
    def columns(self) -> list[str]:
        """The sequence-table columns scoring reads."""
        return model_columns(self.vectorizer.spec)

    def scores(self, batch: pl.DataFrame) -> np.ndarray:
        """Anomaly scores of a batch of sequences (higher = more anomalous)."""
        return model_kind(self.model).scores(self.estimator, self.vectorizer.transform(batch))

    def score(self, sequences: pl.DataFrame | pl.LazyFrame, batch_rows: int = 256
              ) -> pl.DataFrame:
        """``seq_id`` (and run, test case, service if present), ``score``, ``threshold`` and
        ``pred_ano`` (score above the threshold) of enhanced sequences."""
        frame = sequences.collect() if isinstance(sequences, pl.LazyFrame) else sequences
        missing = [c for c in self.vectorizer.spec.columns if c not in frame.columns]
        if missing:
            raise ValueError(f"the sequences lack {missing}: pass lo2/sequences_enhanced rows")
        keep = [c for c in ("seq_id", "run", "test_case", "service") if c in frame.columns]
        parts = [frame.slice(i, batch_rows) for i in range(0, len(frame), batch_rows)]
        scores = np.concatenate([self.scores(p) for p in parts]) if parts else np.empty(0)
        return frame.select(keep).with_columns(
            pl.Series("score", scores, pl.Float64),
            pl.lit(self.threshold, pl.Float64).alias("threshold"),
            pl.Series("pred_ano", scores > self.threshold, pl.Boolean))


def train(runs: Mapping[str, RunBatches], config: TrainingConfig,
          templates_digest: str | None = None,
          log: Callable[[str], object] = lambda _: None) -> ModelBundle:
    """Split the runs, fit vectorizer and model on the training runs (unsupervised models on
    their ``correct`` sequences only), calibrate the threshold on holdout ``correct`` scores and
    evaluate on the holdout runs only."""
    kind = model_kind(config.model)
    split = split_runs(list(runs), config.holdout_fraction, config.seed)
    log(f"{len(split.training)} training runs, {len(split.holdout)} holdout runs "
        f"({', '.join(split.holdout)})")
    columns = model_columns(config.features)
    if TEMPLATES not in columns:  # the reference counts templates whatever the features
        columns.append(TEMPLATES)

    def fit_rows(batch: pl.DataFrame) -> pl.DataFrame:
        return batch if kind.fits_all_rows else batch.filter("normal")

    # Start-up output: templates only the first test case of a training run shows.
    startup = startup_templates(b for r in split.training for b in runs[r](STARTUP_COLUMNS))
    log(f"{len(startup)} start-up templates (only in each run's first test case)"
        + ("; left out of the features" if config.features.exclude_startup else ""))
    vectorizer = SequenceVectorizer.fit(
        config.features, (fit_rows(b) for r in split.training for b in runs[r](columns)),
        excluded=startup if config.features.exclude_startup else ())
    log(f"vectorizer: {len(vectorizer.feature_names):,} columns from "
        f"{vectorizer.fitted_rows:,} sequences")
    reference = ReferenceBuilder()
    baselines = BaselineCollector(TEMPLATES)
    signals: list[pl.DataFrame] = []

    def training_batch(batch: pl.DataFrame) -> None:
        reference.add(batch)
        baselines.add_training(batch)
        signals.append(sequence_signals(batch, startup))

    def holdout_batch(batch: pl.DataFrame) -> None:
        baselines.add_holdout(batch)
        signals.append(sequence_signals(batch, startup))

    audit_columns = [*columns, *(c for c in AUDIT_COLUMNS if c not in columns)]
    train_meta, train_x = _matrix(vectorizer, [runs[r] for r in split.training],
                                  audit_columns, training_batch)
    hold_meta, hold_x = _matrix(vectorizer, [runs[r] for r in split.holdout], audit_columns,
                                holdout_batch)
    audit = leak_audit(test_case_signals(pl.concat(signals)))
    warning = leak_warning(audit)
    if warning:
        log(f"leak audit: {warning}")
    normal = train_meta["normal"].to_numpy().astype(bool)
    mask = np.ones(len(train_meta), bool) if kind.fits_all_rows else normal
    if not normal.any() and not kind.supervised:
        raise ValueError("the training runs have no correct sequences to learn normal from")
    estimator = kind.build(config.seed, vectorizer)
    labels = train_meta["anomaly"].to_numpy().astype(bool)
    fit(kind, estimator, train_x[mask], labels[mask], normal[mask],
        train_meta["test_case"].to_numpy()[mask])
    log(f"fitted {kind.name} on {int(mask.sum()):,} sequences")
    train_meta = train_meta.with_columns(
        pl.Series("score", kind.scores(estimator, train_x), pl.Float64))
    hold_meta = hold_meta.with_columns(
        pl.Series("score", kind.scores(estimator, hold_x), pl.Float64))
    threshold, thresholds, calibration = calibrate(hold_meta, config.threshold_percentile)
    metrics = {"threshold_calibration": calibration,
               **evaluate(hold_meta, train_meta, thresholds, config.k, config.alpha),
               "baselines": {"tokens": "templates", "test_case_roc_auc": baselines.roc_auc()},
               "leak_audit": audit}
    value = metrics["test_case"]["roc_auc"]
    log(f"reference for explanations and drift: {len(train_meta):,} training scores, "
        f"{int(train_meta['normal'].sum()):,} normal sequences")
    return ModelBundle(
        model=kind.name, estimator=estimator, vectorizer=vectorizer, threshold=threshold,
        threshold_percentile=config.threshold_percentile, split=split,
        training_rows=len(train_meta), fitted_rows=int(mask.sum()),
        holdout_rows=len(hold_meta), seed=config.seed,
        params=_simple_params(estimator), metrics=metrics,
        gate={"metric": GATE_METRIC, "floor": config.min_test_case_roc_auc, "value": value,
              "passed": value is not None and value > config.min_test_case_roc_auc},
        versions=library_versions(), templates_digest=templates_digest,
        reference=reference.build(train_meta["score"].to_numpy()),
        holdout=judged(hold_meta, thresholds))


def _matrix(vectorizer: SequenceVectorizer, sources: list[RunBatches], columns: list[str],
            each: Callable[[pl.DataFrame], object] = lambda _: None
            ) -> tuple[pl.DataFrame, sparse.csr_matrix]:
    """Meta columns and feature rows of every sequence of ``sources``, one batch at a time
    (each batch is also handed to ``each``)."""
    metas: list[pl.DataFrame] = []
    blocks: list[sparse.csr_matrix] = []
    for source in sources:
        for batch in source(columns):
            each(batch)
            metas.append(batch.select(META_COLUMNS))
            blocks.append(vectorizer.transform(batch))
    if not metas:
        empty = pl.DataFrame(schema={c: pl.Boolean if c in FLAGS else pl.String
                                     for c in META_COLUMNS})
        return empty, sparse.csr_matrix((0, len(vectorizer.feature_names)))
    return pl.concat(metas), sparse.vstack(blocks, format="csr")


def predict(bundle: ModelBundle, batches: Iterable[pl.DataFrame], split: str) -> pl.DataFrame:
    """Predictions (:data:`PREDICTIONS_SCHEMA`), most anomalous first, ranked within each run;
    test cases are rolled up per run. The bundle is only applied, never fitted. ``split`` says
    whether the run trained the model."""
    parts = [b.select(META_COLUMNS).with_columns(pl.Series("score", bundle.scores(b),
                                                           pl.Float64))
             for b in batches]
    frame = pl.concat(parts) if parts else pl.DataFrame(
        schema={**{c: PREDICTIONS_SCHEMA[c] for c in META_COLUMNS if c != "normal"},
                "normal": pl.Boolean(), "score": pl.Float64()})
    case = ["run", "test_case"]
    frame = frame.sort(["score", "seq_id"], descending=[True, False]).with_columns(
        pl.lit(bundle.threshold, pl.Float64).alias("threshold"),
        (pl.col("score") > bundle.threshold).alias("pred_ano_original"),
        (~pl.col("normal")).alias("anomaly_original"),
        pl.int_range(1, pl.len() + 1, dtype=pl.UInt32).over("run").alias("rank"),
        pl.lit(split).alias("split"),
    ).with_columns(
        (pl.col("pred_ano_original") & ~pl.col("is_fp_allowlisted")).alias("pred_ano"),
    ).with_columns(
        pl.col("score").max().over(case).alias("test_case_score"),
        pl.col("pred_ano").any().over(case).alias("test_case_pred_ano"),
        pl.col("anomaly").any().over(case).alias("test_case_anomaly"),
    )
    cases = (frame.select(*case, "test_case_score").unique()
             .sort(["test_case_score", "test_case"], descending=[True, False])
             .with_columns(pl.int_range(1, pl.len() + 1, dtype=pl.UInt32).over("run")
                           .alias("test_case_rank")))
    return frame.join(cases.drop("test_case_score"), on=case, how="left",
                      maintain_order="left").select(
        [pl.col(c).cast(t) for c, t in PREDICTIONS_SCHEMA.items()])


def top_test_cases(predictions: pl.DataFrame, n: int) -> pl.DataFrame:
    """A run's ``n`` most anomalous test cases, each with the service that scored highest."""
    return (predictions.filter(pl.col("test_case_rank") <= n)
            .group_by("test_case_rank", "test_case", "test_case_score", "test_case_anomaly")
            .agg(pl.col("service").sort_by("score", descending=True).first()
                 .alias("top_service"))
            .sort("test_case_rank")
            .with_columns(pl.col("test_case_rank").cast(pl.Int64)))


def _simple_params(estimator: Any) -> dict[str, Any]:
    """The estimator's hyperparameters that are plain values (for model.yml)."""
    params = estimator.get_params(deep=True)
    return {k: v for k, v in sorted(params.items())
            if isinstance(v, bool | int | float | str) or v is None}


def library_versions() -> dict[str, str]:
    """Versions that decide whether a bundle loads and scores the same elsewhere."""
    names = ("lo2_dagster", "scikit-learn", "numpy", "scipy", "polars", "joblib")
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "unknown"
    return versions


def git_commit() -> str | None:
    """The code's commit (with ``-dirty`` if it has uncommitted changes), if it is a checkout."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], check=True,
                                capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain",
                                "--untracked-files=no"], check=True, capture_output=True,
                               text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}-dirty" if dirty else commit


@dataclass(frozen=True)
class BundleFiles:
    """The three files of a persisted bundle, as bytes, in the order they are written (the
    record last: a record naming the sha256 of a complete model file marks a complete set)."""

    sha256: str
    files: dict[str, bytes]


def bundle_files(bundle: ModelBundle, commit: str | None) -> BundleFiles:
    """Serialize a bundle: ``model.joblib``, ``metrics.json`` and ``model.yml``, the same bytes
    for the same bundle and commit. No file says when it was written (Dagster's event log
    does): retraining on the same data rewrites the same bytes."""
    buffer = io.BytesIO()
    joblib.dump(bundle, buffer, compress=3)
    payload = buffer.getvalue()
    sha = hashlib.sha256(payload).hexdigest()
    runs = {"training_runs": list(bundle.split.training),
            "holdout_runs": list(bundle.split.holdout)}
    metrics = {**runs, "threshold": bundle.threshold, "quality_gate": bundle.gate,
               **bundle.metrics}
    record = {
        "model": bundle.model,
        "sha256": sha,
        "training_rows": bundle.training_rows,
        "fitted_rows": bundle.fitted_rows,
        "holdout_rows": bundle.holdout_rows,
        **runs,
        "params": bundle.params,
        "features": bundle.vectorizer.summary(),
        "threshold": bundle.threshold,
        "threshold_percentile": bundle.threshold_percentile,
        "threshold_calibration": bundle.metrics["threshold_calibration"],
        "seed": bundle.seed,
        "quality_gate": bundle.gate,
        "metrics": {level: bundle.metrics[level] for level in ("test_case", "sequence", "event")},
        "templates_digest": bundle.templates_digest,
        "versions": bundle.versions,
        "git_commit": commit,
    }
    return BundleFiles(sha, {
        MODEL_FILE: payload,
        METRICS_FILE: json.dumps(metrics, indent=2, sort_keys=False).encode(),
        RECORD_FILE: yaml.safe_dump(record, sort_keys=False).encode(),
    })


def save_bundle(bundle: ModelBundle, folder: str | Path) -> str:
    """Write the bundle's files into a local folder; returns the sha256 of ``model.joblib``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = bundle_files(bundle, git_commit())
    for name, data in files.files.items():
        (folder / name).write_bytes(data)
    return files.sha256


def verify_bundle(path: Any, expected_sha256: str | None = None) -> tuple[bytes, str]:
    """The bytes of a bundle's ``model.joblib`` (``path``: its folder or the file) and their
    sha256, once that is the one ``model.yml`` recorded at training time (and
    ``expected_sha256``, e.g. Dagster's record of the materialization, if given); else a
    BundleError naming the file and the fix. Nothing is unpickled."""
    location = Path(path) if isinstance(path, str) else path
    folder = location.parent if location.name == MODEL_FILE else location
    model_path, record_path = folder / MODEL_FILE, folder / RECORD_FILE
    fix = ("run `lo2-dagster run` (it retrains a damaged model), or materialize "
           "lo2/anomaly_model again")
    for needed in (model_path, record_path):
        if not needed.exists():
            raise BundleError(f"{needed} is missing: {fix}.")
    try:
        recorded = yaml.safe_load(record_path.read_text())["sha256"]
    except Exception as e:
        raise BundleError(f"{record_path} has no readable sha256 ({e}): {fix}.") from e
    if not isinstance(recorded, str) or not re.fullmatch(r"[0-9a-f]{64}", recorded):
        raise BundleError(f"{record_path} records no sha256 ({recorded!r}), so {model_path} "
                          f"cannot be verified and is not loaded: {fix}.")
    payload = model_path.read_bytes()
    actual = hashlib.sha256(payload).hexdigest()
    for source, want in ((str(record_path), recorded), ("Dagster's record", expected_sha256)):
        if want is not None and actual != want:
            raise BundleError(
                f"{model_path} has sha256 {actual}, but {source} says {want}: the file was "
                f"changed or replaced after training, and joblib files are pickles (loading "
                f"one runs code), so it is not loaded. If you did not change it, {fix}.")
    return payload, actual


def load_bundle(path: Any, expected_sha256: str | None = None) -> ModelBundle:
    """Load a bundle from its folder (or its ``model.joblib``) after ``verify_bundle``: a file
    that is not the one trained is refused unread."""
    payload, actual = verify_bundle(path, expected_sha256)
    location = Path(path) if isinstance(path, str) else path
    model_path = location if location.name == MODEL_FILE else location / MODEL_FILE
    bundle = joblib.load(io.BytesIO(payload))
    if not isinstance(bundle, ModelBundle):
        raise BundleError(f"{model_path} holds a {type(bundle).__name__}, not a ModelBundle")
    bundle.sha256 = actual
    current = library_versions()
    drifted = [f"{k} {v} (now {current.get(k)})" for k, v in bundle.versions.items()
               if k in ("scikit-learn", "numpy", "scipy") and current.get(k) != v]
    if drifted:
        warnings.warn(f"{model_path} was trained with {', '.join(drifted)}: scores may differ; "
                      "retrain to be sure.", stacklevel=2)
    return bundle
