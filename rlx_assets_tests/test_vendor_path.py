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


def test_lakeapi_source_writes_ready_with_vendor_row_count(vendor_bucket: VendorBucket,
                                                           tmp_path: Path) -> None:
    vendor_bucket.publish("trades", DAY)
    lake = tmp_path / "lake"
    result = materialize_day({"CRYPTO_LAKE_SOURCE": "lakeapi", "RLX_LAKE_ROOT": str(lake)},
                             "trades", DAY)
    assert result.success
    vendor_file = vendor_bucket.staging / "trades/exchange=BINANCE/symbol=BTC-USDT" \
        / f"dt={DAY}/1.snappy.parquet"
    ready = _zone(lake, "ready", "trades") / "data.parquet"
    assert pq.ParquetFile(ready).metadata.num_rows == pq.ParquetFile(vendor_file).metadata.num_rows
    assert (_zone(lake, "raw", "trades") / "1.snappy.parquet").read_bytes() == \
        vendor_file.read_bytes()
    frame = pl.read_parquet(ready)
    assert frame.columns == ["side", "quantity", "price", "trade_id", "origin_time",
                             "received_time"]
    assert frame.schema["origin_time"] == pl.Datetime("ns", "UTC")
    assert not (tmp_path / ".lake_cache").exists()
