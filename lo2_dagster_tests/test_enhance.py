"""Enhancer functions, Drain templates and the enhanced tables, without Dagster."""

import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lo2_dagster.lib import enhance, loader, masking
from lo2_dagster.lib import templates as drain
from lo2_dagster.lib.allowlist import Allowlist, EventRule, SequenceRule
from lo2_dagster.lib.enhanced_tables import enhance_events, sequence_tables
from lo2_dagster.storage import Batches
from lo2_dagster_tests.conftest import EXCERPT, RUN, line

# The seed (../shared/seeds/enhanced-parquet-exports.md), transcribed as it is written there.
SEED_EVENTS = (
    "row_id (int64), m_message (string), run (string), test_case (string), service (string), "
    "seq_id (string), normal (bool), m_timestamp (timestamp[us]), anomaly (bool), "
    "is_fp_allowlisted (bool), anomaly_original (bool), e_message_normalized (string), "
    "e_words (list<string>), e_words_len (uint32), e_trigrams (list<string>), "
    "e_trigrams_len (uint32), e_event_drain_id (string), e_chars_len (uint32), "
    "e_lines_len (uint32), e_event_id_len (int32)"
)
SEED_SEQUENCES = (
    "seq_id (string), m_message (string), normal (bool), start_time (timestamp[us]), "
    "end_time (timestamp[us]), anomaly (bool), is_fp_allowlisted (bool), seq_len (uint32), "
    "e_event_id_len (uint32), duration (duration[us]), duration_sec (int64), "
    "e_words (list<string>), e_words_len (uint32), e_trigrams (list<string>), "
    "e_trigrams_len (uint32)"
)
# What downstream needs beyond the contract (docs/schemas.md): where a sequence comes from,
# its Drain ids.
SEQUENCE_EXTRAS = "run (string), test_case (string), service (string), " \
                  "e_event_drain_id (list<string>)"


def seed_columns(text: str) -> list[tuple[str, str]]:
    return [tuple(part.strip().rstrip(")").split(" (")) for part in text.split("), ")]


def arrow_names(path: Path) -> list[tuple[str, str]]:
    """The file's columns in the contract's type vocabulary (docs/schemas.md; Arrow's large_*
    are the same types)."""
    def name(t: pa.DataType) -> str:
        if pa.types.is_large_list(t) or pa.types.is_list(t):
            return f"list<{name(t.value_type)}>"
        return "string" if pa.types.is_large_string(t) else str(t)
    return [(f.name, name(f.type)) for f in pq.read_schema(path)]


@pytest.fixture(scope="module")
def excerpt_events(tmp_path_factory) -> pl.DataFrame:
    root = tmp_path_factory.mktemp("lo2")
    trace = (line("16:31:00.000", "Exception: ERR10001 client 7f2a9c3e not found", level="ERROR")
             + "\n\tat a.B.c(B.java:1)\n\tat d.E.f(E.java:2)\n")
    files = {("correct", "token"): EXCERPT.read_text(),
             ("correct", "code"): "\n".join(EXCERPT.read_text().splitlines()[:150]) + "\n",
             ("access_token_client_secret_wrong_401", "token"): EXCERPT.read_text() + trace}
    for (test_case, service), text in files.items():
        path = root / "logs" / RUN / test_case / f"light-oauth2-oauth2-{service}-1.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return loader.load_run(root, RUN, trim_lines=0).events


@pytest.fixture(scope="module")
def trained(excerpt_events) -> drain.Templates:
    return drain.train(drain.merge_counts({RUN: drain.message_counts(excerpt_events.lazy())}))


def key(message: str, level: str = "DEBUG", logger: str = "c.n.oauth.cache.ServiceMapStore",
        method: str = "load") -> str:
    """The message key a template is matched on (templates.message_key)."""
    return f"{level} {logger} {method} - {message}"


def test_normalizing_distinct_lines_equals_normalizing_every_line(excerpt_events):
    direct = excerpt_events.select(masking.normalized().alias("e_message_normalized"))
    via_distinct = masking.with_normalized(excerpt_events).select("e_message_normalized")
    assert direct.equals(via_distinct)


# --- words, trigrams, lengths (masking: test_masking.py) --------------------------------------

