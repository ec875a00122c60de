"""Metadata helpers shared by the assets: column schemas and small tables for the UI."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg
import polars as pl

from lo2_dagster.lib.baselines import comparison
from lo2_dagster.lib.leaks import audit_table


def column_schema(
    schema: Mapping[str, pl.DataType], descriptions: Mapping[str, str] | None = None
) -> dg.TableSchema:
    """A Dagster table schema (``dagster/column_schema``) from a polars schema."""
    descriptions = descriptions or {}
    return dg.TableSchema(
        columns=[
            dg.TableColumn(name, str(dtype), description=descriptions.get(name))
            for name, dtype in schema.items()
        ]
    )


def table(frame: pl.DataFrame) -> dg.TableMetadataValue:
    """A small polars frame as a Dagster table (shown as a table on the asset page)."""
    columns = [
        dg.TableColumn(name, "int" if dtype.is_integer() else "float" if dtype.is_float()
                       else "string")
        for name, dtype in frame.schema.items()
    ]
    records = [dg.TableRecord(row) for row in frame.iter_rows(named=True)]
    return dg.MetadataValue.table(records=records, schema=dg.TableSchema(columns=columns))


def bullet_list(items: Sequence[str], empty: str = "none") -> dg.MarkdownMetadataValue:
    """A markdown bullet list, or ``empty`` when there is nothing to list."""
    if not items:
        return dg.MetadataValue.md(empty)
    return dg.MetadataValue.md("\n".join(f"- `{item}`" for item in items))


def markdown_table(frame: pl.DataFrame, digits: int = 3) -> dg.MarkdownMetadataValue:
    """A polars frame as a markdown table (floats rounded), e.g. a recall table."""
    def cell(value: object) -> str:
        if value is None:
            return "–"
        return f"{value:.{digits}f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(frame.columns) + " |",
             "| " + " | ".join("---" for _ in frame.columns) + " |"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.iter_rows()]
    return dg.MetadataValue.md("\n".join(lines))


def model_quality(model: str, metrics: Mapping[str, Any]) -> dict[str, Any]:
    """What the model's page and the model report both show of a training's metrics: the model
    beside the trivial baselines, the leak audit, and the leaking signals in a few words."""
    audit = metrics.get("leak_audit", {})
    baselines = metrics.get("baselines", {}).get("test_case_roc_auc", {})
    return {
        "model_vs_baselines": markdown_table(comparison(
            model, metrics["test_case"]["roc_auc"], baselines)),
        "leak_audit": markdown_table(audit_table(audit)),
        "leaking_signals": ", ".join(audit.get("leaking", [])) or "none",
    }
