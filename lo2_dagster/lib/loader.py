"""Read the log files of one LO2 run into events, accounting for every physical line.

A line is one of: ``trimmed`` (start-up output: among the first ``trim_lines`` of a file that
opens with its container's start-up output, see ``startup_files``, or of every file with
``trim_scope="every_file"``; or a continuation line right after them that belongs to a trimmed
event), ``blank``, an
``event`` (a light-4j header line), a ``continuation`` of the event above it (stack-trace
frames, ``Caused by:``; kept in that event's ``m_message``, newline-joined), or
``rejected`` with a reason. The counts add up to the file's line count, file by file.

Line breaks are ``\n``, ``\r\n`` or a lone ``\r`` (old Mac files), as Python's universal newlines
read them.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import AnyStr, Literal

import polars as pl

from lo2_dagster.lib.layout import LayoutError, LogFile, RunFiles, run_files
from lo2_dagster.lib.names import CORRECT, run_start, seq_id

#: Bump when a change to this module changes its output for the same files.
PARSER_VERSION = "2"
DEFAULT_TRIM_LINES = 100
#: Where start-up output is trimmed. A container writes it when it starts: at the head of its
#: first log of the run (LO2 v1: ``correct``; v2: whichever test case ran first), and again at
#: the head of a later file only if it was restarted; its other files start with ordinary
#: traffic (FORMAT.md). ``start_up`` trims the files that open as their container's first log
#: opens (``startup_files``); ``every_file`` trims the head of every file, as LogLead's
#: ``trim_init_lines`` does (on LO2 v2's short test cases that drops ordinary traffic, whole
#: files of it).
TRIM_SCOPES = ("start_up", "every_file")
DEFAULT_TRIM_SCOPE = "start_up"

#: ``HH:mm:ss.SSS [thread]  correlationId LEVEL logger method - message`` (light-4j logback).
#: Hazelcast threads log a blank correlation id, which leaves three spaces before the level.
#: The pattern stops before the message: the message is the rest of the line after ``head``,
#: which keeps the capturing regex off the (long) message text.
HEADER_PATTERN = (
    r"^(?P<head>(?P<hh>\d{2}):(?P<mm>\d{2}):(?P<ss>\d{2})\.(?P<ms>\d{3}) \[(?P<thread>[^\]]*)\] +"
    r"(?P<correlation_id>\S*) +(?P<level>TRACE|DEBUG|INFO|WARN|ERROR|FATAL) +(?P<logger>\S+) +"
    r"(?P<method>\S+) -(?: |$))"
)
#: :data:`HEADER_PATTERN` without its groups: matched without captures (a DFA); the fields cut
#: out of the match take 0.24 s of a generated run on 2 cores, extract_groups 0.41 s.
_HEADER_MATCH = re.sub(r"\(\?P<\w+>", "(?:", HEADER_PATTERN)
#: What :func:`header_fields` gives, in this order: the groups of :data:`HEADER_PATTERN` but
#: ``head``, then ``message`` (the rest of the line).
HEADER_FIELDS = ("hh", "mm", "ss", "ms", "thread", "correlation_id", "level", "logger", "method",
                 "message")
TIMESTAMP_PREFIX = r"^\d{2}:\d{2}:\d{2}\.\d{3} "
REJECT_REASONS = (
    "invalid_time",  # a header whose time of day cannot exist (25:61:00.000)
    "malformed_header",  # starts with a timestamp, but the rest is not a light-4j header
    "continuation_without_event",  # no timestamp, and no record above it in the file
    "continuation_of_rejected",  # no timestamp, below a rejected line: not the event's trace
)
LINE_KINDS = ("trimmed", "blank", "event", "continuation", *REJECT_REASONS)

_DAY_MS = 86_400_000
_HALF_DAY_MS = _DAY_MS // 2
_EPOCH0 = datetime(1970, 1, 1)
#: Decode at most this many bytes of logs per polars batch: bounds memory, keeps batches large.
_BATCH_BYTES = 32 * 1024 * 1024

EVENT_SCHEMA: dict[str, pl.DataType] = {
    "row_id": pl.Int64(),
    "m_message": pl.String(),
    "run": pl.String(),
    "test_case": pl.String(),
    "service": pl.String(),
    "seq_id": pl.String(),
    "normal": pl.Boolean(),
    "anomaly": pl.Boolean(),
    "m_timestamp": pl.Datetime("us"),
    "level": pl.String(),
    "thread": pl.String(),
    "correlation_id": pl.String(),
    "logger": pl.String(),
    "method": pl.String(),
    "line_no": pl.UInt32(),
}

SEQUENCE_SCHEMA: dict[str, pl.DataType] = {
    "seq_id": pl.String(),
    "run": pl.String(),
    "test_case": pl.String(),
    "service": pl.String(),
    "m_message": pl.String(),
    "normal": pl.Boolean(),
    "anomaly": pl.Boolean(),
    "start_time": pl.Datetime("us"),
    "end_time": pl.Datetime("us"),
    "n_events": pl.UInt32(),
}


@dataclass(frozen=True)
class FileRead:
    """The decoded text of one log file and what reading it found."""

    log: LogFile
    text: str
    n_bytes: int
    digest: str
    invalid_utf8_lines: int


def read_log_file(log: LogFile) -> FileRead:
    """Read and decode one file (UTF-8, or UTF-16 with a byte-order mark); invalid UTF-8 is
    replaced (U+FFFD) and its lines counted; the size and digest are of the bytes on disk.
    ``\r\n`` and lone ``\r`` line breaks become ``\n`` (the digest is of the bytes as read)."""
    try:
        data = raw = log.path.read_bytes()
    except OSError as e:
        raise LayoutError(f"Cannot read {log.path}: {e.strerror or e}. Fix its permissions, or "
                          "move it out of the run folder.") from None
    digest = hashlib.blake2b(raw, digest_size=16).hexdigest()
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):  # UTF-16 with a byte-order mark
        data = data.decode("utf-16", errors="replace").encode()
    try:
        text, invalid = data.decode("utf-8"), 0
    except UnicodeDecodeError:
        text = data.decode("utf-8", errors="replace")
        invalid = sum(1 for line in normalize_newlines(data).split(b"\n") if not _is_utf8(line))
    return FileRead(log, normalize_newlines(text), len(raw), digest, invalid)


def normalize_newlines(text: AnyStr) -> AnyStr:
    """``\r\n`` and lone ``\r`` as ``\n`` (a no-op without ``\r``)."""
    if isinstance(text, str):
        return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text
    return text.replace(b"\r\n", b"\n").replace(b"\r", b"\n") if b"\r" in text else text


def _is_utf8(line: bytes) -> bool:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def count_lines(text: str) -> int:
    """Physical lines: newline-terminated ones plus a final unterminated one, as editors show."""
    return text.count("\n") + (1 if text and not text.endswith("\n") else 0)


def classify_lines(
    texts: Sequence[str], trim_lines: int | Sequence[int],
    engine: Literal["streaming", "in-memory"] = "streaming",
) -> pl.DataFrame:
    """One row per physical line of each text: ``file_idx``, ``line_no`` (0-based), ``line``,
    ``kind`` (one of LINE_KINDS) and the parsed header fields of event lines. ``trim_lines``:
    lines trimmed at the head of every text, or of each text.

    Row-local parsing runs on polars' streaming engine by default, which spreads the regex
    over all cores (about 2.5x faster on 2 cores); the result is the same with either engine.
    """
    trims = [trim_lines] * len(texts) if isinstance(trim_lines, int) else list(trim_lines)
    non_empty = [(i, t) for i, t in enumerate(texts) if t]
    frame = pl.DataFrame(
        {"file_idx": [i for i, _ in non_empty], "text": [t for _, t in non_empty],
         "trim": [trims[i] for i, _ in non_empty]},
        schema={"file_idx": pl.UInt32, "text": pl.String, "trim": pl.UInt32},
    )
    text = pl.col("text").str.strip_prefix("\ufeff").str.strip_suffix("\n")  # BOM, last newline
    split = (
        frame.select("file_idx", "trim", text.str.split("\n").alias("line"))
        .explode("line")
        .with_columns(pl.int_range(pl.len(), dtype=pl.UInt32).over("file_idx").alias("line_no"))
    )
    lines = header_fields(split.lazy()).collect(engine=engine).lazy()
    hh, mm, ss = (pl.col(c).cast(pl.Int64) for c in ("hh", "mm", "ss"))
    valid_time = (hh < 24) & (mm < 60) & (ss < 60)
    is_header = pl.col("level").is_not_null()
    kept = pl.col("line_no") >= pl.col("trim")
    # A record starts at each kept line that begins with a timestamp: an event, or a line
    # rejected for its header. Lines without a timestamp continue the record above them.
    stamped = is_header | pl.col("line").str.contains(TIMESTAMP_PREFIX)
    starts = kept & stamped
    # Lines are in file order, so "so far in this file" is a running count minus its value
    # where the file begins: no per-file window (a group-by) is needed.
    first = pl.col("line_no") == 0

    def so_far_in_file(flag: pl.Expr) -> pl.Expr:
        running = flag.cast(pl.UInt32).cum_sum()
        return running - pl.when(first).then(running - flag.cast(pl.UInt32)).forward_fill()

    records = lines.with_columns(
        starts.cum_sum().alias("record_idx"),
        (so_far_in_file(starts) > 0).alias("has_record"),
        # The trimmed head ends inside a record: the lines that continue it are trimmed too.
        # (Trimmed lines open their file, so for a kept line the count so far is the file's.)
        (so_far_in_file(~kept & stamped) > 0).alias("trimmed_record"),
        # The label of the record a line continues (read only where the file has one so far:
        # then the last start above it is in the same file).
        pl.when(starts).then(is_header & valid_time).forward_fill().alias("record_is_event"),
    )
    kind = (
        pl.when(~kept)
        .then(pl.lit("trimmed"))
        .when(pl.col("line").str.strip_chars() == "")
        .then(pl.lit("blank"))
        .when(is_header & valid_time)
        .then(pl.lit("event"))
        .when(is_header)
        .then(pl.lit("invalid_time"))
        .when(pl.col("line").str.contains(TIMESTAMP_PREFIX))
        .then(pl.lit("malformed_header"))
        .when(~pl.col("has_record") & pl.col("trimmed_record"))
        .then(pl.lit("trimmed"))
        .when(~pl.col("has_record"))
        .then(pl.lit("continuation_without_event"))
        .when(pl.col("record_is_event"))
        .then(pl.lit("continuation"))
        .otherwise(pl.lit("continuation_of_rejected"))
    )
    tod_ms = ((hh * 60 + mm) * 60 + ss) * 1000 + pl.col("ms").cast(pl.Int64)
    return (
        records.with_columns(kind.alias("kind"), tod_ms.alias("tod_ms"))
        .drop("hh", "mm", "ss", "ms", "has_record", "record_is_event", "trimmed_record", "trim")
        .collect()
    )


def header_fields(lines: pl.LazyFrame, line: str = "line") -> pl.LazyFrame:
    """``lines`` plus :data:`HEADER_FIELDS`: the groups :data:`HEADER_PATTERN` captures in each
    line (null where it does not match) and ``message``, the line after the header.

    The same values as ``str.extract_groups(HEADER_PATTERN)``, without capturing: the pattern
    is matched without groups (``message``: the line with the match removed), and the groups
    are cut out of the matched header. Its time fields have fixed places; the thread runs from
    the ``[`` to the first ``]``; after the ``]`` come whole tokens (no whitespace in them)
    separated by spaces: correlation id (where the header has one; ``\\S*`` takes the first
    token whenever the rest still matches), level, logger, method and ``-``.
    """
    text = pl.col(line)
    head = pl.col("_head")
    tokens = pl.col("_tokens")
    return (
        lines.with_columns(text.str.replace(_HEADER_MATCH, "").alias("_message"))
        .with_columns(pl.when(pl.col("_message").str.len_bytes() != text.str.len_bytes())
                      .then(text.str.head(text.str.len_chars()
                                          - pl.col("_message").str.len_chars()))
                      .alias("_head"))
        .with_columns(
            head.str.slice(0, 2).alias("hh"), head.str.slice(3, 2).alias("mm"),
            head.str.slice(6, 2).alias("ss"), head.str.slice(9, 3).alias("ms"),
            head.str.slice(14).str.splitn("]", 2).alias("_thread_rest"),
        )
        .with_columns(
            pl.col("_thread_rest").struct.field("field_0").alias("thread"),
            pl.col("_thread_rest").struct.field("field_1").str.split(" ")
            .list.eval(pl.element().filter(pl.element() != "")).alias("_tokens"),
        )
        .with_columns(
            pl.when(tokens.list.len() == 5).then(tokens.list.first())
            .when(head.is_not_null()).then(pl.lit("")).alias("correlation_id"),
            tokens.list.get(-4, null_on_oob=True).alias("level"),
            tokens.list.get(-3, null_on_oob=True).alias("logger"),
            tokens.list.get(-2, null_on_oob=True).alias("method"),
            pl.when(head.is_not_null()).then(pl.col("_message")).alias("message"),
        )
        .drop("_message", "_head", "_thread_rest", "_tokens")
    )


def _timestamps(start: datetime | None) -> pl.Expr:
    """Absolute event times from times of day: a file's first time is put on the day that
    brings it within 12 h of the run's start (the run's date, the next day after midnight, or
    the day before when logs start just before a run that starts just after midnight); each
    backwards jump of more than 12 h within a file (midnight) adds a day and each forward jump
    of more than 12 h (a late line from before midnight) takes one away."""
    base = start or _EPOCH0
    start_tod = (base - base.replace(hour=0, minute=0, second=0, microsecond=0)).seconds * 1000
    midnight = base.replace(hour=0, minute=0, second=0, microsecond=0)
    tod = pl.col("tod_ms")
    lead = pl.lit(start_tod) - tod.first()
    first_day = (
        (lead > _HALF_DAY_MS).cast(pl.Int64) - (lead < -_HALF_DAY_MS).cast(pl.Int64)
        if start
        else pl.lit(0)
    )
    step = tod.diff().fill_null(0)
    # Threads interleave, so a line may step back over midnight too: undo jumps both ways.
    wraps = ((step < -_HALF_DAY_MS).cast(pl.Int64) - (step > _HALF_DAY_MS).cast(pl.Int64)).cum_sum()
    days = (first_day + wraps).over("file_idx")
    offset_ms = days * _DAY_MS + tod
    return (pl.lit(midnight).cast(pl.Datetime("us")) + pl.duration(milliseconds=offset_ms)).alias(
        "m_timestamp"
    )


def events_from_lines(lines: pl.DataFrame, start: datetime | None) -> pl.DataFrame:
    """Events of classified lines, each with its continuation lines appended to its message."""
    continuations = (
        lines.lazy()
        .filter(pl.col("kind") == "continuation")
        .group_by("record_idx")
        .agg(pl.col("line").str.join("\n").alias("cont"))
    )
    return (
        lines.lazy()
        .filter(pl.col("kind") == "event")
        .join(continuations, on="record_idx", how="left", maintain_order="left")
        .with_columns(
            _timestamps(start),
            pl.when(pl.col("cont").is_null())
            .then(pl.col("message"))
            .otherwise(pl.concat_str("message", pl.lit("\n"), "cont"))
            .alias("m_message"),
            pl.col("correlation_id").replace("", None),
            (pl.col("line_no") + 1).alias("line_no"),
        )
        .select("file_idx", "line_no", "m_timestamp", "m_message", "level", "thread",
                "correlation_id", "logger", "method")
        .collect()
    )


@dataclass
class RunLoad:
    """Everything read from one run: its events, per-file line accounting, and fingerprint."""

    run: str
    layout: RunFiles
    events: pl.DataFrame
    files: pl.DataFrame
    fingerprint: str
    trim_lines: int
    rejected_examples: list[str] = field(default_factory=list)
    trim_scope: str = DEFAULT_TRIM_SCOPE

    def totals(self) -> dict[str, int]:
        """Sums over all files: lines, bytes, each line kind, invalid UTF-8 lines."""
        cols = ["lines", "bytes", *LINE_KINDS, "invalid_utf8_lines"]
        row = self.files.select(pl.col(cols).sum()).row(0, named=True) if len(self.files) else {}
        return {c: int(row.get(c) or 0) for c in cols}


def _batches(logs: Sequence[LogFile]) -> Iterator[list[FileRead]]:
    """Read files in order, yielding batches of at most ~_BATCH_BYTES (at least one file).

    A thread reads the next batch (bytes, digest, decoding) while the caller parses this one:
    ~0.1 s of a run's 1.1 s on 2 cores; at most two batches of text are in memory."""
    def read_batches() -> Iterator[list[FileRead]]:
        batch: list[FileRead] = []
        size = 0
        for log in logs:
            read = read_log_file(log)
            batch.append(read)
            size += read.n_bytes
            if size >= _BATCH_BYTES:
                yield batch
                batch, size = [], 0
        if batch:
            yield batch

    batches = read_batches()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lo2-read") as pool:
        pending = pool.submit(next, batches, None)
        while (batch := pending.result()) is not None:
            pending = pool.submit(next, batches, None)
            yield batch


