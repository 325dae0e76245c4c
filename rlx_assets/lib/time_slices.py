"""Time slices of a day's parquet files by received_time, for the cross-table checks: each
file is scanned lazily and read one slice at a time, so memory is bounded by the slice."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import polars as pl

NS = 1_000_000_000
_UTC_NS = pl.Datetime("ns", "UTC")


def time_slices(paths: list[Path], slice_seconds: int) -> Iterator[tuple[int, int]]:
    """[lo, hi) nanosecond bounds covering every file's received_time, aligned to multiples
    of `slice_seconds` (so that a slice never straddles an hour when it divides 3600)."""
    bounds = [pl.scan_parquet(p).select(pl.col("received_time").cast(pl.Int64).min().alias("lo"),
                                        pl.col("received_time").cast(pl.Int64).max().alias("hi"))
              .collect().row(0) for p in paths]
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
    return (pl.scan_parquet(path)
            .filter((received >= pl.lit(lo).cast(_UTC_NS)) & (received < pl.lit(hi).cast(_UTC_NS)))
            .select(received.cast(pl.Int64).alias("t"), *columns)
            .collect())
