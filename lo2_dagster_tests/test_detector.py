"""The default detector on real files: fair to length, sees frequency shifts, exact reasons."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from lo2_dagster.lib import loader
from lo2_dagster.lib import model as lib
from lo2_dagster.lib import templates as drain
from lo2_dagster.lib.allowlist import Allowlist
from lo2_dagster.lib.detector import TemplateRateDetector
from lo2_dagster.lib.enhanced_tables import enhance_events, sequence_tables
from lo2_dagster.lib.layout import scan_runs
from lo2_dagster.lib.metrics import by_test_case
from lo2_dagster.synth import SynthConfig, generate, shared_faults

TIME = re.compile(r"^(\d{2}):(\d{2}):(\d{2})\.(\d{3}) ")


def enhance(root: Path, runs: list[str], templates: drain.Templates, trim: int
            ) -> dict[str, pl.DataFrame]:
    """Each run's enhanced sequences, built with the library calls the assets make."""
    out = {}
    for run in runs:
        events = loader.load_run(root, run, trim_lines=trim).events
        enhanced = enhance_events(events.lazy(), templates, Allowlist()).frame.collect()
        tables = sequence_tables(loader.build_sequences(events), enhanced.lazy(), Allowlist())
        out[run] = pl.from_arrow(pa.concat_tables(list(tables)))
    return out


def build(root: Path, trim: int) -> tuple[drain.Templates, dict[str, pl.DataFrame]]:
    runs = scan_runs(root)[0]
    counts = {run: drain.message_counts(loader.load_run(root, run, trim_lines=trim)
                                        .events.lazy()) for run in runs}
    templates = drain.train(drain.merge_counts(counts))
    return templates, enhance(root, runs, templates, trim)


def trained(frames: dict[str, pl.DataFrame]) -> lib.ModelBundle:
    return lib.train({run: (lambda f: lambda columns: [f.select(columns)])(frame)
                      for run, frame in frames.items()}, lib.TrainingConfig())


def repeat_traffic(text: str, trim: int, gap_ms: int) -> str:
    """The same file with its traffic (the lines after the first ``trim``) played once more
    right after it: the same lines, twice the duration."""
    lines = text.rstrip("\n").split("\n")
    times = [m for m in (TIME.match(line) for line in lines) if m]
    last = times[-1].groups()
    end_ms = ((int(last[0]) * 60 + int(last[1])) * 60 + int(last[2])) * 1000 + int(last[3])
    first = next(TIME.match(line) for line in lines[trim:] if TIME.match(line)).groups()
    start_ms = ((int(first[0]) * 60 + int(first[1])) * 60 + int(first[2])) * 1000 + int(first[3])
    shift = end_ms - start_ms + gap_ms

    def shifted(line: str) -> str:
        m = TIME.match(line)
        if m is None:
            return line  # a continuation line stays below its event
        hh, mm, ss, ms = (int(g) for g in m.groups())
        t = ((hh * 60 + mm) * 60 + ss) * 1000 + ms + shift
        return (f"{t // 3_600_000 % 24:02d}:{t // 60_000 % 60:02d}:{t // 1000 % 60:02d}."
                f"{t % 1000:03d} " + line[m.end():])

    return "\n".join(lines + [shifted(line) for line in lines[trim:]]) + "\n"


def test_repeating_a_test_cases_normal_traffic_does_not_change_its_score(tmp_path):
    """A new run whose correct test case plays the same traffic twice (twice the duration,
    twice the events) scores exactly as the original run does."""
    root = tmp_path / "lo2"
    generate(root, SynthConfig(runs=5, seed=21, token_lines=60, metrics=False))
    templates, frames = build(root, trim=loader.DEFAULT_TRIM_LINES)
    bundle = trained(frames)
    run = bundle.split.holdout[0]
    twice = "light-oauth2-data-1900000000"
    shutil.copytree(root / "logs" / run, root / "logs" / twice)
    for path in (root / "logs" / twice / "correct").glob("*.log"):
        path.write_text(repeat_traffic(path.read_text(), loader.DEFAULT_TRIM_LINES, 5000))
    again = enhance(root, [twice], templates, loader.DEFAULT_TRIM_LINES)[twice]

    def correct(frame: pl.DataFrame) -> pl.DataFrame:
        return (frame.filter(pl.col("test_case") == "correct").sort("service")
                .with_columns(pl.Series("score", bundle.scores(
                    frame.filter(pl.col("test_case") == "correct").sort("service")))))

    before, after = correct(frames[run]), correct(again)
    assert (after["seq_len"] == 2 * before["seq_len"]).all()
    assert (after["duration_sec"] >= 2 * before["duration_sec"]).all()
    assert after["score"].to_list() == pytest.approx(before["score"].to_list(), abs=1e-9)


