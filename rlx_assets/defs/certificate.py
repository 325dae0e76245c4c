"""The certificate asset per instrument, issued automatically once every partition passes."""

import datetime as dt

import dagster as dg

from rlx_assets.defs.assets import table_key
from rlx_assets.defs.records import recorded_days
from rlx_assets.defs.resources import LakeResource
from rlx_assets.lib.certificate import build_certificate, refusal_message, window_days
from rlx_assets.lib.checks import BLOCKING_CHECKS
from rlx_assets.lib.day_record import DayRecord
from rlx_assets.lib.instruments import Instrument
from rlx_assets.lib.tables import TABLES
from rlx_assets.settings import Settings

# Verified for an unpartitioned child of partitioned parents (see the design notes):
# fires once, after something upstream changed, when no partition is missing, failing a
# blocking check, or running.
CERTIFY_WHEN_ALL_PASS = (
    dg.AutomationCondition.any_deps_updated().since_last_handled()
    & ~dg.AutomationCondition.any_deps_missing()
    & ~dg.AutomationCondition.any_deps_match(
        dg.AutomationCondition.any_checks_match(
            ~dg.AutomationCondition.check_passed(), blocking_only=True)
    )
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("all partitions in the window passed their blocking checks")


def recorded_partitions(
    instance: dg.DagsterInstance, key: dg.AssetKey, days: list[dt.date]
) -> dict[dt.date, DayRecord]:
    """The current record of each day in `days`, with its blocking checks' latest status (a
    check evaluated only for an earlier record of the day counts as NOT EVALUATED)."""
    return recorded_days(instance, key, days, BLOCKING_CHECKS)


def _exceptions_table(exceptions: list[dict[str, str]]) -> str:
    if not exceptions:
        return "None: every check passed on its own."
    rows = "\n".join(f"| {e['table']} | {e['day']} | {e['check']} | {e['reason']} | "
                     f"{e['accepted_by']} | {e['accepted_at']} |" for e in exceptions)
    return "| table | day | check | reason | by | at |\n|---|---|---|---|---|---|\n" + rows


def certificate_key(instrument: Instrument) -> dg.AssetKey:
    return dg.AssetKey([*instrument.key_prefix, "certificate"])


def build_certificate_asset(instrument: Instrument, settings: Settings) -> dg.AssetsDefinition:
    table_keys = {name: table_key(instrument, name) for name in TABLES}

    @dg.asset(
        key=certificate_key(instrument),
        deps=list(table_keys.values()),
        automation_condition=CERTIFY_WHEN_ALL_PASS,
        group_name=instrument.slug,
        kinds={"json"},
        description=f"Data-readiness certificate for {instrument}: every table and day from "
                    "RLX_START_DATE to RLX_END_DATE materialised, all blocking checks passed, "
                    "ready/ files unchanged (size and sha256; size and ETag on S3). Research "
                    "reads only certified windows.",
    )
    def _certificate(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
        start, end = settings.start_date, settings.window_end()
        days = window_days(start, end)
        context.log.info(f"Verifying {len(days)} days x {len(table_keys)} tables for "
                         f"{instrument} ({start}..{end}).")
        recorded = {name: recorded_partitions(context.instance, key, days)
                    for name, key in table_keys.items()}
        store = lake.lake()
        certificate, problems = build_certificate(
            str(instrument), start, end, recorded, dt.datetime.now(dt.UTC), store.unchanged)
        key = store.certificate_key(instrument, start, end)
        if certificate is None:
            if store.read_json(key) is not None:  # an earlier one no longer holds: withdraw it
                store.delete(key)
                problems.append(f"the earlier certificate {store.location(key)} was withdrawn")
            raise dg.Failure(description=refusal_message(str(instrument), start, end, problems),
                             metadata={"problems": problems}, allow_retries=False)
        path = store.write_json(key, certificate)
        again = {name: recorded_partitions(context.instance, k, days)
                 for name, k in table_keys.items()}
        if again != recorded:  # a partition changed while the files were being verified
            store.delete(key)
            raise dg.Failure(description=f"Certificate for {instrument} {start}..{end} "
                             "withdrawn: a partition was re-materialised while it was being "
                             "issued; it is issued again once that run is done.",
                             allow_retries=False)
        totals = {name: t["totals"] for name, t in certificate["tables"].items()}
        summary = "\n".join(
            f"| {name} | {t['days']} | {t['rows']:,} | {t['bytes'] / 1e6:,.1f} MB |"
            for name, t in totals.items())
        return dg.MaterializeResult(metadata={
            "path": dg.MetadataValue.path(str(path)),
            "window": f"{start}..{end}",
            "days": len(days),
            "content_sha256": certificate["content_sha256"],
            "summary": dg.MetadataValue.md(
                "| table | days | rows | size |\n|---|---|---|---|\n" + summary),
            "dagster/row_count": sum(t["rows"] for t in totals.values()),
            "accepted_exceptions": dg.MetadataValue.md(_exceptions_table(
                certificate["accepted_exceptions"])),
        })

    return _certificate


def build_certificate_assets(settings: Settings) -> list[dg.AssetsDefinition]:
    return [build_certificate_asset(i, settings) for i in settings.instruments]


def build_automation_sensor(settings: Settings) -> dg.AutomationConditionSensorDefinition:
    """Dagster's automation sensor starts stopped; ours runs by default."""
    return dg.AutomationConditionSensorDefinition(
        "certificate_automation",
        target=dg.AssetSelection.all(),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=settings.automation_interval_seconds,
    )
