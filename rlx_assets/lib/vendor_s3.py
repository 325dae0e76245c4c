"""The vendor in an S3 bucket: Crypto Lake itself (through lakeapi's listing), its free sample
bucket (anonymous), or any mirror in its layout. Clients come from `lib.s3`; everything
lakeapi-specific is in `lib.lakeapi_access`."""

from __future__ import annotations

import datetime as dt
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from rlx_assets.lib import lakeapi_access, s3
from rlx_assets.lib.instruments import (
    Instrument,
    day_prefix,
    instrument_prefix,
    listed_instrument,
)
from rlx_assets.lib.vendor import (
    LISTING_THREADS,
    VendorError,
    VendorObject,
    day_in,
    file_missing,
    translate_errors,
)


def listed_instruments(client, bucket: str, table_prefix: str,
                       exchange: str | None = None) -> set[Instrument]:
    """The `exchange=/symbol=` folders under `table_prefix` (`<prefix>/<table>/`), from folder
    listings (`Delimiter="/"`): a request per exchange (and page of 1,000), none per object.
    Needs s3:ListBucket."""
    pages = client.get_paginator("list_objects_v2")

    def folders(prefix: str) -> list[str]:
        return [p["Prefix"] for page in pages.paginate(Bucket=bucket, Prefix=prefix,
                                                       Delimiter="/")
                for p in page.get("CommonPrefixes", [])]

    exchanges = [f"{table_prefix}exchange={exchange}/"] if exchange else folders(table_prefix)
    return {found for folder in exchanges if folder.endswith("/") for symbol in folders(folder)
            if (found := listed_instrument(symbol[len(table_prefix):]))}


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
    # One client per attempts setting, made once (a session and client cost ~60 ms; clients
    # are thread-safe, sessions are not, hence the lock)
    _clients: dict[int, object] = field(default_factory=dict, init=False, repr=False,
                                        compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False,
                                  compare=False)

    @property
    def description(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    @property
    def _bucket_path(self) -> str:
        """`bucket/prefix`, as lakeapi names a bucket."""
        return f"{self.bucket}/{self.prefix}".rstrip("/")

    @property
    def listing_threads(self) -> int:
        """How many listings may run at once: lakeapi keeps its listing cache in files, so
        its listings run one at a time."""
        return 1 if self.listing == "lakeapi" else LISTING_THREADS

    def _client(self, attempts: int | None = None):
        attempts = attempts or self.max_attempts
        with self._lock:
            if attempts not in self._clients:
                self._clients[attempts] = s3.client(self.session_factory(),
                                                    anonymous=self.anonymous, attempts=attempts)
            return self._clients[attempts]

    def _key(self, relative: str) -> str:
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def _object(self, table: str, instrument: Instrument, day: dt.date, key: str,
                head: dict) -> VendorObject:
        return VendorObject(table, instrument, day, f"s3://{self.bucket}/{key}",
                            int(head["ContentLength"]), head.get("ETag", "").strip('"'))

    def _lakeapi_files(self, table: str, instrument: Instrument, first: dt.date, last: dt.date,
                       fresh: bool = True) -> list[dict[str, str]]:
        return lakeapi_access.list_files(self._bucket_path, table, instrument, first, last,
                                         self.session_factory(), self.cache_dir, fresh)

    def locate(self, table: str, instrument: Instrument, day: dt.date) -> VendorObject:
        with translate_errors(self.description):
            # A cached lakeapi listing may be stale either way (a new day not in it, or a
            # key that is gone), or broken (see `lakeapi_access`): on a miss or an error,
            # list again from scratch before giving up.
            for fresh in (False, True) if self.listing == "lakeapi" else (True,):
                try:
                    keys = ([self._key(day_prefix(table, instrument, day) + f["filename"])
                             for f in self._lakeapi_files(table, instrument, day, day, fresh)]
                            if self.listing == "lakeapi"
                            else self._listed_keys(table, instrument, day))
                except Exception:
                    if fresh:
                        raise
                    continue
                if len(keys) > 1:
                    raise VendorError(f"Expected one vendor file for {table} {instrument} {day} "
                                      f"in {self.description}, found {len(keys)}: {keys}.")
                head = s3.head(self._client(), self.bucket, keys[0]) if keys else None
                if head is not None:
                    return self._object(table, instrument, day, keys[0], head)
        raise file_missing(table, instrument, day, self.description)

    def _listed_keys(self, table: str, instrument: Instrument, day: dt.date) -> list[str]:
        prefix = self._key(day_prefix(table, instrument, day))
        pages = self._client().get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix)
        return [o["Key"] for page in pages for o in page.get("Contents", [])
                if o["Key"].endswith(".parquet")]

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
            keys: dict[dt.date, str] = {}
            for item in sorted(self._lakeapi_files(table, instrument, start, end),
                               key=lambda f: (f["dt"], f["filename"])):
                day = dt.date.fromisoformat(item["dt"])
                keys.setdefault(day, self._key(day_prefix(table, instrument, day)
                                               + item["filename"]))
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
                day = day_in(item["Key"], start, end)
                if day is not None and day not in found:
                    found[day] = VendorObject(table, instrument, day,
                                              f"s3://{self.bucket}/{item['Key']}",
                                              int(item["Size"]), item.get("ETag", "").strip('"'))
            if contents and contents[-1]["Key"] > f"{prefix}dt={end.isoformat()}/~":
                break  # keys come sorted: the rest is past the window
        return found

    def list_instruments(self, table: str, exchange: str | None = None) -> set[Instrument]:
        """`lakeapi`: from its fresh listing (contents.json.gz: every key, the only listing
        the vendor offers); otherwise folder listings (see `listed_instruments`)."""
        with translate_errors(self.description):
            if self.listing == "lakeapi":
                return lakeapi_access.list_instruments(
                    self._bucket_path, table, self.session_factory(), self.cache_dir, exchange)
            return listed_instruments(self._client(), self.bucket, self._key(f"{table}/"),
                                      exchange)

    def _headed(self, table: str, instrument: Instrument,
                keys: dict[dt.date, str]) -> dict[dt.date, VendorObject]:
        client = self._client()  # one client: boto3 clients are thread-safe, sessions not

        def head(item: tuple[dt.date, str]) -> VendorObject | None:
            day, key = item
            found = s3.head(client, self.bucket, key)  # None: listed but gone, not available
            return None if found is None else self._object(table, instrument, day, key, found)

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
