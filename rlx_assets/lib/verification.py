"""Incremental verification of ready/ files: re-hash only what changed since it was verified.

The certificate vouches that every ready/ file still has the size and sha256 that Dagster
recorded when the day was materialised. Hashing is its whole cost (a year of BINANCE
BTC-USDT is about 180 GB), so it should be paid once per file, not once per issue.

**S3 lakes** need nothing here: the store compares size and ETag from one HEAD per object
(`S3Store.unchanged`, no read). Changed bytes give an object a new ETag.

**Local lakes** keep, per ready file, what was seen when its sha256 last matched: size,
`mtime_ns`, `ctime_ns`, the sha256 and when (`Verified`). A file whose size, mtime and ctime
still equal its record, and whose record vouches for the sha256 Dagster recorded now, is not
read; anything else is hashed again and, if it still matches, recorded again. The records
live in the lake, one JSON per instrument, `_verified/<slug>.json` beside `_staging/` and
`_locks/`: one read and one write per issue rather than a small file per partition, and
outside ready/ (whose listings and DuckDB globs must see only data) and certificates/
(which holds only certificates). They are written atomically (a temporary file renamed)
after every issue or refusal; a missing or unreadable record file only means a full hash.

The trade-off, as with rsync's quick check (size + mtime) and git's index (which adds
ctime, as we do): a change that leaves size, mtime and ctime all as they were is not seen.
`touch -d` or `os.utime` cannot do that (they set ctime to now), but writing through the
block device, media corruption or a clock set back can. Materialise the certificate with
`rehash_all: true` (run config) to re-read every file. ctime also changes on `chmod`,
`chown` and new hard links (some backup tools), which only costs a re-hash. A file changed
within `RACY_NS` of being hashed is not recorded (a write in the same timestamp tick would
leave its times unchanged: git's "racily clean" entries), so it is hashed again next time.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from rlx_assets.lib.hashing import sha256_file

if TYPE_CHECKING:
    from rlx_assets.lib.instruments import Instrument
    from rlx_assets.lib.lake import Lake

RACY_NS = 2_000_000_000  # coarse timestamps (FAT 2 s, HFS+ 1 s, NFS clock skew)
FORMAT = 1


@dataclass(frozen=True)
class Verified:
    """A local file as it was when its sha256 last matched."""

    size: int
    mtime_ns: int
    ctime_ns: int
    sha256: str
    verified_at: str  # ISO 8601, UTC

    @classmethod
    def of(cls, stat: os.stat_result, sha256: str, at: dt.datetime) -> Verified:
        return cls(stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, sha256, at.isoformat())

    def vouches_for(self, stat: os.stat_result, size: int, sha256: str) -> bool:
        """The file is as it was verified, and was verified against this sha256 and size."""
        return (self.sha256 == sha256 and self.size == size == stat.st_size
                and self.mtime_ns == stat.st_mtime_ns and self.ctime_ns == stat.st_ctime_ns)


def _times(stat: os.stat_result) -> tuple[int, int, int]:
    return stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns


class Outcome(NamedTuple):
    problem: str | None  # why the file is not the one recorded; None when it is
    keep: Verified | None  # the record to keep for it
    hashed: bool  # the file was read


def verify_file(path: Path, size: int, sha256: str, record: Verified | None) -> Outcome:
    """Is `path` the file recorded with `size` and `sha256`? Reads it only when `record`
    does not vouch for it."""
    try:
        stat = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return Outcome(f"file {path} is gone", None, False)
    if record is not None and record.vouches_for(stat, size, sha256):
        return Outcome(None, record, False)
    changed = f"file {path} changed since it was materialised"
    if stat.st_size != size:
        return Outcome(changed, None, False)
    started = time.time_ns()
    if sha256_file(path) != sha256:
        return Outcome(changed, None, True)
    if _times(path.stat()) != _times(stat):
        return Outcome(f"file {path} changed while it was being verified", None, True)
    if started - max(stat.st_mtime_ns, stat.st_ctime_ns) < RACY_NS:
        return Outcome(None, None, True)  # written just now: the next write may not show
    at = dt.datetime.fromtimestamp(started / 1e9, dt.UTC)
    return Outcome(None, Verified.of(stat, sha256, at), True)


class Verifier:
    """The certificate's `Unchanged` for a local lake: trusts what its records vouch for,
    hashes the rest, and remembers what it verified (`to_json`; `save` keeps it)."""

    def __init__(self, records: dict[str, Verified] | None = None,
                 rehash_all: bool = False) -> None:
        self.known = dict(records or {})
        self.rehash_all = rehash_all
        self.seen: dict[str, Verified] = {}  # verified in this pass: what `to_json` keeps
        self.files = self.hashed = self.hashed_bytes = self.trusted = 0

    def __call__(self, location: str, size: int, sha256: str, version: str) -> str | None:
        record = None if self.rehash_all else self.known.get(location)
        outcome = verify_file(Path(location), size, sha256, record)
        self.files += 1
        if outcome.hashed:
            self.hashed += 1
            self.hashed_bytes += size
        elif outcome.problem is None:
            self.trusted += 1
        if outcome.keep is not None:
            self.seen[location] = outcome.keep
        return outcome.problem

    def summary(self) -> dict[str, int]:
        return {"files": self.files, "rehashed": self.hashed,
                "rehashed_bytes": self.hashed_bytes, "trusted": self.trusted}

    def to_json(self) -> dict[str, object]:
        return {"format": FORMAT, "files": {k: asdict(v) for k, v in sorted(self.seen.items())}}

    @classmethod
    def from_json(cls, payload: dict | None, rehash_all: bool = False) -> Verifier:
        """From `to_json`'s output; anything unreadable gives no records (a full hash)."""
        files = payload.get("files") if isinstance(payload, dict) else None
        if not isinstance(files, dict) or payload.get("format") != FORMAT:
            return cls(rehash_all=rehash_all)
        records = {}
        for location, fields in files.items():
            try:
                records[location] = Verified(**fields)
            except TypeError:
                continue
        return cls(records, rehash_all)


