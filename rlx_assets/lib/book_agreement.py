"""Do the day's `book` snapshots agree with its `book_delta_v2` stream? (issue 16, part 1)

A delta row carries the absolute size at (side, price); the size there at time t is the last
delta at that (side, price) received up to t (time axis: see `cross_table`). A resync (rows
with a null origin_time: the REST snapshot written as deltas) resets what is known: its rows
become the known state, and a price last seen before it is no longer verifiable. Each
snapshot level (side, price, size) is compared with that size if known ("compared"), else
counted as not verifiable (the file starts mid-stream). A known size of 0 that the snapshot
shows is a disagreement; a price missing from the snapshot is not compared.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from rlx_assets.lib.checks import CheckOutcome
from rlx_assets.lib.read_ahead import read_ahead
from rlx_assets.lib.time_slices import NS, read_slice, time_slices
from rlx_assets.lib.timestamps import format_ns

SNAPSHOTS_AGREE = "snapshots_agree_with_deltas"
BOOK_LEVELS = 20
FIRST_SHOWN = 5
HOUR_NS = 3600 * NS
_SIDES = [(side, i) for side in ("bid", "ask") for i in range(BOOK_LEVELS)]
_WIDTH = len(_SIDES)
_MAX_DECIMALS = 10
_KEY_BITS = 63  # a sort key is one int64


def sizes_equal(a: pl.Expr, b: pl.Expr) -> pl.Expr:
    """Exact equality up to float noise (relative 1e-9, absolute 1e-12)."""
    return (a - b).abs() <= pl.max_horizontal(a.abs(), b.abs()) * 1e-9 + 1e-12


@dataclass
class _Deltas:
    """Delta rows in time order: carried rows first, then a slice's rows."""

    t: np.ndarray
    side_is_bid: np.ndarray
    price: np.ndarray
    size: np.ndarray
    epoch: np.ndarray

    @classmethod
    def empty(cls) -> _Deltas:
        return cls(*(np.empty(0, dtype) for dtype in (np.int64, bool, np.float64, np.float64,
                                                      np.int64)))

    def take(self, index: np.ndarray) -> _Deltas:
        return _Deltas(*(a[index] for a in (self.t, self.side_is_bid, self.price, self.size,
                                            self.epoch)))

    def after(self, carried: _Deltas, lo: int) -> _Deltas:
        """`carried` (stamped just before the slice), then these rows, in time order (ties
        in file order)."""
        both = _Deltas(np.concatenate([np.full(carried.t.size, lo - 1), self.t]),
                       *(np.concatenate([c, r]) for c, r in (
                           (carried.side_is_bid, self.side_is_bid), (carried.price, self.price),
                           (carried.size, self.size), (carried.epoch, self.epoch))))
        if both.t.size and np.any(both.t[1:] < both.t[:-1]):
            both = both.take(np.argsort(both.t, kind="stable"))
        return both


@dataclass
class _Levels:
    """The present levels of a slice's snapshots. Level k of the flattened wide table is
    snapshot k % n, column k // n (bid 0..19, then ask 0..19)."""

    t: np.ndarray  # per snapshot
    snapshot: np.ndarray  # per present level: its snapshot (row)
    column: np.ndarray  # per present level: 0..19 bid levels, 20..39 ask levels
    price: np.ndarray
    size: np.ndarray

    @classmethod
    def read(cls, book: Path, lo: int, hi: int) -> _Levels:
        wide = read_slice(book, [pl.col(f"{s}_{i}_{f}").cast(pl.Float64) for s, i in _SIDES
                                 for f in ("price", "size")], lo, hi)
        # column-major flattening: a view of polars' Fortran-ordered export, no copy
        prices = wide.select(f"{s}_{i}_price" for s, i in _SIDES).to_numpy().ravel(order="F")
        sizes = wide.select(f"{s}_{i}_size" for s, i in _SIDES).to_numpy().ravel(order="F")
        index = np.flatnonzero(~(np.isnan(prices) | np.isnan(sizes)))  # null reads as NaN
        column, snapshot = np.divmod(index, max(wide.height, 1))
        return cls(wide["t"].to_numpy(), snapshot, column, prices[index], sizes[index])


