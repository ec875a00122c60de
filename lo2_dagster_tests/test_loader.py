"""The loader on real lines and on every kind of odd input: each line is accounted for."""

from __future__ import annotations

import re
from datetime import datetime

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from lo2_dagster.lib import loader
from lo2_dagster.lib.layout import LayoutError
from lo2_dagster_tests.conftest import EXCERPT, RUN, line

HZ = "hz._hzInstance_1_dev.partition-operation.thread-5"
TRACE = [
    "com.networknt.exception.ApiException: {\"statusCode\":401}",
    "\tat com.networknt.oauth.token.handler.Oauth2TokenPostHandler.handleRequest("
    "Oauth2TokenPostHandler.java:123)",
    "\tat com.networknt.handler.Handler.next(Handler.java:233)",
    "Caused by: java.lang.IllegalStateException: boom",
    "\t... 12 more",
]


def test_real_excerpt_every_line_is_an_event(write_run):
    text = EXCERPT.read_text()
    root = write_run({("correct", "token"): text})
    loaded = loader.load_run(root, RUN, trim_lines=0)
    events = loaded.events
    assert len(events) == 300 == loader.count_lines(text)
    assert loaded.totals()["event"] == 300
    # Timestamps parse, carry the run's date (2024-06-28, from the epoch), and keep file order.
    assert events["m_timestamp"].null_count() == 0
    assert events["m_timestamp"].dt.date().unique().to_list() == [datetime(2024, 6, 28).date()]
    # Each event's time is its line's time (real logs are not sorted: threads interleave).
    expected = [datetime.strptime("2024-06-28 " + ln[:12], "%Y-%m-%d %H:%M:%S.%f")
                for ln in text.splitlines()]
    assert events["m_timestamp"].to_list() == expected
    first = text.splitlines()[0]
    assert events["m_message"][0] == first.split(" - ", 1)[1]
    # The excerpt's ERROR lines (request threads and Hazelcast threads) are events.
    error_lines = [ln for ln in text.splitlines() if " ERROR " in ln]
    errors = events.filter(pl.col("level") == "ERROR")
    assert len(errors) == len(error_lines) == 5
    assert errors.filter(pl.col("thread") == HZ)["correlation_id"].null_count() == 2
    assert set(events["level"].unique()) <= {"DEBUG", "INFO", "WARN", "ERROR"}
    # Correlation ids are the 22-character request ids.
    cids = events["correlation_id"].drop_nulls()
    assert cids.str.len_chars().unique().to_list() == [22]
    # Labels come from the folder.
    assert events["seq_id"].unique().to_list() == [f"{RUN}__correct__token"]
    assert not events["anomaly"].any() and events["normal"].all()
    assert events["row_id"].to_list() == list(range(300))


def test_default_trim_drops_first_100_lines_of_files_that_open_with_start_up(write_run):
    """Start-up output is at the head of a container's first log of the run, whichever test
    case ran first (LO2 v2 shuffles them): found by time, not by folder name; a later file is
    trimmed only if it opens the same way (the container started again)."""
    text = EXCERPT.read_text()
    lines = text.splitlines()
    cut = next(i for i, ln in enumerate(lines) if "ApiNormalisedPath <init>" not in ln)
    later = "\n".join("17" + ln[2:] for ln in lines[cut:]) + "\n"  # an hour on, mid-traffic
    restarted = "\n".join("18" + ln[2:] for ln in lines) + "\n"  # opens as the first one
    root = write_run({("correct", "token"): later, ("get_token_404", "token"): text,
                      ("delete_token_404", "token"): restarted, ("correct", "code"): later})
    loaded = loader.load_run(root, RUN)
    trimmed = {r["test_case"] + "/" + r["service"]: r["trimmed"]
               for r in loaded.files.iter_rows(named=True)}
    assert trimmed == {"correct/token": 0, "get_token_404/token": 100,
                       "delete_token_404/token": 100, "correct/code": 100}
    assert loaded.events["line_no"].min() == 1
    # LogLead's way: the head of every file.
    every = loader.load_run(root, RUN, trim_scope="every_file")
    assert every.totals()["trimmed"] == 400 and every.events["line_no"].min() == 101
    assert every.fingerprint != loaded.fingerprint


