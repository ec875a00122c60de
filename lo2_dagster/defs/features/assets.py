"""Drain templates, the enhanced event and sequence tables of each run, and the FP allowlist."""

import time
from collections.abc import Callable, Iterator

import dagster as dg
import polars as pl
from upath import UPath

from lo2_dagster.defs.automation import on_retrain_cron
from lo2_dagster.defs.keys import (
    DRAIN_IDS_CHECK,
    DRAIN_TEMPLATES,
    EVENTS_ENHANCED,
    FEATURES_GROUP,
    FP_ALLOWLIST,
    MESSAGE_COUNTS,
    OWNERS,
    RAW_EVENTS,
    RAW_SEQUENCES,
    ROWS_KEPT_CHECK,
    SCHEMA_CHECK,
    SEQ_ID_CHECK,
    SEQUENCES_ENHANCED,
    TRAINING_POOL,
)
from lo2_dagster.defs.lineage import TEMPLATES_DIGEST
from lo2_dagster.defs.resources import FpAllowlistFile
from lo2_dagster.defs.runs import (
    ALL_RUNS,
    RUNS,
    RunPart,
    materialize_runs,
    per_run_asset,
)
from lo2_dagster.lib.enhance import (
    ENHANCER_VERSION,
    EVENTS_ENHANCED_SCHEMA,
    SEQUENCES_DICTIONARY_COLUMNS,
    SEQUENCES_ENHANCED_SCHEMA,
)
from lo2_dagster.lib.enhanced_tables import allowlisted_sequences, enhance_events, sequence_tables
from lo2_dagster.lib.masking import MAX_FEATURE_CHARS
from lo2_dagster.lib.templates import KEY as MESSAGE_KEY
from lo2_dagster.lib.templates import (
    UNMATCHED,
    DrainSettings,
    Templates,
    count_message_keys,
    in_training_order,
    merge_counts,
)
from lo2_dagster.lib.templates import train as train_templates
from lo2_dagster.meta import bullet_list, column_schema, table
from lo2_dagster.storage import Batches, Warehouse, parquet_facts, read_parquet

#: Metadata of the enhanced tables: which trained templates their Drain ids come from.

ENHANCED_EVENT_COLUMNS = {
    "anomaly": "anomaly_original and not is_fp_allowlisted.",
    "anomaly_original": "The folder label (test_case != 'correct').",
    "is_fp_allowlisted": "Matches an [[event]] rule of the FP allowlist.",
    "e_message_normalized": "First line of m_message with ids, numbers, IPs, hex masked (its "
                            f"first {MAX_FEATURE_CHARS:,} characters: see "
                            "messages_cut_for_features).",
    "e_words": "Words of the normalized message (split on whitespace).",
    "e_trigrams": "Character 3-grams of the normalized message, in text order.",
    "e_event_drain_id": f"Drain template id (e<N>); {UNMATCHED} = matches no template.",
    "e_chars_len": "Characters of the whole message (continuation lines included).",
    "e_lines_len": "Lines of the event (1 + continuation lines).",
    "e_event_id_len": "1 (an event is one event; LogLead's convention).",
}
SEQUENCE_COLUMNS = {
    "anomaly": "not normal and not is_fp_allowlisted.",
    "is_fp_allowlisted": "seq_id matches a [[sequence]] rule of the FP allowlist.",
    "seq_len": "Events in the sequence.",
    "e_event_id_len": "Same as seq_len (LogLead's alias).",
    "e_words": "Words of all events, in event order.",
    "e_trigrams": "Trigrams of all events, in event order.",
    "e_event_drain_id": "Drain template id of each event, in event order.",
}


@dg.multi_observable_source_asset(
    specs=[dg.AssetSpec(
        FP_ALLOWLIST,
        group_name=FEATURES_GROUP,
        owners=OWNERS,
        kinds={"toml"},
        description=(
            "The user-edited list of known benign patterns (data/fp_allowlist.toml, or "
            "$LO2_FP_ALLOWLIST). Observing it records a hash of its content as the data "
            "version, so an edit makes the enhanced tables (and only them and their "
            "downstream) stale."
        ),
    )],
)
def fp_allowlist(fp_allowlist: FpAllowlistFile):
    allowlist = fp_allowlist.load()
    yield dg.ObserveResult(asset_key=FP_ALLOWLIST, data_version=dg.DataVersion(allowlist.digest),
                           metadata=fp_allowlist.metadata(allowlist))


