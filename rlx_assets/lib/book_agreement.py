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

from pathlib import Path

import polars as pl

from rlx_assets.lib.checks import CheckOutcome
from rlx_assets.lib.continuity import format_ns
from rlx_assets.lib.time_slices import NS, read_slice, time_slices

SNAPSHOTS_AGREE = "snapshots_agree_with_deltas"
BOOK_LEVELS = 20
FIRST_SHOWN = 5
HOUR_NS = 3600 * NS
_KEY = ["side_is_bid", "price"]
_STATE = {"t": pl.Int64, "side_is_bid": pl.Boolean, "price": pl.Float64,
          "size": pl.Float64, "epoch": pl.Int64}


def sizes_equal(a: pl.Expr, b: pl.Expr) -> pl.Expr:
    """Exact equality up to float noise (relative 1e-9, absolute 1e-12)."""
    return (a - b).abs() <= pl.max_horizontal(a.abs(), b.abs()) * 1e-9 + 1e-12


def _snapshot_levels(book: Path, lo: int, hi: int) -> pl.DataFrame:
    """One row per present level of the slice's snapshots: t, side_is_bid, level, price, size."""
    wide = read_slice(book, [pl.col(f"{s}_{i}_{f}") for s in ("bid", "ask")
                             for i in range(BOOK_LEVELS) for f in ("price", "size")], lo, hi)
    parts = [wide.select("t", pl.lit(side == "bid").alias("side_is_bid"),
                         pl.lit(i, pl.Int32).alias("level"),
                         pl.col(f"{side}_{i}_price").cast(pl.Float64).alias("price"),
                         pl.col(f"{side}_{i}_size").cast(pl.Float64).alias("size"))
             for side in ("bid", "ask") for i in range(BOOK_LEVELS)]
    levels = pl.concat(parts).filter(pl.col("price").is_not_null() & pl.col("price").is_not_nan()
                                     & pl.col("size").is_not_null() & pl.col("size").is_not_nan())
    return levels.sort("t", maintain_order=True)


class _Deltas:
    """The delta stream read slice by slice, numbering resync epochs in file order and keeping
    the last (side, price) state of the current epoch across slices."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.epoch = 0  # resyncs seen so far
        self.in_resync = False  # the previous slice ended inside a resync block
        self.state = pl.DataFrame(schema=_STATE)

    def read(self, lo: int, hi: int) -> tuple[pl.DataFrame, int]:
        """Everything known in the slice (the carried state, then the slice's rows, by time),
        and the epoch in force when the slice starts."""
        rows = read_slice(self.path, [pl.col("side_is_bid"), pl.col("price"), pl.col("size"),
                                      pl.col("origin_time").is_null().alias("resync")], lo, hi)
        start_epoch = self.epoch
        block_start = pl.col("resync") & ~pl.col("resync").shift(1, fill_value=self.in_resync)
        rows = rows.with_columns(epoch=block_start.cum_sum().cast(pl.Int64) + start_epoch)
        if rows.height:
            self.epoch = int(rows["epoch"][-1])
            self.in_resync = bool(rows["resync"][-1])
        known = pl.concat([self.state, rows.select(list(_STATE))]).sort("t", maintain_order=True)
        self.state = (known.group_by(_KEY).agg(pl.all().last())
                      .filter(pl.col("epoch") == self.epoch).select(list(_STATE)))
        return known, start_epoch


def _compare_slice(levels: pl.DataFrame, known: pl.DataFrame, start_epoch: int) -> pl.DataFrame:
    """Levels with `verifiable`, `delta_size` and `agree`. `now` is the epoch in force at the
    snapshot's time (that of the last delta row up to it; carried rows are of the start epoch);
    a level is verifiable when its last delta belongs to that epoch."""
    epochs = known.select("t", pl.col("epoch").alias("now"))
    levels = levels.join_asof(epochs, on="t", strategy="backward",
                              check_sortedness=False).with_columns(pl.col("now")
                                                                   .fill_null(start_epoch))
    joined = levels.join_asof(known.rename({"size": "delta_size"}), on="t", by=_KEY,
                              strategy="backward", check_sortedness=False)
    verifiable = pl.col("epoch").is_not_null() & (pl.col("epoch") == pl.col("now"))
    return joined.with_columns(verifiable=verifiable).with_columns(
        agree=pl.col("verifiable") & sizes_equal(pl.col("size"), pl.col("delta_size")))


def snapshots_agree_with_deltas(book: Path, deltas: Path, min_agreement: float = 0.99,
                                slice_seconds: int = 3600) -> CheckOutcome:
    stream = _Deltas(Path(deltas))
    levels_total = unverifiable = 0
    hours: list[pl.DataFrame] = []
    first: list[dict[str, object]] = []
    for lo, hi in time_slices([Path(book), Path(deltas)], slice_seconds):
        known, start_epoch = stream.read(lo, hi)
        levels = _snapshot_levels(Path(book), lo, hi)
        if not levels.height:
            continue
        judged = _compare_slice(levels, known, start_epoch)
        compared = judged.filter("verifiable")
        levels_total += judged.height
        unverifiable += judged.height - compared.height
        hours.append(compared.group_by((pl.col("t") // HOUR_NS).alias("hour"))
                     .agg(pl.len().alias("compared"), pl.col("agree").sum().alias("agreeing")))
        if len(first) < FIRST_SHOWN:
            bad = compared.filter(~pl.col("agree")).sort(
                ["t", "side_is_bid", "level"], descending=[False, True, False])
            first += [_located(row) for row in bad.head(FIRST_SHOWN - len(first)).to_dicts()]
    return _outcome(levels_total, unverifiable, hours, first, stream.epoch, min_agreement,
                    slice_seconds)


def _located(row: dict) -> dict[str, object]:
    return {"time": format_ns(row["t"]), "side": "bid" if row["side_is_bid"] else "ask",
            "level": row["level"], "price": row["price"], "snapshot_size": row["size"],
            "delta_size": row["delta_size"]}


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
