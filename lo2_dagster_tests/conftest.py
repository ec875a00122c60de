"""Shared fixtures: small LO2 layouts written to tmp_path, and an isolated environment."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from lo2_dagster.lib.names import service_file_name

# 300 consecutive real lines of a `correct` token-service log (from ../shared/lo2/).
EXCERPT = Path(__file__).resolve().parent / "fixtures" / "real-token-correct-excerpt.log"
RUN = "light-oauth2-data-1719592986"  # 2024-06-28 16:43:06 UTC


def line(time: str, message: str, level: str = "DEBUG", cid: str = "tz9i6iqUQCSoCc4UiqxjIw",
         thread: str = "XNIO-1 task-2", logger: str = "c.n.o.t.h.Oauth2TokenPostHandler",
         method: str = "handleRequest") -> str:
    """One light-4j log line in the real format (blank cid -> three spaces before the level)."""
    return f"{time} [{thread}]  {cid} {level:<5} {logger} {method} - {message}"


WriteRun = Callable[..., Path]
#: Instance settings of on-disk test instances (the project's dagster.yaml turns it off too).
NO_TELEMETRY = {"telemetry": {"enabled": False}}


@pytest.fixture
def write_run(tmp_path: Path) -> WriteRun:
    """Write ``{(test_case, service): text | bytes}`` as one run under ``tmp_path/lo2/logs``."""

    def write(files: Mapping[tuple[str, str], str | bytes], run: str = RUN,
              root: Path | None = None) -> Path:
        root = root or tmp_path / "lo2"
        for (test_case, service), content in files.items():
            path = root / "logs" / run / test_case / service_file_name(service)
            path.parent.mkdir(parents=True, exist_ok=True)
            data = content.encode() if isinstance(content, str) else content
            path.write_bytes(data)
        return root

    return write


@pytest.fixture
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """LO2_ROOT, LO2_WAREHOUSE and DAGSTER_HOME in tmp_path, so no test touches the checkout."""
    paths = {"root": tmp_path / "lo2", "warehouse": tmp_path / "warehouse",
             "home": tmp_path / "dagster_home"}
    monkeypatch.setenv("LO2_ROOT", str(paths["root"]))
    monkeypatch.setenv("LO2_WAREHOUSE", str(paths["warehouse"]))
    monkeypatch.setenv("DAGSTER_HOME", str(paths["home"]))
    return paths


def build_warehouse(base: Path, runs: int, seed: int, instance: Any,
                    monkeypatch: pytest.MonkeyPatch, **config: Any) -> list[str]:
    """Generate ``runs`` small runs under ``base/lo2`` (``config``: more SynthConfig fields)
    and materialize the whole asset graph into ``base/warehouse`` with `lo2-dagster run`'s code
    path, on ``instance``. ``LO2_ROOT`` and ``LO2_WAREHOUSE`` point there (through
    ``monkeypatch``). Returns the run names."""
    from lo2_dagster import settings
    from lo2_dagster.definitions import defs
    from lo2_dagster.lib.layout import scan_runs
    from lo2_dagster.pipeline import add_run_partitions, materialize_all
    from lo2_dagster.synth import SynthConfig, generate

    generate(base / "lo2", SynthConfig(runs=runs, seed=seed, **{"token_lines": 5, **config}))
    names = scan_runs(base / "lo2").runs
    monkeypatch.setenv(settings.ENV_ROOT, str(base / "lo2"))
    monkeypatch.setenv(settings.ENV_WAREHOUSE, str(base / "warehouse"))
    add_run_partitions(instance, names)
    outcomes = materialize_all(defs(), instance, names, report=lambda _: None)
    assert all(o.success for o in outcomes), [o.error for o in outcomes if not o.success]
    return names


@pytest.fixture(scope="session")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Four generated runs' enhanced sequence files ({run: path}), built once per session."""
    import dagster as dg

    base = tmp_path_factory.mktemp("generated")
    with pytest.MonkeyPatch.context() as mp, dg.DagsterInstance.ephemeral() as instance:
        runs = build_warehouse(base, runs=4, seed=11, instance=instance, monkeypatch=mp)
    folder = base / "warehouse" / "lo2" / "sequences_enhanced"
    return {run: folder / f"{run}.parquet" for run in runs}


def _build(tmp_path_factory: pytest.TempPathFactory, name: str, **config: Any
           ) -> tuple[Path, list[str]]:
    """Three generated runs (seed 5) with the whole asset graph materialized on an on-disk
    instance in ``<base>/home``."""
    import dagster as dg

    base = tmp_path_factory.mktemp(name)
    (base / "home").mkdir()
    with pytest.MonkeyPatch.context() as mp, \
            dg.DagsterInstance.local_temp(tempdir=str(base / "home"), overrides=NO_TELEMETRY) \
            as instance:
        runs = build_warehouse(base, runs=3, seed=5, instance=instance, monkeypatch=mp,
                               **config)
    return base, runs


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """Three generated runs (v1 names), the whole asset graph materialized, once per session.
    Tests work on a copy (``built_copy``)."""
    return _build(tmp_path_factory, "built")


@pytest.fixture(scope="session")
def built_v2(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """The same in LO2 v2's shape (``SynthConfig.lo2_v2``: v2 names and folders, start-up in
    each run's first test case only), once per session; copied by ``built_v2_copy``."""
    from lo2_dagster.synth import LO2_V2_VALUES

    return _build(tmp_path_factory, "built_v2", **LO2_V2_VALUES)


def _copy(built: tuple[Path, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
          ) -> Iterator[tuple[Path, list[str], Any]]:
    """A copy of a built world: its data, warehouse and instance (mtimes kept, so the run
    folders' signatures are those observed), with ``LO2_ROOT`` and ``LO2_WAREHOUSE`` pointing
    at it. Yields (base, runs, instance)."""
    import dagster as dg

    from lo2_dagster import settings

    base, runs = built
    copy = tmp_path / "world"
    shutil.copytree(base, copy, symlinks=True)
    monkeypatch.setenv(settings.ENV_ROOT, str(copy / "lo2"))
    monkeypatch.setenv(settings.ENV_WAREHOUSE, str(copy / "warehouse"))
    with dg.DagsterInstance.local_temp(tempdir=str(copy / "home"),
                                       overrides=NO_TELEMETRY) as instance:
        yield copy, runs, instance


@pytest.fixture
def built_copy(built: tuple[Path, list[str]], tmp_path: Path,
               monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, list[str], Any]]:
    """A copy of ``built`` (see ``_copy``)."""
    yield from _copy(built, tmp_path, monkeypatch)


@pytest.fixture
def built_v2_copy(built_v2: tuple[Path, list[str]], tmp_path: Path,
                  monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, list[str], Any]]:
    """A copy of ``built_v2`` (see ``_copy``)."""
    yield from _copy(built_v2, tmp_path, monkeypatch)
