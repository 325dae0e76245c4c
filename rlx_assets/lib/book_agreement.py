"""Do the day's `book` snapshots agree with its `book_delta_v2` stream? (issue 16, part 1)

A delta row carries the absolute size at (side, price); the size there at time t is the last
delta at that (side, price) received up to t (time axis: see `cross_table`). A resync (rows
with a null origin_time: the REST snapshot written as deltas) resets what is known: its rows
become the known state, and a price last seen before it is no longer verifiable. Each
snapshot level (side, price, size) is compared with that size if known ("compared"), else
counted as not verifiable (the file starts mid-stream). A known size of 0 that the snapshot
shows is a disagreement; a price missing from the snapshot is not compared, and a level at a
price that is not positive is never verifiable.

The work is one polars as-of join per time slice: the slice's snapshot levels, one row per
level in time order, against the slice's deltas (after the last delta per (side, price)
carried from earlier slices), backward on the receive time, by (side, price) packed into one
int64 key: the price's IEEE-754 bits, exact (equal prices, equal keys), with the sign bit
marking bids, which is free because a positive price's sign bit is 0.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from rlx_assets.lib.checks import CheckOutcome
from rlx_assets.lib.read_ahead import read_ahead
from rlx_assets.lib.time_slices import (
    NS,
    read_slice,
    slice_seconds_for,
    spans_with_nulls,
    time_slices,
)
from rlx_assets.lib.timestamps import format_ns

SNAPSHOTS_AGREE = "snapshots_agree_with_deltas"
BOOK_LEVELS = 20
FIRST_SHOWN = 5
HOUR_NS = 3600 * NS
SLICE_ROWS = 750_000  # delta rows, or snapshot levels, in one slice at most (memory)
_SIDES = [(side, i) for side in ("bid", "ask") for i in range(BOOK_LEVELS)]
_WIDTH = len(_SIDES)
_BID_BIT = np.int64(-(2**63))  # the sign bit
_SIDE_BITS = np.array([_BID_BIT] * BOOK_LEVELS + [0] * BOOK_LEVELS, dtype=np.int64)
# keys no positive price has (NaN bits with the bid bit), one for deltas and one for levels
# at a price that is not positive, so that such a level never meets such a delta
_NO_DELTA_KEY, _NO_LEVEL_KEY = np.int64(-1), np.int64(-2)


def _sizes_equal(a: pl.Expr, b: pl.Expr) -> pl.Expr:
    """Exact equality up to float noise (relative 1e-9, absolute 1e-12)."""
    return (a - b).abs() <= pl.max_horizontal(a.abs(), b.abs()) * 1e-9 + 1e-12


def _frame_of_deltas(rows: pl.DataFrame) -> pl.DataFrame:
    """`t`, `key`, `size`, `epoch` of the rows with a side, a price and a size; the key is
    `_NO_DELTA_KEY` where the price is not positive."""
    given = ["side_is_bid", "price", "size"]
    if any(rows[c].null_count() for c in given):
        rows = rows.drop_nulls(given)
    price = rows["price"].to_numpy()
    key = price.view(np.int64) | np.where(rows["side_is_bid"].to_numpy(), _BID_BIT, 0)
    key[~(price > 0)] = _NO_DELTA_KEY
    return rows.select("t", pl.Series("key", key), "size", "epoch")


class _DeltaStream:
    """The delta stream read slice by slice, numbering resync epochs in file order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.epoch = 0  # resyncs seen so far
        self.in_resync = False  # the previous slice ended inside a resync block
        # where resync rows may be: origin_time is decoded only in slices that meet these
        self.resync_spans = spans_with_nulls(path, "origin_time")

    def read(self, lo: int, hi: int) -> tuple[pl.DataFrame, int, int]:
        """Every row of the slice in time order (ties in file order), with its `epoch`; and
        the epochs in force when the slice starts and when it ends."""
        may_resync = any(a < hi and b >= lo for a, b in self.resync_spans)
        resync = pl.col("origin_time").is_null() if may_resync else pl.lit(False)
        rows = read_slice(self.path, [pl.col("side_is_bid"), pl.col("price").cast(pl.Float64),
                                      pl.col("size").cast(pl.Float64), resync.alias("resync")],
                          lo, hi)
        start_epoch = self.epoch
        if rows["resync"].any():
            block_start = pl.col("resync") & ~pl.col("resync").shift(
                1, fill_value=self.in_resync)
            rows = rows.with_columns(epoch=block_start.cum_sum().cast(pl.Int64) + start_epoch)
            self.epoch = int(rows["epoch"][-1])
        else:
            rows = rows.with_columns(epoch=pl.lit(start_epoch, pl.Int64))
        if rows.height:
            self.in_resync = bool(rows["resync"][-1])
        if not rows["t"].is_sorted():
            rows = rows.sort("t", maintain_order=True)
        return rows, start_epoch, self.epoch


