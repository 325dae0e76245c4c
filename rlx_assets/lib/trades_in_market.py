"""Were the day's trades printed inside the quoted market? (issue 16, part 2)

Each trade's price is compared with the best bid and ask (`bid_0_price`, `ask_0_price`) of
the latest `book` snapshot received up to the trade's received_time (time axis: see
`cross_table`), with a tolerance of `tolerance_ticks` ticks each side. A snapshot missing
one side bounds the trade on the other only; one missing both does not bound it ("no
quote"). Trades before the day's first snapshot are counted, not compared.

Tick, when not given: the smallest positive difference between the distinct prices of the
day's best five levels each side (adjacent levels of a liquid book sit one tick apart),
ignoring differences below 1e-9 of the price (float noise), rounded to 6 significant digits
(so 0.00999999999476 reads 0.01). With fewer than two distinct prices there is no tick: the
tolerance is then 0 and excursions are given in price only.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import polars as pl

from rlx_assets.lib.checks import CheckOutcome
from rlx_assets.lib.read_ahead import read_ahead
from rlx_assets.lib.time_slices import read_slice, time_slices
from rlx_assets.lib.timestamps import format_ns

TRADES_IN_MARKET = "trades_inside_market"
TICK_LEVELS = 5
FIRST_SHOWN = 5
_QUOTE = {"t": pl.Int64, "bid": pl.Float64, "ask": pl.Float64, "quoted": pl.Boolean}


def infer_tick(book: Path) -> float | None:
    """See the module docstring. Reads the best levels' price columns only, one column at a
    time through `unique` (a day's distinct prices are few)."""
    scan = pl.scan_parquet(book)
    prices = pl.concat([scan.select(pl.col(f"{side}_{i}_price").cast(pl.Float64).alias("p"))
                        .unique() for side in ("bid", "ask") for i in range(TICK_LEVELS)])
    distinct = (prices.filter(pl.col("p").is_not_nan() & (pl.col("p") > 0)).unique()
                .sort("p").collect()["p"])
    if distinct.len() < 2:
        return None
    steps = distinct.diff().drop_nulls()
    steps = steps.filter(steps > distinct.max() * 1e-9)
    return float(f"{steps.min():.6g}") if steps.len() else None


def _read(trades: Path, book: Path, bounds: tuple[int, int]) -> tuple[pl.DataFrame,
                                                                        pl.DataFrame]:
    """One slice: the book's best quotes and the trades, each in file order."""
    lo, hi = bounds
    quotes = read_slice(book, [pl.col("bid_0_price").cast(pl.Float64).fill_nan(None).alias("bid"),
                               pl.col("ask_0_price").cast(pl.Float64).fill_nan(None).alias("ask")],
                        lo, hi).with_columns(quoted=pl.lit(True))
    prints = read_slice(trades, [pl.col("trade_id"), pl.col("side"),
                                 pl.col("price").cast(pl.Float64)], lo, hi)
    return quotes, prints


def trades_inside_market(trades: Path, book: Path, tolerance_ticks: int = 1,
                         tick: float | None = None, max_outside_share: float = 0.001,
                         slice_seconds: int = 3600) -> CheckOutcome:
    trades, book = Path(trades), Path(book)
    inferred = tick is None
    tick = infer_tick(book) if inferred else tick
    tolerance = tolerance_ticks * tick if tick else 0.0
    slack = (tick or 0.0) * 1e-6 + 1e-12  # float noise on top of the tolerance
    carried = pl.DataFrame(schema=_QUOTE)
    tally = {"trades": 0, "compared": 0, "outside": 0, "before_first_snapshot": 0,
             "no_quote": 0}
    largest: dict | None = None
    first: list[dict] = []
    # the next slice is read while this one is judged (see read_ahead)
    for fresh, prints in read_ahead(partial(_read, trades, book),
                                    time_slices([trades, book], slice_seconds)):
        quotes = pl.concat([carried, fresh]).sort("t", maintain_order=True)
        carried = quotes.tail(1)
        if not prints.height:
            continue
        judged = prints.sort("t", maintain_order=True).join_asof(
            quotes, on="t", strategy="backward", check_sortedness=False).with_columns(
            excursion=pl.max_horizontal(pl.col("bid") - pl.col("price"),
                                        pl.col("price") - pl.col("ask")).clip(lower_bound=0.0))
        unquoted = pl.col("quoted").is_null()
        compared = judged.filter(~unquoted & pl.col("excursion").is_not_null()
                                 & pl.col("price").is_not_null())
        outside = compared.filter(pl.col("excursion") > tolerance + slack)
        tally["trades"] += prints.height
        tally["before_first_snapshot"] += judged.filter(unquoted).height
        tally["no_quote"] += judged.height - compared.height - judged.filter(unquoted).height
        tally["compared"] += compared.height
        tally["outside"] += outside.height
        if outside.height:
            top = outside.sort("excursion", descending=True, maintain_order=True).row(0, named=True)
            if largest is None or top["excursion"] > largest["excursion"]:
                largest = top
            first += outside.head(FIRST_SHOWN - len(first)).to_dicts()
    return _outcome(tally, largest, first, tick, inferred, tolerance_ticks, max_outside_share,
                    slice_seconds)


def _located(row: dict, tick: float | None) -> dict[str, object]:
    return {"time": format_ns(row["t"]), "trade_id": row["trade_id"], "side": row["side"],
            "price": row["price"], "best_bid": row["bid"], "best_ask": row["ask"],
            "excursion_price": round(row["excursion"], 10),
            "excursion_ticks": round(row["excursion"] / tick, 3) if tick else None}


def _outcome(tally: dict[str, int], largest: dict | None, first: list[dict],
             tick: float | None, inferred: bool, tolerance_ticks: int,
             max_outside_share: float, slice_seconds: int) -> CheckOutcome:
    compared, outside = tally["compared"], tally["outside"]
    share = outside / compared if compared else None
    passed = share is None or share <= max_outside_share
    worst = _located(largest, tick) if largest else None
    meta: dict[str, object] = {
        "trades": tally["trades"], "trades_compared": compared, "trades_outside": outside,
        "outside_share": share, "trades_before_first_snapshot": tally["before_first_snapshot"],
        "trades_without_quote": tally["no_quote"], "tick": tick, "tick_inferred": inferred,
        "tolerance_ticks": tolerance_ticks, "largest_excursion": worst,
        "first_outside": [_located(row, tick) for row in first],
        "max_outside_share": max_outside_share, "slice_seconds": slice_seconds}
    if share is None:
        text = f"no trade could be compared with a snapshot ({tally['trades']:,} trades)"
    else:
        text = (f"{outside:,} of {compared:,} trades ({share:.4%}) outside the best bid/ask "
                f"± {tolerance_ticks} tick(s) of {tick:g} (warn above {max_outside_share:.2%})"
                if tick else f"{outside:,} of {compared:,} trades ({share:.4%}) outside the "
                f"best bid/ask (no tick known; warn above {max_outside_share:.2%})")
        if worst:
            ticks = f" ({worst['excursion_ticks']:g} ticks)" if tick else ""
            text += (f"; largest excursion {worst['excursion_price']:g}{ticks} at "
                     f"{worst['time']}, trade {worst['trade_id']}")
    violations = () if passed else (f"{outside} trades outside the market",) + tuple(
        f"{d['time']} trade {d['trade_id']} at {d['price']!r}: bid {d['best_bid']!r}, ask "
        f"{d['best_ask']!r}" for d in meta["first_outside"])
    return CheckOutcome(TRADES_IN_MARKET, passed, text, meta, blocking=False,
                        violations=violations)
