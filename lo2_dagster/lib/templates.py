"""Log templates that are the same on every rerun: masks, drain3, and a distinct-count rule.

A template's input is an event's *message key*: its level, logger and method (constants of the
code that logged it) and the first line of its message, masked by
:mod:`lo2_dagster.lib.masking` (stage 1: values by what they look like). Two error statuses that
differ only in their name, or the same ``Exception:`` logged by two classes, stay apart.

Stage 2 decides by behaviour across the training runs. drain3 (LogLead's similarity, depth
and children; no ``_`` delimiter) first
groups messages of the same length and prefix and marks the positions where they differ. At
such a position (:func:`_decide`):

- values seen in a single training run (with one run: seen once) are *one-off*; from
  :data:`MIN_WILDCARD_VALUES` of them on, they become a wildcard there, and so do stage 1's
  placeholders at that position (``<ID>`` is a value too);
- a position whose runs each draw their own values (their sets overlap less than
  :data:`RECURRENCE`, pooled Jaccard) holds data, not code: all its values become a wildcard.
  That is a decision about the position: names a developer logs into the same slot as ids
  (``validate( "admin", ...)`` beside ``validate( "<ID>", ...)``) merge with them;
- values that recur one by one can still combine into templates that do not (first names x
  last names): while the group's templates do not recur across runs, the widest kept position
  becomes a wildcard.

Values that come back in every run (error names, endpoints, methods) stay constants: each gets
a template of its own, so a kind of id the masks never saw collapses into one template, and
``UNSUPPORTED_GRANT_TYPE`` never merges with ``INVALID_BASIC_CREDENTIALS``. The final templates
live in a second drain3 miner that holds exactly them (drain3's serialization); a message
matches the most specific template that fits it exactly, and matching never changes them.

Drain learns as it reads, so its cluster ids depend on the order of its input. The reference
pipeline fed one miner from several threads and got different ids on identical reruns. Here
every miner reads each *distinct* message once, most frequent first (ties by text), in one
thread: the order depends only on the training data, not on partition order, thread count or
timing.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import polars as pl
from drain3 import TemplateMiner
from drain3.memory_buffer_persistence import MemoryBufferPersistence
from drain3.template_miner_config import TemplateMinerConfig

from lo2_dagster.lib.masking import MAX_FEATURE_CHARS, cut_for_features, first_line, normalize_lines

#: The id of lines that match no trained template (drain3 cluster ids start at 1).
UNMATCHED = "e0"
#: drain3's wildcard.
WILDCARD = "<*>"
#: The column that holds an event's template input (see :func:`message_key`).
KEY = "message_key"
#: Stage 2: at a varying position, values seen in a single training run are one-off; when
#: there are at least this many, they become a wildcard (the values that recur stay constants)
MIN_WILDCARD_VALUES = 5

#: ... and all of a position's values become a wildcard when the runs' sets of values overlap
#: less than this (pooled Jaccard index of every two runs): names drawn from a vocabulary
#: recur, but each run draws its own mix; error names and endpoints come back in every run.
RECURRENCE = 0.5


def run_overlap(runs_of: Mapping[str, set[int]]) -> float:
    """Pooled Jaccard index of the value sets of every two runs, from the runs each value
    occurs in: 1 when every run shows the same values, 0 when no value occurs in two runs
    (1 with fewer than two runs: nothing to compare)."""
    runs = {r for rs in runs_of.values() for r in rs}
    if len(runs) < 2:
        return 1.0
    k = [len(rs) for rs in runs_of.values()]
    shared = sum(n * (n - 1) / 2 for n in k)  # sum over run pairs of |A & B|
    union = (len(runs) - 1) * sum(k) - shared  # sum over run pairs of |A | B|
    return shared / union if union else 1.0


#: One row per run, service and distinct message key of that run's events.
MESSAGE_COUNTS_SCHEMA: dict[str, pl.DataType] = {
    "service": pl.String(),
    KEY: pl.String(),
    "count": pl.Int64(),
    "first_seen": pl.Datetime("us"),
}

#: The readable side of the trained state: one row per template.
TEMPLATE_SCHEMA: dict[str, pl.DataType] = {
    "template_id": pl.String(),
    "template": pl.String(),
    "count": pl.Int64(),
    "messages": pl.Int64(),
    "first_seen": pl.Datetime("us"),
    "wildcards": pl.Int64(),
    "services": pl.List(pl.String()),
}


@dataclass(frozen=True)
class DrainSettings:
    """LogLead's Drain settings for LO2 but its delimiter: similarity 0.4, depth 4, at most
    100 children per node; they decide which messages are compared position by position in
    stage 2, not which positions become wildcards. No extra delimiter by default (LogLead splits
    on ``_``, which cuts base64url ids into a varying number of tokens); :func:`tokens` already
    splits after ``,`` ``:`` ``;`` ``=``."""

    sim_th: float = 0.4
    depth: int = 4
    max_children: int = 100
    extra_delimiters: tuple[str, ...] = ()
    parametrize_numeric_tokens: bool = True

    def miner_config(self, sim_th: float | None = None) -> TemplateMinerConfig:
        config = TemplateMinerConfig()
        config.drain_sim_th = self.sim_th if sim_th is None else sim_th
        config.drain_depth = self.depth
        config.drain_max_children = self.max_children
        config.drain_extra_delimiters = list(self.extra_delimiters)
        config.parametrize_numeric_tokens = self.parametrize_numeric_tokens
        config.masking_instructions = []  # messages arrive masked (lib.masking)
        config.snapshot_compress_state = False  # keep the state readable JSON
        return config

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> DrainSettings:
        values = json.loads(text)
        values["extra_delimiters"] = tuple(values["extra_delimiters"])
        return cls(**values)


def template_id(cluster_id: int) -> str:
    """LogLead's id format: ``e`` + drain3's cluster id."""
    return f"e{cluster_id}"


#: The event columns a message key holds besides the masked message, in order.
KEY_COLUMNS = ("level", "logger", "method")


def message_key(normalized: str | pl.Expr = "e_message_normalized") -> pl.Expr:
    """``LEVEL logger method - <masked first line>``: what templates are mined from and
    matched against (events need :data:`KEY_COLUMNS`, as raw events have)."""
    text = pl.col(normalized) if isinstance(normalized, str) else normalized
    header = [part for c in KEY_COLUMNS for part in (pl.col(c).fill_null(""), pl.lit(" "))]
    return pl.concat_str(*header[:-1], pl.lit(" - "), text).alias(KEY)


def message_counts(events: pl.LazyFrame) -> pl.DataFrame:
    """Distinct message keys of one run's events, per service, with their line count and first
    time (events: ``m_message``, ``m_timestamp``, ``service``, ``level``, ``logger``,
    ``method``)."""
    return count_message_keys(events)[0]


def count_message_keys(events: pl.LazyFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """:func:`message_counts`, and the distinct first lines whose key was made of a prefix
    (longer than :data:`~lo2_dagster.lib.masking.MAX_FEATURE_CHARS`): ``service``, the key
    columns, ``count`` (lines), ``first_seen``, ``first_line_chars``, earliest first."""
    header = ["service", *KEY_COLUMNS]
    lines = (
        events.select(first_line().alias("line"), "m_timestamp", *header)
        .group_by("line", *header)
        .agg(pl.len().alias("count"), pl.col("m_timestamp").min().alias("first_seen"))
        .collect()
    )
    cut = cut_for_features(lines, "line").sort("first_seen", *header, "line").drop("line")
    if len(cut):  # each first line -> its feature text (masking.feature_text)
        lines = lines.with_columns(pl.col("line").str.slice(0, MAX_FEATURE_CHARS))
    counts = (
        lines.join(normalize_lines(lines["line"]), on="line", how="left")
        .with_columns(message_key())
        .group_by("service", KEY)
        .agg(pl.col("count").sum().cast(pl.Int64), pl.col("first_seen").min())
        .sort("service", KEY)
        .select(list(MESSAGE_COUNTS_SCHEMA))
        .cast(MESSAGE_COUNTS_SCHEMA)  # type: ignore[arg-type]
    )
    return counts, cut


def merge_counts(parts: Mapping[str, pl.DataFrame]) -> pl.DataFrame:
    """Per-run message counts (run -> :func:`message_counts`) combined: one row per message key
    with its lines, first time, services and the training runs it occurs in (indices into the
    sorted run names; stage 2 needs them). In no particular order: :func:`train` orders."""
    runs = sorted(parts)
    frames = [parts[r].with_columns(pl.lit(i, pl.UInt32).alias("run")) for i, r in
              enumerate(runs)]
    schema = {KEY: pl.String(), "count": pl.Int64(), "first_seen": pl.Datetime("us"),
              "services": pl.List(pl.String()), "runs": pl.List(pl.UInt32())}
    if not frames:
        return pl.DataFrame(schema=schema)
    return (
        pl.concat(frames)
        .group_by(KEY)
        .agg(pl.col("count").sum(), pl.col("first_seen").min(),
             pl.col("service").unique().sort().alias("services"),
             pl.col("run").unique().sort().alias("runs"))
        .cast(schema)  # type: ignore[arg-type]
    )


def in_training_order(counts: pl.DataFrame) -> pl.DataFrame:
    """Most lines first, ties by text: an order that depends on the training data only."""
    return counts.sort(["count", KEY], descending=[True, False])


@dataclass
class TemplateQuality:
    """What the templates' page shows about how well values were told from constants."""

    #: Templates with events in each service (``service``, ``templates``).
    per_service: pl.DataFrame
    #: Templates that matched a single training line.
    seen_once: int
    #: drain3's varying positions that stage 2 made wildcards (for some or all of their
    #: values), and those where it kept two values or more as constants.
    wildcard_positions: int
    kept_positions: int
    #: The kept position with the most distinct values: how many, its drain3 group's template
    #: and some of the values (1 and empty: no varying position was kept).
    widest_kept: int = 1
    widest_kept_template: str = ""
    widest_kept_values: tuple[str, ...] = ()
    #: A few wildcard templates with example values (``template``, ``values``).
    examples: pl.DataFrame = field(default_factory=pl.DataFrame)


