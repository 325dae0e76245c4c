"""One streaming pass over a vendor day: normalise it, write it, and measure it.

A single polars scan of the raw parquet file feeds two sinks at once: `sink_parquet`
writes the normalised data, and `sink_batches` hands the same ordered batches to a
`DayScan` that accumulates everything the checks need (row counts, time bounds,
sortedness, holes, bad values, schema problems). Memory stays at a few batches whatever
the size of the day.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from rlx_assets.lib.schemas import row_rules, structural_problems
from rlx_assets.lib.tables import BOOK_LEVELS, RENAMES, TIME_COLUMNS, TableSpec

# Rows per batch handed to the checks; wide tables (book: 83 columns) get fewer rows.
BATCH_CELLS = 6_000_000
SAMPLE = 5  # offending timestamps kept as evidence per problem


class UnreadableVendorFile(Exception):
    """The vendor file is not readable parquet (truncated, corrupt)."""


def _normalise(frame: pl.LazyFrame, schema: pl.Schema) -> pl.LazyFrame:
    """lakeapi's names, UTC nanosecond times, plain strings; leave anything odd for `schema`."""
    frame = frame.rename({k: v for k, v in RENAMES.items() if k in schema})
    casts = []
    for raw, name in RENAMES.items():
        if name in TIME_COLUMNS and raw in schema and schema[raw].is_integer():
            casts.append(pl.col(name).cast(pl.Int64).cast(pl.Datetime("ns", "UTC")))
    if "side" in schema and schema["side"] in (pl.Categorical, pl.Enum):
        casts.append(pl.col("side").cast(pl.String))
    return frame.with_columns(casts) if casts else frame


def _numeric(schema: pl.Schema, name: str) -> bool:
    return name in schema and schema[name].is_numeric()


def price_problems(table: str, schema: pl.Schema) -> tuple[dict[str, pl.Expr], list[str]]:
    """Row-level rules of `positive_prices`: {problem: expression flagging offending rows}.

    Trades need price > 0 and quantity > 0; deltas price > 0 and size >= 0 (0 removes a
    level); book levels need price > 0 and size > 0 wherever a level is present, and the
    top level of each side must be present. Also returns the columns that could not be
    evaluated (missing or not numeric): the check fails on those rather than guessing.
    """
    def needs_positive(col: str, allow_zero: bool = False) -> pl.Expr:
        value = pl.col(col).cast(pl.Float64)
        return value.is_null() | (value < 0 if allow_zero else value <= 0)

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
                bad = (p.is_not_null() & ((p <= 0) | s.is_null() | (s <= 0))) | (
                    p.is_null() & s.is_not_null()
                )
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


@dataclass
class Problem:
    """Rows that break one rule, with the first offending times as evidence."""

    check: str
    rows: int = 0
    first_times: list[str] = field(default_factory=list)

    def add(self, rows: int, times: list[str]) -> None:
        self.rows += rows
        self.first_times.extend(times[: SAMPLE - len(self.first_times)])


