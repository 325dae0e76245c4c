"""Issues 3 and 6, the UI path: a backfill launched as the UI does it, check status per partition.

A webserver and a daemon run on 127.0.0.1 over a temporary DAGSTER_HOME. The test launches
an asset backfill of the three table assets over three days with the GraphQL mutation the
UI uses (`launchPartitionBackfill`), polls `partitionBackfillOrError` to the end, and reads
back through GraphQL what the UI shows: per-partition materialisation status
(`assetPartitionStatuses`), per-partition check status (`AssetCheck.partitionStatuses`, the
checks tab) and the individual check executions (`assetCheckExecutions(partition:)`). A
bad vendor day (negative trade price on 2024-01-02) must show `positive_prices` FAILED for
exactly that partition, the day itself FAILED in the Partitions view (not materialised),
and the backfill must end COMPLETED_FAILED. Then the day is fixed at the vendor, the backfill is
re-executed from failure as the UI's button does (`reexecutePartitionBackfill`), which must
re-run exactly that one partition; its check turns SUCCEEDED and the data moves from
quarantine/ to ready/. The instance's event log storage is cross-checked after shutdown.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow.parquet as pq
import pytest

from rlx_assets.defs.keys import certificate_key, table_key
from rlx_assets.lib.checks import BLOCKING_CHECKS, POSITIVE_PRICES
from rlx_assets.lib.demo_data import write_day
from rlx_assets.lib.demo_faults import Fault
from rlx_assets.lib.lake import DATA_FILE, QUARANTINE, READY, Lake
from rlx_assets_tests.dagster_servers import (
    ASSET_STATUS,
    LAUNCH_BACKFILL,
    DagsterServers,
    backfill_runs,
    dagster_servers,
    expand_ranges,
    wait_for_backfill,
)
from rlx_assets_tests.stand_ins import BTC

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(480)]

TABLES = ("trades", "book", "book_delta_v2")
DAYS = [dt.date(2024, 1, 1), dt.date(2024, 1, 2), dt.date(2024, 1, 3)]
DAY_KEYS = [d.isoformat() for d in DAYS]
BAD_TABLE, BAD_DAY = "trades", dt.date(2024, 1, 2)
DAYS_PER_RUN = 2
PREFIX = ["binance", "btc_usdt"]
CERTIFICATE = list(certificate_key(BTC).path)

REEXECUTE_BACKFILL = """
mutation Reexecute($params: ReexecutionParams!) {
  reexecutePartitionBackfill(reexecutionParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on Error { message }
  }
}
"""

CERTIFICATE_STATUS = """
query Certificate($key: AssetKeyInput!) {
  assetNodeOrError(assetKey: $key) { __typename }
  assetOrError(assetKey: $key) {
    __typename
    ... on Asset { assetMaterializations(limit: 1) { runId timestamp } }
  }
}
"""

CHECK_EXECUTIONS = """
query Executions($key: AssetKeyInput!, $check: String!, $partition: String, $limit: Int!) {
  assetCheckExecutions(assetKey: $key, checkName: $check, partition: $partition,
                       limit: $limit) {
    runId status partition timestamp
    evaluation { success partition description severity }
  }
}
"""


def key_input(table: str) -> dict[str, list[str]]:
    return {"path": list(table_key(BTC, table).path)}


def launch_backfill(servers: DagsterServers, tables: list[str], partitions: list[str]) -> str:
    data = servers.graphql(LAUNCH_BACKFILL, {"params": {
        "assetSelection": [key_input(t) for t in tables],
        "partitionNames": partitions,
        "fromFailure": False,
        "title": f"e2e {','.join(tables)} {partitions[0]}..{partitions[-1]}",
    }})["launchPartitionBackfill"]
    assert data["__typename"] == "LaunchBackfillSuccess", f"launchPartitionBackfill: {data}"
    return data["backfillId"]


def asset_status(servers: DagsterServers, table: str) -> dict[str, Any]:
    """{"materialized": {day: status}, "checks": {check: {day: status}}} as the UI sees them."""
    node = servers.graphql(ASSET_STATUS, {"key": key_input(table)})["assetNodeOrError"]
    assert node["__typename"] == "AssetNode", f"assetNodeOrError({table}): {node}"
    partitions = node["assetPartitionStatuses"]
    assert partitions["__typename"] == "TimePartitionStatuses", partitions
    checks = node["assetChecksOrError"]
    assert checks["__typename"] == "AssetChecks", f"assetChecksOrError({table}): {checks}"
    out = {"materialized": expand_ranges(partitions["ranges"], DAY_KEYS), "checks": {}}
    for c in checks["checks"]:
        statuses = c["partitionStatuses"]
        assert c["blocking"] is (c["name"] in BLOCKING_CHECKS), \
            f"{table}/{c['name']}: blocking={c['blocking']}"
        assert statuses and statuses["__typename"] == "AssetCheckTimePartitionStatuses", \
            f"{table}/{c['name']} partitionStatuses: {statuses}"
        out["checks"][c["name"]] = expand_ranges(statuses["ranges"], DAY_KEYS)
    return out


def check_executions(servers: DagsterServers, table: str, check: str,
                     partition: str) -> list[dict[str, Any]]:
    return servers.graphql(CHECK_EXECUTIONS, {
        "key": key_input(table), "check": check, "partition": partition, "limit": 10,
    })["assetCheckExecutions"]


def expected_check(table: str, check: str, day: str, fixed: bool) -> str:
    bad = table == BAD_TABLE and day == BAD_DAY.isoformat() and check == POSITIVE_PRICES
    return "FAILED" if bad and not fixed else "SUCCEEDED"


def expected_partition(table: str, day: str, fixed: bool) -> str:
    bad = table == BAD_TABLE and day == BAD_DAY.isoformat()
    return "FAILED" if bad and not fixed else "MATERIALIZED"


def assert_ui_statuses(servers: DagsterServers, fixed: bool) -> dict[str, Any]:
    seen = {table: asset_status(servers, table) for table in TABLES}
    for table, status in seen.items():
        # A quarantined day is FAILED in the Partitions tab, never MATERIALIZED (green).
        expected_partitions = {d: expected_partition(table, d, fixed) for d in DAY_KEYS}
        assert status["materialized"] == expected_partitions, \
            f"{table}: partition statuses {status['materialized']} (fixed={fixed})"
        assert set(BLOCKING_CHECKS) <= set(status["checks"]), (table, status["checks"])
        for check in set(status["checks"]) - set(BLOCKING_CHECKS):  # WARN-level: all clean
            assert set(status["checks"][check].values()) == {"SUCCEEDED"}, (table, check)
        for check in BLOCKING_CHECKS:
            expected = {d: expected_check(table, check, d, fixed) for d in DAY_KEYS}
            assert status["checks"][check] == expected, (
                f"UI check status of {table}/{check} (fixed={fixed}): "
                f"{status['checks'][check]}, expected {expected}; all: {seen}")
    # The same through the individual executions, as the check's history tab lists them.
    for table in TABLES:
        for day in DAY_KEYS:
            for check in BLOCKING_CHECKS:
                executions = check_executions(servers, table, check, day)
                assert executions, f"no execution of {table}/{check} for partition {day}"
                latest = executions[0]
                expected = expected_check(table, check, day, fixed)
                assert latest["partition"] == day and latest["evaluation"]["partition"] == day
                assert latest["status"] == expected, (table, check, day, executions)
                assert latest["evaluation"]["success"] is (expected == "SUCCEEDED")
                assert latest["evaluation"]["severity"] == "ERROR"
    return seen


def zone_file(lake: Path, zone: str, table: str, day: dt.date) -> Path:
    return (lake / zone / table / f"exchange={BTC.exchange}" / f"symbol={BTC.symbol}"
            / f"dt={day.isoformat()}" / DATA_FILE)


def backfill_summary(servers: DagsterServers, backfill: dict[str, Any],
                     partitions: int, assets: int) -> dict[str, Any]:
    runs = backfill_runs(servers, backfill["id"])
    wall = backfill["endTimestamp"] - backfill["timestamp"]
    return {
        "id": backfill["id"],
        "status": backfill["status"],
        "runs": len(runs),
        "run_statuses": sorted(r["status"] for r in runs),
        "assets_per_run": sorted(len(r["assetSelection"]) for r in runs),
        "run_seconds": sorted(round(r["endTime"] - r["startTime"], 1) for r in runs),
        "asset_partitions": partitions * assets,
        "wall_seconds": round(wall, 1),
        "seconds_per_partition": round(wall / (partitions * assets), 1),
        "per_asset": backfill["assetBackfillData"]["assetBackfillStatuses"],
    }


def certificate_materializations(servers: DagsterServers) -> list[dict[str, Any]] | None:
    """The certificate's latest materialisation, [] if none, None if there is no such asset."""
    data = servers.graphql(CERTIFICATE_STATUS, {"key": {"path": CERTIFICATE}})
    if data["assetNodeOrError"]["__typename"] != "AssetNode":
        return None
    asset = data["assetOrError"]
    return asset["assetMaterializations"] if asset["__typename"] == "Asset" else []


