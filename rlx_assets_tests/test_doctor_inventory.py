"""Issue 9: `rlx-assets doctor`, `rlx-assets inventory`, the `vendor_inventory` asset and the
`new_vendor_days` sensor, against moto's S3 server in the vendor layout and a local demo lake."""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from pathlib import Path

import dagster as dg
import pytest

from rlx_assets.cli import main
from rlx_assets.definitions import build_definitions
from rlx_assets.defs.inventory import INVENTORY_KEY, crypto_lake_from_env
from rlx_assets.defs.new_days import SENSOR_NAME, build_new_days_sensor
from rlx_assets.defs.resources import CryptoLakeResource
from rlx_assets.lib.day_record import DayRecord, VendorStamp
from rlx_assets.lib.demo_data import vendor_relpath, write_day
from rlx_assets.lib.demo_faults import Fault
from rlx_assets.lib.inventory import day_ranges, format_bytes, republished
from rlx_assets.lib.vendor import VendorObject
from rlx_assets.settings import ConfigError
from rlx_assets_tests.conftest import materialize_day, settings_for
from rlx_assets_tests.faulty_proxy import faulty_proxy
from rlx_assets_tests.stand_ins import BTC, FAKE_KEY_ID, FAKE_SECRET, VendorBucket, free_port

WINDOW = {"RLX_START_DATE": "2024-01-01", "RLX_END_DATE": "2024-01-04"}
TRADES = dg.AssetKey(["binance", "btc_usdt", "trades"])
SMALL = 500  # rows: enough for a valid parquet file, fast to write (fails the hole check)
STEPS = ["Source", "Credentials", "Endpoint", "Discovery", "Object", "Lake root",
         "Dagster instance"]
LOCAL_STEPS = [*STEPS[:2], "Vendor directory", *STEPS[3:]]


def day(n: int) -> dt.date:
    return dt.date(2024, 1, n)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "dagster_home"
    path.mkdir()
    (path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(path))
    return path


