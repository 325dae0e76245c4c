"""Issue 8: an `s3://` lake root end to end against moto's S3 server on loopback.

The vendor is the moto bucket in Crypto Lake's layout (read through lakeapi and boto3) and
the lake is another bucket on the same server. raw/, ready/, quarantine/ and certificates/
are objects; the machine keeps nothing between runs (the scratch directory can be wiped and
the next run reuses the raw copy from the bucket).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest

from rlx_assets.definitions import build_definitions
from rlx_assets.defs.catalog import CATALOG_KEY
from rlx_assets.defs.keys import certificate_key
from rlx_assets.defs.status import collect_states
from rlx_assets.lib.catalog import connect_to_lake
from rlx_assets.lib.demo_data import DEMO_ROWS
from rlx_assets.lib.demo_faults import Fault
from rlx_assets.lib.lake import Lake, LakeError
from rlx_assets.lib.tables import TABLES
from rlx_assets_tests.conftest import materialize_day, settings_for
from rlx_assets_tests.stand_ins import BTC, VendorBucket

LAKE_BUCKET, LAKE_PREFIX = "rlx-lake", "prod"
DAY, BAD_DAY = dt.date(2024, 1, 2), dt.date(2024, 1, 3)
PREFIX = "binance/btc_usdt"


def httpfs_available() -> bool:
    try:
        duckdb.connect().execute("INSTALL httpfs; LOAD httpfs")
    except duckdb.Error:
        return False
    return True


def folder(zone: str, table: str, day: dt.date) -> str:
    return f"{LAKE_PREFIX}/{zone}/{table}/exchange=BINANCE/symbol=BTC-USDT/dt={day}/"


class S3Lake:
    def __init__(self, bucket: VendorBucket, scratch: Path) -> None:
        self.vendor, self.client, self.scratch = bucket, bucket.client, scratch
        self.client.create_bucket(
            Bucket=LAKE_BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        self.env = {"CRYPTO_LAKE_SOURCE": "lakeapi",
                    "RLX_LAKE_ROOT": f"s3://{LAKE_BUCKET}/{LAKE_PREFIX}"}
        self.instance = dg.DagsterInstance.ephemeral()

    def keys(self, prefix: str = "") -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=LAKE_BUCKET, Prefix=f"{LAKE_PREFIX}/{prefix}")
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def read(self, key: str) -> bytes:
        return self.client.get_object(Bucket=LAKE_BUCKET, Key=key)["Body"].read()

    def materialize(self, table: str, day: dt.date, **kwargs) -> dg.ExecuteInJobResult:
        return materialize_day(self.env, table, day, self.instance, **kwargs)

    def metadata(self, table: str, day: dt.date) -> dict[str, object]:
        record = self.instance.fetch_materializations(dg.AssetRecordsFilter(
            asset_key=dg.AssetKey.from_user_string(f"{PREFIX}/{table}"),
            asset_partitions=[day.isoformat()]), limit=1).records[0]
        return {k: v.value for k, v in record.asset_materialization.metadata.items()}

    def local_files(self) -> list[Path]:
        """Files the runs left on this machine, apart from the (empty) partition lock files."""
        if not self.scratch.exists():
            return []
        return [p for p in self.scratch.rglob("*") if p.is_file() and p.parent.name != "_locks"]


@pytest.fixture
def s3_lake(vendor_bucket: VendorBucket, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> S3Lake:
    # Our bucket's credentials come from the standard AWS chain, the vendor's from its own
    # variables (set by `vendor_bucket`).
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAOURLAKEKEY000001")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "our-lake-secret")
    monkeypatch.setenv("RLX_SCRATCH_DIR", str(tmp_path / "scratch"))
    monkeypatch.setenv("RLX_CATALOG_PATH", str(tmp_path / "catalog" / "catalog.duckdb"))
    return S3Lake(vendor_bucket, tmp_path / "scratch")


def test_raw_ready_and_quarantine_are_objects_in_the_lake_bucket(s3_lake: S3Lake) -> None:
    s3_lake.vendor.publish("trades", DAY)
    s3_lake.vendor.publish("trades", BAD_DAY, fault=Fault.NEGATIVE_PRICE)
    assert s3_lake.materialize("trades", DAY).success
    assert not s3_lake.materialize("trades", BAD_DAY).success  # positive_prices fails

    raw_key = folder("raw", "trades", DAY) + "1.snappy.parquet"
    vendor_file = s3_lake.vendor.staging / "trades/exchange=BINANCE/symbol=BTC-USDT" \
        / f"dt={DAY}/1.snappy.parquet"
    assert s3_lake.read(raw_key) == vendor_file.read_bytes(), "raw/ holds the vendor's bytes"
    assert raw_key + ".json" in s3_lake.keys("raw/")

    ready_key = folder("ready", "trades", DAY) + "data.parquet"
    ready = s3_lake.read(ready_key)
    frame = pl.read_parquet(io.BytesIO(ready))
    assert frame.height == DEMO_ROWS["trades"]
    assert frame.schema["origin_time"] == pl.Datetime("ns", "UTC")
    meta = s3_lake.metadata("trades", DAY)
    assert meta["path"] == f"s3://{LAKE_BUCKET}/{ready_key}"
    assert meta["sha256"] == hashlib.sha256(ready).hexdigest()
    assert meta["bytes"] == len(ready)
    head = s3_lake.client.head_object(Bucket=LAKE_BUCKET, Key=ready_key)
    assert meta["version"] == head["ETag"].strip('"')

    assert s3_lake.keys("quarantine/") == [folder("quarantine", "trades", BAD_DAY)
                                           + "data.parquet"]
    assert not s3_lake.keys(f"ready/trades/exchange=BINANCE/symbol=BTC-USDT/dt={BAD_DAY}/")
    assert folder("raw", "trades", BAD_DAY) + "1.snappy.parquet" in s3_lake.keys("raw/")
    assert s3_lake.local_files() == [], "nothing is left on the machine"

    # The vendor fixes the day: the partition moves from quarantine/ to ready/.
    s3_lake.vendor.publish("trades", BAD_DAY)
    assert s3_lake.materialize("trades", BAD_DAY).success
    assert not s3_lake.keys("quarantine/")
    assert folder("ready", "trades", BAD_DAY) + "data.parquet" in s3_lake.keys("ready/")


def test_a_fresh_machine_reuses_the_raw_copy_in_the_bucket(s3_lake: S3Lake) -> None:
    s3_lake.vendor.publish("book", DAY)
    assert s3_lake.materialize("book", DAY).success
    first = s3_lake.metadata("book", DAY)
    assert first["download_attempts"] == 1 and not first["raw_reused"]

    shutil.rmtree(s3_lake.scratch)  # another machine: no local state at all
    assert s3_lake.materialize("book", DAY).success
    again = s3_lake.metadata("book", DAY)
    assert again["raw_reused"] and again["download_attempts"] == 0
    assert again["sha256"] == first["sha256"], "the same vendor bytes give the same file"

    # Re-checking from raw/ needs no vendor at all.
    for key in s3_lake.vendor.client.list_objects_v2(Bucket="qnt.data")["Contents"]:
        s3_lake.vendor.client.delete_object(Bucket="qnt.data", Key=key["Key"])
    shutil.rmtree(s3_lake.scratch)
    recheck = s3_lake.materialize("book", DAY, run_config={"ops": {
        "binance__btc_usdt__book": {"config": {"from_raw": True}}}})
    assert recheck.success
    assert s3_lake.local_files() == []


def test_certificate_and_status_read_the_bucket(s3_lake: S3Lake) -> None:
    days = [DAY, BAD_DAY]
    for table in TABLES:
        for day in days:
            s3_lake.vendor.publish(table, day, listing=False)
    s3_lake.vendor.refresh_listing()
    env = {**s3_lake.env, "RLX_START_DATE": str(DAY), "RLX_END_DATE": str(BAD_DAY)}
    defs = build_definitions(settings_for(env))
    for day in days:
        result = dg.materialize(
            [defs.get_assets_def(dg.AssetKey.from_user_string(f"{PREFIX}/{t}")) for t in TABLES],
            partition_key=day.isoformat(), resources=defs.resources, instance=s3_lake.instance)
        assert result.success

    states = collect_states(s3_lake.instance, settings_for(env))
    assert {s.state for s in states} == {"ready"} and len(states) == 6

    certify = [defs.get_assets_def(certificate_key(BTC))]
    assert dg.materialize(certify, resources=defs.resources, instance=s3_lake.instance).success
    [key] = s3_lake.keys("certificates/")
    assert key == f"{LAKE_PREFIX}/certificates/binance_btc_usdt_{DAY}_{BAD_DAY}.json"
    assert b'"content_sha256"' in s3_lake.read(key)

    # The DuckDB catalog (a local file) has views over the bucket, read through DuckDB's
    # httpfs; where that extension cannot be installed (no internet here), the asset fails
    # with one sentence saying so.
    catalog = dg.materialize([defs.get_assets_def(CATALOG_KEY)], resources=defs.resources,
                             instance=s3_lake.instance, raise_on_error=False)
    if httpfs_available():
        assert catalog.success
        lake = Lake.at(env["RLX_LAKE_ROOT"])
        with duckdb.connect(str(lake.catalog_path), read_only=True) as conn:
            connect_to_lake(conn, lake)
            per_day = conn.execute("select dt, count(*) from binance_btc_usdt_trades "
                                   "group by dt order by dt").fetchall()
        assert per_day == [(day, DEMO_ROWS["trades"]) for day in days]
    else:
        [failure] = catalog.get_step_failure_events()
        text = failure.step_failure_data.user_failure_data.description
        assert text.startswith(f"DuckDB cannot load its httpfs extension, which views over "
                               f"s3://{LAKE_BUCKET}/{LAKE_PREFIX} need"), text

    # Someone overwrites a ready object: the certificate is refused, naming it.
    ready_key = folder("ready", "book", DAY) + "data.parquet"
    s3_lake.client.put_object(Bucket=LAKE_BUCKET, Key=ready_key, Body=b"not the data")
    refused = dg.materialize(certify, resources=defs.resources, instance=s3_lake.instance,
                             raise_on_error=False)
    assert not refused.success
    [failure] = refused.get_step_failure_events()
    text = failure.step_failure_data.user_failure_data.description
    assert f"book {DAY}: ready object s3://{LAKE_BUCKET}/{ready_key} changed" in text
    # The withdrawn certificate is kept under history/, saying why; an S3 lake keeps no
    # verification records (size and ETag from a HEAD need none).
    [kept] = s3_lake.keys("certificates/")
    assert kept.startswith(f"{LAKE_PREFIX}/certificates/history/binance_btc_usdt_{DAY}_"
                           f"{BAD_DAY}.") and kept.endswith(".withdrawn.json")
    assert b'"reason": "refused on re-issue: book' in s3_lake.read(kept)
    assert s3_lake.keys("_verified/") == []


def test_a_missing_lake_bucket_fails_with_one_sentence(s3_lake: S3Lake) -> None:
    s3_lake.vendor.publish("trades", DAY)
    s3_lake.env["RLX_LAKE_ROOT"] = "s3://no-such-lake-bucket/x"
    result = s3_lake.materialize("trades", DAY)
    assert not result.success
    [failure] = result.get_step_failure_events()
    text = failure.step_failure_data.user_failure_data.description
    assert text.startswith("Cannot read s3://no-such-lake-bucket/x/raw/trades/")
    assert "NoSuchBucket" in text and "RLX_LAKE_ROOT" in text and "\n" not in text
    with pytest.raises(LakeError, match="names no bucket"):
        Lake.at("s3:///prefix")


@pytest.mark.parametrize("failing", ["raw/", "ready/"])
def test_a_failed_upload_leaves_nothing_on_the_machine(
        s3_lake: S3Lake, monkeypatch: pytest.MonkeyPatch, failing: str) -> None:
    from rlx_assets.lib import stores

    s3_lake.vendor.publish("trades", DAY)
    put = stores.S3Store.put

    def flaky_put(self, local: Path, key: str) -> str:
        if key.startswith(failing):
            raise LakeError(f"Cannot upload {local.name} (injected)")
        return put(self, local, key)

    monkeypatch.setattr(stores.S3Store, "put", flaky_put)
    result = s3_lake.materialize("trades", DAY)
    assert not result.success
    [failure] = result.get_step_failure_events()
    assert "(injected)" in failure.step_failure_data.user_failure_data.description
    assert s3_lake.local_files() == [], "neither the download nor the staged file is left"
    assert not s3_lake.keys("ready/")


def test_status_on_an_unreachable_lake_is_one_sentence(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from rlx_assets import cli

    home = tmp_path / "home_dagster"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("RLX_LAKE_ROOT", "s3://some-lake/prefix")
    monkeypatch.setenv("RLX_LAKE_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("RLX_END_DATE", "2024-01-02")
    assert cli.main(["status"]) == 1
    out = capsys.readouterr().out.strip()
    # the first listing status makes (the lake's acceptances) fails, in one sentence
    assert out.startswith("Cannot list s3://some-lake/prefix/acceptances/") and "\n" not in out
