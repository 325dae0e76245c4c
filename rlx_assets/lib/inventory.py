"""The vendor inventory without Dagster: per (instrument, table, day) what the vendor has and
what we made of it, summarised for the terminal and as markdown for the UI."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from rlx_assets.lib.day_record import VendorStamp
from rlx_assets.lib.status import PartitionState
from rlx_assets.lib.vendor import VendorObject

# Inventory states, in display order, with their labels. All but the last two are partition
# states (`rlx_assets.lib.status`); a day we have nothing for is `not_fetched` when the
# vendor has it and a `vendor_hole` when it does not.
LABELS = {
    "ready": "ready",
    "accepted": "ready, exception accepted",
    "quarantined": "quarantined",
    "failed_check": "check failed",
    "failed": "run failed",
    "in_progress": "in progress",
    "not_fetched": "not fetched",
    "vendor_hole": "vendor hole",
}
MAX_RANGES = 12  # day ranges shown per state before "... and N more"


def republished(obj: VendorObject, recorded: VendorStamp | None) -> bool:
    """Has the vendor's object changed since the day was recorded (ready or quarantined)?
    Etags when both are known, else sizes; unknown either way counts as unchanged (no
    spurious re-downloads)."""
    if recorded is None:
        return False
    if recorded.version and obj.version:
        return recorded.version != obj.version
    if recorded.size is not None and obj.size >= 0:
        return recorded.size != obj.size
    return False


@dataclass(frozen=True)
class InventoryDay:
    instrument: str
    table: str
    day: dt.date
    state: str  # a key of LABELS
    at_vendor: bool
    vendor_bytes: int | None  # None: not at the vendor, or its size was not asked for
    vendor_version: str | None
    republished: bool = False  # recorded from an older vendor version
    failed_checks: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {"instrument": self.instrument, "table": self.table,
                "day": self.day.isoformat(), "state": self.state, "at_vendor": self.at_vendor,
                "vendor_bytes": self.vendor_bytes, "vendor_version": self.vendor_version,
                "republished": self.republished, "failed_checks": list(self.failed_checks)}


def inventory_state(partition_state: str, at_vendor: bool) -> str:
    if partition_state == "missing":
        return "not_fetched" if at_vendor else "vendor_hole"
    return partition_state


def build_inventory(
    states: Iterable[PartitionState],
    vendor: Mapping[tuple[str, str], Mapping[dt.date, VendorObject]],
    recorded: Mapping[tuple[str, str], Mapping[dt.date, VendorStamp]],
) -> list[InventoryDay]:
    """Join partition states with the vendor's listing and what each day was recorded from,
    all keyed by (instrument, table)."""
    out, series, listed, stamps = [], None, {}, {}
    for s in states:
        if (s.instrument, s.table) != series:  # states come series by series
            series = (s.instrument, s.table)
            listed, stamps = vendor.get(series, {}), recorded.get(series, {})
        obj, rec = listed.get(s.day), stamps.get(s.day)
        out.append(InventoryDay(
            s.instrument, s.table, s.day, inventory_state(s.state, obj is not None),
            at_vendor=obj is not None,
            vendor_bytes=obj.size if obj is not None and obj.size >= 0 else None,
            vendor_version=(obj.version or None) if obj is not None else None,
            republished=obj is not None and s.state != "missing" and republished(obj, rec),
            failed_checks=s.failed_checks,
        ))
    return out


def by_series(days: Iterable[InventoryDay]) -> dict[tuple[str, str], list[InventoryDay]]:
    series: dict[tuple[str, str], list[InventoryDay]] = {}
    for d in days:
        series.setdefault((d.instrument, d.table), []).append(d)
    return {k: sorted(v, key=lambda d: d.day) for k, v in series.items()}


def day_ranges(days: Sequence[dt.date], limit: int = MAX_RANGES) -> str:
    """`2024-01-01..2024-01-03, 2024-01-05` for sorted days; long lists are cut short."""
    ranges: list[list[dt.date]] = []
    for day in sorted(days):
        if ranges and day - ranges[-1][1] == dt.timedelta(days=1):
            ranges[-1][1] = day
        else:
            ranges.append([day, day])
    text = [f"{a}..{b}" if a != b else str(a) for a, b in ranges[:limit]]
    if len(ranges) > limit:
        text.append(f"... and {len(ranges) - limit} more")
    return ", ".join(text)


def format_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000:
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1000
    return f"{value:,.1f} TB"


def _bytes(days: Sequence[InventoryDay]) -> str:
    """Total vendor bytes, or '?' when some size was not asked for."""
    at_vendor = [d for d in days if d.at_vendor]
    if not at_vendor:
        return "-"
    if any(d.vendor_bytes is None for d in at_vendor):
        return "?"
    return format_bytes(sum(d.vendor_bytes or 0 for d in at_vendor))


def rows(series: Sequence[InventoryDay]) -> list[tuple[str, int, str, str]]:
    """(label, days, vendor bytes, day ranges) per state present, in display order."""
    out = []
    for state, label in LABELS.items():
        days = [d for d in series if d.state == state]
        if days:
            out.append((label, len(days), _bytes(days), day_ranges([d.day for d in days])))
    stale = [d for d in series if d.republished]
    if stale:
        out.append(("re-published since fetched", len(stale), _bytes(stale),
                    day_ranges([d.day for d in stale])))
    return out


def headline(series: Sequence[InventoryDay]) -> str:
    have = sum(d.at_vendor for d in series)
    return f"vendor has {have} of {len(series)} days ({_bytes(series)})"


def text_lines(days: Iterable[InventoryDay]) -> list[str]:
    lines = []
    for (instrument, table), series in by_series(days).items():
        lines.append(f"{instrument} {table}: {headline(series)}")
        for label, count, size, ranges in rows(series):
            days_text = f"{count} day" + ("s" if count != 1 else "")
            lines.append(f"  {label:<12} {days_text:>10}  {size:>10}  {ranges}")
    return lines


def markdown(series: Sequence[InventoryDay]) -> str:
    table = ["| state | days | vendor bytes | days (UTC) |", "|---|---:|---:|---|"]
    table += [f"| {label} | {count} | {size} | {ranges} |"
              for label, count, size, ranges in rows(series)]
    return f"**{headline(series)}**\n\n" + "\n".join(table)


def totals(days: Iterable[InventoryDay]) -> dict[str, int]:
    days = list(days)
    return {
        "vendor_days": sum(d.at_vendor for d in days),
        "vendor_bytes": sum(d.vendor_bytes or 0 for d in days),
        "ready": sum(d.state == "ready" for d in days),
        "not_fetched": sum(d.state == "not_fetched" for d in days),
        "vendor_holes": sum(d.state == "vendor_hole" for d in days),
        "republished": sum(d.republished for d in days),
    }