def setenv(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def doctor(capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = main(["doctor"])
    return code, capsys.readouterr().out.splitlines()


def demo_lake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **extra: str) -> Path:
    vendor = tmp_path / "vendor"
    write_day(vendor, "trades", BTC, day(1), rows=SMALL)
    setenv(monkeypatch, {"CRYPTO_LAKE_SOURCE": str(vendor), "RLX_LAKE_ROOT": str(tmp_path / "lake"),
                         **WINDOW, **extra})
    return vendor


# --- doctor --------------------------------------------------------------------------------

def test_doctor_passes_on_the_demo_lake(tmp_path, monkeypatch, capsys, home) -> None:
    demo_lake(tmp_path, monkeypatch)
    code, lines = doctor(capsys)
    assert code == 0, lines
    assert [line.split(":")[0] for line in lines] == [f"ok    {s}" for s in LOCAL_STEPS]
    assert "trades 1, book 0, book_delta_v2 0" in lines[3]
    assert "dt=2024-01-01/1.snappy.parquet: a complete parquet file" in lines[4]
    assert (tmp_path / "lake").is_dir()
    assert str(home) in lines[6]


@pytest.mark.parametrize(("source", "how"), [
    ("lakeapi", "via the vendor's contents.json.gz"),
    ("s3://qnt.data/market-data/cryptofeed", "via listing the bucket"),
])
def test_doctor_passes_against_the_s3_stand_in(vendor_bucket: VendorBucket, tmp_path, monkeypatch,
                                               capsys, home, source, how) -> None:
    for table in ("trades", "book", "book_delta_v2"):
        vendor_bucket.publish(table, day(2), rows=SMALL, listing=table == "book_delta_v2")
    vendor_bucket.publish("trades", day(3), rows=SMALL)
    setenv(monkeypatch, {"CRYPTO_LAKE_SOURCE": source, "RLX_LAKE_ROOT": str(tmp_path / "lake"),
                         **WINDOW})
    code, lines = doctor(capsys)
    assert code == 0, lines
    assert [line.split(":")[0] for line in lines] == [f"ok    {s}" for s in STEPS]
    assert "aws_access_key_id and aws_secret_access_key set (values not shown)" in lines[1]
    assert f"Endpoint: {vendor_bucket.endpoint} answered" in lines[2]
    assert f"{how}: BINANCE:BTC-USDT trades 2, book 1, book_delta_v2 1." in lines[3]
    assert ("s3://qnt.data/market-data/cryptofeed/" + vendor_relpath("trades", BTC, day(3))
            + ": a complete parquet file") in lines[4]
    output = "\n".join(lines)
    assert FAKE_SECRET not in output and FAKE_KEY_ID not in output


@pytest.mark.parametrize(("present", "sentence"), [
    ({}, "Credentials: none found for CRYPTO_LAKE_SOURCE=lakeapi; set aws_access_key_id and "
         "aws_secret_access_key (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"),
    ({"AWS_ACCESS_KEY_ID": FAKE_KEY_ID}, "Credentials: AWS_ACCESS_KEY_ID is set but "
                                         "aws_secret_access_key (or AWS_SECRET_ACCESS_KEY) is not"),
])
def test_doctor_names_missing_credentials(tmp_path, monkeypatch, capsys, home, present,
                                          sentence) -> None:
    setenv(monkeypatch, {"CRYPTO_LAKE_SOURCE": "lakeapi", **present, **WINDOW})
    code, lines = doctor(capsys)
    assert code == 1
    assert len(lines) == 2 and lines[0].startswith("ok    Source")  # stopped at the failure
    assert lines[1].startswith(f"FAIL  {sentence}"), lines[1]
    assert FAKE_KEY_ID not in lines[1]


def test_doctor_fails_fast_on_an_unreachable_endpoint(vendor_bucket, monkeypatch, capsys,
                                                      home) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    setenv(monkeypatch, {"CRYPTO_LAKE_SOURCE": "lakeapi", "AWS_ENDPOINT_URL": closed, **WINDOW})
    started = time.monotonic()
    code, lines = doctor(capsys)
    assert time.monotonic() - started < 10
    assert code == 1 and len(lines) == 3
    assert lines[2].startswith(f"FAIL  Endpoint: cannot reach {closed} "
                               "(EndpointConnectionError); check the network"), lines[2]


def test_doctor_reports_a_missing_listing_file(vendor_bucket: VendorBucket, monkeypatch, capsys,
                                               home, tmp_path) -> None:
    for table in ("trades", "book", "book_delta_v2"):
        vendor_bucket.publish(table, day(1), rows=SMALL, listing=False)
    setenv(monkeypatch, {"CRYPTO_LAKE_SOURCE": "lakeapi", "RLX_LAKE_ROOT": str(tmp_path / "l"),
                         **WINDOW})
    # With s3:ListBucket, discovery works without the listing file (lakeapi lists too).
    code, lines = doctor(capsys)
    assert code == 0, lines
    assert ("trades/contents.json.gz, book/contents.json.gz, book_delta_v2/contents.json.gz "
            "missing, found by listing the bucket instead") in lines[3]
    # Without it (the usual vendor key), nothing can be found: the doctor says why.
    with faulty_proxy(vendor_bucket.endpoint) as proxy:
        proxy.deny_list_bucket = True
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        code, lines = doctor(capsys)
        assert code == 1 and len(lines) == 4
        assert lines[3].startswith(
            "FAIL  Discovery: s3://qnt.data/market-data/cryptofeed/trades/contents.json.gz is "
            "missing and listing s3://qnt.data/market-data/cryptofeed/trades/exchange=BINANCE/"
            "symbol=BTC-USDT/ is denied (no s3:ListBucket)"), lines[3]
        # Once the vendor publishes the listing, a key without s3:ListBucket is enough.
        vendor_bucket.refresh_listing()
        code, lines = doctor(capsys)
        assert code == 0, lines
        assert "via the vendor's contents.json.gz" in lines[3]


def test_doctor_fails_on_an_unwritable_lake_root(tmp_path, monkeypatch, capsys, home) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("in the way")
    demo_lake(tmp_path, monkeypatch, RLX_LAKE_ROOT=str(blocker / "lake"))
    code, lines = doctor(capsys)
    assert code == 1 and len(lines) == 6
    assert lines[5].startswith(f"FAIL  Lake root: Cannot write to {blocker / 'lake'}"), lines[5]
    assert "point RLX_LAKE_ROOT at a writable directory" in lines[5]


@pytest.mark.parametrize(("extra", "steps", "sentence"), [
    ({"CRYPTO_LAKE_SOURCE": "ftp://vendor/data"}, 1,
     "Configuration: CRYPTO_LAKE_SOURCE='ftp://vendor/data' is not a known source"),
    ({"CRYPTO_LAKE_SOURCE": "/no/such/vendor/dir"}, 3,
     "Vendor directory: /no/such/vendor/dir does not exist; run `rlx-assets demo`"),
    ({"RLX_INSTRUMENTS": "BINANCE:ETH-USDT"}, 4,
     "Discovery: no vendor files for BINANCE:ETH-USDT in trades, book, book_delta_v2"),
    ({"DAGSTER_HOME": "/no/such/dagster_home"}, 7,
     "Dagster instance: DAGSTER_HOME=/no/such/dagster_home is not usable"),
])
def test_doctor_stops_at_the_first_failure(tmp_path, monkeypatch, capsys, home, extra, steps,
                                           sentence) -> None:
    demo_lake(tmp_path, monkeypatch, **extra)
    code, lines = doctor(capsys)
    assert code == 1 and len(lines) == steps, lines
    assert all(line.startswith("ok ") for line in lines[:-1])
    assert lines[-1].startswith(f"FAIL  {sentence}"), lines[-1]


def test_doctor_reads_the_parquet_footer(tmp_path, monkeypatch, capsys, home) -> None:
    vendor = demo_lake(tmp_path, monkeypatch)
    target = vendor / vendor_relpath("trades", BTC, day(1))
    target.write_bytes(target.read_bytes()[:-100])  # cut short: no footer
    code, lines = doctor(capsys)
    assert code == 1 and len(lines) == 5
    assert lines[4].startswith(f"FAIL  Object: {target} does not end in the parquet magic bytes "
                               "PAR1"), lines[4]


# --- inventory -----------------------------------------------------------------------------

def test_list_days_agrees_across_sources_and_with_locate(vendor_bucket: VendorBucket,
                                                         monkeypatch) -> None:
    for n in (1, 2, 4):
        vendor_bucket.publish("trades", day(n), rows=SMALL)
    settings = {}
    for name, source in (("lakeapi", "lakeapi"), ("s3", "s3://qnt.data/market-data/cryptofeed"),
                         ("local", str(vendor_bucket.staging))):
        settings[name] = crypto_lake_from_env(settings_for({"CRYPTO_LAKE_SOURCE": source})).vendor()
    listed = {name: source.list_days("trades", BTC, day(1), day(4))
              for name, source in settings.items()}
    for name, days in listed.items():
        assert sorted(days) == [day(1), day(2), day(4)], name
        for d, obj in days.items():
            located = settings[name].locate("trades", BTC, d)
            assert (obj.location, obj.size, obj.version) == \
                (located.location, located.size, located.version), (name, d)
    assert listed["lakeapi"] == listed["s3"]
    assert {d: o.size for d, o in listed["local"].items()} == \
        {d: o.size for d, o in listed["s3"].items()}
    # The window bounds are inclusive; without sizes lakeapi makes no HEAD requests.
    assert sorted(settings["s3"].list_days("trades", BTC, day(2), day(3))) == [day(2)]
    bare = settings["lakeapi"].list_days("trades", BTC, day(2), day(4), sizes=False)
    assert sorted(bare) == [day(2), day(4)] and {o.size for o in bare.values()} == {-1}


def test_inventory_reports_vendor_holes_and_unfetched_days(vendor_bucket: VendorBucket, tmp_path,
                                                           monkeypatch, capsys) -> None:
    for n in (1, 2, 4):
        vendor_bucket.publish("trades", day(n))
    env = {"CRYPTO_LAKE_SOURCE": "lakeapi", "RLX_LAKE_ROOT": str(tmp_path / "lake"), **WINDOW}
    instance = dg.DagsterInstance.ephemeral()
    assert materialize_day(env, "trades", day(1), instance).success
    setenv(monkeypatch, env)
    monkeypatch.setattr("dagster.DagsterInstance.get", lambda: instance)

    # All tables: book and book_delta_v2 have no listing file, so lakeapi warns (on stdout,
    # which must stay clean JSON) and lists the bucket instead.
    assert main(["inventory", "--json", "--sizes"]) == 0
    captured = capsys.readouterr()
    assert "using slower method" in captured.err  # lakeapi's warning, moved off stdout
    report = json.loads(captured.out)
    assert {d["state"] for d in report["days"] if d["table"] != "trades"} == {"vendor_hole"}
    report["days"] = [d for d in report["days"] if d["table"] == "trades"]
    states = {d["day"]: d["state"] for d in report["days"]}
    assert states == {"2024-01-01": "ready", "2024-01-02": "not_fetched",
                      "2024-01-03": "vendor_hole", "2024-01-04": "not_fetched"}
    sizes = {d["day"]: d["vendor_bytes"] for d in report["days"]}
    for n in (1, 2, 4):
        head = vendor_bucket.client.head_object(
            Bucket="qnt.data", Key=vendor_bucket.key(vendor_relpath("trades", BTC, day(n))))
        assert sizes[day(n).isoformat()] == head["ContentLength"]
        assert head["ETag"].strip('"') in {d["vendor_version"] for d in report["days"]}
    assert sizes["2024-01-03"] is None
    assert (report["vendor_days"], report["not_fetched"], report["vendor_holes"]) == (3, 2, 9)

    assert main(["inventory", "--table", "trades"]) == 0
    text = capsys.readouterr().out
    assert "BINANCE:BTC-USDT trades: vendor has 3 of 4 days (?)" in text

    def line(state: str) -> str:
        return next(x.strip() for x in text.splitlines() if x.strip().startswith(state))

    assert line("ready").endswith("1 day           ?  2024-01-01")
    assert line("not fetched").endswith("2 days           ?  2024-01-02, 2024-01-04")
    assert line("vendor hole").endswith("1 day           -  2024-01-03")
    assert "add --sizes" in text


def test_vendor_inventory_asset_shows_the_table_in_the_ui(tmp_path) -> None:
    vendor = tmp_path / "vendor"
    for n in (1, 2, 4):
        write_day(vendor, "trades", BTC, day(n), rows=None if n == 1 else SMALL)
    env = {"CRYPTO_LAKE_SOURCE": str(vendor), "RLX_LAKE_ROOT": str(tmp_path / "lake"), **WINDOW}
    instance = dg.DagsterInstance.ephemeral()
    assert materialize_day(env, "trades", day(1), instance).success
    defs = build_definitions(settings_for(env))
    asset = defs.get_assets_def(INVENTORY_KEY)
    assert asset.group_names_by_key[INVENTORY_KEY] == "lake"
    result = dg.materialize([asset], instance=instance, resources=defs.resources)
    meta = result.asset_materializations_for_node("vendor_inventory")[0].metadata
    trades = meta["BINANCE:BTC-USDT trades"].value
    assert trades.startswith("**vendor has 3 of 4 days (")
    assert "| ready | 1 |" in trades and "| 2024-01-01 |" in trades
    assert "| not fetched | 2 |" in trades and "| 2024-01-02, 2024-01-04 |" in trades
    assert "| vendor hole | 1 | - | 2024-01-03 |" in trades
    assert "| vendor hole | 4 | - | 2024-01-01..2024-01-04 |" in meta["BINANCE:BTC-USDT book"].value
    assert meta["not_fetched"].value == 2 and meta["vendor_holes"].value == 9
    sizes = sum((vendor / vendor_relpath("trades", BTC, day(n))).stat().st_size for n in (1, 2, 4))
    assert meta["vendor_size"].value == format_bytes(sizes)
    assert re.fullmatch(r"[\d.]+ MB", meta["vendor_size"].value)


@pytest.mark.parametrize(("days", "text"), [
    ([1, 2, 3, 5], "2024-01-01..2024-01-03, 2024-01-05"),
    ([4], "2024-01-04"),
    ([], ""),
])
def test_day_ranges(days, text) -> None:
    assert day_ranges([day(n) for n in days]) == text


def _obj(size: int, version: str) -> VendorObject:
    return VendorObject("trades", BTC, day(1), "s3://b/k", size, version)


def Recorded(version: str | None, size: int | None) -> VendorStamp:  # noqa: N802
    return DayRecord(day(1), "ready", 1, None, None, "", "", "", 0, vendor_version=version,
                     vendor_bytes=size).vendor_stamp


@pytest.mark.parametrize(("obj", "recorded", "changed"), [
    (_obj(10, "a"), None, False),
    (_obj(10, "a"), Recorded("a", 10), False),
    (_obj(10, "b"), Recorded("a", 10), True),  # same size, new etag
    (_obj(11, ""), Recorded(None, 10), True),  # no etags: sizes decide
    (_obj(-1, ""), Recorded("a", 10), False),  # nothing known: no spurious re-download
])
def test_republished(obj, recorded, changed) -> None:
    assert republished(obj, recorded) is changed


# --- the new-days sensor -------------------------------------------------------------------

def _etag(bucket: VendorBucket, n: int) -> str:
    key = bucket.key(vendor_relpath("trades", BTC, day(n)))
    return bucket.client.head_object(Bucket=bucket.bucket, Key=key)["ETag"].strip('"')


def test_new_days_sensor_requests_each_vendor_version_once(vendor_bucket: VendorBucket,
                                                           tmp_path) -> None:
    env = {"CRYPTO_LAKE_SOURCE": "lakeapi", "RLX_LAKE_ROOT": str(tmp_path / "lake"), **WINDOW}
    defs = build_definitions(settings_for(env))
    sensor = defs.resolve_sensor_def(SENSOR_NAME)
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.minimum_interval_seconds == 3600
    instance = dg.DagsterInstance.ephemeral()
    cursor = None

    def tick() -> list[dg.RunRequest]:
        nonlocal cursor
        result = sensor(dg.build_sensor_context(instance=instance, cursor=cursor,
                                                definitions=defs, resources=defs.resources))
        cursor = result.cursor
        return list(result.run_requests or [])

    assert tick() == []  # nothing published yet
    vendor_bucket.publish("trades", day(2), rows=SMALL)
    [request] = tick()
    first = _etag(vendor_bucket, 2)
    assert request.run_key == f"binance/btc_usdt/trades:2024-01-02:{first}"
    assert request.partition_key == "2024-01-02" and request.asset_selection == [TRADES]
    assert tick() == []  # requested once: not again while in flight or after

    vendor_bucket.publish("trades", day(2), rows=SMALL + 1)  # re-published: a new etag
    [again] = tick()
    second = _etag(vendor_bucket, 2)
    assert second != first and again.run_key == f"binance/btc_usdt/trades:2024-01-02:{second}"
    assert tick() == []

    # A day materialised from the vendor's current version is not requested ...
    vendor_bucket.publish("trades", day(1))
    assert materialize_day(env, "trades", day(1), instance).success
    assert tick() == []
    # ... until the vendor re-publishes it.
    vendor_bucket.publish("trades", day(1), rows=SMALL)
    [changed] = tick()
    assert changed.run_key == f"binance/btc_usdt/trades:2024-01-01:{_etag(vendor_bucket, 1)}"
    assert tick() == []

    # A quarantined day is recorded too (an observation with its vendor version): it is not
    # requested again, even by a sensor that lost its cursor, until the vendor re-publishes.
    vendor_bucket.publish("trades", day(3), rows=SMALL, fault=Fault.NEGATIVE_PRICE)
    assert not materialize_day(env, "trades", day(3), instance).success
    cursor = None
    assert "2024-01-03" not in [r.partition_key for r in tick()]
    vendor_bucket.publish("trades", day(3), rows=SMALL)
    assert [r.partition_key for r in tick()] == ["2024-01-03"]


def test_new_days_sensor_defaults_interval_and_per_tick_limit(tmp_path) -> None:
    vendor = tmp_path / "vendor"
    for n in (1, 2, 3, 4):
        write_day(vendor, "trades", BTC, day(n), rows=10)
    local = settings_for({"CRYPTO_LAKE_SOURCE": str(vendor), **WINDOW})
    assert build_definitions(local).resolve_sensor_def(SENSOR_NAME).default_status == \
        dg.DefaultSensorStatus.STOPPED
    for real in ("sample", "s3://mirror/market-data"):
        sensor = build_new_days_sensor(settings_for({"CRYPTO_LAKE_SOURCE": real}))
        assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    local_with = lambda env: settings_for({"CRYPTO_LAKE_SOURCE": str(vendor), **WINDOW, **env})  # noqa: E731
    assert build_new_days_sensor(local_with({"RLX_NEW_DAYS_INTERVAL_SECONDS": "120"})) \
        .minimum_interval_seconds == 120
    with pytest.raises(ConfigError, match="RLX_NEW_DAYS_INTERVAL_SECONDS='0' is not a whole"):
        build_new_days_sensor(local_with({"RLX_NEW_DAYS_INTERVAL_SECONDS": "0"}))

    sensor = build_new_days_sensor(local_with({"RLX_NEW_DAYS_MAX_PER_TICK": "3"}))
    instance, cursor, seen = dg.DagsterInstance.ephemeral(), None, []
    for expected in (["2024-01-04", "2024-01-03", "2024-01-02"], ["2024-01-01"], []):
        result = sensor(dg.build_sensor_context(
            instance=instance, cursor=cursor,
            resources={"crypto_lake": CryptoLakeResource(source=str(vendor))}))
        cursor = result.cursor
        keys = [r.partition_key for r in result.run_requests or []]
        assert keys == expected
        seen += keys
    assert sorted(seen) == [d.isoformat() for d in map(day, (1, 2, 3, 4))]


# --- the demo (the README's first command) ---------------------------------------------------

def test_the_demo_backfills_certifies_and_takes_the_inventory(tmp_path, monkeypatch, capsys,
                                                               home) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("CRYPTO_LAKE_SOURCE", "RLX_LAKE_ROOT", "RLX_START_DATE", "RLX_END_DATE"):
        monkeypatch.delenv(name, raising=False)
    assert main(["demo", "--days", "2", "--bad-day"]) == 1  # a check failed: exit status 1
    out = capsys.readouterr().out
    assert "Checks: 35 of 36 passed" in out, out
    assert "- trades 2024-01-02: quarantined (positive_prices failed)" in out, out
    inventory = dg.DagsterInstance.get().get_latest_materialization_event(INVENTORY_KEY)
    assert inventory is not None, "the demo leaves vendor_inventory unmaterialised"
    metadata = inventory.asset_materialization.metadata
    assert (metadata["ready"].value, metadata["not_fetched"].value) == (5, 0), metadata
