"""Accepting a vendor exception (`rlx-assets accept`, or the `accept_vendor_exception` job in
the UI's Launchpad), and the sensor that re-evaluates the partition once it is accepted.

Accepting reads the partition's current failure from the instance (the latest evaluation of
the check and the vendor file's sha256), refuses when there is nothing to accept, and
stores the acceptance in the lake (`lib/acceptance.py`). The `accepted_exceptions` sensor
then re-runs that partition's pass and checks from its raw copy, once per acceptance (and
once per revocation), so that the data reaches ready/ (or leaves it) and the certificate
follows, whether the acceptance came from the command line or the UI.
"""


import datetime as dt
import getpass

import dagster as dg
from pydantic import Field

from rlx_assets.defs.assets import table_run_config
from rlx_assets.defs.keys import table_key
from rlx_assets.defs.records import latest_evaluation, recorded_days
from rlx_assets.defs.resources import LakeResource
from rlx_assets.lib import acceptance as acc
from rlx_assets.lib.checks import BLOCKING_CHECKS
from rlx_assets.lib.instruments import Instrument, InstrumentError
from rlx_assets.lib.lake import Lake
from rlx_assets.lib.tables import TABLES
from rlx_assets.settings import Settings

JOB_NAME = "accept_vendor_exception"
SENSOR_NAME = "accepted_exceptions"


def instrument_of(settings: Settings, text: str | None) -> Instrument:
    """The named instrument, or the only configured one."""
    if text:
        try:
            instrument = Instrument.parse(text)
        except InstrumentError as exc:
            raise acc.AcceptanceError(str(exc)) from None
        if instrument not in settings.instruments:
            raise acc.AcceptanceError(f"{instrument} is not among RLX_INSTRUMENTS "
                                      f"({', '.join(map(str, settings.instruments))}).")
        return instrument
    if len(settings.instruments) > 1:
        raise acc.AcceptanceError("Several instruments are configured; name one with "
                                  "--instrument EXCHANGE:SYMBOL.")
    return settings.instruments[0]


def _target(settings: Settings, table: str, day: dt.date, check: str) -> None:
    if table not in TABLES:
        raise acc.AcceptanceError(f"Unknown table {table!r}; use one of {', '.join(TABLES)}.")
    if check not in BLOCKING_CHECKS:
        names = ", ".join(BLOCKING_CHECKS)
        raise acc.AcceptanceError(f"Only a blocking check can be accepted ({names}); "
                                  f"{check!r} is not one.")
    if not settings.start_date <= day <= settings.window_end():
        raise acc.AcceptanceError(f"{day} is outside the window {settings.start_date}.."
                                  f"{settings.window_end()} (RLX_START_DATE/RLX_END_DATE).")


def accept(instance: dg.DagsterInstance, settings: Settings, lake: Lake, *, table: str,
           day: dt.date, check: str, reason: str, instrument: str | None = None,
           by: str | None = None) -> acc.Acceptance:
    """Record the acceptance of the partition's current failure of `check`."""
    inst = instrument_of(settings, instrument)
    _target(settings, table, day, check)
    if not reason.strip():
        raise acc.AcceptanceError("An acceptance needs a reason (--reason), e.g. 'vendor "
                                  "confirmed the writer was down; no data exists'.")
    key = table_key(inst, table)
    where = f"{key.to_user_string()} {day}"
    record = recorded_days(instance, key, [day]).get(day)
    evaluation = latest_evaluation(instance, key, check, day.isoformat())
    if record is None or evaluation is None:
        raise acc.AcceptanceError(f"{where} has no evaluation of {check} yet; materialise it "
                                  "first, then accept what fails.")
    if evaluation.passed:
        raise acc.AcceptanceError(f"{check} passes on {where}; there is nothing to accept.")
    violations = tuple(evaluation.metadata.get("violations") or ())
    if not violations:
        raise acc.AcceptanceError(f"The failure of {check} on {where} names no violations "
                                  "(recorded by an older version); re-materialise it first.")
    acceptance = acc.Acceptance(
        instrument=str(inst), table=table, day=day, check=check, reason=reason.strip(),
        accepted_by=by or getpass.getuser(),
        accepted_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        vendor_sha256=record.vendor_sha256, violations=violations,
        evidence={"description": evaluation.description, "run_id": evaluation.run_id,
                  **{k: v for k, v in evaluation.metadata.items() if k != "violations"}})
    acc.save(lake, acceptance)
    return acceptance


def revoke(settings: Settings, lake: Lake, *, table: str, day: dt.date, check: str,
           instrument: str | None = None, by: str | None = None) -> acc.Acceptance:
    """Mark the acceptance revoked (kept for the record): the next evaluation fails again."""
    inst = instrument_of(settings, instrument)
    _target(settings, table, day, check)
    found = acc.load(lake, table, inst, day, check)
    if found is None or not found.active:
        raise acc.AcceptanceError(f"No active acceptance of {check} on {table} {inst} {day}; "
                                  "`rlx-assets accept --list` shows them.")
    revoked = found.revoked(by or getpass.getuser(), dt.datetime.now(dt.UTC))
    acc.save(lake, revoked)
    return revoked


