"""WARN-level checks: computed in the same pass, reported per partition, never blocking."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rlx_assets.lib import normalise as normalise_module
from rlx_assets.lib.checks import check_rows_against_trailing, evaluate
from rlx_assets.lib.demo_rows import day_tables
from rlx_assets.lib.normalise import normalise_day
from rlx_assets.lib.tables import TABLES
from rlx_assets_tests.stand_ins import BTC

DAY = dt.date(2024, 1, 2)


def _write(tmp_path: Path, table: str, edit) -> Path:
    data = pa.concat_tables(day_tables(table, BTC, DAY, 30_000))
    columns = {name: data.column(name).to_pylist() for name in data.column_names}
    edit(columns)
    path = tmp_path / f"{table}.parquet"
    pq.write_table(pa.table(columns, schema=data.schema), path)
    return path


def _outcomes(path: Path, table: str, tmp_path: Path, trailing=None) -> dict:
    scan = normalise_day(path, TABLES[table], DAY, tmp_path / "out.parquet")
    results = evaluate(scan, None, trailing)
    return {o.name: o for o in results}


def _duplicate_id(c):
    c["id"][20_000] = c["id"][19_999]


def _price_jump(c):
    c["price"][123] = c["price"][122] * 1.2


def _crossed(c):
    c["bid_0_price"][77] = c["ask_0_price"][77] + 1


@pytest.mark.parametrize("batch_cells", [None, 20_000])  # one batch, and many batches
@pytest.mark.parametrize(("table", "edit", "warning", "rows"), [
    ("trades", _duplicate_id, "trade_ids", 1),
    ("trades", _price_jump, "price_jumps", 2),  # the jump up, then the way back
    ("book", _crossed, "crossed_book", 1),
])
def test_warning_fails_alone_and_does_not_block(tmp_path, monkeypatch, batch_cells, table,
                                                edit, warning, rows) -> None:
    if batch_cells:
        monkeypatch.setattr(normalise_module, "BATCH_CELLS", batch_cells)
    outcomes = _outcomes(_write(tmp_path, table, edit), table, tmp_path)
    failed = {name for name, o in outcomes.items() if not o.passed}
    assert failed == {warning}
    assert not outcomes[warning].blocking
    assert outcomes[warning].metadata["offending_row_count"] == rows
    clean = _outcomes(_write(tmp_path, table, lambda c: None), table, tmp_path)
    assert all(o.passed for o in clean.values())


def test_duplicate_trade_id_across_a_batch_boundary(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(normalise_module, "BATCH_CELLS", 6 * 1_000)  # batches of 1,000 rows
    path = _write(tmp_path, "trades", lambda c: c["id"].__setitem__(1_000, c["id"][999]))
    outcomes = _outcomes(path, "trades", tmp_path)
    assert outcomes["trade_ids"].metadata["offending_row_count"] == 1


@pytest.mark.parametrize(("rows", "trailing", "passed"), [
    (100, [], True),
    (100, [90, 100, 110], True),
    (40, [90, 100, 110], False),
    (250, [90, 100, 110], False),
])
def test_row_count_against_trailing_days(rows, trailing, passed) -> None:
    class Scan:
        pass

    scan = Scan()
    scan.rows = rows
    assert check_rows_against_trailing(scan, trailing).passed is passed
