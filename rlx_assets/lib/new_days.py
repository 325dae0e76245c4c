"""Which vendor days to materialise next, without Dagster: the `new_vendor_days` sensor's logic.

A (table, day) partition is due when the vendor has it and it was never recorded (ready or
quarantined), or when the vendor's object changed (etag, else size) since it was. Each
vendor version of a day is requested once: the sensor's cursor remembers what it asked for,
per asset, until a run records that version, so neither a run in flight nor a run that
failed (or quarantined the day) is requested again until the vendor publishes something new.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass

from rlx_assets.lib.day_record import VendorStamp
from rlx_assets.lib.inventory import republished
from rlx_assets.lib.vendor import VendorObject

# {asset key as a string: {day: vendor version requested}}
Requested = dict[str, dict[str, str]]


@dataclass(frozen=True)
class Due:
    asset: str  # the asset key as a string, e.g. binance/btc_usdt/trades
    day: dt.date
    version: str
    reason: str  # "new" or "re-published"

    @property
    def run_key(self) -> str:
        return f"{self.asset}:{self.day.isoformat()}:{self.version}"


def version_of(obj: VendorObject) -> str:
    return obj.version or f"size-{obj.size}"


def due_days(
    asset: str,
    vendor: Mapping[dt.date, VendorObject],
    recorded: Mapping[dt.date, VendorStamp],
    in_flight: set[dt.date],
    requested: Mapping[str, str],
) -> list[Due]:
    """The days of one asset to request, newest first."""
    out = []
    for day, obj in sorted(vendor.items(), reverse=True):
        version = version_of(obj)
        if day in in_flight or requested.get(day.isoformat()) == version:
            continue
        rec = recorded.get(day)
        if rec is None:
            out.append(Due(asset, day, version, "new"))
        elif republished(obj, rec):
            out.append(Due(asset, day, version, "re-published"))
    return out


def pick(due: list[Due], limit: int) -> list[Due]:
    """At most `limit` requests a tick, the newest days first (then by asset)."""
    return sorted(due, key=lambda d: (-d.day.toordinal(), d.asset))[:limit]


def still_requested(
    requested: Mapping[str, str],
    vendor: Mapping[dt.date, VendorObject],
    recorded: Mapping[dt.date, VendorStamp],
) -> dict[str, str]:
    """Keep the requests that still stand: the vendor still has that version of the day
    (in the window it was listed for) and no run has recorded it yet."""
    out = {}
    for day_text, version in requested.items():
        day = dt.date.fromisoformat(day_text)
        obj, rec = vendor.get(day), recorded.get(day)
        if obj is not None and version_of(obj) == version and not (
                rec is not None and rec.version == version):
            out[day_text] = version
    return out


def load_cursor(text: str | None) -> Requested:
    if not text:
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return {str(asset): {str(d): str(v) for d, v in days.items()}
            for asset, days in data.items() if isinstance(days, dict)} \
        if isinstance(data, dict) else {}


def dump_cursor(requested: Requested) -> str:
    return json.dumps({a: days for a, days in sorted(requested.items()) if days},
                      sort_keys=True, separators=(",", ":"))
