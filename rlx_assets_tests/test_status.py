"""Issue 6: `rlx-assets status` states, from the instance and the lake."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys

import dagster as dg
import pytest

from rlx_assets.cli import main
from rlx_assets.defs.keys import table_key
from rlx_assets.defs.status import collect_states
from rlx_assets.lib.demo_faults import Fault
from rlx_assets.lib.status import PartitionState, calendar, partition_state
from rlx_assets.lib.tables import TABLES
from rlx_assets_tests.stand_ins import BTC
from rlx_assets_tests.test_certificate import DAYS, Lake

OK = {"schema": "SUCCEEDED", "positive_prices": "SUCCEEDED", "temporal_continuity": "SUCCEEDED"}


@pytest.mark.parametrize(("status", "checks", "ready", "quarantine", "expected"), [
    ("MATERIALIZED", OK, True, False, "ready"),
    ("MATERIALIZED", {**OK, "positive_prices": "FAILED"}, False, True, "quarantined"),
    ("MATERIALIZED", {**OK, "schema": "FAILED"}, False, False, "failed_check"),
    ("MATERIALIZED", OK, False, False, "missing"),  # ready file gone
    ("FAILED", {}, False, False, "failed"),
    ("IN_PROGRESS", OK, True, False, "in_progress"),
    (None, {}, False, False, "missing"),
])
def test_partition_state(status, checks, ready, quarantine, expected) -> None:
    assert partition_state(status, checks, ready, quarantine)[0] == expected


def test_calendar_draws_one_glyph_per_day() -> None:
    states = [PartitionState("BINANCE:BTC-USDT", "trades", dt.date(2024, 1, d), s)
              for d, s in ((1, "ready"), (2, "quarantined"), (4, "missing"))]
    lines = calendar(states)
    assert lines[0] == "BINANCE:BTC-USDT trades: 1 ready, 1 quarantined, 1 missing"
    assert lines[1] == "  2024-01  #Q ."


def test_status_reads_instance_and_lake(tmp_path, monkeypatch, capsys) -> None:
    lake = Lake(tmp_path)
    for table in TABLES:
        lake.publish(table, DAYS[0], Fault.NEGATIVE_PRICE if table == "trades" else None)
    lake.materialize(DAYS[0])
    lake.publish("trades", DAYS[1])
    lake.materialize(DAYS[1], tables=("trades",))
    states = {(s.table, s.day): s for s in collect_states(lake.instance, lake.defs_settings)}
    assert states[("trades", DAYS[0])].state == "quarantined"
    assert states[("trades", DAYS[0])].failed_checks == ("positive_prices",)
    assert states[("trades", DAYS[1])].state == "ready"
    assert states[("book", DAYS[0])].state == "ready"
    assert states[("book", DAYS[1])].state == "missing"

    for name, value in lake.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr("dagster.DagsterInstance.get", lambda: lake.instance)
    assert main(["status", "--json", "--table", "trades"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["day"], r["state"]) for r in rows] == [("2024-01-01", "quarantined"),
                                                       ("2024-01-02", "ready")]
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert "2024-01  Q#" in out
    assert "Certificate BINANCE:BTC-USDT: not issued (never asked for yet)" in out
    assert not lake.certify().success  # asked for too early: refused, and status says so
    assert main(["status"]) == 0
    assert "Certificate BINANCE:BTC-USDT: refused (refused: 3 partition problem(s), first: " \
        "trades 2024-01-01: quarantined (positive_prices failed))" in capsys.readouterr().out


def test_recheck_from_raw_after_threshold_change(tmp_path) -> None:
    """Checks re-run on stored raw/ bytes, without the vendor, with results per partition."""
    import shutil

    import dagster as dg

    from rlx_assets.definitions import build_definitions
    from rlx_assets_tests.conftest import settings_for

    lake = Lake(tmp_path)
    lake.publish("trades", DAYS[0])
    assert lake.materialize(DAYS[0], tables=("trades",))
    shutil.rmtree(lake.vendor)  # the vendor is gone: only raw/ remains

    strict = build_definitions(settings_for({**lake.env, "RLX_MAX_GAP_SECONDS": "trades=1"}))
    key = table_key(BTC, "trades")
    result = dg.materialize(
        [strict.get_assets_def(key)], partition_key=DAYS[0].isoformat(),
        instance=lake.instance, resources=strict.resources, raise_on_error=False,
        run_config={"ops": {"binance__btc_usdt__trades": {"config": {"from_raw": True}}}})
    assert not result.success
    info = lake.instance.event_log_storage.get_asset_check_partition_info(
        [dg.AssetCheckKey(key, "temporal_continuity")])
    assert [(i.partition_key, i.latest_execution_status.value) for i in info] == [
        ("2024-01-01", "FAILED")]
    assert (lake.lake / "quarantine" / "trades").exists()
    assert not list((lake.lake / "ready" / "trades").rglob("*.parquet"))

    missing = dg.materialize(
        [strict.get_assets_def(key)], partition_key=DAYS[1].isoformat(),
        instance=lake.instance, resources=strict.resources, raise_on_error=False,
        run_config={"ops": {"binance__btc_usdt__trades": {"config": {"from_raw": True}}}})
    text = str(missing.get_step_failure_events()[0].step_failure_data.user_failure_data)
    assert "No raw copy of trades BINANCE:BTC-USDT 2024-01-02" in text


_PROBE = """
import json, sys
from rlx_assets.cli import main
code = main(sys.argv[1:])
heavy = [m for m in ("polars", "numpy", "pyarrow", "pandas", "pandera", "boto3", "lakeapi")
         if m in sys.modules]
print(json.dumps({"code": code, "heavy": heavy}), file=sys.stderr)
"""


@pytest.mark.parametrize("command", ["status", "inventory"])
def test_status_and_inventory_import_no_dataframe_library(tmp_path, command) -> None:
    """Issue 15: the commands run at every look at a big lake; importing polars, pyarrow and
    numpy (~0.4 s) for them is pure start-up cost. Run in a fresh process over a recorded
    day with a quarantined table and a local vendor."""
    home = tmp_path / "home"
    home.mkdir()
    lake = Lake(tmp_path)
    lake.instance = dg.DagsterInstance.local_temp(str(home))
    for table in TABLES:
        lake.publish(table, DAYS[0], Fault.NEGATIVE_PRICE if table == "trades" else None)
    lake.materialize(DAYS[0])
    env = {**os.environ, **lake.env, "DAGSTER_HOME": str(home)}
    done = subprocess.run([sys.executable, "-c", _PROBE, command, "--json"], env=env,
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    probe = json.loads(done.stderr.strip().splitlines()[-1])
    assert probe["code"] == 0, done.stderr
    assert "quarantined" in done.stdout
    assert probe["heavy"] == [], f"`rlx-assets {command}` imported {probe['heavy']}"


def test_the_collector_is_paused_inside_and_restored_after() -> None:
    """lib/gc_pause: off inside (nested too), back as it was after, exceptions included."""
    import gc

    from rlx_assets.lib.gc_pause import paused_gc

    assert gc.isenabled()

    @paused_gc()
    def inner() -> bool:
        return gc.isenabled()

    with paused_gc():
        assert not gc.isenabled() and inner() is False
        assert not gc.isenabled()  # the nested use left it off
    assert gc.isenabled()
    with pytest.raises(ValueError), paused_gc():
        raise ValueError
    assert gc.isenabled()
    gc.disable()
    try:
        with paused_gc():
            pass
        assert not gc.isenabled()  # off before: left off
    finally:
        gc.enable()
