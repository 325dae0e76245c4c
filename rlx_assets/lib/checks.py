"""The blocking checks, evaluated from one `DayScan` (no further reads of the data)."""

from __future__ import annotations

from dataclasses import dataclass, field

from rlx_assets.lib.scan import DayScan, Problem, format_ns

SCHEMA, POSITIVE_PRICES, TEMPORAL_CONTINUITY = "schema", "positive_prices", "temporal_continuity"
BLOCKING_CHECKS = (SCHEMA, POSITIVE_PRICES, TEMPORAL_CONTINUITY)
# WARN-level checks per table: they help researchers and never block a partition.
ROW_COUNT = "row_count"
WARNING_CHECKS = {
    "trades": ("trade_ids", "price_jumps", ROW_COUNT),
    "book": ("crossed_book", ROW_COUNT),
    "book_delta_v2": (ROW_COUNT,),
}
ROW_COUNT_BAND = (0.5, 2.0)  # of the median of the trailing days
TRAILING_DAYS = 7
CHECK_DESCRIPTIONS = {
    SCHEMA: "Exact normalised column set and dtypes, required columns non-null, side in "
            "{buy, sell} (pandera model per table).",
    POSITIVE_PRICES: "Prices > 0 and sizes > 0 (>= 0 for book_delta_v2, where 0 removes a "
                     "level); a missing required price fails too.",
    TEMPORAL_CONTINUITY: "origin_time inside the UTC day and non-decreasing (sequence_number "
                         "too), no hole longer than the table's threshold, at least one row.",
    "trade_ids": "WARN: trade_id strictly increasing (no duplicate or out-of-order ids).",
    "price_jumps": "WARN: no trade-to-trade price move above 5 %.",
    "crossed_book": "WARN: best bid below best ask in every snapshot.",
    ROW_COUNT: f"WARN: row count within {ROW_COUNT_BAND[0]:g}x-{ROW_COUNT_BAND[1]:g}x of the "
               f"median of the {TRAILING_DAYS} days before.",
}


@dataclass(frozen=True)
class CheckOutcome:
    name: str
    passed: bool
    description: str
    metadata: dict[str, object] = field(default_factory=dict)
    blocking: bool = True  # False: a WARN-level check that informs but never blocks


def _evidence(problems: dict[str, Problem]) -> dict[str, object]:
    return {
        label: {"rows": p.rows, "first_origin_times": p.first_times}
        for label, p in problems.items()
        if p.rows
    }


def _summary(parts: list[str], passed_text: str) -> str:
    return passed_text if not parts else "; ".join(parts)


def check_schema(scan: DayScan) -> CheckOutcome:
    rows = _evidence(scan.problems_of(SCHEMA))
    parts = scan.structural + [f"{label} ({e['rows']} rows)" for label, e in rows.items()]
    return CheckOutcome(
        SCHEMA,
        passed=not parts,
        description=_summary(parts, "all columns present with the expected dtypes"),
        metadata={"problems": scan.structural, "offending_rows": rows,
                  "columns": scan.columns},
    )


def check_positive_prices(scan: DayScan) -> CheckOutcome:
    rows = _evidence(scan.problems_of(POSITIVE_PRICES))
    unevaluable = scan.unevaluable.get(POSITIVE_PRICES, [])
    parts = [f"{label} ({e['rows']} rows)" for label, e in rows.items()]
    passed_text = "every price and size positive"
    if unevaluable:
        # A missing or mistyped column is the schema check's failure (contract: missing
        # column, wrong dtype -> schema); it still blocks the partition from there.
        passed_text = (f"every evaluable price and size positive; {unevaluable} not evaluated "
                       "(missing or not numeric, reported by the schema check)")
    return CheckOutcome(
        POSITIVE_PRICES,
        passed=not parts,
        description=_summary(parts, passed_text),
        metadata={"offending_rows": rows,
                  "offending_row_count": sum(e["rows"] for e in rows.values()),
                  "unevaluable_columns": unevaluable},
    )


