"""Vendor-format market data for the demo lake, tests and benchmarks, shaped the way the
vendor's own writer shapes its files.

Days are written in Crypto Lake's layout (`<table>/exchange=<EX>/symbol=<SYM>/dt=<day>/
1.snappy.parquet`) with BTC-USDT shapes (a price random walk around 42k, 20-level books,
L2 updates) and, by default, every habit of the vendor's writer (its fork of cryptofeed,
`cryptofeed/util/dumper.py`; see design.md, "The vendor's files as its writer makes them"):

- one row group per buffer flush: 10,000 rows (trades, book_delta_v2) or 3,000 (book);
  parquet 2.6, data page v2, snappy, dictionary pages; schema metadata `date`,
  `contains_gaps`, `symbol`, `event_type`, `exchange`;
- times computed as `int(float_seconds * 1e9)` from millisecond exchange times and
  microsecond receipt times, so their last digits carry float rounding noise;
- a few rows of the previous day's last second opening each file (the file is chosen by the
  writer's clock when the row arrives);
- book_delta_v2 messages of several rows sharing time, receipt time and sequence number,
  bids first; a resync written as a REST snapshot of ordinary rows with exchange time 0 and
  a sequence number that jumps ahead; a book snapshot after a resync with exchange time 0;
- with `restart=True`, a writer restart: a twenty-minute hole and `contains_gaps=Yes`.

Generation is chunked (a full-scale day of 30M updates needs little memory) and
deterministic per (table, instrument, day). `Fault`s turn a clean day into a bad one.

`demo_habits` holds the writer's habits, `demo_rows` each table's rows and `demo_faults`
the faults; this module writes the files.
"""

from __future__ import annotations

import datetime as dt
import json
import zlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from rlx_assets.lib.demo_faults import WHOLE_FILE_FAULTS, Fault, apply_fault
from rlx_assets.lib.demo_habits import (  # noqa: F401 (DEMO_ROWS, FULL_ROWS: here too)
    DEMO_ROWS,
    FLUSH_ROWS,
    FULL_ROWS,
    VENDOR,
    Habits,
)
from rlx_assets.lib.demo_rows import CHUNK_ROWS, day_tables
from rlx_assets.lib.instruments import Instrument
from rlx_assets.lib.tables import TABLES

VENDOR_FILENAME = "1.snappy.parquet"
VENDOR_PREFIX = "market-data/cryptofeed"


def vendor_relpath(table: str, instrument: Instrument, day: dt.date) -> str:
    return (
        f"{table}/exchange={instrument.exchange}/symbol={instrument.symbol}/"
        f"dt={day.isoformat()}/{VENDOR_FILENAME}"
    )


def file_metadata(table: str, instrument: Instrument, day: dt.date,
                  habits: Habits) -> dict[bytes, bytes]:
    """The five schema-metadata keys the vendor's writer sets."""
    return {b"date": day.isoformat().encode(),
            b"contains_gaps": b"Yes" if habits.restart else b"No",
            b"symbol": instrument.symbol.encode(), b"event_type": table.encode(),
            b"exchange": instrument.exchange.encode()}


def write_day(
    root: Path,
    table: str,
    instrument: Instrument,
    day: dt.date,
    rows: int | None = None,
    fault: Fault | None = None,
    habits: Habits = VENDOR,
    flush_rows: int | None = None,
) -> Path:
    """Write one vendor day under `root` (the directory holding the table folders), one row
    group per `flush_rows` rows (the writer's buffer; default FLUSH_ROWS[table])."""
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; expected one of {sorted(TABLES)}")
    rows = DEMO_ROWS[table] if rows is None else rows
    if fault is Fault.HOLE and table == "book_delta_v2" and rows > CHUNK_ROWS:
        raise ValueError("the hole fault needs a day that fits in one chunk")
    flush = flush_rows or FLUSH_ROWS[table]
    path = root / vendor_relpath(table, instrument, day)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    writer: pq.ParquetWriter | None = None
    pending: pa.Table | None = None
    try:
        first_of_day = int(habits.previous_day_rows > 0)  # chunk 0: the previous day's rows
        for i, chunk in enumerate(day_tables(table, instrument, day, rows, habits)):
            if fault is not None and (i == first_of_day or fault in WHOLE_FILE_FAULTS):
                chunk = apply_fault(chunk, table, fault, day)
            if writer is None:
                schema = chunk.schema.with_metadata(file_metadata(table, instrument, day,
                                                                  habits))
                writer = pq.ParquetWriter(tmp, schema, compression="snappy", version="2.6",
                                          data_page_version="2.0")
            pending = chunk if pending is None else pa.concat_tables(
                [pending, chunk.cast(pending.schema)])
            whole = pending.num_rows // flush * flush  # the writer flushes full buffers
            if whole:
                writer.write_table(pending.slice(0, whole), row_group_size=flush)
                pending = pending.slice(whole)
        if writer is not None and pending is not None and pending.num_rows:
            writer.write_table(pending, row_group_size=flush)
    finally:
        if writer is not None:
            writer.close()
    tmp.replace(path)
    if fault is Fault.TRUNCATED:
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    return path


def write_contents_index(prefix_root: Path, prefix: str = VENDOR_PREFIX) -> list[Path]:
    """Write `<table>/contents.json.gz` listings as Crypto Lake publishes them.

    `prefix_root` is the directory that stands for `s3://<bucket>/<prefix>`; keys in the
    listing carry the prefix, as the vendor's do.
    """
    written = []
    for table_dir in sorted(p for p in prefix_root.iterdir() if p.is_dir()):
        keys = sorted(
            f"{prefix}/{p.relative_to(prefix_root).as_posix()}".lstrip("/")
            for p in table_dir.rglob("*.parquet")
        )
        target = table_dir / "contents.json.gz"
        target.write_bytes(zlib.compress(json.dumps({"objects": keys}).encode()))
        written.append(target)
    return written


def write_demo_lake(
    root: Path,
    instruments: list[Instrument],
    days: list[dt.date],
    rows: dict[str, int] | None = None,
) -> list[Path]:
    """Write (or rewrite, clean) every table for every instrument and day."""
    rows = rows or DEMO_ROWS
    return [write_day(root, table, instrument, day, rows[table])
            for instrument in instruments for day in days for table in TABLES]
