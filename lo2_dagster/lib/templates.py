"""Drain templates that are the same on every rerun: drain3, fed in a fixed order.

Drain learns as it reads, so its cluster ids depend on the order of its input. The reference
pipeline fed one miner from several threads and got different ids on identical reruns. Here
the miner reads each *distinct* normalized message once, most frequent first (ties by text),
in one thread: the order depends only on the training data, not on partition order, thread
count or timing. Lines are then assigned with ``match()``, which never changes the miner.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import polars as pl
from drain3 import TemplateMiner
from drain3.memory_buffer_persistence import MemoryBufferPersistence
from drain3.template_miner_config import TemplateMinerConfig

from lo2_dagster.lib.enhance import first_line, normalize_lines

#: The id of lines that match no trained template (drain3 cluster ids start at 1).
UNMATCHED = "e0"

#: One row per distinct normalized message of the training runs.
MESSAGE_COUNTS_SCHEMA: dict[str, pl.DataType] = {
    "e_message_normalized": pl.String(),
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
}


@dataclass(frozen=True)
class DrainSettings:
    """LogLead's Drain setup for LO2 (and drain3's defaults): similarity 0.4, depth 4, at most
    100 children per node, ``_`` as an extra delimiter."""

    sim_th: float = 0.4
    depth: int = 4
    max_children: int = 100
    extra_delimiters: tuple[str, ...] = ("_",)
    parametrize_numeric_tokens: bool = True

    def miner_config(self) -> TemplateMinerConfig:
        config = TemplateMinerConfig()
        config.drain_sim_th = self.sim_th
        config.drain_depth = self.depth
        config.drain_max_children = self.max_children
        config.drain_extra_delimiters = list(self.extra_delimiters)
        config.parametrize_numeric_tokens = self.parametrize_numeric_tokens
        config.masking_instructions = []  # messages arrive masked (enhance.normalized)
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


def message_counts(events: pl.LazyFrame) -> pl.DataFrame:
    """Distinct normalized messages of one run's events with their line count and first time."""
    lines = (
        events.select(first_line().alias("line"), "m_timestamp")
        .group_by("line")
        .agg(pl.len().alias("count"), pl.col("m_timestamp").min().alias("first_seen"))
        .collect()
    )
    return (
        lines.join(normalize_lines(lines["line"]), on="line", how="left")
        .group_by("e_message_normalized")
        .agg(pl.col("count").sum().cast(pl.Int64), pl.col("first_seen").min())
        .select(list(MESSAGE_COUNTS_SCHEMA))
        .cast(MESSAGE_COUNTS_SCHEMA)  # type: ignore[arg-type]
    )


def merge_counts(parts: Iterable[pl.DataFrame]) -> pl.DataFrame:
    """Per-run message counts combined (in no particular order: :func:`train` orders them)."""
    frames = list(parts)
    if not frames:
        return pl.DataFrame(schema=MESSAGE_COUNTS_SCHEMA)
    return (
        pl.concat(frames)
        .group_by("e_message_normalized")
        .agg(pl.col("count").sum(), pl.col("first_seen").min())
    )


def in_training_order(counts: pl.DataFrame) -> pl.DataFrame:
    """Most lines first, ties by text: an order that depends on the training data only."""
    return counts.sort(["count", "e_message_normalized"], descending=[True, False])


class Templates:
    """A trained drain3 miner plus the readable table of its templates."""

    def __init__(self, miner: TemplateMiner, table: pl.DataFrame, settings: DrainSettings,
                 unmatched_in_training: int = 0) -> None:
        self.miner = miner
        self.table = table
        self.settings = settings
        self.unmatched_in_training = unmatched_in_training

    @property
    def ids(self) -> set[str]:
        return set(self.table["template_id"])

    @property
    def texts(self) -> dict[str, str]:
        """Template id -> template text (what explanations show for a Drain feature)."""
        return dict(self.table.select("template_id", "template").iter_rows())

    def match(self, messages: pl.Series) -> pl.Series:
        """Template id of each message (``match()``: the miner is not changed); messages that
        match nothing get :data:`UNMATCHED`. Call it with distinct messages."""
        ids = []
        for message in messages.to_list():
            cluster = self.miner.match(message, full_search_strategy="fallback")
            ids.append(template_id(cluster.cluster_id) if cluster is not None else UNMATCHED)
        return pl.Series("e_event_drain_id", ids, dtype=pl.String)

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
        miner = TemplateMiner(persistence_handler=persistence, config=settings.miner_config())
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


def train(counts: pl.DataFrame, settings: DrainSettings | None = None) -> Templates:
    """Mine templates from distinct messages (as :func:`merge_counts` orders them), then count
    the training lines each final template matches."""
    settings = settings or DrainSettings()
    miner = TemplateMiner(persistence_handler=None, config=settings.miner_config())
    ordered = in_training_order(counts)
    for message in ordered["e_message_normalized"].to_list():
        miner.add_log_message(message)
    templates = Templates(miner, pl.DataFrame(schema=TEMPLATE_SCHEMA), settings)
    assigned = ordered.with_columns(templates.match(ordered["e_message_normalized"]))
    per_template = assigned.group_by("e_event_drain_id").agg(
        pl.col("count").sum(), pl.len().cast(pl.Int64).alias("messages"),
        pl.col("first_seen").min())
    clusters = pl.DataFrame(
        {"template_id": [template_id(c.cluster_id) for c in miner.drain.clusters],
         "template": [c.get_template() for c in miner.drain.clusters],
         "_order": [c.cluster_id for c in miner.drain.clusters]},
        schema={"template_id": pl.String, "template": pl.String, "_order": pl.Int64},
    )
    table = (
        clusters.join(per_template, left_on="template_id", right_on="e_event_drain_id",
                      how="left")
        .with_columns(pl.col("count", "messages").fill_null(0))
        .sort("_order")
        .select(list(TEMPLATE_SCHEMA))
        .cast(TEMPLATE_SCHEMA)  # type: ignore[arg-type]
    )
    unmatched = assigned.filter(pl.col("e_event_drain_id") == UNMATCHED)["count"].sum()
    return Templates(miner, table, settings, unmatched_in_training=int(unmatched))
