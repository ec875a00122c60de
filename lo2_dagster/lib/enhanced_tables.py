"""The enhanced tables of one run: events with features, and sequences aggregated from them.

Memory: the list columns (words, trigrams) are where the bytes are: tens of millions of
strings per run. Events are enhanced as a lazy join of the run's events (without lists) with
the per-distinct-message features, which the warehouse streams to Parquet. Sequences are built
from the enhanced events file a chunk at a time, so only one chunk of lists is in memory, and
their lists are cut out of the per-message lists by Arrow offsets (no per-string work).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from lo2_dagster.lib.allowlist import Allowlist
from lo2_dagster.lib.enhance import (
    EVENTS_ENHANCED_SCHEMA,
    SEQUENCES_ENHANCED_SCHEMA,
    lengths,
    message_features,
)
from lo2_dagster.lib.masking import cut_for_features, with_normalized
from lo2_dagster.lib.templates import KEY, KEY_COLUMNS, UNMATCHED, Templates, message_key

_BASE_COLUMNS = ["row_id", "m_message", "run", "test_case", "service", "seq_id", "normal",
                 "m_timestamp", "anomaly"]


@dataclass
class EnhancedEvents:
    """The enhanced events (lazy: evaluate once, e.g. by streaming them to Parquet) and what a
    user asks about them."""

    frame: pl.LazyFrame
    rows: int
    vocabulary: pl.DataFrame  # one row per distinct normalized message: its features
    template_lines: pl.DataFrame  # one row per template id: lines
    unmatched_lines: int
    allowlisted_lines: int
    relabelled_lines: int  # anomaly_original true, anomaly false
    rule_hits: dict[str, int] = field(default_factory=dict)
    #: Events whose features were computed on a prefix of their first line (longer than
    #: masking.MAX_FEATURE_CHARS): ``row_id``, ``seq_id``, ``first_line_chars``.
    cut: pl.DataFrame = field(default_factory=pl.DataFrame)


def enhance_events(events: pl.DataFrame | pl.LazyFrame, templates: Templates,
                   allowlist: Allowlist) -> EnhancedEvents:
    """``lo2/events_enhanced`` for one run's raw events (in ``row_id`` order)."""
    base = (events.lazy().select(*_BASE_COLUMNS, *KEY_COLUMNS)
            .rename({"anomaly": "anomaly_original"}).collect())
    cut = cut_for_features(base).select("row_id", "seq_id", "first_line_chars")
    base = with_normalized(base)
    # Templates are matched once per distinct message key (level, logger, method, message).
    shapes = ["e_message_normalized", *KEY_COLUMNS]
    keys = base.select(shapes).unique().with_columns(message_key())
    keys = keys.with_columns(templates.match(keys[KEY])).drop(KEY)
    base = base.join(keys, on=shapes, how="left", maintain_order="left",
                     nulls_equal=True).drop(list(KEY_COLUMNS))
    vocabulary = message_features(base["e_message_normalized"])

    rules = allowlist.event_flags()
    rule_names = [r.column for r in allowlist.events]
    if rules:
        base = base.with_columns(rules).with_columns(
            pl.any_horizontal(rule_names).alias("is_fp_allowlisted"))
    else:
        base = base.with_columns(pl.lit(False).alias("is_fp_allowlisted"))
    base = base.with_columns(
        (pl.col("anomaly_original") & ~pl.col("is_fp_allowlisted")).alias("anomaly"))

    counts = base.select(
        (pl.col("e_event_drain_id") == UNMATCHED).sum().alias("unmatched"),
        pl.col("is_fp_allowlisted").sum().alias("allowlisted"),
        (pl.col("anomaly_original") & ~pl.col("anomaly")).sum().alias("relabelled"),
        *[pl.col(n).sum() for n in rule_names],
    ).row(0, named=True)
    base = base.drop(rule_names)
    template_lines = base.group_by("e_event_drain_id").len("lines")

    frame = (
        base.lazy()
        .join(vocabulary.lazy().select("e_message_normalized", "e_words", "e_words_len",
                                       "e_trigrams", "e_trigrams_len"),
              on="e_message_normalized", how="left", maintain_order="left")
        .with_columns(lengths())
        .select([pl.col(c).cast(t) for c, t in EVENTS_ENHANCED_SCHEMA.items()])
    )
    return EnhancedEvents(
        frame=frame,
        rows=len(base),
        vocabulary=vocabulary,
        template_lines=template_lines,
        unmatched_lines=int(counts["unmatched"]),
        allowlisted_lines=int(counts["allowlisted"]),
        relabelled_lines=int(counts["relabelled"]),
        rule_hits={r.name: int(counts[r.column]) for r in allowlist.events},
        cut=cut,
    )


