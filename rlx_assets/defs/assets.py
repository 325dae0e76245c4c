"""Table assets: one per (instrument, table), daily partitions, checks from the same pass.

A run covers one day or, in a backfill, a range of days (`BackfillPolicy.multi_run`):
the per-run cost of a Dagster run (process start, code load, bookkeeping) is then paid
once per range instead of once per day. Each day is recorded as soon as it is done, with
its own metadata and per-partition check results (`day_events`).
"""


import datetime as dt
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
from pydantic import Field

from rlx_assets.defs.day_events import (
    blocked_days,
    check_outputs,
    earlier_attempts,
    partition_metadata,
    record_day,
    withdrawal,
)
from rlx_assets.defs.keys import table_key
from rlx_assets.defs.records import recorded_days
from rlx_assets.defs.resources import CryptoLakeResource, LakeResource
from rlx_assets.lib.checks import (
    BLOCKING_CHECKS,
    CHECK_DESCRIPTIONS,
    TRAILING_DAYS,
    WARNING_CHECKS,
)
from rlx_assets.lib.day_record import DayRecord
from rlx_assets.lib.ingest import ingest_partition
from rlx_assets.lib.instruments import Instrument
from rlx_assets.lib.lake import LakeError
from rlx_assets.lib.normalise import UnreadableVendorFile
from rlx_assets.lib.tables import TableSpec
from rlx_assets.lib.vendor import VendorError
from rlx_assets.settings import Settings

POOL = "crypto_lake"


def table_run_config(keys: list[dg.AssetKey], from_raw: bool) -> dict[str, object]:
    """Run config of the table assets `keys` (`from_raw`: re-check the stored raw copies)."""
    return {"ops": {"__".join(key.path): {"config": {"from_raw": from_raw}} for key in keys}}


@contextmanager
def vendor_failures() -> Iterator[None]:
    """Turn known failures into `dg.Failure`s: one sentence, retried only where it helps."""
    try:
        yield
    except (VendorError, UnreadableVendorFile) as exc:
        retriable = isinstance(exc, UnreadableVendorFile) or exc.retriable
        text = str(exc)
        if isinstance(exc, UnreadableVendorFile):
            text = (f"The vendor file is unreadable ({exc}); its raw copy was dropped so that "
                    "a retry downloads it again.")
        raise dg.Failure(description=text, allow_retries=retriable) from None
    except LakeError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None


def recorded_before(context: dg.AssetExecutionContext,
                    days: list[dt.date]) -> dict[dt.date, DayRecord]:
    """The current record of every day that `days` look back on (the TRAILING_DAYS before
    each), read once per step; the step adds each day it records."""
    wanted = sorted({day - dt.timedelta(days=i) for day in days
                     for i in range(1, TRAILING_DAYS + 1)})
    return recorded_days(context.instance, context.asset_key, wanted)


def earlier_days(history: dict[dt.date, DayRecord],
                 day: dt.date) -> tuple[int | None, list[int]]:
    """From the records of the days before (no re-read of their data): the last origin_time
    (ns) of the day before, and the row counts of the ready days among the trailing ones."""
    trailing = [history[d] for i in range(1, TRAILING_DAYS + 1)
                if (d := day - dt.timedelta(days=i)) in history]
    previous = history.get(day - dt.timedelta(days=1))
    return (previous.last_time if previous else None), [r.rows for r in trailing if r.ready]


def failed_days_failure(failed: dict[str, dg.Failure], total: int,
                        blocked: dict[str, list[str]]) -> dg.Failure:
    """One failure for the days of a range that could not be done (the others are recorded),
    naming the recorded days whose blocking checks failed too."""
    lines = "\n".join(f"- {day}: {failure.description}" for day, failure in sorted(failed.items()))
    also = f"\nBlocking checks failed on recorded days: {blocked_days(blocked)}." if blocked else ""
    return dg.Failure(
        description=f"{len(failed)} of {total} days failed (the other days are recorded; "
                    f"re-run these days once fixed):\n{lines}{also}",
        metadata={"failed_days": sorted(failed), "blocked_days": sorted(blocked)},
        allow_retries=any(f.allow_retries for f in failed.values()),
    )


class TableConfig(dg.Config):
    from_raw: bool = Field(
        default=False,
        description="Re-run the pass and the checks on the raw copy already in the lake, "
                    "without contacting the vendor (after changing thresholds, say).",
    )


