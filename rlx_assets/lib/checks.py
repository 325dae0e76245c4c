"""The blocking checks, evaluated from one `DayScan` (no further reads of the data)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rlx_assets.lib.timestamps import format_ns

if TYPE_CHECKING:  # the scan (and pandera behind it) is not imported by readers of the names
    from rlx_assets.lib.scan import DayScan, Problem

SCHEMA, POSITIVE_PRICES, TEMPORAL_CONTINUITY = "schema", "positive_prices", "temporal_continuity"
BLOCKING_CHECKS = (SCHEMA, POSITIVE_PRICES, TEMPORAL_CONTINUITY)
# WARN-level checks per table: they help researchers and never block a partition.
ROW_COUNT, ORIGIN_TIME_MISSING = "row_count", "origin_time_missing"
WARNING_CHECKS = {
    "trades": ("trade_ids", "price_jumps", ROW_COUNT, ORIGIN_TIME_MISSING),
    "book": ("crossed_book", ROW_COUNT, ORIGIN_TIME_MISSING),
    "book_delta_v2": (ROW_COUNT, ORIGIN_TIME_MISSING),
}
ROW_COUNT_BAND = (0.5, 2.0)  # of the median of the trailing days
TRAILING_DAYS = 7
CHECK_DESCRIPTIONS = {
    SCHEMA: "Exact normalised column set and dtypes, required columns non-null, side in "
            "{buy, sell} (pandera model per table).",
    POSITIVE_PRICES: "Prices > 0 and sizes > 0 (>= 0 for book_delta_v2, where 0 removes a "
                     "level); a missing required price fails too.",
    TEMPORAL_CONTINUITY: "At least one row; origin_time inside the UTC day (rows a few seconds "
                         "across its edges are the vendor writer's habit: counted, not failed) "
                         "and never going backwards; sequence_number never going backwards "
                         "outside a resync; no hole longer than the table's threshold (each "
                         "listed). Rows without an exchange time are judged by received_time.",
    ORIGIN_TIME_MISSING: "WARN: rows without an exchange time (the vendor's 0 / -1, stored as "
                         "null): count and first positions; book resyncs are listed and do not "
                         "warn, other missing times do.",
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
    # What exactly failed, one stable string per finding (no thresholds in them): what an
    # acceptance (`rlx-assets accept`) binds to, so that a new violation fails again.
    violations: tuple[str, ...] = ()


def _evidence(problems: dict[str, Problem]) -> dict[str, object]:
    return {
        label: {"rows": p.rows, "first_origin_times": p.first_times}
        for label, p in problems.items()
        if p.rows
    }


def _summary(parts: list[str], passed_text: str) -> str:
    return passed_text if not parts else "; ".join(parts)


def _row_violations(evidence: dict[str, dict[str, object]]) -> tuple[str, ...]:
    return tuple(f"{label}: {e['rows']} rows" for label, e in evidence.items())


def check_schema(scan: DayScan) -> CheckOutcome:
    rows = _evidence(scan.problems_of(SCHEMA))
    parts = scan.structural + [f"{label} ({e['rows']} rows)" for label, e in rows.items()]
    return CheckOutcome(
        SCHEMA,
        passed=not parts,
        description=_summary(parts, "all columns present with the expected dtypes"),
        metadata={"problems": scan.structural, "offending_rows": rows,
                  "columns": scan.columns},
        violations=tuple(scan.structural) + _row_violations(rows),
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
        violations=_row_violations(rows),
    )


def check_temporal_continuity(
    scan: DayScan, previous_last_time: int | None = None
) -> CheckOutcome:
    """`previous_last_time` (ns) is the last origin_time of the day before, if known. The
    rules are in `continuity` (and the README's Checks section)."""
    times, rules = scan.times, scan.rules
    threshold = rules.max_gap_seconds
    meta: dict[str, object] = {"max_gap_seconds_threshold": threshold,
                               "day_boundary_tolerance_seconds": rules.boundary_seconds,
                               "rows": scan.rows,
                               "vendor_contains_gaps": scan.vendor_contains_gaps}
    if not scan.has_times:
        # Reported by the schema check (missing column / wrong dtype), which blocks the data.
        return CheckOutcome(TEMPORAL_CONTINUITY, True,
                            "not evaluated: origin_time is missing or not a UTC nanosecond "
                            "time (reported by the schema check)", {**meta, "not_evaluated": True})
    if scan.rows == 0:
        return CheckOutcome(TEMPORAL_CONTINUITY, False, "the day has no rows", meta,
                            violations=("no rows",))
    parts, violations = [], []
    start_hole, end_hole = times.edge_holes()
    sorted_times = not times.unsorted.rows
    meta.update({
        "largest_gap_seconds": times.largest_gap_ns / 1e9,
        "largest_gap_after": format_ns(times.largest_gap_after),
        "holes_over_threshold": times.hole_count,
        "holes": times.listed_holes(),
        "hole_at_day_start_seconds": start_hole,
        "hole_at_day_end_seconds": end_hole,
        "unsorted_rows": times.unsorted.rows,
        "first_unsorted_origin_times": times.unsorted.first_times,
        "rows_outside_day": times.outside_day.rows,
        "first_outside_origin_times": times.outside_day.first_times,
        "rows_before_day_within_tolerance": times.before_day.rows,
        "first_before_day_origin_times": times.before_day.first_times,
        "rows_after_day_within_tolerance": times.after_day.rows,
        "first_after_day_origin_times": times.after_day.first_times,
        "origin_time_missing_rows": times.missing,
        "resyncs": times.resync_count if times.resyncs_possible else 0,
        "sequence_number_decreases": times.sequence_decreases,
        "first_sequence_number_decreases": times.first_sequence_decreases,
        "sequence_number_resets_at_resyncs": times.sequence_resets,
        # Steps are measured in file order: once times go backwards, a forward jump is not a
        # hole in the data (a swapped row makes a day-long "hole").
        "largest_gap_is_in_file_order_only": not sorted_times,
    })
    if previous_last_time is not None and scan.first_time is not None:
        meta["gap_from_previous_day_seconds"] = (scan.first_time - previous_last_time) / 1e9
    if times.outside_day.rows:
        parts.append(f"{times.outside_day.rows} rows outside {scan.day} UTC by more than the "
                     f"{rules.boundary_seconds:g} s boundary tolerance, first at "
                     f"{times.outside_day.first_times[0]}")
        violations.append(f"{times.outside_day.rows} rows outside the day")
    if times.unsorted.rows:
        parts.append(f"origin_time goes backwards {times.unsorted.rows} times, first at "
                     f"{times.unsorted.first_times[0]}")
        violations.append(f"origin_time backwards {times.unsorted.rows} times")
    if times.sequence_decreases:
        parts.append(f"sequence_number goes backwards {times.sequence_decreases} times outside "
                     f"a resync, first at {times.first_sequence_decreases[0]}")
        violations.append(f"sequence_number backwards {times.sequence_decreases} times")
    if sorted_times and times.hole_count:
        listed = ", ".join(f"{h['start']}..{h['end']} ({h['seconds']:,.0f} s)"
                           for h in times.listed_holes()[:3])
        more = f" and {times.hole_count - 3} more" if times.hole_count > 3 else ""
        parts.append(f"{times.hole_count} hole(s) over {threshold:,.0f} s: {listed}{more}")
        violations += [f"hole {h['start']}..{h['end']}" for h in times.listed_holes()]
    for where, hole, edge in (("start", start_hole, times.first_effective),
                              ("end", end_hole, times.last_effective)):
        if hole > threshold:
            parts.append(f"no data for the {hole:,.0f} s at the day's {where} "
                         f"(threshold {threshold:,.0f} s)")
            violations.append(f"no data at the day's {where} until {format_ns(edge)}"
                              if where == "start" else
                              f"no data at the day's end after {format_ns(edge)}")
    if parts and scan.vendor_contains_gaps == "Yes":
        parts.append("the vendor marks this file contains_gaps=Yes (its writer restarted)")
    return CheckOutcome(TEMPORAL_CONTINUITY, not parts,
                        _summary(parts, "sorted, inside the day, no hole over the threshold"
                                 + _habits(times)), meta, violations=tuple(violations))


def _habits(times) -> str:
    """The writer's habits seen in a passing day, for its description."""
    seen = []
    if times.before_day.rows or times.after_day.rows:
        seen.append(f"{times.before_day.rows + times.after_day.rows} rows within the boundary "
                    "tolerance")
    if times.missing:
        seen.append(f"{times.missing} rows without an exchange time")
    if times.resyncs_possible and times.resync_count:
        seen.append(f"{times.resync_count} resync(s)")
    return f" ({'; '.join(seen)})" if seen else ""


def check_origin_time_missing(scan: DayScan) -> CheckOutcome:
    times = scan.times
    resyncs = times.resync_count if times.resyncs_possible else 0
    meta: dict[str, object] = {"origin_time_missing_rows": times.missing, "rows": scan.rows,
                               "first_missing": times.first_missing, "resyncs": resyncs,
                               "resync_locations": times.resyncs if resyncs else []}
    if not scan.has_times or not times.missing:
        return CheckOutcome(ORIGIN_TIME_MISSING, True, "every row has an exchange time", meta,
                            blocking=False)
    explained = times.resyncs_possible and not times.every_time_missing
    if explained:
        text = (f"{times.missing} rows without an exchange time, all in {resyncs} resync(s) "
                f"(the exchange's snapshot), first received at "
                f"{times.resyncs[0].get('received_time')}")
    elif times.every_time_missing:
        text = (f"no row has an exchange time ({times.missing} rows): continuity is judged by "
                "received_time")
    else:
        text = (f"{times.missing} rows without an exchange time, first at row "
                f"{times.first_missing[0]['row']} (received "
                f"{times.first_missing[0].get('received_time')})")
    return CheckOutcome(ORIGIN_TIME_MISSING, explained, text, meta, blocking=False)


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
        if name == ORIGIN_TIME_MISSING:
            out.append(check_origin_time_missing(scan))
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
    previous_last_time: int | None = None,
    trailing_rows: list[int] | None = None,
) -> list[CheckOutcome]:
    """The three blocking checks for one partition, in contract order, then the WARN ones
    (thresholds: `scan.rules`)."""
    return [
        check_schema(scan),
        check_positive_prices(scan),
        check_temporal_continuity(scan, previous_last_time),
        *check_warnings(scan, trailing_rows or []),
    ]
