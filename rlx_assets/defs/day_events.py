"""What a table run records per day: the day itself, then its check evaluations.

A table run covers one day, or a range of days when a backfill groups them
(`BackfillPolicy.multi_run`). Either way each day is recorded as soon as it is done:

- a day whose blocking checks passed (its data is in ready/) as an `AssetMaterialization`;
- a quarantined day as an `AssetObservation` of its partition, never a materialisation.
  The run then fails, and Dagster shows a partition that a failed run planned but did not
  materialise as FAILED - in the Partitions tab, the asset graph and the backfill - even
  when an earlier run had materialised it (verified on 1.13, see the README). Wiping the
  old materialisation instead would delete the history, and needs storage internals.

Both carry the same `DayRecord` as metadata, followed by `AssetCheckEvaluation`s that carry
the day's partition (Dagster's own `AssetCheckResult` has no partition in a ranged run), so
partition and check status appear day by day while the run goes on. Failed blocking ERROR
evaluations fail the step at its end, which stops downstream steps.

Because the asset's own output is optional (`output_required=False`), Dagster adds no
materialisations of its own; the checks' outputs are still required and are yielded by
`check_outputs` once every day is done.
"""

from collections.abc import Iterator
from dataclasses import dataclass

import dagster as dg

from rlx_assets.defs.keys import CERTIFIED, certificate_key
from rlx_assets.defs.records import evaluation_target, run_step_events
from rlx_assets.lib.checks import CheckOutcome
from rlx_assets.lib.ingest import PartitionResult
from rlx_assets.lib.instruments import Instrument


def partition_metadata(result: PartitionResult) -> dict[str, object]:
    """The day's record, and how the run went (in the UI only; not read back)."""
    scan = result.scan
    metadata = result.record().to_metadata()
    return {
        **metadata,
        "path": dg.MetadataValue.path(result.location),
        "raw_reused": result.raw.reused,
        "download_attempts": result.raw.attempts,
        "download_mb_per_s": round(result.raw.megabytes_per_second, 2),
        "seconds": round(result.seconds, 3),
        "rows_per_s": round(scan.rows / result.seconds) if result.seconds > 0 else None,
        "dagster/column_schema": dg.TableSchema(
            columns=[dg.TableColumn(name, dtype) for name, dtype in scan.columns.items()]
        ),
    }


def record_day(context: dg.AssetExecutionContext, key: dg.AssetKey, partition: str,
               metadata: dict[str, object], outcomes: list[CheckOutcome], passed: bool,
               ) -> Iterator[dg.AssetMaterialization | dg.AssetObservation
                             | dg.AssetCheckEvaluation]:
    """The day's materialisation (or quarantine observation), then each check's evaluation."""
    target = None
    if passed:
        yield dg.AssetMaterialization(asset_key=key, partition=partition, metadata=metadata)
        target = evaluation_target(context.instance, key, partition, context.run.run_id)
    else:
        yield dg.AssetObservation(
            asset_key=key, partition=partition, metadata=metadata,
            description="Quarantined: a blocking check failed; the data is in quarantine/, "
                        "not ready/.")
    for outcome in outcomes:
        yield dg.AssetCheckEvaluation(
            asset_key=key,
            check_name=outcome.name,
            passed=outcome.passed,
            partition=partition,
            blocking=outcome.blocking,
            severity=dg.AssetCheckSeverity.ERROR if outcome.blocking
            else dg.AssetCheckSeverity.WARN,
            description=outcome.description,
            metadata={**outcome.metadata, "violations": list(outcome.violations)}
            if outcome.violations else outcome.metadata,
            target_materialization_data=target,
        )


def withdrawal(instrument: Instrument, table: str, partition: str, failed: list[str],
               withdrawn: tuple[str, ...]) -> dg.AssetCheckEvaluation:
    """The certificate's own check, failed: a day it covered left ready/ and its file was
    withdrawn. Shown on the certificate's page, in `rlx-assets status` and in Slack; the
    certificate is issued again (and the check passes) once every day passes again."""
    return dg.AssetCheckEvaluation(
        asset_key=certificate_key(instrument), check_name=CERTIFIED, passed=False,
        severity=dg.AssetCheckSeverity.ERROR, blocking=True,
        description=f"withdrawn: {table} {partition} failed {', '.join(failed)} and left "
                    "ready/; issued again once every day passes",
        metadata={"state": "withdrawn", "withdrawn": list(withdrawn), "table": table,
                  "day": partition,
                  "failed_checks": failed})


def check_outputs(context: dg.AssetExecutionContext) -> Iterator[dg.Output]:
    """The (empty) outputs Dagster requires for each declared check."""
    for check_key in context.assets_def.check_keys:
        yield dg.Output(None, output_name=context.assets_def.get_output_name_for_asset_check_key(
            check_key))


@dataclass(frozen=True)
class EarlierAttempts:
    """What earlier attempts of this step (before a step retry) recorded."""

    days: set[str]  # partitions recorded (materialised or quarantined): not redone
    blocked: dict[str, list[str]]  # partition -> blocking checks that failed there


def earlier_attempts(context: dg.AssetExecutionContext, key: dg.AssetKey) -> EarlierAttempts:
    """Read from this run's event log; empty on the first attempt."""
    if not context.retry_number:
        return EarlierAttempts(set(), {})
    entries = run_step_events(context.instance, context.run.run_id, {
        dg.DagsterEventType.ASSET_MATERIALIZATION, dg.DagsterEventType.ASSET_OBSERVATION,
        dg.DagsterEventType.ASSET_CHECK_EVALUATION})
    days: set[str] = set()
    blocked: dict[str, list[str]] = {}
    for entry in entries:
        event = entry.dagster_event
        if event.event_type != dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            if event.asset_key == key:
                days.add(event.partition)
            continue
        evaluation = event.event_specific_data  # an AssetCheckEvaluation
        if evaluation.asset_key == key and evaluation.blocking and not evaluation.passed:
            blocked.setdefault(evaluation.partition, []).append(evaluation.check_name)
    return EarlierAttempts(days, blocked)


def blocked_days(outcomes_by_day: dict[str, list[str]]) -> str:
    return "; ".join(f"{day}: {', '.join(checks)}" for day, checks in sorted(
        outcomes_by_day.items()))
