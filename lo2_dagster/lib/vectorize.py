"""Sparse feature matrices of sequences, built with polars a batch of sequences at a time.

A sequence (run x test case x service) becomes one row: how often each Drain template, word
or trigram occurs in it (bags, from the enhanced sequence table's list columns), the number of
distinct tokens the training data never showed (one ``<oov>`` column per bag), and optionally
its service (one-hot), its number of template events (``events:total``, the denominator of
rates) and numeric columns. Tokens are counted by ``explode`` + ``group_by`` and mapped to
columns by a join, so no Python list of tokens is ever built; the vocabulary is capped per bag
and recorded. Excluded tokens (start-up templates, see ``lib.leaks``) are dropped before
anything is counted.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy import sparse

#: Bags of tokens and the list column of ``lo2/sequences_enhanced`` each one counts.
BAGS = {"drain": "e_event_drain_id", "words": "e_words", "trigrams": "e_trigrams"}
#: Numeric columns of ``lo2/sequences_enhanced`` (the ``numeric`` feature). Length and
#: duration give LO2 v1's labels away (see ``lib.leaks``): no model uses them by default.
NUMERIC_COLUMNS = ("seq_len", "duration_sec", "e_words_len", "e_trigrams_len")
#: ``service``: one column per service (one-hot); ``events``: the events the drain bag counted.
FEATURES = (*BAGS, "service", "events", "numeric")
#: What a model reads unless its registry entry or the training config says otherwise:
#: template counts and the service, never length, duration or start-up lines (lib.leaks).
DEFAULT_FEATURES = ("drain", "service")
OOV = "<oov>"
EVENTS = "events:total"


@dataclass(frozen=True)
class FeatureSpec:
    """Which features, how many tokens each bag keeps at most (the most frequent), and whether
    start-up templates are left out (they say which test case ran first, not what failed)."""

    features: tuple[str, ...] = DEFAULT_FEATURES
    max_tokens: int = 5000
    min_df: int = 1  # a token must occur in this many training sequences to get a column
    exclude_startup: bool = True

    def __post_init__(self) -> None:
        unknown = sorted(set(self.features) - set(FEATURES))
        if unknown or not self.features:
            raise ValueError(f"features {list(self.features)}: choose one or more of "
                             f"{list(FEATURES)} (unknown: {unknown or 'none given'})")
        if "events" in self.features and "drain" not in self.features:
            raise ValueError("the events feature counts the drain bag's events: add drain")
        if self.max_tokens < 1 or self.min_df < 1:
            raise ValueError("max_tokens and min_df must be at least 1")

    @property
    def bags(self) -> tuple[str, ...]:
        return tuple(b for b in BAGS if b in self.features)

    @property
    def columns(self) -> list[str]:
        """The sequence-table columns these features read."""
        numeric = list(NUMERIC_COLUMNS) if "numeric" in self.features else []
        service = ["service"] if "service" in self.features else []
        return [BAGS[b] for b in self.bags] + service + numeric


@dataclass(frozen=True)
class Vocabulary:
    """One bag's columns: tokens in column order, with their training document frequency."""

    bag: str
    tokens: tuple[str, ...]
    document_frequency: tuple[int, ...]
    distinct_in_training: int  # before the cap

    @property
    def dropped(self) -> int:
        return self.distinct_in_training - len(self.tokens)