def _levels(book: Path, lo: int, hi: int) -> pl.DataFrame:
    """The slice's snapshot levels, one row per (snapshot, level) in time order, bids 0..19
    then asks 0..19 within a snapshot: `t`, `column` (0..39), `present` (price and size
    given), `key` (`_NO_LEVEL_KEY` unless present at a positive price), `price`, `size`."""
    wide = read_slice(book, [pl.col(f"{s}_{i}_{f}").cast(pl.Float64) for s, i in _SIDES
                             for f in ("price", "size")], lo, hi)
    if not wide["t"].is_sorted():  # the as-of join needs its levels in time order
        wide = wide.sort("t", maintain_order=True)
    # (snapshots, 40) in row-major order: a snapshot's levels side by side (null reads NaN)
    prices = np.ascontiguousarray(wide.select(f"{s}_{i}_price" for s, i in _SIDES).to_numpy())
    sizes = wide.select(f"{s}_{i}_size" for s, i in _SIDES).to_numpy().ravel(order="C")
    key = (prices.view(np.int64) | _SIDE_BITS).ravel()
    prices = prices.ravel()
    present = ~(np.isnan(prices) | np.isnan(sizes))
    valid = present & (prices > 0)
    if not valid.all():
        key[~valid] = _NO_LEVEL_KEY
    return pl.DataFrame({
        "t": np.repeat(wide["t"].to_numpy(), _WIDTH),
        "column": np.tile(np.arange(_WIDTH, dtype=np.int8), wide.height),
        "present": present, "key": key, "price": prices, "size": sizes})


def _with_epoch_in_force(levels: pl.DataFrame, rows: pl.DataFrame, start_epoch: int,
                         end_epoch: int) -> pl.DataFrame:
    """`levels` with `now`, the epoch in force at each one's time (from the slice's delta
    rows in time order)."""
    if start_epoch == end_epoch:
        return levels.with_columns(now=pl.lit(start_epoch, pl.Int64))
    epochs = np.concatenate([[start_epoch], rows["epoch"].to_numpy()])
    at = np.searchsorted(rows["t"].to_numpy(), levels["t"].to_numpy(), side="right")
    return levels.with_columns(now=pl.Series(epochs[at]))


@dataclass
class _Slice:
    """One slice's comparable delta rows (time order) and book levels, with the resync
    epochs in force when the slice starts and when it ends."""

    lo: int
    hi: int
    deltas: pl.DataFrame
    levels: pl.DataFrame
    start_epoch: int
    end_epoch: int


def _slices(book: Path, deltas: Path, slice_seconds: int) -> Iterator[_Slice]:
    """Both files slice by slice, the next slice read while the caller judges this one, and
    within a slice the book read beside the deltas."""
    stream = _DeltaStream(deltas)
    with ThreadPoolExecutor(1) as book_reader:

        def read(bounds: tuple[int, int]) -> _Slice:
            lo, hi = bounds
            levels = book_reader.submit(_levels, book, lo, hi)
            rows, start_epoch, end_epoch = stream.read(lo, hi)
            frame = _frame_of_deltas(rows)
            return _Slice(lo, hi, frame, _with_epoch_in_force(levels.result(), rows,
                                                              start_epoch, end_epoch),
                          start_epoch, end_epoch)

        yield from read_ahead(read, time_slices([book, deltas], slice_seconds))


