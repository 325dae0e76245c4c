"""The rows of a clean vendor day, per table (trades, book, book_delta_v2): a price random
walk around 42k, 20-level books, L2 updates with resyncs, times as the vendor's writer
computes them. Generated in chunks, deterministic per (table, instrument, day)."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from rlx_assets.lib import demo_book
from rlx_assets.lib.demo_habits import (
    DEMO_ROWS,
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
TICK = demo_book.TICK


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

    def __init__(self, rng: np.random.Generator, day: dt.date, resync_rows: list[int],
                 book_seed: int = 0) -> None:
        self.rng, self.day_start = rng, day_start_ns(day)
        start_price = 42_000.0 * (1 + (day.toordinal() % 30) / 100)
        self.walk = _PriceWalk(rng, start_price)
        self.book_seed, self.book_mid = book_seed, round(start_price / TICK)  # book: in ticks
        self.book: _DayBook | None = None  # the day's book, when trades are drawn from it
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
    buy = rng.random(n) < 0.5
    price = stream.walk.at(n)
    receipts = stream.receipts(ts)
    if stream.book is not None:  # at the best ask (buys) or bid (sells) of the last snapshot
        price = stream.book.quote(receipts, buy)
    return pa.table({
        "side": pa.array(np.where(buy, "buy", "sell")),
        "amount": np.round(rng.lognormal(-6.0, 1.5, n), 5) + 1e-5,
        "price": price,
        "id": np.arange(first, first + n, dtype=np.int64),
        "timestamp": _as_writer_ns(ts, NS_PER_MS),
        "receipt_timestamp": receipts,
    })


def _book(stream: _Stream, ts: np.ndarray) -> pa.Table:
    n, rng = len(ts), stream.rng
    origin = _as_writer_ns(ts, NS_PER_MS)
    sequence = stream.sequence + np.cumsum(rng.integers(1, 40, n))
    stream.sequence = int(sequence[-1])
    cols: dict[str, np.ndarray] = {
        "timestamp": origin,
        "receipt_timestamp": stream.receipts(ts),
        "sequence_number": sequence,
    }
    mids = demo_book.mid_ticks(rng, stream.book_mid, n)
    stream.book_mid = int(mids[-1])
    cols.update(demo_book.book_columns(stream.book_seed, mids, stream.row))
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


def _message_sizes(rng: np.random.Generator, rows: int) -> np.ndarray:
    """Rows per message, 1-6 each, adding up to `rows`."""
    if rows <= 0:
        return np.zeros(0, dtype=np.int64)
    sizes = rng.integers(1, 7, rows)
    sizes = sizes[: int(np.searchsorted(np.cumsum(sizes), rows)) + 1]
    sizes[-1] -= int(sizes.sum()) - rows
    return sizes[sizes > 0]


def _deltas(stream: _Stream, ts: np.ndarray) -> pa.Table:
    """L2 updates: one exchange message becomes 1-6 rows sharing its time, receipt time and
    final update id, bids before asks; a resync is a REST snapshot of 2 x SNAPSHOT_LEVELS
    rows with exchange time 0 and an update id ahead of the stream's."""
    n, rng = len(ts), stream.rng
    sizes = _message_sizes(rng, n)
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


class _DayBook:
    """The day's book table, as the trades and deltas drawn from it read it."""

    def __init__(self, instrument: Instrument, day: dt.date, habits: Habits) -> None:
        table = pa.concat_tables(day_tables("book", instrument, day, DEMO_ROWS["book"], habits))
        # in the order they were received (latencies differ): the order the checks use
        received = table.column("receipt_timestamp").to_numpy()
        self.table = table.take(np.argsort(received, kind="stable"))
        self.received = self.table.column("receipt_timestamp").to_numpy()
        self.first = habits.previous_day_rows  # the first snapshot of the day proper
        self.bid = np.rint(self.table.column("bid_0_price").to_numpy() / TICK).astype(np.int64)
        self.ask = np.rint(self.table.column("ask_0_price").to_numpy() / TICK).astype(np.int64)

    def latest(self, received: np.ndarray) -> np.ndarray:
        """The index of the last snapshot received at or before each time (the first one
        for times before it)."""
        return np.maximum(np.searchsorted(self.received, received, side="right") - 1, 0)

    def quote(self, received: np.ndarray, buy: np.ndarray) -> np.ndarray:
        at = self.latest(received)
        return np.round(np.where(buy, self.ask[at], self.bid[at]) * TICK, 2)


