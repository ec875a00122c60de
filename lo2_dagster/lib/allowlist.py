"""The false-positive allowlist: known benign patterns that must not count as anomalies.

LO2 labels by folder: every line of an error test case is "anomalous", including the start-up
chatter and valid traffic it shares with ``correct``. The allowlist (a TOML file the user
edits, ``data/fp_allowlist.toml``) names what is known to be benign. An event that matches an
``[[event]]`` rule keeps its folder label in ``anomaly_original`` and gets
``is_fp_allowlisted = true`` and ``anomaly = anomaly_original and not is_fp_allowlisted``; a
sequence whose ``seq_id`` matches a ``[[sequence]]`` rule is treated the same way.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from lo2_dagster.lib.names import SERVICES

TEMPLATE_ID = re.compile(r"e\d+")


def rule_column(name: str) -> str:
    """The temporary boolean column of a rule's matches."""
    return f"fp_rule/{name}"


class AllowlistError(ValueError):
    """The allowlist file cannot be used; the message names the file, the entry and the fix."""


@dataclass(frozen=True)
class EventRule:
    """Events whose message matches ``message`` (a regex, searched anywhere in the whole
    message) and/or whose Drain template is ``template``, optionally only in ``service``."""

    name: str
    message: str | None = None
    template: str | None = None
    service: str | None = None
    reason: str = ""

    @property
    def column(self) -> str:
        return rule_column(self.name)

    def expr(self) -> pl.Expr:
        conditions = []
        if self.message is not None:
            conditions.append(pl.col("m_message").str.contains(self.message))
        if self.template is not None:
            conditions.append(pl.col("e_event_drain_id") == self.template)
        if self.service is not None:
            conditions.append(pl.col("service") == self.service)
        return pl.all_horizontal(conditions)


@dataclass(frozen=True)
class SequenceRule:
    """Sequences whose ``seq_id`` matches the regex ``seq_id`` (searched anywhere)."""

    name: str
    seq_id: str
    reason: str = ""

    @property
    def column(self) -> str:
        return rule_column(self.name)

    def expr(self) -> pl.Expr:
        return pl.col("seq_id").str.contains(self.seq_id)


@dataclass(frozen=True)
class Allowlist:
    events: tuple[EventRule, ...] = ()
    sequences: tuple[SequenceRule, ...] = ()
    digest: str = "empty"
    source: str = ""

    def event_flags(self) -> list[pl.Expr]:
        """One boolean column per event rule, named :func:`rule_column`."""
        return [rule.expr().alias(rule.column) for rule in self.events]

    def sequence_flags(self) -> list[pl.Expr]:
        return [rule.expr().alias(rule.column) for rule in self.sequences]

    def rules_table(self) -> pl.DataFrame:
        rows = [{"kind": "event", "name": r.name, "message": r.message or "",
                 "template": r.template or "", "service": r.service or "",
                 "seq_id": "", "reason": r.reason} for r in self.events]
        rows += [{"kind": "sequence", "name": r.name, "message": "", "template": "",
                  "service": "", "seq_id": r.seq_id, "reason": r.reason}
                 for r in self.sequences]
        columns = ["kind", "name", "message", "template", "service", "seq_id", "reason"]
        return pl.DataFrame(rows, schema=dict.fromkeys(columns, pl.String))


def content_digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def load_allowlist(path: Path) -> Allowlist:
    """Read and validate the allowlist; a missing file is an empty allowlist."""
    if not path.exists():
        return Allowlist(digest=_rules_digest((), ()), source=str(path))
    data = path.read_bytes()
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise AllowlistError(f"{path}: not valid TOML ({e}). Fix the syntax; the comment at the "
                             "top of data/fp_allowlist.toml shows the format.") from e
    unknown = set(doc) - {"event", "sequence"}
    if unknown:
        raise AllowlistError(f"{path}: unknown section(s) {sorted(unknown)}; use [[event]] or "
                             "[[sequence]].")
    for section in ("event", "sequence"):
        entries = doc.get(section, [])
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise AllowlistError(f"{path}: `{section}` must be an array of tables: write each "
                                 f"rule as a [[{section}]] block (double brackets).")
    events = tuple(_event_rule(path, i, e) for i, e in enumerate(doc.get("event", []), 1))
    sequences = tuple(_sequence_rule(path, i, e)
                      for i, e in enumerate(doc.get("sequence", []), 1))
    names = [r.name for r in events + sequences]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise AllowlistError(f"{path}: rule names must be unique; repeated: {duplicates}.")
    return Allowlist(events, sequences, _rules_digest(events, sequences), str(path))


def _rules_digest(events: tuple[EventRule, ...], sequences: tuple[SequenceRule, ...]) -> str:
    """A hash of what the rules do (not of comments, reasons or layout): editing a comment
    makes nothing stale."""
    rules = [["event", r.name, r.message, r.template, r.service] for r in events]
    rules += [["sequence", r.name, r.seq_id] for r in sequences]
    return content_digest(json.dumps(rules).encode())


def _check_keys(path: Path, where: str, entry: dict, allowed: set[str]) -> None:
    extra = set(entry) - allowed
    if extra:
        raise AllowlistError(f"{path}: {where} has unknown key(s) {sorted(extra)}; allowed: "
                             f"{sorted(allowed)}.")
    for key, value in entry.items():
        if not isinstance(value, str):
            raise AllowlistError(f"{path}: {where}: {key} must be a string, got {value!r}.")


def _check_regex(path: Path, where: str, pattern: str) -> None:
    if not pattern:
        raise AllowlistError(f"{path}: {where}: an empty pattern matches everything; write the "
                             "pattern of what is benign.")
    try:
        pl.Series([""]).str.contains(pattern)
    except pl.exceptions.PolarsError as e:
        raise AllowlistError(f"{path}: {where}: invalid regex {pattern!r} ({e}). Patterns use "
                             "Rust regex syntax (no look-around).") from e


def _event_rule(path: Path, index: int, entry: dict) -> EventRule:
    where = f"[[event]] #{index}"
    _check_keys(path, where, entry, {"name", "message", "template", "service", "reason"})
    if "name" not in entry:
        raise AllowlistError(f"{path}: {where} needs a name (shown in the asset metadata).")
    where = f"[[event]] {entry['name']!r}"
    if "message" not in entry and "template" not in entry:
        raise AllowlistError(f"{path}: {where} needs a message regex and/or a template id.")
    if "message" in entry:
        _check_regex(path, where, entry["message"])
    template = entry.get("template")
    if template is not None and not TEMPLATE_ID.fullmatch(template):
        raise AllowlistError(f"{path}: {where}: template {template!r} is not a Drain template id "
                             "(e<number>, as in lo2/drain_templates' table).")
    service = entry.get("service")
    if service is not None and service not in SERVICES:
        raise AllowlistError(f"{path}: {where}: unknown service {service!r}; one of "
                             f"{', '.join(SERVICES)}.")
    return EventRule(entry["name"], entry.get("message"), entry.get("template"), service,
                     entry.get("reason", ""))


def _sequence_rule(path: Path, index: int, entry: dict) -> SequenceRule:
    where = f"[[sequence]] #{index}"
    _check_keys(path, where, entry, {"name", "seq_id", "reason"})
    if "name" not in entry or "seq_id" not in entry:
        raise AllowlistError(f"{path}: {where} needs a name and a seq_id regex.")
    _check_regex(path, f"[[sequence]] {entry['name']!r}", entry["seq_id"])
    return SequenceRule(entry["name"], entry["seq_id"], entry.get("reason", ""))
