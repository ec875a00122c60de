"""Explanations, drift and report plots without Dagster: exact contributions, rare templates,
nearest normals, the FP list, PSI of template mixes and valid PNGs."""

import base64
import io
import re
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from matplotlib.image import imread

from lo2_dagster.lib import explain as ex
from lo2_dagster.lib import model as lib
from lo2_dagster.lib.drift import DEFAULT_WARN_PSI, drift, template_events, template_psi
from lo2_dagster.lib.metrics import false_positives
from lo2_dagster.lib.reference import ReferenceBuilder
from lo2_dagster.lib.registry import REGISTRY
from lo2_dagster.lib.report import (
    curves_png,
    global_top_features,
    markdown_image,
    score_distributions_png,
    top_features_png,
)
from lo2_dagster.lib.vectorize import FeatureSpec
from lo2_dagster_tests.test_model_lib import RUNS, dataset, source

PNG = b"\x89PNG\r\n\x1a\n"
#: light-4j's thread names: never a reason.
THREADS = r"XNIO-\d|task-\d|hz\._hzInstance|\[main\]"


def noise(texts: pl.Series, lo2: Path, runs: list[str]) -> list[str]:
    """The texts that name a thread or one of the runs' correlation ids (from their raw
    events under ``lo2``, the warehouse's ``lo2`` folder)."""
    ids = set(pl.concat(pl.read_parquet(lo2 / "raw_events" / f"{run}.parquet",
                                        columns=["correlation_id"]) for run in runs)
              ["correlation_id"].drop_nulls().to_list())
    return [t for t in texts.to_list()
            if re.search(THREADS, t) or ids & set(re.findall(r"[A-Za-z0-9_-]{22}", t))]


def _real(generated, name=lib.DEFAULT_MODEL, **config):
    runs = {r: source(pl.read_parquet(p), lib.BATCH_ROWS) for r, p in generated.items()}
    return lib.train(runs, lib.TrainingConfig(model=name, **config))


def _warehouse(generated):
    return next(iter(generated.values())).parent.parent  # <warehouse>/lo2


def _templates(generated) -> dict[str, str]:
    table = pl.read_parquet(_warehouse(generated) / "drain_templates" / "templates.parquet")
    return dict(table.select("template_id", "template").iter_rows())


def _run(generated, bundle, run):
    return pl.read_parquet(generated[run], columns=ex.sequence_columns(bundle))


def _examples(generated, run, ids):
    events = pl.scan_parquet(_warehouse(generated) / "events_enhanced" / f"{run}.parquet")
    return ex.example_lines(events, ids)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_contributions_add_up_exactly_to_the_model_value(name):
    frames = dataset(dict.fromkeys(RUNS, True))
    features = None if name == "template_rates" else FeatureSpec(("drain", "words", "numeric"))
    bundle = lib.train({r: source(f) for r, f in frames.items()},
                       lib.TrainingConfig(model=name, holdout_fraction=0.34, features=features))
    batch = pl.concat(frames.values())
    matrix = bundle.vectorizer.transform(batch)
    contrib = ex.contributions(bundle.estimator, matrix)
    value = ex.model_value(bundle.estimator, matrix)
    total = contrib.base + np.asarray(contrib.values.sum(axis=1)).ravel()
    np.testing.assert_allclose(total, value, rtol=1e-9, atol=1e-9)
    # The value is the score, or the score is a fixed monotone function of it.
    scores = bundle.scores(batch)
    if name in ("logistic_regression", "gradient_boosting"):
        np.testing.assert_allclose(1 / (1 + np.exp(-value)), scores, rtol=1e-9)
    elif name == "isolation_forest":
        c = ex._average_depth(np.array([bundle.estimator[-1]._max_samples]))[0]
        np.testing.assert_allclose(2 ** (value / c), scores, rtol=1e-9)
    else:
        np.testing.assert_allclose(value, scores, rtol=1e-9, atol=1e-12)


def test_a_linear_model_s_contributions_are_coefficient_times_feature():
    frames = dataset(dict.fromkeys(RUNS, True))
    bundle = lib.train({r: source(f) for r, f in frames.items()},
                       lib.TrainingConfig(model="logistic_regression", holdout_fraction=0.34))
    batch = frames[RUNS[0]]
    pipeline = bundle.estimator
    transformed = pipeline[:-1].transform(bundle.vectorizer.transform(batch)).toarray()
    contrib = ex.contributions(pipeline, bundle.vectorizer.transform(batch))
    np.testing.assert_allclose(contrib.values.toarray(),
                               transformed * pipeline[-1].coef_[0], rtol=1e-12)
    np.testing.assert_allclose(contrib.base + contrib.values.sum(axis=1).A.ravel(),
                               pipeline.decision_function(bundle.vectorizer.transform(batch)))
    # The anomalous template e9 pushes error sequences up, and is their top feature.
    [top] = ex.top_features(contrib, bundle.vectorizer.feature_names, {}, top=1)[-1:]
    assert top[0]["feature"] == "drain:e9" and top[0]["contribution"] > 0


