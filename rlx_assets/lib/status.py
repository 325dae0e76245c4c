"""Partition states for people: one state per (instrument, table, day), drawn as a calendar."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from rlx_assets.lib.checks import BLOCKING_CHECKS

# state -> calendar glyph
GLYPHS = {
    "ready": "#",
    "accepted": "A",
    "quarantined": "Q",
    "failed_check": "X",
    "failed": "!",
    "in_progress": "~",
    "missing": ".",
}
LEGEND = ("# ready   A ready, exception accepted   Q quarantined (a blocking check failed)   "
          "X check failed, data not in quarantine/   ! run failed (no data)   ~ in progress   "
          ". missing")


@dataclass(frozen=True)
class PartitionState:
    instrument: str
    table: str
    day: dt.date
    state: str
    failed_checks: tuple[str, ...] = ()
    accepted: tuple[str, ...] = ()  # checks passed under an accepted vendor exception


def partition_state(
    dagster_status: str | None,
    checks: Mapping[str, str],
    in_ready: bool,
    in_quarantine: bool,
    accepted: tuple[str, ...] = (),
) -> tuple[str, tuple[str, ...]]:
    """Combine Dagster's partition status, the latest check outcomes and the lake's files.

    A quarantined day is FAILED in Dagster (its run recorded no materialisation); a day
    whose checks passed only under an acceptance (`rlx-assets accept`) is `accepted`."""
    failed = tuple(name for name in BLOCKING_CHECKS if checks.get(name) == "FAILED")
    if dagster_status == "IN_PROGRESS":
        return "in_progress", failed
    if failed:
        return ("quarantined" if in_quarantine else "failed_check"), failed
    if dagster_status == "MATERIALIZED" and in_ready and all(
            checks.get(name) == "SUCCEEDED" for name in BLOCKING_CHECKS):
        return ("accepted" if accepted else "ready"), ()
    if dagster_status == "FAILED":
        return "failed", ()
    if in_quarantine:
        return "quarantined", ()
    return "missing", ()


def calendar(states: Sequence[PartitionState]) -> list[str]:
    """Lines like `  2024-01  ####Q##########!.......` (one glyph per day of the month)."""
    lines: list[str] = []
    by_series: dict[tuple[str, str], list[PartitionState]] = {}
    for s in states:
        by_series.setdefault((s.instrument, s.table), []).append(s)
    for (instrument, table), series in by_series.items():
        counts = {name: sum(s.state == name for s in series) for name in GLYPHS}
        summary = ", ".join(f"{n} {name.replace('_', ' ')}" for name, n in counts.items() if n)
        lines.append(f"{instrument} {table}: {summary}")
        months: dict[str, list[str]] = {}
        for s in sorted(series, key=lambda s: s.day):
            month = months.setdefault(s.day.strftime("%Y-%m"), [" "] * 31)
            month[s.day.day - 1] = GLYPHS[s.state]
        for month, glyphs in months.items():
            lines.append(f"  {month}  {''.join(glyphs).rstrip()}")
        for s in series:
            if s.failed_checks:
                lines.append(f"    {s.day}: {', '.join(s.failed_checks)} failed")
            elif s.state == "accepted":
                lines.append(f"    {s.day}: {', '.join(s.accepted)} accepted (rlx-assets accept "
                             "--list)")
    return lines
