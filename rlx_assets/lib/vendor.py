"""Where vendor files come from: a local directory or an S3 bucket in Crypto Lake's layout.

Discovery finds the one object for (table, instrument, day); downloads stream its bytes
with a sha256, check the byte count and retry transient faults. Every failure a user can
act on is one of the `VendorError`s below, with a sentence that says what to do.
"""

from __future__ import annotations

import datetime as dt
import http.client
import os
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from rlx_assets.lib.hashing import CHUNK_BYTES, StreamHash
from rlx_assets.lib.instruments import Instrument, day_prefix, instrument_prefix
from rlx_assets.lib.retry import Backoff
from rlx_assets.lib.writeback import writing

VENDOR_BUCKET = "qnt.data"
VENDOR_PREFIX = "market-data/cryptofeed"
SAMPLE_BUCKET = "sample.crypto.lake"
CREDENTIAL_VARIABLES = "aws_access_key_id and aws_secret_access_key (or AWS_ACCESS_KEY_ID " \
                       "and AWS_SECRET_ACCESS_KEY)"


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


def _day_in(key: str, start: dt.date, end: dt.date) -> dt.date | None:
    """The `dt=` day of a vendor key (or path) if it is a parquet object inside the window."""
    folder, _, name = key.rpartition("/")
    text = folder.rpartition("/")[2]
    if not name.endswith(".parquet") or not text.startswith("dt="):
        return None
    try:
        day = dt.date.fromisoformat(text[3:])
    except ValueError:
        return None
    return day if start <= day <= end else None


class VendorSource(Protocol):
    description: str

    def locate(self, table: str, instrument: Instrument, day: dt.date) -> VendorObject: ...

    def list_days(self, table: str, instrument: Instrument, start: dt.date, end: dt.date,
                  sizes: bool = True) -> dict[dt.date, VendorObject]: ...

    @contextmanager
    def open(self, obj: VendorObject) -> Iterator[BinaryIO]: ...

    def read_last(self, obj: VendorObject, size: int) -> bytes:
        """The object's last `size` bytes (its parquet footer, say)."""
        ...


def _missing(table: str, instrument: Instrument, day: dt.date, where: str) -> VendorFileMissing:
    return VendorFileMissing(
        f"No vendor file for table {table}, instrument {instrument}, day {day} in {where}; "
        "the vendor has not published it (check the day and symbol, or wait and re-run)."
    )


@dataclass
class LocalSource:
    """A directory in the vendor layout (the demo lake, or a mirror of the bucket)."""

    root: Path

    @property
    def description(self) -> str:
        return f"local directory {self.root}"

    def _table_root(self) -> Path:
        nested = self.root / VENDOR_PREFIX
        return nested if nested.is_dir() else self.root

    def locate(self, table: str, instrument: Instrument, day: dt.date) -> VendorObject:
        if not self.root.is_dir():
            raise VendorFileMissing(
                f"The vendor directory {self.root} does not exist; run `rlx-assets demo` to "
                "generate the demo lake, or point CRYPTO_LAKE_SOURCE at your data."
            )
        folder = self._table_root() / day_prefix(table, instrument, day)
        files = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
        if not files:
            raise _missing(table, instrument, day, self.description)
        if len(files) > 1:
            raise VendorError(f"Expected one vendor file in {folder}, found {len(files)}; "
                              "remove the stray files and re-run.")
        stat = files[0].stat()
        return VendorObject(table, instrument, day, str(files[0]), stat.st_size,
                            f"{stat.st_size}-{stat.st_mtime_ns}")

    def list_days(self, table: str, instrument: Instrument, start: dt.date, end: dt.date,
                  sizes: bool = True) -> dict[dt.date, VendorObject]:
        """Every day in start..end (inclusive) that has a file, from one directory walk;
        size and version as `locate` gives them. (`sizes` is free here and ignored.)"""
        if not self.root.is_dir():
            raise VendorFileMissing(
                f"The vendor directory {self.root} does not exist; run `rlx-assets demo` to "
                "generate the demo lake, or point CRYPTO_LAKE_SOURCE at your data."
            )
        found: dict[dt.date, VendorObject] = {}
        folder = self._table_root() / instrument_prefix(table, instrument)
        for path in sorted(folder.glob("dt=*/*.parquet")) if folder.is_dir() else []:
            day = _day_in(path.as_posix(), start, end)
            if day is not None and day not in found:  # several files: `locate` reports it
                stat = path.stat()
                found[day] = VendorObject(table, instrument, day, str(path), stat.st_size,
                                          f"{stat.st_size}-{stat.st_mtime_ns}")
        return found

    @contextmanager
    def open(self, obj: VendorObject) -> Iterator[BinaryIO]:
        with open(obj.location, "rb") as handle:
            yield handle

    def read_last(self, obj: VendorObject, size: int) -> bytes:
        with open(obj.location, "rb") as handle:
            handle.seek(max(0, obj.size - size))
            return handle.read(size)


