"""The DuckDB catalog asset: SQL views over ready/, refreshed after data lands."""

import dagster as dg
from dagster_duckdb import DuckDBResource

from rlx_assets.defs.keys import table_key
from rlx_assets.defs.resources import LakeResource
from rlx_assets.lib.catalog import refresh_catalog
from rlx_assets.lib.lake import LakeError
from rlx_assets.lib.tables import TABLES
from rlx_assets.settings import Settings

CATALOG_KEY = dg.AssetKey("duckdb_catalog")

# Refresh once upstream partitions have landed and nothing upstream is still running, so a
# year-long backfill triggers a handful of refreshes, not one per partition.
REFRESH_AFTER_LANDING = (
    (dg.AutomationCondition.any_deps_updated().since_last_handled()
     | dg.AutomationCondition.missing())
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("never built, or new data in ready/, and nothing upstream running")


def build_catalog_asset(settings: Settings) -> dg.AssetsDefinition:
    deps = [table_key(i, t) for i in settings.instruments for t in TABLES]

    @dg.asset(
        key=CATALOG_KEY,
        deps=deps,
        automation_condition=REFRESH_AFTER_LANDING,
        group_name="lake",
        kinds={"duckdb"},
        description="DuckDB file under the lake root with one view per table and instrument "
                    "(binance_btc_usdt_trades, ...) and one per table (trades, ...) over ready/.",
    )
    def duckdb_catalog(lake: LakeResource, duckdb: DuckDBResource) -> dg.MaterializeResult:
        store = lake.lake()
        try:
            store.check_writable()  # DuckDB retries a missing folder for minutes; fail fast
            with duckdb.get_connection() as conn:
                views = refresh_catalog(conn, store, settings.instruments, list(TABLES))
        except LakeError as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from None
        return dg.MaterializeResult(metadata={
            "path": dg.MetadataValue.path(str(store.catalog_path)),
            "views": dg.MetadataValue.md("\n".join(f"- `{v}`" for v in sorted(views))
                                         or "(no data in ready/ yet)"),
            "view_count": len(views),
        })

    return duckdb_catalog
