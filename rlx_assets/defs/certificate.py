"""The certificate asset per instrument, issued automatically once every partition passes.

A recipe: read what Dagster recorded per day, verify the ready/ files (incrementally:
`lib/verification`), then issue the certificate or refuse it (its files and their history,
and withdrawal: `lib/certificate_files`; the checks themselves: `lib/certificate`)."""

import datetime as dt
from collections.abc import Iterator

import dagster as dg
from pydantic import Field

from rlx_assets.defs.consistency import CROSS_TABLE_CHECKS
from rlx_assets.defs.keys import CERTIFIED, certificate_key, consistency_key, table_key
from rlx_assets.defs.records import NOT_EVALUATED, check_statuses, recorded_days
from rlx_assets.defs.resources import LakeResource
from rlx_assets.lib import certificate_files, verification
from rlx_assets.lib.certificate import (
    Verdict,
    build_certificate,
    refusal_message,
    window_days,
)
from rlx_assets.lib.checks import BLOCKING_CHECKS
from rlx_assets.lib.day_record import DayRecord
from rlx_assets.lib.instruments import Instrument
from rlx_assets.lib.lake import Lake, LakeError
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


class CertificateConfig(dg.Config):
    """Run config of the certificate (the automation uses the defaults)."""

    rehash_all: bool = Field(
        default=False,
        description="Re-read and hash every ready/ file, ignoring the records of files "
                    "verified before (a local lake trusts an unchanged size, mtime and ctime; "
                    "see rlx_assets.lib.verification). An S3 lake always compares size and "
                    "ETag.")


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


def _issued_metadata(certificate: dict, path: str, days: int,
                     checked: dict[str, int]) -> dict[str, object]:
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
        # Incremental verification (lib/verification): files read again vs trusted.
        "ready_files_verified": checked["files"],
        "ready_files_rehashed": checked["rehashed"],
        "ready_bytes_rehashed": checked["rehashed_bytes"],
        "ready_files_trusted": checked["trusted"],
    }


def _verify(context: dg.AssetExecutionContext, store: Lake, instrument: Instrument,
            start: dt.date, end: dt.date, recorded: dict[str, dict[dt.date, DayRecord]],
            rehash_all: bool, cross_table: dict[dt.date, dict[str, str]],
            ) -> tuple[Verdict, dict[str, int]]:
    """Check every day and its ready/ file (re-hashing only what changed since it was last
    verified), keep what was verified, and say how much was read."""
    verifier = verification.verifier_for(store, instrument, rehash_all)
    verdict = build_certificate(
        str(instrument), start, end, recorded, dt.datetime.now(dt.UTC), verifier, cross_table)
    try:  # an optimisation: failing to keep the records only means hashing again next time
        verification.save(store, instrument, verifier)
    except LakeError as exc:
        context.log.warning(f"The verification records were not kept: {exc}")
    checked = verifier.summary()
    context.log.info(f"ready/ files: {checked['files']} verified, {checked['rehashed']} "
                     f"re-hashed ({checked['rehashed_bytes'] / 1e9:,.2f} GB), "
                     f"{checked['trusted']} unchanged since last verified.")
    return verdict, checked


def _no_longer_holds(verdict: Verdict, start: dt.date, end: dt.date) -> str | None:
    """Why an earlier certificate from `start` to `end` must be withdrawn, or None."""
    within = verdict.problems_within(start, end)
    if not within:
        return None
    more = f" (and {len(within) - 1} more)" if len(within) > 1 else ""
    return f"refused on re-issue: {within[0]}{more}"


def refused(instrument: Instrument, start: dt.date, end: dt.date, problems: list[str],
            state: str = "refused") -> Iterator[dg.AssetCheckResult]:
    """The certificate's check, failed with the problems (shown on the certificate's page,
    alerted), then the run's failure listing them. `state` (refused, or withdrawn: issued
    and taken back) is what `rlx-assets status` shows."""
    shown = problems[:50]
    yield dg.AssetCheckResult(
        check_name=CERTIFIED, passed=False, severity=dg.AssetCheckSeverity.ERROR,
        description=f"{state}: {len(problems)} partition problem(s), first: {problems[0]}",
        metadata={"state": state, "window": f"{start}..{end}", "problem_count": len(problems),
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
                    "ready/ files unchanged (size and sha256, re-hashing only files whose size, "
                    "mtime or ctime changed since last verified; size and ETag on S3). One "
                    "current certificate per window start, earlier ones in certificates/history/. "
                    "Research reads only certified windows.",
    )
    def _certificate(context: dg.AssetExecutionContext, config: CertificateConfig,
                     lake: LakeResource) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        start, end = settings.start_date, settings.window_end()
        days = window_days(start, end)
        context.log.info(f"Verifying {len(days)} days x {len(table_keys)} tables for "
                         f"{instrument} ({start}..{end}).")
        recorded = {name: recorded_partitions(context.instance, k, days)
                    for name, k in table_keys.items()}
        store = lake.lake()
        evaluated = check_statuses(context.instance, consistency_key(instrument),
                                   list(CROSS_TABLE_CHECKS), days)
        cross_table = {day: {name: evaluated.get(day, {}).get(name, NOT_EVALUATED)
                             for name in CROSS_TABLE_CHECKS} for day in days}
        verdict, checked = _verify(context, store, instrument, start, end, recorded,
                                   config.rehash_all, cross_table)
        if verdict.certificate is None:  # earlier certificates over a failing day no longer hold
            withdrawn = certificate_files.withdraw_where(
                store, instrument, lambda c: _no_longer_holds(verdict, c.start, c.end))
            yield from refused(instrument, start, end, verdict.problems + [
                f"the earlier certificate {m.location} was withdrawn (kept as {m.kept_at})"
                for m in withdrawn])
        path = certificate_files.issue(store, instrument, start, end, verdict.certificate)
        again = {name: recorded_partitions(context.instance, k, days)
                 for name, k in table_keys.items()}
        if again != recorded:  # a partition changed while the files were being verified
            certificate_files.withdraw(store, store.certificate_key(instrument, start, end),
                                       "a partition was re-materialised while it was issued")
            yield from refused(instrument, start, end, [
                "withdrawn: a partition was re-materialised while it was being issued; it "
                f"is issued again once that run is done ({path})"], state="withdrawn")
        yield dg.MaterializeResult(
            metadata=_issued_metadata(verdict.certificate, str(path), len(days), checked),
            check_results=[dg.AssetCheckResult(
                check_name=CERTIFIED, passed=True,
                description=f"issued for {start}..{end}: {path}",
                metadata={"content_sha256": verdict.certificate["content_sha256"],
                          "accepted_exceptions": len(
                              verdict.certificate["accepted_exceptions"])})])

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