def sequence_tables(sequences: pl.DataFrame, events: pl.LazyFrame, allowlist: Allowlist,
                    chunk_rows: int = 100_000) -> Iterator[pa.Table]:
    """``lo2/sequences_enhanced`` for one run, as Arrow tables of complete sequences.

    ``sequences`` are the run's raw sequences (id, joined message, label, span); ``events`` its
    enhanced events in ``row_id`` order, where each sequence's events are contiguous (one file
    each), e.g. a scan of the Parquet file. Only the events' ids and normalized messages are
    read; lists are built ``chunk_rows`` events at a time: a sequence's words (trigrams) are
    its events' words in order, i.e. the per-message lists taken in event order and cut at
    sequence boundaries, which Arrow does by offsets without touching the strings one by one.
    """
    rules = allowlist.sequence_flags()
    base = sequences.with_columns(
        pl.any_horizontal(rules).alias("is_fp_allowlisted") if rules
        else pl.lit(False).alias("is_fp_allowlisted"),
    ).with_columns(
        (pl.col("anomaly") & ~pl.col("is_fp_allowlisted")).alias("anomaly"),
        (pl.col("end_time") - pl.col("start_time")).alias("duration"),
    ).with_columns(pl.col("duration").dt.total_seconds().cast(pl.Int64).alias("duration_sec"))
    # Three short columns of the run (strings repeat, so ~50 bytes an event): read them once.
    ids = events.select("seq_id", "e_message_normalized", "e_event_drain_id").collect()
    vocabulary = message_features(ids["e_message_normalized"]).with_row_index("_message")
    ids = ids.join(vocabulary.select("e_message_normalized", "_message"),
                   on="e_message_normalized", how="left", maintain_order="left")
    stretches, distinct = ids.select(pl.col("seq_id").rle_id().n_unique().alias("stretches"),
                                     pl.col("seq_id").n_unique().alias("distinct")).row(0)
    if stretches != distinct:
        raise ValueError("The events of a sequence are not contiguous, so they are not in raw "
                         "events' row_id order: re-materialize lo2/events_enhanced for the run.")
    lists = {c: vocabulary[c] for c in ("e_words", "e_trigrams")}
    seen: set[str] = set()
    pending: pl.DataFrame | None = None
    for offset in range(0, len(ids), chunk_rows):
        chunk = ids.slice(offset, chunk_rows)
        if pending is not None:
            chunk = pl.concat([pending, chunk])
        last = chunk["seq_id"][-1]
        pending = chunk.filter(pl.col("seq_id") == last)
        done = chunk.filter(pl.col("seq_id") != last)
        if len(done):
            yield _sequence_rows(base, done, lists, seen)
    if pending is not None and len(pending):
        yield _sequence_rows(base, pending, lists, seen)
    missing = base.filter(~pl.col("seq_id").is_in(list(seen)))["seq_id"].to_list()
    if missing:
        raise ValueError(f"{len(missing)} raw sequences have no enhanced events, e.g. "
                         f"{missing[0]}: re-materialize lo2/events_enhanced for the run.")


def sequences_arrow_schema() -> pa.Schema:
    """The Arrow schema polars writes for :data:`SEQUENCES_ENHANCED_SCHEMA`."""
    return pl.DataFrame(schema=SEQUENCES_ENHANCED_SCHEMA).to_arrow().schema


def _sequence_rows(base: pl.DataFrame, events: pl.DataFrame, lists: dict[str, pl.Series],
                   seen: set[str]) -> pa.Table:
    """Complete sequences' rows from their events (contiguous, in order)."""
    starts = events.select(
        pl.int_range(pl.len(), dtype=pl.Int64).filter(
            pl.col("seq_id") != pl.col("seq_id").shift(1).fill_null(""))
    ).to_series()
    ids = events["seq_id"].gather(starts).to_list()
    seen.update(ids)  # contiguity was checked for the whole run
    bounds = pa.array([*starts.to_list(), len(events)], pa.int64())
    columns: dict[str, pa.Array] = {
        "e_event_drain_id": pa.LargeListArray.from_arrays(
            bounds, events["e_event_drain_id"].to_arrow().cast(pa.large_string())),
    }
    for name, per_message in lists.items():
        per_event = per_message.gather(events["_message"]).to_arrow()
        offsets = pc.take(per_event.offsets, bounds)
        columns[name] = pa.LargeListArray.from_arrays(offsets, per_event.values)
        columns[f"{name}_len"] = pc.cast(pc.subtract(offsets[1:], offsets[:-1]), pa.uint32())
    seq_len = pc.cast(pc.subtract(bounds[1:], bounds[:-1]), pa.uint32())
    rows = pl.DataFrame({"seq_id": ids}).join(base, on="seq_id", how="left",
                                              maintain_order="left")
    unknown = rows.filter(pl.col("run").is_null())["seq_id"].to_list()
    if unknown:
        raise ValueError(f"Sequence {unknown[0]} has events but no raw sequence: "
                         "re-materialize lo2/raw_sequences for the run.")
    table = rows.to_arrow()
    schema = sequences_arrow_schema()
    arrays = []
    for column in schema:
        if column.name in ("seq_len", "e_event_id_len"):
            arrays.append(seq_len)
        elif column.name in columns:
            arrays.append(columns[column.name])
        else:
            arrays.append(table.column(column.name))
    return pa.Table.from_arrays(arrays, schema=schema.remove_metadata()).cast(schema)


def allowlisted_sequences(sequences: pl.DataFrame, allowlist: Allowlist) -> dict[str, int]:
    """How many of the run's sequences each sequence rule matches."""
    if not allowlist.sequences:
        return {}
    hits = sequences.select([f.sum() for f in allowlist.sequence_flags()]).row(0, named=True)
    return {rule.name: int(hits[rule.column]) for rule in allowlist.sequences}