def wait_for_certificate(servers: DagsterServers, timeout: float = 120.0) -> dict[str, Any]:
    """The automation sensor issues the certificate once every partition passed its checks."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        latest = certificate_materializations(servers)
        if latest:
            return latest[0]
        time.sleep(2.0)
    raise AssertionError(f"The certificate did not materialise within {timeout:.0f} s of every "
                         "partition passing.\n" + servers.log_tail("daemon", 80))


def test_ui_backfill_records_check_status_per_partition(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    started = time.monotonic()
    vendor, lake, home = tmp_path / "vendor", tmp_path / "lake", tmp_path / "dagster_home"
    for day in DAYS:
        for table in TABLES:
            bad = table == BAD_TABLE and day == BAD_DAY
            write_day(vendor, table, BTC, day, fault=Fault.NEGATIVE_PRICE if bad else None)
    env = {
        "CRYPTO_LAKE_SOURCE": str(vendor),
        "RLX_LAKE_ROOT": str(lake),
        "RLX_START_DATE": DAY_KEYS[0],
        "RLX_END_DATE": DAY_KEYS[-1],
        "RLX_STEP_RETRIES": "0",
        "RLX_RETRY_DELAY_SECONDS": "0",
        "RLX_BACKFILL_DAYS_PER_RUN": str(DAYS_PER_RUN),
    }
    record: dict[str, Any] = {}

    # The daemon starts after the launch, so that its first backfill tick (every 30 s after
    # that) picks the backfill up at once.
    with dagster_servers(home, env, start_daemon=False) as servers:
        first_id = launch_backfill(servers, list(TABLES), DAY_KEYS)
        servers.start_daemon()
        first = wait_for_backfill(servers, first_id)
        record["first"] = backfill_summary(servers, first, len(DAYS), len(TABLES))
        # The backfill policy groups days: 2024-01-01..02 in one run (holding the bad day,
        # so that run fails), 2024-01-03 in another; each run holds every selected table.
        # Check results still carry their partitions (asserted below and at the end).
        assert record["first"]["runs"] == 2, record
        assert record["first"]["assets_per_run"] == [len(TABLES)] * 2, record
        ranges = {}
        for run in backfill_runs(servers, first_id):
            tags = {t["key"]: t["value"] for t in run["tags"]}
            start, end = (tags.get(f"dagster/asset_partition_range_{e}") for e in ("start", "end"))
            ranges[(start, end)] = run["status"]
        assert ranges == {(DAY_KEYS[0], DAY_KEYS[1]): "FAILURE",
                          (DAY_KEYS[2], DAY_KEYS[2]): "SUCCESS"}, (ranges, record)
        record["ui_first"] = assert_ui_statuses(servers, fixed=False)
        # The quarantined day is not materialised, so the backfill ends failed for it.
        assert first["status"] == "COMPLETED_FAILED", record
        # With a blocking check failing, the certificate (if defined) must not be issued.
        record["certificate_defined"] = certificate_materializations(servers) is not None
        assert not certificate_materializations(servers), record
        assert zone_file(lake, QUARANTINE, BAD_TABLE, BAD_DAY).exists()
        assert not zone_file(lake, READY, BAD_TABLE, BAD_DAY).exists()

        # The vendor republishes the day clean (a new file version); the UI's "re-execute
        # from failure" re-runs exactly the failed day.
        manifest = (lake / "raw" / BAD_TABLE / f"exchange={BTC.exchange}"
                    / f"symbol={BTC.symbol}" / f"dt={BAD_DAY}" / "1.snappy.parquet.json")
        bad_raw = json.loads(manifest.read_text())
        fixed_file = write_day(vendor, BAD_TABLE, BTC, BAD_DAY)
        again = servers.graphql(REEXECUTE_BACKFILL, {"params": {
            "parentRunId": first_id, "strategy": "FROM_FAILURE"}})["reexecutePartitionBackfill"]
        assert again["__typename"] == "LaunchBackfillSuccess", again
        second = wait_for_backfill(servers, again["backfillId"])
        record["second"] = backfill_summary(servers, second, 1, 1)
        assert record["second"]["runs"] == 1, record
        assert record["second"]["run_statuses"] == ["SUCCESS"], record
        [run] = backfill_runs(servers, again["backfillId"])
        tags = {t["key"]: t["value"] for t in run["tags"]}
        assert [a["path"] for a in run["assetSelection"]] == [[*PREFIX, BAD_TABLE]], run
        assert (tags.get("dagster/asset_partition_range_start"),
                tags.get("dagster/asset_partition_range_end")) == (BAD_DAY.isoformat(),) * 2
        record["ui_second"] = assert_ui_statuses(servers, fixed=True)
        assert zone_file(lake, READY, BAD_TABLE, BAD_DAY).exists(), record
        assert not zone_file(lake, QUARANTINE, BAD_TABLE, BAD_DAY).exists(), record
        fixed_raw = json.loads(manifest.read_text())
        assert fixed_raw["version"] != bad_raw["version"], (bad_raw, fixed_raw)
        assert fixed_raw["sha256"] != bad_raw["sha256"], (bad_raw, fixed_raw)
        assert pq.ParquetFile(zone_file(lake, READY, BAD_TABLE, BAD_DAY)).metadata.num_rows \
            == pq.ParquetFile(fixed_file).metadata.num_rows
        if record["certificate_defined"]:
            record["certificate"] = wait_for_certificate(servers)
            certificate = Lake.at(str(lake)).certificate_path(BTC, DAYS[0], DAYS[-1])
            assert certificate.exists(), (certificate, record)

    # Cross-check with the instance's storage, now that the servers are gone.
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        for table in TABLES:
            asset_key = table_key(BTC, table)
            keys = [dg.AssetCheckKey(asset_key, check) for check in BLOCKING_CHECKS]
            infos = instance.event_log_storage.get_asset_check_partition_info(keys)
            by_key = {(i.check_key.name, i.partition_key): i for i in infos}
            for check in BLOCKING_CHECKS:
                for day in DAY_KEYS:
                    info = by_key.get((check, day))
                    assert info is not None, f"no partition info for {table}/{check}/{day}"
                    assert info.latest_execution_status.value == \
                        expected_check(table, check, day, fixed=True), (table, check, day, info)
                    assert info.is_current, (table, check, day, info)
            assert not [i for i in infos if i.partition_key is None], \
                f"{table}: check results stored without a partition: {infos}"
    finally:
        instance.dispose()
    record["seconds"] = round(time.monotonic() - started, 1)
    # Run counts and timings go to the JUnit XML (`--junitxml`), not to the output.
    for name in ("first", "second", "seconds", "reexecute_from_failure", "certificate"):
        request.node.user_properties.append((name, record.get(name)))
