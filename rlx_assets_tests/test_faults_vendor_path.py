"""Bad vendor days through the real vendor path: lakeapi discovery and boto3 download from moto's
S3 server on loopback (`CRYPTO_LAKE_SOURCE=lakeapi`), materialised through the definitions."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import boto3
import dagster as dg
import polars as pl
import pyarrow.parquet as pq
import pytest

from rlx_assets.lib.checks import BLOCKING_CHECKS, POSITIVE_PRICES, SCHEMA, TEMPORAL_CONTINUITY
from rlx_assets.lib.demo_data import vendor_relpath
from rlx_assets.lib.demo_faults import Fault
from rlx_assets.lib.lakeapi_access import default_cache_dir, lakeapi_module
from rlx_assets_tests.conftest import materialize_day
from rlx_assets_tests.run_inspection import (
    FAILED,
    SUCCEEDED,
    check_evaluations,
    check_statuses,
    failure_text,
    materialization_metadata,
    partition_status,
    quarantine_metadata,
    step_attempts,
    zone_files,
)
from rlx_assets_tests.stand_ins import BTC, FAKE_KEY_ID, FAKE_SECRET, VendorBucket

CLEAN, BAD = dt.date(2024, 1, 2), dt.date(2024, 1, 3)
REPO = Path(__file__).resolve().parents[1]

FAULT_CASES = [
    ("trades", Fault.NEGATIVE_PRICE, {POSITIVE_PRICES}),
    ("trades", Fault.NULL_PRICE, {POSITIVE_PRICES, SCHEMA}),
    ("trades", Fault.MISSING_COLUMN, {SCHEMA}),
    ("trades", Fault.UNKNOWN_SIDE, {SCHEMA}),
    ("trades", Fault.UNSORTED, {TEMPORAL_CONTINUITY}),
    ("trades", Fault.EMPTY, {TEMPORAL_CONTINUITY}),
    ("book", Fault.HOLE, {TEMPORAL_CONTINUITY}),
    ("book", Fault.ZERO_QUANTITY, {POSITIVE_PRICES}),
    ("book_delta_v2", Fault.WRONG_DTYPE, {SCHEMA}),
    ("book_delta_v2", Fault.OUTSIDE_DAY, {TEMPORAL_CONTINUITY}),
]


def lakeapi_env(lake: Path) -> dict[str, str]:
    return {"CRYPTO_LAKE_SOURCE": "lakeapi", "RLX_LAKE_ROOT": str(lake)}


def vendor_file(bucket: VendorBucket, table: str, day: dt.date) -> Path:
    return bucket.staging / vendor_relpath(table, BTC, day)


def rows(path: Path) -> int:
    return pq.ParquetFile(path).metadata.num_rows


@pytest.mark.parametrize(("table", "fault", "failing"), FAULT_CASES,
                         ids=[f"{t}-{f.value}" for t, f, _ in FAULT_CASES])
def test_bad_day_fails_its_check_for_that_partition_only(
    vendor_bucket: VendorBucket, tmp_path: Path, table: str, fault: Fault, failing: set[str]
) -> None:
    vendor_bucket.publish(table, CLEAN)
    vendor_bucket.publish(table, BAD, fault=fault)
    lake, instance = tmp_path / "lake", dg.DagsterInstance.ephemeral()

    clean = materialize_day(lakeapi_env(lake), table, CLEAN, instance)
    assert clean.success, failure_text(clean)
    bad = materialize_day(lakeapi_env(lake), table, BAD, instance)
    assert not bad.success

    statuses = check_statuses(instance, table)
    assert statuses[CLEAN.isoformat()] == dict.fromkeys(BLOCKING_CHECKS, SUCCEEDED)
    assert statuses[BAD.isoformat()] == {
        name: FAILED if name in failing else SUCCEEDED for name in BLOCKING_CHECKS}
    evaluations = check_evaluations(bad)
    assert {n for n, e in evaluations.items() if not e.passed} == failing
    assert all(e.severity == dg.AssetCheckSeverity.ERROR for e in evaluations.values())
    assert all(e.description and e.blocking for e in evaluations.values())
    text = failure_text(bad)  # the run fails because a blocking check failed, naming it
    assert "blocking asset check" in text and all(name in text for name in failing), text

    # The bad day: quarantined, never ready; the vendor's bytes kept in raw/.
    assert not zone_files(lake, "ready", table, BAD)
    [quarantined] = zone_files(lake, "quarantine", table, BAD)
    raw = [p for p in zone_files(lake, "raw", table, BAD) if p.suffix == ".parquet"]
    assert [p.read_bytes() for p in raw] == [vendor_file(vendor_bucket, table, BAD).read_bytes()]
    assert rows(quarantined) == rows(vendor_file(vendor_bucket, table, BAD))
    assert quarantine_metadata(bad)["zone"] == "quarantine"
    assert quarantine_metadata(bad)["failed_checks"] == sorted(
        failing, key=BLOCKING_CHECKS.index)
    # What the UI's Partitions tab shows: the bad day failed, the clean one materialised.
    assert partition_status(instance, table, BAD) == "FAILED"
    assert partition_status(instance, table, CLEAN) == "MATERIALIZED"

    # The clean day: ready, with the vendor's row count, nothing in quarantine.
    [ready] = zone_files(lake, "ready", table, CLEAN)
    assert rows(ready) == rows(vendor_file(vendor_bucket, table, CLEAN))
    assert not zone_files(lake, "quarantine", table, CLEAN)
    metadata = materialization_metadata(clean)
    assert metadata["dagster/row_count"] == rows(ready)
    assert metadata["zone"] == "ready"
    assert metadata["vendor_bytes"] == vendor_file(vendor_bucket, table, CLEAN).stat().st_size


def test_missing_vendor_day_fails_once_naming_table_instrument_and_day(
    vendor_bucket: VendorBucket, tmp_path: Path
) -> None:
    vendor_bucket.publish("book_delta_v2", CLEAN)
    lake, missing = tmp_path / "lake", dt.date(2024, 1, 5)
    result = materialize_day(lakeapi_env(lake), "book_delta_v2", missing)
    assert not result.success
    text = failure_text(result)
    for part in ("book_delta_v2", "BINANCE:BTC-USDT", "2024-01-05"):
        assert part in text, text
    assert step_attempts(result) == 1  # RLX_STEP_RETRIES=1, but a retry cannot help here
    assert not result.get_asset_materialization_events()  # never an empty success
    assert not (lake / "ready").exists() and not (lake / "quarantine").exists()


def test_rematerialising_a_ready_partition_replaces_it(vendor_bucket: VendorBucket,
                                                       tmp_path: Path) -> None:
    vendor_bucket.publish("trades", CLEAN)
    lake, instance = tmp_path / "lake", dg.DagsterInstance.ephemeral()
    first = materialize_day(lakeapi_env(lake), "trades", CLEAN, instance)
    assert first.success, failure_text(first)
    [ready] = zone_files(lake, "ready", "trades", CLEAN)
    before = ready.stat().st_ino, rows(ready)

    second = materialize_day(lakeapi_env(lake), "trades", CLEAN, instance)
    assert second.success, failure_text(second)
    assert zone_files(lake, "ready", "trades", CLEAN) == [ready]  # one file, not two
    assert ready.stat().st_ino != before[0]  # a new file moved in, not appended to
    frame = pl.read_parquet(ready)
    assert frame.height == before[1] == rows(vendor_file(vendor_bucket, "trades", CLEAN))
    assert frame.get_column("trade_id").is_unique().all()
    assert materialization_metadata(second)["raw_reused"] is True  # same vendor version
    assert not list((lake / "_staging").glob("*"))


def test_a_republished_bad_version_withdraws_the_ready_partition(vendor_bucket: VendorBucket,
                                                                 tmp_path: Path) -> None:
    vendor_bucket.publish("trades", CLEAN)
    lake, instance = tmp_path / "lake", dg.DagsterInstance.ephemeral()
    assert materialize_day(lakeapi_env(lake), "trades", CLEAN, instance).success
    vendor_bucket.publish("trades", CLEAN, fault=Fault.NEGATIVE_PRICE)  # a new vendor version
    again = materialize_day(lakeapi_env(lake), "trades", CLEAN, instance)
    assert not again.success
    assert quarantine_metadata(again)["raw_reused"] is False  # downloaded again
    assert not zone_files(lake, "ready", "trades", CLEAN)
    assert zone_files(lake, "quarantine", "trades", CLEAN)
    assert check_statuses(instance, "trades")[CLEAN.isoformat()][POSITIVE_PRICES] == FAILED
    # The old ready version no longer shows as current: the partition reads FAILED.
    assert partition_status(instance, "trades", CLEAN) == "FAILED"
    vendor_bucket.publish("trades", CLEAN)  # fixed by the vendor
    fixed = materialize_day(lakeapi_env(lake), "trades", CLEAN, instance)
    assert fixed.success, failure_text(fixed)
    assert partition_status(instance, "trades", CLEAN) == "MATERIALIZED"
    assert zone_files(lake, "ready", "trades", CLEAN)
    assert not zone_files(lake, "quarantine", "trades", CLEAN)


def test_a_day_published_after_the_listing_was_cached_is_found(vendor_bucket: VendorBucket,
                                                               tmp_path: Path) -> None:
    lakeapi = lakeapi_module(default_cache_dir())
    lakeapi.main.contents_cache.clear()  # forget listings cached by earlier tests
    lakeapi.main.cache.clear()
    vendor_bucket.publish("trades", CLEAN)
    lake, instance = tmp_path / "lake", dg.DagsterInstance.ephemeral()
    assert materialize_day(lakeapi_env(lake), "trades", CLEAN, instance).success
    vendor_bucket.publish("trades", BAD)  # published after lakeapi cached its listing

    # The premise: lakeapi's own cached listing does not know the new day yet.
    bucket = f"{vendor_bucket.bucket}/{vendor_bucket.prefix}"
    lakeapi.set_default_bucket(bucket)
    start = dt.datetime.combine(BAD, dt.time())
    session = boto3.Session(aws_access_key_id=FAKE_KEY_ID, aws_secret_access_key=FAKE_SECRET,
                            region_name="eu-west-1")
    with pytest.raises(lakeapi.exceptions.NoFilesFound):
        lakeapi.list_data("trades", start=start, end=start + dt.timedelta(days=1),
                          symbols=[BTC.symbol], exchanges=[BTC.exchange], bucket=bucket,
                          boto3_session=session)

    result = materialize_day(lakeapi_env(lake), "trades", BAD, instance)
    assert result.success, failure_text(result)
    assert zone_files(lake, "ready", "trades", BAD)


def test_a_truncated_vendor_file_is_retried_then_fails_clearly(vendor_bucket: VendorBucket,
                                                               tmp_path: Path) -> None:
    vendor_bucket.publish("trades", BAD, fault=Fault.TRUNCATED)
    lake = tmp_path / "lake"
    result = materialize_day(lakeapi_env(lake), "trades", BAD)
    assert not result.success
    assert step_attempts(result) == 2  # RLX_STEP_RETRIES=1 in the tests
    text = failure_text(result)
    assert "unreadable" in text and "1.snappy.parquet" in text, text
    assert not zone_files(lake, "ready", "trades", BAD)
    assert not zone_files(lake, "quarantine", "trades", BAD)
    assert not result.get_asset_materialization_events()
    assert not list((lake / "_staging").glob("*"))


def test_lakeapi_cache_never_lands_in_the_working_directory(vendor_bucket: VendorBucket,
                                                             tmp_path: Path) -> None:
    """In a fresh process (lakeapi not imported yet), from a fresh working directory."""
    vendor_bucket.publish("trades", CLEAN)
    work, home = tmp_path / "work", tmp_path / "fresh-home"
    work.mkdir()
    script = textwrap.dedent(f"""
        import datetime as dt, json, sys
        from rlx_assets_tests.conftest import materialize_day
        result = materialize_day({{"CRYPTO_LAKE_SOURCE": "lakeapi",
                                  "RLX_LAKE_ROOT": {str(tmp_path / "lake")!r}}},
                                 "trades", dt.date(2024, 1, 2))
        json.dump({{"success": result.success, "lakeapi": "lakeapi" in sys.modules}},
                  sys.stdout)
    """)
    env = {**os.environ, "HOME": str(home), "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", script], cwd=work, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"success": True, "lakeapi": True}
    assert not (work / ".lake_cache").exists()
    assert not (tmp_path / ".lake_cache").exists()
    assert (home / ".cache" / "rlx_assets" / "lakeapi" / ".lake_cache").is_dir()
