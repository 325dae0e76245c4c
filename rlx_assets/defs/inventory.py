"""`vendor_inventory`: what the vendor has in the window against what we materialised.

Also the collection behind `rlx-assets inventory` and the `new_vendor_days` sensor: one
vendor listing per (instrument, table) joined with the partition states and the vendor
version each partition's latest materialisation recorded.
"""


import dagster as dg

from rlx_assets.defs.keys import table_key
from rlx_assets.defs.records import vendor_stamps
from rlx_assets.defs.resources import CryptoLakeResource
from rlx_assets.defs.status import collect_states
from rlx_assets.lib import inventory as inv
from rlx_assets.lib.certificate import window_days
from rlx_assets.lib.tables import TABLES
from rlx_assets.lib.vendor import VendorError, VendorSource, list_many
from rlx_assets.settings import Settings, credential_values

INVENTORY_KEY = dg.AssetKey("vendor_inventory")
REFRESH_CRON = "0 * * * *"  # hourly; materialise it by hand for a fresh view


def collect_inventory(
    instance: dg.DagsterInstance,
    settings: Settings,
    source: VendorSource,
    tables: list[str] | None = None,
    sizes: bool = True,
) -> list[inv.InventoryDay]:
    """One vendor listing per (instrument, table) over RLX_START_DATE..window end, joined
    with the partition states and the vendor file each day was recorded from."""
    tables = tables or list(TABLES)
    series = [(instrument, table) for instrument in settings.instruments for table in tables]
    vendor = {}
    for (instrument, table), listed in list_many(source, series, settings.start_date,
                                                 settings.window_end(), sizes=sizes).items():
        if isinstance(listed, VendorError):
            raise listed
        vendor[(str(instrument), table)] = listed
    states = collect_states(instance, settings, tables)
    keys = {(str(instrument), table): table_key(instrument, table) for instrument, table in series}
    stamps = vendor_stamps(instance, list(keys.values()),
                           window_days(settings.start_date, settings.window_end()))
    return inv.build_inventory(states, vendor, {s: stamps[key] for s, key in keys.items()})


def crypto_lake_from_env(settings: Settings) -> CryptoLakeResource:
    """The vendor resource with credentials read from the environment now (for the CLI;
    in Dagster the definitions bind them as `EnvVar`s)."""
    return CryptoLakeResource(source=str(settings.source), **credential_values())


def inventory_metadata(settings: Settings, days: list[inv.InventoryDay]) -> dict[str, object]:
    metadata: dict[str, object] = {
        "window": f"{settings.start_date}..{settings.window_end()}",
        "source": str(settings.source),
        **inv.totals(days),
    }
    # The UI shows integers as they are: "45503854" reads badly, "45.5 MB" does not.
    metadata["vendor_size"] = inv.format_bytes(int(metadata.pop("vendor_bytes")))
    for (instrument, table), series in inv.by_series(days).items():
        metadata[f"{instrument} {table}"] = dg.MetadataValue.md(inv.markdown(series))
    return metadata


def build_inventory_asset(settings: Settings) -> dg.AssetsDefinition:
    @dg.asset(
        key=INVENTORY_KEY,
        group_name="lake",
        kinds={"s3"} if settings.source.kind != "local" else {"file"},
        automation_condition=dg.AutomationCondition.on_cron(REFRESH_CRON, "UTC"),
        description="Per instrument and table, the vendor's days in RLX_START_DATE..window end "
                    "(sizes from its listing) against ours: ready, quarantined or failed, not "
                    "fetched (the vendor has it: backfillable), and vendor holes (the vendor "
                    "does not have it). Refreshed hourly; materialise it before a backfill.",
    )
    def vendor_inventory(context: dg.AssetExecutionContext,
                         crypto_lake: CryptoLakeResource) -> dg.MaterializeResult:
        try:
            days = collect_inventory(context.instance, settings, crypto_lake.vendor())
        except VendorError as exc:
            raise dg.Failure(description=str(exc), allow_retries=exc.retriable) from None
        counts = inv.totals(days)
        context.log.info(f"Vendor inventory of {settings.source}: {counts['vendor_days']} vendor "
                         f"days, {counts['not_fetched']} not fetched, {counts['vendor_holes']} "
                         "vendor holes.")
        return dg.MaterializeResult(metadata=inventory_metadata(settings, days))

    return vendor_inventory