def test_an_injected_unseen_template_is_the_top_reason(generated):
    bundle = _real(generated)
    run = bundle.split.holdout[0]
    frame = _run(generated, bundle, run)
    correct = frame.filter(pl.col("normal") & (pl.col("service") == "token"))
    examples = _examples(generated, run, correct["seq_id"].to_list())
    templates = _templates(generated)
    before = ex.explain(bundle, correct, examples, templates)
    assert "e999" not in before["reason"][0]

    injected = correct.with_columns(pl.col(ex.TEMPLATES).list.concat(
        pl.lit(["e999", "e999", "e999"], dtype=pl.List(pl.String))))
    line = "Refusing connection: certificate for key-service expired"
    examples = pl.concat([examples, pl.DataFrame(
        {"seq_id": correct["seq_id"], "template": ["e999"], "example": [line]})])
    after = ex.explain(bundle, injected, examples, {**templates, "e999": "Refusing <*>"})
    row = after.row(0, named=True)
    assert row["score"] > before["score"][0]
    assert row["top_features"][0]["feature"] == "drain:<oov>"
    # Among the templates the token service's normal sequences never show, with its line.
    assert {"template_id": "e999", "template": "Refusing <*>", "count": 3, "normal_share": 0.0,
            "example": line} in row["rare_templates"]
    assert row["reason"] == f"template e999 (never seen in normal training, x3): {line}"
    assert ex.run_summary(after, 54, bundle.threshold).count("e999") == 1


@pytest.mark.parametrize("name", ["rare_tokens", lib.DEFAULT_MODEL])
def test_reasons_are_templates_not_threads_or_correlation_ids(generated, name):
    features = FeatureSpec(("drain", "words", "numeric")) if name == "rare_tokens" else None
    bundle = _real(generated, name, features=features)
    run = bundle.split.holdout[0]
    frame = _run(generated, bundle, run).with_columns(
        pl.int_range(pl.len(), dtype=pl.UInt32).alias("rank"))
    out = ex.explain(bundle, frame, _examples(generated, run, frame["seq_id"].to_list()),
                     _templates(generated))
    features = out.select(pl.col("top_features").explode().struct.field("feature"))["feature"]
    # rare_tokens: several features per sequence; template_rates: new templates and a shift
    assert len(features) > (len(frame) if name == "rare_tokens" else 0)
    assert not noise(features, _warehouse(generated), list(generated))


def test_nearest_normal_is_the_most_similar_correct_sequence_of_the_same_service(generated):
    bundle = _real(generated)
    reference = bundle.reference
    run = bundle.split.holdout[0]
    frame = _run(generated, bundle, run)
    nearest = ex.nearest_normal(frame, reference)
    normals = {}  # recomputed independently, from the training runs' files
    for r in bundle.split.training:
        for row in pl.read_parquet(generated[r]).filter("normal").iter_rows(named=True):
            normals[row["seq_id"]] = (row["service"], Counter(row[ex.TEMPLATES]))

    def cosine(a: Counter, b: Counter) -> float:
        dot = sum(a[t] * b[t] for t in a)
        return dot / (np.sqrt(sum(v * v for v in a.values()))
                      * np.sqrt(sum(v * v for v in b.values())))

    assert set(reference.normal_meta["seq_id"]) == set(normals)
    for i, row in enumerate(frame.iter_rows(named=True)):
        mine = Counter(row[ex.TEMPLATES])
        best = max(cosine(mine, c) for s, c in normals.values() if s == row["service"])
        found = nearest.seq_id[i]
        if found is None:  # it shares no template with any normal sequence of its service
            assert best == 0 and nearest.similarity[i] is None
            continue
        service, counts = normals[found]
        assert service == row["service"] and "__correct__" in found
        assert found.split("__")[0] in bundle.split.training
        assert nearest.similarity[i] == pytest.approx(cosine(mine, counts))
        assert nearest.similarity[i] == pytest.approx(best) and best > 0
    assert sum(n is not None for n in nearest.seq_id) > len(frame) / 2
    # The differences are the counts of the two sequences.
    diffs = ex.template_differences(frame, reference, nearest, {})
    for i, row in enumerate(frame.head(20).iter_rows(named=True)):
        if nearest.seq_id[i] is None:
            assert diffs[i] == []
            continue
        theirs = normals[nearest.seq_id[i]][1]
        mine = Counter(row[ex.TEMPLATES])
        for d in diffs[i]:
            assert d["count"] == mine[d["template_id"]]
            assert d["normal_count"] == theirs[d["template_id"]]
            assert d["difference"] == d["count"] - d["normal_count"] != 0


