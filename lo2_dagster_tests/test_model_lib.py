"""The model library without Dagster: vectorizer, split, metrics, registry, bundle files."""

import datetime as dt
import json
import pickle
import subprocess
import sys

import numpy as np
import polars as pl
import pytest
import yaml
from sklearn.metrics import roc_auc_score

from lo2_dagster.lib import model as lib
from lo2_dagster.lib.metrics import by_test_case, calibrate, psi, split_runs
from lo2_dagster.lib.registry import REGISTRY, RareTokenDetector
from lo2_dagster.lib.vectorize import FeatureSpec, SequenceVectorizer

RUNS = [f"light-oauth2-data-17196{i:05d}" for i in range(6)]
CASES = ["correct", "access_token_client_secret_wrong_401", "user_not_found_404"]
SERVICES = ["token", "code", "client"]
WHEN = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def sequences(run: str, ids: dict[tuple[str, str], list[str]]) -> pl.DataFrame:
    """A run's enhanced sequences with the columns the model reads: Drain ids as given,
    words and trigrams derived from them."""
    rows = []
    cases = list(dict.fromkeys(case for case, _ in ids))
    for (case, service), drain in ids.items():
        words = [f"w{d}" for d in drain]
        trigrams = [w[:3] for w in words]
        rows.append({
            "seq_id": f"{run}__{case}__{service}", "run": run, "test_case": case,
            "service": service, "normal": case == "correct", "anomaly": case != "correct",
            "is_fp_allowlisted": False, "e_event_drain_id": drain, "e_words": words,
            "e_trigrams": trigrams, "seq_len": len(drain), "duration_sec": len(drain) * 2,
            "e_words_len": len(words), "e_trigrams_len": len(trigrams),
            "start_time": WHEN.replace(tzinfo=None) + dt.timedelta(minutes=cases.index(case))})
    return pl.DataFrame(rows, schema_overrides={"seq_len": pl.UInt32,
                                                "e_words_len": pl.UInt32,
                                                "e_trigrams_len": pl.UInt32})


def source(frame: pl.DataFrame, rows: int = 2) -> lib.RunBatches:
    """Batches of ``rows`` sequences (default two: many batches), as the assets read a file a
    batch at a time (they read lib.BATCH_ROWS)."""
    return lambda columns: [frame.select(columns).slice(i, rows)
                            for i in range(0, len(frame), rows)]


def dataset(signal: dict[str, bool], cases: list[str] = CASES) -> dict[str, pl.DataFrame]:
    """Runs where error cases' sequences carry template e9, unless ``signal[run]`` is False:
    then it is the correct case's that do (a holdout that contradicts training)."""
    frames = {}
    for run in RUNS:
        ids = {}
        for case in cases:
            for i, service in enumerate(SERVICES):
                base = ["e1", *["e2"] * (1 + (i + len(frames)) % 3), "e3"]
                marked = (case != "correct") == signal[run]
                ids[(case, service)] = base + (["e9", "e9"] if marked else [])
        frames[run] = sequences(run, ids)
    return frames


#: As in LO2, most test cases are errors of their own kind.
MANY_CASES = ["correct", *(f"error_case_{k}" for k in range(16))]


def test_split_is_by_run_without_overlap_and_deterministic():
    split = split_runs(RUNS, 0.34, seed=3)
    assert not set(split.training) & set(split.holdout)
    assert sorted(split.training + split.holdout) == sorted(RUNS)
    assert len(split.holdout) == 3  # ceil(0.34 x 6)
    assert split_runs(list(reversed(RUNS)), 0.34, seed=3) == split
    assert {split_runs(RUNS, 0.34, seed=s).holdout for s in range(10)} != {split.holdout}
    assert len(split_runs(RUNS[:2], 0.9, seed=0).training) == 1  # always one to train on
    with pytest.raises(ValueError, match="at least 2 runs"):
        split_runs(RUNS[:1], 0.2, seed=0)