def _per_run_checks(key: dg.AssetKey, schema: str, rows: str) -> list[dg.AssetCheckSpec]:
    """The checks of an enhanced table, evaluated per run (partition) on the written file; all
    but the template-id check block downstream."""
    def spec(name: str, description: str, blocking: bool = True) -> dg.AssetCheckSpec:
        return dg.AssetCheckSpec(name, asset=key, partitions_def=RUNS, blocking=blocking,
                                 description=description)
    return [
        spec(SCHEMA_CHECK, schema),
        spec(ROWS_KEPT_CHECK, rows),
        spec(SEQ_ID_CHECK, "Every row has a seq_id."),
        spec(DRAIN_IDS_CHECK, "Every Drain id is a trained template or the reserved "
                              f"{UNMATCHED}.", blocking=False),
    ]


@per_run_asset(
    key=MESSAGE_COUNTS,
    ins={"events": dg.AssetIn(RAW_EVENTS)},
    group_name=FEATURES_GROUP,
    code_version=f"enhancer-{ENHANCER_VERSION}",
    description=(
        "One run's distinct message keys (level, logger, method and masked first line) per "
        "service, with their line count and first time: what the templates are trained on. A "
        "few hundred rows per run, so retraining on thousands of runs reads small files instead "
        "of every log line again."
    ),
)
def message_counts(context: dg.AssetExecutionContext, events: dict[str, pl.LazyFrame],
                   warehouse: Warehouse):
    def one_run(run: str) -> RunPart:
        counts, cut = count_message_keys(events[run].select(
            "m_message", "m_timestamp", "service", "level", "logger", "method"))
        lines_cut = int(cut["count"].sum())
        if lines_cut:
            example = cut.row(0, named=True)
            _warn_cut(context, run, lines_cut, "line", f"the first {example['service']} line "
                      f"of {example['first_line_chars']:,} characters, at "
                      f"{example['first_seen']}")
        context.log.info(f"{run}: {counts[MESSAGE_KEY].n_unique():,} distinct message keys in "
                         f"{int(counts['count'].sum()):,} events")
        return RunPart(counts, {
            "events": int(counts["count"].sum()),
            "distinct_message_keys": counts[MESSAGE_KEY].n_unique(),
            "lines_cut_for_features": lines_cut,
            "max_feature_chars": MAX_FEATURE_CHARS,
            "top_messages": table(counts.pipe(in_training_order).head(20).select(
                "service", MESSAGE_KEY, "count")),
        })

    yield from materialize_runs(context, warehouse, one_run)


class DrainTemplatesConfig(dg.Config):
    """Which runs train the templates, and Drain's settings (LogLead's LO2 setup)."""

    training_runs: list[str] = []  # noqa: RUF012 (pydantic copies defaults)
    """Run partitions to train on; empty means every run whose raw events exist."""
    sim_th: float = 0.4
    depth: int = 4
    max_children: int = 100
    extra_delimiters: list[str] = []  # noqa: RUF012

    def settings(self) -> DrainSettings:
        return DrainSettings(self.sim_th, self.depth, self.max_children,
                                   tuple(self.extra_delimiters))


@dg.asset(
    key=DRAIN_TEMPLATES,
    ins={"counts": dg.AssetIn(MESSAGE_COUNTS, metadata=ALL_RUNS)},
    io_manager_key="drain_store",
    automation_condition=on_retrain_cron(),
    pool=TRAINING_POOL,
    group_name=FEATURES_GROUP,
    code_version=f"drain-{ENHANCER_VERSION}",
    kinds={"drain3", "polars"},
    owners=OWNERS,
    description=(
        "Log templates of the training runs' distinct message keys: drain3 groups them (in a "
        "fixed order, most frequent first, so the same data gives the same ids on every rerun) "
        "and a position's values become a wildcard when they are one-off (seen in one training "
        "run) or each run draws its own; values that recur in every run (error names, "
        "endpoints) stay constants. Stored as "
        "drain3 state (drain3_state.json) plus templates.parquet. The page shows templates per "
        "service, templates seen once and the widest position kept as a constant."
    ),
)
def drain_templates(
    context: dg.AssetExecutionContext,
    config: DrainTemplatesConfig,
    counts: dict[str, pl.DataFrame],
) -> dg.Output:
    runs = sorted(counts)
    if config.training_runs:
        missing = sorted(set(config.training_runs) - set(runs))
        if missing:
            raise dg.Failure(description=(
                f"Training runs without message counts: {', '.join(missing)}. Materialize "
                "lo2/raw_events and lo2/message_counts for them first, or leave training_runs "
                "empty to use all runs."))
        runs = sorted(set(config.training_runs))
    if not runs:
        raise dg.Failure(description="No run has message counts yet: materialize "
                                     "lo2/raw_events and lo2/message_counts for at least one run "
                                     "partition first.")
    started = time.perf_counter()
    merged = merge_counts({run: counts[run] for run in runs})
    templates = train_templates(merged, config.settings())
    seconds = time.perf_counter() - started
    context.log.info(f"{len(templates.table)} templates from {len(merged):,} distinct messages "
                     f"({int(merged['count'].sum()):,} lines of {len(runs)} runs) in "
                     f"{seconds:.1f} s")
    shown = templates.table.sort("count", descending=True).head(500).with_columns(
        pl.col("first_seen").dt.to_string("%Y-%m-%d %H:%M:%S%.3f"),
        pl.col("services").list.join(", "))
    return dg.Output(
        templates,
        data_version=dg.DataVersion(templates.digest),
        metadata={
            **template_quality_metadata(templates),
            "templates": len(templates.table),
            "training_runs": bullet_list(runs),
            "training_run_count": len(runs),
            "training_lines": int(merged["count"].sum()),
            "distinct_messages": len(merged),
            "unmatched_training_lines": templates.unmatched_in_training,
            "reserved_id_for_unmatched": UNMATCHED,
            "drain_settings": dg.MetadataValue.json(dict(
                sim_th=config.sim_th, depth=config.depth, max_children=config.max_children,
                extra_delimiters=config.extra_delimiters)),
            "seconds": round(seconds, 2),
            "template_table": table(shown),
        },
    )


