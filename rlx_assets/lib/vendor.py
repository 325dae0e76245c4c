"""Vendor files, whatever the source: what one is, how access fails, and how it is downloaded.

Discovery finds the one object for (table, instrument, day); downloads stream its bytes
with a sha256, check the byte count and retry transient faults. Every failure a user can
act on is one of the `VendorError`s below, with a sentence that says what to do.
The sources are `vendor_local.LocalSource` (a directory in the vendor layout) and
`vendor_s3.S3Source` (a bucket); S3 clients and error kinds come from `s3`, everything
lakeapi-specific from `lakeapi_access`.
"""
from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from rlx_assets.lib import s3
from rlx_assets.lib.hashing import CHUNK_BYTES, StreamHash
from rlx_assets.lib.instruments import Instrument
from rlx_assets.lib.retry import Backoff
from rlx_assets.lib.writeback import writing

VENDOR_BUCKET = "qnt.data"
VENDOR_PREFIX = "market-data/cryptofeed"
SAMPLE_BUCKET = "sample.crypto.lake"
# The vendor hands out lower-case keys in `.env`; the standard AWS names work too.
CREDENTIAL_NAMES = {
    "aws_access_key_id": ("aws_access_key_id", "AWS_ACCESS_KEY_ID"),
    "aws_secret_access_key": ("aws_secret_access_key", "AWS_SECRET_ACCESS_KEY"),
    "aws_session_token": ("aws_session_token", "AWS_SESSION_TOKEN"),
}
CREDENTIAL_VARIABLES = "aws_access_key_id and aws_secret_access_key (or AWS_ACCESS_KEY_ID " \
                       "and AWS_SECRET_ACCESS_KEY)"


def credential_variables(env: Mapping[str, str]) -> dict[str, str]:
    """{credential field: the variable holding it} for those set (not blank) in `env`: the
    vendor's lower-case name first, then the standard AWS one."""
    return {field: name for field, names in CREDENTIAL_NAMES.items()
            if (name := next((n for n in names if env.get(n, "").strip()), None))}


class VendorError(Exception):
    """A vendor problem with a message meant for people."""

    retriable = False


class VendorFileMissing(VendorError):
    pass


class VendorAccessDenied(VendorError):
    pass


class VendorCredentialsMissing(VendorError):
    pass


class TransientVendorError(VendorError):
    retriable = True


@dataclass(frozen=True)
class VendorObject:
    table: str
    instrument: Instrument
    day: dt.date
    location: str  # s3://bucket/key or a local path
    size: int
    version: str  # etag, or size and mtime for local files: changes when re-published

    @property
    def filename(self) -> str:
        return self.location.rsplit("/", 1)[-1]


def folder_day(name: str, start: dt.date, end: dt.date) -> dt.date | None:
    """The day of a `dt=YYYY-MM-DD` folder name if it is inside the window."""
    if not name.startswith("dt="):
        return None
    try:
        day = dt.date.fromisoformat(name[3:])
    except ValueError:
        return None
    return day if start <= day <= end else None


def day_in(key: str, start: dt.date, end: dt.date) -> dt.date | None:
    """The `dt=` day of a vendor key (or path) if it is a parquet object inside the window."""
    folder, _, name = key.rpartition("/")
    return folder_day(folder.rpartition("/")[2], start, end) if name.endswith(".parquet") \
        else None


class VendorSource(Protocol):
    description: str

    def locate(self, table: str, instrument: Instrument, day: dt.date) -> VendorObject: ...

    def list_days(self, table: str, instrument: Instrument, start: dt.date, end: dt.date,
                  sizes: bool = True) -> dict[dt.date, VendorObject]: ...

    def list_instruments(self, table: str, exchange: str | None = None) -> set[Instrument]:
        """The instruments `table` has (`exchange=/symbol=` folders, or the vendor's listing),
        only `exchange`'s if given."""
        ...

    @contextmanager
    def open(self, obj: VendorObject) -> Iterator[BinaryIO]: ...

    def read_last(self, obj: VendorObject, size: int) -> bytes:
        """The object's last `size` bytes (its parquet footer, say)."""
        ...


LISTING_THREADS = 8  # listings at once: each is a round trip (or a few) to the vendor
Listed = dict[dt.date, VendorObject]


def list_many(source: VendorSource, series: list[tuple[Instrument, str]], start: dt.date,
              end: dt.date, sizes: bool = True) -> dict[tuple[Instrument, str],
                                                        Listed | VendorError]:
    """`list_days` of each (instrument, table), up to the source's `listing_threads` at once
    (20 instruments x 3 tables one after another spend seconds waiting on the network); a
    listing that fails gives its `VendorError` in place of the days."""
    def one(pair: tuple[Instrument, str]) -> Listed | VendorError:
        try:
            return source.list_days(pair[1], pair[0], start, end, sizes=sizes)
        except VendorError as exc:
            return exc

    with ThreadPoolExecutor(getattr(source, "listing_threads", LISTING_THREADS)) as pool:
        return dict(zip(series, pool.map(one, series), strict=True))


