"""The warehouse IO manager: exact paths, atomic writes, lazy loads, any fsspec root."""

import os

import dagster as dg
import polars as pl
import pytest
from upath import UPath

from lo2_dagster.storage import PolarsParquetIOManager, Warehouse, WarehouseIOManager
from lo2_dagster_tests.conftest import RUN

RUNS = dg.DynamicPartitionsDefinition(name="lo2_runs")
FRAME = pl.DataFrame({"row_id": [0, 1], "m_message": ["a", "b"]})


def _assets(warehouse: str):
    @dg.asset(key=["lo2", "thing"], partitions_def=RUNS, io_manager_key="io")
    def thing(context: dg.AssetExecutionContext) -> pl.DataFrame:
        return FRAME.with_columns(pl.lit(context.partition_key).alias("run"))

    @dg.asset(key=["lo2", "lazy_reader"], partitions_def=RUNS, io_manager_key="io",
              ins={"thing": dg.AssetIn(["lo2", "thing"])})
    def lazy_reader(thing: pl.LazyFrame) -> pl.DataFrame:
        assert isinstance(thing, pl.LazyFrame)
        return thing.select(pl.len()).collect()

    @dg.asset(key=["lo2", "summary"], io_manager_key="io",
              ins={"thing": dg.AssetIn(["lo2", "thing"])})
    def summary(thing: dict[str, pl.DataFrame]) -> pl.DataFrame:
        return pl.concat(thing.values())

    io = WarehouseIOManager(warehouse=Warehouse(root=warehouse))
    return [thing, lazy_reader, summary], {"io": io}


def _materialize(warehouse: str, partitions: list[str]) -> None:
    assets, resources = _assets(warehouse)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(RUNS.name, partitions)
    for key in partitions:
        dg.materialize(assets[:2], partition_key=key, instance=instance, resources=resources)
    if len(partitions) > 1:  # with one partition, UPathIOManager passes the frame itself
        dg.materialize(assets, selection=[assets[2]], instance=instance, resources=resources)


def test_partitions_land_at_documented_paths(tmp_path):
    _materialize(str(tmp_path), [RUN, "light-oauth2-data-2"])
    path = tmp_path / "lo2" / "thing" / f"{RUN}.parquet"
    assert pl.read_parquet(path).equals(FRAME.with_columns(pl.lit(RUN).alias("run")))
    assert pl.read_parquet(tmp_path / "lo2" / "lazy_reader" / f"{RUN}.parquet")["len"][0] == 2
    # An unpartitioned downstream receives every partition, keyed by run.
    assert len(pl.read_parquet(tmp_path / "lo2" / "summary.parquet")) == 4
    leftovers = [p for p in tmp_path.rglob("*") if p.name.startswith(".tmp-")]
    assert leftovers == []


def test_rewrite_replaces_the_partition_readable_by_others(tmp_path):
    manager = PolarsParquetIOManager(base_path=UPath(tmp_path))
    target = UPath(tmp_path) / "lo2" / "thing" / f"{RUN}.parquet"
    context = dg.build_output_context(asset_key=["lo2", "thing"])
    manager.dump_to_path(context, FRAME, target)
    manager.dump_to_path(context, FRAME.head(1), target)
    assert pl.read_parquet(target.path).equals(FRAME.head(1))
    assert len(list((tmp_path / "lo2" / "thing").iterdir())) == 1
    assert (tmp_path / "lo2" / "thing" / f"{RUN}.parquet").stat().st_mode & 0o044  # not 0600


def test_fsspec_url_root_works_without_code_changes():
    """An s3://-style root goes through the same code; fsspec's memory:// stands in for S3."""
    _materialize("memory://lo2-test-warehouse", [RUN])
    stored = UPath("memory://lo2-test-warehouse/lo2/thing") / f"{RUN}.parquet"
    with stored.open("rb") as f:
        assert pl.read_parquet(f)["run"].to_list() == [RUN, RUN]


