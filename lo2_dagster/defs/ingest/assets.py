"""Raw events and raw sequences of one run, read from its log files."""

import time
from typing import Literal

import dagster as dg
import polars as pl

from lo2_dagster.defs.keys import (
    INGEST_GROUP,
    LINE_ACCOUNTING_CHECK,
    OWNERS,
    RAW_EVENTS,
    RAW_SEQUENCES,
    RUN_LOGS,
)
from lo2_dagster.defs.resources import Lo2Root
from lo2_dagster.defs.runs import (
    RUNS,
    RunPart,
    materialize_runs,
    per_run_asset,
    validated,
)
from lo2_dagster.lib import loader
from lo2_dagster.lib.layout import LayoutError, logs_dir
from lo2_dagster.lib.names import run_start
from lo2_dagster.meta import bullet_list, column_schema, table
from lo2_dagster.storage import Warehouse

RAW_EVENT_COLUMNS = {
    "row_id": "Row number within the run (test case, service, line order); key with run.",
    "m_message": "Message text after ' - '; continuation lines (stack traces) newline-joined.",
    "seq_id": "<run>__<test_case>__<service>: one service log of one test case.",
    "normal": "test_case == 'correct' (label of the folder, not of the line).",
    "anomaly": "not normal.",
    "m_timestamp": "UTC time; the date comes from the run's epoch, midnight crossings roll over.",
    "correlation_id": "Request correlation id; null on Hazelcast and start-up threads.",
    "line_no": "1-based line of the event's header in its file.",
}
SEQUENCE_COLUMNS = {
    "m_message": "The messages of the sequence's events, newline-joined, in file order.",
    "start_time": "First event time.",
    "end_time": "Last event time.",
    "n_events": "Number of events.",
}


# The run folders themselves, as Dagster sees them: observed (never materialized), with a
# signature of each run's files as the data version.
@dg.multi_observable_source_asset(
    specs=[dg.AssetSpec(
        RUN_LOGS,
        partitions_def=RUNS,
        group_name=INGEST_GROUP,
        owners=OWNERS,
        kinds={"files"},
        description=(
            "The log files of one LO2 run folder (`<LO2 root>/logs/<run>/<test_case>/*.log`). "
            "Observed by the sensor lo2_source_files and by `lo2-dagster run`: the data version "
            "is a signature of the files' names, sizes and modification times, so a copied, "
            "edited or touched run makes its raw events stale."
        ),
    )],
    partitions_def=RUNS,
)
def run_logs(context: dg.AssetExecutionContext, lo2_root: Lo2Root):
    """Observe one run folder (UI: Observe); the sensor and `lo2-dagster run` observe many at once
    with the same signature."""
    run = validated(context.partition_key)
    try:
        signature = lo2_root.signature(run)
    except LayoutError as e:
        raise dg.Failure(description=str(e)) from e
    yield dg.ObserveResult(asset_key=RUN_LOGS, data_version=dg.DataVersion(signature),
                           metadata=run_folder_metadata(lo2_root, run))


def run_folder_metadata(lo2_root: Lo2Root, run: str) -> dict[str, dg.MetadataValue]:
    """What an observation of a run folder shows: where it is."""
    return {"run_folder": dg.MetadataValue.path(str(logs_dir(lo2_root.resolve()) / run))}


class RawEventsConfig(dg.Config):
    """How a run's files are read."""

    trim_lines: int = loader.DEFAULT_TRIM_LINES
    """Lines dropped as container start-up output (LogLead's ``trim_init_lines``)."""
    trim_scope: Literal["start_up", "every_file"] = "start_up"
    """Where: at the head of the files that open with their container's start-up output (its
    first log of the run, in LO2 v1 and v2 alike, and any file that opens the same way), or at
    the head of every file (LogLead's way; on LO2 v2's short test cases it drops ordinary
    traffic, whole files of it)."""


