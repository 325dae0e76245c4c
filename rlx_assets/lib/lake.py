"""Our lake under RLX_LAKE_ROOT: raw/, ready/, quarantine/, certificates/ and the catalog.

The root is a local directory or `s3://bucket/prefix` (`stores` holds both). Work files
(downloads, the normalised file being written) live in a local work directory: under the
root itself for a local lake, so that publishing is one atomic rename; in
`RLX_SCRATCH_DIR` for an S3 lake, from where finished files are uploaded (an S3 object
appears whole or not at all). Either way a reader never sees a partial file, and
re-materialising a partition replaces its single file (no duplicate rows). An S3 lake keeps
no state on the machine between runs: runs can execute anywhere.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from rlx_assets.lib.certificate_files import current_key
from rlx_assets.lib.instruments import Instrument, day_prefix, instrument_prefix
from rlx_assets.lib.stores import LakeError, LocalStore, S3Store, Store, write_error

RAW, READY, QUARANTINE = "raw", "ready", "quarantine"
DATA_FILE = "data.parquet"
STAGING = "_staging"

__all__ = ["DATA_FILE", "QUARANTINE", "RAW", "READY", "Lake", "LakeError", "Published"]


@dataclass(frozen=True)
class Published:
    location: str  # the file's path, or its s3:// URL
    version: str  # what proves it unchanged later with the size: "" locally, the S3 ETag


def partition_key(zone: str, table: str, instrument: Instrument, day: dt.date) -> str:
    return f"{zone}/{day_prefix(table, instrument, day)}".rstrip("/")


def default_scratch() -> Path:
    return Path(tempfile.gettempdir()) / "rlx_assets_scratch"


@dataclass(frozen=True)
class Lake:
    store: Store
    work: Path  # local directory for downloads and files being written
    catalog_file: Path | None = None  # RLX_CATALOG_PATH, if set

    @classmethod
    def at(cls, uri: str, scratch: Path | None = None, endpoint_url: str | None = None,
           catalog_path: Path | None = None) -> Lake:
        """The lake at `uri`: a local directory (or file:// URL), or s3://bucket/prefix (on
        `endpoint_url`, an S3-compatible server, if given), with its work files under
        `scratch` (S3) and its DuckDB catalog at `catalog_path` (default: see catalog_path)."""
        if uri.startswith("s3://"):
            bucket, _, prefix = uri[5:].partition("/")
            if not bucket:
                raise LakeError(f"RLX_LAKE_ROOT={uri} names no bucket; use s3://bucket/prefix.")
            store = S3Store(bucket, prefix.strip("/"), endpoint_url)
            return cls(store, (scratch or default_scratch()) / store.slug, catalog_path)
        if "://" in uri and not uri.startswith("file://"):
            raise LakeError(f"RLX_LAKE_ROOT={uri!r} is neither a local directory nor "
                            "s3://bucket/prefix.")
        root = Path(uri.removeprefix("file://")).expanduser().absolute()
        return cls(LocalStore(root), root, catalog_path)

    @property
    def root(self) -> str:
        return self.store.root

    @property
    def is_local(self) -> bool:
        return isinstance(self.store, LocalStore)

    @property
    def endpoint_url(self) -> str | None:
        """The S3-compatible server of an s3:// lake, if not AWS."""
        return None if self.is_local else self.store.endpoint_url

    # --- where things are ------------------------------------------------------------------

    def zone_key(self, zone: str, table: str, instrument: Instrument, day: dt.date) -> str:
        return f"{partition_key(zone, table, instrument, day)}/{DATA_FILE}"

    def zone_file(self, zone: str, table: str, instrument: Instrument, day: dt.date) -> Path:
        """The partition's file in a local lake (tests and local tools)."""
        return self.work / self.zone_key(zone, table, instrument, day)

    def location(self, key: str) -> str:
        return self.store.location(key)

    @property
    def catalog_path(self) -> Path:
        """The DuckDB catalog file (always local): RLX_CATALOG_PATH, else under a local
        root, else `catalog.duckdb` in the working directory (an s3:// lake)."""
        if self.catalog_file is not None:
            return self.catalog_file
        return self.work / "catalog.duckdb" if self.is_local else Path.cwd() / "catalog.duckdb"

    def certificate_key(self, instrument: Instrument, start: dt.date, end: dt.date) -> str:
        """The current certificate of the window (its lifecycle: `certificate_files`)."""
        return current_key(instrument.slug, start, end)

    def certificate_path(self, instrument: Instrument, start: dt.date, end: dt.date) -> Path:
        """A local lake's certificate file."""
        return self.work / self.certificate_key(instrument, start, end)

    # --- raw/ ------------------------------------------------------------------------------

    def raw_key(self, table: str, instrument: Instrument, day: dt.date, filename: str) -> str:
        return f"{partition_key(RAW, table, instrument, day)}/{filename}"

    def raw_work_path(self, key: str) -> Path:
        """Where the raw bytes of `key` are (or are downloaded to) on this machine."""
        return self.work / key

    def raw_manifest(self, key: str) -> dict | None:
        return self.store.read_json(key + ".json")

    def keep_raw(self, key: str, manifest: dict) -> None:
        """Store the downloaded raw file (already at `raw_work_path(key)`), then its manifest:
        a manifest always describes bytes that are in the lake."""
        try:
            self.store.put(self.raw_work_path(key), key)
        except LakeError:
            self.release(self.raw_work_path(key))
            raise
        try:
            self.store.write_json(key + ".json", manifest)
        except LakeError:
            self.store.delete(key)  # bytes no manifest describes would only mislead
            self.release(self.raw_work_path(key))
            raise

    def local_raw_copy(self, key: str, size: int) -> Path | None:
        """The stored raw file on this machine (downloaded from an S3 lake), or None."""
        return self.store.get(key, self.raw_work_path(key), size)

    def newest_raw(self, table: str, instrument: Instrument, day: dt.date) -> str | None:
        """The key of the partition's raw file that has a manifest, if any."""
        folder = partition_key(RAW, table, instrument, day)
        manifests = sorted(k for k in self.store.list(folder + "/") if k.endswith(".parquet.json"))
        return manifests[-1].removesuffix(".json") if manifests else None

    def forget_raw(self, key: str) -> None:
        """Drop raw bytes that turned out unreadable, so that a retry downloads them again."""
        self.store.delete(key + ".json")
        self.store.delete(key)
        self.release(self.raw_work_path(key))

    def release(self, path: Path) -> None:
        """A work copy is no longer needed (S3 lakes only: a local lake's copy is the data)."""
        if not self.is_local:
            path.unlink(missing_ok=True)

    # --- staging and publishing ------------------------------------------------------------

    def _staging_dir(self) -> Path:
        return self.work / STAGING

    def _staged_prefix(self, table: str, instrument: Instrument, day: dt.date) -> str:
        return f"{table}.{instrument.slug}.{day}."

    @contextmanager
    def partition_lock(self, table: str, instrument: Instrument,
                       day: dt.date) -> Iterator[None]:
        """Held while a partition is being made on this machine: a second run of the same
        partition waits instead of racing the first (the kernel drops it if a run dies).
        `flock` is POSIX: the code location runs on Linux and macOS."""
        folder = self.work / "_locks"
        self._mkdir(folder)
        path = folder / f"{self._staged_prefix(table, instrument, day)}lock"
        try:
            handle = open(path, "a")
        except OSError as exc:
            raise write_error(path, exc) from exc
        with handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def staging_file(self, table: str, instrument: Instrument, day: dt.date) -> Path:
        """A fresh file name for one attempt; `publish` moves it into its zone."""
        folder = self._staging_dir()
        self._mkdir(folder)
        return folder / f"{self._staged_prefix(table, instrument, day)}{uuid.uuid4().hex}.parquet"

    def clear_staging(self, table: str, instrument: Instrument, day: dt.date) -> list[Path]:
        """Remove what earlier, killed attempts at this partition left behind (call with the
        partition's lock held, so that no live attempt's file is touched)."""
        folder = self._staging_dir()
        if not folder.is_dir():
            return []
        stale = list(folder.glob(f"{self._staged_prefix(table, instrument, day)}*.parquet"))
        for path in stale:
            path.unlink(missing_ok=True)
        return stale

    def publish(self, staged: Path, table: str, instrument: Instrument, day: dt.date,
                passed: bool) -> Published:
        """Move `staged` into ready/ (checks passed) or quarantine/ (they did not).

        A failing partition is first withdrawn from ready/, so research never reads it.
        """
        target = self.zone_key(READY if passed else QUARANTINE, table, instrument, day)
        other = self.zone_key(QUARANTINE if passed else READY, table, instrument, day)
        if not passed:  # withdrawn before the quarantined copy lands
            self.store.delete(other)
        version = self.store.put(staged, target)
        if passed:
            self.store.delete(other)
        return Published(self.store.location(target), version)

    def zone_days(self, zone: str, table: str, instrument: Instrument) -> set[dt.date]:
        """The days that have a file in `zone` (one listing, not one look-up per day)."""
        days = set()
        for key in self.store.list(f"{zone}/{instrument_prefix(table, instrument)}"):
            folder, _, name = key.rpartition("/")
            if name == DATA_FILE and folder.rpartition("/")[2].startswith("dt="):
                days.add(dt.date.fromisoformat(folder.rpartition("dt=")[2]))
        return days

    # --- small files -----------------------------------------------------------------------

    def write_json(self, key: str, payload: object) -> str:
        self.store.write_json(key, payload)
        return self.store.location(key)

    def read_json(self, key: str) -> dict | None:
        return self.store.read_json(key)

    def delete(self, key: str) -> None:
        self.store.delete(key)

    def check_writable(self) -> None:
        self.store.check_writable()
        self._mkdir(self.work)
        self._mkdir(self.catalog_path.parent)

    def _mkdir(self, folder: Path) -> None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise write_error(folder, exc,
                              "RLX_LAKE_ROOT" if self.is_local else "RLX_SCRATCH_DIR") from exc