def test_words_trigrams_and_lengths():
    features = enhance.message_features(pl.Series(["a  b\tc", "abcd", "ab", "Load:<HEX>"]))
    rows = {r["e_message_normalized"]: r for r in features.iter_rows(named=True)}
    assert rows["a  b\tc"]["e_words"] == ["a", "b", "c"]  # runs of whitespace, no empty words
    assert rows["abcd"]["e_trigrams"] == ["abc", "bcd"]  # overlapping, in text order
    assert rows["ab"]["e_trigrams"] == [] and rows["ab"]["e_trigrams_len"] == 0
    assert rows["Load:<HEX>"]["e_trigrams_len"] == len("Load:<HEX>") - 2
    assert features.schema["e_words_len"] == pl.UInt32
    lengths = pl.DataFrame({"m_message": ["one", "two\n\tat x\n\tat y"]}).select(enhance.lengths())
    assert lengths["e_lines_len"].to_list() == [1, 3]
    assert lengths["e_chars_len"].to_list() == [3, len("two\n\tat x\n\tat y")]
    assert lengths["e_event_id_len"].to_list() == [1, 1]


def test_trigrams_are_every_three_neighbouring_characters_of_any_text():
    texts = ["abcd", "", None, "ab", "abc", "héllo 🎉!", "a\tb c", "x" * 1000]
    got = enhance.trigrams(pl.DataFrame({"t": texts}, schema={"t": pl.String}), "t").to_list()
    assert got == [[t[i:i + 3] for i in range(len(t) - 2)] if t else [] for t in texts]
    assert enhance.trigrams(pl.DataFrame({"t": []}, schema={"t": pl.String}), "t").to_list() == []


# --- over-long lines: features of a prefix, the message whole --------------------------------

#: A 10 MB line: 10 M characters of words (spaces) or of one token without any.
LONG = 10_000_000


