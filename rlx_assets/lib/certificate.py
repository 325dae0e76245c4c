"""The data-readiness certificate: verify every (table, day) of a window, or list the gaps.

Pure logic: the caller gathers what Dagster recorded per partition (`DayRecord`); this module
checks each against the blocking checks and the file in ready/ (through an `Unchanged`: the
incremental one of `verification` for the certificate), computes the holes across day
boundaries, and builds the certificate with a hash of its own canonical content, or the
problems by day (`Verdict`). Where certificates are kept, superseded and withdrawn:
`certificate_files`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from rlx_assets.lib.checks import BLOCKING_CHECKS
from rlx_assets.lib.day_record import DayRecord
from rlx_assets.lib.timestamps import format_ns

PASSED = "SUCCEEDED"


def window_days(start: dt.date, end: dt.date) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


# Why the file at `location` is not the one recorded (size, sha256, version), or None.
Unchanged = Callable[[str, int, str, str], str | None]


def partition_problems(
    table: str, day: dt.date, rec: DayRecord | None, unchanged: Unchanged
) -> list[str]:
    """Why (table, day) cannot be certified; empty when it can."""
    where = f"{table} {day}"
    if rec is None:
        return [f"{where}: not materialised"]
    if not rec.ready:
        failed = ", ".join(rec.failed_checks) or "a blocking check"
        return [f"{where}: quarantined ({failed} failed)"]
    problems = [
        f"{where}: check {name} {rec.checks.get(name, 'NOT EVALUATED').lower()}"
        for name in BLOCKING_CHECKS
        if rec.checks.get(name) != PASSED
    ]
    if problems:
        return problems
    problem = unchanged(rec.location, rec.size, rec.sha256, rec.version)
    return [f"{where}: ready {problem}"] if problem else []


def _gap_seconds(previous: DayRecord | None, current: DayRecord) -> float | None:
    if previous is None or previous.last_time is None or current.first_time is None:
        return None
    return (current.first_time - previous.last_time) / 1e9


def canonical_sha256(payload: Mapping[str, object]) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Verdict:
    certificate: dict[str, object] | None  # None: refused
    problems: list[str]  # one line per (table, day) problem; empty when issued
    by_day: Mapping[dt.date, tuple[str, ...]] = field(default_factory=dict)

    def problems_within(self, start: dt.date, end: dt.date) -> list[str]:
        """The problems on days from `start` to `end`: what an earlier certificate of that
        window would vouch for wrongly now."""
        return [p for day, found in sorted(self.by_day.items()) if start <= day <= end
                for p in found]


def build_certificate(
    instrument: str,
    start: dt.date,
    end: dt.date,
    recorded: Mapping[str, Mapping[dt.date, DayRecord]],
    generated_at: dt.datetime,
    unchanged: Unchanged,
    cross_table: Mapping[dt.date, Mapping[str, str]] | None = None,
) -> Verdict:
    """The certificate when every partition passes, else the problems. `unchanged` is called
    once per ready file, in table then day order. `cross_table` holds each day's WARN-level
    cross-table check outcomes (recorded, never a reason to refuse)."""
    days = window_days(start, end)
    problems: list[str] = []
    by_day: dict[dt.date, tuple[str, ...]] = {}
    for table, records in recorded.items():
        for day in days:
            found = partition_problems(table, day, records.get(day), unchanged)
            problems += found
            by_day[day] = by_day.get(day, ()) + tuple(found)
    if problems:
        return Verdict(None, problems, {d: f for d, f in by_day.items() if f})
    tables: dict[str, object] = {}
    for table, records in recorded.items():
        entries, previous = [], None
        for day in days:
            rec = records[day]
            entries.append({
                "day": day.isoformat(),
                "rows": rec.rows,
                "first_origin_time": format_ns(rec.first_time),
                "last_origin_time": format_ns(rec.last_time),
                "sha256": rec.sha256,
                "bytes": rec.size,
                "vendor_sha256": rec.vendor_sha256,
                "checks": {name: rec.checks[name] for name in BLOCKING_CHECKS},
                "gap_from_previous_day_seconds": _gap_seconds(previous, rec),
                "path": rec.location,
                "vendor_contains_gaps": rec.vendor_contains_gaps,
                "origin_time_missing_rows": rec.origin_time_missing,
                "resyncs": rec.resyncs,
                "accepted": {check: dict(a) for check, a in rec.accepted.items()},
            })
            previous = rec
        gaps = [e["gap_from_previous_day_seconds"] for e in entries
                if e["gap_from_previous_day_seconds"] is not None]
        tables[table] = {
            "days": entries,
            "totals": {"days": len(entries), "rows": sum(e["rows"] for e in entries),
                       "bytes": sum(e["bytes"] for e in entries)},
            "largest_day_boundary_gap_seconds": max(gaps, default=None),
        }
    body: dict[str, object] = {
        "instrument": instrument,
        "window": {"start": start.isoformat(), "end": end.isoformat(), "days": len(days)},
        "generated_at": generated_at.isoformat(),
        "blocking_checks": list(BLOCKING_CHECKS),
        # Failures the vendor will never fix, accepted on the record (`rlx-assets accept`).
        "accepted_exceptions": [
            {"table": table, "day": day.isoformat(), "check": check, **dict(a)}
            for table, records in recorded.items() for day in days
            for check, a in sorted(records[day].accepted.items())],
        "tables": tables,
        # WARN checks across a day's tables (the consistency asset): they inform, never block.
        "cross_table_checks": {
            day.isoformat(): dict(sorted((cross_table or {}).get(day, {}).items()))
            for day in days},
    }
    return Verdict({**body, "content_sha256": canonical_sha256(body)}, [])


def refusal_message(instrument: str, start: dt.date, end: dt.date, problems: list[str]) -> str:
    shown = problems[:200]
    more = f"\n- ... and {len(problems) - len(shown)} more" if len(problems) > len(shown) else ""
    return (f"Certificate for {instrument} {start}..{end} refused: {len(problems)} partition "
            f"problem(s); materialise or fix them and it is issued automatically:\n- "
            + "\n- ".join(shown) + more)