def file_missing(table: str, instrument: Instrument, day: dt.date,
                 where: str) -> VendorFileMissing:
    return VendorFileMissing(
        f"No vendor file for table {table}, instrument {instrument}, day {day} in {where}; "
        "the vendor has not published it (check the day and symbol, or wait and re-run)."
    )


@contextmanager
def translate_errors(where: str) -> Iterator[None]:
    """Turn S3 errors into `VendorError`s that say what to do; anything else passes through."""
    try:
        yield
    except VendorError:
        raise
    except Exception as exc:
        fault = s3.classify(exc)
        if fault.kind is s3.Kind.NO_CREDENTIALS:
            raise VendorCredentialsMissing(
                f"No Crypto Lake credentials found for {where}; set {CREDENTIAL_VARIABLES} "
                "in the environment or .env."
            ) from exc
        if fault.kind is s3.Kind.DENIED:
            raise VendorAccessDenied(
                f"{where} {fault.reason}; check that {CREDENTIAL_VARIABLES} are right and "
                "that your subscription covers this table and instrument."
            ) from exc
        if fault.retriable:
            # No "retrying" here: the same text ends the final failure after the last retry.
            raise TransientVendorError(f"{where} {fault.reason}") from exc
        if fault.kind in (s3.Kind.NO_BUCKET, s3.Kind.WRONG_REGION):
            raise VendorError(f"{where} {fault.reason}; check the bucket in "
                              "CRYPTO_LAKE_SOURCE and the region (AWS_DEFAULT_REGION).") from exc
        raise


@dataclass(frozen=True)
class Download:
    path: Path
    size: int
    sha256: str
    seconds: float
    attempts: int
    reused: bool = False
    # The hash states near the end of the file, when it was hashed as it arrived.
    stream: StreamHash | None = None

    @property
    def megabytes_per_second(self) -> float:
        return self.size / 1e6 / self.seconds if self.seconds > 0 else 0.0

    def describe(self) -> str:
        if self.reused:
            return f"raw copy reused ({self.size / 1e6:,.1f} MB, vendor version unchanged)"
        return (f"downloaded {self.size / 1e6:,.1f} MB in {self.seconds:.2f} s "
                f"({self.megabytes_per_second:,.0f} MB/s, {self.attempts} attempt(s))")


class TruncatedDownload(TransientVendorError):
    pass


def download(
    source: VendorSource,
    obj: VendorObject,
    dest: Path,
    backoff: Backoff,
    log: Callable[[str], None] = lambda _m: None,
) -> Download:
    """Stream `obj` into `dest` (atomically), hashing as it goes; retry transient faults."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    for stale in dest.parent.glob(f".{dest.name}.*.part"):  # left by a killed attempt
        stale.unlink(missing_ok=True)
    part = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    attempts = 0

    def attempt() -> tuple[int, StreamHash]:
        nonlocal attempts
        attempts += 1
        digest, size = StreamHash(), 0
        # Hash each chunk on a second thread while the next one is read and the last one
        # written (hashlib releases the GIL): on two cores the hash costs almost nothing.
        with translate_errors(source.description), source.open(obj) as body, \
                writing(part) as out, ThreadPoolExecutor(1) as hasher:
            pending = None
            while chunk := body.read(CHUNK_BYTES):
                if pending is not None:
                    pending.result()
                pending = hasher.submit(digest.update, chunk)
                out.write(chunk)
                size += len(chunk)
            if pending is not None:
                pending.result()
        if size != obj.size:
            raise TruncatedDownload(f"{obj.location}: received {size:,} of {obj.size:,} bytes")
        return size, digest

    def on_retry(n: int, exc: BaseException, wait: float) -> None:
        log(f"Download attempt {n} of {obj.location} failed ({exc}); retrying in {wait:.1f} s.")

    started = time.perf_counter()
    try:
        size, digest = backoff.run(attempt, lambda e: getattr(e, "retriable", False), on_retry)
    except BaseException as exc:
        part.unlink(missing_ok=True)
        if isinstance(exc, TransientVendorError):
            raise TransientVendorError(
                f"Download of {obj.location} failed after {attempts} attempts; the last: {exc}."
            ) from exc
        raise
    os.replace(part, dest)
    return Download(dest, size, digest.hexdigest(), time.perf_counter() - started, attempts,
                    stream=digest)