def tokens(key: str, extra_delimiters: Sequence[str] = ()) -> list[str]:
    """A message key as template tokens: split on whitespace, and after ``,`` ``:`` ``;``
    ``=`` (JSON fields, ``Load:<id>``, ``key=value``), so a value glued to its name is a
    position of its own; each of ``extra_delimiters`` (:class:`DrainSettings`) is replaced by
    a space, as drain3 does."""
    for delimiter in extra_delimiters:
        key = key.replace(delimiter, " ")
    return _SEPARATOR.sub(r"\1 ", key).split()


_SEPARATOR = re.compile(r"([,:;=])(?=\S)")


class Templates:
    """The final templates, stored as a drain3 miner that holds exactly them (drain3's own
    serialization), plus the readable table. Matching is exact, and the most specific template
    wins: a message whose value at a position is a known constant matches the template with that
    constant, not the wildcard template of one-off values at the same position (drain3's own
    ``match()`` prefers the wildcard)."""

    def __init__(self, miner: TemplateMiner, table: pl.DataFrame, settings: DrainSettings,
                 unmatched_in_training: int = 0, quality: TemplateQuality | None = None
                 ) -> None:
        self.miner = miner
        self.table = table
        self.settings = settings
        self.unmatched_in_training = unmatched_in_training
        self.quality = quality

    @property
    def ids(self) -> set[str]:
        return set(self.table["template_id"])

    @property
    def texts(self) -> dict[str, str]:
        """Template id -> template text (what explanations show for a template feature)."""
        return dict(self.table.select("template_id", "template").iter_rows())

    @functools.cached_property
    def _index(self) -> dict[tuple[int, str, str], list[tuple[int, int, tuple[str, ...]]]]:
        """(length, first, second token) -> templates (wildcards, id, tokens), most specific
        first; a template with a wildcard among its first two tokens is indexed under it."""
        index: dict[tuple[int, str, str], list[tuple[int, int, tuple[str, ...]]]] = {}
        for cluster in self.miner.drain.clusters:
            words = tuple(cluster.log_template_tokens)
            head = (*words, "", "")[:2]
            entry = (words.count(WILDCARD), cluster.cluster_id, words)
            index.setdefault((len(words), *head), []).append(entry)
        for entries in index.values():
            entries.sort()
        return index

    def match_one(self, key: str) -> str:
        """The id of the most specific template that matches ``key`` exactly (wildcards match
        any token), or :data:`UNMATCHED`."""
        words = tokens(key, self.settings.extra_delimiters)
        head = [*words, "", ""][:2]
        n = len(words)
        candidates = [e for first in (head[0], WILDCARD) for second in (head[1], WILDCARD)
                      for e in self._index.get((n, first, second), ())]
        for _, cluster_id, template in sorted(candidates):
            if all(t in (WILDCARD, w) for t, w in zip(template, words, strict=True)):
                return template_id(cluster_id)
        return UNMATCHED

    def match(self, messages: pl.Series) -> pl.Series:
        """Template id of each message key (:meth:`match_one`); call it with distinct keys."""
        return pl.Series("e_event_drain_id", [self.match_one(m) for m in messages.to_list()],
                         dtype=pl.String)

    def state(self) -> bytes:
        """The miner in drain3's own serialization (``TemplateMiner.save_state``: JSON)."""
        buffer = MemoryBufferPersistence()
        self.miner.persistence_handler = buffer
        try:
            self.miner.save_state("lo2_dagster training")
        finally:
            self.miner.persistence_handler = None
        return buffer.state

    @classmethod
    def from_state(cls, state: bytes, table: pl.DataFrame, settings: DrainSettings) -> Templates:
        persistence = MemoryBufferPersistence()
        persistence.state = state
        miner = TemplateMiner(persistence_handler=persistence, config=_holder_config(settings))
        miner.persistence_handler = None  # matching never saves
        return cls(miner, table, settings)

    @functools.cached_property
    def digest(self) -> str:
        """Content hash of the trained state and settings (the asset's data version, recorded
        by the tables built with these templates). The miner is not changed after training."""
        h = hashlib.blake2b(digest_size=16)
        h.update(self.settings.to_json().encode())
        h.update(self.state())
        return h.hexdigest()


