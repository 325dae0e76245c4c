"""The vendor writer's habits, in numbers: rows per buffer flush (one row group each), the
previous day's rows opening a file, resyncs, a writer restart (see `demo_data`)."""

from __future__ import annotations

from dataclasses import dataclass

# Rows per buffer flush of the vendor's writer for a busy BTC-USDT stream: one row group each.
FLUSH_ROWS = {"trades": 10_000, "book": 3_000, "book_delta_v2": 10_000}
PREVIOUS_DAY_ROWS = 5  # rows of the previous day's last second that open each file
RESYNCS = {"trades": 0, "book": 1, "book_delta_v2": 2}  # per day
SNAPSHOT_LEVELS = 50  # levels per side in a book_delta_v2 resync (the REST snapshot)
SNAPSHOT_ROWS = {"trades": 0, "book": 1, "book_delta_v2": 2 * SNAPSHOT_LEVELS}
RESTART_AT, RESTART_MINUTES = 9 * 3_600, 20  # a writer restart at 09:00 leaves 20 min out


@dataclass(frozen=True)
class Habits:
    """The vendor writer's habits a generated day has (all on by default)."""

    previous_day_rows: int = PREVIOUS_DAY_ROWS
    resyncs: bool = True
    restart: bool = False  # a writer restart: a hole and contains_gaps=Yes


VENDOR = Habits()  # every habit of the vendor's writer: the default
IDEAL = Habits(previous_day_rows=0, resyncs=False)  # the idealised vendor of old tests

# Rows per day: small enough for a demo in seconds, and the full-scale day of the benchmarks.
DEMO_ROWS = {"trades": 40_000, "book": 17_280, "book_delta_v2": 200_000}
FULL_ROWS = {"trades": 2_000_000, "book": 864_000, "book_delta_v2": 30_000_000}
