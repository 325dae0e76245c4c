"""What the checks measure in a day, accumulated batch by batch: `DayScan`.

Ordered batches of the normalised day go through a `DayScan`, which accumulates
everything the checks need (row counts, time bounds, sortedness, holes, bad values,
schema problems) without keeping the data: memory is a batch or two whatever the size of
the day. The row-level rules are polars expressions evaluated per batch.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from rlx_assets.lib.continuity import (
    SAMPLE,
    UTC_NS,
    Continuity,
    Problem,
    TimeRules,
    day_start_ns,
)
from rlx_assets.lib.schemas import row_rules, structural_problems
from rlx_assets.lib.tables import BOOK_LEVELS, TABLES
from rlx_assets.lib.timestamps import format_ns

__all__ = ["DayScan", "Problem", "TimeRules", "day_start_ns", "format_ns"]


def _numeric(schema: pl.Schema, name: str) -> bool:
    return name in schema and schema[name].is_numeric()


def price_problems(table: str, schema: pl.Schema) -> tuple[dict[str, pl.Expr], list[str]]:
    """Row-level rules of `positive_prices`: {problem: expression flagging offending rows}.

    Trades need price > 0 and quantity > 0; deltas price > 0 and size >= 0 (0 removes a
    level); book levels need price > 0 and size > 0 wherever a level is present, and the
    top level of each side must be present. Also returns the columns that could not be
    evaluated (missing or not numeric): they are not guessed at; the schema check fails
    on them (contract: missing column, wrong dtype -> schema), and the metadata lists them.
    """
    def needs_positive(col: str, allow_zero: bool = False) -> pl.Expr:
        value = pl.col(col).cast(pl.Float64)
        # polars orders NaN above every number, so `NaN <= 0` is false: test NaN explicitly.
        return value.is_null() | value.is_nan() | (value < 0 if allow_zero else value <= 0)

    exprs: dict[str, pl.Expr] = {}
    missing: list[str] = []
    if table == "book":
        level_exprs = []
        for side in ("bid", "ask"):
            for i in range(BOOK_LEVELS):
                price, size = f"{side}_{i}_price", f"{side}_{i}_size"
                if not (_numeric(schema, price) and _numeric(schema, size)):
                    missing += [c for c in (price, size) if not _numeric(schema, c)]
                    continue
                p, s = pl.col(price).cast(pl.Float64), pl.col(size).cast(pl.Float64)
                bad = (p.is_not_null() & ((p <= 0) | p.is_nan() | s.is_null() | (s <= 0)
                                          | s.is_nan())) | (p.is_null() & s.is_not_null())
                if i == 0:  # the top of the book must always be there
                    bad = bad | p.is_null()
                level_exprs.append(bad)
        if level_exprs:
            exprs["a book level has a missing or non-positive price or size"] = (
                pl.any_horizontal(level_exprs)
            )
    else:
        quantity = "quantity" if table == "trades" else "size"
        for col, allow_zero in (("price", False), (quantity, table != "trades")):
            if _numeric(schema, col):
                label = f"{col} is null or {'negative' if allow_zero else 'not positive'}"
                exprs[label] = needs_positive(col, allow_zero)
            else:
                missing.append(col)
    return exprs, missing


PRICE_JUMP = 0.05  # a trade-to-trade move larger than this is implausible for BTC-USDT


def warning_rules(table: str, schema: pl.Schema) -> dict[str, tuple[str, pl.Expr]]:
    """Non-blocking (WARN) rules: {problem: (check, expression flagging offending rows)}.

    Expressions may compare a row with the one before it: the pass carries the previous
    batch's last row into the next batch, so they hold across batch boundaries too.
    """
    rules: dict[str, tuple[str, pl.Expr]] = {}
    if table == "book" and _numeric(schema, "bid_0_price") and _numeric(schema, "ask_0_price"):
        bid, ask = pl.col("bid_0_price"), pl.col("ask_0_price")
        rules["top of book crossed or locked (bid_0_price >= ask_0_price)"] = (
            "crossed_book", (bid > 0) & (ask > 0) & (bid >= ask))
    if table == "trades" and schema.get("trade_id", pl.Null).is_integer():
        rules["trade_id not increasing (a duplicate or out-of-order id)"] = (
            "trade_ids", pl.col("trade_id").diff() <= 0)
    if table == "trades" and _numeric(schema, "price"):
        # Only between positive prices: a bad price is positive_prices' finding, not a jump.
        price, before = pl.col("price").cast(pl.Float64), pl.col("price").cast(pl.Float64).shift(1)
        rules[f"price moved more than {PRICE_JUMP:.0%} from one trade to the next"] = (
            "price_jumps", (price > 0) & (before > 0) & ((price / before - 1).abs() > PRICE_JUMP))
    return rules


@dataclass
class DayScan:
    """Everything the checks need, accumulated batch by batch in file order."""

    table: str
    day: dt.date
    rules: TimeRules | None = None  # default: the table's thresholds
    rows: int = 0
    columns: dict[str, str] = field(default_factory=dict)
    structural: list[str] = field(default_factory=list)  # schema problems of the file
    unevaluable: dict[str, list[str]] = field(default_factory=dict)  # check -> columns
    problems: dict[str, Problem] = field(default_factory=dict)  # row rules -> offenders
    times: Continuity | None = None  # set up by `prepare`
    vendor_contains_gaps: str | None = None  # the vendor file's own flag (footer metadata)
    # Rows without an exchange time, as [start, end) ranges in file order; the row groups
    # holding them (`groups_with_sentinels`) get their time column rewritten with nulls.
    sentinel_rows: list[tuple[int, int]] = field(default_factory=list)
    sentinel_row_groups: set[int] = field(default_factory=set)
    output_sha256: str = ""  # of the normalised file written by the pass
    output_bytes: int = 0
    _rules: dict[str, pl.Expr] = field(default_factory=dict, repr=False)
    _carry: pl.DataFrame | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.rules is None:
            spec = TABLES[self.table]
            self.rules = TimeRules(spec.default_max_gap_seconds, spec.default_boundary_seconds)
        self.times = Continuity(self.day, self.rules, resyncs_possible=self.table != "trades")

    @property
    def day_start(self) -> int:
        return day_start_ns(self.day)

    @property
    def has_times(self) -> bool:
        return self.columns.get("origin_time") == str(UTC_NS)

    # The time figures, as the checks and the day's record name them.
    first_time = property(lambda self: self.times.first_time)
    last_time = property(lambda self: self.times.last_time)
    min_time = property(lambda self: self.times.min_time)
    max_time = property(lambda self: self.times.max_time)
    largest_gap_ns = property(lambda self: self.times.largest_gap_ns)
    largest_gap_after = property(lambda self: self.times.largest_gap_after)
    unsorted = property(lambda self: self.times.unsorted)
    outside_day = property(lambda self: self.times.outside_day)
    sequence_decreases = property(lambda self: self.times.sequence_decreases)

    def problems_of(self, check: str) -> dict[str, Problem]:
        return {k: p for k, p in self.problems.items() if p.check == check}

    def prepare(self, schema: pl.Schema) -> None:
        """Set up the rules for a file whose normalised schema is `schema`."""
        self.columns = {name: str(dtype) for name, dtype in schema.items()}
        self.structural = structural_problems(self.table, schema)
        price_rules, unevaluable = price_problems(self.table, schema)
        if unevaluable:
            self.unevaluable["positive_prices"] = unevaluable
        if not self.has_times:
            self.unevaluable["temporal_continuity"] = ["origin_time"]
        for check, rules in (("schema", row_rules(self.table, schema)),
                             ("positive_prices", price_rules)):
            for label, expr in rules.items():
                self.problems[label] = Problem(check)
                self._rules[label] = expr
        for label, (check, expr) in warning_rules(self.table, schema).items():
            self.problems[label] = Problem(check)
            self._rules[label] = expr

    def add(self, batch: pl.DataFrame) -> None:
        """Account for the next batch of the day, in file order."""
        if batch.height == 0:
            return
        if self._rules:
            # The previous batch's last row goes first, so that rules comparing a row with
            # the one before it hold across batches; it is not counted twice (`skip`).
            frame = batch if self._carry is None else pl.concat([self._carry, batch],
                                                                rechunk=False)
            skip = frame.height - batch.height
            counts = frame.select(
                [expr.slice(skip).sum().alias(label) for label, expr in self._rules.items()]
            ).row(0, named=True)
            for label, count in counts.items():
                if count:
                    self.problems[label].add(count, self._times(frame, self._rules[label], skip))
            self._carry = batch.tail(1)
        if self.has_times:
            missing = self.times.add(batch)
            if len(missing):
                self._add_sentinel_rows(self.rows + missing)
        self.rows += batch.height

    def _add_sentinel_rows(self, rows: np.ndarray) -> None:
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        for run in np.split(rows, breaks):
            start, end = int(run[0]), int(run[-1]) + 1
            if self.sentinel_rows and self.sentinel_rows[-1][1] == start:
                start = self.sentinel_rows.pop()[0]
            self.sentinel_rows.append((start, end))

    def groups_with_sentinels(self, group_rows: list[int]) -> set[int]:
        """The row groups (of a file with `group_rows` rows per group) holding sentinels."""
        starts = np.cumsum([0, *group_rows])
        groups: set[int] = set()
        for start, end in self.sentinel_rows:
            first = int(np.searchsorted(starts, start, side="right")) - 1
            last = int(np.searchsorted(starts, end - 1, side="right")) - 1
            groups.update(range(first, last + 1))
        return groups

    def _times(self, frame: pl.DataFrame, expr: pl.Expr, skip: int = 0) -> list[str]:
        if not self.has_times:
            return []
        flagged = frame.select(pl.col("origin_time"), expr.alias("_flagged")).slice(skip)
        times = flagged.filter("_flagged").get_column("origin_time").head(SAMPLE).cast(pl.Int64)
        return [format_ns(t) for t in times if t is not None]