def test_vectorizer_counts_tokens_caps_the_vocabulary_and_counts_unseen_tokens():
    train = sequences("r", {("correct", "a"): ["e1", "e1", "e2"], ("correct", "b"): ["e1"],
                            ("correct", "c"): ["e3"]})
    spec = FeatureSpec(features=("drain", "numeric"), max_tokens=2)
    vec = SequenceVectorizer.fit(spec, [train.slice(0, 2), train.slice(2)])
    drain = vec.vocabularies[0]
    # e1 is in 2 sequences; e2 and e3 in one each: the cap keeps e1 and e2 (tie by token).
    assert drain.tokens == ("e1", "e2") and drain.document_frequency == (2, 1)
    assert drain.distinct_in_training == 3 and drain.dropped == 1
    assert vec.feature_names == ("drain:e1", "drain:e2", "drain:<oov>", "numeric:seq_len",
                                 "numeric:duration_sec", "numeric:e_words_len",
                                 "numeric:e_trigrams_len")
    new = sequences("s", {("x", "a"): ["e1", "e1", "e1", "e3", "e4", "e4"], ("x", "b"): []})
    dense = vec.transform(new).toarray()
    assert dense[0].tolist() == [3, 0, 2, 6, 12, 6, 6]  # 2 distinct unseen tokens: e3, e4
    assert dense[1].tolist() == [0, 0, 0, 0, 0, 0, 0]
    with pytest.raises(ValueError, match="choose one or more of"):
        FeatureSpec(features=("drain", "threads"))
    with pytest.raises(ValueError, match=r"template_rates needs the features drain, events.*"
                                         r"add events"):
        lib.TrainingConfig(model="template_rates", features=FeatureSpec(("drain", "service")))


def test_a_vectorizer_pickled_before_services_and_exclusions_still_transforms():
    train = sequences("r", {("correct", "a"): ["e1", "e2"], ("correct", "b"): ["e1"]})
    vec = SequenceVectorizer.fit(FeatureSpec(features=("drain",)), [train])
    del vec.__dict__["services"], vec.__dict__["excluded"]  # what an older bundle holds
    old = pickle.loads(pickle.dumps(vec))
    assert old.services == () and old.excluded == ()
    assert old.transform(train).toarray().tolist() == [[1, 1, 0], [1, 0, 0]]


def test_metrics_come_from_holdout_runs_only():
    """Training runs teach "e9 = anomaly"; holdout runs say the opposite. A model that fits
    the training runs perfectly must score ROC AUC 0 on the holdout: any training row leaking
    into the evaluation would lift it."""
    config = lib.TrainingConfig(model="decision_tree", holdout_fraction=0.34, seed=1)
    split = split_runs(RUNS, config.holdout_fraction, config.seed)
    frames = dataset({run: run in split.training for run in RUNS})
    bundle = lib.train({r: source(f) for r, f in frames.items()}, config)
    assert bundle.split == split
    seq, case = bundle.metrics["sequence"], bundle.metrics["test_case"]
    assert seq["rows"] == bundle.holdout_rows == 3 * len(CASES) * len(SERVICES)
    assert case["rows"] == 3 * len(CASES)
    assert seq["roc_auc"] == 0.0 and case["roc_auc"] == 0.0
    # The same figure, recomputed independently from the holdout runs' own scores:
    holdout = pl.concat([frames[r] for r in split.holdout])
    scores = bundle.scores(holdout)
    assert roc_auc_score(holdout["anomaly"], scores) == seq["roc_auc"]
    training = pl.concat([frames[r] for r in split.training])
    assert roc_auc_score(training["anomaly"], bundle.scores(training)) == 1.0


def test_each_holdout_run_is_judged_by_a_threshold_the_other_runs_set():
    holdout = pl.DataFrame({
        "run": ["a", "a", "b", "b", "c", "c"], "normal": [True, False] * 3,
        "score": [1.0, 5.0, 2.0, 5.0, 9.0, 5.0]})
    threshold, rows, how = calibrate(holdout, 100)
    assert threshold == 9.0 and how == "leave-one-holdout-run-out"
    # run c's correct sequence (9.0) is judged by a and b's threshold (2.0): a false positive
    # that an in-sample threshold would hide.
    assert rows.tolist() == [9.0, 9.0, 9.0, 9.0, 2.0, 2.0]
    one = holdout.filter(pl.col("run") == "a")
    assert calibrate(one, 100)[2].startswith("in-sample")
    with pytest.raises(ValueError, match="no correct sequences"):
        calibrate(holdout.filter(~pl.col("normal")), 100)


