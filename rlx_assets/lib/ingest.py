"""One partition end to end, without Dagster: vendor, raw/, one pass, ready/ or quarantine/."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass

from rlx_assets.lib import acceptance, certificate_files
from rlx_assets.lib.checks import CheckOutcome, evaluate, failed_blocking
from rlx_assets.lib.day_record import QUARANTINE, READY, DayRecord
from rlx_assets.lib.footer_job import FooterJob, read_tail
from rlx_assets.lib.hashing import StreamHash
from rlx_assets.lib.instruments import Instrument
from rlx_assets.lib.lake import RAW, Lake, partition_key
from rlx_assets.lib.normalise import UnreadableVendorFile, normalise_day, start_footer
from rlx_assets.lib.retry import Backoff
from rlx_assets.lib.scan import DayScan, TimeRules
from rlx_assets.lib.tables import TableSpec
from rlx_assets.lib.vendor import (
    Download,
    VendorError,
    VendorFileMissing,
    VendorObject,
    VendorSource,
    download,
)

Log = Callable[[str], None]


@dataclass(frozen=True)
class PartitionResult:
    vendor: VendorObject
    raw: Download
    scan: DayScan
    outcomes: list[CheckOutcome]
    location: str  # the file in ready/ or quarantine/: a path, or an s3:// URL
    version: str  # with size and sha256, what proves that file unchanged later
    sha256: str
    size: int
    seconds: float
    withdrawn: tuple[str, ...] = ()  # certificates withdrawn because this day failed

    @property
    def passed(self) -> bool:
        """Every blocking check passed (WARN-level checks never block)."""
        return not self.failed_checks()

    def failed_checks(self) -> list[str]:
        return failed_blocking(self.outcomes)

    def record(self) -> DayRecord:
        """What the day's materialisation (or quarantine observation) records."""
        scan = self.scan
        return DayRecord(
            day=scan.day, zone=READY if self.passed else QUARANTINE, rows=scan.rows,
            first_time=scan.first_time, last_time=scan.last_time, location=self.location,
            version=self.version, sha256=self.sha256, size=self.size,
            vendor_object=self.vendor.location, vendor_bytes=self.raw.size,
            vendor_sha256=self.raw.sha256, vendor_version=self.vendor.version,
            failed_checks=tuple(self.failed_checks()),
            vendor_contains_gaps=scan.vendor_contains_gaps,
            origin_time_missing=scan.times.missing,
            resyncs=scan.times.resync_count if scan.times.resyncs_possible else 0,
            accepted=acceptance.accepted_checks(self.outcomes),
        )

    def summary(self) -> str:
        """One line for the run log: rows, verdict, warnings, where the data went."""
        failed = self.failed_checks()
        warned = [o.name for o in self.outcomes if not o.blocking and not o.passed]
        verdict = "checks passed" if not failed else "checks FAILED: " + ", ".join(failed)
        accepted = acceptance.accepted_checks(self.outcomes)
        if accepted:
            verdict += f" (accepted vendor exceptions: {', '.join(accepted)})"
        if warned:
            verdict += f" (warnings: {', '.join(warned)})"
        return (f"{self.scan.rows:,} rows, {verdict}; {self.raw.describe()}; written to "
                f"{self.location}.")


def fetch_raw(
    source: VendorSource, obj: VendorObject, lake: Lake, backoff: Backoff, log: Log
) -> Download:
    """Vendor bytes in raw/, downloaded unless the same version is already there."""
    key = lake.raw_key(obj.table, obj.instrument, obj.day, obj.filename)
    known = lake.raw_manifest(key)
    if known and known.get("size") == obj.size and known.get("version") == obj.version:
        path = lake.local_raw_copy(key, obj.size)
        if path is not None:
            return Download(path, obj.size, known["sha256"], 0.0, 0, reused=True)
    got = download(source, obj, lake.raw_work_path(key), backoff, log)
    lake.keep_raw(key, {
        "location": obj.location, "size": got.size, "version": obj.version,
        "sha256": got.sha256, "downloaded_at": dt.datetime.now(dt.UTC).isoformat(),
    })
    return got