_LAKEAPI_LOCK = threading.Lock()


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "rlx_assets" / "lakeapi"


def lakeapi_module(cache_dir: Path):
    """Import lakeapi with its `.lake_cache` folders under `cache_dir`, not the working dir.

    lakeapi creates its caches relative to the current directory when imported, so the
    import runs once, under a lock, from inside our cache directory.
    """
    import sys

    with _LAKEAPI_LOCK:
        if "lakeapi" not in sys.modules:
            cache_dir.mkdir(parents=True, exist_ok=True)
            cwd = os.getcwd()
            os.chdir(cache_dir)
            try:
                import lakeapi  # noqa: F401
                import lakeapi.main  # noqa: F401
            finally:
                os.chdir(cwd)
        return sys.modules["lakeapi"]


def _clear_lakeapi_listing_cache(lakeapi) -> None:
    """Forget lakeapi's cached listings (its contents.json.gz copies and List* answers).

    The caches are `cachetools_ext` FSLRUCaches, one pickle file per key. Their `clear()`
    cannot be trusted: it maps file names back to keys with `name.strip(".pkl")`, which also
    eats a key's own trailing `p`, `k` or `l` - the key of table `book` becomes `boo`, the
    look-up fails and `clear()` stops there, so `book` listings survived. Remove the files.
    """
    for fs_cache in (lakeapi.main.contents_cache, lakeapi.main.cache):
        for entry in Path(fs_cache.path).glob("*.pkl"):
            entry.unlink(missing_ok=True)


def _forget_failed_contents_listing(lakeapi, bucket_path: str, table: str) -> None:
    """Drop a failed `contents.json.gz` fetch that lakeapi cached (as None, for an hour).

    Meanwhile lakeapi would list the bucket instead, which vendor keys without s3:ListBucket
    may not do: one transient error would turn into "access denied" for every partition.
    The key is lakeapi 0.22's `_get_table_contents_cache_key` cache key.
    """
    key = f"bucket={bucket_path[:7]}-table={table}"
    cache = lakeapi.main.contents_cache
    try:
        if cache[key] is None:
            del cache[key]
    except KeyError:
        pass