class SequenceVectorizer:
    """Fitted on training sequences; maps any sequence batch to the same sparse columns."""

    #: Class-level defaults: a vectorizer pickled before these existed loads with none.
    services: tuple[str, ...] = ()
    excluded: tuple[str, ...] = ()

    def __init__(self, spec: FeatureSpec, vocabularies: Sequence[Vocabulary], rows: int,
                 services: Sequence[str] = (), excluded: Iterable[str] = ()):
        self.spec = spec
        self.vocabularies = tuple(vocabularies)
        self.fitted_rows = rows
        self.services = tuple(services)
        #: Drain templates dropped before counting (start-up output).
        self.excluded = tuple(sorted(excluded))
        names: list[str] = []
        self._offsets: dict[str, int] = {}
        for vocabulary in self.vocabularies:
            self._offsets[vocabulary.bag] = len(names)
            names += [f"{vocabulary.bag}:{t}" for t in vocabulary.tokens]
            names.append(f"{vocabulary.bag}:{OOV}")
        if "service" in spec.features:
            names += [f"service:{s}" for s in self.services]
        if "events" in spec.features:
            names.append(EVENTS)
        if "numeric" in spec.features:
            names += [f"numeric:{c}" for c in NUMERIC_COLUMNS]
        self.feature_names = tuple(names)

    @classmethod
    def fit(cls, spec: FeatureSpec, batches: Iterable[pl.DataFrame],
            excluded: Iterable[str] = ()) -> SequenceVectorizer:
        """Vocabularies from training sequence batches: per bag the ``max_tokens`` tokens in
        most training sequences (ties by token), in token order; ``excluded`` Drain templates
        are dropped (see :attr:`excluded`)."""
        dropped = sorted(excluded)
        frequencies: dict[str, list[pl.DataFrame]] = {b: [] for b in spec.bags}
        services: set[str] = set()
        rows = 0
        for batch in batches:
            rows += len(batch)
            if "service" in spec.features:
                services.update(batch["service"].unique().to_list())
            for bag in spec.bags:
                pairs = _without(token_counts(batch, BAGS[bag]), bag, dropped)
                frequencies[bag].append(pairs.group_by("token").agg(pl.len().alias("df")))
        vocabularies = []
        for bag, parts in frequencies.items():
            df = (pl.concat(parts).group_by("token").agg(pl.col("df").sum()) if parts
                  else pl.DataFrame(schema={"token": pl.String, "df": pl.UInt32}))
            kept = (df.filter(pl.col("df") >= spec.min_df)
                    .sort(["df", "token"], descending=[True, False]).head(spec.max_tokens)
                    .sort("token"))
            vocabularies.append(Vocabulary(bag, tuple(kept["token"].to_list()),
                                           tuple(kept["df"].to_list()), len(df)))
        return cls(spec, vocabularies, rows, sorted(services), dropped)

    def transform(self, batch: pl.DataFrame) -> sparse.csr_matrix:
        """The batch's rows as a CSR matrix of float64 (counts; numeric columns as they are)."""
        rows, cols, values = [], [], []
        events: pl.DataFrame | None = None
        for vocabulary in self.vocabularies:
            offset = self._offsets[vocabulary.bag]
            columns = pl.DataFrame(
                {"token": vocabulary.tokens,
                 "col": np.arange(offset, offset + len(vocabulary.tokens), dtype=np.uint32)},
                schema={"token": pl.String, "col": pl.UInt32})
            counted = _without(token_counts(batch, BAGS[vocabulary.bag]), vocabulary.bag,
                               self.excluded)
            if vocabulary.bag == "drain" and "events" in self.spec.features:
                events = counted.group_by("row").agg(pl.col("count").sum())
            pairs = counted.join(columns, on="token", how="left")
            known = pairs.filter(pl.col("col").is_not_null())
            unknown = (pairs.filter(pl.col("col").is_null()).group_by("row")
                       .agg(pl.len().alias("count"))
                       .with_columns(pl.lit(offset + len(vocabulary.tokens), pl.UInt32)
                                     .alias("col")))
            for part in (known, unknown):
                rows.append(part["row"].to_numpy())
                cols.append(part["col"].to_numpy())
                values.append(part["count"].cast(pl.Float64).to_numpy())
        if "service" in self.spec.features and self.services:
            first = self.column(f"service:{self.services[0]}")
            index = pl.DataFrame({"service": self.services,
                                  "col": np.arange(first, first + len(self.services),
                                                   dtype=np.uint32)})
            found = (batch.select(pl.int_range(pl.len(), dtype=pl.UInt32).alias("row"),
                                  "service").join(index, on="service", how="inner"))
            rows.append(found["row"].to_numpy())
            cols.append(found["col"].to_numpy())
            values.append(np.ones(len(found)))
        if events is not None:
            rows.append(events["row"].to_numpy())
            cols.append(np.full(len(events), self.column(EVENTS), dtype=np.uint32))
            values.append(events["count"].cast(pl.Float64).to_numpy())
        if "numeric" in self.spec.features:
            first = len(self.feature_names) - len(NUMERIC_COLUMNS)
            numeric = batch.select(pl.col(c).cast(pl.Float64).fill_null(0.0)
                                   for c in NUMERIC_COLUMNS).to_numpy()
            for i in range(numeric.shape[1]):
                nonzero = np.flatnonzero(numeric[:, i])
                rows.append(nonzero.astype(np.uint32))
                cols.append(np.full(len(nonzero), first + i, dtype=np.uint32))
                values.append(numeric[nonzero, i])
        shape = (len(batch), len(self.feature_names))
        if not rows:
            return sparse.csr_matrix(shape)
        matrix = sparse.coo_matrix((np.concatenate(values),
                                    (np.concatenate(rows), np.concatenate(cols))), shape=shape)
        return matrix.tocsr()

    @property
    def token_columns(self) -> int:
        """Columns of the bags (they come first; service, events and numeric columns
        follow)."""
        return sum(len(v.tokens) + 1 for v in self.vocabularies)

    def column(self, name: str) -> int:
        """The index of a named column (e.g. :data:`EVENTS`, ``service:token``)."""
        return self.feature_names.index(name)

    def bag_columns(self, bag: str) -> tuple[int, int]:
        """The column range of a bag's tokens (its ``<oov>`` column is the range's end)."""
        vocabulary = next(v for v in self.vocabularies if v.bag == bag)
        start = self._offsets[bag]
        return start, start + len(vocabulary.tokens)

    def summary(self) -> dict[str, object]:
        """What the UI and model.yml show: columns per bag, tokens cut by the cap."""
        return {
            "features": list(self.spec.features),
            "excluded_startup_templates": list(self.excluded),
            "services": list(self.services),
            "columns": len(self.feature_names),
            "max_tokens_per_bag": self.spec.max_tokens,
            "min_df": self.spec.min_df,
            "fitted_on_sequences": self.fitted_rows,
            "bags": {v.bag: {"tokens": len(v.tokens), "distinct_in_training":
                             v.distinct_in_training, "dropped_by_cap": v.dropped}
                     for v in self.vocabularies},
        }


def token_counts(batch: pl.DataFrame, column: str) -> pl.DataFrame:
    """(row, token, count) for each distinct token of each row's list column."""
    return (
        batch.select(pl.int_range(pl.len(), dtype=pl.UInt32).alias("row"),
                     pl.col(column).alias("token"))
        .explode("token")
        .drop_nulls("token")
        .group_by("row", "token")
        .agg(pl.len().cast(pl.UInt32).alias("count"))
    )


def _without(pairs: pl.DataFrame, bag: str, excluded: Sequence[str]) -> pl.DataFrame:
    """Token counts without the excluded tokens (only Drain templates are ever excluded)."""
    if bag != "drain" or not excluded:
        return pairs
    return pairs.filter(~pl.col("token").is_in(list(excluded)))
