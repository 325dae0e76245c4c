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
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rlx_assets.lib.instruments import Instrument
from rlx_assets.lib.tables import BOOK_LEVELS, TABLES

VENDOR_FILENAME = "1.snappy.parquet"
VENDOR_PREFIX = "market-data/cryptofeed"
NS_PER_DAY = 86_400 * 10**9
NS_PER_MS = 1_000_000
CHUNK_ROWS = 1_000_000
TICK = 0.01
# Rows per buffer flush of the vendor's writer for a busy BTC-USDT stream: one row group each.
FLUSH_ROWS = {"trades": 10_000, "book": 3_000, "book_delta_v2": 10_000}
PREVIOUS_DAY_ROWS = 5  # rows of the previous day's last second that open each file
RESYNCS = {"trades": 0, "book": 1, "book_delta_v2": 2}  # per day
SNAPSHOT_LEVELS = 50  # levels per side in a book_delta_v2 resync (the REST snapshot)
SNAPSHOT_ROWS = {"trades": 0, "book": 1, "book_delta_v2": 2 * SNAPSHOT_LEVELS}
RESTART_AT, RESTART_MINUTES = 9 * 3_600, 20  # a writer restart at 09:00 leaves 20 min out

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
    OUTSIDE_DAY = "outside_day"  # temporal_continuity (an hour before the day)
    HOLE = "hole"  # temporal_continuity (three hours without data)
    EMPTY = "empty"  # temporal_continuity (no rows)
    MISSING_TIME = "missing_time"  # no blocking check: five rows without an exchange time
    TRUNCATED = "truncated"  # unreadable file: retried, then a clear failure


# Faults of the whole file (every chunk); the others touch row 10 of the day proper.
WHOLE_FILE_FAULTS = (Fault.HOLE, Fault.EMPTY, Fault.MISSING_COLUMN, Fault.WRONG_DTYPE)


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


