"""The warehouse: Parquet files written by an IO manager built on Dagster's ``UPathIOManager``.

Layout: ``<root>/<asset key path>.parquet`` for unpartitioned assets and
``<root>/<asset key path>/<partition>.parquet`` for partitioned ones, e.g.
``<root>/lo2/raw_events/light-oauth2-data-1719592986.parquet``. The root may be a local folder
or any fsspec URL (``s3://...``); local writes go to a temporary file first and are renamed
into place, so a failed or retried write never leaves a half-written partition behind.
"""

from __future__ import annotations

import functools
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
        if _is_local(path):
            _write_local_atomic(obj, str(path.path))
        else:
            with path.open("wb") as f:
                (obj.collect() if isinstance(obj, pl.LazyFrame) else obj).write_parquet(
                    f, **_PARQUET_OPTIONS
                )

    def load_from_path(self, context: dg.InputContext, path: UPath) -> pl.DataFrame | pl.LazyFrame:
        if not path.exists():
            upstream = context.upstream_output
            has_key = upstream is not None and upstream.has_asset_key
            name = upstream.asset_key.to_user_string() if has_key else ""
            raise FileNotFoundError(
                f"Warehouse file {path} is missing (was the warehouse moved or cleaned?). "
                f"Re-materialize {name or 'the upstream asset'} to write it again."
            )
        lazy = context.dagster_type.typing_type is pl.LazyFrame
        if _is_local(path):
            source = str(path.path)
            return pl.scan_parquet(source) if lazy else pl.read_parquet(source)
        with path.open("rb") as f:  # polars reads only some URL schemes itself; fsspec reads all
            frame = pl.read_parquet(f)
        return frame.lazy() if lazy else frame


#: The same Parquet settings for local and remote roots.
_PARQUET_OPTIONS: dict[str, Any] = {"compression": "zstd", "statistics": True}


@functools.cache
def _umask() -> int:
    """The process umask (read once: reading it means setting it, briefly)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _is_local(path: UPath) -> bool:
    return path.protocol in ("", "file", "local")


def _write_local_atomic(obj: pl.DataFrame | pl.LazyFrame, target: str) -> None:
    """Write Parquet next to ``target`` under a temporary name, then rename it into place."""
    folder = os.path.dirname(target)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".parquet", dir=folder)
    os.close(fd)
    # mkstemp makes the file private (0600); the warehouse is meant to be read by notebooks.
    os.chmod(tmp, 0o666 & ~_umask())
    try:
        if isinstance(obj, pl.LazyFrame):
            obj.sink_parquet(tmp, **_PARQUET_OPTIONS)
        else:
            obj.write_parquet(tmp, **_PARQUET_OPTIONS)
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
