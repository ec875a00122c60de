"""Event and sequence features (the ``e_*`` columns of docs/schemas.md), as polars expressions.

Masking (:mod:`lo2_dagster.lib.masking`), words, trigrams and Drain ids depend only on an
event's normalized message, and LO2's logs repeat a few hundred message shapes millions of
times. So the expensive work runs once per *distinct* normalized message
(:func:`message_features`) and is joined back onto the events.

Deliberate differences from LogLead's ``EventLogEnhancer`` (also in docs/design.md):

- ``e_message_normalized`` masks values by what they look like (see ``lib.masking``), not only
  with LogLead's patterns: without that every request gets its own "normalized" message and the
  features learn ids instead of behaviour.
- ``e_words`` splits on runs of whitespace (LogLead splits on single spaces and keeps empty
  words when there are two in a row); words and trigrams come from the normalized message
  (LogLead's default is the raw message), so ids never become features.
- ``e_trigrams`` are all overlapping character 3-grams in text order (LogLead produces the same
  multiset, grouped by offset).
- ``e_lines_len`` counts lines (1 for a one-line event); LogLead counts line breaks.
- An over-long first line has its features computed on its first
  :data:`~lo2_dagster.lib.masking.MAX_FEATURE_CHARS` characters (``m_message``, ``e_chars_len``
  and ``e_lines_len`` stay those of the whole message); LogLead has no limit.
"""

from __future__ import annotations

import polars as pl

#: Bump when any feature below or the masking (lib.masking) changes: it is part of the enhanced
#: assets' code versions.
ENHANCER_VERSION = "3"


def words(text: pl.Expr) -> pl.Expr:
    """Whitespace-separated words, no empty ones."""
    return text.str.extract_all(r"\S+")


def trigrams(frame: pl.DataFrame, column: str) -> pl.Series:
    """All overlapping character 3-grams of ``column`` per row, in text order (none for texts
    shorter than 3 characters). Linear in the characters: each text is split into characters
    once and a gram is three neighbours joined (slicing at every offset would rescan the text
    up to the offset, quadratic in its length). No Python loop over rows."""
    char = pl.col("_char")
    return (
        frame.select(pl.col(column).str.split("").alias("_char"))  # "" splits into characters
        .with_row_index("_row")
        .explode("_char", empty_as_null=True, keep_nulls=True)  # one row per text at least
        .with_columns(
            pl.concat_str(char, char.shift(-1), char.shift(-2)).alias("_gram"),
            # A gram starts here if the text's character two further on is of the same text.
            (pl.col("_row").shift(-2) == pl.col("_row")).fill_null(False).alias("_starts"))
        .group_by("_row", maintain_order=True)
        .agg(pl.col("_gram").filter("_starts"))
        .get_column("_gram").alias("e_trigrams")
    )


def message_features(messages: pl.Series) -> pl.DataFrame:
    """Words, trigrams and their counts for each distinct normalized message."""
    frame = pl.DataFrame({"e_message_normalized": messages.unique().sort()})
    frame = frame.with_columns(words(pl.col("e_message_normalized")).alias("e_words"))
    frame = frame.with_columns(trigrams(frame, "e_message_normalized"))
    return frame.with_columns(
        pl.col("e_words").list.len().cast(pl.UInt32).alias("e_words_len"),
        pl.col("e_trigrams").list.len().cast(pl.UInt32).alias("e_trigrams_len"),
    )


def lengths(message: str = "m_message") -> list[pl.Expr]:
    """``e_chars_len`` (whole message), ``e_lines_len`` (lines, >= 1), ``e_event_id_len`` (1)."""
    return [
        pl.col(message).str.len_chars().cast(pl.UInt32).alias("e_chars_len"),
        (pl.col(message).str.count_matches("\n", literal=True) + 1)
        .cast(pl.UInt32).alias("e_lines_len"),
        pl.lit(1, dtype=pl.Int32).alias("e_event_id_len"),
    ]


#: ``lo2/events_enhanced``: exactly the event schema of docs/schemas.md, in its order.
EVENTS_ENHANCED_SCHEMA: dict[str, pl.DataType] = {
    "row_id": pl.Int64(),
    "m_message": pl.String(),
    "run": pl.String(),
    "test_case": pl.String(),
    "service": pl.String(),
    "seq_id": pl.String(),
    "normal": pl.Boolean(),
    "m_timestamp": pl.Datetime("us"),
    "anomaly": pl.Boolean(),
    "is_fp_allowlisted": pl.Boolean(),
    "anomaly_original": pl.Boolean(),
    "e_message_normalized": pl.String(),
    "e_words": pl.List(pl.String()),
    "e_words_len": pl.UInt32(),
    "e_trigrams": pl.List(pl.String()),
    "e_trigrams_len": pl.UInt32(),
    "e_event_drain_id": pl.String(),
    "e_chars_len": pl.UInt32(),
    "e_lines_len": pl.UInt32(),
    "e_event_id_len": pl.Int32(),
}

#: ``lo2/sequences_enhanced``: the sequence schema of docs/schemas.md, then what downstream
#: needs: where the sequence comes from and its Drain ids in event order (LogLead's
#: ``SequenceEnhancer.events``).
SEQUENCES_ENHANCED_SCHEMA: dict[str, pl.DataType] = {
    "seq_id": pl.String(),
    "m_message": pl.String(),
    "normal": pl.Boolean(),
    "start_time": pl.Datetime("us"),
    "end_time": pl.Datetime("us"),
    "anomaly": pl.Boolean(),
    "is_fp_allowlisted": pl.Boolean(),
    "seq_len": pl.UInt32(),
    "e_event_id_len": pl.UInt32(),
    "duration": pl.Duration("us"),
    "duration_sec": pl.Int64(),
    "e_words": pl.List(pl.String()),
    "e_words_len": pl.UInt32(),
    "e_trigrams": pl.List(pl.String()),
    "e_trigrams_len": pl.UInt32(),
    "run": pl.String(),
    "test_case": pl.String(),
    "service": pl.String(),
    "e_event_drain_id": pl.List(pl.String()),
}

#: One row per sequence: only these repeated columns gain from Parquet dictionary encoding.
SEQUENCES_DICTIONARY_COLUMNS = ("run", "test_case", "service")