def test_a_holdout_run_without_sequences_is_named_not_a_crash():
    frames = dataset(dict.fromkeys(RUNS, True))
    split = split_runs(RUNS, 0.2, seed=0)
    runs = {r: source(f if r in split.training else f.clear()) for r, f in frames.items()}
    with pytest.raises(ValueError, match="holdout runs have no correct sequences"):
        lib.train(runs, lib.TrainingConfig(holdout_fraction=0.2))


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_registry_model_learns_a_clear_signal(name):
    # Each error case also logs an error line of its own kind (e9_<test case>).
    own = pl.when(pl.col("test_case") != "correct").then(pl.concat_list(
        pl.lit("e9_") + pl.col("test_case"))).otherwise(pl.lit([], pl.List(pl.String)))
    frames = {run: f.with_columns(pl.concat_list("e_event_drain_id", own)
                                  .alias("e_event_drain_id"))
              for run, f in dataset(dict.fromkeys(RUNS, True), MANY_CASES).items()}
    bundle = lib.train({r: source(f) for r, f in frames.items()},
                       lib.TrainingConfig(model=name, holdout_fraction=0.34))
    correct_only = not REGISTRY[name].fits_all_rows
    assert bundle.training_rows == 3 * len(SERVICES) * len(MANY_CASES)
    assert bundle.fitted_rows == 3 * len(SERVICES) * (1 if correct_only else len(MANY_CASES))
    if name == "isolation_forest":
        # It splits only on what varies among correct training sequences: e9 never occurs
        # there, so its column (<oov>) is constant and never split on. It still tells the
        # correct sequences' differing lengths apart.
        correct = frames[RUNS[0]].filter("normal")
        assert np.ptp(bundle.scores(correct)) > 0
        return
    assert bundle.metrics["test_case"]["roc_auc"] == 1.0
    assert bundle.gate["passed"]


def test_rare_token_detector_sums_rarities_and_counts_unseen_tokens_in_full():
    X = np.array([[1, 1, 0], [1, 0, 0], [1, 0, 0], [0, 0, 0]], dtype=float)
    detector = RareTokenDetector(token_columns=3, oov_columns=(2,)).fit(X)
    n = 4
    assert detector.rarity_[0] == pytest.approx(-np.log(4 / (n + 2)))
    assert detector.rarity_[2] == pytest.approx(-np.log(1 / (n + 2)))
    scores = detector.score_samples(np.array([[5, 0, 0], [1, 1, 0], [0, 0, 3]], dtype=float))
    assert scores[0] == pytest.approx(detector.rarity_[0])  # presence, not count
    assert scores[1] == pytest.approx(detector.rarity_[0] + detector.rarity_[1])
    assert scores[2] == pytest.approx(3 * detector.rarity_[2])  # 3 distinct unseen tokens
    assert detector.score_samples(np.array([[5, 1, 2]], dtype=float))[0] == pytest.approx(
        detector.rarity_[0] + detector.rarity_[1] + 2 * detector.rarity_[2])


def test_psi_is_zero_for_the_same_distribution_and_grows_with_a_shift():
    rng = np.random.default_rng(0)
    base = rng.normal(size=2000)
    assert psi(base, base) == pytest.approx(0.0, abs=1e-9)
    assert psi(base, base + 0.1) < psi(base, base + 1.0)
    assert psi(base, base + 1.0) > 0.25


def test_test_case_roll_up_takes_the_max_over_services():
    frame = pl.DataFrame({"run": ["r", "r", "r"], "test_case": ["a", "a", "b"],
                          "service": ["x", "y", "x"], "score": [0.1, 0.9, 0.5],
                          "anomaly": [False, True, False], "normal": [False, False, True]})
    rolled = by_test_case(frame)
    assert rolled.rows() == [("r", "a", 0.9, True, False), ("r", "b", 0.5, False, True)]


def _real_bundle(runs, name=lib.DEFAULT_MODEL, seed=0):
    """A bundle trained on real generated runs: the default model with its own features, the
    others with a words bag and numeric columns too."""
    features = None if name == lib.DEFAULT_MODEL else FeatureSpec(("drain", "words", "numeric"))
    return lib.train({r: source(pl.read_parquet(p), lib.BATCH_ROWS) for r, p in runs.items()},
                     lib.TrainingConfig(model=name, seed=seed, features=features))


def test_training_is_deterministic_for_a_seed(generated):
    shas = {}
    for name in ("rare_tokens", "isolation_forest"):
        first = lib.bundle_files(_real_bundle(generated, name), None)
        second = lib.bundle_files(_real_bundle(generated, name), None)
        assert first.files == second.files  # model.joblib, metrics.json and model.yml
        shas[name] = first.sha256
    other = lib.bundle_files(_real_bundle(generated, "isolation_forest", seed=5), None)
    assert other.sha256 != shas["isolation_forest"]


