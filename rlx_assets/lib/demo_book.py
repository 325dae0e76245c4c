"""One order book per demo day, which the three tables are drawn from (issue 16).

- `book` snapshots show a book that persists: its best bid and ask sit one tick either side
  of a mid (in ticks) that moves a tick now and then, its levels are consecutive ticks, and
  the size at each (side, price) changes every few snapshots (a function of side, price and
  snapshot index, so a level keeps its size as the mid moves past it).
- `book_delta_v2` is derived from those snapshots: between two snapshots, one message sets
  every level the second one shows that the first did not show at that size, and removes
  (size 0) every level the first showed that the second does not; messages for deeper
  levels, which no snapshot shows at the time, fill the day up to its row count. After each
  snapshot's message the levels it shows are exactly the last deltas at their prices, which
  is what `snapshots_agree_with_deltas` checks.
- `trades` print at the best ask (buys) or best bid (sells) of the latest snapshot.

At the demo's row counts (`DEMO_ROWS`) the deltas and trades are drawn from the book this
way; other row counts keep independent streams (a tiny test day cannot hold a book's
changes). The file starts mid-stream, as the vendor's do: the levels of the first snapshots
are not in the deltas, so they are "not verifiable".
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from rlx_assets.lib.tables import BOOK_LEVELS

TICK = 0.01
MID_MOVE = 0.05  # chance per snapshot that the mid moves (up or down, a tick)
DEEP = (25, 100)  # ticks from the mid of the levels the filler messages touch
WINDOW_NS = 5 * 10**9  # a message lands at most this long before the snapshot it leads to
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: well-spread uint64s from uint64s."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * _M1
        x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def _uniform(h: np.ndarray) -> np.ndarray:
    return ((h >> np.uint64(11)).astype(np.float64) + 0.5) / float(2**53)


def level_sizes(seed: int, is_bid: bool, ticks: np.ndarray, snapshot: np.ndarray) -> np.ndarray:
    """The size at (side, tick) at each snapshot index: redrawn every 5-60 snapshots, with a
    phase of its own, lognormal around 0.4."""
    cell = _mix(np.uint64(seed) ^ (ticks.astype(np.uint64) * np.uint64(2) + np.uint64(is_bid)))
    period = (cell % np.uint64(56)).astype(np.int64) + 5
    phase = ((cell >> np.uint64(8)).astype(np.int64) % period)
    version = (snapshot + phase) // period
    h1 = _mix(cell ^ (version.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)))
    h2 = _mix(h1)
    normal = np.sqrt(-2 * np.log(_uniform(h1))) * np.cos(2 * np.pi * _uniform(h2))
    return np.round(np.exp(-1.0 + 1.2 * normal), 5) + 1e-5


def mid_ticks(rng: np.random.Generator, start: int, n: int) -> np.ndarray:
    steps = np.where(rng.random(n) < MID_MOVE, rng.choice([-1, 1], n), 0)
    return start + np.cumsum(steps)


def book_columns(seed: int, mids: np.ndarray, first_snapshot: int) -> dict[str, np.ndarray]:
    """`bid_<i>_price/size`, `ask_<i>_price/size` of snapshots `first_snapshot...` whose mids
    (in ticks) are `mids`."""
    snapshot = np.arange(first_snapshot, first_snapshot + len(mids))
    cols: dict[str, np.ndarray] = {}
    for side, sign in (("bid", -1), ("ask", 1)):
        for i in range(BOOK_LEVELS):
            ticks = mids + sign * (i + 1)
            cols[f"{side}_{i}_price"] = np.round(ticks * TICK, 2)
            cols[f"{side}_{i}_size"] = level_sizes(seed, side == "bid", ticks, snapshot)
    return cols


def _levels(book: pa.Table) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ticks, sizes, is_bid) of every snapshot's levels: arrays of shape (snapshots, 40)."""
    names = [(s, i) for s in ("bid", "ask") for i in range(BOOK_LEVELS)]
    ticks = np.column_stack([np.rint(book.column(f"{s}_{i}_price").to_numpy() / TICK)
                             for s, i in names]).astype(np.int64)
    sizes = np.column_stack([book.column(f"{s}_{i}_size").to_numpy() for s, i in names])
    return ticks, sizes, np.array([s == "bid" for s, _ in names])


def transitions(book: pa.Table, first: int) -> tuple[np.ndarray, ...]:
    """The rows that take each snapshot k > `first` from snapshot k - 1's levels to its own:
    (k, is_bid, tick, size), bids first, by k. Levels shown by k - 1 at the same size need
    none; levels k - 1 showed and k does not get size 0."""
    ticks, sizes, is_bid = _levels(book)
    ks, bids, out_ticks, out_sizes = [], [], [], []
    for side in (True, False):
        cols = is_bid == side
        t, s = ticks[:, cols], sizes[:, cols]
        prev_t, prev_s, cur_t, cur_s = t[first:-1], s[first:-1], t[first + 1:], s[first + 1:]
        k = np.arange(first + 1, len(t))[:, None].repeat(t.shape[1], axis=1)
        # shown by k: new, or at another size than k - 1 showed
        same = (cur_t[:, :, None] == prev_t[:, None, :]) & (cur_s[:, :, None] == prev_s[:, None, :])
        changed = ~same.any(axis=2)
        # shown by k - 1, not by k: removed
        gone = ~(prev_t[:, :, None] == cur_t[:, None, :]).any(axis=2)
        for mask, tt, ss in ((changed, cur_t, cur_s), (gone, prev_t, np.zeros_like(prev_s))):
            ks.append(k[mask])
            bids.append(np.full(mask.sum(), side))
            out_ticks.append(tt[mask])
            out_sizes.append(ss[mask])
    k, bid, tick, size = (np.concatenate(x) for x in (ks, bids, out_ticks, out_sizes))
    order = np.lexsort((np.where(bid, -tick, tick), ~bid, k))  # by k, bids first, best first
    return k[order], bid[order], tick[order], size[order]