def _as_writer_ns(ns: np.ndarray, resolution_ns: int) -> np.ndarray:
    """`int(float_seconds * 1e9)` of times known to `resolution_ns`, as the writer computes
    them (float rounding noise in the last digits included)."""
    seconds = (ns // resolution_ns * resolution_ns).astype(np.float64) / 1e9
    return (seconds * 1e9).astype(np.int64)


@dataclass(frozen=True)
class Habits:
    """The vendor writer's habits a generated day has (all on by default)."""

    previous_day_rows: int = PREVIOUS_DAY_ROWS
    resyncs: bool = True
    restart: bool = False  # a writer restart: a hole and contains_gaps=Yes


VENDOR = Habits()  # every habit of the vendor's writer: the default
IDEAL = Habits(previous_day_rows=0, resyncs=False)  # the idealised vendor of old tests


def _times(rng: np.random.Generator, day: dt.date, rows: int,
           habits: Habits) -> Iterator[np.ndarray]:
    """Sorted exchange times (ns, millisecond resolution) for `rows` rows, in chunks: the
    previous day's last moments first, then the day (without the restart hole)."""
    start = _day_start_ns(day)
    early = min(habits.previous_day_rows, rows)
    if early:
        yield np.sort(start - rng.integers(NS_PER_MS, 800 * NS_PER_MS, early))
    rows -= early
    hole_at, hole = RESTART_AT * 10**9, RESTART_MINUTES * 60 * 10**9 if habits.restart else 0
    n_chunks = max(1, -(-rows // CHUNK_ROWS))
    bounds = np.linspace(0, NS_PER_DAY - hole, n_chunks + 1, dtype=np.int64)
    sizes = np.full(n_chunks, rows // n_chunks)
    sizes[: rows % n_chunks] += 1
    for i, n in enumerate(sizes):
        if n:
            t = np.sort(rng.integers(bounds[i], bounds[i + 1], int(n), dtype=np.int64))
            yield start + (np.where(t >= hole_at, t + hole, t) if hole else t)


class _PriceWalk:
    """Mid price following a continuous random walk in calendar time."""

    def __init__(self, rng: np.random.Generator, start_price: float) -> None:
        self.rng, self.last = rng, np.log(start_price)

    def at(self, n: int) -> np.ndarray:
        steps = self.rng.normal(0.0, 2e-5, n)
        path = self.last + np.cumsum(steps)
        self.last = float(path[-1])
        return np.round(np.exp(path), 2)


class _Stream:
    """State carried from chunk to chunk: prices, ids, sequence numbers, resync points."""

    def __init__(self, rng: np.random.Generator, day: dt.date, resync_rows: list[int]) -> None:
        self.rng, self.day_start = rng, _day_start_ns(day)
        self.walk = _PriceWalk(rng, 42_000.0 * (1 + (day.toordinal() % 30) / 100))
        self.next_id = (day.toordinal() - 738_000) * 10**9
        self.sequence = self.next_id
        self.resync_rows = resync_rows  # row positions in the day where a resync happens
        self.row = 0  # rows written so far

    def receipts(self, origin: np.ndarray) -> np.ndarray:
        """Receipt times: 1-50 ms after the exchange's, and after midnight for the rows of
        the previous day that open the file (the writer's clock put them in this file)."""
        latency = self.rng.integers(NS_PER_MS, 50 * NS_PER_MS, len(origin))
        return _as_writer_ns(np.maximum(origin + latency, self.day_start + latency), 1_000)

    def resyncs_in(self, n: int) -> list[int]:
        """Positions (in the next `n` rows) where a resync happens."""
        return [r - self.row for r in self.resync_rows if self.row <= r < self.row + n]


def _trades(stream: _Stream, ts: np.ndarray) -> pa.Table:
    n, rng = len(ts), stream.rng
    first = stream.next_id
    stream.next_id += n
    return pa.table({
        "side": pa.array(np.where(rng.random(n) < 0.5, "buy", "sell")),
        "amount": np.round(rng.lognormal(-6.0, 1.5, n), 5) + 1e-5,
        "price": stream.walk.at(n),
        "id": np.arange(first, first + n, dtype=np.int64),
        "timestamp": _as_writer_ns(ts, NS_PER_MS),
        "receipt_timestamp": stream.receipts(ts),
    })


def _book(stream: _Stream, ts: np.ndarray) -> pa.Table:
    n, rng = len(ts), stream.rng
    mid = stream.walk.at(n)
    origin = _as_writer_ns(ts, NS_PER_MS)
    sequence = stream.sequence + np.cumsum(rng.integers(1, 40, n))
    stream.sequence = int(sequence[-1])
    cols: dict[str, np.ndarray] = {
        "timestamp": origin,
        "receipt_timestamp": stream.receipts(ts),
        "sequence_number": sequence,
    }
    offsets = np.cumsum(rng.integers(1, 30, (BOOK_LEVELS, n)), axis=0) * TICK
    for side, sign in (("bid", -1), ("ask", 1)):
        for i in range(BOOK_LEVELS):
            cols[f"{side}_{i}_price"] = np.round(mid + sign * (TICK / 2 + offsets[i]), 2)
            cols[f"{side}_{i}_size"] = np.round(rng.lognormal(-1.0, 1.2, n), 5) + 1e-5
    chunk = pa.table(cols)
    for at in reversed(stream.resyncs_in(n)):  # a snapshot from the REST API, inserted
        snapshot = chunk.slice(at, 1).to_pydict()
        chunk = _insert_resync(stream, chunk, at, snapshot, skipped=5_000)
    return chunk


def _insert_resync(stream: _Stream, chunk: pa.Table, at: int, snapshot: dict[str, list],
                   skipped: int) -> pa.Table:
    """Insert a resync before row `at`: `snapshot`'s rows with exchange time 0, received
    just before that row, one update id ahead of the stream; the ids after it jump by
    `skipped` (the messages the gap lost)."""
    sequence = chunk.column("sequence_number").to_numpy().copy()
    first_after = int(sequence[at]) if at < len(sequence) else stream.sequence + 1
    sequence[at:] += skipped
    stream.sequence = int(sequence[-1])
    chunk = chunk.set_column(chunk.schema.get_field_index("sequence_number"),
                             "sequence_number", pa.array(sequence))
    rows = len(snapshot["timestamp"])
    received = chunk.column("receipt_timestamp")[min(at, len(chunk) - 1)].as_py() - NS_PER_MS
    snapshot.update(timestamp=[0] * rows, receipt_timestamp=[received] * rows,
                    sequence_number=[first_after + skipped - 1] * rows)
    return pa.concat_tables([chunk.slice(0, at), pa.table(snapshot, schema=chunk.schema),
                             chunk.slice(at)])


def _deltas(stream: _Stream, ts: np.ndarray) -> pa.Table:
    """L2 updates: one exchange message becomes 1-6 rows sharing its time, receipt time and
    final update id, bids before asks; a resync is a REST snapshot of 2 x SNAPSHOT_LEVELS
    rows with exchange time 0 and an update id ahead of the stream's."""
    n, rng = len(ts), stream.rng
    sizes = rng.integers(1, 7, n)
    sizes = sizes[: int(np.searchsorted(np.cumsum(sizes), n)) + 1]
    sizes[-1] -= int(sizes.sum()) - n
    message = np.repeat(np.arange(len(sizes)), sizes)
    is_bid = rng.random(n) < 0.5
    order = np.lexsort((~is_bid, message))  # within a message, bids first
    is_bid = is_bid[order]
    msg_time = ts[np.cumsum(sizes) - sizes]  # each message at its first row's time
    origin = _as_writer_ns(msg_time, NS_PER_MS)[message]
    receipt = stream.receipts(msg_time)[message]
    sequence = stream.sequence + np.cumsum(rng.integers(1, 20, len(sizes)))[message]
    mid = stream.walk.at(n)
    depth = rng.integers(0, 500, n) * TICK
    price = np.round(mid + np.where(is_bid, -depth, depth), 2)
    size = np.where(rng.random(n) < 0.2, 0.0,
                    np.round(rng.lognormal(-1.0, 1.2, n), 5) + 1e-5)
    stream.sequence = int(sequence[-1])
    chunk = pa.table({
        "timestamp": origin,
        "receipt_timestamp": receipt,
        "sequence_number": sequence,
        "side_is_bid": is_bid,
        "price": price,
        "size": size,
    })
    starts = np.cumsum(sizes) - sizes
    for wanted in reversed(stream.resyncs_in(n)):  # at a message's start
        at = int(starts[min(len(starts) - 1, np.searchsorted(starts, wanted))])
        level = np.arange(SNAPSHOT_LEVELS) * TICK + TICK / 2
        snapshot = {"side_is_bid": [True] * SNAPSHOT_LEVELS + [False] * SNAPSHOT_LEVELS,
                    "price": list(np.round(np.concatenate([mid[at] - level, mid[at] + level]),
                                           2)),
                    "size": list(np.round(rng.lognormal(-1.0, 1.2, 2 * SNAPSHOT_LEVELS), 5)
                                 + 1e-5),
                    "timestamp": [0] * (2 * SNAPSHOT_LEVELS)}
        chunk = _insert_resync(stream, chunk, at, snapshot, skipped=50_000)
    return chunk


_BUILDERS = {"trades": _trades, "book": _book, "book_delta_v2": _deltas}


def day_tables(
    table: str, instrument: Instrument, day: dt.date, rows: int, habits: Habits = VENDOR
) -> Iterator[pa.Table]:
    """A clean vendor day as a stream of Arrow tables (one per chunk), deterministic."""
    rng = np.random.default_rng(_seed(table, instrument, day))
    count = RESYNCS[table] if habits.resyncs else 0
    if count * SNAPSHOT_ROWS[table] > rows // 2:
        count = 0  # a tiny day: no room for resyncs
    rows -= count * SNAPSHOT_ROWS[table]  # the resyncs' rows are inserted on the way
    resyncs = [int(rows * (i + 1) / (count + 1)) for i in range(count)]
    stream = _Stream(rng, day, resyncs)
    for ts in _times(rng, day, rows, habits):
        chunk = _BUILDERS[table](stream, ts)
        stream.row += len(ts)
        yield chunk


def _set(table: pa.Table, name: str, index: int, value: object) -> pa.Table:
    values = table.column(name).to_pylist()
    values[index] = value
    return table.set_column(table.schema.get_field_index(name), name,
                            pa.array(values, table.schema.field(name).type))


def _price_column(table: str) -> str:
    return "bid_0_price" if table == "book" else "price"


def apply_fault(chunk: pa.Table, table: str, fault: Fault, day: dt.date) -> pa.Table:
    """Corrupt a chunk of a day the way `fault` says (the first of the day proper, or every
    chunk for WHOLE_FILE_FAULTS)."""
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
    if fault is Fault.HOLE:  # by exchange time, else receipt time (a resync's rows)
        ts = chunk.column("timestamp").to_numpy()
        ts = np.where(ts > 0, ts, chunk.column("receipt_timestamp").to_numpy())
        start = _day_start_ns(day)
        keep = (ts < start + 6 * 3_600 * 10**9) | (ts >= start + 9 * 3_600 * 10**9)
        return chunk.filter(pa.array(keep))
    if fault is Fault.EMPTY:
        return chunk.slice(0, 0)
    if fault is Fault.MISSING_TIME:
        ts = chunk.column("timestamp").to_numpy().copy()
        ts[row:row + 5] = -1 if table == "trades" else 0
        index = chunk.schema.get_field_index("timestamp")
        return chunk.set_column(index, "timestamp", pa.array(ts))
    return chunk


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