def test_continuation_lines_stay_with_their_event(write_run):
    lines = [
        line("10:00:00.000", "before"),
        line("10:00:00.001", "ApiException", level="ERROR"),
        *TRACE,
        line("10:00:00.002", "after", cid="", thread=HZ),
    ]
    root = write_run({("get_token_404", "token"): "\n".join(lines) + "\n"})
    loaded = loader.load_run(root, RUN, trim_lines=0)
    messages = loaded.events["m_message"].to_list()
    assert messages == ["before", "ApiException\n" + "\n".join(TRACE), "after"]
    totals = loaded.totals()
    assert (totals["event"], totals["continuation"]) == (3, len(TRACE))
    assert loaded.events["anomaly"].all()
    assert loaded.events["correlation_id"].to_list()[-1] is None


def test_every_line_is_accounted_for(write_run):
    """Trimmed + blank + events + continuation + rejected == physical lines, per file."""
    lines = [
        *TRACE[:2],  # a stack trace cut by the trim...
        "\tat a.b.C.d(C.java:1)",  # ...and its last frame, after the trim: no event to join
        "",
        line("10:00:00.000", "first"),
        "   ",
        *TRACE,
        line("10:00:00.005", "second", level="INFO"),
        "10:00:00.006 [XNIO-1 task-1] truncated garbage",  # timestamp, but no header
        line("25:61:00.000", "impossible time"),
        line("10:00:00.007", "crlf line") + "\r",
        line("10:00:00.008", "last, no newline at end of file"),
    ]
    text = "\n".join(lines)
    root = write_run({("correct", "code"): text, ("correct", "key"): "", ("correct", "user"): "\n"})
    loaded = loader.load_run(root, RUN, trim_lines=2)
    files = {row["service"]: row for row in loaded.files.iter_rows(named=True)}
    for row in files.values():
        assert sum(row[k] for k in loader.LINE_KINDS) == row["lines"]
    code = files["code"]
    assert code["lines"] == len(lines) == len(text.split("\n"))
    assert code["trimmed"] == 2
    assert code["blank"] == 2
    assert code["event"] == 4
    assert code["continuation"] == len(TRACE)
    assert code["continuation_without_event"] == 1
    assert code["malformed_header"] == 1
    assert code["invalid_time"] == 1
    # An empty file has no lines; a lone newline is one line: blank (a file without a time is
    # no container's first log, so nothing of it is trimmed).
    assert (files["key"]["lines"], files["user"]["lines"], files["user"]["blank"]) == (0, 1, 1)
    messages = loaded.events["m_message"].to_list()
    assert messages[-2:] == ["crlf line", "last, no newline at end of file"]
    assert len(loaded.rejected_examples) == 3
    assert any("[malformed_header]" in ex for ex in loaded.rejected_examples)


def test_invalid_utf8_is_replaced_and_counted(write_run):
    good = line("10:00:00.000", "fine").encode()
    bad = line("10:00:00.001", "caf\xe9").encode().replace(b"\xc3\xa9", b"\xe9\xff")
    root = write_run({("correct", "token"): good + b"\n" + bad + b"\n" + bad + b"\n"})
    loaded = loader.load_run(root, RUN, trim_lines=0)
    assert loaded.totals()["invalid_utf8_lines"] == 2
    assert loaded.totals()["event"] == 3
    assert loaded.events["m_message"][1] == "caf\ufffd\ufffd"


def test_time_keeps_increasing_across_midnight(write_run):
    # The run starts 23:59:30 UTC; this test case starts before midnight and ends after it,
    # and its threads interleave: a line from before midnight is written after one from after.
    run = "light-oauth2-data-1719705570"  # 2024-06-29 23:59:30 UTC
    times = ("23:59:59.990", "00:00:00.010", "23:59:59.995", "00:00:00.020", "00:00:05.000")
    later = ("00:10:00.000", "00:10:01.000")  # a later test case, wholly after midnight
    root = write_run({("correct", "token"): "\n".join(line(t, "x") for t in times),
                      ("get_token_404", "token"): "\n".join(line(t, "y") for t in later)},
                     run=run)
    stamps = loader.load_run(root, run, trim_lines=0).events["m_timestamp"].to_list()
    before, after = datetime(2024, 6, 29), datetime(2024, 6, 30)
    assert stamps == [
        before.replace(hour=23, minute=59, second=59, microsecond=990_000),
        after.replace(microsecond=10_000),
        before.replace(hour=23, minute=59, second=59, microsecond=995_000),
        after.replace(microsecond=20_000),
        after.replace(second=5),
        after.replace(minute=10),
        after.replace(minute=10, second=1),
    ]


