"""The `new_vendor_days` sensor: materialise days the vendor publishes (or re-publishes).

Every RLX_NEW_DAYS_INTERVAL_SECONDS it lists the vendor once per (instrument, table) over
RLX_START_DATE..window end and requests one run per (table, day) that the vendor has and we
have not materialised, or whose vendor object changed since (see `rlx_assets.lib.new_days`).
The runs are ordinary runs of the table assets, so they queue in the `crypto_lake` pool; the
certificate follows through its automation condition. Running by default only for a real
source (lakeapi, sample, s3://); stopped for a local directory such as the demo lake.
"""


import dagster as dg

from rlx_assets.defs.keys import table_key
from rlx_assets.defs.partitions import daily_partitions
from rlx_assets.defs.records import read_series, vendor_stamps
from rlx_assets.defs.resources import CryptoLakeResource
from rlx_assets.lib import new_days
from rlx_assets.lib.certificate import window_days
from rlx_assets.lib.tables import TABLES
from rlx_assets.lib.vendor import VendorError, VendorSource, list_many
from rlx_assets.settings import Settings

SENSOR_NAME = "new_vendor_days"
TRIGGER_TAG = "rlx/trigger"
VERSION_TAG = "rlx/vendor_version"


def new_days_tick(context: dg.SensorEvaluationContext, settings: Settings,
                  source: VendorSource, limit: int) -> dg.SensorResult:
    start, end = settings.start_date, settings.window_end()
    days = window_days(start, end)
    if not days:
        return dg.SensorResult(skip_reason=f"The window {start}..{end} has no complete day yet.")
    partitions = daily_partitions(settings)
    requested = new_days.load_cursor(context.cursor)
    due: list[new_days.Due] = []
    errors: list[VendorError] = []
    keys = {(i, t): table_key(i, t) for i in settings.instruments for t in TABLES}
    series = read_series(context.instance, list(keys.values()), days, (), partitions,
                         with_records=False)
    stamps = vendor_stamps(context.instance, list(keys.values()), days)
    listings = list_many(source, list(keys), start, end)
    for (instrument, table), key in keys.items():
        asset = key.to_user_string()
        vendor = listings[(instrument, table)]
        if isinstance(vendor, VendorError):
            context.log.warning(f"Listing {table} {instrument} failed: {vendor}")
            errors.append(vendor)
            continue
        recorded = stamps[key]
        in_flight = {d for d, s in series[key].statuses.items() if s == "IN_PROGRESS"}
        requested[asset] = new_days.still_requested(requested.get(asset, {}), vendor,
                                                    recorded)
        due += new_days.due_days(asset, vendor, recorded, in_flight, requested[asset])
    if errors and len(errors) == len(settings.instruments) * len(TABLES):
        raise errors[0]  # nothing could be listed: fail the tick, visibly
    chosen = new_days.pick(due, limit)
    runs = []
    for item in chosen:
        requested.setdefault(item.asset, {})[item.day.isoformat()] = item.version
        context.log.info(f"Requesting {item.asset} {item.day}: {item.reason} at the vendor "
                         f"(version {item.version}).")
        runs.append(dg.RunRequest(
            run_key=item.run_key,
            asset_selection=[dg.AssetKey.from_user_string(item.asset)],
            partition_key=item.day.isoformat(),
            tags={TRIGGER_TAG: SENSOR_NAME, VERSION_TAG: item.version},
        ))
    if len(due) > len(chosen):
        context.log.info(f"{len(due) - len(chosen)} more day(s) due; they follow on later ticks "
                         f"({limit} per tick).")
    return dg.SensorResult(
        run_requests=runs,
        cursor=new_days.dump_cursor(requested),
        skip_reason=None if runs else f"Nothing new at the vendor for {start}..{end}.",
    )


def build_new_days_sensor(settings: Settings) -> dg.SensorDefinition:
    interval, limit = settings.new_days_interval_seconds, settings.new_days_max_per_tick
    real_source = settings.source.kind != "local"
    keys = [table_key(i, t) for i in settings.instruments for t in TABLES]

    @dg.sensor(
        name=SENSOR_NAME,
        target=dg.AssetSelection.assets(*keys),
        minimum_interval_seconds=interval,
        default_status=(dg.DefaultSensorStatus.RUNNING if real_source
                        else dg.DefaultSensorStatus.STOPPED),
        description="Lists the vendor and requests one run per (table, day) it has that is not "
                    "materialised, or that it re-published (new size or etag), once per vendor "
                    f"version, at most {limit} a tick. Running by default only for a real "
                    "source (lakeapi, sample, s3://).",
    )
    def new_vendor_days(context: dg.SensorEvaluationContext,
                        crypto_lake: CryptoLakeResource) -> dg.SensorResult:
        return new_days_tick(context, settings, crypto_lake.vendor(), limit)

    return new_vendor_days