def test_bundle_round_trips_in_a_fresh_process_and_scores_identically(generated, tmp_path):
    bundle = _real_bundle(generated)
    sha = lib.save_bundle(bundle, tmp_path / "model")
    record = yaml.safe_load((tmp_path / "model" / lib.RECORD_FILE).read_text())
    assert record["sha256"] == sha and record["model"] == bundle.model
    assert record["training_runs"] == list(bundle.split.training)
    for field in ("training_rows", "holdout_rows", "params", "threshold",
                  "threshold_percentile", "metrics", "git_commit"):
        assert field in record
    assert "generated_at" not in record  # the same bundle, the same bytes: no timestamp
    metrics = json.loads((tmp_path / "model" / lib.METRICS_FILE).read_text())
    assert metrics["holdout_runs"] == list(bundle.split.holdout)
    assert metrics["test_case"]["roc_auc"] == bundle.metrics["test_case"]["roc_auc"]

    path = sorted(generated.values())[0]
    expected = bundle.score(pl.read_parquet(path))
    out = tmp_path / "scored.parquet"
    code = ("import polars as pl; from lo2_dagster.lib.model import load_bundle; "
            f"b = load_bundle({str(tmp_path / 'model')!r}); "
            f"b.score(pl.read_parquet({str(path)!r})).write_parquet({str(out)!r}); "
            "print(b.sha256)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == sha
    scored = pl.read_parquet(out)
    assert scored.equals(expected) and scored["score"].n_unique() > 1


def test_a_tampered_or_unrecorded_bundle_is_refused(generated, tmp_path):
    folder = tmp_path / "model"
    sha = lib.save_bundle(_real_bundle(generated), folder)
    assert lib.load_bundle(folder / lib.MODEL_FILE, expected_sha256=sha).sha256 == sha
    with pytest.raises(lib.BundleError, match="Dagster's record says"):
        lib.load_bundle(folder, expected_sha256="0" * 64)
    payload = bytearray((folder / lib.MODEL_FILE).read_bytes())
    payload[len(payload) // 2] ^= 0xFF
    (folder / lib.MODEL_FILE).write_bytes(bytes(payload))
    changed = r"model\.joblib has sha256 \w+, but \S+model\.yml says"
    with pytest.raises(lib.BundleError, match=changed):
        lib.load_bundle(folder)
    (folder / lib.RECORD_FILE).unlink()
    with pytest.raises(lib.BundleError, match=r"model\.yml is missing: run `lo2-dagster run`"):
        lib.load_bundle(folder)
    # A record without a sha256 verifies nothing: refused before unpickling.
    sha = lib.save_bundle(_real_bundle(generated), folder)
    record = (folder / lib.RECORD_FILE).read_text()
    for bad in ("sha256: null", "sha256: ''", "sha256: abc"):
        (folder / lib.RECORD_FILE).write_text(record.replace(f"sha256: {sha}", bad))
        with pytest.raises(lib.BundleError, match="records no sha256"):
            lib.load_bundle(folder)


def test_predict_applies_the_bundle_and_never_fits(generated, monkeypatch):
    bundle = _real_bundle(generated)

    def refuse(*args, **kwargs):
        raise AssertionError("predictions must not fit anything")

    monkeypatch.setattr(SequenceVectorizer, "fit", refuse)
    monkeypatch.setattr(RareTokenDetector, "fit", refuse)
    path = sorted(generated.values())[-1]
    frame = pl.read_parquet(path)
    predicted = lib.predict(bundle, [frame.slice(0, 100), frame.slice(100)], "new")
    assert predicted.schema == pl.Schema(lib.PREDICTIONS_SCHEMA)
    assert len(predicted) == len(frame) and predicted["rank"].to_list() == list(
        range(1, len(frame) + 1))
    assert predicted["score"].is_sorted(descending=True)
    direct = bundle.score(frame).sort("seq_id")
    assert predicted.sort("seq_id")["score"].equals(direct["score"])
    assert (predicted["pred_ano_original"] == (predicted["score"] > bundle.threshold)).all()
    cases = predicted.group_by("test_case").agg(pl.col("score").max(),
                                                pl.col("test_case_score").first())
    assert (cases["score"] == cases["test_case_score"]).all()
    assert predicted["test_case_rank"].n_unique() == predicted["test_case"].n_unique()
    top = lib.top_test_cases(predicted, 3)
    assert top["test_case_rank"].to_list() == [1, 2, 3]
    best = predicted.row(0, named=True)  # the run's highest-scoring sequence
    assert top.row(0, named=True)["top_service"] == best["service"]
    assert top.row(0, named=True)["test_case"] == best["test_case"]

    # Several runs at once (a notebook): ranks and roll-ups stay within each run.
    other = pl.read_parquet(sorted(generated.values())[0])
    both = lib.predict(bundle, [frame, other], "new")
    for run, part in both.group_by("run"):
        alone = lib.predict(bundle, [frame if run[0] == frame["run"][0] else other], "new")
        assert part.sort("seq_id").equals(alone.sort("seq_id"))


def test_runs_without_correct_sequences_or_folders_are_left_out_with_the_reason():
    from lo2_dagster.lib.metrics import trainable_runs

    kept, left_out = trainable_runs({"a": 7, "b": 0, "c": 7, "d": 3}, gone={"c"})
    assert kept == ["a", "d"]
    assert "no correct sequences" in left_out["b"]
    assert "lo2-dagster forget c" in left_out["c"]