@dataclass
class DayScan:
    """Everything the checks need, accumulated batch by batch in file order."""

    table: str
    day: dt.date
    rows: int = 0
    columns: dict[str, str] = field(default_factory=dict)
    structural: list[str] = field(default_factory=list)  # schema problems of the file
    unevaluable: dict[str, list[str]] = field(default_factory=dict)  # check -> columns
    problems: dict[str, Problem] = field(default_factory=dict)  # row rules -> offenders
    first_time: dt.datetime | None = None
    last_time: dt.datetime | None = None
    min_time: dt.datetime | None = None
    max_time: dt.datetime | None = None
    unsorted: Problem = field(default_factory=lambda: Problem("temporal_continuity"))
    sequence_decreases: int = 0
    outside_day: Problem = field(default_factory=lambda: Problem("temporal_continuity"))
    largest_gap_ns: int = 0
    largest_gap_after: dt.datetime | None = None
    error: str | None = None
    _rules: dict[str, pl.Expr] = field(default_factory=dict, repr=False)
    _last_sequence: int | None = field(default=None, repr=False)

    @property
    def day_start(self) -> dt.datetime:
        return dt.datetime(self.day.year, self.day.month, self.day.day, tzinfo=dt.UTC)

    @property
    def day_end(self) -> dt.datetime:
        return self.day_start + dt.timedelta(days=1)

    @property
    def has_times(self) -> bool:
        return self.columns.get("origin_time") == str(pl.Datetime("ns", "UTC"))

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

    def __call__(self, batch: pl.DataFrame) -> None:
        """`sink_batches` callback; never raises (an exception would be lost in polars)."""
        try:
            self._add(batch)
        except Exception as exc:  # noqa: BLE001 - reported through `error`, then raised
            self.error = self.error or f"{type(exc).__name__}: {exc}"

    def _add(self, batch: pl.DataFrame) -> None:
        if batch.height == 0:
            return
        if self._rules:
            counts = batch.select(
                [expr.sum().alias(label) for label, expr in self._rules.items()]
            ).row(0, named=True)
            for label, count in counts.items():
                if count:
                    self.problems[label].add(count, self._times(batch, self._rules[label]))
        if self.has_times:
            self._add_times(batch)
        self.rows += batch.height

    def _times(self, batch: pl.DataFrame, expr: pl.Expr) -> list[str]:
        if not self.has_times:
            return []
        return [str(t) for t in batch.filter(expr).get_column("origin_time").head(SAMPLE)]

    def _add_times(self, batch: pl.DataFrame) -> None:
        t = batch.get_column("origin_time").drop_nulls()
        if t.is_empty():
            return
        steps = t.diff().dt.total_nanoseconds()
        if self.last_time is not None:  # the boundary with the previous batch
            steps[0] = int((t[0] - self.last_time).total_seconds() * 1e9)
        back = steps < 0
        if back.any():
            self.unsorted.add(int(back.sum()), [str(x) for x in t.filter(back).head(SAMPLE)])
        gap_index = steps.arg_max()
        if gap_index is not None and (steps[gap_index] or 0) > self.largest_gap_ns:
            self.largest_gap_ns = int(steps[gap_index])
            self.largest_gap_after = t[gap_index - 1] if gap_index > 0 else self.last_time
        outside = (t < self.day_start) | (t >= self.day_end)
        if outside.any():
            self.outside_day.add(int(outside.sum()),
                                 [str(x) for x in t.filter(outside).head(SAMPLE)])
        self._add_sequence(batch)
        self.first_time = self.first_time or t[0]
        self.last_time = t[-1]
        self.min_time = min(self.min_time or t.min(), t.min())
        self.max_time = max(self.max_time or t.max(), t.max())

    def _add_sequence(self, batch: pl.DataFrame) -> None:
        if not batch.schema.get("sequence_number", pl.Null).is_integer():
            return
        seq = batch.get_column("sequence_number").drop_nulls()
        if seq.is_empty():
            return
        steps = seq.diff()
        if self._last_sequence is not None:
            steps[0] = seq[0] - self._last_sequence
        self.sequence_decreases += int((steps < 0).sum())
        self._last_sequence = seq[-1]


def scan_day(raw_path: Path, spec: TableSpec, day: dt.date, out_path: Path) -> DayScan:
    """Normalise `raw_path` into `out_path` (parquet) and measure it, in one pass."""
    try:
        frame = pl.scan_parquet(raw_path)
        raw_schema = frame.collect_schema()
    except Exception as exc:  # polars raises several types for a corrupt footer
        raise UnreadableVendorFile(f"{raw_path.name}: {exc}") from exc
    frame = _normalise(frame, raw_schema)
    scan = DayScan(spec.name, day)
    scan.prepare(frame.collect_schema())
    width = max(1, len(scan.columns))
    try:
        pl.collect_all(
            [
                frame.sink_parquet(out_path, compression="snappy", lazy=True),
                frame.sink_batches(scan, chunk_size=max(10_000, BATCH_CELLS // width),
                                   lazy=True),
            ],
            engine="streaming",
        )
    except (pl.exceptions.ComputeError, OSError) as exc:
        raise UnreadableVendorFile(f"{raw_path.name}: {exc}") from exc
    if scan.error:
        raise RuntimeError(f"measuring {spec.name} {day} failed: {scan.error}")
    return scan
