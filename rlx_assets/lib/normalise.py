"""A vendor day into its normalised file, measured on the way: `normalise_day`.

Normalising means lakeapi's column names and UTC nanosecond times, with the vendor's
"no exchange time" sentinel (0, or -1 in trades) as null. For a flat vendor file with plain
int64 times (the normal case) that is a footer rewrite (`parquet_footer`): the normalised
file is the vendor's data pages under a new footer, copied on a second thread while the day
is decoded once for the checks; the time column chunks of the few row groups holding a
sentinel are re-encoded with nulls and appended (`time_patch`). Any other file is decoded,
normalised and re-encoded by polars, then measured from what was written.

Memory is bounded by design: the day is read in slices of whole row groups (about
`BATCH_CELLS` values each), one slice decoding while the checks run on the one before.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import polars as pl

from rlx_assets.lib.hashing import CHUNK_BYTES, StreamHash
from rlx_assets.lib.parquet_footer import (
    Footer,
    NotParquet,
    footer_tail,
    plan_rewrite,
    read_footer,
)
from rlx_assets.lib.scan import DayScan, TimeRules
from rlx_assets.lib.stores import LakeError
from rlx_assets.lib.tables import RENAMES, TIME_COLUMNS, TableSpec
from rlx_assets.lib.time_patch import write_patches
from rlx_assets.lib.writeback import WritebackFile, writing

BATCH_CELLS = 6_000_000  # values per slice handed to the checks (rows x columns)


class UnreadableVendorFile(Exception):
    """The vendor file is not readable parquet (truncated, corrupt)."""


SENTINEL_TIME = "origin_time"  # the vendor writes 0 / -1 here when the exchange gave no time
SENTINEL_SOURCE = "timestamp"  # its name in the vendor file


def normalise_frame(frame: pl.LazyFrame, schema: pl.Schema) -> pl.LazyFrame:
    """lakeapi's names, UTC nanosecond times, plain strings; leave anything odd for `schema`
    (a vendor column that already has a normalised name keeps it, and the other stays)."""
    frame = frame.rename({k: v for k, v in RENAMES.items() if k in schema and v not in schema})
    casts = []
    for raw, name in RENAMES.items():
        if name in TIME_COLUMNS and raw in schema and name not in schema \
                and schema[raw].is_integer():
            # Not strict: a value beyond int64 (an unsigned column) becomes null, which the
            # schema check then reports, instead of an error that stops the day.
            value = pl.col(name).cast(pl.Int64, strict=False)
            if name == SENTINEL_TIME:  # no exchange time: null, never 1970-01-01
                value = pl.when(value > 0).then(value)
            casts.append(value.cast(pl.Datetime("ns", "UTC")).alias(name))
    if "side" in schema and schema["side"] in (pl.Categorical, pl.Enum):
        casts.append(pl.col("side").cast(pl.String))
    return frame.with_columns(casts) if casts else frame


@contextmanager
def reading(raw_path: Path) -> Iterator[None]:
    """Errors while reading the vendor file mean the file is bad (our own writes fail with a
    LakeError, which passes through)."""
    try:
        yield
    except (pl.exceptions.PolarsError, OSError, NotParquet) as exc:
        raise UnreadableVendorFile(f"{raw_path.name}: {exc}") from exc


def _plan(footer: Footer, patches: dict | None = None) -> bytes | None:
    try:
        return plan_rewrite(footer, RENAMES, TIME_COLUMNS, patches, SENTINEL_SOURCE)
    except (KeyError, TypeError, AttributeError, ValueError):
        return None  # a footer shaped unlike any writer's: decode and re-encode instead


def normalise_day(raw_path: Path, spec: TableSpec, day: dt.date, out_path: Path,
                  raw_hash: StreamHash | None = None,
                  rules: TimeRules | None = None) -> DayScan:
    """Write the normalised day to `out_path` and return its measurements, including the
    output's sha256 and size. `raw_hash` (the download's) makes that hash nearly free;
    `rules` are the time thresholds (default: the table's)."""
    with reading(raw_path):
        frame = pl.scan_parquet(raw_path)
        raw_schema = frame.collect_schema()
        footer = read_footer(raw_path)
    frame = normalise_frame(frame, raw_schema)
    scan = DayScan(spec.name, day, rules)
    scan.prepare(frame.collect_schema())
    scan.vendor_contains_gaps = footer.key_value("contains_gaps")
    written, measured = None, False
    plan = _plan(footer)
    if plan is not None:
        scan.row_group_starts = np.cumsum([0, *footer.row_group_rows[:-1]])
        written = _rewrite(raw_path, footer, plan, frame, scan, out_path, raw_hash)
        measured = True
    if written is None:
        with reading(raw_path):
            written = _reencode(frame, out_path)
        if not measured:  # from our own file: its row groups are ours
            measure(pl.scan_parquet(out_path), scan, read_footer(out_path))
    scan.output_sha256, scan.output_bytes = written
    return scan


def _rewrite(raw_path: Path, footer: Footer, plan: bytes, frame: pl.LazyFrame, scan: DayScan,
             out_path: Path, raw_hash: StreamHash | None) -> tuple[str, int] | None:
    """The fast path: the vendor's data region copied (on a second thread, while the day is
    measured), re-encoded time chunks where sentinels are, and a new footer (`plan` when
    there are none). Returns the output's (sha256, size), or None when the file turns out
    not to qualify."""
    prefix = raw_hash.prefix(raw_path, footer.start) if raw_hash else None
    with writing(out_path) as out:
        with ThreadPoolExecutor(1) as copier:
            copied = copier.submit(_copy_region, raw_path, footer.start, out, prefix)
            with reading(raw_path):
                measure(frame, scan, footer)
            digest = copied.result()
        new_footer = plan
        if scan.sentinel_row_groups:
            with reading(raw_path):
                patches = write_patches(raw_path, SENTINEL_SOURCE, scan.sentinel_row_groups,
                                        out, digest)
            new_footer = _plan(footer, patches)
            if new_footer is None:
                return None
        tail = footer_tail(new_footer)
        out.write(tail)
        digest.update(tail)
    if pl.scan_parquet(out_path).collect_schema() != frame.collect_schema():
        # A type only the dropped ARROW:schema carried (a duration, a dictionary, another
        # time zone): the measured frame is right, its copy is not.
        return None
    return digest.hexdigest(), out.offset


def row_slices(footer: Footer, columns: int) -> Iterator[tuple[int, int]]:
    """(offset, rows) covering the file in order, each about BATCH_CELLS values: runs of
    whole row groups, and a row group larger than that cut into even pieces (polars then
    decodes only the pages a piece needs, so memory stays bounded for any layout)."""
    target = max(10_000, BATCH_CELLS // max(1, columns))
    start = rows = 0
    for count in footer.row_group_rows:
        if count > target:
            if rows:
                yield start, rows
                start, rows = start + rows, 0
            pieces = -(-count // target)
            for i in range(pieces):
                first, last = count * i // pieces, count * (i + 1) // pieces
                yield start + first, last - first
            start += count
            continue
        rows += count
        if rows >= target:
            yield start, rows
            start, rows = start + rows, 0
    if rows:
        yield start, rows


def measure(frame: pl.LazyFrame, scan: DayScan, footer: Footer) -> None:
    """Feed `frame` to `scan` slice by slice, decoding the next slice meanwhile."""
    with ThreadPoolExecutor(1) as reader:
        pending = None
        for offset, rows in row_slices(footer, len(scan.columns)):
            upcoming = reader.submit(frame.slice(offset, rows).collect)
            if pending is not None:
                scan.add(pending.result())
            pending = upcoming
        if pending is not None:
            scan.add(pending.result())


def _reencode(frame: pl.LazyFrame, out_path: Path) -> tuple[str, int]:
    """The general path: polars writes the normalised frame (streaming), hashed as written."""
    with writing(out_path) as handle:
        output = HashingWriter(handle)
        try:
            frame.sink_parquet(output, compression="snappy", engine="streaming")
        except Exception:
            if output.failure is not None:  # our write failed, not the vendor file's read
                raise output.failure from None
            raise
    return output.digest.hexdigest(), output.size


def _copy_region(raw_path: Path, data_bytes: int, out: WritebackFile,
                 prefix: hashlib._Hash | None) -> hashlib._Hash:
    """Write raw_path's first `data_bytes` bytes to `out`; return the sha256 state after them
    (continuing `prefix`, the state after those bytes, when given)."""
    digest = prefix or hashlib.sha256()
    with open(raw_path, "rb") as src:
        remaining = data_bytes
        while remaining and (chunk := src.read(min(remaining, CHUNK_BYTES))):
            if prefix is None:
                digest.update(chunk)
            out.write(chunk)
            remaining -= len(chunk)
        if remaining:
            raise OSError(f"{raw_path.name} shrank while it was copied")
    return digest


class HashingWriter(io.RawIOBase):
    """A file wrapper that hashes what is written: the output's sha256 without a re-read.
    A failed write is kept in `failure` (polars reports it as its own error)."""

    def __init__(self, handle: WritebackFile) -> None:
        self.handle, self.digest, self.size = handle, hashlib.sha256(), 0
        self.failure: LakeError | None = None

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.digest.update(data)
        self.size += len(data)
        try:
            return self.handle.write(data)
        except LakeError as exc:
            self.failure = exc
            raise
