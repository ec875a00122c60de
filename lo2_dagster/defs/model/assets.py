"""The anomaly model: fitted on training runs, evaluated on holdout runs, persisted with joblib."""

import functools
import time

import dagster as dg
import polars as pl
from upath import UPath

from lo2_dagster.defs.automation import on_any_run_changed, on_retrain_cron_or_new_templates
from lo2_dagster.defs.keys import (
    ANOMALY_MODEL,
    DRAIN_TEMPLATES,
    MODEL_GATE_CHECK,
    MODEL_GROUP,
    OWNERS,
    SEQUENCES_ENHANCED,
    TRAINING_POOL,
    TRAINING_SET,
)
from lo2_dagster.defs.lineage import current_templates
from lo2_dagster.defs.resources import Lo2Root
from lo2_dagster.defs.runs import ALL_RUNS, RUNS
from lo2_dagster.lib.layout import LayoutError, logs_dir
from lo2_dagster.lib.metrics import format_figure, trainable_runs
from lo2_dagster.lib.model import (
    BATCH_ROWS,
    DEFAULT_MODEL,
    METRICS_FILE,
    RECORD_FILE,
    ModelBundle,
    TrainingConfig,
    bundle_files,
    git_commit,
    train,
)
from lo2_dagster.lib.registry import REGISTRY, model_kind
from lo2_dagster.lib.vectorize import FeatureSpec
from lo2_dagster.meta import bullet_list, markdown_table, model_quality
from lo2_dagster.storage import Warehouse, iter_parquet, read_parquet
from lo2_dagster.versions import fingerprint_of, partition_data_versions

#: The figures shown (and plotted over materializations) for each evaluation level.
FIGURES = ("roc_auc", "pr_auc", "f1", "precision", "recall", "accuracy", "precision_at_k",
           "fp_rate", "fp_rate_at_alpha", "psi_train_vs_holdout")


class AnomalyModelConfig(dg.Config):
    """Model, features, split and threshold (Launchpad in the UI)."""

    model: str = DEFAULT_MODEL
    """One of: template_rates (the default: per-service template rates), isolation_forest,
    rare_tokens (unsupervised: trained on correct sequences only), logistic_regression,
    decision_tree, random_forest, gradient_boosting."""
    features: list[str] = []  # noqa: RUF012 (pydantic copies)
    """Empty: the model's own. Any of drain, words, trigrams (bags of templates, words or
    trigrams per sequence), service (one-hot), events (the template events, the denominator of
    rates) and numeric (length, duration, word and trigram counts: they give LO2 v1's labels
    away, see the leak audit)."""
    exclude_startup: bool = FeatureSpec().exclude_startup
    """Leave out start-up templates (only ever in the first test case of a run)."""
    max_tokens: int = FeatureSpec().max_tokens
    """Columns per bag at most: the tokens in most training sequences."""
    min_df: int = FeatureSpec().min_df
    holdout_fraction: float = TrainingConfig().holdout_fraction
    """Share of runs held out (whole runs, never rows) to evaluate on."""
    seed: int = TrainingConfig().seed
    threshold_percentile: float = TrainingConfig().threshold_percentile
    """Percentile of holdout correct sequences' scores that becomes the threshold."""
    alpha: float = TrainingConfig().alpha
    k: int = TrainingConfig().k
    min_test_case_roc_auc: float = TrainingConfig().min_test_case_roc_auc
    """The quality gate: holdout test-case ROC AUC must be above this."""

    def training(self) -> TrainingConfig:
        try:
            features = tuple(self.features) or model_kind(self.model).features
            return TrainingConfig(
                model=self.model,
                features=FeatureSpec(features, self.max_tokens, self.min_df,
                                     self.exclude_startup),
                holdout_fraction=self.holdout_fraction, seed=self.seed,
                threshold_percentile=self.threshold_percentile, alpha=self.alpha, k=self.k,
                min_test_case_roc_auc=self.min_test_case_roc_auc)
        except ValueError as e:
            raise dg.Failure(description=f"lo2/anomaly_model config: {e}") from e