def template_quality_metadata(templates: Templates) -> dict[str, object]:
    """How well values were told from constants: what the templates' page shows first."""
    quality = templates.quality
    if quality is None:
        return {}
    values = ", ".join(f"`{v}`" for v in quality.widest_kept_values)
    return {
        "templates_per_service": table(quality.per_service),
        "templates_seen_once": quality.seen_once,
        "wildcard_positions": quality.wildcard_positions,
        "varying_positions_kept": quality.kept_positions,
        "widest_kept_position": quality.widest_kept,
        "widest_kept_position_example": dg.MetadataValue.md(
            f"`{quality.widest_kept_template}`: {values}" if values else "none"),
        "wildcard_examples": table(quality.examples),
    }


@per_run_asset(
    key=EVENTS_ENHANCED,
    ins={"events": dg.AssetIn(RAW_EVENTS), "templates": dg.AssetIn(DRAIN_TEMPLATES)},
    deps=[FP_ALLOWLIST],
    group_name=FEATURES_GROUP,
    code_version=f"enhancer-{ENHANCER_VERSION}",
    check_specs=_per_run_checks(
        EVENTS_ENHANCED,
        schema="The file has exactly the contract's event columns and types (docs/schemas.md).",
        rows="As many rows as lo2/raw_events of the run.",
    ),
    description=(
        "One run's events with the enhanced event schema of docs/schemas.md "
        "(lo2_events_enhanced): masked "
        "message, words, trigrams, lengths, Drain template id (matched against "
        "lo2/drain_templates, never re-mined) and the FP allowlist's relabelling."
    ),
)
def events_enhanced(
    context: dg.AssetExecutionContext,
    events: dict[str, pl.LazyFrame],
    templates: Templates,
    fp_allowlist: FpAllowlistFile,
    warehouse: Warehouse,
):
    allowlist = _load_allowlist(context, fp_allowlist)
    stale_ids = sorted({r.template for r in allowlist.events if r.template} - templates.ids)
    if stale_ids:
        context.log.warning(f"{allowlist.source}: rules name template ids the trained templates "
                            f"do not have ({', '.join(stale_ids)}); they match nothing. Templates "
                            "were retrained? Use a message regex instead.")

    def one_run(run: str) -> RunPart:
        started = time.perf_counter()
        enhanced = enhance_events(events[run], templates, allowlist)
        vocabulary = enhanced.vocabulary
        seen = (
            enhanced.template_lines
            .join(templates.table.select("template_id", "template"), how="left",
                  left_on="e_event_drain_id", right_on="template_id")
            .sort(["lines", "e_event_drain_id"], descending=[True, False])
        )
        if len(enhanced.cut):
            example = enhanced.cut.row(0, named=True)
            _warn_cut(context, run, len(enhanced.cut), "event",
                      f"row_id {example['row_id']} of {example['seq_id']}, "
                      f"{example['first_line_chars']:,} characters")
        if enhanced.unmatched_lines:
            context.log.warning(f"{run}: {enhanced.unmatched_lines:,} lines match no trained "
                                f"template (id {UNMATCHED}): retrain lo2/drain_templates "
                                "to learn them.")
        context.log.info(f"{run}: {enhanced.rows:,} events, {len(vocabulary):,} distinct "
                         f"messages, {len(seen)} templates; streaming to Parquet")
        raw_rows = events[run].select(pl.len()).collect().item()

        def rows_kept(rows: int, written: pl.DataFrame) -> tuple[bool, dict[str, int]]:
            return rows == raw_rows, {"raw_events": raw_rows, "events_enhanced": rows}

        return RunPart(
            enhanced.frame,
            {
                "dagster/row_count": enhanced.rows,
                "dagster/column_schema": column_schema(EVENTS_ENHANCED_SCHEMA,
                                                       ENHANCED_EVENT_COLUMNS),
                "distinct_normalized_messages": len(vocabulary),
                "messages_cut_for_features": len(enhanced.cut),
                "max_feature_chars": MAX_FEATURE_CHARS,
                "templates_seen": len(seen),
                "unmatched_lines": enhanced.unmatched_lines,
                "fp_allowlisted_lines": enhanced.allowlisted_lines,
                "relabelled_lines": enhanced.relabelled_lines,
                "fp_rule_hits": table(pl.DataFrame(
                    {"rule": list(enhanced.rule_hits),
                     "events": list(enhanced.rule_hits.values())},
                    schema={"rule": pl.String, "events": pl.Int64})),
                "fp_allowlist_digest": allowlist.digest,
                TEMPLATES_DIGEST: templates.digest,
                "top_templates": table(seen.head(20).select(
                    "e_event_drain_id", "template", "lines")),
            },
            checks=lambda path, _: _check_written(context, run, path, EVENTS_ENHANCED_SCHEMA,
                                                  templates, rows_kept, started),
        )

    yield from materialize_runs(context, warehouse, one_run)


