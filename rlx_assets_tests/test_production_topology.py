"""Issue 15, part 3: the production topology, end to end on one machine.

Every piece runs as its own process, as in production:

- instance storage in PostgreSQL (`deploy/postgres/dagster.yaml`, a throwaway server on
  127.0.0.1, see `postgres_server.py`);
- the code location in a gRPC code server (`dagster code-server start`), and a workspace
  that is `deploy/workspace.yaml` with a free port: the webserver and the daemon connect to
  it and never import the code; runs are launched by the code server;
- `dagster-webserver` and `dagster-daemon run`;
- the vendor (`CRYPTO_LAKE_SOURCE=s3://qnt.data/market-data/cryptofeed`) and our lake
  (`RLX_LAKE_ROOT=s3://rlx-lake/prod`) as buckets on moto's S3 server on loopback;
- Slack as a loopback stand-in (`SLACK_WEBHOOK_URL`).

Two instruments x three days, one bad day (negative trade price, BTC-USDT 2024-01-02). A
backfill of all six table assets over the three days is launched with the UI's GraphQL
mutation; it completes (failed, for the bad day); the per-partition check status reads back
through GraphQL; the automation sensor issues the clean instrument's certificate (and its
`window_certified` check passes) and never the other's; the failing day produces exactly
one Slack message for `positive_prices`, naming instrument, table and partition.

The `new_vendor_days` sensor runs by default for an s3:// source and would request the same
days itself; it is stopped through GraphQL (the UI's toggle) before the backfill.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from rlx_assets.defs.keys import certificate_key, table_key
from rlx_assets.lib.checks import BLOCKING_CHECKS, POSITIVE_PRICES
from rlx_assets.lib.demo_faults import Fault
from rlx_assets.lib.instruments import Instrument
from rlx_assets_tests.dagster_servers import (
    ASSET_STATUS,
    GRPC_WORKSPACE_YAML,
    LAUNCH_BACKFILL,
    LOCATION,
    DagsterServers,
    dagster_servers,
    expand_ranges,
    wait_for_backfill,
)
from rlx_assets_tests.postgres_server import PostgresServer, running_postgres
from rlx_assets_tests.slack_stand_in import SlackStandIn
from rlx_assets_tests.stand_ins import BTC, VendorBucket

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[1]
PG_YAML = REPO / "deploy" / "postgres" / "dagster.yaml"
WORKSPACE = REPO / "deploy" / "workspace.yaml"
ETH = Instrument("BINANCE", "ETH-USDT")
INSTRUMENTS = (BTC, ETH)
TABLES = ("trades", "book", "book_delta_v2")
DAYS = [dt.date(2024, 1, 1), dt.date(2024, 1, 2), dt.date(2024, 1, 3)]
DAY_KEYS = [d.isoformat() for d in DAYS]
BAD = (BTC, "trades", dt.date(2024, 1, 2))  # negative price: positive_prices fails
LAKE_BUCKET, LAKE_PREFIX = "rlx-lake", "prod"
VENDOR_SOURCE = "s3://qnt.data/market-data/cryptofeed"

SENSOR = """
query Sensor($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    __typename
    ... on Sensor { id name sensorState { status } }
    ... on Error { message }
  }
}
"""

STOP_SENSOR = """
mutation Stop($id: String!) {
  stopSensor(id: $id) {
    __typename
    ... on StopSensorMutationResult { instigationState { status } }
    ... on PythonError { message }
    ... on Error { message }
  }
}
"""

CERTIFICATE = """
query Certificate($key: AssetKeyInput!) {
  assetOrError(assetKey: $key) {
    __typename
    ... on Asset { assetMaterializations(limit: 1) { runId timestamp } }
  }
  assetCheckExecutions(assetKey: $key, checkName: "window_certified", limit: 1) {
    status
    evaluation { success description }
  }
}
"""

RUNS_IN_FLIGHT = """
query InFlight {
  runsOrError(filter: {statuses: [QUEUED, NOT_STARTED, STARTING, STARTED, CANCELING]}) {
    __typename
    ... on Runs { count results { runId status } }
    ... on Error { message }
  }
}
"""


def is_bad(instrument: Instrument, table: str, day: str) -> bool:
    return (instrument, table, day) == (BAD[0], BAD[1], BAD[2].isoformat())


def wait_for(what: str, probe: Callable[[], Any], timeout: float, servers: DagsterServers,
             interval: float = 2.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        servers.assert_running(what)
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout:.0f} s.\n"
                         + servers.log_tail("daemon", 80) + "\n"
                         + servers.log_tail("code_server", 40))


@pytest.fixture
def postgres() -> Iterator[PostgresServer]:
    with running_postgres() as server:
        yield server


@pytest.fixture
def slack() -> Iterator[SlackStandIn]:
    with SlackStandIn() as stand_in:
        yield stand_in


def test_deploy_workspace_points_at_a_grpc_code_server() -> None:
    """The test's workspace is deploy/workspace.yaml with a free port instead of 4266."""
    assert yaml.safe_load(WORKSPACE.read_text()) == yaml.safe_load(
        GRPC_WORKSPACE_YAML.format(port=4266, location=LOCATION))


