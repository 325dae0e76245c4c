"""Issue 4: the DuckDB catalog answers SQL over ready/ (and never shows quarantine/)."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import duckdb

from rlx_assets.defs.catalog import CATALOG_KEY
from rlx_assets.lib.demo_data import DEMO_ROWS
from rlx_assets.lib.demo_faults import Fault
from rlx_assets_tests.test_certificate import DAYS, Lake


def _build(lake: Lake) -> None:
    result = dg.materialize([lake.defs.get_assets_def(CATALOG_KEY)], instance=lake.instance,
                            resources=lake.defs.resources, selection=[CATALOG_KEY])
    assert result.success


def test_catalog_views_answer_sql(tmp_path) -> None:
    lake = Lake(tmp_path)
    assert lake.requested_for(CATALOG_KEY) == 1, "never built: built at the first tick"
    _build(lake)
    assert lake.requested_for(CATALOG_KEY) == 0
    for day in DAYS:
        for table in DEMO_ROWS:
            lake.publish(table, day, Fault.NEGATIVE_PRICE
                         if (table, day) == ("trades", DAYS[1]) else None)
        lake.materialize(day)
    assert lake.requested_for(CATALOG_KEY) == 1, "data landed: the catalog refreshes itself"
    _build(lake)

    with duckdb.connect(str(lake.lake / "catalog.duckdb"), read_only=True) as conn:
        views = {r[0] for r in conn.execute(
            "select view_name from duckdb_views() where not internal").fetchall()}
        assert {"binance_btc_usdt_trades", "binance_btc_usdt_book",
                "binance_btc_usdt_book_delta_v2", "trades", "book", "book_delta_v2"} <= views
        per_day = conn.execute(
            "select dt, count(*) from binance_btc_usdt_trades group by dt order by dt"
        ).fetchall()
        assert per_day == [(dt.date(2024, 1, 1), DEMO_ROWS["trades"])], \
            "the quarantined day is not visible"
        vwap = conn.execute(
            "select sum(price * quantity) / sum(quantity) from trades "
            "where symbol = 'BTC-USDT' and exchange = 'BINANCE'").fetchone()[0]
        assert 30_000 < vwap < 60_000
        spread = conn.execute(
            "select min(ask_0_price - bid_0_price) from binance_btc_usdt_book").fetchone()[0]
        assert spread > 0