@dg.asset(
    key=TRAINING_SET,
    deps=[SEQUENCES_ENHANCED],
    automation_condition=on_any_run_changed(),
    group_name=MODEL_GROUP,
    code_version="fingerprint-1",
    kinds={"polars", "parquet"},
    owners=OWNERS,
    description=(
        "The training set's fingerprint: one row per run partition with the data version of its "
        "lo2/sequences_enhanced, and a hash of them all as this asset's data version. Cheap "
        "(Dagster's event log only, no data read). Dagster does not track the data versions of "
        "an upstream with 100 or more partitions for an unpartitioned downstream, so the model "
        "reads its staleness from this asset: a new or changed run changes the fingerprint and "
        "makes lo2/anomaly_model stale, at any number of runs."
    ),
)
def training_set(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.Output:
    runs = context.instance.get_dynamic_partitions(RUNS.name)
    versions = _training_set(context.instance)
    frame = pl.DataFrame({"run": list(versions), "data_version": list(versions.values())},
                         schema={"run": pl.String, "data_version": pl.String})
    fingerprint = fingerprint_of(versions)
    previous_path = warehouse.path_for(TRAINING_SET)
    previous = dict(read_parquet(previous_path).iter_rows()) if previous_path.exists() else {}
    changes = {
        "added": sorted(set(versions) - set(previous)),
        "removed": sorted(set(previous) - set(versions)),
        "changed": sorted(r for r in set(versions) & set(previous) if versions[r] != previous[r]),
    }
    context.log.info(f"{len(versions)} runs with enhanced sequences; fingerprint {fingerprint}; "
                     + ", ".join(f"{len(v)} {k}" for k, v in changes.items()))
    return dg.Output(frame, data_version=dg.DataVersion(fingerprint), metadata={
        "dagster/row_count": len(frame),
        "runs": len(versions),
        "runs_without_sequences": len(runs) - len(versions),
        "fingerprint": fingerprint,
        **{f"runs_{k}": len(v) for k, v in changes.items()},
        **{f"{k}_runs": bullet_list(v[:50]) for k, v in changes.items()},
    })


def _training_set(instance: dg.DagsterInstance) -> dict[str, str]:
    """Run -> data version of its enhanced sequences, for every run partition that has them."""
    return partition_data_versions(instance, SEQUENCES_ENHANCED,
                                   instance.get_dynamic_partitions(RUNS.name))


@dg.asset(
    key=ANOMALY_MODEL,
    ins={"sequences": dg.AssetIn(SEQUENCES_ENHANCED, metadata=ALL_RUNS)},
    # The fingerprint carries staleness past 100 runs; the templates' ids index the features.
    deps=[TRAINING_SET, DRAIN_TEMPLATES],
    io_manager_key="model_store",
    automation_condition=on_retrain_cron_or_new_templates(),
    pool=TRAINING_POOL,
    group_name=MODEL_GROUP,
    code_version="model-4",
    kinds={"scikit-learn", "joblib"},
    owners=OWNERS,
    check_specs=[dg.AssetCheckSpec(
        MODEL_GATE_CHECK, asset=ANOMALY_MODEL, blocking=True,
        description="Quality gate: holdout ROC AUC at test-case level above the configured "
                    "floor. Blocks predictions from a model that regressed.")],
    description=(
        "The anomaly model bundle (model + vectorizer + threshold + run split + metrics), "
        "trained on the training runs' enhanced sequences and evaluated on holdout runs only "
        "(split by run). Files: `<warehouse>/lo2/anomaly_model/` (`model.joblib`, "
        "`model.yml`, `metrics.json`); model.yml records the sha256 that loading verifies. Models: "
        + ", ".join(f"{k.name} ({k.description})" for k in REGISTRY.values()) + "."
    ),
)
def anomaly_model(
    context: dg.AssetExecutionContext,
    config: AnomalyModelConfig,
    sequences: dict[str, UPath],
    warehouse: Warehouse,
    lo2_root: Lo2Root,
):
    training = config.training()
    if not sequences:
        raise dg.Failure(description="No run has lo2/sequences_enhanced yet: materialize it "
                                     "for at least two runs first.")
    digest = current_templates(context, {SEQUENCES_ENHANCED: sorted(sequences)})
    sequences, left_out = _trainable(context, sequences, lo2_root)
    runs = {run: functools.partial(iter_parquet, path, batch_rows=BATCH_ROWS)
            for run, path in sequences.items()}
    started = time.perf_counter()
    try:
        bundle = train(runs, training, templates_digest=digest, log=context.log.info)
    except ValueError as e:
        raise dg.Failure(description=f"lo2/anomaly_model: {e}") from e
    seconds = time.perf_counter() - started
    files = bundle_files(bundle, git_commit())
    folder = warehouse.folder_for(ANOMALY_MODEL)
    context.log.info(f"{bundle.model}: holdout test-case ROC AUC "
                     f"{format_figure(bundle.metrics['test_case']['roc_auc'])}, sequence ROC AUC "
                     f"{format_figure(bundle.metrics['sequence']['roc_auc'])}; threshold "
                     f"{bundle.threshold:.4g}; {seconds:.1f} s")
    yield dg.Output(files, data_version=dg.DataVersion(files.sha256),
                    metadata={**_metadata(bundle, files.sha256, folder, seconds),
                              "runs_left_out": bullet_list(
                                  [f"{run}: {why}" for run, why in left_out.items()])})
    gate = bundle.gate
    yield dg.AssetCheckResult(
        check_name=MODEL_GATE_CHECK, passed=bool(gate["passed"]),
        metadata={"metric": gate["metric"], "floor": gate["floor"],
                  "value": dg.MetadataValue.float(gate["value"]) if gate["value"] is not None
                  else dg.MetadataValue.text("undefined (holdout has one class only)")},
        description=None if gate["passed"] else (
            f"Holdout test-case ROC AUC {format_figure(gate['value'])} is not above "
            f"{gate['floor']}: predictions refuse this model. Check the data, try another "
            "model or features, or lower min_test_case_roc_auc deliberately."))


def _trainable(context: dg.AssetExecutionContext, sequences: dict[str, UPath],
               lo2_root: Lo2Root) -> tuple[dict[str, UPath], dict[str, str]]:
    """The runs to train on, and the runs left out with the reason (each warned about): runs
    whose folder is gone, runs without ``correct`` sequences."""
    root = lo2_root.resolve()
    try:
        logs = logs_dir(root)
        gone = [run for run in sequences if not (logs / run).is_dir()]
    except LayoutError:
        context.log.warning(f"LO2 root {root} is not there: cannot tell which run folders were "
                            "deleted, so every run with sequences is used.")
        gone = []
    if gone and len(gone) == len(sequences):
        raise dg.Failure(description=(
            f"None of the {len(sequences)} runs with sequences has its folder under the LO2 "
            f"root {root} (e.g. {gone[0]}). Is LO2_ROOT (or --root) the root they were read "
            "from?"))
    normal = {run: int(read_parquet(path, columns=["normal"])["normal"].sum())
              for run, path in sequences.items()}
    kept, left_out = trainable_runs(normal, gone)
    for run, why in left_out.items():
        context.log.warning(f"lo2/anomaly_model leaves out run {run}: {why}.")
    return {run: sequences[run] for run in kept}, left_out


def _metadata(bundle: ModelBundle, sha: str, folder: UPath, seconds: float) -> dict:
    """What the asset page shows: figures per level (numbers, plotted over materializations),
    the split, the recall tables and the files."""
    metrics = bundle.metrics
    figures = {}
    for level in ("test_case", "sequence"):
        for name in FIGURES:
            value = metrics[level][name]
            figures[f"{level}/{name}"] = (dg.MetadataValue.float(float(value))
                                          if value is not None else dg.MetadataValue.null())
        for name, count in metrics[level]["confusion_matrix"].items():
            figures[f"{level}/{name}"] = dg.MetadataValue.int(count)
    confusion = pl.DataFrame([{"level": level, **metrics[level]["confusion_matrix"]}
                              for level in ("test_case", "sequence")])
    baselines = metrics.get("baselines", {}).get("test_case_roc_auc", {})
    for name, value in baselines.items():
        figures[f"baseline/{name}/test_case/roc_auc"] = (
            dg.MetadataValue.float(float(value)) if value is not None
            else dg.MetadataValue.null())
    return {
        **figures,
        **model_quality(bundle.model, metrics),
        "model": bundle.model,
        "features": ", ".join(bundle.vectorizer.spec.features),
        "feature_columns": len(bundle.vectorizer.feature_names),
        "threshold": bundle.threshold,
        "threshold_percentile": bundle.threshold_percentile,
        "threshold_calibration": metrics["threshold_calibration"],
        "training_runs": bullet_list(list(bundle.split.training)),
        "holdout_runs": bullet_list(list(bundle.split.holdout)),
        "training_rows": bundle.training_rows,
        "fitted_rows": bundle.fitted_rows,
        "holdout_rows": bundle.holdout_rows,
        "confusion_matrices": markdown_table(confusion),
        "recall_by_test_case": markdown_table(pl.DataFrame(metrics["recall_by_test_case"])),
        "recall_by_service": markdown_table(pl.DataFrame(metrics["recall_by_service"])),
        "event_level": metrics["event"]["reason"],
        "vectorizer": dg.MetadataValue.json(bundle.vectorizer.summary()),
        "params": dg.MetadataValue.json(bundle.params),
        "versions": dg.MetadataValue.json(bundle.versions),
        "quality_gate": dg.MetadataValue.json(bundle.gate),
        "sha256": sha,
        "model_yml": dg.MetadataValue.path(str(folder / RECORD_FILE)),
        "metrics_json": dg.MetadataValue.path(str(folder / METRICS_FILE)),
        "seconds": round(seconds, 2),
    }