def _holder_config(settings: DrainSettings) -> TemplateMinerConfig:
    """The miner that holds the final templates: nothing merges (similarity 1)."""
    return settings.miner_config(sim_th=1.0)


@dataclass
class _Decision:
    """Stage 2 for one drain3 group: each member's final template, and per varying position
    the values made a wildcard and the values kept as constants."""

    finals: list[str]
    wildcards: dict[int, list[str]]
    kept: dict[int, list[str]]


_MASKED = re.compile(r"\W*(<[A-Z]+>\W*)+")


def _is_masked(value: str) -> bool:
    """Whether a token is a stage-1 placeholder (with punctuation: ``"<ID>",``)."""
    return _MASKED.fullmatch(value) is not None


def _decide(group: list[str], members: list[list[str]], runs: list[list[int]],
            lines: list[int], single_run: bool) -> _Decision:
    """Which values of a group's varying positions become wildcards (the module docstring's
    three rules), from its members' tokens, runs and lines."""
    def one_off(run_set: set[int], count: int) -> bool:
        return len(run_set) == 1 and (not single_run or count == 1)

    varying = [p for p, t in enumerate(group) if t == WILDCARD]
    wild: dict[int, set[str]] = {}
    seen_at: dict[int, dict[str, set[int]]] = {}
    for position in varying:
        seen: dict[str, set[int]] = {}
        count: dict[str, int] = {}
        for member, member_runs, n in zip(members, runs, lines, strict=True):
            seen.setdefault(member[position], set()).update(member_runs)
            count[member[position]] = count.get(member[position], 0) + n
        seen_at[position] = seen
        rare = {v for v, r in seen.items() if one_off(r, count[v])}
        if len(seen) >= MIN_WILDCARD_VALUES and run_overlap(seen) < RECURRENCE:
            rare = set(seen)  # data, not code: each run draws its own values
        if len(rare) >= MIN_WILDCARD_VALUES:
            # A placeholder is a value too: it joins the wildcard of its position.
            wild[position] = rare | {v for v in seen if _is_masked(v)}

    def finals() -> list[str]:
        return [" ".join(WILDCARD if v in wild.get(p, ()) else v for p, v in enumerate(m))
                for m in members]

    # Values that recur one by one can still combine into templates that do not (first
    # names x last names): while the runs' sets of the group's templates overlap less than
    # RECURRENCE, the kept position with the most values becomes a wildcard.
    while True:
        texts = finals()
        text_runs: dict[str, set[int]] = {}
        for text, member_runs in zip(texts, runs, strict=True):
            text_runs.setdefault(text, set()).update(member_runs)
        candidates = [p for p in varying if set(seen_at[p]) - wild.get(p, set())
                      and len(seen_at[p]) >= MIN_WILDCARD_VALUES]
        if not candidates or run_overlap(text_runs) >= RECURRENCE:
            break
        widest = max(candidates, key=lambda p: (len(seen_at[p]), -p))
        wild[widest] = set(seen_at[widest])
    return _Decision(
        finals=texts,
        wildcards={p: sorted(v) for p, v in wild.items()},
        kept={p: sorted(set(seen_at[p]) - wild.get(p, set())) for p in varying},
    )


