"""Event and sequence features (the seed's ``e_*`` columns), as polars expressions.

Masking, words, trigrams and Drain ids depend only on an event's normalized message, and LO2's
logs repeat a few hundred message shapes millions of times. So the expensive work runs once per
*distinct* normalized message (:func:`message_features`) and is joined back onto the events.

Deliberate differences from LogLead's ``EventLogEnhancer`` (also in the README):

- Before LogLead's masks, :data:`LO2_MASKS` mask what light-4j logs carry and LogLead's patterns
  miss: UUIDs, HTTP Basic/Bearer credentials, JWTs, base64url ids of exactly 22 characters
  (correlation ids, authorization codes) or 32 and more (PKCE challenges, secrets) and bare hex
  ids of 8+ digits. Without them every request gets its
  own "normalized" message and the features learn ids instead of behaviour.
- ``e_words`` splits on runs of whitespace (LogLead splits on single spaces and keeps empty
  words when there are two in a row); words and trigrams come from the normalized message
  (LogLead's default is the raw message), so ids never become features.
- ``e_trigrams`` are all overlapping character 3-grams in text order (LogLead produces the same
  multiset, grouped by offset).
- ``e_lines_len`` counts lines (1 for a one-line event); LogLead counts line breaks.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

#: Bump when any feature below changes: it is part of the enhanced assets' code versions.
ENHANCER_VERSION = "1"

_NOT_ALNUM = r"[^A-Za-z0-9]"


def _bounded(pattern: str, edge: str = _NOT_ALNUM) -> str:
    """``pattern`` as a whole token: preceded and followed by ``edge`` or the text's ends (the
    regex engine has no look-around, so the edges are captured and put back)."""
    return f"(?P<start>{edge}|^)(?:{pattern})(?P<end>{edge}|$)"


#: LO2-specific masks, applied first: (replacement, pattern) as in LogLead.
LO2_MASKS: tuple[tuple[str, str], ...] = (
    ("${start}<UUID>${end}",
     _bounded(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")),
    ("${scheme} <CRED>", r"(?P<scheme>Basic|Bearer) [A-Za-z0-9+/._~-]+=*"),
    ("${start}<JWT>${end}", _bounded(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")),
    # light-4j's ids (correlation ids, authorization codes) are 22 base64url characters; PKCE
    # challenges and verifiers, client secrets and tokens are 32 or more.
    ("${start}<ID>${end}", _bounded(r"[A-Za-z0-9_-]{22}|[A-Za-z0-9_-]{32,}",
                                    edge="[^A-Za-z0-9_-]")),
    ("${start}<HEX>${end}", _bounded(r"[0-9a-fA-F]{8,}")),
)

#: LogLead's ``masking_patterns_drain`` (loglead/enhancers/eventlog.py), unchanged.
LOGLEAD_MASKS: tuple[tuple[str, str], ...] = (
    ("${start}<ID>${end}", _bounded(r"([0-9a-f]{2,}:){3,}([0-9a-f]{2,})")),
    ("${start}<IP>${end}", _bounded(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}")),
    ("${start}<SEQ>${end}", _bounded(r"([0-9a-f]{6,} ?){3,}")),
    ("${start}<SEQ>${end}", _bounded(r"([0-9A-F]{4} ?){4,}")),
    ("${start}<HEX>${end}", _bounded(r"0x[a-f0-9A-F]+")),
    ("${start}<NUM>${end}", _bounded(r"[\-\+]?\d+")),
    ("${cmd}<CMD>", r"(?P<cmd>executed cmd )(\".+?\")"),
)

MASKS: tuple[tuple[str, str], ...] = LO2_MASKS + LOGLEAD_MASKS


def first_line(message: str | pl.Expr = "m_message") -> pl.Expr:
    """The first line of a (possibly multi-line) message: what LogLead masks and Drain parses."""
    expr = pl.col(message) if isinstance(message, str) else message
    return expr.str.split("\n").list.first()


def masked(text: pl.Expr, masks: Sequence[tuple[str, str]] = MASKS) -> pl.Expr:
    """``text`` with variable parts replaced by placeholders.

    Each mask runs twice, as in LogLead: a match consumes the separator after it, so ``1_2_3``
    needs a second pass to mask every number.
    """
    for replacement, pattern in masks:
        text = text.str.replace_all(pattern, replacement).str.replace_all(pattern, replacement)
    return text


def normalized(message: str | pl.Expr = "m_message") -> pl.Expr:
    """``e_message_normalized``: the first line of the message, masked."""
    return masked(first_line(message))


def normalize_lines(lines: pl.Series) -> pl.DataFrame:
    """``line`` -> ``e_message_normalized`` for each distinct first line in ``lines``.

    The LO2 masks (ids) run on the distinct lines, then LogLead's masks on what is distinct after
    them: ids make most lines unique, so a run's ~300,000 distinct lines become ~2,000, and the
    second half of the 24 regex passes costs next to nothing. Same result as :func:`masked`.
    """
    # The streaming engine spreads the regex passes over all cores (the in-memory one uses one).
    frame = (
        pl.DataFrame({"line": lines.unique()}).lazy()
        .with_columns(masked(pl.col("line"), LO2_MASKS).alias("_ids_masked"))
        .collect(engine="streaming")
    )
    shapes = frame.select(pl.col("_ids_masked").unique())
    shapes = shapes.with_columns(
        masked(pl.col("_ids_masked"), LOGLEAD_MASKS).alias("e_message_normalized"))
    return frame.join(shapes, on="_ids_masked", how="left").select("line", "e_message_normalized")


def with_normalized(frame: pl.DataFrame, message: str = "m_message") -> pl.DataFrame:
    """``frame`` plus ``e_message_normalized``, masking each distinct first line once (LO2
    repeats its lines: a run's 1.3 M events have about a quarter as many distinct first lines,
    and the regex passes are the expensive part)."""
    frame = frame.with_columns(first_line(message).alias("_first_line"))
    lines = normalize_lines(frame["_first_line"]).rename({"line": "_first_line"})
    return frame.join(lines, on="_first_line", how="left", maintain_order="left").drop(
        "_first_line")


def words(text: pl.Expr) -> pl.Expr:
    """Whitespace-separated words, no empty ones."""
    return text.str.extract_all(r"\S+")


def trigrams(frame: pl.DataFrame, column: str) -> pl.Series:
    """All overlapping character 3-grams of ``column`` per row, in text order (none for texts
    shorter than 3 characters). One explode and one group_by: no Python loop over rows."""
    chars = pl.col(column).str.len_chars().cast(pl.Int64)
    rows = frame.select(pl.col(column)).with_row_index("_row")
    grams = (
        rows.with_columns(pl.int_ranges(0, (chars - 2).clip(lower_bound=0)).alias("_at"))
        .explode("_at")
        .drop_nulls("_at")  # texts shorter than 3 characters have none
        .with_columns(pl.col(column).str.slice(pl.col("_at"), 3).alias("_gram"))
        .group_by("_row", maintain_order=True)
        .agg("_gram")
    )
    grams = (
        rows.select("_row")
        .join(grams, on="_row", how="left", maintain_order="left")
        .with_columns(pl.col("_gram").fill_null(pl.lit([], dtype=pl.List(pl.String))))
    )
    return grams.get_column("_gram").alias("e_trigrams")


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


#: ``lo2/events_enhanced``: exactly the seed's event schema, in its order.
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

#: ``lo2/sequences_enhanced``: the seed's sequence schema, then what downstream needs: where the
#: sequence comes from and its Drain ids in event order (LogLead's ``SequenceEnhancer.events``).
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
