"""What gives LO2's labels away without detecting anything, measured on the data at hand.

In LO2 v1 every run played ``correct`` first for 60 s and each error case for 10 s, and the
containers started once per run, so their start-up output landed in ``correct``: duration,
sequence length and start-up lines separate the labels perfectly. LO2 v2 shuffles the order and
draws durations of 20-180 s, and the same signals say nothing. A score that leans on them
measures the v1 leak, not anomalies.

- :func:`startup_templates` finds start-up output by how it behaves: templates that, in the
  training runs, occur only in the first sequence (by start time) of their run and service, in
  at least two runs. Models leave them out by default (``FeatureSpec.exclude_startup``).
- :func:`leak_audit` measures how well each signal alone separates the labels of the test
  cases (ROC AUC, both directions), and says which are high enough to distrust a score.
"""

from __future__ import annotations

from collections.abc import Iterable

import polars as pl
from sklearn.metrics import roc_auc_score

#: A signal that separates the labels at least this well (ROC AUC, either direction) leaks.
LEAK_AUC = 0.75
#: Columns of ``lo2/sequences_enhanced`` the start-up scan reads.
STARTUP_COLUMNS = ["run", "service", "start_time", "e_event_drain_id"]
#: What :func:`sequence_signals` reads besides what a model reads (run, test_case, anomaly and
#: the Drain ids are there anyway).
AUDIT_COLUMNS = ("start_time", "seq_len", "duration_sec")
#: The signals of the audit: what a user would check, one number per test case.
SIGNALS = {
    "duration": "longest sequence of the test case, seconds",
    "events": "events of the test case (all services)",
    "startup_lines": "has start-up lines (templates only the first test case of a run shows)",
    "first_in_run": "is the first test case of its run",
}


def startup_templates(batches: Iterable[pl.DataFrame]) -> frozenset[str]:
    """Templates that occur only in the first sequence (the one earliest ``start_time``) of
    their run and service, in at least two runs (or in the only run). ``batches``: sequence
    rows with :data:`STARTUP_COLUMNS`, any number of runs, in any order."""
    parts = [b.select("run", "service", "start_time",
                      pl.col("e_event_drain_id").list.unique().alias("token")) for b in batches]
    if not parts:
        return frozenset()
    rows = pl.concat(parts).with_columns(_only_earliest("run", "service").alias("first"))
    runs = rows["run"].n_unique()
    per_token = (rows.explode("token").drop_nulls("token").group_by("token")
                 .agg(pl.col("first").all().alias("only_first"),
                      pl.col("run").filter("first").n_unique().alias("runs")))
    found = per_token.filter(pl.col("only_first") & (pl.col("runs") >= min(2, runs)))
    return frozenset(found["token"].to_list())


def _only_earliest(*over: str) -> pl.Expr:
    """Whether a row has the one earliest ``start_time`` of its group (a tie: none has)."""
    earliest = pl.col("start_time") == pl.col("start_time").min().over(*over)
    return earliest & (earliest.cast(pl.UInt32).sum().over(*over) == 1)


def sequence_signals(sequences: pl.DataFrame, startup: frozenset[str]) -> pl.DataFrame:
    """The audit's inputs per sequence (a few columns: keep them for every run), from sequence
    rows with run, test_case, anomaly, start_time, seq_len, duration_sec, e_event_drain_id."""
    return sequences.select(
        "run", "test_case", "anomaly", "start_time", "seq_len", "duration_sec",
        pl.col("e_event_drain_id").list.eval(pl.element().is_in(list(startup))).list.any()
        .fill_null(False).alias("startup"))


def test_case_signals(sequences: pl.DataFrame) -> pl.DataFrame:
    """One row per run and test case of :func:`sequence_signals` rows (all of a run's): its
    label (``anomaly``: any sequence anomalous) and the signals of :data:`SIGNALS`."""
    return (sequences.group_by("run", "test_case")
            .agg(pl.col("anomaly").any(), pl.col("duration_sec").max().alias("duration"),
                 pl.col("seq_len").sum().alias("events"),
                 pl.col("startup").any().alias("startup_lines"),
                 pl.col("start_time").min())
            .with_columns(_only_earliest("run").alias("first_in_run"))
            .drop("start_time").sort("run", "test_case"))


def leak_audit(cases: pl.DataFrame) -> dict[str, object]:
    """ROC AUC of each signal of :func:`test_case_signals` as a score for ``anomaly``, the
    separation (``max(auc, 1 - auc)``: a signal that is *lower* for anomalies leaks as much),
    and the signals at or above :data:`LEAK_AUC`."""
    labels = cases["anomaly"].to_numpy().astype(bool)
    both = 0 < labels.sum() < len(labels)
    signals: dict[str, dict[str, object]] = {}
    leaking: list[str] = []
    for name, meaning in SIGNALS.items():
        values = cases[name].cast(pl.Float64).fill_null(0.0).to_numpy()
        auc = float(roc_auc_score(labels, values)) if both else None
        separation = max(auc, 1 - auc) if auc is not None else None
        signals[name] = {"meaning": meaning, "roc_auc": auc, "separation": separation}
        if separation is not None and separation >= LEAK_AUC:
            leaking.append(name)
    return {"test_cases": len(labels), "anomalous": int(labels.sum()), "level": LEAK_AUC,
            "signals": signals, "leaking": leaking}


def leak_warning(audit: dict[str, object]) -> str | None:
    """One sentence for the run log and the report when a signal leaks, or when there is no
    audit to tell (a model trained before the audit existed); else None."""
    if "signals" not in audit:
        return ("The model has no leak audit (trained by an older version): nothing says "
                "whether length, duration or start-up lines give its labels away. Retrain "
                "lo2/anomaly_model.")
    leaking = audit.get("leaking") or []
    if not leaking:
        return None
    signals = audit["signals"]
    parts = [f"{n} ({signals[n]['separation']:.2f})" for n in leaking]  # type: ignore[index]
    return (f"On this data, {', '.join(parts)} alone separate the test cases' labels (ROC AUC "
            f">= {audit['level']}): a model that uses them measures the dataset's layout (LO2 "
            "v1 plays correct first, 60 s, with the start-up output), not anomalies. The default "
            "features leave them out; compare the model's figure with these.")


def audit_table(audit: dict[str, object]) -> pl.DataFrame:
    """The audit as a table: signal, what it is, ROC AUC, separation, leaks."""
    signals: dict[str, dict[str, object]] = audit.get("signals", {})  # type: ignore[assignment]
    leaking = set(audit.get("leaking", []))  # type: ignore[call-overload]
    return pl.DataFrame(
        [{"signal": name, "meaning": s["meaning"], "roc_auc": s["roc_auc"],
          "separation": s["separation"], "leaks": name in leaking}
         for name, s in signals.items()],
        schema={"signal": pl.String, "meaning": pl.String, "roc_auc": pl.Float64,
                "separation": pl.Float64, "leaks": pl.Boolean})