def _messages_before(book: _DayBook, rng: np.random.Generator, k: np.ndarray) -> np.ndarray:
    """A receive time for a message leading to snapshot k: in the last WINDOW_NS before it
    and after snapshot k - 1 (so a writer's hole stays a hole), at microseconds."""
    hi = book.received[k] - 1_000
    lo = np.maximum(book.received[k - 1], hi - demo_book.WINDOW_NS)
    return lo + (rng.random(len(k)) * (hi - lo)).astype(np.int64)


def _deltas_from_book(stream: _Stream, book: _DayBook, rows: int) -> list[pa.Table] | None:
    """The day's deltas drawn from its book (see `demo_book`): the previous day's rows, then
    the day proper with its resyncs; None if `rows` cannot hold the book's changes."""
    rng, first = stream.rng, book.first
    previous = [_previous_day_deltas(stream, book, first)] if first else []
    k, bid, tick, size = demo_book.transitions(book.table, first)
    resync_rows = len(stream.resync_rows) * SNAPSHOT_ROWS["book_delta_v2"]
    filler = rows - first - len(k) - resync_rows
    if filler < 0:
        return None
    # filler messages of 1-6 rows on levels no snapshot around them shows
    sizes = _message_sizes(rng, filler)
    fill_k = np.repeat(rng.integers(first + 1, len(book.received), len(sizes)), sizes)
    fill_bid = rng.random(filler) < 0.5
    depth = rng.integers(*demo_book.DEEP, filler)
    mid = (book.bid + book.ask) // 2
    fill_tick = mid[fill_k] + np.where(fill_bid, -depth, depth)
    fill_size = np.where(rng.random(filler) < 0.2, 0.0,
                         np.round(rng.lognormal(-1.0, 1.2, filler), 5) + 1e-5)
    # one message per snapshot's changes, one per filler group
    change_msg = np.unique(k, return_inverse=True)[1]
    fill_msg = np.repeat(np.arange(len(sizes)), sizes) + (change_msg.max(initial=-1) + 1)
    msg_of = np.concatenate([change_msg, fill_msg])
    msg_k = np.zeros(msg_of.max(initial=-1) + 1, dtype=np.int64)
    msg_k[msg_of] = np.concatenate([k, fill_k])
    # received between the two snapshots; written in exchange-time order, as the writer does
    msg_received = _messages_before(book, rng, msg_k)
    msg_origin = np.maximum(msg_received - rng.integers(NS_PER_MS, 50 * NS_PER_MS, len(msg_k)),
                            stream.day_start)
    all_bid = np.concatenate([bid, fill_bid])
    all_tick = np.concatenate([tick, fill_tick])
    order = np.lexsort((np.where(all_bid, -all_tick, all_tick), ~all_bid, msg_of,
                        msg_origin[msg_of]))
    msg_of = msg_of[order]
    new_msg = np.concatenate([[True], msg_of[1:] != msg_of[:-1]])
    sequence = stream.sequence + np.cumsum(np.where(new_msg, rng.integers(1, 20, len(order)), 0))
    day = pa.table({
        "timestamp": _as_writer_ns(msg_origin[msg_of], NS_PER_MS),
        "receipt_timestamp": _as_writer_ns(msg_received[msg_of], 1_000),
        "sequence_number": sequence,
        "side_is_bid": all_bid[order],
        "price": np.round(all_tick[order] * TICK, 2),
        "size": np.concatenate([size, fill_size])[order],
    })
    stream.sequence = int(sequence[-1])
    starts = np.flatnonzero(new_msg)
    for wanted in reversed(stream.resyncs_in(rows)):
        # at a message start near the wanted row, writing the levels of the snapshot the
        # message before it leads to (whether that snapshot's own changes come before or
        # after the resync, the book ends at those levels)
        at_msg = min(len(starts) - 1, int(np.searchsorted(starts, wanted)) + 1)
        at = int(starts[at_msg])
        snap = int(msg_k[msg_of[at - 1]]) if at else first
        day = _insert_resync(stream, day, at, _rest_snapshot(book, snap, rng), skipped=50_000)
    return [*previous, day]