@dataclass
class S3Source:
    """An S3 bucket in the vendor layout: Crypto Lake itself, its sample bucket, or a mirror.

    `listing="lakeapi"` discovers files through `lakeapi.list_data`, which reads the
    vendor's `contents.json.gz` so that keys without `s3:ListBucket` still work; its cached
    listing is cleared and re-read before a day is reported missing. `listing="s3"` lists
    the day's prefix directly.
    """

    bucket: str
    prefix: str
    session_factory: Callable[[], object]
    listing: str = "s3"
    anonymous: bool = False
    cache_dir: Path | None = None  # lakeapi's .lake_cache goes here; default ~/.cache/rlx_assets
    max_attempts: int = 5

    @property
    def description(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def _client(self, attempts: int | None = None):
        import botocore
        from botocore.config import Config

        config = Config(
            # botocore's `max_attempts` counts retries (N + 1 requests); `total_max_attempts`
            # counts requests, which is what our `max_attempts` means.
            retries={"mode": "standard",
                     "total_max_attempts": max(1, attempts or self.max_attempts)},
            connect_timeout=10,
            read_timeout=60,
            signature_version=botocore.UNSIGNED if self.anonymous else None,
        )
        return self.session_factory().client("s3", config=config)

    def _key(self, relative: str) -> str:
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def locate(self, table: str, instrument: Instrument, day: dt.date) -> VendorObject:
        with translate_errors(self.description):
            # A cached lakeapi listing may be stale either way (a new day not in it, or a
            # key that is gone), or broken (see `_forget_failed_contents_listing`): on a miss
            # or an error, list again from scratch before giving up.
            for fresh in (False, True) if self.listing == "lakeapi" else (True,):
                try:
                    keys = (self._lakeapi_keys(table, instrument, day, fresh)
                            if self.listing == "lakeapi"
                            else self._listed_keys(table, instrument, day))
                except Exception:
                    if fresh:
                        raise
                    continue
                if len(keys) > 1:
                    raise VendorError(f"Expected one vendor file for {table} {instrument} {day} "
                                      f"in {self.description}, found {len(keys)}: {keys}.")
                head = self._head(keys[0]) if keys else None
                if head is not None:
                    return VendorObject(table, instrument, day, f"s3://{self.bucket}/{keys[0]}",
                                        int(head["ContentLength"]),
                                        head.get("ETag", "").strip('"'))
        raise _missing(table, instrument, day, self.description)

    def _head(self, key: str) -> dict | None:
        import botocore.exceptions

        try:
            return self._client().head_object(Bucket=self.bucket, Key=key)
        except botocore.exceptions.ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def _listed_keys(self, table: str, instrument: Instrument, day: dt.date) -> list[str]:
        prefix = self._key(day_prefix(table, instrument, day))
        pages = self._client().get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix)
        return [o["Key"] for page in pages for o in page.get("Contents", [])
                if o["Key"].endswith(".parquet")]

    def _lakeapi_keys(self, table: str, instrument: Instrument, day: dt.date,
                      fresh: bool) -> list[str]:
        lakeapi = lakeapi_module(self.cache_dir or default_cache_dir())
        bucket_path = f"{self.bucket}/{self.prefix}".rstrip("/")
        start = dt.datetime.combine(day, dt.time())
        if fresh:
            _clear_lakeapi_listing_cache(lakeapi)
        # list_data reads contents.json.gz only for its default bucket.
        lakeapi.set_default_bucket(bucket_path)
        try:
            found = lakeapi.list_data(
                table, start=start, end=start + dt.timedelta(days=1),
                symbols=[instrument.symbol], exchanges=[instrument.exchange],
                bucket=bucket_path, boto3_session=self.session_factory(),
            )
        except lakeapi.exceptions.NoFilesFound:
            return []
        except lakeapi.exceptions.InvalidArgumentValue:
            if fresh:
                raise
            return []  # a cached listing of another bucket: list again
        finally:
            _forget_failed_contents_listing(lakeapi, bucket_path, table)
        return [self._key(day_prefix(table, instrument, day) + f["filename"]) for f in found]

    def list_days(self, table: str, instrument: Instrument, start: dt.date, end: dt.date,
                  sizes: bool = True) -> dict[dt.date, VendorObject]:
        """Every day in start..end (inclusive) the vendor has, from one listing per call.

        `listing="s3"`: one `list_objects_v2` of the instrument's prefix from `start` on,
        which carries each object's size and etag. `listing="lakeapi"`: one fresh
        `lakeapi.list_data` over the window (the vendor's `contents.json.gz`, no
        s3:ListBucket needed); that listing has no sizes, so with `sizes` each object found
        gets a HEAD (8 at a time), and without it size is -1 and version "". Versions are
        the same etags `locate` records. A day with several files appears once; `locate`
        reports it when the day is materialised.
        """
        with translate_errors(self.description):
            if self.listing != "lakeapi":
                return self._listed_days(table, instrument, start, end)
            keys = self._lakeapi_window_keys(table, instrument, start, end)
            if not sizes:
                return {day: VendorObject(table, instrument, day, f"s3://{self.bucket}/{key}",
                                          -1, "") for day, key in keys.items()}
            return self._headed(table, instrument, keys)

    def _listed_days(self, table: str, instrument: Instrument, start: dt.date,
                     end: dt.date) -> dict[dt.date, VendorObject]:
        prefix = self._key(instrument_prefix(table, instrument))
        pages = self._client().get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix, StartAfter=f"{prefix}dt={start.isoformat()}")
        found: dict[dt.date, VendorObject] = {}
        for page in pages:
            contents = page.get("Contents") or []
            for item in contents:
                day = _day_in(item["Key"], start, end)
                if day is not None and day not in found:
                    found[day] = VendorObject(table, instrument, day,
                                              f"s3://{self.bucket}/{item['Key']}",
                                              int(item["Size"]), item.get("ETag", "").strip('"'))
            if contents and contents[-1]["Key"] > f"{prefix}dt={end.isoformat()}/~":
                break  # keys come sorted: the rest is past the window
        return found

    def _lakeapi_window_keys(self, table: str, instrument: Instrument, start: dt.date,
                             end: dt.date) -> dict[dt.date, str]:
        lakeapi = lakeapi_module(self.cache_dir or default_cache_dir())
        bucket_path = f"{self.bucket}/{self.prefix}".rstrip("/")
        _clear_lakeapi_listing_cache(lakeapi)  # a cached listing would hide new days
        lakeapi.set_default_bucket(bucket_path)
        try:
            found = lakeapi.list_data(
                table, start=dt.datetime.combine(start, dt.time()),
                end=dt.datetime.combine(end + dt.timedelta(days=1), dt.time()),
                symbols=[instrument.symbol], exchanges=[instrument.exchange],
                bucket=bucket_path, boto3_session=self.session_factory(),
            )
        except lakeapi.exceptions.NoFilesFound:
            return {}
        finally:
            _forget_failed_contents_listing(lakeapi, bucket_path, table)
        keys: dict[dt.date, str] = {}
        for item in sorted(found, key=lambda f: (f["dt"], f["filename"])):
            day = dt.date.fromisoformat(item["dt"])
            keys.setdefault(day, self._key(day_prefix(table, instrument, day) + item["filename"]))
        return keys

    def _headed(self, table: str, instrument: Instrument,
                keys: dict[dt.date, str]) -> dict[dt.date, VendorObject]:
        from concurrent.futures import ThreadPoolExecutor

        import botocore.exceptions

        client = self._client()  # one client: boto3 clients are thread-safe, sessions not

        def head(item: tuple[dt.date, str]) -> VendorObject | None:
            day, key = item
            try:
                found = client.head_object(Bucket=self.bucket, Key=key)
            except botocore.exceptions.ClientError as exc:
                if str(exc.response.get("Error", {}).get("Code")) in ("404", "NoSuchKey",
                                                                      "NotFound"):
                    return None  # listed but gone: not available
                raise
            return VendorObject(table, instrument, day, f"s3://{self.bucket}/{key}",
                                int(found["ContentLength"]), found.get("ETag", "").strip('"'))

        with ThreadPoolExecutor(max_workers=8) as pool:
            return {obj.day: obj for obj in pool.map(head, sorted(keys.items())) if obj}

    def read_last(self, obj: VendorObject, size: int) -> bytes:
        key = urllib.parse.urlparse(obj.location).path.lstrip("/")
        with translate_errors(self.description):  # one attempt: the download decides
            return self._client(attempts=1).get_object(Bucket=self.bucket, Key=key,
                                             Range=f"bytes=-{size}")["Body"].read()

    @contextmanager
    def open(self, obj: VendorObject) -> Iterator[BinaryIO]:
        key = urllib.parse.urlparse(obj.location).path.lstrip("/")
        with translate_errors(self.description):
            body = self._client().get_object(Bucket=self.bucket, Key=key)["Body"]
        try:
            yield body
        finally:
            body.close()