def test_a_training_sequence_is_never_its_own_nearest_normal(generated):
    bundle = _real(generated)
    run = bundle.split.training[0]
    correct = _run(generated, bundle, run).filter("normal")
    nearest = ex.nearest_normal(correct, bundle.reference)
    assert all(n != own for n, own in zip(nearest.seq_id, correct["seq_id"], strict=True))
    assert all(s is None or s < 1.0 + 1e-12 for s in nearest.similarity)
    # None only where no other normal training sequence of the service shares a template.
    normals = pl.concat(pl.read_parquet(generated[r]).filter("normal")
                        for r in bundle.split.training)
    for row, found in zip(correct.iter_rows(named=True), nearest.seq_id, strict=True):
        others = normals.filter((pl.col("service") == row["service"])
                                & (pl.col("seq_id") != row["seq_id"]))
        shared = others[ex.TEMPLATES].list.set_intersection(row[ex.TEMPLATES]).list.len()
        assert (found is None) == (shared.max() == 0), row["seq_id"]
    assert sum(n is not None for n in nearest.seq_id) >= len(correct) - 1


def test_the_fp_list_is_exactly_the_holdout_false_positives(generated):
    # A lower threshold percentile than the default gives false positives to list.
    bundle = _real(generated, threshold_percentile=80)
    holdout = bundle.holdout
    fps = false_positives(holdout)
    assert len(fps) == bundle.metrics["sequence"]["confusion_matrix"]["fp"] > 0
    assert fps["normal"].all() and (fps["score"] > fps["threshold"]).all()
    listed = set(fps["seq_id"])
    rest = holdout.filter(pl.col("normal") & ~pl.col("seq_id").is_in(list(listed)))
    assert (rest["score"] <= rest["threshold"]).all()
    # The scores the bundle stored are what the model gives the holdout runs' files.
    for run in bundle.split.holdout:
        frame = _run(generated, bundle, run)
        stored = holdout.filter(pl.col("run") == run).sort("seq_id")
        scored = bundle.score(frame).sort("seq_id")
        np.testing.assert_allclose(stored["score"], scored["score"])


def test_drift_of_templates_is_zero_for_the_same_mix_and_names_what_moved():
    same = {"e1": 100, "e2": 50}
    assert template_psi(same, {"e1": 10, "e2": 5})[0] == pytest.approx(0.0, abs=1e-12)
    value, table = template_psi(same, {"e1": 10, "e2": 50, "e3": 5})
    assert value > DEFAULT_WARN_PSI
    assert table["template_id"].to_list()[0] in ("e2", "e3")
    assert table.filter(pl.col("template_id") == "e3")["training_events"].item() == 0
    assert template_psi({}, same)[0] is None


@pytest.mark.parametrize("name", ["rare_tokens", "random_forest", "logistic_regression"])
def test_an_ordinary_run_does_not_drift(generated, name):
    # Supervised models score their training runs in-sample: the reference must still hold
    # for the runs they never saw (the holdout).
    bundle = _real(generated, name)
    for run in generated:
        frame = _run(generated, bundle, run)
        result = drift(bundle.reference, bundle.scores(frame), template_events(frame))
        assert result.exceeds(DEFAULT_WARN_PSI) == [], (run, result)
        assert result.template_psi < 0.1


def test_report_plots_are_valid_pngs_and_embed_as_markdown_images(generated):
    bundle = _real(generated)
    columns = ex.sequence_columns(bundle)
    batches = (pl.read_parquet(generated[r], columns=columns) for r in bundle.split.holdout)
    top = global_top_features(bundle, batches, _templates(generated))
    assert 0 < len(top) <= 15
    assert top["mean_abs_contribution"].is_sorted(descending=True)
    for png in (curves_png(bundle.holdout), score_distributions_png(bundle.holdout,
                                                                    bundle.threshold),
                top_features_png(top)):
        assert png.startswith(PNG)
        image = imread(io.BytesIO(png), format="png")
        assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 400
        assert np.ptp(image[..., :3]) > 0  # not a blank canvas
        markdown = markdown_image(png, "a plot")
        assert markdown.startswith("![a plot](data:image/png;base64,")
        assert base64.b64decode(markdown[len("![a plot](data:image/png;base64,"):-1]) == png