_VERIFIABLE = (pl.col("delta_epoch") == pl.col("now")).fill_null(False)
_AGREE = _VERIFIABLE & _sizes_equal(pl.col("size"), pl.col("delta_size"))
_COUNTS = {"total": pl.col("present").sum(), "compared": _VERIFIABLE.sum(),
           "agreeing": _AGREE.sum()}


def _judge(levels: pl.DataFrame, deltas: pl.DataFrame) -> pl.DataFrame:
    """Each level with the last delta at its side and price up to its time: `delta_size`
    and `delta_epoch`, null if none. The level is verifiable (`_VERIFIABLE`) when that delta
    belongs to the epoch in force at its time, and agrees (`_AGREE`) when the sizes match."""
    return levels.join_asof(deltas.rename({"size": "delta_size", "epoch": "delta_epoch"}),
                            on="t", by="key", strategy="backward", check_sortedness=False)


def snapshots_agree_with_deltas(book: Path, deltas: Path, min_agreement: float = 0.99,
                                slice_seconds: int | None = None) -> CheckOutcome:
    """`slice_seconds` by default: an hour, or the divisor of one that keeps every slice
    within `SLICE_ROWS` delta rows and snapshot levels (a busy day is cut finer)."""
    if slice_seconds is None:
        slice_seconds = slice_seconds_for({Path(book): _WIDTH, Path(deltas): 1}, SLICE_ROWS)
    hours: list[pl.DataFrame] = []
    first: list[dict[str, object]] = []
    resyncs = 0
    carried = pl.DataFrame()  # the last delta per (side, price) of the epoch in force
    for piece in _slices(Path(book), Path(deltas), slice_seconds):
        # in one chunk: polars' as-of join is a fifth slower over a chunk per row group
        rows = pl.concat([carried.with_columns(t=pl.lit(piece.lo - 1, pl.Int64)),
                          piece.deltas], rechunk=True) if carried.height else piece.deltas.rechunk()
        judged = _judge(piece.levels, rows)
        carried = rows.filter((pl.col("epoch") == piece.end_epoch)
                              & pl.col("key").is_last_distinct())
        resyncs = piece.end_epoch
        tally = _tally(judged, piece.lo, piece.hi)
        hours.append(tally)
        if len(first) < FIRST_SHOWN and (tally["compared"] > tally["agreeing"]).any():
            first += _first_disagreements(judged, FIRST_SHOWN - len(first))
    return _outcome(hours, first, resyncs, min_agreement, slice_seconds)


def _tally(judged: pl.DataFrame, lo: int, hi: int) -> pl.DataFrame:
    """Levels present, compared and agreeing per hour of the slice [lo, hi)."""
    if lo // HOUR_NS == (hi - 1) // HOUR_NS:  # one hour: no grouping needed
        return judged.lazy().select(hour=pl.lit(lo // HOUR_NS, pl.Int64), **_COUNTS).collect()
    return judged.lazy().group_by(hour=pl.col("t") // HOUR_NS).agg(**_COUNTS).collect()


def _first_disagreements(judged: pl.DataFrame, limit: int) -> list[dict[str, object]]:
    """The first `limit` disagreements by time, bids before asks, then level (the order of
    the levels' rows)."""
    bad = judged.lazy().filter(_VERIFIABLE & ~_AGREE).head(limit).collect()
    return [{"time": format_ns(row["t"]), "side": "bid" if row["column"] < BOOK_LEVELS
             else "ask", "level": row["column"] % BOOK_LEVELS, "price": row["price"],
             "snapshot_size": row["size"], "delta_size": row["delta_size"]}
            for row in bad.iter_rows(named=True)]


def _outcome(hours: list[pl.DataFrame], first: list[dict[str, object]], resyncs: int,
             min_agreement: float, slice_seconds: int) -> CheckOutcome:
    per_hour = (pl.concat(hours).group_by("hour").sum().sort("hour") if hours
                else pl.DataFrame(schema={"hour": pl.Int64, "total": pl.UInt32,
                                          "compared": pl.UInt32, "agreeing": pl.UInt32}))
    levels_total = int(per_hour["total"].sum() or 0)
    compared = int(per_hour["compared"].sum() or 0)
    agreeing = int(per_hour["agreeing"].sum() or 0)
    unverifiable = levels_total - compared
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