@per_run_asset(
    key=SEQUENCES_ENHANCED,
    ins={"sequences": dg.AssetIn(RAW_SEQUENCES), "events": dg.AssetIn(EVENTS_ENHANCED),
         "templates": dg.AssetIn(DRAIN_TEMPLATES)},
    deps=[FP_ALLOWLIST],
    group_name=FEATURES_GROUP,
    code_version=f"enhancer-{ENHANCER_VERSION}",
    check_specs=_per_run_checks(
        SEQUENCES_ENHANCED,
        schema="The file has the contract's sequence columns and types (docs/schemas.md), "
               "then run, test_case, "
               "service and e_event_drain_id.",
        rows="One row per raw sequence; seq_len adds up to the run's events.",
    ),
    description=(
        "One run's sequences (run x test case x service) with docs/schemas.md's enhanced sequence "
        "schema (lo2_sequences_enhanced): length, duration, the words and trigrams of all "
        "events, plus run, test_case, service and the ordered Drain ids."
    ),
)
def sequences_enhanced(
    context: dg.AssetExecutionContext,
    sequences: dict[str, pl.LazyFrame],
    events: dict[str, pl.LazyFrame],
    templates: Templates,
    fp_allowlist: FpAllowlistFile,
    warehouse: Warehouse,
):
    allowlist = _load_allowlist(context, fp_allowlist)

    def one_run(run: str) -> RunPart:
        started = time.perf_counter()
        raw = sequences[run].collect()
        hits = allowlisted_sequences(raw, allowlist)
        event_rows = events[run].select(pl.len()).collect().item()

        def rows_kept(rows: int, written: pl.DataFrame) -> tuple[bool, dict[str, int]]:
            seq_len_total = int(written["seq_len"].sum())
            return rows == len(raw) and seq_len_total == event_rows, {
                "raw_sequences": len(raw), "sequences_enhanced": rows,
                "events_enhanced": event_rows, "sum_seq_len": seq_len_total}

        return RunPart(
            Batches(SEQUENCES_ENHANCED_SCHEMA, sequence_tables(raw, events[run], allowlist),
                    dictionary=SEQUENCES_DICTIONARY_COLUMNS),
            {
                "dagster/column_schema": column_schema(SEQUENCES_ENHANCED_SCHEMA,
                                                       SEQUENCE_COLUMNS),
                "normal_sequences": int(raw["normal"].sum()),
                "anomalous_sequences_original": int(raw["anomaly"].sum()),
                "fp_rule_hits": table(pl.DataFrame(
                    {"rule": list(hits), "sequences": list(hits.values())},
                    schema={"rule": pl.String, "sequences": pl.Int64})),
                "fp_allowlist_digest": allowlist.digest,
                TEMPLATES_DIGEST: templates.digest,
            },
            checks=lambda path, _: _check_written(context, run, path, SEQUENCES_ENHANCED_SCHEMA,
                                                  templates, rows_kept, started),
        )

    yield from materialize_runs(context, warehouse, one_run)


