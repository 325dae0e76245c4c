"""Vendor-format market data for the demo lake, tests and benchmarks.

Writes days in Crypto Lake's layout (`<table>/exchange=<EX>/symbol=<SYM>/dt=<day>/1.snappy.parquet`)
with realistic BTC-USDT shapes: a price random walk around 42k, sub-second trade arrivals,
20-level books with a one-tick spread and L2 updates where a fifth of sizes remove a level.
Generation is chunked so that a full-scale day (30M updates) needs little memory, and
deterministic per (table, instrument, day). `Fault`s turn a clean day into a bad one.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import json
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rlx_assets.lib.instruments import Instrument
from rlx_assets.lib.tables import BOOK_LEVELS, TABLES

VENDOR_FILENAME = "1.snappy.parquet"
VENDOR_PREFIX = "market-data/cryptofeed"
NS_PER_DAY = 86_400 * 10**9
CHUNK_ROWS = 1_000_000
# Row groups of at most ~6M cells (1M rows of a narrow table, 72k rows of the 83-column
# book), as a writer that bounds its own memory produces; readers decode a row group at once.
ROW_GROUP_CELLS = 6_000_000
TICK = 0.01

# Rows per day: small enough for a demo in seconds, and the full-scale day of the benchmarks.
DEMO_ROWS = {"trades": 40_000, "book": 17_280, "book_delta_v2": 200_000}
FULL_ROWS = {"trades": 2_000_000, "book": 864_000, "book_delta_v2": 30_000_000}


class Fault(enum.StrEnum):
    """Ways a vendor day can be bad, each meant to fail one named check."""

    NEGATIVE_PRICE = "negative_price"  # positive_prices
    ZERO_QUANTITY = "zero_quantity"  # positive_prices
    NULL_PRICE = "null_price"  # positive_prices and schema
    MISSING_COLUMN = "missing_column"  # schema
    WRONG_DTYPE = "wrong_dtype"  # schema
    UNKNOWN_SIDE = "unknown_side"  # schema (trades only)
    UNSORTED = "unsorted"  # temporal_continuity
    OUTSIDE_DAY = "outside_day"  # temporal_continuity
    HOLE = "hole"  # temporal_continuity (three hours without data)
    EMPTY = "empty"  # temporal_continuity (no rows)
    TRUNCATED = "truncated"  # unreadable file: retried, then a clear failure


def vendor_relpath(table: str, instrument: Instrument, day: dt.date) -> str:
    return (
        f"{table}/exchange={instrument.exchange}/symbol={instrument.symbol}/"
        f"dt={day.isoformat()}/{VENDOR_FILENAME}"
    )


def _seed(*parts: object) -> int:
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def _day_start_ns(day: dt.date) -> int:
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()) * 10**9


def _chunks(rng: np.random.Generator, day: dt.date, rows: int) -> Iterator[np.ndarray]:
    """Sorted int64 ns timestamps covering the day, in chunks of at most CHUNK_ROWS."""
    start = _day_start_ns(day)
    n_chunks = max(1, -(-rows // CHUNK_ROWS))
    bounds = np.linspace(0, NS_PER_DAY, n_chunks + 1, dtype=np.int64)
    sizes = np.full(n_chunks, rows // n_chunks)
    sizes[: rows % n_chunks] += 1
    for i, n in enumerate(sizes):
        if n:
            yield start + np.sort(rng.integers(bounds[i], bounds[i + 1], int(n), dtype=np.int64))


class _PriceWalk:
    """Mid price following a continuous random walk in calendar time."""

    def __init__(self, rng: np.random.Generator, start_price: float) -> None:
        self.rng, self.last = rng, np.log(start_price)

    def at(self, n: int) -> np.ndarray:
        steps = self.rng.normal(0.0, 2e-5, n)
        path = self.last + np.cumsum(steps)
        self.last = float(path[-1])
        return np.round(np.exp(path), 2)


def _trades(rng: np.random.Generator, ts: np.ndarray, walk: _PriceWalk, first_id: int) -> pa.Table:
    n = len(ts)
    return pa.table({
        "side": pa.array(np.where(rng.random(n) < 0.5, "buy", "sell")),
        "amount": np.round(rng.lognormal(-6.0, 1.5, n), 5) + 1e-5,
        "price": walk.at(n),
        "id": np.arange(first_id, first_id + n, dtype=np.int64),
        "timestamp": ts,
        "receipt_timestamp": ts + rng.integers(1_000_000, 50_000_000, n),
    })


def _book(rng: np.random.Generator, ts: np.ndarray, walk: _PriceWalk, first_seq: int) -> pa.Table:
    n = len(ts)
    mid = walk.at(n)
    cols: dict[str, np.ndarray] = {
        "timestamp": ts,
        "receipt_timestamp": ts + rng.integers(1_000_000, 50_000_000, n),
        "sequence_number": first_seq + np.cumsum(rng.integers(1, 40, n)),
    }
    offsets = np.cumsum(rng.integers(1, 30, (BOOK_LEVELS, n)), axis=0) * TICK
    for side, sign in (("bid", -1), ("ask", 1)):
        for i in range(BOOK_LEVELS):
            cols[f"{side}_{i}_price"] = np.round(mid + sign * (TICK / 2 + offsets[i]), 2)
            cols[f"{side}_{i}_size"] = np.round(rng.lognormal(-1.0, 1.2, n), 5) + 1e-5
    return pa.table(cols)


def _deltas(rng: np.random.Generator, ts: np.ndarray, walk: _PriceWalk, first_seq: int) -> pa.Table:
    n = len(ts)
    is_bid = rng.random(n) < 0.5
    depth = rng.integers(0, 500, n) * TICK
    size = np.round(rng.lognormal(-1.0, 1.2, n), 5) + 1e-5
    return pa.table({
        "timestamp": ts,
        "receipt_timestamp": ts + rng.integers(1_000_000, 50_000_000, n),
        "sequence_number": first_seq + np.arange(n, dtype=np.int64),
        "side_is_bid": is_bid,
        "price": np.round(walk.at(n) + np.where(is_bid, -depth, depth), 2),
        "size": np.where(rng.random(n) < 0.2, 0.0, size),
    })


_BUILDERS = {"trades": _trades, "book": _book, "book_delta_v2": _deltas}


def day_tables(
    table: str, instrument: Instrument, day: dt.date, rows: int
) -> Iterator[pa.Table]:
    """A clean vendor day as a stream of Arrow tables (one per chunk), deterministic."""
    rng = np.random.default_rng(_seed(table, instrument, day))
    walk = _PriceWalk(rng, 42_000.0 * (1 + (day.toordinal() % 30) / 100))
    first = (day.toordinal() - 738_000) * 10**9
    for ts in _chunks(rng, day, rows):
        chunk = _BUILDERS[table](rng, ts, walk, first)
        first += len(ts) * 40
        yield chunk


def _set(table: pa.Table, name: str, index: int, value: object) -> pa.Table:
    values = table.column(name).to_pylist()
    values[index] = value
    return table.set_column(table.schema.get_field_index(name), name,
                            pa.array(values, table.schema.field(name).type))


def _price_column(table: str) -> str:
    return "bid_0_price" if table == "book" else "price"


def apply_fault(chunk: pa.Table, table: str, fault: Fault, day: dt.date) -> pa.Table:
    """Corrupt the first chunk of a day the way `fault` says."""
    row = min(10, chunk.num_rows - 1)
    price = _price_column(table)
    if fault is Fault.NEGATIVE_PRICE:
        return _set(chunk, price, row, -1.0)
    if fault is Fault.ZERO_QUANTITY:
        return _set(chunk, {"trades": "amount", "book": "bid_0_size"}.get(table, "size"), row,
                    0.0 if table != "book_delta_v2" else -1.0)
    if fault is Fault.NULL_PRICE:
        return _set(chunk, price, row, None)
    if fault is Fault.MISSING_COLUMN:
        return chunk.drop_columns([price])
    if fault is Fault.WRONG_DTYPE:
        index = chunk.schema.get_field_index(price)
        return chunk.set_column(index, price, chunk.column(price).cast(pa.string()))
    if fault is Fault.UNKNOWN_SIDE:
        if table != "trades":
            raise ValueError("unknown_side applies to trades only")
        return _set(chunk, "side", row, "hold")
    if fault is Fault.UNSORTED:
        ts = chunk.column("timestamp").to_numpy().copy()
        ts[row], ts[-row] = ts[-row], ts[row]
        index = chunk.schema.get_field_index("timestamp")
        return chunk.set_column(index, "timestamp", pa.array(ts))
    if fault is Fault.OUTSIDE_DAY:
        return _set(chunk, "timestamp", row, _day_start_ns(day) - 3_600 * 10**9)
    if fault is Fault.HOLE:
        ts = chunk.column("timestamp").to_numpy()
        start = _day_start_ns(day)
        keep = (ts < start + 6 * 3_600 * 10**9) | (ts >= start + 9 * 3_600 * 10**9)
        return chunk.filter(pa.array(keep))
    if fault is Fault.EMPTY:
        return chunk.slice(0, 0)
    return chunk


def write_day(
    root: Path,
    table: str,
    instrument: Instrument,
    day: dt.date,
    rows: int | None = None,
    fault: Fault | None = None,
) -> Path:
    """Write one vendor day under `root` (the directory holding the table folders)."""
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; expected one of {sorted(TABLES)}")
    rows = DEMO_ROWS[table] if rows is None else rows
    if fault is Fault.HOLE and table == "book_delta_v2" and rows > CHUNK_ROWS:
        raise ValueError("the hole fault needs a day that fits in one chunk")
    path = root / vendor_relpath(table, instrument, day)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    writer: pq.ParquetWriter | None = None
    try:
        for i, chunk in enumerate(day_tables(table, instrument, day, rows)):
            # A hole spans hours, so it cuts every chunk; other faults touch the first one.
            if fault is not None and (i == 0 or fault is Fault.HOLE):
                chunk = apply_fault(chunk, table, fault, day)
            if writer is None:
                writer = pq.ParquetWriter(tmp, chunk.schema, compression="snappy")
            writer.write_table(chunk, row_group_size=max(1, ROW_GROUP_CELLS // chunk.num_columns))
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
