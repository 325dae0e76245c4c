"""Issue 6: the team instance (deploy/postgres/dagster.yaml) stores runs, materialisations and
per-partition check results in PostgreSQL; the default instance (dagster_home) stays SQLite.

A throwaway PostgreSQL server is started on 127.0.0.1 (free port, temp data directory, password
authentication) for the module and stopped afterwards whatever happens. Without a PostgreSQL
server binary on the machine the PostgreSQL tests are skipped (.ci/run installs one)."""

from __future__ import annotations

import datetime as dt
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.events import DagsterEventType

from rlx_assets.defs.status import collect_states
from rlx_assets.lib.demo_data import write_day
from rlx_assets_tests.conftest import materialize_day, settings_for
from rlx_assets_tests.stand_ins import BTC, free_port

REPO = Path(__file__).resolve().parents[1]
PG_YAML = REPO / "deploy" / "postgres" / "dagster.yaml"
DEFAULT_YAML = REPO / "dagster_home" / "dagster.yaml"
TRADES = dg.AssetKey(["binance", "btc_usdt", "trades"])
CHECKS = ("schema", "positive_prices", "temporal_continuity")
DAY = dt.date(2024, 1, 2)
ROWS = 2_000
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


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
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


def _dagster_home(tmp_path: Path, yaml_file: Path) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(yaml_file, home / "dagster.yaml")
    return home


def test_postgres_instance_stores_runs_materialisations_and_check_results(
        postgres: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in postgres.env.items():
        monkeypatch.setenv(name, value)
    home = _dagster_home(tmp_path, PG_YAML)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    write_day(tmp_path / "vendor", "trades", BTC, DAY, rows=ROWS)
    env = {"CRYPTO_LAKE_SOURCE": str(tmp_path / "vendor"), "RLX_LAKE_ROOT": str(tmp_path / "lake")}

    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        assert instance.run_coordinator.__class__.__name__ == "QueuedRunCoordinator"

        result = materialize_day(env, "trades", DAY, instance)
        assert result.success
        run_id = result.run_id

        # Read back through Dagster's API...
        assert instance.get_run_by_id(run_id).is_success
        materialization = instance.get_latest_materialization_event(TRADES)
        assert materialization is not None and materialization.run_id == run_id
        assert materialization.asset_materialization.partition == DAY.isoformat()
        infos = instance.event_log_storage.get_asset_check_partition_info(
            [dg.AssetCheckKey(TRADES, name) for name in CHECKS])
        assert {(i.check_key.name, i.partition_key, i.latest_execution_status.value)
                for i in infos} == {(name, DAY.isoformat(), "SUCCEEDED") for name in CHECKS}
        # What `rlx-assets status` and the slack_alerts sensor read works on PostgreSQL too.
        states = collect_states(instance, settings_for(env), ["trades"])
        assert {s.day: s.state for s in states}[DAY] == "ready"
        entries = instance.event_log_storage.get_logs_for_all_runs_by_log_id(
            after_cursor=-1, dagster_event_type=DagsterEventType.ASSET_CHECK_EVALUATION)
        assert {entry.run_id for entry in entries.values()} == {run_id}

    # ...and straight from PostgreSQL's tables.
    assert postgres.scalar("SELECT status FROM runs WHERE run_id = %s", run_id) == "SUCCESS"
    assert postgres.scalar(
        "SELECT count(*) FROM event_logs WHERE run_id = %s AND dagster_event_type = %s "
        "AND partition = %s", run_id, "ASSET_MATERIALIZATION", DAY.isoformat()) == 1
    assert postgres.scalar(
        "SELECT count(*) FROM asset_check_executions WHERE run_id = %s AND partition = %s "
        "AND execution_status = 'SUCCEEDED' AND check_name = ANY(%s)",
        run_id, DAY.isoformat(), list(CHECKS)) == len(CHECKS)
    evaluations = postgres.scalar(
        "SELECT count(*) FROM event_logs WHERE run_id = %s AND dagster_event_type = %s",
        run_id, "ASSET_CHECK_EVALUATION")
    assert evaluations == postgres.scalar(
        "SELECT count(*) FROM asset_check_executions WHERE run_id = %s", run_id) >= len(CHECKS)
    # No SQLite database beside the config; the local files Dagster does write under
    # DAGSTER_HOME (compute logs in storage/, logs/, .logs_queue) are git-ignored there.
    assert not list(home.rglob("*.db"))
    local = sorted(str(p.relative_to(home)) for p in home.rglob("*")
                   if p.is_file() and p.name != "dagster.yaml")
    assert any(path.startswith("storage/") for path in local), local
    if shutil.which("git") and subprocess.run(
            ["git", "rev-parse", "--is-inside-work-tree"], cwd=REPO, capture_output=True,
    ).returncode == 0:
        in_checkout = [str(PG_YAML.parent.relative_to(REPO) / path) for path in local]
        ignored = subprocess.run(["git", "check-ignore", "--no-index", "--stdin"], cwd=REPO,
                                 input="\n".join(in_checkout), capture_output=True, text=True)
        assert sorted(ignored.stdout.split()) == sorted(in_checkout), ignored
        tracked = subprocess.run(["git", "check-ignore", "--no-index", "-q",
                                  str(PG_YAML.relative_to(REPO))], cwd=REPO)
        assert tracked.returncode == 1, "deploy/postgres/dagster.yaml must not be git-ignored"


def test_instances_differ_only_in_storage() -> None:
    default, team = (yaml.safe_load(path.read_text()) for path in (DEFAULT_YAML, PG_YAML))
    assert "storage" not in default  # SQLite under DAGSTER_HOME, Dagster's default
    assert list(team.pop("storage")) == ["postgres"]
    assert team == default


def test_default_instance_is_sqlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = _dagster_home(tmp_path, DEFAULT_YAML)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "SqliteRunStorage"
        assert type(instance.event_log_storage).__name__ == "SqliteEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "SqliteScheduleStorage"