@per_run_asset(
    key=RAW_EVENTS,
    deps=[RUN_LOGS],
    group_name=INGEST_GROUP,
    code_version=f"parser-{loader.PARSER_VERSION}",
    check_specs=[dg.AssetCheckSpec(LINE_ACCOUNTING_CHECK, asset=RAW_EVENTS, blocking=True,
                                   description="Each file's line kinds add up to its lines.")],
    description=(
        "One row per log event of one LO2 run (all test cases x 7 services). Every physical "
        "line is accounted for in the metadata: trimmed, blank, event, continuation, rejected. "
        "The data version is a hash of the run's file contents and the read settings."
    ),
)
def raw_events(context: dg.AssetExecutionContext, config: RawEventsConfig, lo2_root: Lo2Root,
               warehouse: Warehouse):
    def one_run(run: str) -> RunPart:
        started = time.perf_counter()
        try:
            loaded = loader.load_run(
                lo2_root.resolve(), run, config.trim_lines, progress=context.log.info,
                follow_symlinks=lo2_root.follows_symlinks(), trim_scope=config.trim_scope,
            )
        except LayoutError as e:
            raise dg.Failure(description=str(e)) from e
        totals = loaded.totals()
        seconds = time.perf_counter() - started
        _warn_about_oddities(context, loaded, totals)
        context.log.info(
            f"{run}: {totals['event']:,} events from {totals['lines']:,} lines in "
            f"{len(loaded.files)} files ({totals['bytes'] / 1e6:.1f} MB) in {seconds:.1f} s"
        )
        return RunPart(loaded.events, _events_metadata(loaded, totals, seconds),
                       data_version=loaded.fingerprint,
                       checks=lambda path, rows: [_line_accounting_check(loaded)])

    yield from materialize_runs(context, warehouse, one_run)


@per_run_asset(
    key=RAW_SEQUENCES,
    ins={"events": dg.AssetIn(RAW_EVENTS)},
    group_name=INGEST_GROUP,
    code_version="1",
    description=(
        "One row per sequence (seq_id = run x test case x service): the joined messages, the "
        "folder label and the time span. LO2's natural unit of detection."
    ),
)
def raw_sequences(context: dg.AssetExecutionContext, events: dict[str, pl.LazyFrame],
                  warehouse: Warehouse):
    def one_run(run: str) -> RunPart:
        sequences = loader.build_sequences(events[run])
        by_service = (
            sequences.group_by("service")
            .agg(pl.len().alias("sequences"), pl.col("n_events").sum().alias("events"))
            .sort("service")
        )
        return RunPart(sequences, {
            "dagster/column_schema": column_schema(sequences.schema, SEQUENCE_COLUMNS),
            "normal_sequences": int(sequences["normal"].sum()),
            "anomalous_sequences": int(sequences["anomaly"].sum()),
            "test_cases": sequences["test_case"].n_unique(),
            "per_service": table(by_service),
        })

    yield from materialize_runs(context, warehouse, one_run)


def _warn_about_oddities(
    context: dg.AssetExecutionContext, loaded: loader.RunLoad, totals: dict[str, int]
) -> None:
    """Say in the run log what the metadata lists, so nobody has to open it to notice."""
    layout = loaded.layout
    if run_start(loaded.run) is None:
        context.log.warning(
            f"Run folder name {loaded.run!r} carries no epoch (light-oauth2-data-<epoch> or "
            "oauth2_logs_LO2_run_<epoch>): log lines have no date, so m_timestamp is dated "
            "1970-01-01."
        )
    if layout.outside_root:
        context.log.warning(
            f"Not followed: {len(layout.outside_root)} symbolic link(s) in {layout.run_dir} "
            f"that lead outside the LO2 root (or nowhere), e.g. {layout.outside_root[0]}. Set "
            "LO2_FOLLOW_SYMLINKS=1 if the root is made of links on purpose."
        )
    if layout.ignored:
        context.log.warning(
            f"Ignored {len(layout.ignored)} unknown entries in {layout.run_dir}: "
            f"{', '.join(layout.ignored[:10])}{' ...' if len(layout.ignored) > 10 else ''}"
        )
    if layout.missing:
        context.log.warning(f"{len(layout.missing)} service log files are missing, e.g. "
                            f"{layout.missing[0]}")
    if layout.missing_test_cases:
        context.log.info(f"{loaded.run} has {len(layout.test_cases)} of the 54 test cases "
                         f"({len(layout.missing_test_cases)} absent, as in some LO2 v2 runs)")
    empty = files_without_events(loaded.files)
    if empty and len(empty) == len(loaded.files):
        context.log.warning(
            f"Run {loaded.run}: none of its {len(empty)} files holds an event (e.g. "
            f"{empty[0]}), so it has no sequences: nothing downstream is computed from it, and "
            f"the model leaves it out. Re-copy the run folder {layout.run_dir}, or forget it: "
            f"lo2-dagster forget {loaded.run}"
        )
    elif empty:
        context.log.warning(
            f"{len(empty)} file(s) of {loaded.run} hold no event, so they make no sequence: "
            + "; ".join(empty[:10]) + (" ..." if len(empty) > 10 else "")
        )
    rejected = sum(totals[r] for r in loader.REJECT_REASONS)
    if rejected:
        context.log.warning(f"{rejected} lines rejected, e.g. {loaded.rejected_examples[0]}")
    if totals["invalid_utf8_lines"]:
        context.log.warning(f"{totals['invalid_utf8_lines']} lines had invalid UTF-8 "
                            "(replaced by U+FFFD)")