def test_production_topology_end_to_end(
    vendor_bucket: VendorBucket, postgres: PostgresServer, slack: SlackStandIn,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest,
) -> None:
    started = time.monotonic()
    timings: dict[str, float] = {}
    # Our lake's credentials come from the standard AWS chain, the vendor's from its own
    # variables (set by `vendor_bucket`, with AWS_ENDPOINT_URL pointing at moto).
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAOURLAKEKEY000001")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "our-lake-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    for name, value in postgres.env.items():  # dagster_servers creates the schema in-process
        monkeypatch.setenv(name, value)
    client = vendor_bucket.client
    client.create_bucket(Bucket=LAKE_BUCKET,
                         CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    for instrument in INSTRUMENTS:
        for table in TABLES:
            for day in DAYS:
                fault = Fault.NEGATIVE_PRICE if is_bad(instrument, table, day.isoformat()) \
                    else None
                vendor_bucket.publish(table, day, instrument, fault=fault, listing=False)
    vendor_bucket.refresh_listing()

    env = {
        **postgres.env,
        "CRYPTO_LAKE_SOURCE": VENDOR_SOURCE,
        "RLX_LAKE_ROOT": f"s3://{LAKE_BUCKET}/{LAKE_PREFIX}",
        "RLX_INSTRUMENTS": ",".join(str(i) for i in INSTRUMENTS),
        "RLX_START_DATE": DAY_KEYS[0],
        "RLX_END_DATE": DAY_KEYS[-1],
        "RLX_STEP_RETRIES": "0",
        "RLX_RETRY_DELAY_SECONDS": "0",
        "RLX_BACKFILL_DAYS_PER_RUN": str(len(DAYS)),
        "RLX_AUTOMATION_INTERVAL_SECONDS": "5",
        "RLX_ALERT_INTERVAL_SECONDS": "2",
        "RLX_SCRATCH_DIR": str(tmp_path / "scratch"),
        "RLX_CATALOG_PATH": str(tmp_path / "catalog" / "catalog.duckdb"),
        "SLACK_WEBHOOK_URL": slack.webhook_url,
    }
    home = tmp_path / "dagster_home"
    with dagster_servers(home, env, start_daemon=False, dagster_yaml=PG_YAML.read_text(),
                         code_server=True, ready_timeout=180) as servers:
        timings["servers_up"] = time.monotonic() - started
        # The webserver and the daemon load the location from the code server only.
        workspace = yaml.safe_load(servers.workspace.read_text())
        assert [list(e) for e in workspace["load_from"]] == [["grpc_server"]], workspace

        # The new_vendor_days sensor (running by default for an s3:// source) would request
        # these days itself; stop it as an operator does before a backfill, from the UI.
        sensor = servers.graphql(SENSOR, {"selector": {
            "repositoryLocationName": LOCATION, "repositoryName": "__repository__",
            "sensorName": "new_vendor_days"}})["sensorOrError"]
        assert sensor["__typename"] == "Sensor", sensor
        stopped = servers.graphql(STOP_SENSOR, {"id": sensor["id"]})["stopSensor"]
        assert stopped["__typename"] == "StopSensorMutationResult", stopped
        assert stopped["instigationState"]["status"] == "STOPPED", stopped

        # The backfill, as the UI launches it: all table assets of both instruments.
        launched = servers.graphql(LAUNCH_BACKFILL, {"params": {
            "assetSelection": [{"path": list(table_key(i, t).path)}
                               for i in INSTRUMENTS for t in TABLES],
            "partitionNames": DAY_KEYS,
            "fromFailure": False,
            "title": "production topology e2e",
        }})["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        backfill_id = launched["backfillId"]
        servers.start_daemon()  # its first backfill tick picks the backfill up at once

        backfill = wait_for_backfill(servers, backfill_id, timeout=300)
        timings["backfill_done"] = time.monotonic() - started
        assert backfill["status"] == "COMPLETED_FAILED", backfill
        counts = {tuple(s["assetKey"]["path"]): s
                  for s in backfill["assetBackfillData"]["assetBackfillStatuses"]}
        for instrument in INSTRUMENTS:
            for table in TABLES:
                c = counts[tuple(list(table_key(instrument, table).path))]
                bad_days = sum(is_bad(instrument, table, d) for d in DAY_KEYS)
                assert (c["numPartitionsTargeted"], c["numPartitionsFailed"],
                        c["numPartitionsMaterialized"]) == (3, bad_days, 3 - bad_days), c

        # Per-partition materialisation and check status, as the UI reads them.
        for instrument in INSTRUMENTS:
            for table in TABLES:
                node = servers.graphql(ASSET_STATUS, {"key": {
                    "path": list(table_key(instrument, table).path)}})["assetNodeOrError"]
                assert node["__typename"] == "AssetNode", node
                partitions = expand_ranges(node["assetPartitionStatuses"]["ranges"], DAY_KEYS)
                assert partitions == {d: "FAILED" if is_bad(instrument, table, d)
                                      else "MATERIALIZED" for d in DAY_KEYS}, \
                    (instrument, table, partitions)
                checks = {c["name"]: expand_ranges(c["partitionStatuses"]["ranges"], DAY_KEYS)
                          for c in node["assetChecksOrError"]["checks"]}
                for check in BLOCKING_CHECKS:
                    expected = {d: "FAILED" if is_bad(instrument, table, d)
                                and check == POSITIVE_PRICES else "SUCCEEDED"
                                for d in DAY_KEYS}
                    assert checks[check] == expected, (instrument, table, check, checks)

        # The automation sensor issues the clean instrument's certificate, on its own.
        def certificate(instrument: Instrument) -> dict[str, Any]:
            return servers.graphql(CERTIFICATE, {"key": {
                "path": list(certificate_key(instrument).path)}})

        def issued() -> dict[str, Any] | None:
            data = certificate(ETH)
            asset, executions = data["assetOrError"], data["assetCheckExecutions"]
            if asset["__typename"] != "Asset" or not asset["assetMaterializations"]:
                return None
            if not executions or executions[0]["status"] != "SUCCEEDED":
                return None
            return data

        eth = wait_for("the ETH-USDT certificate from the automation sensor", issued, 150,
                       servers)
        timings["certificate_issued"] = time.monotonic() - started
        assert eth["assetCheckExecutions"][0]["evaluation"]["success"] is True, eth
        certificates = [o["Key"] for o in client.list_objects_v2(
            Bucket=LAKE_BUCKET, Prefix=f"{LAKE_PREFIX}/certificates/").get("Contents", [])]
        certificate_file = \
            f"{LAKE_PREFIX}/certificates/{ETH.slug}_{DAY_KEYS[0]}_{DAY_KEYS[-1]}.json"
        assert certificate_file in certificates, certificates

        # One Slack message for the failing (instrument, table, check, partition).
        def positive_price_alerts() -> list[str]:
            return [t for t in slack.texts() if f"`{POSITIVE_PRICES}`" in t]

        wait_for("the positive_prices Slack alert", positive_price_alerts, 60, servers, 1.0)
        time.sleep(8)  # a few more alert ticks (every 2 s): nothing is repeated
        alerts = positive_price_alerts()
        assert len(alerts) == 1, slack.texts()
        assert f"`{POSITIVE_PRICES}` on *BINANCE:BTC-USDT* `trades`, partition *2024-01-02*" \
            in alerts[0], alerts
        assert "price is null or not positive" in alerts[0], alerts
        # No other check failed anywhere (the consistency asset's WARN checks included).
        assert [t for t in slack.texts() if "Check failed" in t] == alerts, slack.texts()
        # Failed runs are alerted too; a check failure alone is not a run alert. The only
        # run that may fail is the DuckDB catalog's: views over s3:// need DuckDB's httpfs
        # extension, which cannot be installed offline (see the README's production table).
        runs_failed = [t for t in slack.texts() if "Run failed" in t]
        assert all("`duckdb_catalog`" in t and "httpfs" in t for t in runs_failed), runs_failed

        # The bad instrument's certificate is never issued.
        btc = certificate(BTC)["assetOrError"]
        assert btc["__typename"] != "Asset" or not btc["assetMaterializations"], btc
        assert not [k for k in certificates if BTC.slug in k], certificates

        # Let the automation's own runs (e.g. the consistency asset) end before stopping.
        def idle() -> bool:
            runs = servers.graphql(RUNS_IN_FLIGHT)["runsOrError"]
            return runs["__typename"] == "Runs" and runs["count"] == 0

        wait_for("runs in flight to end", idle, 120, servers)

    # Everything was stored in PostgreSQL; no SQLite database under DAGSTER_HOME.
    assert not list(home.rglob("*.db")), list(home.rglob("*.db"))
    assert postgres.scalar("SELECT count(*) FROM bulk_actions WHERE key = %s",
                           backfill_id) == 1
    assert postgres.scalar(
        "SELECT count(*) FROM asset_check_executions WHERE check_name = %s AND partition = %s "
        "AND execution_status = 'FAILED'", POSITIVE_PRICES, BAD[2].isoformat()) >= 1
    assert postgres.scalar("SELECT count(*) FROM runs") >= 2  # backfill + certificate runs
    timings["total"] = time.monotonic() - started
    for name, seconds in timings.items():
        request.node.user_properties.append((name, round(seconds, 1)))
    print("timings:", {k: round(v, 1) for k, v in timings.items()}, "slack:", slack.texts())