@pytest.fixture(scope="module")
def shifted_world(tmp_path_factory) -> tuple[lib.ModelBundle, dict[str, pl.DataFrame],
                                              frozenset[str]]:
    """Hard-mode runs where the shared fault kinds also fail in correct traffic (2-3 % of
    requests), and error cases of those kinds fail more often (15-20 %): frequency shifts
    only, in files long enough for a share to mean something."""
    root = tmp_path_factory.mktemp("shifted") / "lo2"
    config = SynthConfig.hard(runs=6, seed=4, token_lines=2000, metrics=False,
                              background_faults=(0.02, 0.03), error_share=(0.15, 0.2))
    generate(root, config)
    _, frames = build(root, trim=0)
    return trained(frames), frames, shared_faults(config)


def test_an_error_case_with_only_a_frequency_shift_scores_above_its_runs_correct_case(
        shifted_world):
    """Error cases of the shared kinds whose sequences show no template new to the model (a
    frequency shift only): each scores above the correct test case of its run."""
    bundle, frames, shared = shifted_world
    checked = 0
    for run in bundle.split.holdout:
        frame = frames[run]
        found = bundle.estimator.evidence(bundle.vectorizer.transform(frame))
        cases = by_test_case(frame.select("run", "test_case", "anomaly", "normal").with_columns(
            pl.Series("score", bundle.scores(frame)), pl.Series("novelty", found.novelty)))
        novelty = frame.with_columns(pl.Series("novelty", found.novelty)).group_by(
            "test_case").agg(pl.col("novelty").sum())
        correct = cases.filter(pl.col("test_case") == "correct")["score"][0]
        only_shift = novelty.filter(pl.col("test_case").is_in(list(shared))
                                    & (pl.col("novelty") == 0))["test_case"].to_list()
        for case in only_shift:
            checked += 1
            score = cases.filter(pl.col("test_case") == case)["score"][0]
            assert score > correct, (run, case, score, correct)
    assert checked >= 3  # enough frequency-only error cases were there to check


def test_scores_add_up_from_new_templates_and_the_largest_shift(shifted_world):
    """base + contributions = score; each new template adds 1/sqrt(lam), the shift is one
    template's, and a row's contributions name templates the row has."""
    bundle, frames, _ = shifted_world
    frame = frames[bundle.split.holdout[0]]
    x = bundle.vectorizer.transform(frame)
    estimator: TemplateRateDetector = bundle.estimator
    values, base = estimator.contributions(x)
    assert np.allclose(base + np.asarray(values.sum(axis=1)).ravel(),
                       estimator.score_samples(x))
    start, end = estimator.templates
    for row in range(x.shape[0]):
        cols = values[row].indices
        assert set(cols) <= set(x[row].indices), row
        assert all(start <= c <= end for c in cols)


def test_a_service_never_trained_on_scores_every_template_as_new(shifted_world):
    bundle, frames, _ = shifted_world
    frame = frames[bundle.split.holdout[0]].head(3).with_columns(pl.lit("gateway").alias(
        "service"))
    x = bundle.vectorizer.transform(frame)
    estimator: TemplateRateDetector = bundle.estimator
    found = estimator.evidence(x)
    start, end = estimator.templates
    shown = np.asarray((x[:, start:end] > 0).sum(axis=1)).ravel() + x[:, end].toarray().ravel()
    assert np.all(shown > 0)
    assert np.array_equal(found.novelty, shown)  # every template it shows is new
    strictest = min(m.lam for m in estimator.models_.values())
    assert np.allclose(found.novelty_weight, 1 / np.sqrt(strictest))
    assert np.all(found.shift_column == -1)  # no normal rates to shift from
    assert np.allclose(bundle.scores(frame), shown / np.sqrt(strictest) - np.sqrt(strictest))


def test_start_up_templates_are_left_out_of_the_features(shifted_world):
    """Hard mode writes start-up output only in each run's first test case: those templates
    are found and dropped before anything is counted."""
    bundle, frames, _ = shifted_world
    excluded = set(bundle.vectorizer.excluded)
    assert excluded
    tokens = {n.partition(":")[2] for n in bundle.vectorizer.feature_names}
    assert not excluded & tokens
    for frame in frames.values():
        first = frame.filter(pl.col("start_time") == pl.col("start_time").min())
        others = frame.filter(pl.col("test_case") != first["test_case"][0])
        assert not others["e_event_drain_id"].explode().is_in(list(excluded)).any()
