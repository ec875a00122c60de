"""Every setting the environment gives, in one module: where things live (the LO2 root, the
warehouse, DAGSTER_HOME and its storage, the allowlist) and how the orchestration runs
(automation on or off, the retrain and catch-up crons, runs per backfill batch).

Nothing here runs at import time: the environment is read by the functions, when they are
called. The locations are resolved when used, so a CLI flag that sets ``LO2_ROOT`` or
``LO2_WAREHOUSE`` before a run takes effect for that run; the orchestration settings are read
when the definitions are built (a cron and a backfill policy are part of them), so they take
effect when the code location is (re)loaded.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ENV_ROOT = "LO2_ROOT"
ENV_WAREHOUSE = "LO2_WAREHOUSE"
ENV_ALLOWLIST = "LO2_FP_ALLOWLIST"
ENV_FOLLOW_SYMLINKS = "LO2_FOLLOW_SYMLINKS"

#: The repository checkout this package runs from (editable install or source tree).
REPO_ROOT = Path(__file__).resolve().parent.parent


def default_lo2_root() -> Path:
    """The committed sample dataset."""
    return REPO_ROOT / "data" / "lo2-sample"


def lo2_root(explicit: str | None = None) -> Path:
    """The LO2 root: explicit value, else ``$LO2_ROOT``, else the committed sample."""
    value = explicit or os.environ.get(ENV_ROOT)
    return Path(value).expanduser().resolve() if value else default_lo2_root()


def warehouse_root(explicit: str | None = None) -> str:
    """The warehouse root (a local path or an fsspec URL such as ``s3://bucket/lo2``)."""
    value = explicit or os.environ.get(ENV_WAREHOUSE)
    if not value:
        return str(REPO_ROOT / "data" / "warehouse")
    return value if "://" in value else str(Path(value).expanduser().resolve())


def follow_symlinks(explicit: bool | None = None) -> bool:
    """Whether symbolic links that lead out of the LO2 root are followed: explicit value, else
    ``$LO2_FOLLOW_SYMLINKS`` (1, true, yes), else no (a root is read only inside itself)."""
    if explicit is not None:
        return explicit
    return os.environ.get(ENV_FOLLOW_SYMLINKS, "").strip().lower() in ("1", "true", "yes", "on")


def fp_allowlist(explicit: str | None = None) -> Path:
    """The FP allowlist file: explicit value, else ``$LO2_FP_ALLOWLIST``, else
    ``data/fp_allowlist.toml`` in the checkout."""
    value = explicit or os.environ.get(ENV_ALLOWLIST)
    if value:
        return Path(value).expanduser().resolve()
    return REPO_ROOT / "data" / "fp_allowlist.toml"


def dagster_home() -> Path:
    """``$DAGSTER_HOME``, else ``.dagster_home`` in the checkout (git-ignored)."""
    value = os.environ.get("DAGSTER_HOME")
    return Path(value).expanduser().resolve() if value else REPO_ROOT / ".dagster_home"


ENV_POSTGRES_URL = "LO2_POSTGRES_URL"
#: The Celery broker and result backend of the job lo2_ingest_on_workers (read by Dagster when
#: such a run starts, through the job's run config).
ENV_CELERY_BROKER = "LO2_CELERY_BROKER"
ENV_CELERY_BACKEND = "LO2_CELERY_BACKEND"

#: What a new DAGSTER_HOME's dagster.yaml gets when ``$LO2_POSTGRES_URL`` is set.
POSTGRES_STORAGE = """
# Written because $LO2_POSTGRES_URL was set: run, event-log and schedule storage in PostgreSQL
# (dagster-postgres), at the URL that variable holds when Dagster starts.
storage:
  postgres:
    postgres_url:
      env: LO2_POSTGRES_URL
"""


class InstanceConfigError(ValueError):
    """DAGSTER_HOME's dagster.yaml does not match the environment (say, SQLite storage while
    ``$LO2_POSTGRES_URL`` is set)."""


def postgres_url() -> str | None:
    """``$LO2_POSTGRES_URL`` (e.g. ``postgresql://user:password@host:5432/dagster``): Dagster's
    storage in PostgreSQL; unset: SQLite files under DAGSTER_HOME. A plain ``postgresql://``
    URL names the driver dagster-postgres installs (``postgresql+psycopg2://``): SQLAlchemy
    would otherwise look for psycopg 3."""
    value = os.environ.get(ENV_POSTGRES_URL) or None
    for plain in ("postgresql://", "postgres://"):
        if value and value.startswith(plain):
            return "postgresql+psycopg2://" + value[len(plain):]
    return value


def instance_config(postgres: bool | None = None) -> str:
    """The project's ``dagster.yaml``, with PostgreSQL storage when ``postgres`` (default:
    when ``$LO2_POSTGRES_URL`` is set)."""
    text = (REPO_ROOT / "dagster.yaml").read_text()
    if postgres is None:
        postgres = postgres_url() is not None
    return text + POSTGRES_STORAGE if postgres else text


def prepare_dagster_home() -> Path:
    """Create DAGSTER_HOME, give it the project's ``dagster.yaml`` if it has none (with
    PostgreSQL storage when ``$LO2_POSTGRES_URL`` is set), export it. A home whose file keeps
    SQLite storage while ``$LO2_POSTGRES_URL`` is set is refused with the fix, rather than
    silently writing beside the shared instance."""
    home = dagster_home()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if home != REPO_ROOT and not config.exists():
        config.write_text(instance_config())
    elif postgres_url() and config.exists() and "postgres" not in config.read_text():
        raise InstanceConfigError(
            f"${ENV_POSTGRES_URL} is set but {config} keeps Dagster's state in SQLite under "
            f"{home}. Use a new DAGSTER_HOME (its dagster.yaml is then written for PostgreSQL), "
            f"or add this to {config}:\n{POSTGRES_STORAGE}")
    os.environ["DAGSTER_HOME"] = str(home)
    if postgres_url():  # with its driver named, for this process and `dagster dev`
        os.environ[ENV_POSTGRES_URL] = postgres_url()  # type: ignore[assignment]
    return home


ENV_DRIFT_WARN_PSI = "LO2_DRIFT_WARN_PSI"


def drift_warn_psi(explicit: float | None = None) -> float:
    """The PSI above which ``lo2/score_drift`` warns: explicit value (the asset's run config),
    else ``$LO2_DRIFT_WARN_PSI``, else 0.25 (a large shift by the usual rule of thumb)."""
    from lo2_dagster.lib.drift import DEFAULT_WARN_PSI

    if explicit is not None:
        return explicit
    value = os.environ.get(ENV_DRIFT_WARN_PSI)
    try:
        return float(value) if value else DEFAULT_WARN_PSI
    except ValueError:
        raise ValueError(f"${ENV_DRIFT_WARN_PSI} must be a number, got {value!r}") from None


# Orchestration settings: read when the definitions are built (a schedule's cron and a backfill
# policy are part of the definitions), so a code location reload picks up a change.
ENV_AUTOMATION = "LO2_AUTOMATION"
ENV_RETRAIN_CRON = "LO2_RETRAIN_CRON"
ENV_CATCH_UP_CRON = "LO2_CATCH_UP_CRON"
ENV_BACKFILL_BATCH = "LO2_BACKFILL_RUNS_PER_BATCH"
DEFAULT_RETRAIN_CRON = "0 3 * * 0"
DEFAULT_CATCH_UP_CRON = "0 * * * *"
DEFAULT_RUNS_PER_BATCH = 25


def automation_on() -> bool:
    """Whether the automation sensor starts running: ``$LO2_AUTOMATION`` (off, 0, false, no:
    stopped until started in the UI), else on."""
    return os.environ.get(ENV_AUTOMATION, "on").strip().lower() not in ("off", "0", "false", "no")


def retrain_cron() -> str:
    """The retrain schedule (cron, UTC): ``$LO2_RETRAIN_CRON``, else Sundays 03:00."""
    return os.environ.get(ENV_RETRAIN_CRON, DEFAULT_RETRAIN_CRON)


def catch_up_cron() -> str:
    """The catch-up schedule (cron, UTC): ``$LO2_CATCH_UP_CRON``, else hourly."""
    return os.environ.get(ENV_CATCH_UP_CRON, DEFAULT_CATCH_UP_CRON)


def runs_per_backfill_batch() -> int:
    """Run partitions per Dagster run in a backfill: ``$LO2_BACKFILL_RUNS_PER_BATCH``, else 25."""
    value = os.environ.get(ENV_BACKFILL_BATCH)
    try:
        runs = int(value) if value else DEFAULT_RUNS_PER_BATCH
    except ValueError:
        raise ValueError(f"${ENV_BACKFILL_BATCH} must be a whole number, got {value!r}") from None
    if runs < 1:
        raise ValueError(f"${ENV_BACKFILL_BATCH} must be at least 1, got {runs}")
    return runs


#: The allocator polars uses (jemalloc, with its ``_rjem_`` prefix) reads its settings from this
#: variable when polars is first imported.
ENV_JEMALLOC = "_RJEM_MALLOC_CONF"
#: Freed pages go back to the system after 100 ms instead of jemalloc's 10 s, so a stage does
#: not start on top of what the previous one freed: `lo2-dagster run` on 1.79 M lines peaks at
#: 1.20-1.27 GB RSS instead of 1.36-1.57 GB, for about 1 s more (docs/benchmarks.md).
JEMALLOC_CONF = "dirty_decay_ms:100,muzzy_decay_ms:0"


def return_freed_memory() -> None:
    """Set :data:`JEMALLOC_CONF` for this process and the ones it starts (``dagster dev``, its
    runs), unless ``$_RJEM_MALLOC_CONF`` is set already. Effective only before polars is
    imported: the commands call it first."""
    os.environ.setdefault(ENV_JEMALLOC, JEMALLOC_CONF)


#: A command's full (oldest-generation) garbage collections each walk every object the process
#: holds: Dagster's definitions and event records, numpy and sklearn's modules, loaded Drain
#: templates. With Python's default (one full collection per 10 of the middle generation, when a
#: quarter of the old objects are new) `lo2-dagster run` on 1.79 M lines made 8 of them, 1.0 s
#: of 1.3 s of collection; one per 100 made 1, 0.46 s in all, at the same peak memory (only
#: garbage in reference cycles waits longer; docs/benchmarks.md). The commands set it around
#: their whole work (``cli.main``). A Python whose collector is incremental (CPython's design
#: for 3.14) ignores this third threshold: nothing changes there.
FULL_COLLECTION_EVERY = 100


@contextmanager
def fewer_full_collections(every: int = FULL_COLLECTION_EVERY) -> Iterator[None]:
    """Within the block, the oldest generation is collected after ``every`` collections of the
    middle one (at least as rarely as before); the previous thresholds are restored after."""
    before = gc.get_threshold()
    gc.set_threshold(before[0], before[1], max(before[2], every))
    try:
        yield
    finally:
        gc.set_threshold(*before)