_TRANSIENT_CODES = {"500", "502", "503", "504", "SlowDown", "Throttling", "ThrottlingException",
                    "RequestTimeout", "RequestTimeTooSkewed", "InternalError",
                    "ServiceUnavailable"}


@contextmanager
def translate_errors(where: str) -> Iterator[None]:
    """Turn boto errors into `VendorError`s that say what to do."""
    import botocore.exceptions as bx

    try:
        yield
    except VendorError:
        raise
    except bx.NoCredentialsError as exc:
        raise VendorCredentialsMissing(
            f"No Crypto Lake credentials found for {where}; set {CREDENTIAL_VARIABLES} "
            "in the environment or .env."
        ) from exc
    except bx.ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
        if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch") \
                or status == "403":
            raise VendorAccessDenied(
                f"{where} denied access ({code}); check that {CREDENTIAL_VARIABLES} are "
                "right and that your subscription covers this table and instrument."
            ) from exc
        if code in _TRANSIENT_CODES or status.startswith("5"):
            # No "retrying" here: the same text ends the final failure after the last retry.
            raise TransientVendorError(f"{where} answered {code} (HTTP {status}), a temporary "
                                       "fault") from exc
        raise
    except (bx.EndpointConnectionError, bx.ConnectionClosedError, bx.ReadTimeoutError,
            bx.ConnectTimeoutError, bx.ResponseStreamingError, bx.IncompleteReadError,
            http.client.IncompleteRead, ConnectionError, TimeoutError) as exc:
        raise TransientVendorError(f"{where} connection failed ({exc})") from exc


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
