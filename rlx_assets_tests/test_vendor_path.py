"""Issue 2's main path: lakeapi discovery + boto3 download from an S3 server on loopback."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from rlx_assets_tests.conftest import materialize_day
from rlx_assets_tests.stand_ins import VendorBucket

DAY = dt.date(2024, 1, 2)


def _zone(root: Path, zone: str, table: str, day: dt.date = DAY) -> Path:
    return root / zone / table / "exchange=BINANCE" / "symbol=BTC-USDT" / f"dt={day}"


def _assert_ready_matches_vendor(bucket: VendorBucket, lake: Path) -> Path:
    """ready/ has the vendor's row count; raw/ has the vendor's exact bytes."""
    vendor_file = bucket.staging / "trades/exchange=BINANCE/symbol=BTC-USDT" \
        / f"dt={DAY}/1.snappy.parquet"
    ready = _zone(lake, "ready", "trades") / "data.parquet"
    assert pq.ParquetFile(ready).metadata.num_rows == pq.ParquetFile(vendor_file).metadata.num_rows
    assert (_zone(lake, "raw", "trades") / "1.snappy.parquet").read_bytes() == \
        vendor_file.read_bytes()
    return ready


def test_lakeapi_source_writes_ready_with_vendor_row_count(vendor_bucket: VendorBucket,
                                                           tmp_path: Path) -> None:
    vendor_bucket.publish("trades", DAY)
    lake = tmp_path / "lake"
    result = materialize_day({"CRYPTO_LAKE_SOURCE": "lakeapi", "RLX_LAKE_ROOT": str(lake)},
                             "trades", DAY)
    assert result.success
    ready = _assert_ready_matches_vendor(vendor_bucket, lake)
    frame = pl.read_parquet(ready)
    assert frame.columns == ["side", "quantity", "price", "trade_id", "origin_time",
                             "received_time"]
    assert frame.schema["origin_time"] == pl.Datetime("ns", "UTC")
    assert not (tmp_path / ".lake_cache").exists()


def test_dagster_cli_materialize_against_s3_endpoint(vendor_bucket: VendorBucket,
                                                     tmp_path: Path) -> None:
    """The issue's acceptance command, as a user types it, with CRYPTO_LAKE_SOURCE=lakeapi."""
    import os
    import subprocess
    import sys

    vendor_bucket.publish("trades", DAY)
    lake = tmp_path / "lake"
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {**os.environ, "CRYPTO_LAKE_SOURCE": "lakeapi", "RLX_LAKE_ROOT": str(lake),
           "RLX_END_DATE": "2024-01-05", "DAGSTER_HOME": str(home)}
    dagster = Path(sys.executable).with_name("dagster")
    done = subprocess.run(
        [str(dagster), "asset", "materialize", "-m", "rlx_assets.definitions",
         "--select", "binance/btc_usdt/trades", "--partition", DAY.isoformat()],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    _assert_ready_matches_vendor(vendor_bucket, lake)
    assert not (tmp_path / ".lake_cache").exists()
    for secret in ("fake-vendor-secret-do-not-log",):
        assert secret not in done.stdout + done.stderr


def test_stale_listings_of_every_table_are_forgotten(tmp_path: Path) -> None:
    """lakeapi's FS caches lose keys ending in p/k/l in `clear()` (`book` became `boo`), so a
    new book day stayed invisible for an hour; ours removes the cache files themselves."""
    from rlx_assets.lib.lakeapi_access import clear_listing_cache, lakeapi_module

    lakeapi = lakeapi_module(tmp_path / "cache")
    for table in ("book", "trades", "book_delta_v2"):
        lakeapi.main.contents_cache[f"bucket=qnt.dat-table={table}"] = ["stale"]
    lakeapi.main.cache["ListObjectsV2-book"] = ["stale"]
    clear_listing_cache(lakeapi)
    assert "bucket=qnt.dat-table=book" not in lakeapi.main.contents_cache
    assert len(lakeapi.main.contents_cache) == 0 and len(lakeapi.main.cache) == 0
