"""What `temporal_continuity` measures, batch by batch, on files as the vendor writes them.

The rules (the README's Checks section explains them to users):

- A missing exchange time (the writer's sentinel `0`, or `-1` in trades; null once
  normalised) is not a time. Such rows are counted and located, never "outside the day",
  never "backwards"; for holes they are placed at their `received_time`.
- In book and book_delta_v2 a run of rows without an exchange time is a resync (the writer
  wrote the exchange's REST snapshot): counted and located by receipt time, so that readers
  can re-initialise a book there. A `sequence_number` step down into or out of a resync is
  the snapshot's, not a fault; anywhere else it still fails. Repeats are normal (one
  exchange message is several rows).
- `origin_time` must not go backwards (rows without one are skipped over).
- Rows up to `boundary_seconds` across a day boundary are the writer's habit (it files a row
  by its own clock when the row arrives): kept, counted and reported. Further out, a row is
  outside the day.
- Every step longer than `max_gap_seconds` between consecutive rows (in file order, each at
  its exchange time, else its receipt time) is a hole, listed with start, end and length; so
  are the stretches from the day's start to the first row and from the last row to its end.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from rlx_assets.lib.tables import TimeRules
from rlx_assets.lib.timestamps import format_ns

NS_PER_DAY = 86_400 * 10**9
SAMPLE = 5  # offending timestamps kept as evidence per problem
LISTED = 50  # holes and resyncs listed in full; the count covers the rest
UTC_NS = pl.Datetime("ns", "UTC")


def day_start_ns(day: dt.date) -> int:
    return (day - dt.date(1970, 1, 1)).days * NS_PER_DAY


@dataclass
class Problem:
    """Rows that break one rule, with the first offending times as evidence."""

    check: str
    rows: int = 0
    first_times: list[str] = field(default_factory=list)

    def add(self, rows: int, times: list[str]) -> None:
        self.rows += rows
        self.first_times.extend(times[: SAMPLE - len(self.first_times)])


def _continuity_problem() -> Problem:
    return Problem("temporal_continuity")


@dataclass
class Continuity:
    """Everything about a day's times, accumulated over its batches in file order."""

    day: dt.date
    rules: TimeRules
    resyncs_possible: bool = False  # book tables: a run of rows without time is a resync
    first_time: int | None = None  # real exchange times (ns), in file order and extremes
    last_time: int | None = None
    min_time: int | None = None
    max_time: int | None = None
    unsorted: Problem = field(default_factory=_continuity_problem)
    outside_day: Problem = field(default_factory=_continuity_problem)  # beyond the tolerance
    before_day: Problem = field(default_factory=_continuity_problem)  # within it, before
    after_day: Problem = field(default_factory=_continuity_problem)  # within it, after
    missing: int = 0  # rows without an exchange time
    first_missing: list[dict[str, object]] = field(default_factory=list)
    resync_count: int = 0
    resyncs: list[dict[str, object]] = field(default_factory=list)  # the first LISTED
    sequence_decreases: int = 0  # outside resyncs: a failure
    sequence_resets: int = 0  # into or out of a resync: the snapshot's numbering
    first_sequence_decreases: list[str] = field(default_factory=list)
    hole_count: int = 0
    holes: list[tuple[int, int]] = field(default_factory=list)  # (start, end) ns, the first
    largest_gap_ns: int = 0
    largest_gap_after: int | None = None
    first_effective: int | None = None  # first and last row at exchange (else receipt) time
    last_effective: int | None = None
    _last_sequence: int | None = field(default=None, repr=False)
    _last_missing: bool = field(default=False, repr=False)
    rows_seen: int = 0

    @property
    def day_start(self) -> int:
        return day_start_ns(self.day)

    @property
    def day_end(self) -> int:
        return self.day_start + NS_PER_DAY

    @property
    def boundary_ns(self) -> int:
        return int(self.rules.boundary_seconds * 1e9)

    @property
    def max_gap_ns(self) -> int:
        return int(self.rules.max_gap_seconds * 1e9)

    def add(self, batch: pl.DataFrame) -> np.ndarray:
        """Account for the next batch; returns the positions (in the batch) of rows without
        an exchange time."""
        origin = batch.get_column("origin_time").cast(pl.Int64)
        received = batch.get_column("received_time").cast(pl.Int64, strict=False) \
            if batch.schema.get("received_time") == UTC_NS else None
        missing = origin.is_null().to_numpy()
        missing_at = np.flatnonzero(missing)
        if len(missing_at):
            self._add_missing(batch, missing, missing_at, received)
        self._add_real(origin.drop_nulls())
        self._add_effective(origin if received is None else origin.fill_null(received))
        self._add_sequence(batch, missing)
        self._last_missing = bool(missing[-1])
        self.rows_seen += batch.height
        return missing_at

    def _add_missing(self, batch: pl.DataFrame, missing: np.ndarray, at: np.ndarray,
                     received: pl.Series | None) -> None:
        self.missing += len(at)

        def where(i: int) -> dict[str, object]:
            place: dict[str, object] = {"row": self.rows_seen + int(i)}
            if received is not None:
                place["received_time"] = format_ns(received[int(i)])
            if "sequence_number" in batch.schema:
                place["sequence_number"] = batch.get_column("sequence_number")[int(i)]
            return place

        for i in at[: SAMPLE - len(self.first_missing)]:
            self.first_missing.append(where(i))
        previous = np.concatenate(([self._last_missing], missing[:-1]))
        starts = at[~previous[at]]  # where a run of missing times begins
        self.resync_count += len(starts)
        for i in starts[: max(0, LISTED - len(self.resyncs))]:
            self.resyncs.append(where(i))

    def _add_real(self, t: pl.Series) -> None:
        if t.is_empty():
            return
        steps = t.diff()
        if self.last_time is not None:  # the boundary with the previous batch
            steps[0] = t[0] - self.last_time
        back = steps < 0
        if back.any():
            self.unsorted.add(int(back.sum()), [format_ns(x) for x in t.filter(back).head(SAMPLE)])
        start, end, tol = self.day_start, self.day_end, self.boundary_ns
        for problem, mask in ((self.outside_day, (t < start - tol) | (t >= end + tol)),
                              (self.before_day, (t >= start - tol) & (t < start)),
                              (self.after_day, (t >= end) & (t < end + tol))):
            if mask.any():
                problem.add(int(mask.sum()), [format_ns(x) for x in t.filter(mask).head(SAMPLE)])
        self.first_time = t[0] if self.first_time is None else self.first_time
        self.last_time = t[-1]
        low, high = t.min(), t.max()
        self.min_time = low if self.min_time is None else min(self.min_time, low)
        self.max_time = high if self.max_time is None else max(self.max_time, high)

    def _add_effective(self, t: pl.Series) -> None:
        t = t.drop_nulls()
        if t.is_empty():
            return
        values = t.to_numpy()
        before = np.concatenate(([self.last_effective if self.last_effective is not None
                                  else values[0]], values[:-1]))
        steps = values - before
        gap_index = int(steps.argmax())
        if steps[gap_index] > self.largest_gap_ns:
            self.largest_gap_ns = int(steps[gap_index])
            self.largest_gap_after = int(before[gap_index])
        over = np.flatnonzero(steps > self.max_gap_ns)
        self.hole_count += len(over)
        for i in over[: max(0, LISTED - len(self.holes))]:
            self.holes.append((int(before[i]), int(values[i])))
        if self.first_effective is None:
            self.first_effective = int(values[0])
        self.last_effective = int(values[-1])

    def _add_sequence(self, batch: pl.DataFrame, missing: np.ndarray) -> None:
        if not batch.schema.get("sequence_number", pl.Null).is_integer():
            return
        seq = batch.get_column("sequence_number").to_numpy()
        known = ~np.isnan(seq) if seq.dtype.kind == "f" else np.ones(len(seq), bool)
        if not known.any():
            return
        before = np.concatenate(([self._last_sequence if self._last_sequence is not None
                                  else seq[0]], seq[:-1]))
        previous_missing = np.concatenate(([self._last_missing], missing[:-1]))
        down = known & (seq < before)
        at_resync = down & (missing | previous_missing)
        self.sequence_resets += int(at_resync.sum())
        faults = np.flatnonzero(down & ~at_resync)
        self.sequence_decreases += len(faults)
        self.first_sequence_decreases.extend(
            f"row {self.rows_seen + int(i)}: {int(before[i])} -> {int(seq[i])}"
            for i in faults[: SAMPLE - len(self.first_sequence_decreases)])
        self._last_sequence = int(seq[known][-1])

    # --- what the check reports -----------------------------------------------------------

    def edge_holes(self) -> tuple[float, float]:
        """Seconds without data at the day's start and end (0 when rows cross the edge)."""
        if self.first_effective is None or self.last_effective is None:
            return NS_PER_DAY / 1e9, NS_PER_DAY / 1e9
        return (max(0, self.first_effective - self.day_start) / 1e9,
                max(0, self.day_end - self.last_effective) / 1e9)

    def listed_holes(self) -> list[dict[str, object]]:
        return [{"start": format_ns(a), "end": format_ns(b), "seconds": (b - a) / 1e9}
                for a, b in self.holes]

    @property
    def every_time_missing(self) -> bool:
        return self.rows_seen > 0 and self.missing == self.rows_seen