def check_temporal_continuity(
    scan: DayScan, max_gap_seconds: float, previous_last_time: int | None = None
) -> CheckOutcome:
    """`previous_last_time` (ns) is the last origin_time of the day before, if known."""
    parts: list[str] = []
    meta: dict[str, object] = {"max_gap_seconds_threshold": max_gap_seconds, "rows": scan.rows}
    passed_text = "sorted, inside the day, no hole over the threshold"
    if not scan.has_times:
        # Reported by the schema check (missing column / wrong dtype), which blocks the data.
        passed_text = ("not evaluated: origin_time is missing or not a UTC nanosecond time "
                       "(reported by the schema check)")
        meta["not_evaluated"] = True
    elif scan.first_time is None:
        parts.append("the day has no rows")
    else:
        start_hole = (scan.first_time - scan.day_start) / 1e9
        end_hole = (scan.day_end - scan.last_time) / 1e9
        largest = scan.largest_gap_ns / 1e9
        gap_after = format_ns(scan.largest_gap_after)
        meta.update({
            "largest_gap_seconds": largest,
            "largest_gap_after": gap_after,
            "hole_at_day_start_seconds": start_hole,
            "hole_at_day_end_seconds": end_hole,
            "unsorted_rows": scan.unsorted.rows,
            "first_unsorted_origin_times": scan.unsorted.first_times,
            "rows_outside_day": scan.outside_day.rows,
            "first_outside_origin_times": scan.outside_day.first_times,
            "sequence_number_decreases": scan.sequence_decreases,
        })
        if previous_last_time is not None:
            meta["gap_from_previous_day_seconds"] = (scan.first_time - previous_last_time) / 1e9
        if scan.outside_day.rows:
            parts.append(f"{scan.outside_day.rows} rows outside {scan.day} UTC, first at "
                         f"{scan.outside_day.first_times[0]}")
        if scan.unsorted.rows:
            parts.append(f"origin_time goes backwards {scan.unsorted.rows} times, first at "
                         f"{scan.unsorted.first_times[0]}")
        if scan.sequence_decreases:
            parts.append(f"sequence_number goes backwards {scan.sequence_decreases} times")
        # Steps are measured in file order: once times go backwards, a forward jump is not a
        # hole in the data (a swapped row makes a day-long "hole"), so say so only when sorted.
        meta["largest_gap_is_in_file_order_only"] = bool(scan.unsorted.rows)
        if largest > max_gap_seconds and not scan.unsorted.rows:
            parts.append(f"a {largest:,.0f} s hole after {gap_after} exceeds "
                         f"{max_gap_seconds:,.0f} s")
        for where, hole in (("start", start_hole), ("end", end_hole)):
            if hole > max_gap_seconds:
                parts.append(f"no data for the {hole:,.0f} s at the day's {where} "
                             f"(threshold {max_gap_seconds:,.0f} s)")
    return CheckOutcome(
        TEMPORAL_CONTINUITY,
        passed=not parts,
        description=_summary(parts, passed_text),
        metadata=meta,
    )


def check_rows_against_trailing(scan: DayScan, trailing_rows: list[int]) -> CheckOutcome:
    history = sorted(trailing_rows)
    meta: dict[str, object] = {"rows": scan.rows, "trailing_days": len(history)}
    if not history:
        return CheckOutcome(ROW_COUNT, True, "no earlier days to compare with yet", meta,
                            blocking=False)
    median = history[len(history) // 2] if len(history) % 2 else \
        (history[len(history) // 2 - 1] + history[len(history) // 2]) / 2
    low, high = (factor * median for factor in ROW_COUNT_BAND)
    meta.update({"trailing_median": median, "allowed_min": low, "allowed_max": high})
    passed = low <= scan.rows <= high
    text = (f"{scan.rows:,} rows, {scan.rows / median:.2f}x the median of the "
            f"{len(history)} days before ({median:,.0f})") if median else \
        f"{scan.rows:,} rows; the days before had none"
    return CheckOutcome(ROW_COUNT, passed, text, meta, blocking=False)


def check_warnings(scan: DayScan, trailing_rows: list[int]) -> list[CheckOutcome]:
    """The table's WARN-level checks, from the same pass."""
    out = []
    for name in WARNING_CHECKS[scan.table]:
        if name == ROW_COUNT:
            out.append(check_rows_against_trailing(scan, trailing_rows))
            continue
        rows = _evidence(scan.problems_of(name))
        parts = [f"{label} ({e['rows']} rows)" for label, e in rows.items()]
        out.append(CheckOutcome(name, not parts, _summary(parts, "none found"),
                                {"offending_rows": rows,
                                 "offending_row_count": sum(e["rows"] for e in rows.values())},
                                blocking=False))
    return out


def failed_blocking(outcomes: list[CheckOutcome]) -> list[str]:
    """The blocking checks that failed: the partition is ready only if there are none."""
    return [o.name for o in outcomes if o.blocking and not o.passed]


def evaluate(
    scan: DayScan,
    max_gap_seconds: float,
    previous_last_time: int | None = None,
    trailing_rows: list[int] | None = None,
) -> list[CheckOutcome]:
    """The three blocking checks for one partition, in contract order, then the WARN ones."""
    return [
        check_schema(scan),
        check_positive_prices(scan),
        check_temporal_continuity(scan, max_gap_seconds, previous_last_time),
        *check_warnings(scan, trailing_rows or []),
    ]
