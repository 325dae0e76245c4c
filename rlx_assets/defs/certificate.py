"""The certificate asset per instrument, issued automatically once every partition passes."""

import datetime as dt
from collections.abc import Iterator

import dagster as dg

from rlx_assets.defs.keys import CERTIFIED, certificate_key, table_key
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


def _issued_metadata(certificate: dict, path: str, days: int) -> dict[str, object]:
    totals = {name: t["totals"] for name, t in certificate["tables"].items()}
    summary = "\n".join(
        f"| {name} | {t['days']} | {t['rows']:,} | {t['bytes'] / 1e6:,.1f} MB |"
        for name, t in totals.items())
    return {
        "path": dg.MetadataValue.path(path),
        "window": f"{certificate['window']['start']}..{certificate['window']['end']}",
        "days": days,
        "content_sha256": certificate["content_sha256"],
        "summary": dg.MetadataValue.md("| table | days | rows | size |\n|---|---|---|---|\n"
                                       + summary),
        "dagster/row_count": sum(t["rows"] for t in totals.values()),
        "accepted_exceptions": dg.MetadataValue.md(_exceptions_table(
            certificate["accepted_exceptions"])),
    }


def refused(instrument: Instrument, start: dt.date, end: dt.date,
            problems: list[str]) -> Iterator[dg.AssetCheckResult]:
    """The certificate's check, failed with the problems (shown on the certificate's page,
    alerted), then the run's failure listing them."""
    shown = problems[:50]
    yield dg.AssetCheckResult(
        check_name=CERTIFIED, passed=False, severity=dg.AssetCheckSeverity.ERROR,
        description=f"refused: {len(problems)} partition problem(s), first: {problems[0]}",
        metadata={"window": f"{start}..{end}", "problem_count": len(problems),
                  "problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in shown)
                                                  + ("\n- ..." if len(problems) > 50
                                                     else ""))})
    raise dg.Failure(description=refusal_message(str(instrument), start, end, problems),
                     metadata={"problems": problems}, allow_retries=False)


def build_certificate_asset(instrument: Instrument, settings: Settings) -> dg.AssetsDefinition:
    table_keys = {name: table_key(instrument, name) for name in TABLES}
    key = certificate_key(instrument)

    @dg.asset(
        key=key,
        deps=list(table_keys.values()),
        automation_condition=CERTIFY_WHEN_ALL_PASS,
        group_name=instrument.slug,
        kinds={"json"},
        check_specs=[dg.AssetCheckSpec(
            CERTIFIED, asset=key, blocking=True,
            description="Passes when the certificate is issued for the window; fails when it "
                        "is refused (with each missing or failing table and day) or withdrawn "
                        "(a day it covered left ready/).")],
        description=f"Data-readiness certificate for {instrument}: every table and day from "
                    "RLX_START_DATE to RLX_END_DATE materialised, all blocking checks passed, "
                    "ready/ files unchanged (size and sha256; size and ETag on S3). Research "
                    "reads only certified windows.",
    )
    def _certificate(context: dg.AssetExecutionContext,
                     lake: LakeResource) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        start, end = settings.start_date, settings.window_end()
        days = window_days(start, end)
        context.log.info(f"Verifying {len(days)} days x {len(table_keys)} tables for "
                         f"{instrument} ({start}..{end}).")
        recorded = {name: recorded_partitions(context.instance, k, days)
                    for name, k in table_keys.items()}
        store = lake.lake()
        certificate, problems = build_certificate(
            str(instrument), start, end, recorded, dt.datetime.now(dt.UTC), store.unchanged)
        file_key = store.certificate_key(instrument, start, end)
        if certificate is None:
            if store.read_json(file_key) is not None:  # an earlier one no longer holds
                store.delete(file_key)
                problems.append(f"the earlier certificate {store.location(file_key)} was "
                                "withdrawn")
            yield from refused(instrument, start, end, problems)
        path = store.write_json(file_key, certificate)
        again = {name: recorded_partitions(context.instance, k, days)
                 for name, k in table_keys.items()}
        if again != recorded:  # a partition changed while the files were being verified
            store.delete(file_key)
            yield from refused(instrument, start, end, [
                "withdrawn: a partition was re-materialised while it was being issued; it "
                f"is issued again once that run is done ({store.location(file_key)})"])
        yield dg.MaterializeResult(
            metadata=_issued_metadata(certificate, str(path), len(days)),
            check_results=[dg.AssetCheckResult(
                check_name=CERTIFIED, passed=True,
                description=f"issued for {start}..{end}: {path}",
                metadata={"content_sha256": certificate["content_sha256"],
                          "accepted_exceptions": len(certificate["accepted_exceptions"])})])

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