def run_fingerprint(run: str, reads: Sequence[tuple[str, int, str]], trim_lines: int,
                    trim_scope: str = DEFAULT_TRIM_SCOPE) -> str:
    """Content hash of a run: its name (it dates the events), its files' (relative path, size,
    digest), the trim and the parser version. Not file times: a copy hashes the same."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"run={run}\nparser={PARSER_VERSION}\ntrim_lines={trim_lines}\n"
             f"trim_scope={trim_scope}\n".encode())
    for rel, size, digest in sorted(reads):
        h.update(f"{rel}\t{size}\t{digest}\n".encode())
    return h.hexdigest()


def load_run(
    root: Path,
    run: str,
    trim_lines: int = DEFAULT_TRIM_LINES,
    progress: Callable[[str], object] | None = None,
    follow_symlinks: bool = False,
    trim_scope: str = DEFAULT_TRIM_SCOPE,
) -> RunLoad:
    """Read all log files of ``run`` under the LO2 ``root`` into one events frame.

    Files are decoded and parsed in batches of ~32 MB, so memory holds the events of the run
    plus one batch of text; ``progress`` receives a line after each batch.
    """
    if trim_lines < 0:
        raise ValueError(f"trim_lines must be >= 0, got {trim_lines}")
    if trim_scope not in TRIM_SCOPES:
        raise ValueError(f"trim_scope must be one of {', '.join(TRIM_SCOPES)}, got {trim_scope!r}")
    layout = run_files(root, run, follow_symlinks, list_metrics=True)
    start = run_start(run)
    trimmed = ({f.path for f in layout.files} if trim_scope == "every_file"
               else startup_files(layout.files, start))
    event_parts: list[pl.DataFrame] = []
    file_rows: list[dict[str, object]] = []
    examples: list[str] = []
    for batch in _batches(layout.files):
        lines = classify_lines([r.text for r in batch],
                               [trim_lines if r.log.path in trimmed else 0 for r in batch])
        events = events_from_lines(lines, start)
        event_parts.append(_label(events, batch, run))
        file_rows.extend(_account(lines, batch))
        if len(examples) < 10:
            bad = lines.filter(pl.col("kind").is_in(REJECT_REASONS)).head(10 - len(examples))
            examples += [
                f"{batch[i].log.test_case}/{batch[i].log.path.name}:{n + 1}: [{k}] {line[:200]}"
                for i, n, k, line in bad.select("file_idx", "line_no", "kind", "line").iter_rows()
            ]
        if progress is not None:
            done = len(file_rows)
            progress(f"{run}: read {done}/{len(layout.files)} files, "
                     f"{sum(len(p) for p in event_parts):,} events so far")
        del lines, batch
    # No rechunk: concatenating the batches' chunks would briefly hold every event twice.
    events = (
        pl.concat(event_parts, rechunk=False) if event_parts
        else pl.DataFrame(schema={k: v for k, v in EVENT_SCHEMA.items() if k != "row_id"})
    )
    events = events.with_row_index("row_id").with_columns(pl.col("row_id").cast(pl.Int64))
    files = pl.DataFrame(file_rows, schema=_FILES_SCHEMA)
    fingerprint = run_fingerprint(
        run,
        [(f"{r['test_case']}/{r['file']}", r["bytes"], r["digest"]) for r in file_rows],
        trim_lines,
        trim_scope,
    )
    return RunLoad(run, layout, conform(events, EVENT_SCHEMA), files, fingerprint, trim_lines,
                   examples, trim_scope)


_FIRST_HEADER = re.compile(HEADER_PATTERN, re.MULTILINE)


def startup_files(logs: Sequence[LogFile], start: datetime | None,
                  head_bytes: int = 64 * 1024) -> set[Path]:
    """The files that open with their container's start-up output: per service, its first log
    of the run (the file whose first event's time of day is earliest, counted from the run's
    start within +-12 h, as a container may start just before the run's epoch; without an epoch
    in the name, from the run's earliest first event), and every other file of that service
    whose first event has the same logger and method as that first log's first event (a
    container that started again). Read from the head of each file only."""
    heads: list[tuple[int, tuple[str, str], LogFile]] = []
    for log in logs:
        with open(log.path, "rb") as f:
            head = normalize_newlines(f.read(head_bytes).decode("utf-8", errors="replace"))
        match = _FIRST_HEADER.search(head)
        if match is not None:
            hh, mm, ss, ms = (int(match[g]) for g in ("hh", "mm", "ss", "ms"))
            tod = ((hh * 60 + mm) * 60 + ss) * 1000 + ms
            heads.append((tod, (match["logger"], match["method"]), log))
    if not heads:
        return set()
    start_ms = min(t for t, _, _ in heads) if start is None else (
        (start.hour * 60 + start.minute) * 60 + start.second) * 1000
    first: dict[str, tuple[int, tuple[str, str]]] = {}
    for tod, opening, log in heads:
        offset = (tod - start_ms + _HALF_DAY_MS) % _DAY_MS - _HALF_DAY_MS
        if log.service not in first or offset < first[log.service][0]:
            first[log.service] = (offset, opening)
    return {log.path for _, opening, log in heads if first[log.service][1] == opening}


def conform(frame: pl.DataFrame, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """The columns of ``schema``, in its order and types (a cast, so a wrong type fails loudly)."""
    return frame.select([pl.col(name).cast(dtype, strict=True) for name, dtype in schema.items()])


_FILES_SCHEMA: dict[str, pl.DataType] = {
    "test_case": pl.String(),
    "service": pl.String(),
    "file": pl.String(),
    "bytes": pl.Int64(),
    "digest": pl.String(),
    "lines": pl.Int64(),
    **{k: pl.Int64() for k in LINE_KINDS},
    "invalid_utf8_lines": pl.Int64(),
}


def _label(events: pl.DataFrame, batch: Sequence[FileRead], run: str) -> pl.DataFrame:
    """Attach run, test case, service, seq_id and the folder label to a batch's events."""
    meta = pl.DataFrame(
        {
            "file_idx": list(range(len(batch))),
            "test_case": [r.log.test_case for r in batch],
            "service": [r.log.service for r in batch],
            "seq_id": [seq_id(run, r.log.test_case, r.log.service) for r in batch],
        },
        schema={"file_idx": pl.UInt32, "test_case": pl.String, "service": pl.String,
                "seq_id": pl.String},
    )
    return (
        events.join(meta, on="file_idx", how="left", maintain_order="left")
        .with_columns(
            pl.lit(run).alias("run"),
            (pl.col("test_case") == CORRECT).alias("normal"),
            (pl.col("test_case") != CORRECT).alias("anomaly"),
        )
        .drop("file_idx")
    )


