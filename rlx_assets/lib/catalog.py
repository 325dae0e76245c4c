"""The DuckDB catalog: SQL views over ready/ for researchers.

Views read `ready/` through a glob with hive partitioning (`exchange`, `symbol`, `dt`), so
they see new partitions as soon as they land; refreshing only adds views for tables that
have data for the first time. Quarantined data is never visible.
"""

from __future__ import annotations

import glob
from pathlib import Path

import duckdb

from rlx_assets.lib.instruments import Instrument
from rlx_assets.lib.lake import READY


def _glob(root: Path, table: str, instrument: Instrument | None) -> str:
    exchange = f"exchange={instrument.exchange}" if instrument else "exchange=*"
    symbol = f"symbol={instrument.symbol}" if instrument else "symbol=*"
    return str(root / READY / table / exchange / symbol / "dt=*" / "*.parquet")


def view_name(table: str, instrument: Instrument | None = None) -> str:
    return f"{instrument.slug}_{table}" if instrument else table


def refresh_catalog(
    conn: duckdb.DuckDBPyConnection,
    lake_root: Path,
    instruments: list[Instrument],
    tables: list[str],
) -> dict[str, str]:
    """(Re)create one view per table and instrument, plus one per table over all instruments.

    Returns {view: glob} for the views created; tables with no ready data yet get no view.
    """
    created: dict[str, str] = {}
    targets = [(t, i) for t in tables for i in instruments] + [(t, None) for t in tables]
    for table, instrument in targets:
        pattern = _glob(lake_root, table, instrument)
        name = view_name(table, instrument)
        if not glob.glob(pattern):
            conn.execute(f'DROP VIEW IF EXISTS "{name}"')
            continue
        literal = pattern.replace("'", "''")
        conn.execute(
            f"CREATE OR REPLACE VIEW \"{name}\" AS SELECT * FROM read_parquet('{literal}', "
            "hive_partitioning = true, hive_types = {'exchange': VARCHAR, 'symbol': VARCHAR, "
            "'dt': DATE})"
        )
        created[name] = pattern
    return created
