"""A small L2 order-book simulator for the cross-table checks: one book evolves by delta
messages (bids first, absolute sizes, size 0 removes a level), the file starts mid-stream
(the initial book is never written), a resync writes the whole book as rows with a null
origin_time after a few lost messages, and snapshots (top 20 levels) and trades are taken
from the same book. Tables come out in the normalised `ready/` schema."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

TICK = 0.01
LEVELS = 20
TIME = pa.timestamp("ns", tz="UTC")
START_NS = 1_704_153_600 * 1_000_000_000  # 2024-01-02T00:00:00Z


def price_of(tick: int) -> float:
    return round(tick * TICK, 2)


@dataclass
class Message:
    t: int
    seq: int
    rows: list[tuple[bool, int, float]]  # (side_is_bid, tick, size), bids first
    resync: bool = False


@dataclass
class Snapshot:
    t: int
    seq: int
    after: int  # index of the last message applied
    bids: list[tuple[int, float]]
    asks: list[tuple[int, float]]


@dataclass
class OrderBookSim:
    seed: int = 7
    mid: int = 10_000
    step_ns: int = 50_000_000
    bids: dict[int, float] = field(default_factory=dict)
    asks: dict[int, float] = field(default_factory=dict)
    messages: list[Message] = field(default_factory=list)
    snapshots: list[Snapshot] = field(default_factory=list)
    trades: list[tuple[int, int, str, float, float]] = field(default_factory=list)
    t: int = START_NS
    seq: int = 1_000

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        for d in range(1, 41):  # the state before the file begins: never written
            self.bids[self.mid - d] = self._size()
            self.asks[self.mid + d] = self._size()

    def _size(self) -> float:
        return round(self.rng.uniform(0.001, 5.0), 4)

    def _changes(self) -> list[tuple[bool, int, float]]:
        if self.rng.random() < 0.1:  # the mid moves: levels that would cross are removed
            self.mid += self.rng.choice((-1, 1))
        changes = {(True, k): 0.0 for k in self.bids if k >= self.mid}
        changes |= {(False, k): 0.0 for k in self.asks if k <= self.mid}
        for _ in range(self.rng.randint(1, 4)):
            bid = self.rng.random() < 0.5
            tick = self.mid - self.rng.randint(1, 30) if bid else self.mid + self.rng.randint(1, 30)
            book = self.bids if bid else self.asks
            remove = tick in book and self.rng.random() < 0.25
            changes[(bid, tick)] = 0.0 if remove else self._size()
        return sorted(((b, k, s) for (b, k), s in changes.items()), key=lambda r: not r[0])

    def _apply(self, rows: list[tuple[bool, int, float]]) -> None:
        for bid, tick, size in rows:
            book = self.bids if bid else self.asks
            if size:
                book[tick] = size
            else:
                book.pop(tick, None)

    def message(self, written: bool = True) -> None:
        self.t += self.step_ns
        self.seq += self.rng.randint(1, 3)
        rows = self._changes()
        self._apply(rows)
        if written:
            self.messages.append(Message(self.t, self.seq, rows))

    def resync(self, lost: int = 3) -> None:
        """`lost` messages never reach the file, then the REST snapshot is written."""
        for _ in range(lost):
            self.message(written=False)
        self.t += self.step_ns
        rows = [(True, k, s) for k, s in sorted(self.bids.items(), reverse=True)]
        rows += [(False, k, s) for k, s in sorted(self.asks.items())]
        self.messages.append(Message(self.t, self.seq, rows, resync=True))

    def snapshot(self) -> None:
        """Taken after the last message, stamped with its receive time (ties are 'after')."""
        bids = sorted(self.bids.items(), reverse=True)[:LEVELS]
        asks = sorted(self.asks.items())[:LEVELS]
        self.snapshots.append(Snapshot(self.t, self.seq, len(self.messages) - 1, bids, asks))

    def trade(self, offset_ticks: int = 0) -> None:
        """A trade at the last snapshot's best bid or ask (pushed `offset_ticks` beyond it)."""
        snap = self.snapshots[-1]
        buy = self.rng.random() < 0.5
        tick = snap.asks[0][0] + offset_ticks if buy else snap.bids[0][0] - offset_ticks
        self.trades.append((self.t + 1_000, len(self.trades) + 1, "buy" if buy else "sell",
                            round(self.rng.uniform(0.001, 1.0), 4), price_of(tick)))

    def run(self, messages: int, snapshot_every: int = 10, trade_every: int = 5,
            resync_at: tuple[int, ...] = ()) -> OrderBookSim:
        for i in range(messages):
            if i in resync_at:
                self.resync()
            else:
                self.message()
            if i % snapshot_every == snapshot_every - 1:
                self.snapshot()
            if self.snapshots and i % trade_every == 0:
                self.trade()
        return self

    # -- tables ---------------------------------------------------------------------------

    def deltas_table(self, drop: frozenset[int] = frozenset()) -> pa.Table:
        cols: dict[str, list] = {c: [] for c in ("origin_time", "received_time",
                                                 "sequence_number", "side_is_bid", "price",
                                                 "size")}
        for i, m in enumerate(self.messages):
            if i in drop:
                continue
            for bid, tick, size in m.rows:
                cols["origin_time"].append(None if m.resync else m.t - 2_000_000)
                cols["received_time"].append(m.t)
                cols["sequence_number"].append(m.seq)
                cols["side_is_bid"].append(bid)
                cols["price"].append(price_of(tick))
                cols["size"].append(size)
        return pa.table(cols, schema=pa.schema([
            ("origin_time", TIME), ("received_time", TIME), ("sequence_number", pa.int64()),
            ("side_is_bid", pa.bool_()), ("price", pa.float64()), ("size", pa.float64())]))

    def book_table(self) -> pa.Table:
        cols: dict[str, list] = {"origin_time": [], "received_time": [], "sequence_number": []}
        fields = [("origin_time", TIME), ("received_time", TIME), ("sequence_number", pa.int64())]
        for side in ("bid", "ask"):
            for i in range(LEVELS):
                for f in ("price", "size"):
                    cols[f"{side}_{i}_{f}"] = []
                    fields.append((f"{side}_{i}_{f}", pa.float64()))
        for s in self.snapshots:
            cols["origin_time"].append(s.t - 2_000_000)
            cols["received_time"].append(s.t)
            cols["sequence_number"].append(s.seq)
            for side, levels in (("bid", s.bids), ("ask", s.asks)):
                for i in range(LEVELS):
                    tick, size = levels[i] if i < len(levels) else (None, None)
                    cols[f"{side}_{i}_price"].append(float("nan") if tick is None
                                                     else price_of(tick))
                    cols[f"{side}_{i}_size"].append(float("nan") if size is None else size)
        return pa.table(cols, schema=pa.schema(fields))

    def trades_table(self) -> pa.Table:
        t, ids, sides, qty, prices = (list(c) for c in zip(*self.trades, strict=True))
        return pa.table({"side": sides, "quantity": qty, "price": prices, "trade_id": ids,
                         "origin_time": pa.array([x - 2_000_000 for x in t], TIME),
                         "received_time": pa.array(t, TIME)})

    def write(self, directory: Path, drop: frozenset[int] = frozenset()) -> dict[str, Path]:
        paths = {name: directory / f"{name}.parquet" for name in ("book", "deltas", "trades")}
        pq.write_table(self.book_table(), paths["book"])
        pq.write_table(self.deltas_table(drop), paths["deltas"])
        pq.write_table(self.trades_table(), paths["trades"])
        return paths

    # -- what a test can expect -----------------------------------------------------------

    def detectable_drop(self, after: int = 0) -> tuple[int, Snapshot, bool, float]:
        """A message (index >= `after`) whose loss the next snapshot must show: one of its
        rows sets a size > 0 at a price already known since the last resync, to a new size,
        nothing touches that price again before the next snapshot, which shows it."""
        known: dict[tuple[bool, int], float] = {}
        for i, m in enumerate(self.messages):
            if m.resync:
                known = {}
            nxt = next((s for s in self.snapshots if s.after >= i), None)
            for bid, tick, size in m.rows:
                key = (bid, tick)
                if (i >= after and not m.resync and nxt and size and key in known
                        and known[key] != size and self._untouched(key, i + 1, nxt.after)
                        and tick in dict(nxt.bids if bid else nxt.asks)):
                    return i, nxt, bid, price_of(tick)
            for bid, tick, size in m.rows:
                known[(bid, tick)] = size
        raise AssertionError("no detectable drop in this simulation")

    def _untouched(self, key: tuple[bool, int], first: int, last: int) -> bool:
        return not any(m.resync or any((b, k) == key for b, k, _ in m.rows)
                       for m in self.messages[first:last + 1])
