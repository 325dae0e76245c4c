"""Issue 6: the team instance (deploy/postgres/dagster.yaml) stores runs, materialisations and
per-partition check results in PostgreSQL; the default instance (dagster_home) stays SQLite.

A throwaway PostgreSQL server is started on 127.0.0.1 (free port, temp data directory, password
authentication) for the module and stopped afterwards whatever happens. Without a PostgreSQL
server binary on the machine the PostgreSQL tests are skipped (.ci/run installs one)."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.events import DagsterEventType

from rlx_assets.defs.records import vendor_stamps
from rlx_assets.defs.status import collect_states
from rlx_assets.lib.day_record import DayRecord
from rlx_assets.lib.demo_data import write_day
from rlx_assets_tests.conftest import materialize_day, settings_for
from rlx_assets_tests.postgres_server import PostgresServer, running_postgres
from rlx_assets_tests.stand_ins import BTC

REPO = Path(__file__).resolve().parents[1]
PG_YAML = REPO / "deploy" / "postgres" / "dagster.yaml"
DEFAULT_YAML = REPO / "dagster_home" / "dagster.yaml"
TRADES = dg.AssetKey(["binance", "btc_usdt", "trades"])
CHECKS = ("schema", "positive_prices", "temporal_continuity")
DAY = dt.date(2024, 1, 2)
ROWS = 2_000


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    with running_postgres() as server:
        yield server


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
        # ...and the inventory's read of the latest event per partition (times come back
        # from the driver: datetimes here, text on SQLite)
        stamps = vendor_stamps(instance, [TRADES], [DAY])
        record = DayRecord.from_metadata(DAY, {
            k: v.value for k, v in materialization.asset_materialization.metadata.items()})
        assert stamps == {TRADES: {DAY: record.vendor_stamp}} and record.vendor_stamp.size > 0
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