@dataclass
class _Slice:
    """One slice's delta rows (time order) and book levels, with the resync epochs in force
    when the slice starts and when it ends."""

    lo: int
    deltas: _Deltas
    levels: _Levels
    start_epoch: int
    end_epoch: int


class _DeltaStream:
    """The delta stream read slice by slice, numbering resync epochs in file order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.epoch = 0  # resyncs seen so far
        self.in_resync = False  # the previous slice ended inside a resync block

    def read(self, lo: int, hi: int) -> tuple[_Deltas, int, int]:
        """The slice's rows in file order, each with its epoch; and the epochs in force when
        the slice starts and when it ends."""
        rows = read_slice(self.path, [pl.col("side_is_bid"), pl.col("price").cast(pl.Float64),
                                      pl.col("size").cast(pl.Float64),
                                      pl.col("origin_time").is_null().alias("resync")], lo, hi)
        start_epoch = self.epoch
        block_start = pl.col("resync") & ~pl.col("resync").shift(1, fill_value=self.in_resync)
        rows = rows.with_columns(epoch=block_start.cum_sum().cast(pl.Int64) + start_epoch)
        if rows.height:
            self.epoch = int(rows["epoch"][-1])
            self.in_resync = bool(rows["resync"][-1])
        rows = rows.drop_nulls(["side_is_bid", "price", "size"])
        fresh = _Deltas(*(rows[c].to_numpy() for c in ("t", "side_is_bid", "price", "size",
                                                       "epoch")))
        return fresh, start_epoch, self.epoch


def _slices(book: Path, deltas: Path, slice_seconds: int) -> Iterator[_Slice]:
    """Both files slice by slice, the next slice read while the caller judges this one."""
    stream = _DeltaStream(deltas)

    def read(bounds: tuple[int, int]) -> _Slice:
        lo, hi = bounds
        rows, start_epoch, end_epoch = stream.read(lo, hi)
        return _Slice(lo, rows, _Levels.read(book, lo, hi), start_epoch, end_epoch)

    return read_ahead(read, time_slices([book, deltas], slice_seconds))


def _grid_ticks(prices: np.ndarray, decimals: int) -> np.ndarray | None:
    """`prices` in units of 10**-decimals, or None if one is not on that grid (beyond float
    noise) or too large to count exactly."""
    scaled = prices * 10.0 ** decimals
    ticks = np.rint(scaled)
    np.subtract(scaled, ticks, out=scaled)
    if prices.size and (np.abs(scaled, out=scaled).max() > 1e-6
                        or max(-ticks.min(), ticks.max()) >= 2**52):
        return None
    return ticks


def _decimals(prices: np.ndarray) -> int | None:
    """The fewest decimals every price sits on, if any up to 10."""
    return next((d for d in range(_MAX_DECIMALS + 1) if _grid_ticks(prices, d) is not None),
                None)


def _ticks(deltas: np.ndarray, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each price as an integer from 0: in units of the coarsest decimal tick every price
    sits on (guessed from a sample, then checked on all), else its rank among the distinct
    prices. Equal prices get equal integers, different prices different ones."""
    decimals = _decimals(np.concatenate([deltas[:1000], levels[:1000]]))
    ticks = [None, None] if decimals is None else [_grid_ticks(p, decimals)
                                                   for p in (deltas, levels)]
    if ticks[0] is None or ticks[1] is None:
        decimals = _decimals(np.concatenate([deltas, levels]))
        if decimals is None:
            ranks = np.unique(np.concatenate([deltas, levels]), return_inverse=True)[1]
            return ranks[:deltas.size].astype(np.int64), ranks[deltas.size:].astype(np.int64)
        ticks = [_grid_ticks(p, decimals) for p in (deltas, levels)]
    low = min((t.min() for t in ticks if t.size), default=0.0)
    return tuple((t - low).astype(np.int64) for t in ticks)


