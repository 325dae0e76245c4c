"""Time slices of a day's parquet files by received_time, for the cross-table checks: each
file is scanned lazily and read one slice at a time, so memory is bounded by the slice.

A slice reads only the row groups whose footer statistics say they can hold its rows (the
vendor's files have thousands of row groups in time order); polars' own predicate pushdown
would re-read the footer and test every row group for each of the day's slices."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq

NS = 1_000_000_000
_UTC_NS = pl.Datetime("ns", "UTC")


@dataclass(frozen=True)
class _RowGroups:
    """Per row group of a file: received_time min and max (ns), first row and row count."""

    lows: np.ndarray
    highs: np.ndarray
    offsets: np.ndarray
    rows: np.ndarray

    def covering(self, lo: int, hi: int) -> tuple[int, int]:
        """(first row, row count) of the contiguous row groups that hold every row of
        [lo, hi): from the first to the last whose range meets it."""
        meets = np.flatnonzero((self.highs >= lo) & (self.lows < hi))
        if not meets.size:
            return 0, 0
        first, last = meets[0], meets[-1]
        return int(self.offsets[first]), int(self.offsets[last] + self.rows[last]
                                               - self.offsets[first])


@functools.lru_cache(maxsize=16)
def _row_groups_of(path: str, _size: int, _mtime_ns: int) -> _RowGroups | None:
    meta = pq.ParquetFile(path).metadata
    column = meta.schema.names.index("received_time")
    groups = [meta.row_group(g) for g in range(meta.num_row_groups)]
    stats = [g.column(column).statistics for g in groups]
    if not stats or not all(s is not None and s.has_min_max for s in stats):
        return None
    rows = np.array([g.num_rows for g in groups], dtype=np.int64)
    return _RowGroups(np.array([s.min_raw for s in stats], dtype=np.int64),
                      np.array([s.max_raw for s in stats], dtype=np.int64),
                      np.concatenate([[0], np.cumsum(rows)[:-1]]), rows)


def _row_groups(path: Path) -> _RowGroups | None:
    """The file's row-group index from its footer (read once per file version), or None
    when a row group has no received_time statistics."""
    stat = Path(path).stat()
    return _row_groups_of(str(path), stat.st_size, stat.st_mtime_ns)


def _bounds(path: Path) -> tuple[int | None, int | None]:
    """(min, max) received_time in ns: from the row groups' statistics in the footer when
    every row group has them (no data read), else from one pass over the column."""
    groups = _row_groups(path)
    if groups is not None:
        return int(groups.lows.min()), int(groups.highs.max())
    received = pl.col("received_time").cast(pl.Int64)
    return pl.scan_parquet(path).select(received.min().alias("lo"),
                                        received.max().alias("hi")).collect().row(0)


def time_slices(paths: list[Path], slice_seconds: int) -> Iterator[tuple[int, int]]:
    """[lo, hi) nanosecond bounds covering every file's received_time, aligned to multiples
    of `slice_seconds` (so that a slice never straddles an hour when it divides 3600)."""
    bounds = [_bounds(p) for p in paths]
    lows = [lo for lo, _ in bounds if lo is not None]
    if not lows:
        return
    step = int(slice_seconds) * NS
    lo = min(lows) // step * step
    end = max(hi for _, hi in bounds if hi is not None)
    while lo <= end:
        yield lo, lo + step
        lo += step


def read_slice(path: Path, columns: list[pl.Expr], lo: int, hi: int) -> pl.DataFrame:
    """The rows of [lo, hi) by received_time, in file order, with `t` (int ns) first."""
    received = pl.col("received_time")
    scan = pl.scan_parquet(path)
    groups = _row_groups(path)
    if groups is not None:
        scan = scan.slice(*groups.covering(lo, hi))
    return (scan
            .filter((received >= pl.lit(lo).cast(_UTC_NS)) & (received < pl.lit(hi).cast(_UTC_NS)))
            .select(received.cast(pl.Int64).alias("t"), *columns)
            .collect())