def test_failed_rewrite_keeps_the_good_partition(tmp_path):
    manager = PolarsParquetIOManager(base_path=UPath(tmp_path))
    target = UPath(tmp_path) / "lo2" / "thing.parquet"
    context = dg.build_output_context(asset_key=["lo2", "thing"])
    manager.dump_to_path(context, FRAME, target)
    broken = pl.LazyFrame({"x": [1]}).select(pl.col("x").cast(pl.Int64) // pl.lit("a"))
    with pytest.raises(Exception):  # noqa: B017 - polars raises its own error types
        manager.dump_to_path(context, broken, target)
    assert pl.read_parquet(target.path).equals(FRAME)  # the old file, intact
    assert [p.name for p in (tmp_path / "lo2").iterdir()] == ["thing.parquet"]  # no temp file


def test_non_frames_are_refused(tmp_path):
    manager = PolarsParquetIOManager(base_path=UPath(tmp_path))
    with pytest.raises(TypeError, match="polars DataFrames, LazyFrames or Batches only"):
        manager.dump_to_path(dg.build_output_context(asset_key=["lo2", "x"]), {"a": 1},
                             UPath(tmp_path) / "x.parquet")


def test_batches_are_written_in_order_one_row_group_each(tmp_path):
    import pyarrow.parquet as pq

    from lo2_dagster.storage import Batches, write_parquet

    schema = {"i": pl.Int64(), "words": pl.List(pl.String())}
    frames = (pl.DataFrame({"i": list(range(k * 3, k * 3 + 3)), "words": [["a", str(k)]] * 3},
                           schema=schema) for k in range(5))
    target = UPath(tmp_path) / "b.parquet"
    assert write_parquet(target, Batches(schema, frames)) == 15
    written = pl.read_parquet(target.path)
    assert written["i"].to_list() == list(range(15))
    assert pq.ParquetFile(target.path).metadata.num_row_groups == 5

    def failing():
        yield pl.DataFrame({"i": [1], "words": [["x"]]}, schema=schema)
        yield pl.DataFrame({"i": ["not an int"]})

    with pytest.raises(ValueError, match="differs"):
        write_parquet(UPath(tmp_path) / "c.parquet", Batches(schema, failing()))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.parquet"]  # no partial file


def test_stored_problem_finds_truncated_parquet_and_missing_files(tmp_path):
    from lo2_dagster.storage import stored_problem, write_parquet

    path = UPath(tmp_path / "t.parquet")
    write_parquet(path, FRAME)
    assert stored_problem(path) is None
    data = path.read_bytes()
    path.write_bytes(data[:-10])
    assert "not a readable Parquet file" in stored_problem(path)
    assert stored_problem(UPath(tmp_path / "nothing.parquet")) == "missing"


def test_write_failures_name_path_cause_and_fix():
    import errno

    from lo2_dagster.storage import write_failure

    full = write_failure(OSError(errno.ENOSPC, "No space left on device"), "/w/lo2/x.parquet")
    assert str(full).startswith("Cannot write /w/lo2/x.parquet: No space left on device. Fix: "
                                "free space on the disk that holds /w/lo2")
    # polars reports the OS error inside its own exception's text
    ro = write_failure(pl.exceptions.ComputeError("... Read-only file system (os error 30)"),
                       "/w/x.parquet")
    assert ro is not None and "Fix: make /w writable" in str(ro)
    assert write_failure(ValueError("a bug"), "/w/x.parquet") is None


def test_the_lock_is_exclusive_and_released_when_its_holder_ends(tmp_path):
    import subprocess
    import sys

    from lo2_dagster.lock import Busy, exclusive

    home, warehouse = tmp_path / "home", str(tmp_path / "warehouse")
    with exclusive(home, warehouse), pytest.raises(Busy, match=f"pid {os.getpid()},"), \
            exclusive(tmp_path / "other_home", warehouse, wait=False):
        pass  # same warehouse, other home: busy
    # A holder killed with -9 leaves no lock behind.
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from lo2_dagster.lock import exclusive\n"
        f"with exclusive({str(home)!r}, {warehouse!r}):\n"
        "    print('held', flush=True); time.sleep(600)")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(Busy, match=f"pid {holder.pid},"), \
                exclusive(home, warehouse, wait=False):
            pass
    finally:
        holder.kill()
        holder.wait()
    with exclusive(home, warehouse, wait=False):
        pass


def test_a_warehouse_that_is_a_file_is_said_in_one_line(tmp_path):
    from lo2_dagster.storage import unwritable

    (tmp_path / "file").write_text("x")
    assert unwritable(str(tmp_path / "file")) == (
        f"Cannot write the warehouse {tmp_path / 'file'}: it is a file, not a folder. Fix: "
        "point --warehouse (LO2_WAREHOUSE) at a folder")
    assert unwritable(str(tmp_path / "new" / "folder")) is None


def test_per_run_writes_and_reads_have_one_owner(tmp_path):
    """A per-run asset's batch writes each run through the warehouse IO manager (``store()``):
    the file lands where the IO manager's own outputs land and where its inputs read."""
    warehouse = Warehouse(root=str(tmp_path))
    store = warehouse.store()
    key = dg.AssetKey(["lo2", "thing"])
    path, rows = store.write(key, RUN, FRAME)
    assert (path, rows) == (tmp_path / "lo2" / "thing" / f"{RUN}.parquet", 2)
    assert path == warehouse.path_for(key, RUN)
    _, lazy_rows = store.write(key, RUN, FRAME.lazy())
    assert lazy_rows is None  # a LazyFrame is streamed, not counted
    _materialize(str(tmp_path), [RUN])  # the IO manager's own write of the same partition
    assert pl.read_parquet(path).columns == [*FRAME.columns, "run"]
    with pytest.raises(TypeError, match="lo2/thing returned dict"):
        store.write(key, RUN, {"not": "a frame"})