def long_text(spaces: bool) -> str:
    unit = "lorem ipsum dolor sit amet " if spaces else "loremipsum"
    return (unit * (LONG // len(unit) + 1))[:LONG]


@pytest.mark.parametrize("spaces", [True, False])
def test_features_of_an_over_long_line_are_those_of_its_prefix(spaces):
    limit = masking.MAX_FEATURE_CHARS
    text = long_text(spaces)
    prefix = text[:limit]
    events = pl.DataFrame({"m_message": [text + "\n\tat a.B(B.java:1)", prefix, "short 42"]})
    normalized = masking.with_normalized(events)
    assert normalized["m_message"].equals(events["m_message"])  # whole
    first, of_prefix, _ = normalized["e_message_normalized"].to_list()
    assert first == of_prefix == events.select(masking.normalized())["m_message"][1]
    features = enhance.message_features(normalized["e_message_normalized"])
    assert len(features) == 2  # the long line and its prefix have one feature row
    row = features.filter(pl.col("e_message_normalized") == first).row(0, named=True)
    assert row["e_trigrams_len"] == len(first) - 2 and row["e_words"] == first.split()
    cut = masking.cut_for_features(events.with_row_index("row_id"))
    assert cut["row_id"].to_list() == [0]  # a line of exactly the limit is whole
    assert cut["first_line_chars"].to_list() == [LONG]
    # The message key Drain mines and matches is made of the prefix too.
    counts, cut_lines = drain.count_message_keys(events.lazy().with_columns(
        pl.lit(None, pl.Datetime("us")).alias("m_timestamp"), pl.lit("token").alias("service"),
        pl.lit("DEBUG").alias("level"), pl.lit("a.B").alias("logger"),
        pl.lit("c").alias("method")))
    assert cut_lines["count"].to_list() == [1] and cut_lines["first_line_chars"].to_list() == [LONG]
    assert counts.filter(pl.col(drain.KEY).str.ends_with(first))["count"].to_list() == [2]
    assert counts[drain.KEY].str.len_chars().max() < 4 * limit


def test_an_over_long_line_is_enhanced_whole_and_counted(excerpt_events, trained, tmp_path):
    text = long_text(spaces=True)
    extra = excerpt_events.tail(1).with_columns(
        pl.lit(text).alias("m_message"), pl.col("row_id") + 1)
    events = pl.concat([excerpt_events, extra])
    enhanced = enhance_events(events.lazy(), trained, Allowlist())
    assert enhanced.cut.select("row_id", "seq_id", "first_line_chars").rows() == [
        (extra["row_id"][0], extra["seq_id"][0], LONG)]
    path = tmp_path / "events.parquet"
    enhanced.frame.sink_parquet(path)
    last = pl.read_parquet(path).tail(1).row(0, named=True)
    assert last["m_message"] == text and last["e_chars_len"] == LONG
    prefix = masking.normalize_lines(pl.Series([text[:masking.MAX_FEATURE_CHARS]]))
    assert last["e_message_normalized"] == prefix["e_message_normalized"][0]
    assert last["e_trigrams_len"] == len(last["e_message_normalized"]) - 2


# --- Drain templates ---------------------------------------------------------------------------

def test_template_ids_do_not_depend_on_run_order_or_reruns(excerpt_events):
    a = excerpt_events.filter(pl.col("test_case") == "correct")
    b = excerpt_events.filter(pl.col("test_case") != "correct")
    ab = drain.train(drain.merge_counts({"a": drain.message_counts(a.lazy()),
                                         "b": drain.message_counts(b.lazy())}))
    ba = drain.train(drain.merge_counts({"b": drain.message_counts(b.lazy()),
                                         "a": drain.message_counts(a.lazy())}))
    assert ab.state() == ba.state()
    assert ab.table.equals(ba.table)
    assert ab.digest == drain.train(drain.merge_counts({
        "a": drain.message_counts(a.lazy()), "b": drain.message_counts(b.lazy())})).digest


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_template_ids_do_not_depend_on_the_order_messages_arrive_in(excerpt_events, trained,
                                                                    seed):
    """Threads, partitions and timing only change the order in which (message, count) rows
    arrive; any order trains the same miner."""
    counts = drain.merge_counts({RUN: drain.message_counts(excerpt_events.lazy())})
    shuffled = counts.sample(fraction=1.0, shuffle=True, seed=seed)
    assert not shuffled.equals(counts)
    assert drain.train(shuffled).state() == trained.state()


THREADS_CHILD = """
import sys, polars as pl
from lo2_dagster.lib import templates as drain
events = pl.read_parquet(sys.argv[1])
print(drain.train(drain.merge_counts({"run": drain.message_counts(events.lazy())})).digest)
"""


def test_template_ids_do_not_depend_on_the_thread_count(tmp_path):
    """A run large enough for polars to split the grouping over threads, counted with 1 and 4."""
    lines = EXCERPT.read_text().splitlines()
    events = pl.DataFrame({"m_message": [ln.split(" - ", 1)[1] for ln in lines] * 2000})
    events = events.with_columns(
        pl.lit(None, dtype=pl.Datetime("us")).alias("m_timestamp"),
        (pl.col("m_message") + " " + pl.int_range(pl.len()).mod(997).cast(pl.String))
        .alias("m_message"),  # many distinct lines, masked to the same few shapes
        pl.lit("token").alias("service"), pl.lit("DEBUG").alias("level"),
        pl.lit("c.n.o.t.h.Oauth2TokenPostHandler").alias("logger"),
        pl.lit("handleRequest").alias("method"))
    path = tmp_path / "events.parquet"
    events.write_parquet(path)
    digests = set()
    for threads in ("1", "4"):
        env = dict(os.environ, POLARS_MAX_THREADS=threads)
        out = subprocess.run([sys.executable, "-c", THREADS_CHILD, str(path)], env=env,
                             capture_output=True, text=True, check=True)
        digests.add(out.stdout.strip())
    assert len(digests) == 1


def test_match_never_changes_the_miner_and_unknown_lines_get_the_reserved_id(trained):
    before = trained.state()
    ids = trained.match(pl.Series([
        key("a message nobody has ever logged here"), key("Load:<HEX>"),
        key("normalised = /oauth2/token", logger="c.n.openapi.ApiNormalisedPath",
            method="<init>")]))
    assert ids[0] == drain.UNMATCHED
    assert ids[1] in trained.ids and ids[2] in trained.ids
    assert trained.state() == before


def test_state_round_trips_through_drain3s_serialization(trained):
    state = trained.state()
    assert state.startswith(b'{"py/object": "drain3.drain.Drain"')
    restored = drain.Templates.from_state(state, trained.table, trained.settings)
    messages = pl.Series([key("Load:<HEX>"), key("scope = null"), key("unknown thing")])
    assert restored.match(messages).equals(trained.match(messages))
    assert restored.digest == trained.digest
    assert drain.DrainSettings.from_json(trained.settings.to_json()) == trained.settings


def test_template_table_counts_every_training_line(excerpt_events, trained):
    table = trained.table
    assert table.columns == list(drain.TEMPLATE_SCHEMA)
    assert table["count"].sum() + trained.unmatched_in_training == len(excerpt_events)
    assert table["template_id"].to_list() == [f"e{i}" for i in range(1, len(table) + 1)]
    assert trained.unmatched_in_training == 0


# --- the enhanced tables -----------------------------------------------------------------------

def write_enhanced(events: pl.DataFrame, templates: drain.Templates, allowlist: Allowlist,
                   folder: Path) -> tuple[Path, Path]:
    events_path, sequences_path = folder / "events.parquet", folder / "sequences.parquet"
    enhance_events(events.lazy(), templates, allowlist).frame.sink_parquet(events_path)
    tables = sequence_tables(loader.build_sequences(events), pl.scan_parquet(events_path),
                             allowlist, chunk_rows=97)  # small chunks: sequences span chunks
    Batches(enhance.SEQUENCES_ENHANCED_SCHEMA, tables).write(str(sequences_path))
    return events_path, sequences_path


def test_written_files_have_exactly_the_seeds_schemas(excerpt_events, trained, tmp_path):
    events_path, sequences_path = write_enhanced(excerpt_events, trained, Allowlist(), tmp_path)
    assert arrow_names(events_path) == seed_columns(SEED_EVENTS)
    assert arrow_names(sequences_path) == seed_columns(SEED_SEQUENCES + ", " + SEQUENCE_EXTRAS)
    written = pl.read_parquet_schema(events_path)
    assert list(written.items()) == list(enhance.EVENTS_ENHANCED_SCHEMA.items())


def test_enhanced_events_keep_every_row_in_order(excerpt_events, trained, tmp_path):
    events_path, _ = write_enhanced(excerpt_events, trained, Allowlist(), tmp_path)
    out = pl.read_parquet(events_path)
    assert out["row_id"].equals(excerpt_events["row_id"])
    assert out["m_message"].equals(excerpt_events["m_message"])
    assert out["anomaly_original"].equals(excerpt_events["anomaly"])
    assert out["anomaly"].equals(excerpt_events["anomaly"])  # empty allowlist: unchanged
    assert out["e_event_drain_id"].is_in(list(trained.ids)).all()
    error = out.filter(pl.col("m_message").str.starts_with("Exception: ERR10001"))
    assert error["e_lines_len"].to_list() == [3]
    assert error["e_message_normalized"].to_list() == ["Exception: ERR10001 client <HEX> not found"]


def test_sequences_concatenate_their_events_features(excerpt_events, trained, tmp_path):
    events_path, sequences_path = write_enhanced(excerpt_events, trained, Allowlist(), tmp_path)
    events = pl.read_parquet(events_path)
    sequences = pl.read_parquet(sequences_path)
    expected = events.group_by("seq_id", maintain_order=True).agg(
        pl.len().cast(pl.UInt32).alias("seq_len"), pl.col("e_event_drain_id"),
        pl.col("e_words").explode(), pl.col("e_trigrams").explode(),
        pl.col("e_words_len").sum().cast(pl.UInt32))
    got = sequences.select(expected.columns)
    assert got.equals(expected)
    assert (sequences["e_trigrams_len"] == sequences["e_trigrams"].list.len()).all()
    assert (sequences["e_event_id_len"] == sequences["seq_len"]).all()
    assert (sequences["duration"] == sequences["end_time"] - sequences["start_time"]).all()
    assert sequences["duration_sec"].dtype == pl.Int64


def test_allowlist_relabels_events_and_sequences(excerpt_events, trained, tmp_path):
    load_id = trained.match(pl.Series([key("Load:<HEX>")]))[0]
    allowlist = Allowlist(
        events=(EventRule("config", message="^Config loaded"),
                EventRule("load-on-token", template=load_id, service="token"),
                EventRule("both", message="^normalised", template="e999")),  # never both
        sequences=(SequenceRule("code", seq_id="__code$"),))
    result = enhance_events(excerpt_events.lazy(), trained, allowlist)
    assert result.rule_hits["both"] == 0
    assert result.rule_hits["config"] == excerpt_events["m_message"].str.starts_with(
        "Config loaded").sum() > 0
    events_path, sequences_path = write_enhanced(excerpt_events, trained, allowlist, tmp_path)
    out = pl.read_parquet(events_path)
    flagged = out.filter("is_fp_allowlisted")
    assert len(flagged) == result.allowlisted_lines
    assert set(flagged["service"]) == {"token", "code"}
    assert (out["anomaly"] == (out["anomaly_original"] & ~out["is_fp_allowlisted"])).all()
    assert result.relabelled_lines == (out["anomaly_original"] & ~out["anomaly"]).sum() > 0
    sequences = pl.read_parquet(sequences_path)
    assert sequences.filter("is_fp_allowlisted")["service"].to_list() == ["code"]
    assert not sequences.filter("is_fp_allowlisted")["anomaly"].any()


@pytest.mark.parametrize("chunk_rows", [2, 4, 6, 100])
def test_non_contiguous_sequences_are_refused_whatever_the_chunking(excerpt_events, trained,
                                                                    tmp_path, chunk_rows):
    events_path, _ = write_enhanced(excerpt_events, trained, Allowlist(), tmp_path)
    events = pl.read_parquet(events_path)
    first = {s: events.filter(pl.col("seq_id") == s).head(2) for s in events["seq_id"].unique()}
    a, b, c = sorted(first)
    # A B A B C ...: A's events are split by B's (the last of a chunk must not hide it).
    order = pl.concat([first[a].head(1), first[b].head(1), first[a].tail(1), first[b].tail(1),
                       first[c]])
    tables = sequence_tables(loader.build_sequences(order), order.lazy(), Allowlist(),
                             chunk_rows=chunk_rows)
    with pytest.raises(ValueError, match="not contiguous"):
        list(tables)
