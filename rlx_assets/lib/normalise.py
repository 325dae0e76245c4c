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

import polars as pl
import pyarrow as pa

from rlx_assets.lib.footer_job import FooterJob, read_tail
from rlx_assets.lib.footer_read import NotParquet
from rlx_assets.lib.hashing import CHUNK_BYTES, StreamHash
from rlx_assets.lib.parquet_footer import footer_tail
from rlx_assets.lib.read_ahead import read_ahead
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
    except (pl.exceptions.PolarsError, pa.ArrowException, OSError, NotParquet) as exc:
        raise UnreadableVendorFile(f"{raw_path.name}: {exc}") from exc


def start_footer(tail: bytes, file_size: int) -> FooterJob:
    """Start editing the footer of a vendor file from its last bytes (`read_tail`): it runs
    while the file downloads and the day is measured."""
    return FooterJob(tail, file_size, RENAMES, TIME_COLUMNS)


def _footer_of(raw_path: Path, started: FooterJob | None) -> FooterJob:
    """`started` if the file at `raw_path` ends with the bytes it was started from (the
    vendor's object did not change in between), else a job started from the file."""
    size = raw_path.stat().st_size
    if started is not None:
        with open(raw_path, "rb") as handle:
            handle.seek(max(0, size - len(started.tail)))
            if handle.read() == started.tail:
                return started
        started.close()

    def read_last(n: int) -> bytes:
        with open(raw_path, "rb") as handle:
            handle.seek(max(0, size - n))
            return handle.read(n)

    return start_footer(read_tail(read_last, raw_path.name), size)


def _may_rewrite(schema: pl.Schema) -> bool:
    """A flat file with int64 vendor times: the footer rewrite is worth starting."""
    flat = not any(dtype.is_nested() for dtype in schema.values())
    return flat and all(schema.get(raw) == pl.Int64 for raw, name in RENAMES.items()
                        if name in TIME_COLUMNS)


def normalise_day(raw_path: Path, spec: TableSpec, day: dt.date, out_path: Path,
                  raw_hash: StreamHash | None = None, rules: TimeRules | None = None,
                  footer: FooterJob | None = None) -> DayScan:
    """Write the normalised day to `out_path` and return its measurements, including the
    output's sha256 and size. `raw_hash` (the download's) makes that hash nearly free;
    `rules` are the time thresholds (default: the table's); `footer` is the footer edit
    started from the vendor's bytes before the download (`start_footer`), if any."""
    with reading(raw_path):
        frame = pl.scan_parquet(raw_path)
        raw_schema = frame.collect_schema()
        rows = _rows(frame)
        scan = DayScan(spec.name, day, rules)
        scan.vendor_contains_gaps = pl.read_parquet_metadata(raw_path).get("contains_gaps")
    frame = normalise_frame(frame, raw_schema)
    scan.prepare(frame.collect_schema())
    written, measured = None, False
    if _may_rewrite(raw_schema):
        with reading(raw_path):
            footer = _footer_of(raw_path, footer)
        try:
            written = _rewrite(raw_path, rows, frame, scan, out_path, raw_hash, footer)
        finally:
            footer.close()
        measured = True
    elif footer is not None:
        footer.close()
    if written is None:
        with reading(raw_path):
            written = _reencode(frame, out_path)
        if not measured:  # from our own file
            ours = pl.scan_parquet(out_path)
            measure(ours, scan, _rows(ours))
    scan.output_sha256, scan.output_bytes = written
    return scan


def _rows(frame: pl.LazyFrame) -> int:
    """The file's row count, from its metadata."""
    return frame.select(pl.len()).collect().item()


def _rewrite(raw_path: Path, rows: int, frame: pl.LazyFrame, scan: DayScan,
             out_path: Path, raw_hash: StreamHash | None,
             footer: FooterJob) -> tuple[str, int] | None:
    """The fast path: while the day is measured the vendor's data region is copied (and the
    footer edited, by `footer`); then the time chunks of the row groups holding a sentinel
    are re-encoded and the new footer written. Returns the output's (sha256, size), or None
    when the file turns out not to qualify."""
    start = raw_path.stat().st_size - len(footer.tail)
    prefix = raw_hash.prefix(raw_path, start) if raw_hash else None
    with writing(out_path) as out, ThreadPoolExecutor(1) as copier:
        copied = copier.submit(_copy_region, raw_path, start, out, prefix)
        with reading(raw_path):
            measure(frame, scan, rows)
        digest = copied.result()
        patches = {}
        with reading(raw_path):
            group_rows = footer.group_rows()
            if group_rows is None or sum(group_rows) != scan.rows:
                return None
            scan.sentinel_row_groups = scan.groups_with_sentinels(group_rows)
            if scan.sentinel_row_groups:
                patches = write_patches(raw_path, SENTINEL_SOURCE, scan.sentinel_row_groups,
                                        group_rows, out, digest)
            new_footer = footer.encode(patches, SENTINEL_SOURCE)
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


def row_slices(group_rows: list[int], columns: int) -> Iterator[tuple[int, int]]:
    """(offset, rows) covering the file in order, each about BATCH_CELLS values: runs of
    whole row groups, and a row group larger than that cut into even pieces (polars then
    decodes only the pages a piece needs, so memory stays bounded for any layout)."""
    target = max(10_000, BATCH_CELLS // max(1, columns))
    start = rows = 0
    for count in group_rows:
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


def measure(frame: pl.LazyFrame, scan: DayScan, rows: int) -> None:
    """Feed `frame` (`rows` rows) to `scan` in slices of about BATCH_CELLS values, decoding
    the next slice meanwhile. Slices need not follow row groups (the footer is not decoded
    here): polars decodes the pages a slice needs."""
    slices = row_slices([rows], len(scan.columns))
    for piece in read_ahead(lambda bound: frame.slice(*bound).collect(), slices):
        scan.add(piece)


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
    """Write raw_path's first `data_bytes` bytes to `out`; return the sha256 state after them:
    `prefix`, the download's state there, when given (then the kernel copies the bytes),
    else hashed on the way."""
    with open(raw_path, "rb") as src:
        if prefix is not None:
            out.copy_from(src, data_bytes)
            return prefix
        digest, remaining = hashlib.sha256(), data_bytes
        while remaining and (chunk := src.read(min(remaining, CHUNK_BYTES))):
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