def files_without_events(files: pl.DataFrame) -> list[str]:
    """``<test_case>/<file>: <why>`` for each file without an event (no sequence comes of it)."""
    rejected = pl.sum_horizontal(loader.REJECT_REASONS)
    why = (
        pl.when(pl.col("bytes") == 0).then(pl.lit("empty file (0 bytes)"))
        .when(pl.col("lines") == pl.col("blank"))
        .then(pl.format("only blank lines ({} lines)", "lines"))
        .when(pl.col("lines") == pl.col("trimmed") + pl.col("blank"))
        .then(pl.format("only start-up output ({} lines trimmed)", "trimmed"))
        .otherwise(pl.format("no event line ({} of {} lines rejected)", rejected, "lines"))
    )
    return (files.filter(pl.col("event") == 0)
            .select(pl.format("{}/{}: {}", "test_case", "file", why))
            .to_series().to_list())


def _events_metadata(
    loaded: loader.RunLoad, totals: dict[str, int], seconds: float
) -> dict[str, object]:
    """What a user asks of an ingest: where every line went, what was read, what was odd."""
    files = loaded.files
    per_service = (
        files.group_by("service")
        .agg(
            pl.len().alias("files"),
            pl.col("bytes").sum(),
            pl.col("lines").sum(),
            pl.col("event").sum().alias("events"),
            pl.col("continuation").sum().alias("continuation_lines"),
        )
        .sort("service")
    )
    rejected = {f"rejected_lines/{r}": totals[r] for r in loader.REJECT_REASONS}
    layout = loaded.layout
    return {
        "dagster/row_count": len(loaded.events),
        "dagster/column_schema": column_schema(loaded.events.schema, RAW_EVENT_COLUMNS),
        "lines": totals["lines"],
        "events": totals["event"],
        "continuation_lines": totals["continuation"],
        "trimmed_lines": totals["trimmed"],
        "blank_lines": totals["blank"],
        "rejected_lines": sum(rejected.values()),
        **rejected,
        "invalid_utf8_lines": totals["invalid_utf8_lines"],
        "files_read": len(files),
        "empty_files": int((files["bytes"] == 0).sum()) if len(files) else 0,
        "bytes_read": totals["bytes"],
        "test_cases": len(layout.test_cases),
        "trim_lines": loaded.trim_lines,
        "trim_scope": loaded.trim_scope,
        "seconds": round(seconds, 2),
        "lines_per_second": round(totals["lines"] / seconds) if seconds > 0 else 0,
        "per_service": table(per_service),
        "missing_service_files": bullet_list(layout.missing),
        # No event, hence no sequence: empty files, or start-up output only.
        "files_without_events": bullet_list(files_without_events(files)),
        "missing_test_cases": bullet_list(
            layout.missing_test_cases, "none (all 54; some LO2 v2 runs lack a few)"),
        "metrics_files": bullet_list(layout.metrics[:200]
                                     + ([f"... {len(layout.metrics) - 200} more"]
                                        if len(layout.metrics) > 200 else []),
                                     "none (no metrics/ folders, no metrics/<run>.csv)"),
        "symlinks_not_followed": bullet_list(layout.outside_root),
        "ignored_entries": bullet_list(layout.ignored, "none (every entry is a known LO2 file)"),
        "rejected_examples": bullet_list(loaded.rejected_examples),
        "content_fingerprint": loaded.fingerprint,
        "source": str(layout.run_dir),
    }


def _files_where(files: pl.DataFrame, condition: pl.Expr) -> list[str]:
    """``<test_case>/<file>`` of the per-file accounting rows that meet ``condition``."""
    names = pl.concat_str("test_case", pl.lit("/"), "file")
    return files.filter(condition).select(names).to_series().to_list()


def _line_accounting_check(loaded: loader.RunLoad) -> dg.AssetCheckResult:
    """Each file's line kinds add up to its physical line count (a blocking check: if lines
    went missing, nothing downstream should be computed from the run)."""
    files = loaded.files
    mismatched = _files_where(files, pl.sum_horizontal(loader.LINE_KINDS) != pl.col("lines"))
    return dg.AssetCheckResult(
        check_name=LINE_ACCOUNTING_CHECK,
        asset_key=RAW_EVENTS,
        passed=not mismatched,
        metadata={"files_checked": len(files), "files_not_adding_up": bullet_list(mismatched)},
    )
