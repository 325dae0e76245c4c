"""The demo's three tables are drawn from one order book (`lib/demo_book.py`): normalised by
the real pipeline, a demo day passes the cross-table checks exactly, with every writer habit
(previous day's rows, resyncs, a writer restart), and the blocking checks still pass."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from rlx_assets.lib.checks import evaluate
from rlx_assets.lib.cross_table import snapshots_agree_with_deltas, trades_inside_market
from rlx_assets.lib.delta_stream import delta_stream_complete
from rlx_assets.lib.demo_data import DEMO_ROWS, write_day
from rlx_assets.lib.demo_habits import VENDOR, Habits
from rlx_assets.lib.normalise import normalise_day
from rlx_assets.lib.scan import TimeRules
from rlx_assets.lib.tables import TABLES
from rlx_assets_tests.stand_ins import BTC

DAY = dt.date(2024, 1, 2)


def _ready_day(tmp_path: Path, habits: Habits) -> dict[str, Path]:
    out = {}
    for table in TABLES:
        raw = write_day(tmp_path / "vendor", table, BTC, DAY, habits=habits)
        out[table] = tmp_path / f"{table}.parquet"
        spec = TABLES[table]
        scan = normalise_day(raw, spec, DAY, out[table],
                             rules=TimeRules(spec.default_max_gap_seconds * 10, 2.0))
        assert all(o.passed for o in evaluate(scan, None) if o.blocking), table
    return out


@pytest.mark.parametrize("habits", [VENDOR, Habits(restart=True)], ids=["vendor", "restart"])
def test_a_demo_day_tells_one_story(tmp_path: Path, habits: Habits) -> None:
    ready = _ready_day(tmp_path, habits)
    agree = snapshots_agree_with_deltas(ready["book"], ready["book_delta_v2"]).metadata
    assert agree["agreement_rate"] == 1.0 and agree["resyncs"] == 2
    assert agree["levels_compared"] > 0.99 * agree["levels_total"]  # starts mid-stream
    inside = trades_inside_market(ready["trades"], ready["book"])
    assert inside.passed and inside.metadata["trades_outside"] == 0
    stream = delta_stream_complete(ready["book_delta_v2"])
    assert stream.passed and stream.metadata["suspected_gaps"] == 0


def test_only_the_demo_size_is_drawn_from_the_book(tmp_path: Path) -> None:
    """A day of another size keeps independent streams (a small day cannot hold a book's
    changes); its row counts are still exact."""
    import pyarrow.parquet as pq

    for table, rows in (("book_delta_v2", 5_000), ("trades", 777)):
        path = write_day(tmp_path, table, BTC, DAY, rows=rows)
        assert pq.ParquetFile(path).metadata.num_rows == rows
    full = write_day(tmp_path / "demo", "book_delta_v2", BTC, DAY)
    assert pq.ParquetFile(full).metadata.num_rows == DEMO_ROWS["book_delta_v2"]