class StoreCheck:
    """The `Unchanged` of an S3 lake: size and ETag, from one listing of each partition's
    table folder (`ready/<table>/exchange=/symbol=/`) instead of a HEAD per object."""

    def __init__(self, lake: Lake) -> None:
        self.store = lake.store
        self.listed: dict[str, dict[str, tuple[int, str]]] = {}  # folder -> its objects
        self.files = self.trusted = 0

    def _seen(self, location: str) -> tuple[int, str] | None:
        folder = location.rpartition("/dt=")[0] + "/"
        if folder not in self.listed:
            relative = folder.removeprefix(self.store.location(""))
            self.listed[folder] = self.store.sizes_and_etags(relative)
        return self.listed[folder].get(location)

    def __call__(self, location: str, size: int, sha256: str, version: str) -> str | None:
        seen = self._seen(location)
        problem = (f"object {location} is gone" if seen is None else
                   f"object {location} changed since it was materialised"
                   if seen != (size, version) else None)
        self.files += 1
        self.trusted += problem is None
        return problem

    def summary(self) -> dict[str, int]:
        return {"files": self.files, "rehashed": 0, "rehashed_bytes": 0,
                "trusted": self.trusted}


def records_key(instrument: Instrument) -> str:
    return f"_verified/{instrument.slug}.json"


def verifier_for(lake: Lake, instrument: Instrument,
                 rehash_all: bool = False) -> Verifier | StoreCheck:
    """What the certificate of `instrument` verifies ready/ files with in `lake`."""
    if not lake.is_local:
        return StoreCheck(lake)
    return Verifier.from_json(lake.read_json(records_key(instrument)), rehash_all)


def save(lake: Lake, instrument: Instrument, verifier: Verifier | StoreCheck) -> None:
    """Keep what `verifier` verified for the next issue (local lakes; atomic)."""
    if isinstance(verifier, Verifier):
        lake.write_json(records_key(instrument), verifier.to_json())