class AcceptConfig(dg.Config):
    """The fields of `rlx-assets accept`."""

    table: str = Field(description="trades, book or book_delta_v2")
    day: str = Field(description="the partition, YYYY-MM-DD")
    check: str = Field(description="the blocking check whose failure is accepted, e.g. "
                                   "temporal_continuity")
    reason: str = Field(default="", description="why the failure is accepted (required to "
                                                "accept, kept in the certificate)")
    instrument: str = Field(default="", description="EXCHANGE:SYMBOL; empty: the only "
                                                    "configured instrument")
    revoke: bool = Field(default=False, description="revoke an earlier acceptance instead")


def build_accept_job(settings: Settings) -> dg.JobDefinition:
    @dg.op(name="record_acceptance", description="Records (or revokes) an accepted vendor "
           "exception in the lake; the accepted_exceptions sensor then re-checks the partition "
           "from its raw copy.")
    def record_acceptance(context: dg.OpExecutionContext, config: AcceptConfig,
                          lake: LakeResource) -> None:
        try:
            day = dt.date.fromisoformat(config.day)
        except ValueError:
            raise dg.Failure(f"day {config.day!r} is not a date; use YYYY-MM-DD.",
                             allow_retries=False) from None
        fields = {"table": config.table, "day": day, "check": config.check,
                  "instrument": config.instrument or None,
                  "by": context.run.tags.get("dagster/user") or f"run {context.run_id[:8]}"}
        try:
            if config.revoke:
                done = revoke(settings, lake.lake(), **fields)
                context.log.info(f"Revoked the acceptance of {done.check} on {done.table} "
                                 f"{done.instrument} {done.day}; it is re-checked next.")
            else:
                done = accept(context.instance, settings, lake.lake(), reason=config.reason,
                              **fields)
                context.log.info(f"Accepted {done.check} on {done.table} {done.instrument} "
                                 f"{done.day}: {done.reason}. Accepted violations: "
                                 f"{'; '.join(done.violations)}. It is re-checked next.")
        except acc.AcceptanceError as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from None

    @dg.job(name=JOB_NAME, description="Accept (or revoke) a vendor exception: a blocking "
            "check's failure the vendor will never fix, such as a writer-restart hole. Same "
            "fields as `rlx-assets accept`; fill them in the Launchpad.")
    def accept_vendor_exception():
        record_acceptance()

    return accept_vendor_exception


def due_rechecks(instance: dg.DagsterInstance, settings: Settings,
                 lake: Lake) -> list[tuple[dg.AssetKey, dt.date, str]]:
    """(asset, day, run key) of the partitions an acceptance or a revocation has not reached
    yet: accepted but still quarantined by that check on that vendor file, or revoked but
    still ready under it."""
    due = []
    by_asset: dict[dg.AssetKey, list[acc.Acceptance]] = {}
    for item in acc.every(lake):
        inst = Instrument.parse(item.instrument)
        if inst in settings.instruments and \
                settings.start_date <= item.day <= settings.window_end():
            by_asset.setdefault(table_key(inst, item.table), []).append(item)
    for key, items in by_asset.items():
        records = recorded_days(instance, key, sorted({i.day for i in items}))
        for item in items:
            record = records.get(item.day)
            if record is None:
                continue
            if item.active and not record.ready and item.check in record.failed_checks \
                    and record.vendor_sha256 == item.vendor_sha256:
                due.append((key, item.day, f"accept:{item.check}:{item.accepted_at}"))
            elif not item.active and record.ready and \
                    record.accepted.get(item.check, {}).get("accepted_at") == item.accepted_at:
                due.append((key, item.day, f"revoke:{item.check}:{item.revoked_at}"))
    return due


def build_acceptance_sensor(settings: Settings) -> dg.SensorDefinition:
    keys = [table_key(i, t) for i in settings.instruments for t in TABLES]

    @dg.sensor(name=SENSOR_NAME, target=dg.AssetSelection.assets(*keys),
               minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING,
               description="Re-checks a partition from its raw copy once an acceptance of its "
                           "failure is recorded (or revoked), so that it reaches ready/ (or "
                           "leaves it) and the certificate follows.")
    def accepted_exceptions(context: dg.SensorEvaluationContext,
                            lake: LakeResource) -> dg.SensorResult:
        runs = []
        for key, day, reason in due_rechecks(context.instance, settings, lake.lake()):
            context.log.info(f"Re-checking {key.to_user_string()} {day} ({reason}).")
            runs.append(dg.RunRequest(
                run_key=f"{key.to_user_string()}:{day}:{reason}", asset_selection=[key],
                partition_key=day.isoformat(),
                run_config=table_run_config([key], from_raw=True),
                tags={"rlx/trigger": SENSOR_NAME}))
        return dg.SensorResult(run_requests=runs,
                               skip_reason=None if runs else "No acceptance awaits a re-check.")

    return accepted_exceptions