def test_logs_just_before_a_run_that_starts_after_midnight(write_run):
    run = "light-oauth2-data-1719619500"  # 2024-06-29 00:05:00 UTC
    lines = [line(t, "x") for t in ("23:58:00.000", "23:59:59.000", "00:00:01.000")]
    root = write_run({("correct", "token"): "\n".join(lines)}, run=run)
    stamps = loader.load_run(root, run, trim_lines=0).events["m_timestamp"].to_list()
    assert stamps == [datetime(2024, 6, 28, 23, 58), datetime(2024, 6, 28, 23, 59, 59),
                      datetime(2024, 6, 29, 0, 0, 1)]


def test_run_without_epoch_is_dated_1970(write_run):
    root = write_run({("correct", "token"): line("10:00:00.000", "x")}, run="my-run")
    stamp = loader.load_run(root, "my-run", trim_lines=0).events["m_timestamp"][0]
    assert stamp == datetime(1970, 1, 1, 10)


def test_sequences_join_messages_and_span(write_run):
    root = write_run({
        ("correct", "token"): "\n".join([line("10:00:00.000", "a"), line("10:00:01.000", "b")]),
        ("get_token_404", "code"): line("10:05:00.000", "c") + "\n" + TRACE[0],
    })
    events = loader.load_run(root, RUN, trim_lines=0).events
    seqs = loader.build_sequences(events)
    assert seqs.schema == pl.Schema(loader.SEQUENCE_SCHEMA)
    rows = {r["seq_id"]: r for r in seqs.iter_rows(named=True)}
    token = rows[f"{RUN}__correct__token"]
    assert (token["m_message"], token["n_events"], token["normal"]) == ("a\nb", 2, True)
    assert token["end_time"] - token["start_time"] == datetime(1, 1, 1, 0, 0, 1) - datetime(
        1, 1, 1)
    code = rows[f"{RUN}__get_token_404__code"]
    assert code["anomaly"] and code["m_message"] == "c\n" + TRACE[0]
    assert code["test_case"] == "get_token_404" and code["service"] == "code"


def test_fingerprint_follows_content_only(write_run, tmp_path):
    files = {("correct", "token"): EXCERPT.read_text()}
    a = loader.load_run(write_run(files, root=tmp_path / "a"), RUN).fingerprint
    b = loader.load_run(write_run(files, root=tmp_path / "b"), RUN).fingerprint
    assert a == b and re.fullmatch(r"[0-9a-f]{32}", a)
    changed = {("correct", "token"): EXCERPT.read_text() + line("16:40:00.000", "new") + "\n"}
    assert loader.load_run(write_run(changed, root=tmp_path / "c"), RUN).fingerprint != a
    # The read settings are part of it: another trim gives other rows, so another version.
    assert loader.load_run(write_run(files, root=tmp_path / "a"), RUN, 0).fingerprint != a


def test_batches_give_the_same_result_as_one_batch(write_run, monkeypatch):
    text = EXCERPT.read_text()
    trace = line("16:31:00.000", "ApiException", level="ERROR") + "\n" + "\n".join(TRACE)
    odd = "\n".join([*TRACE[:2], line("16:31:01.000", "ok"), "10:00:00.006 [x] broken",
                     *TRACE[1:3], trace])
    cases, services = ("correct", "get_token_404"), ("token", "code")
    files = {(tc, svc): text + trace for tc in cases for svc in services}
    files["correct", "user"] = odd  # starts with orphan frames, has a rejected line + its frames
    root = write_run(files)
    whole = loader.load_run(root, RUN, trim_lines=0)
    assert whole.totals()["continuation_without_event"] == 2
    assert whole.totals()["continuation_of_rejected"] == 2
    monkeypatch.setattr(loader, "_BATCH_BYTES", 1)  # one file per batch
    batched = loader.load_run(root, RUN, trim_lines=0)
    assert batched.events.equals(whole.events)
    assert batched.files.equals(whole.files)
    assert whole.events["m_message"].str.contains("Caused by").sum() == 5