def _sorted_with_order(key: np.ndarray, key_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """`key` (non-negative, under 2**key_bits) sorted, and the permutation that sorts it:
    one sort of the key packed with its index where both fit in 63 bits (numpy sorts int64
    several times faster than it argsorts), else a stable argsort."""
    index_bits = max(key.size - 1, 1).bit_length()
    if key_bits + index_bits <= _KEY_BITS:
        packed = key << index_bits
        packed |= np.arange(key.size)
        packed.sort()
        return packed >> index_bits, packed & ((1 << index_bits) - 1)
    order = np.argsort(key, kind="stable")
    return key[order], order


def _last_delta(d_slot: np.ndarray, l_slot: np.ndarray,
                l_before: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each level, the index of the last delta at its slot among the first `l_before`
    deltas (-1 if none), and the index of the last delta at each slot.

    Deltas are sorted by int64 keys (slot, position from 1), levels by (slot, deltas up to
    it): a level's last delta is the one just before where its key enters the deltas' order
    (one search of sorted keys), kept where its slot is the level's. Slots too large to pack
    beside a position are renumbered densely first."""
    n, m = d_slot.size, l_slot.size
    if not n:
        return np.full(m, -1, dtype=np.int64), np.empty(0, dtype=np.int64)
    pos_bits = (n + 1).bit_length()
    top = int(max(d_slot.max(), l_slot.max(initial=0)))
    if top.bit_length() + pos_bits > _KEY_BITS:
        dense = np.unique(np.concatenate([d_slot, l_slot]), return_inverse=True)[1]
        d_slot, l_slot, top = dense[:n], dense[n:], int(dense.max())
    key_bits, mask = top.bit_length() + pos_bits, (1 << pos_bits) - 1
    d_keys = d_slot << pos_bits
    d_keys |= np.arange(1, n + 1)
    d_keys.sort()
    l_keys, l_order = _sorted_with_order((l_slot << pos_bits) | l_before, key_bits)
    at = np.searchsorted(d_keys, l_keys, side="right") - 1
    hit = d_keys[np.maximum(at, 0)]
    found = (at >= 0) & ((hit >> pos_bits) == (l_keys >> pos_bits))
    last = np.empty(m, dtype=np.int64)
    last[l_order] = np.where(found, (hit & mask) - 1, -1)
    d_sorted_slot = d_keys >> pos_bits
    ends = np.append(d_sorted_slot[1:] != d_sorted_slot[:-1], True)
    return last, (d_keys[ends] & mask) - 1


@dataclass
class _Judged:
    """The levels of one slice, judged (in `_Levels` order)."""

    levels: _Levels
    delta_size: np.ndarray  # NaN where no delta is known at that side and price
    verifiable: np.ndarray
    agree: np.ndarray


def _compare_slice(levels: _Levels, deltas: _Deltas, start_epoch: int) -> tuple[_Judged,
                                                                                np.ndarray]:
    """Each level against the last delta at its side and price up to its time (`delta_size`),
    `verifiable` when that delta belongs to the epoch in force at its time; and the index of
    the last delta per (side, price), the state carried into the next slice."""
    before = np.searchsorted(deltas.t, levels.t, side="right")  # deltas up to each snapshot
    # indexed by delta + 1, so that "none" (-1) reads the first entry
    epochs = np.concatenate([[start_epoch], deltas.epoch])
    now = epochs[before]
    snapshot, bid = levels.snapshot, levels.column < BOOK_LEVELS
    d_ticks, l_ticks = _ticks(deltas.price, levels.price)
    last, last_per_slot = _last_delta(d_ticks * 2 + deltas.side_is_bid, l_ticks * 2 + bid,
                                      before[snapshot])
    delta_size = np.concatenate([[np.nan], deltas.size])[last + 1]
    verifiable = (last >= 0) & (epochs[last + 1] == now[snapshot])
    close = np.abs(levels.size - delta_size) <= np.maximum(np.abs(levels.size),
                                                           np.abs(delta_size)) * 1e-9 + 1e-12
    return _Judged(levels, delta_size, verifiable, verifiable & close), last_per_slot


def snapshots_agree_with_deltas(book: Path, deltas: Path, min_agreement: float = 0.99,
                                slice_seconds: int = 3600) -> CheckOutcome:
    levels_total = unverifiable = resyncs = 0
    hours: list[pl.DataFrame] = []
    first: list[dict[str, object]] = []
    carried = _Deltas.empty()  # the last delta per (side, price) of the epoch in force
    for piece in _slices(Path(book), Path(deltas), slice_seconds):
        rows = piece.deltas.after(carried, piece.lo)
        judged, last_per_slot = _compare_slice(piece.levels, rows, piece.start_epoch)
        carried = rows.take(last_per_slot)
        carried = carried.take(np.flatnonzero(carried.epoch == piece.end_epoch))
        resyncs = piece.end_epoch
        if not piece.levels.size.size:
            continue
        levels_total += piece.levels.size.size
        unverifiable += int((~judged.verifiable).sum())
        hours.append(_per_hour(judged))
        if len(first) < FIRST_SHOWN:
            first += _first_disagreements(judged, FIRST_SHOWN - len(first))
    return _outcome(levels_total, unverifiable, hours, first, resyncs, min_agreement,
                    slice_seconds)


def _per_hour(judged: _Judged) -> pl.DataFrame:
    """Levels compared and agreeing per hour: counted per snapshot, then summed by hour."""
    snapshots = judged.levels.t.size
    per_snapshot = {name: np.bincount(judged.levels.snapshot, weights=flags,
                                      minlength=snapshots).astype(np.int64)
                    for name, flags in (("compared", judged.verifiable),
                                        ("agreeing", judged.agree))}
    return pl.DataFrame({"hour": judged.levels.t // HOUR_NS, **per_snapshot}).group_by(
        "hour").sum()


def _first_disagreements(judged: _Judged, limit: int) -> list[dict[str, object]]:
    """The first `limit` disagreements by time, bids before asks, then level."""
    bad = np.flatnonzero(judged.verifiable & ~judged.agree)
    levels = judged.levels
    order = np.lexsort((levels.column[bad], levels.t[levels.snapshot[bad]]))[:limit]
    return [_located(levels, judged, i) for i in bad[order]]


def _located(levels: _Levels, judged: _Judged, i: int) -> dict[str, object]:
    column = int(levels.column[i])
    return {"time": format_ns(int(levels.t[levels.snapshot[i]])),
            "side": "bid" if column < BOOK_LEVELS else "ask", "level": column % BOOK_LEVELS,
            "price": float(levels.price[i]), "snapshot_size": float(levels.size[i]),
            "delta_size": float(judged.delta_size[i])}


def _outcome(levels_total: int, unverifiable: int, hours: list[pl.DataFrame],
             first: list[dict[str, object]], resyncs: int, min_agreement: float,
             slice_seconds: int) -> CheckOutcome:
    per_hour = (pl.concat(hours).group_by("hour").sum().sort("hour") if hours
                else pl.DataFrame(schema={"hour": pl.Int64, "compared": pl.UInt32,
                                          "agreeing": pl.UInt32}))
    compared = int(per_hour["compared"].sum() or 0)
    agreeing = int(per_hour["agreeing"].sum() or 0)
    rate = agreeing / compared if compared else None
    worst = None
    if compared:
        per_hour = per_hour.filter(pl.col("compared") > 0).with_columns(
            rate=pl.col("agreeing") / pl.col("compared")).sort(["rate", "hour"])
        hour = per_hour.row(0, named=True)
        worst = {"hour": format_ns(hour["hour"] * HOUR_NS), "agreement_rate": hour["rate"],
                 "levels_compared": int(hour["compared"])}
    passed = rate is None or rate >= min_agreement
    meta: dict[str, object] = {
        "levels_total": levels_total, "levels_compared": compared, "levels_agreeing": agreeing,
        "agreement_rate": rate, "levels_not_verifiable": unverifiable, "worst_hour": worst,
        "first_disagreements": first, "resyncs": resyncs, "min_agreement": min_agreement,
        "slice_seconds": slice_seconds}
    if rate is None:
        text = f"no snapshot level verifiable from the deltas ({levels_total:,} levels)"
    else:
        text = (f"{rate:.4%} of {compared:,} snapshot levels agree with the deltas (warn below "
                f"{min_agreement:.2%}); {unverifiable:,} not verifiable; worst hour "
                f"{worst['hour'][:16]}Z at {worst['agreement_rate']:.4%}")
        if first:
            text += (f"; first disagreement {first[0]['time']} {first[0]['side']} "
                     f"{first[0]['price']:g}")
    violations = () if passed else (f"{compared - agreeing} disagreeing snapshot levels",) + tuple(
        f"{d['time']} {d['side']} {d['price']!r}: snapshot {d['snapshot_size']!r}, delta "
        f"{d['delta_size']!r}" for d in first)
    return CheckOutcome(SNAPSHOTS_AGREE, passed, text, meta, blocking=False,
                        violations=violations)
