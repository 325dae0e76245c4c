"""The DuckDB catalog: SQL views over ready/ for researchers.

Views read `ready/` through a glob with hive partitioning (`exchange`, `symbol`, `dt`), so
they see new partitions as soon as they land; refreshing only adds views for tables that
have data for the first time. Quarantined data is never visible.
"""

from __future__ import annotations

import duckdb

from rlx_assets.lib.instruments import Instrument
from rlx_assets.lib.lake import READY, Lake


def _glob(lake: Lake, table: str, instrument: Instrument | None) -> str:
    exchange = f"exchange={instrument.exchange}" if instrument else "exchange=*"
    symbol = f"symbol={instrument.symbol}" if instrument else "symbol=*"
    return lake.location(f"{READY}/{table}/{exchange}/{symbol}/dt=*/*.parquet")


def view_name(table: str, instrument: Instrument | None = None) -> str:
    return f"{instrument.slug}_{table}" if instrument else table


def refresh_catalog(
    conn: duckdb.DuckDBPyConnection,
    lake: Lake,
    instruments: list[Instrument],
    tables: list[str],
) -> dict[str, str]:
    """(Re)create one view per table and instrument, plus one per table over all instruments.

    Returns {view: glob} for the views created; tables with no ready data yet get no view.
    """
    created: dict[str, str] = {}
    for table in tables:
        keys = lake.store.list(f"{READY}/{table}/")  # one listing per table
        for instrument in [*instruments, None]:
            folder = (f"{READY}/{table}/exchange={instrument.exchange}/"
                      f"symbol={instrument.symbol}/" if instrument else f"{READY}/{table}/")
            name = view_name(table, instrument)
            if not any(k.startswith(folder) and k.endswith(".parquet") for k in keys):
                conn.execute(f'DROP VIEW IF EXISTS "{name}"')
                continue
            pattern = _glob(lake, table, instrument)
            literal = pattern.replace("'", "''")
            conn.execute(
                f"CREATE OR REPLACE VIEW \"{name}\" AS SELECT * FROM read_parquet('{literal}', "
                "hive_partitioning = true, hive_types = {'exchange': VARCHAR, 'symbol': VARCHAR, "
                "'dt': DATE})"
            )
            created[name] = pattern
    return created