def test_frames_below_a_rejected_line_do_not_join_the_event_above(write_run):
    lines = [line("10:00:00.000", "A"), "10:00:00.001 [XNIO-1 task-1] garbled",
             "\tat x.Y.z(Y.java:1)", line("25:00:00.000", "bad time"), "\tat q.R.s(R.java:2)",
             line("10:00:00.002", "B", level="ERROR"), "\tat ok.Frame(F.java:3)"]
    root = write_run({("correct", "token"): "\ufeff" + "\n".join(lines)})  # with a BOM
    loaded = loader.load_run(root, RUN, trim_lines=0)
    assert loaded.events["m_message"].to_list() == ["A", "B\n\tat ok.Frame(F.java:3)"]
    totals = loaded.totals()
    assert (totals["malformed_header"], totals["invalid_time"]) == (1, 1)
    assert (totals["continuation_of_rejected"], totals["continuation"]) == (2, 1)


def test_negative_trim_is_refused(write_run):
    root = write_run({("correct", "token"): "x"})
    with pytest.raises(ValueError, match="trim_lines"):
        loader.load_run(root, RUN, trim_lines=-1)


def test_missing_run_folder_names_it(write_run):
    root = write_run({("correct", "token"): "x"})
    with pytest.raises(LayoutError, match=r"light-oauth2-data-1.*not found"):
        loader.load_run(root, "light-oauth2-data-1")


def test_streaming_parse_equals_in_memory_parse():
    """The streaming engine splits work into morsels; order and content must not change."""
    text = EXCERPT.read_text()
    texts = [text * 150, "", "\n".join(TRACE) + "\n" + text * 50, text]
    streaming = loader.classify_lines(texts, trim_lines=7)
    assert len(streaming) > 60_000
    assert streaming.equals(loader.classify_lines(texts, trim_lines=7, engine="in-memory"))
    assert streaming["line_no"].to_list()[:3] == [0, 1, 2]


def test_cr_only_line_breaks_are_line_breaks(write_run):
    lines = [line(f"10:00:00.00{i}", f"message {i}") for i in range(5)]
    root = write_run({("correct", "token"): "\r".join(lines) + "\r",
                      ("correct", "code"): "\r\n".join(lines) + "\r\n",
                      ("correct", "key"): "\n".join(lines) + "\n"})
    loaded = loader.load_run(root, RUN, trim_lines=2)
    for row in loaded.files.iter_rows(named=True):  # the same 5 lines, whatever the endings
        assert (row["lines"], row["trimmed"], row["event"]) == (5, 2, 3), row
    assert loaded.events["m_message"].to_list()[:3] == ["message 2", "message 3", "message 4"]


def test_continuation_right_after_the_trim_belongs_to_the_trimmed_event(write_run):
    members = ["", "Members {size:3, ver:3} [",
               *[f"\tMember [172.18.0.{i}]:5701 - uuid-{i}" for i in range(3)], "]", ""]
    lines = [line("10:00:00.000", "start"), line("10:00:00.001", "joined", level="INFO"),
             *members, line("10:00:00.002", "first request"), *TRACE[1:3]]
    root = write_run({("correct", "token"): "\n".join(lines)})
    loaded = loader.load_run(root, RUN, trim_lines=3)  # the cut falls inside the Members block
    row = loaded.files.row(0, named=True)
    assert row["continuation_without_event"] == 0
    assert (row["trimmed"], row["blank"], row["event"], row["continuation"]) == (
        3 + 5, 1, 1, 2)
    assert loaded.events["m_message"].to_list() == ["first request\n" + "\n".join(TRACE[1:3])]


def test_utf16_files_are_read_and_sizes_are_those_on_disk(write_run):
    text = "\n".join(line(f"10:00:00.00{i}", f"message {i}") for i in range(3)) + "\n"
    root = write_run({("correct", "token"): text.encode("utf-16")})
    loaded = loader.load_run(root, RUN, trim_lines=0)
    assert loaded.events["m_message"].to_list() == ["message 0", "message 1", "message 2"]
    assert loaded.files["bytes"][0] == len(text.encode("utf-16"))


