"""Time slices of a day's parquet files by received_time, for the cross-table checks: each
file is scanned lazily and read one slice at a time, so memory is bounded by the slice."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq

NS = 1_000_000_000
_UTC_NS = pl.Datetime("ns", "UTC")
HOUR_DIVISORS = tuple(d for d in range(3600, 0, -1) if 3600 % d == 0)  # 3600, 1800, ..., 1


def _bounds(path: Path) -> tuple[int | None, int | None]:
    """(min, max) received_time in ns: from the row groups' statistics in the footer when
    every row group has them (no data read), else from one pass over the column."""
    meta = pq.ParquetFile(path).metadata
    column = meta.schema.names.index("received_time")
    stats = [meta.row_group(g).column(column).statistics for g in range(meta.num_row_groups)]
    if stats and all(s is not None and s.has_min_max for s in stats):
        return min(s.min_raw for s in stats), max(s.max_raw for s in stats)
    received = pl.col("received_time").cast(pl.Int64)
    return pl.scan_parquet(path).select(received.min().alias("lo"),
                                        received.max().alias("hi")).collect().row(0)


def groups_with_nulls(meta: pq.FileMetaData, column: str) -> list[int]:
    """The row groups whose footer statistics do not rule out a null in `column`."""
    index = meta.schema.names.index(column)
    return [g for g in range(meta.num_row_groups)
            if not ((stats := meta.row_group(g).column(index).statistics) is not None
                    and stats.has_null_count and stats.null_count == 0)]


def spans_with_nulls(path: Path, column: str) -> list[tuple[float, float]]:
    """The received_time [min, max] of each row group that may hold a null in `column` (a
    row group without time statistics spans all time)."""
    meta = pq.ParquetFile(path).metadata
    received = meta.schema.names.index("received_time")
    spans = []
    for g in groups_with_nulls(meta, column):
        times = meta.row_group(g).column(received).statistics
        known = times is not None and times.has_min_max
        spans.append((times.min_raw, times.max_raw) if known else (-math.inf, math.inf))
    return spans


def _row_group_spans(path: Path) -> np.ndarray | None:
    """(min, max received_time, rows) of each row group, from the footer; None if a row
    group has no time statistics."""
    meta = pq.ParquetFile(path).metadata
    column = meta.schema.names.index("received_time")
    spans = []
    for g in range(meta.num_row_groups):
        stats = meta.row_group(g).column(column).statistics
        if stats is None or not stats.has_min_max:
            return None
        spans.append((stats.min_raw, stats.max_raw, meta.row_group(g).num_rows))
    return np.array(spans, dtype=np.int64).reshape(-1, 3)


def _busiest(spans: np.ndarray, seconds: int) -> int:
    """The most rows in any slice of `seconds`, a row group counting whole in every slice
    it meets."""
    if not len(spans):
        return 0
    first, last = spans[:, 0] // (seconds * NS), spans[:, 1] // (seconds * NS)
    # rows entering at a group's first slice and leaving after its last, summed per slice
    # where anything changes (no array over all slices: a stray time would make it huge)
    where, at = np.unique(np.concatenate([first, last + 1]), return_inverse=True)
    change = np.zeros(where.size, dtype=np.int64)
    np.add.at(change, at, np.concatenate([spans[:, 2], -spans[:, 2]]))
    return int(np.cumsum(change).max())


def slice_seconds_for(weights: dict[Path, int], max_rows: int) -> int:
    """The longest slice, an hour or a divisor of one, in which no file's rows times its
    weight exceed `max_rows` (or its largest row group's, if larger) anywhere in the day, by
    the footers alone (a file without time statistics is not counted)."""
    known = [(spans, weight) for path, weight in weights.items()
             if (spans := _row_group_spans(path)) is not None]
    # a row group is read whole: no slice can hold fewer rows than the largest one
    limits = [max(max_rows, int(spans[:, 2].max(initial=0)) * weight) for spans, weight in known]
    for seconds in HOUR_DIVISORS:
        if all(_busiest(spans, seconds) * weight <= limit
               for (spans, weight), limit in zip(known, limits, strict=True)):
            return seconds
    return 1


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
    """The rows of [lo, hi) by received_time, in file order, with `t` (int ns) first (in one
    chunk per row group read: rechunk what a join needs contiguous)."""
    received = pl.col("received_time")
    return (pl.scan_parquet(path)
            .filter((received >= pl.lit(lo).cast(_UTC_NS)) & (received < pl.lit(hi).cast(_UTC_NS)))
            .select(received.cast(pl.Int64).alias("t"), *columns)
            .collect())