def _rest_snapshot(book: _DayBook, k: int, rng: np.random.Generator) -> dict[str, list]:
    """The REST snapshot a resync writes when the book shows snapshot k: its 20 levels a
    side, then deeper ones, SNAPSHOT_LEVELS a side, bids first."""
    row = book.table.slice(k, 1).to_pydict()
    deep = SNAPSHOT_LEVELS - BOOK_LEVELS
    mid = int((book.bid[k] + book.ask[k]) // 2)
    sides: dict[str, list] = {"side_is_bid": [], "price": [], "size": []}
    for name, is_bid, sign in (("bid", True, -1), ("ask", False, 1)):
        prices = [row[f"{name}_{i}_price"][0] for i in range(BOOK_LEVELS)]
        prices += [round((mid + sign * (BOOK_LEVELS + 1 + d)) * TICK, 2) for d in range(deep)]
        sizes = [row[f"{name}_{i}_size"][0] for i in range(BOOK_LEVELS)]
        sizes += list(np.round(rng.lognormal(-1.0, 1.2, deep), 5) + 1e-5)
        sides["side_is_bid"] += [is_bid] * SNAPSHOT_LEVELS
        sides["price"] += prices
        sides["size"] += [float(x) for x in sizes]
    sides["timestamp"] = [0] * (2 * SNAPSHOT_LEVELS)
    return sides


def _previous_day_deltas(stream: _Stream, book: _DayBook, n: int) -> pa.Table:
    """The previous day's last moments opening the file: one deep-level row each."""
    rng = stream.rng
    origin = np.sort(stream.day_start - rng.integers(NS_PER_MS, 800 * NS_PER_MS, n))
    bid = rng.random(n) < 0.5
    mid = int((book.bid[0] + book.ask[0]) // 2)
    tick = mid + np.where(bid, -1, 1) * rng.integers(*demo_book.DEEP, n)
    sequence = stream.sequence + np.arange(1, n + 1)
    stream.sequence = int(sequence[-1])
    return pa.table({
        "timestamp": _as_writer_ns(origin, NS_PER_MS),
        "receipt_timestamp": stream.receipts(origin),
        "sequence_number": sequence,
        "side_is_bid": bid,
        "price": np.round(tick * TICK, 2),
        "size": np.round(rng.lognormal(-1.0, 1.2, n), 5) + 1e-5,
    })


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
    stream = _Stream(rng, day, resyncs, book_seed=_seed("book", instrument, day))
    drawn = table in ("trades", "book_delta_v2") and rows + count * SNAPSHOT_ROWS[table] \
        == DEMO_ROWS[table]
    if drawn:  # at the demo's size, from the day's book (see `demo_book`)
        stream.book = _DayBook(instrument, day, habits)
        if table == "book_delta_v2":
            chunks = _deltas_from_book(stream, stream.book, rows + count * SNAPSHOT_ROWS[table])
            if chunks is not None:
                yield from chunks
                return
    for ts in _times(rng, day, rows, habits):
        chunk = _BUILDERS[table](stream, ts)
        stream.row += len(ts)
        yield chunk