def test_a_run_without_a_readable_log_loads_empty(write_run, tmp_path):
    root = write_run({("correct", "token"): "x"})
    log = root / "logs" / RUN / "correct" / "light-oauth2-oauth2-token-1.log"
    log.unlink()
    log.mkdir()  # a folder where a log should be: listed as unknown, not read
    (root / "logs" / RUN / "correct" / "light-oauth2-oauth2-code-1.log").symlink_to(
        tmp_path / "lo2" / "logs" / RUN / "correct" / "gone.log")  # dangling, inside the root
    loaded = loader.load_run(root, RUN, trim_lines=0)
    assert "correct/light-oauth2-oauth2-token-1.log/" in loaded.layout.ignored
    assert len(loaded.layout.outside_root) == 1 and loaded.events.is_empty()
    assert loaded.events.schema == pl.Schema(loader.EVENT_SCHEMA)


def test_header_fields_are_what_the_header_pattern_captures_on_any_line():
    """``header_fields`` cuts the header's groups out of the match instead of capturing them:
    on real-looking and on hostile lines (blank or repeated correlation ids, ids that are
    level names or ``-``, runs of spaces, tabs and no-break spaces, brackets and non-ASCII in
    threads, a header that ends the line, Unicode digits, truncated times), every field and
    the message equal ``str.extract_groups(HEADER_PATTERN)``'s, nulls included."""
    import random

    from lo2_dagster.lib.loader import HEADER_FIELDS, HEADER_PATTERN, header_fields

    rnd = random.Random(17)
    pieces = [" ", "  ", "\t", "\u00a0", "-", " - ", "]", "[", "INFO", "WARN", "ERROR", "DEBUG",
              "TRACE", "FATAL", "INFOX", "c.n.o.Handler", "handleRequest", "abc123", "日本", "é",
              "12", ":", ".", "x", ""]
    levels = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "INFOX", "info"]

    def digits(n: int) -> str:
        return "".join(rnd.choice("0123456789\u0663") for _ in range(n))

    def hostile() -> str:
        time_of_day = f"{digits(2)}:{digits(2)}:{digits(2)}.{digits(3)}"
        if rnd.random() < 0.1:
            time_of_day = time_of_day[:rnd.randrange(len(time_of_day))]
        parts = [time_of_day, rnd.choice([" [", " [ ", "[", " [["]),
                 "".join(rnd.choice(pieces) for _ in range(rnd.randrange(4))), "]"]
        parts += [rnd.choice(pieces) for _ in range(rnd.randrange(9))]
        return "".join(parts)

    def header_like(valid: bool) -> str:
        def spaces() -> str:
            return " " * rnd.choice([1, 1, 1, 2, 3])

        def pick(good: list[str], bad: list[str]) -> str:
            return rnd.choice(good if valid else good + bad)
        return "".join([
            f"{digits(2)}:{digits(2)}:{digits(2)}.{digits(3)} [",
            pick(["main", "XNIO-1 task-2", "日本", " ", ""], ["é]x", "a b ]"]), "]", spaces(),
            pick(["", "abc", "-", "INFO", "日本", "x-y"], ["a\u00a0b", "a\tb"]), spaces(),
            pick(levels[:6], levels[6:]), spaces(), rnd.choice(["c.n.X", "-", "INFO", "日本"]),
            spaces(), rnd.choice(["m", "-", "handle"]),
            pick([" -", " - "], ["  - ", " -x", " -\t"]),
            rnd.choice(["", "msg", " - more", "x]y", "INFO a b - c", "\u00a0"]),
        ])

    lines = [hostile() for _ in range(20_000)] + [header_like(valid=i % 2 == 0)
                                                   for i in range(40_000)] + [""]
    frame = pl.DataFrame({"line": lines})
    expected = (
        frame.with_columns(pl.col("line").str.extract_groups(HEADER_PATTERN).alias("h"))
        .unnest("h")
        .with_columns(pl.col("line").str.slice(pl.col("head").str.len_chars()).alias("message"))
        .drop("head")
    )
    got = header_fields(frame.lazy()).collect()
    assert got.columns == ["line", *HEADER_FIELDS] == expected.columns
    assert expected["level"].is_not_null().sum() > 12_000  # many lines are headers
    assert (expected["correlation_id"] == "").sum() > 500  # and many have no correlation id
    assert_frame_equal(got, expected)