def _account(lines: pl.DataFrame, batch: Sequence[FileRead]) -> list[dict[str, object]]:
    """Per-file counts of each line kind; they sum to the file's physical line count."""
    counts = {
        (i, k): n
        for i, k, n in lines.group_by("file_idx", "kind").len().iter_rows()
    }
    rows = []
    for i, r in enumerate(batch):
        row: dict[str, object] = {
            "test_case": r.log.test_case,
            "service": r.log.service,
            "file": r.log.path.name,
            "bytes": r.n_bytes,
            "digest": r.digest,
            "lines": count_lines(r.text),
            **{k: counts.get((i, k), 0) for k in LINE_KINDS},
            "invalid_utf8_lines": r.invalid_utf8_lines,
        }
        rows.append(row)
    return rows


def build_sequences(events: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """One row per ``seq_id`` (a service log of one test case): joined messages, label, span.

    Expects events in ``row_id`` order, as ``load_run`` returns and the warehouse stores them.
    """
    return (
        events.lazy()
        .group_by("seq_id", maintain_order=True)
        .agg(
            pl.col("run").first(),
            pl.col("test_case").first(),
            pl.col("service").first(),
            pl.col("m_message").str.join("\n"),
            pl.col("normal").first(),
            pl.col("anomaly").first(),
            pl.col("m_timestamp").min().alias("start_time"),
            pl.col("m_timestamp").max().alias("end_time"),
            pl.len().cast(pl.UInt32).alias("n_events"),
        )
        .collect()
        .pipe(conform, SEQUENCE_SCHEMA)
    )
