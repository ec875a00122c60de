"""The warehouse: Parquet files written by an IO manager built on Dagster's ``UPathIOManager``.

Layout: ``<root>/<asset key path>.parquet`` for unpartitioned assets and
``<root>/<asset key path>/<partition>.parquet`` for partitioned ones, e.g.
``<root>/lo2/raw_events/light-oauth2-data-1719592986.parquet``. The root may be a local folder
or any fsspec URL (``s3://...``); local writes go to a temporary file first and are renamed
into place, so a failed or retried write never leaves a half-written partition behind.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import dagster as dg
import polars as pl
from dagster._core.storage.upath_io_manager import escape_dotdot_segments
from upath import UPath

from lo2_dagster import settings


class PolarsParquetIOManager(dg.UPathIOManager):
    """Stores polars DataFrames (or LazyFrames, streamed) as Parquet; loads them back as the
    input's annotation asks: ``pl.LazyFrame`` scans lazily, anything else reads eagerly."""

    extension = ".parquet"

    def make_safe_partition_path(self, base_path: UPath, partition: str) -> UPath:
        return super().make_safe_partition_path(base_path, escape_dotdot_segments(partition))

    def dump_to_path(self, context: dg.OutputContext, obj: Any, path: UPath) -> None:
        if not isinstance(obj, pl.DataFrame | pl.LazyFrame):
            raise TypeError(
                f"{context.asset_key.to_user_string()} returned {type(obj).__name__}; the "
                "warehouse IO manager stores polars DataFrames or LazyFrames only."
            )
        if path.protocol in ("", "file", "local"):
            _write_local_atomic(obj, str(path.path))
        else:
            with path.open("wb") as f:
                (obj.collect() if isinstance(obj, pl.LazyFrame) else obj).write_parquet(f)

    def load_from_path(self, context: dg.InputContext, path: UPath) -> pl.DataFrame | pl.LazyFrame:
        local = path.protocol in ("", "file", "local")
        source = str(path.path) if local else str(path)
        options = None if local else dict(path.storage_options) or None
        if not path.exists():
            raise FileNotFoundError(
                f"Warehouse file {path} is missing (was the warehouse moved or cleaned?). "
                f"Re-materialize {context.upstream_output.asset_key.to_user_string()}"
                if context.upstream_output and context.upstream_output.has_asset_key
                else f"Warehouse file {path} is missing."
            )
        if context.dagster_type.typing_type is pl.LazyFrame:
            return pl.scan_parquet(source, storage_options=options)
        return pl.read_parquet(source, storage_options=options)

    def get_metadata(self, context: dg.OutputContext, obj: Any) -> dict[str, Any]:
        return {}


def _write_local_atomic(obj: pl.DataFrame | pl.LazyFrame, target: str) -> None:
    """Write Parquet next to ``target`` under a temporary name, then rename it into place."""
    folder = os.path.dirname(target)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".parquet", dir=folder)
    os.close(fd)
    try:
        if isinstance(obj, pl.LazyFrame):
            obj.sink_parquet(tmp, compression="zstd", statistics=True)
        else:
            obj.write_parquet(tmp, compression="zstd", statistics=True)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class WarehouseIOManager(dg.ConfigurableIOManagerFactory):
    """Parquet warehouse rooted at ``root`` (default: ``$LO2_WAREHOUSE``, else
    ``data/warehouse`` in the checkout). Any fsspec URL works, e.g. ``s3://bucket/lo2``."""

    root: str | None = None

    def create_io_manager(self, context: dg.InitResourceContext) -> PolarsParquetIOManager:
        return PolarsParquetIOManager(base_path=UPath(settings.warehouse_root(self.root)))
