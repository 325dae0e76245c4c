"""What a table run records about one day, as one typed record: `DayRecord`.

A day that passed its blocking checks is recorded as the partition's materialisation; a day
that did not (its data is in quarantine/) as an observation of the partition, so that Dagster
shows the partition as failed while the facts about the day stay one click away. Both carry
the same metadata, written by `to_metadata` and read back by `from_metadata`; every reader
(certificate, status, inventory, the new-days sensor, the trailing days of the row-count
check) goes through this record instead of string keys.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from rlx_assets.lib.timestamps import format_ns

READY, QUARANTINE = "ready", "quarantine"


def _int(value: object) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _text(value: object) -> str:
    return "" if value is None else str(value)


class VendorStamp(NamedTuple):
    """Which vendor file a day was recorded from: what the vendor's listing is compared with
    to tell a re-published day (`DayRecord.vendor_version`, `.vendor_bytes`)."""

    version: str | None  # S3 ETag, or size-mtime for a local file
    size: int | None


@dataclass(frozen=True)
class DayRecord:
    """One partition as its latest run left it."""

    day: dt.date
    zone: str  # READY or QUARANTINE
    rows: int
    first_time: int | None  # first and last real origin_time, ns since the epoch (UTC)
    last_time: int | None
    location: str  # the file in ready/ or quarantine/: a path, or an s3:// URL
    version: str  # with size and sha256, what proves that file unchanged ("" locally)
    sha256: str
    size: int
    vendor_object: str = ""
    vendor_bytes: int | None = None
    vendor_sha256: str = ""
    vendor_version: str | None = None
    failed_checks: tuple[str, ...] = ()  # blocking checks that failed (quarantined days)
    # check -> {"reason", "accepted_by", "accepted_at"}: failures passed by an acceptance
    accepted: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    vendor_contains_gaps: str | None = None  # the vendor file's own flag: "Yes", "No"
    origin_time_missing: int = 0  # rows without an exchange time (sentinel 0 / -1)
    resyncs: int = 0  # book resyncs (runs of rows without an exchange time)
    # Filled by the reader, not stored: the latest status of each check for this record.
    checks: Mapping[str, str] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return self.zone == READY

    @property
    def vendor_stamp(self) -> VendorStamp:
        return VendorStamp(self.vendor_version, self.vendor_bytes)

    def with_checks(self, checks: Mapping[str, str]) -> DayRecord:
        return replace(self, checks=dict(checks))

    def to_metadata(self) -> dict[str, object]:
        """Plain values, under the names the UI and the contract use."""
        return {
            "dagster/row_count": self.rows,
            "first_origin_time": format_ns(self.first_time),
            "last_origin_time": format_ns(self.last_time),
            "first_origin_time_ns": self.first_time,
            "last_origin_time_ns": self.last_time,
            "zone": self.zone,
            "path": self.location,
            "version": self.version,
            "sha256": self.sha256,
            "bytes": self.size,
            "vendor_object": self.vendor_object,
            "vendor_bytes": self.vendor_bytes,
            "vendor_sha256": self.vendor_sha256,
            "vendor_version": self.vendor_version,
            "vendor_contains_gaps": self.vendor_contains_gaps,
            "origin_time_missing_rows": self.origin_time_missing,
            "resyncs": self.resyncs,
            "failed_checks": list(self.failed_checks),
            "accepted_checks": {k: dict(v) for k, v in self.accepted.items()},
        }

    @classmethod
    def from_metadata(cls, day: dt.date, metadata: Mapping[str, object],
                      checks: Mapping[str, str] | None = None) -> DayRecord:
        """The record from metadata values (`MetadataValue.value`s), with `checks` (the
        reader's); absent keys (older records) read as unknown."""
        m = metadata
        accepted = m.get("accepted_checks")
        return cls(
            day=day,
            zone=_text(m.get("zone")) or READY,
            rows=_int(m.get("dagster/row_count")) or 0,
            first_time=_int(m.get("first_origin_time_ns")),
            last_time=_int(m.get("last_origin_time_ns")),
            location=_text(m.get("path")),
            version=_text(m.get("version")),
            sha256=_text(m.get("sha256")),
            size=_int(m.get("bytes")) if _int(m.get("bytes")) is not None else -1,
            vendor_object=_text(m.get("vendor_object")),
            vendor_bytes=_int(m.get("vendor_bytes")),
            vendor_sha256=_text(m.get("vendor_sha256")),
            vendor_version=_text(m.get("vendor_version")) or None,
            failed_checks=tuple(m.get("failed_checks") or ()),
            accepted={str(k): dict(v) for k, v in accepted.items()}
            if isinstance(accepted, Mapping) else {},
            vendor_contains_gaps=_text(m.get("vendor_contains_gaps")) or None,
            origin_time_missing=_int(m.get("origin_time_missing_rows")) or 0,
            resyncs=_int(m.get("resyncs")) or 0,
            checks=dict(checks or {}),
        )
