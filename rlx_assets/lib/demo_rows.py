"""The rows of a clean vendor day, per table (trades, book, book_delta_v2): a price random
walk around 42k, 20-level books, L2 updates with resyncs, times as the vendor's writer
computes them. Generated in chunks, deterministic per (table, instrument, day)."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from rlx_assets.lib.demo_habits import (
    RESTART_AT,
    RESTART_MINUTES,
    RESYNCS,
    SNAPSHOT_LEVELS,
    SNAPSHOT_ROWS,
    VENDOR,
    Habits,
)
from rlx_assets.lib.instruments import Instrument
from rlx_assets.lib.tables import BOOK_LEVELS

NS_PER_DAY = 86_400 * 10**9
NS_PER_MS = 1_000_000
CHUNK_ROWS = 1_000_000
TICK = 0.01


def _seed(*parts: object) -> int:
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def day_start_ns(day: dt.date) -> int:
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()) * 10**9


def _as_writer_ns(ns: np.ndarray, resolution_ns: int) -> np.ndarray:
    """`int(float_seconds * 1e9)` of times known to `resolution_ns`, as the writer computes
    them (float rounding noise in the last digits included)."""
    seconds = (ns // resolution_ns * resolution_ns).astype(np.float64) / 1e9
    return (seconds * 1e9).astype(np.int64)


def _times(rng: np.random.Generator, day: dt.date, rows: int,
           habits: Habits) -> Iterator[np.ndarray]:
    """Sorted exchange times (ns, millisecond resolution) for `rows` rows, in chunks: the
    previous day's last moments first, then the day (without the restart hole)."""
    start = day_start_ns(day)
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
        self.rng, self.day_start = rng, day_start_ns(day)
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