def build_table_asset(
    instrument: Instrument,
    spec: TableSpec,
    partitions: dg.PartitionsDefinition,
    settings: Settings,
) -> dg.AssetsDefinition:
    key = table_key(instrument, spec.name)
    rules = settings.time_rules(instrument, spec.name)
    with warnings.catch_warnings():
        # Partitioned check specs are "preview" and backfill policies "beta" in 1.13; we rely
        # on both deliberately (per-partition check results are what the certificate and the
        # UI read; ranged backfill runs are what keep a year's backfill cheap).
        warnings.simplefilter("ignore", dg.PreviewWarning)
        warnings.simplefilter("ignore", dg.BetaWarning)
        check_specs = [
            dg.AssetCheckSpec(name, asset=key, blocking=name in BLOCKING_CHECKS,
                              partitions_def=partitions, description=CHECK_DESCRIPTIONS[name])
            for name in (*BLOCKING_CHECKS, *WARNING_CHECKS[spec.name])
        ]
        table_asset = dg.asset(
            key=key,
            partitions_def=partitions,
            check_specs=check_specs,
            output_required=False,  # each day is recorded by `record_day` as it completes
            backfill_policy=dg.BackfillPolicy.multi_run(settings.backfill_days_per_run),
            pool=POOL,
            retry_policy=dg.RetryPolicy(
                max_retries=settings.step_retries,
                delay=settings.retry_delay_seconds,
                backoff=dg.Backoff.EXPONENTIAL,
                jitter=dg.Jitter.PLUS_MINUS,
            ),
            group_name=instrument.slug,
            kinds={"parquet", "polars"},
            description=f"{spec.description} {instrument}, one UTC day per partition, from "
                        f"Crypto Lake. Max hole {rules.max_gap_seconds:,.0f} s; rows up to "
                        f"{rules.boundary_seconds:g} s across a day boundary are kept.",
            metadata={"instrument": str(instrument), "table": spec.name,
                      "max_gap_seconds": rules.max_gap_seconds,
                      "day_boundary_seconds": rules.boundary_seconds},
        )

    @table_asset
    def _table(
        context: dg.AssetExecutionContext,
        config: TableConfig,
        crypto_lake: CryptoLakeResource,
        lake: LakeResource,
    ) -> Iterator[dg.AssetMaterialization | dg.AssetCheckEvaluation | dg.Output]:
        days = context.partition_keys
        earlier = earlier_attempts(context, key)  # a step retry does not redo recorded days
        blocked = dict(earlier.blocked)
        with vendor_failures():
            source = None if config.from_raw else crypto_lake.vendor()
            store = lake.lake()
        failed: dict[str, dg.Failure] = {}
        history = recorded_before(context, [dt.date.fromisoformat(p) for p in days])
        for n, partition in enumerate(days, 1):
            if partition in earlier.days:
                continue
            day = dt.date.fromisoformat(partition)
            previous_last, trailing_rows = earlier_days(history, day)
            try:
                with vendor_failures():
                    result = ingest_partition(
                        source, store, spec, instrument, day, crypto_lake.backoff(),
                        rules, previous_last, log=context.log.info, from_raw=config.from_raw,
                        trailing_rows=trailing_rows)
            except dg.Failure as failure:
                if len(days) == 1:
                    raise
                context.log.error(f"[{n}/{len(days)}] {spec.name} {instrument} {day} failed: "
                                  f"{failure.description}")
                failed[partition] = failure
                continue
            context.log.info(f"[{n}/{len(days)}] {spec.name} {instrument} {day}: "
                             f"{result.summary()}")
            history[day] = result.record()
            yield from record_day(context, key, partition, partition_metadata(result),
                                  result.outcomes, result.passed)
            if result.withdrawn:
                yield withdrawal(instrument, spec.name, partition, result.failed_checks(),
                                 result.withdrawn)
            if not result.passed:
                blocked[partition] = result.failed_checks()
        yield from check_outputs(context)
        if failed:
            raise failed_days_failure(failed, len(days), blocked)
        if earlier.blocked:  # this attempt's own failed checks fail the step by themselves
            raise dg.Failure(description="Blocking checks failed on days recorded before this "
                             f"step was retried: {blocked_days(earlier.blocked)}.",
                             allow_retries=False)

    return _table


def build_table_assets(settings: Settings, partitions: dg.PartitionsDefinition):
    from rlx_assets.lib.tables import TABLES

    return [
        build_table_asset(instrument, spec, partitions, settings)
        for instrument in settings.instruments
        for spec in TABLES.values()
    ]