def _warn_cut(context: dg.AssetExecutionContext, run: str, count: int, noun: str,
              example: str) -> None:
    """Warns that ``count`` events (lines) had a first line too long to compute features on."""
    context.log.warning(
        f"{run}: {count:,} {noun}{'' if count == 1 else 's'} with a first line longer than "
        f"{MAX_FEATURE_CHARS:,} characters (e.g. {example}): the normalized message, words, "
        f"trigrams and template come from the line's first {MAX_FEATURE_CHARS:,} characters; "
        "m_message keeps the whole line.")


def _load_allowlist(context: dg.AssetExecutionContext, fp_allowlist: FpAllowlistFile):
    """The allowlist as the file is now; warns when that is not what was last observed (then
    the UI's staleness does not know about the edit: observe lo2/fp_allowlist)."""
    allowlist = fp_allowlist.load()
    record = context.instance.get_latest_data_version_record(FP_ALLOWLIST)
    observation = record.asset_observation if record is not None else None
    observed = observation.tags.get("dagster/data_version") if observation else None
    if observed != allowlist.digest:
        context.log.warning(
            f"{allowlist.source} differs from the last observation of lo2/fp_allowlist "
            f"({'never observed' if observed is None else 'edited since'}): these tables use the "
            "file as it is now. Observe lo2/fp_allowlist (UI: Observe sources) so that staleness "
            "follows the file.")
    return allowlist


def _check_written(
    context: dg.AssetExecutionContext,
    run: str,
    path: UPath,
    expected: dict[str, pl.DataType],
    templates: Templates,
    rows_kept: Callable[[int, pl.DataFrame], tuple[bool, dict[str, int]]],
    started: float,
) -> Iterator[dg.AssetCheckResult]:
    """The four checks of an enhanced table, on the file the IO manager just wrote (its footer,
    and the few columns they need); ``rows_kept`` judges the row count against the inputs."""
    key = context.asset_key
    schema, rows = parquet_facts(path)
    columns = ["seq_id", "e_event_drain_id", *(["seq_len"] if "seq_len" in expected else [])]
    written = read_parquet(path, columns)
    context.log.info(f"{run}: wrote {rows:,} rows of {key.to_user_string()} "
                     f"in {time.perf_counter() - started:.1f} s")
    yield _schema_check(key, schema, expected)
    passed, metadata = rows_kept(rows, written)
    yield dg.AssetCheckResult(check_name=ROWS_KEPT_CHECK, asset_key=key, passed=passed,
                              metadata=metadata)
    yield _seq_id_check(key, written)
    ids = written["e_event_drain_id"]
    yield _drain_ids_check(key, ids.explode() if ids.dtype == pl.List else ids, templates)


def _schema_check(key: dg.AssetKey, schema: pl.Schema,
                  expected: dict[str, pl.DataType]) -> dg.AssetCheckResult:
    """The written file's columns, in order, with their types, against the contract's
    (docs/schemas.md)."""
    got = [(name, str(dtype)) for name, dtype in schema.items()]
    want = [(name, str(dtype)) for name, dtype in expected.items()]
    differences = [f"{g} != {w}" for g, w in zip(got, want, strict=False) if g != w]
    if len(got) != len(want):
        differences.append(f"{len(got)} columns, expected {len(want)}")
    return dg.AssetCheckResult(
        check_name=SCHEMA_CHECK, asset_key=key, passed=not differences,
        metadata={"columns": len(got), "differences": bullet_list(differences)})


def _seq_id_check(key: dg.AssetKey, frame: pl.DataFrame) -> dg.AssetCheckResult:
    nulls = frame["seq_id"].null_count()
    return dg.AssetCheckResult(check_name=SEQ_ID_CHECK, asset_key=key, passed=nulls == 0,
                               metadata={"null_seq_ids": nulls, "rows": len(frame)})


def _drain_ids_check(key: dg.AssetKey, ids: pl.Series,
                     templates: Templates) -> dg.AssetCheckResult:
    known = templates.ids | {UNMATCHED}
    distinct = ids.drop_nulls().unique().to_list()
    unknown = sorted(set(distinct) - known)
    return dg.AssetCheckResult(
        check_name=DRAIN_IDS_CHECK, asset_key=key,
        passed=not unknown and ids.null_count() == 0,
        metadata={"distinct_ids": len(distinct), "unknown_ids": bullet_list(unknown),
                  "null_ids": ids.null_count(),
                  "unmatched_rows": int((ids == UNMATCHED).sum())})
