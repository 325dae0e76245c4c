"""What a table run records per day: one materialisation and its check evaluations.

A table run covers one day, or a range of days when a backfill groups them
(`BackfillPolicy.multi_run`). Either way each day is recorded as soon as it is done, as
its own `AssetMaterialization` with its own metadata, followed by `AssetCheckEvaluation`s
that carry the day's partition and point at that materialisation. So partition and check
status appear day by day in the UI, and a ranged run keeps per-partition check results
(Dagster's own `AssetCheckResult` has no partition in a ranged run). Blocking ERROR
evaluations that fail still fail the step at its end, which stops downstream steps.

Because the asset's own output is optional (`output_required=False`), Dagster adds no
materialisations of its own; the checks' outputs are still required and are yielded by
`check_outputs` once every day is done.
"""

from collections.abc import Iterator
from dataclasses import dataclass

import dagster as dg
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)

from rlx_assets.lib.checks import CheckOutcome
from rlx_assets.lib.ingest import PartitionResult
from rlx_assets.lib.scan import format_ns


def partition_metadata(result: PartitionResult) -> dict[str, object]:
    scan = result.scan
    return {
        "dagster/row_count": scan.rows,
        "first_origin_time": format_ns(scan.first_time),
        "last_origin_time": format_ns(scan.last_time),
        "first_origin_time_ns": scan.first_time,
        "last_origin_time_ns": scan.last_time,
        "zone": "ready" if result.passed else "quarantine",
        "path": dg.MetadataValue.path(result.location),
        "version": result.version,
        "sha256": result.sha256,
        "bytes": result.size,
        "vendor_object": result.vendor.location,
        "vendor_bytes": result.raw.size,
        "vendor_sha256": result.raw.sha256,
        "vendor_version": result.vendor.version,
        "raw_reused": result.raw.reused,
        "download_attempts": result.raw.attempts,
        "download_mb_per_s": round(result.raw.megabytes_per_second, 2),
        "seconds": round(result.seconds, 3),
        "rows_per_s": round(scan.rows / result.seconds) if result.seconds > 0 else None,
        "dagster/column_schema": dg.TableSchema(
            columns=[dg.TableColumn(name, dtype) for name, dtype in scan.columns.items()]
        ),
    }


def _this_run_materialization(context: dg.AssetExecutionContext, key: dg.AssetKey,
                              partition: str) -> AssetCheckEvaluationTargetMaterializationData:
    """The materialisation this run just recorded for `partition` (stored synchronously)."""
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=5).records
    record = next(r for r in records if r.run_id == context.run.run_id)
    return AssetCheckEvaluationTargetMaterializationData(
        storage_id=record.storage_id, run_id=record.run_id, timestamp=record.timestamp)


def record_day(context: dg.AssetExecutionContext, key: dg.AssetKey, partition: str,
               metadata: dict[str, object], outcomes: list[CheckOutcome],
               ) -> Iterator[dg.AssetMaterialization | dg.AssetCheckEvaluation]:
    """The day's materialisation, then each check's evaluation pointing at it."""
    yield dg.AssetMaterialization(asset_key=key, partition=partition, metadata=metadata)
    target = _this_run_materialization(context, key, partition)
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
            metadata=outcome.metadata,
            target_materialization_data=target,
        )


def check_outputs(context: dg.AssetExecutionContext) -> Iterator[dg.Output]:
    """The (empty) outputs Dagster requires for each declared check."""
    for check_key in context.assets_def.check_keys:
        yield dg.Output(None, output_name=context.assets_def.get_output_name_for_asset_check_key(
            check_key))


@dataclass(frozen=True)
class EarlierAttempts:
    """What earlier attempts of this step (before a step retry) recorded."""

    days: set[str]  # partitions materialised: not redone
    blocked: dict[str, list[str]]  # partition -> blocking checks that failed there


def earlier_attempts(context: dg.AssetExecutionContext, key: dg.AssetKey) -> EarlierAttempts:
    """Read from this run's event log; empty on the first attempt."""
    if not context.retry_number:
        return EarlierAttempts(set(), {})
    records = context.instance.get_records_for_run(
        context.run.run_id, of_type={dg.DagsterEventType.ASSET_MATERIALIZATION,
                                     dg.DagsterEventType.ASSET_CHECK_EVALUATION}).records
    days: set[str] = set()
    blocked: dict[str, list[str]] = {}
    for record in records:
        event = record.event_log_entry.dagster_event
        if event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
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
