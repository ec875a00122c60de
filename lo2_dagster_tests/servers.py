"""Real servers for the tests, on loopback, stopped afterwards: PostgreSQL (Debian's
``postgresql`` package; ``.ci/run`` installs it when missing)."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lo2_dagster.devserver import free_port


def postgres_bin() -> Path:
    """The folder of PostgreSQL's server programs (``initdb``, ``pg_ctl``)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not found:
        raise RuntimeError("PostgreSQL is not installed: `apt-get install -y postgresql` "
                           "(.ci/run does it)")
    return Path(found[-1]).parent


def _as_postgres(command: list[str]) -> list[str]:
    """``initdb`` and ``postgres`` refuse to run as root: run them as the ``postgres`` user."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@contextmanager
def postgres_server() -> Iterator[str]:
    """A throwaway PostgreSQL on 127.0.0.1 (trust authentication, user ``dagster``); yields the
    URL of its ``postgres`` database. Its data folder is deleted afterwards."""
    bin_dir = postgres_bin()
    folder = Path(tempfile.mkdtemp(prefix="lo2-postgres-"))
    data = folder / "data"
    data.mkdir()
    if os.geteuid() == 0:
        folder.chmod(0o755)
        shutil.chown(data, "postgres", "postgres")
    port = free_port()
    subprocess.run(_as_postgres([str(bin_dir / "initdb"), "-D", str(data), "-A", "trust",
                                 "-U", "dagster", "--no-sync"]),
                   check=True, capture_output=True, text=True)
    options = f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(_as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options,
                                 "-l", str(data / "log"), "-w", "start"]),
                   check=True, capture_output=True, text=True)
    try:
        yield f"postgresql+psycopg2://dagster@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast",
                                     "-w", "stop"]), capture_output=True, text=True)
        shutil.rmtree(folder, ignore_errors=True)


def new_database(server_url: str, name: str) -> str:
    """Create database ``name`` on the server; its URL (one clean instance per test)."""
    import psycopg2

    for attempt in range(20):  # the server may still be opening its socket
        try:
            connection = psycopg2.connect(server_url.replace("+psycopg2", ""))
            break
        except psycopg2.OperationalError:
            if attempt == 19:
                raise
            time.sleep(0.5)
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    connection.close()
    return server_url.rsplit("/", 1)[0] + f"/{name}"


@contextmanager
def redis_server() -> Iterator[str]:
    """A throwaway Redis on 127.0.0.1 (Debian's ``redis-server``; no persistence); yields its
    URL. Shut down afterwards."""
    if shutil.which("redis-server") is None:
        raise RuntimeError("redis-server is not installed: `apt-get install -y redis-server` "
                           "(.ci/run does it)")
    port = free_port()
    folder = Path(tempfile.mkdtemp(prefix="lo2-redis-"))
    subprocess.run(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--daemonize",
                    "yes", "--save", "", "--appendonly", "no", "--dir", str(folder),
                    "--logfile", str(folder / "log")], check=True, capture_output=True)
    try:
        for _ in range(50):
            ping = subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True,
                                  text=True)
            if ping.stdout.strip() == "PONG":
                break
            time.sleep(0.1)
        yield f"redis://127.0.0.1:{port}"
    finally:
        subprocess.run(["redis-cli", "-p", str(port), "shutdown", "nosave"],
                       capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def celery_workers(count: int, broker: str, backend: str, env: dict[str, str],
                   folder: Path) -> Iterator[list[str]]:
    """``count`` dagster-celery workers (``celery -A dagster_celery.app worker``, one task at a
    time each, as a worker machine would run), listening to ``broker``; yields their names once
    all are ready. Stopped afterwards."""
    from lo2_dagster import settings
    from lo2_dagster.devserver import BIN

    config = folder / "celery_config"
    config.mkdir(parents=True)
    (config / "dagster_celery_config.py").write_text(
        f"broker_url = {broker!r}\nresult_backend = {backend!r}\n")
    full_env = dict(env, PYTHONPATH=f"{config}{os.pathsep}{settings.REPO_ROOT}")
    names = [f"lo2-worker-{i}@127.0.0.1" for i in range(1, count + 1)]
    procs, logs = [], []
    for name in names:
        log = folder / f"{name.split('@')[0]}.log"
        logs.append(log)
        with log.open("w") as out:
            procs.append(subprocess.Popen(
                [str(BIN / "celery"), "-A", "dagster_celery.app", "worker", "--pool", "solo",
                 "--prefetch-multiplier=1", "-Q", "dagster", "-n", name, "--loglevel", "INFO"],
                env=full_env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True))
    try:
        deadline = time.monotonic() + 120
        while not all("ready." in log.read_text() for log in logs):
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError("celery workers did not start: " + " | ".join(
                    log.read_text()[-2000:] for log in logs))
            time.sleep(0.5)
        yield names
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