def train(counts: pl.DataFrame, settings: DrainSettings | None = None) -> Templates:
    """Templates from merged message counts (:func:`merge_counts`): drain3 groups the message
    keys (most frequent first), stage 2 (:func:`_decide`, the module docstring) decides which
    varying values become wildcards, and the training lines each final template matches are
    counted, with what the templates' page shows about their quality."""
    settings = settings or DrainSettings()
    ordered = in_training_order(counts)
    keys = ordered[KEY].to_list()
    words = [tokens(k, settings.extra_delimiters) for k in keys]
    grouping = TemplateMiner(persistence_handler=None, config=settings.miner_config())
    for w in words:
        grouping.add_log_message(" ".join(w))
    members: dict[int, list[int]] = {}
    for i, w in enumerate(words):
        cluster = grouping.match(" ".join(w), full_search_strategy="fallback")
        if cluster is not None:
            members.setdefault(cluster.cluster_id, []).append(i)
    runs = ordered["runs"].to_list()
    lines = ordered["count"].to_list()
    single_run = len({r for rs in runs for r in rs}) <= 1
    finals: dict[str, None] = {}  # final template texts, in training order
    widths: list[tuple[int, str, list[str]]] = []  # (distinct kept values, group, values)
    examples: list[tuple[str, str]] = []
    wildcards = 0
    for cluster_id in sorted(members, key=lambda c: members[c][0]):
        rows = members[cluster_id]
        group = grouping.drain.id_to_cluster[cluster_id].log_template_tokens
        decided = _decide(group, [words[i] for i in rows], [runs[i] for i in rows],
                          [lines[i] for i in rows], single_run)
        for text in decided.finals:
            finals.setdefault(text)
        wildcards += len(decided.wildcards)
        for values in decided.wildcards.values():
            if len(examples) < 20:
                examples.append((" ".join(group), ", ".join(values[:5])))
        widths += [(len(v), " ".join(group), v[:10]) for v in decided.kept.values()
                   if len(v) > 1]
    placed = {i for rows in members.values() for i in rows}
    for i in sorted(set(range(len(words))) - placed):  # keys drain3 could not place
        finals.setdefault(" ".join(words[i]))
    miner = TemplateMiner(persistence_handler=None, config=_holder_config(settings))
    for text in finals:
        miner.add_log_message(text)
    templates = Templates(miner, pl.DataFrame(schema=TEMPLATE_SCHEMA), settings)
    assigned = ordered.with_columns(templates.match(ordered[KEY]))
    per_template = assigned.group_by("e_event_drain_id").agg(
        pl.col("count").sum(), pl.len().cast(pl.Int64).alias("messages"),
        pl.col("first_seen").min(),
        pl.col("services").list.explode(keep_nulls=False, empty_as_null=False).unique().sort())
    table = (
        pl.DataFrame(
            {"template_id": [template_id(c.cluster_id) for c in miner.drain.clusters],
             "template": [c.get_template() for c in miner.drain.clusters],
             "_order": [c.cluster_id for c in miner.drain.clusters]},
            schema={"template_id": pl.String, "template": pl.String, "_order": pl.Int64})
        .join(per_template, left_on="template_id", right_on="e_event_drain_id", how="left")
        .with_columns(pl.col("count", "messages").fill_null(0),
                      pl.col("services").fill_null(pl.lit([], pl.List(pl.String))),
                      pl.col("template").str.count_matches(WILDCARD, literal=True)
                      .cast(pl.Int64).alias("wildcards"))
        .sort("_order")
        .select(list(TEMPLATE_SCHEMA))
        .cast(TEMPLATE_SCHEMA)  # type: ignore[arg-type]
    )
    unmatched = assigned.filter(pl.col("e_event_drain_id") == UNMATCHED)["count"].sum()
    widest = max(widths, default=(1, "", []))
    quality = TemplateQuality(
        per_service=(table.select("services").explode("services").drop_nulls("services")
                     .group_by("services").len("templates").rename({"services": "service"})
                     .sort("service")),
        seen_once=int((table["count"] == 1).sum()),
        wildcard_positions=wildcards,
        kept_positions=len(widths),
        widest_kept=widest[0], widest_kept_template=widest[1],
        widest_kept_values=tuple(widest[2]),
        examples=pl.DataFrame({"template": [t for t, _ in examples],
                               "values": [v for _, v in examples]},
                              schema={"template": pl.String, "values": pl.String}),
    )
    return Templates(miner, table, settings, unmatched_in_training=int(unmatched),
                     quality=quality)
