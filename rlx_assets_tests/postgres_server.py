"""A throwaway PostgreSQL server on 127.0.0.1 for tests (initdb + postgres, free port, temp
directory, password authentication), shared by test_postgres_instance.py and
test_production_topology.py. Without a PostgreSQL server binary the calling test is skipped."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from rlx_assets_tests.stand_ins import free_port

PG_USER, PG_PASSWORD, PG_DB = "rlx", "s3cret pass", "rlx_dagster"


def postgres_bin_dir() -> Path | None:
    """A directory holding `initdb` and `postgres`: from PATH, else Debian's newest version."""
    found = shutil.which("initdb")
    candidates = [Path(found).resolve().parent] if found else []
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"),
                         key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
                         reverse=True)
    for bin_dir in candidates:
        if (bin_dir / "initdb").is_file() and (bin_dir / "postgres").is_file():
            return bin_dir
    return None


@dataclass
class PostgresServer:
    port: int
    process: subprocess.Popen

    @property
    def env(self) -> dict[str, str]:
        return {"DAGSTER_PG_USERNAME": PG_USER, "DAGSTER_PG_PASSWORD": PG_PASSWORD,
                "DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": str(self.port),
                "DAGSTER_PG_DB": PG_DB}

    def connect(self, db: str = PG_DB):
        import psycopg2

        return psycopg2.connect(host="127.0.0.1", port=self.port, user=PG_USER,
                                password=PG_PASSWORD, dbname=db, connect_timeout=5)

    def scalar(self, sql: str, *params: object) -> object:
        conn = self.connect()
        try:
            with conn.cursor() as cursor:
                cursor.execute(sql, params)
                return cursor.fetchone()[0]
        finally:
            conn.close()


def _demote() -> tuple[list[str], int, int]:
    """PostgreSQL refuses to run as root: as root, run it as `postgres` (else `nobody`)."""
    if os.geteuid() != 0:
        return [], os.getuid(), os.getgid()
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return ([shutil.which("setpriv") or "setpriv", f"--reuid={entry.pw_uid}",
                 f"--regid={entry.pw_gid}", "--clear-groups", "--"],
                entry.pw_uid, entry.pw_gid)
    pytest.skip("running as root and no unprivileged user (postgres, nobody) to run PostgreSQL as")


def _stop(process: subprocess.Popen) -> None:
    """Fast shutdown (SIGINT), then SIGKILL of the whole process group if it hangs."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL server on 127.0.0.1 (free port, temp data directory, password
    authentication) with the database PG_DB; stopped and removed on exit whatever happens.
    Skips the calling test when no PostgreSQL server binary is installed."""
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server binary (initdb, postgres) on PATH or under "
                    "/usr/lib/postgresql/*/bin: install postgresql to run this test")
    prefix, uid, gid = _demote()
    # Not under pytest's tmp_path: that is private to root, and the server user must reach it.
    root = Path(tempfile.mkdtemp(prefix="rlx-pg-"))
    process: subprocess.Popen | None = None
    try:
        data, pwfile, log = root / "data", root / "pwfile", root / "server.log"
        pwfile.write_text(PG_PASSWORD + "\n")
        for path in (root, pwfile):
            os.chown(path, uid, gid)
        env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
        initdb = subprocess.run(
            [*prefix, str(bin_dir / "initdb"), "-D", str(data), "-U", PG_USER,
             f"--pwfile={pwfile}", "--auth=scram-sha-256", "--encoding=UTF8", "--no-sync"],
            capture_output=True, text=True, env=env, cwd=root, timeout=120)
        if initdb.returncode:
            raise RuntimeError(f"initdb failed:\n{initdb.stdout}{initdb.stderr}")
        port = free_port()
        with open(log, "wb") as log_file:
            # Its own process group: a stray SIGINT from the terminal does not reach it
            # mid-test, and the finalizer can kill the group if a fast shutdown hangs.
            process = subprocess.Popen(
                [*prefix, str(bin_dir / "postgres"), "-D", str(data), "-h", "127.0.0.1",
                 "-p", str(port), "-k", str(root), "-c", "fsync=off",
                 "-c", "synchronous_commit=off", "-c", "full_page_writes=off"],
                stdout=log_file, stderr=subprocess.STDOUT, env=env, cwd=root,
                start_new_session=True)
        server = PostgresServer(port, process)
        deadline = time.monotonic() + 30
        while True:
            try:
                server.connect("postgres").close()
                break
            except Exception as exc:  # not accepting connections yet
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"PostgreSQL did not start: {exc}\n"
                                       f"{log.read_text(errors='replace')}") from exc
                time.sleep(0.1)
        conn = server.connect("postgres")
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {PG_DB}")
        conn.close()
        yield server
    finally:
        if process is not None:
            _stop(process)
        shutil.rmtree(root, ignore_errors=True)