def early_footer(source: VendorSource, obj: VendorObject) -> FooterJob | None:
    """Start editing the vendor file's footer from its last bytes (one ranged read), so that
    the edit runs while the file downloads; None if they cannot be had (the normalising pass
    then reads the footer from the download)."""
    try:
        tail = read_tail(lambda n: source.read_last(obj, n), obj.filename)
        return start_footer(tail, obj.size)
    except Exception:  # noqa: BLE001 - an optimisation only: the download decides
        return None


def stored_raw(lake: Lake, table: str, instrument: Instrument, day: dt.date) -> tuple[
        VendorObject, Download]:
    """The raw copy already in the lake, verified against its manifest (no vendor call)."""
    key = lake.newest_raw(table, instrument, day)
    known = lake.raw_manifest(key) if key else None
    path = lake.local_raw_copy(key, known["size"]) if known else None
    if path is None:
        raise VendorFileMissing(
            f"No raw copy of {table} {instrument} {day} in "
            f"{lake.location(partition_key(RAW, table, instrument, day))}; materialise it from "
            "the vendor first (without from_raw)."
        )
    stream = StreamHash.of_file(path)  # its states also give the ready file's hash
    if stream.hexdigest() != known["sha256"]:
        raise VendorError(f"The raw copy {lake.location(key)} no longer matches the sha256 "
                          "recorded when it was downloaded; materialise it from the vendor "
                          "(without from_raw).")
    obj = VendorObject(table, instrument, day, known["location"], known["size"],
                       known["version"])
    return obj, Download(path, known["size"], known["sha256"], 0.0, 0, reused=True,
                         stream=stream)


def ingest_partition(
    source: VendorSource | None,
    lake: Lake,
    spec: TableSpec,
    instrument: Instrument,
    day: dt.date,
    backoff: Backoff,
    rules: TimeRules,
    previous_last_time: int | None = None,
    log: Log = lambda _m: None,
    from_raw: bool = False,
    trailing_rows: list[int] | None = None,
) -> PartitionResult:
    """`from_raw` re-runs the pass and checks on the stored raw copy without the vendor.

    Two attempts at the same partition on one machine take turns (`partition_lock`).
    """
    started = time.perf_counter()
    footer = None
    with lake.partition_lock(spec.name, instrument, day):
        if from_raw:
            obj, raw = stored_raw(lake, spec.name, instrument, day)
        else:
            obj = source.locate(spec.name, instrument, day)
            footer = early_footer(source, obj)
            try:
                raw = fetch_raw(source, obj, lake, backoff, log)
            except BaseException:
                if footer is not None:
                    footer.close()
                raise
        staged = None
        try:
            for stale in lake.clear_staging(spec.name, instrument, day):
                log(f"Removed {stale.name} left in _staging/ by an earlier, interrupted attempt.")
            staged = lake.staging_file(spec.name, instrument, day)
            try:
                scan = normalise_day(raw.path, spec, day, staged, raw.stream, rules, footer)
            except UnreadableVendorFile as exc:
                if from_raw:  # it matched its recorded sha256: keep it, say what it is
                    raise VendorError(f"The stored raw copy of {spec.name} {instrument} {day} "
                                      f"is not readable parquet ({exc}); materialise the day "
                                      "from the vendor (without from_raw).") from None
                lake.forget_raw(lake.raw_key(spec.name, instrument, day, obj.filename))
                raise
            outcomes = acceptance.apply(
                evaluate(scan, previous_last_time, trailing_rows),
                acceptance.for_partition(lake, spec.name, instrument, day), raw.sha256)
            failed = failed_blocking(outcomes)
            passed = not failed
            withdrawn: list[certificate_files.Moved] = []
            if failed:  # before ready/ loses the day: no certificate may outlive it
                why = f"{spec.name} {day} failed {', '.join(failed)}"
                withdrawn = certificate_files.withdraw_covering(lake, instrument, day, why)
                for moved in withdrawn:
                    log(f"Withdrew the certificate {moved.location} ({why}); kept as "
                        f"{moved.kept_at}.")
            published = lake.publish(staged, spec.name, instrument, day, passed)
        finally:
            if footer is not None:
                footer.close()
            if staged is not None:
                staged.unlink(missing_ok=True)  # published (moved away) or failed: gone
            lake.release(raw.path)
    return PartitionResult(obj, raw, scan, outcomes, published.location, published.version,
                           scan.output_sha256, scan.output_bytes, time.perf_counter() - started,
                           tuple(m.location for m in withdrawn))