def test_boosting_attributions_follow_each_split_s_subtree_mean():
    """Path attribution recomputed by hand on a one-tree gradient boosting model: each split on
    a row's path gives its feature the change of the (weighted) mean leaf value below it."""
    from sklearn.ensemble import GradientBoostingClassifier

    frames = dataset(dict.fromkeys(RUNS, True))
    batch = pl.concat(frames.values())
    bundle = lib.train({r: source(f) for r, f in frames.items()},
                       lib.TrainingConfig(model="logistic_regression", holdout_fraction=0.34))
    x = bundle.vectorizer.transform(batch)
    labels = batch["anomaly"].to_numpy()
    model = GradientBoostingClassifier(n_estimators=1, max_depth=3, random_state=0).fit(x, labels)
    t = model.estimators_[0, 0].tree_

    def mean(node: int) -> float:  # independent of the library: recursion over the leaves
        if t.children_left[node] < 0:
            return t.value[node, 0, 0] * model.learning_rate
        a, b = t.children_left[node], t.children_right[node]
        wa, wb = t.weighted_n_node_samples[a], t.weighted_n_node_samples[b]
        return (wa * mean(a) + wb * mean(b)) / (wa + wb)

    dense = x.toarray()  # a tiny test matrix, to walk the tree by hand
    contrib = ex.contributions(model, x)
    for row in range(len(batch)):
        expected = np.zeros(x.shape[1])
        node = 0
        while t.children_left[node] >= 0:
            feature = t.feature[node]
            child = (t.children_left[node] if dense[row, feature] <= t.threshold[node]
                     else t.children_right[node])
            expected[feature] += mean(child) - mean(node)
            node = child
        np.testing.assert_allclose(contrib.values[row].toarray().ravel(), expected, atol=1e-12)
    np.testing.assert_allclose(contrib.base + contrib.values.sum(axis=1).A.ravel(),
                               model.decision_function(x), rtol=1e-9)


def test_a_model_without_drain_features_still_explains_templates(generated):
    bundle = _real(generated, "rare_tokens", features=FeatureSpec(("words", "numeric")))
    run = bundle.split.holdout[0]
    frame = _run(generated, bundle, run)
    flagged = frame.filter(pl.Series(bundle.scores(frame) > bundle.threshold))
    assert len(flagged)
    out = ex.explain(bundle, flagged, _examples(generated, run, flagged["seq_id"].to_list()),
                     _templates(generated))
    features = out.select(pl.col("top_features").explode().struct.field("feature"))["feature"]
    assert features.str.starts_with("words:").any()
    assert not features.str.starts_with("drain:").any()
    assert out["rare_templates"].list.len().sum() > 0
    assert out["nearest_normal"].is_not_null().all()


def test_no_flagged_sequence_and_no_reference_are_said_plainly(generated):
    bundle = _real(generated)
    empty = _run(generated, bundle, bundle.split.holdout[0]).clear()
    out = ex.explain(bundle, empty, pl.DataFrame(), {})
    assert out.schema == pl.Schema(ex.EXPLANATIONS_SCHEMA) and len(out) == 0
    assert ex.run_summary(out, 54, 1.5) == ("No sequence scored above the threshold 1.5: none "
                                            "of the 54 test cases looks anomalous.")
    bundle.reference = None  # a bundle written before explanations existed
    with pytest.raises(ValueError, match="materialize lo2/anomaly_model again"):
        ex.explain(bundle, _run(generated, bundle, bundle.split.holdout[0]), pl.DataFrame(), {})


def test_without_normal_training_sequences_there_is_no_nearest_normal():
    frames = dataset(dict.fromkeys(RUNS, True))
    builder = ReferenceBuilder()
    for frame in frames.values():
        builder.add(frame.filter(~pl.col("normal")))
    reference = builder.build(np.zeros(3))
    assert reference.normal_sequences == 0 and reference.template_events["e9"] > 0
    nearest = ex.nearest_normal(frames[RUNS[0]], reference)
    assert nearest.seq_id == [None] * len(frames[RUNS[0]])


def test_the_drift_level_comes_from_config_then_environment(monkeypatch):
    from lo2_dagster import settings

    monkeypatch.delenv(settings.ENV_DRIFT_WARN_PSI, raising=False)
    assert settings.drift_warn_psi() == DEFAULT_WARN_PSI
    monkeypatch.setenv(settings.ENV_DRIFT_WARN_PSI, "0.4")
    assert settings.drift_warn_psi() == 0.4
    assert settings.drift_warn_psi(0.1) == 0.1
    monkeypatch.setenv(settings.ENV_DRIFT_WARN_PSI, "high")
    with pytest.raises(ValueError, match="LO2_DRIFT_WARN_PSI must be a number, got 'high'"):
        settings.drift_warn_psi()
