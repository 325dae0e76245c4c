"""The one reader of what the Dagster instance recorded per partition.

A table run records a day that passed its blocking checks as a materialisation and a
quarantined day as an observation (so that Dagster shows that partition as failed), both
carrying a `DayRecord` as metadata, followed by the day's check evaluations. This module
turns that back into one current `DayRecord` per partition, with the status of each check
evaluated for it. The certificate, `rlx-assets status`, the inventory, the new-days sensor,
the trailing days of the row-count check and the alerts all read through here.

Every use of Dagster internals (`dagster._core...`, `event_log_storage` methods) is in this
module, behind functions named for what they answer; `test_records.py` fails loudly if a
Dagster upgrade moves them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import dagster as dg
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)
from dagster._core.event_api import PartitionKeyFilter
from dagster._core.storage.asset_check_execution_record import AssetCheckPartitionInfo

from rlx_assets.lib.day_record import DayRecord

NOT_EVALUATED = "NOT EVALUATED"
PAGE = 1000


@dataclass(frozen=True)
class _Latest:
    storage_id: int
    metadata: dict[str, object]  # plain values (`MetadataValue.value`)


def _latest_events(fetch, key: dg.AssetKey, partitions: Sequence[str]) -> dict[str, _Latest]:
    """The latest event of each of `partitions` from `fetch` (fetch_materializations or
    fetch_observations), every page read."""
    latest: dict[str, _Latest] = {}
    cursor = None
    while True:
        page = fetch(dg.AssetRecordsFilter(asset_key=key, asset_partitions=list(partitions)),
                     limit=PAGE, cursor=cursor)
        for record in page.records:  # newest first
            event = record.event_log_entry.asset_materialization or \
                record.event_log_entry.asset_observation
            if event is not None and event.partition and event.partition not in latest:
                latest[event.partition] = _Latest(
                    record.storage_id, {k: v.value for k, v in event.metadata.items()})
        if not page.has_more:
            return latest
        cursor = page.cursor


def _check_infos(instance: dg.DagsterInstance, key: dg.AssetKey, checks: Sequence[str],
                 partitions: Sequence[str]) -> dict[str, dict[str, AssetCheckPartitionInfo]]:
    out: dict[str, dict[str, AssetCheckPartitionInfo]] = {}
    if not checks:
        return out
    for info in instance.event_log_storage.get_asset_check_partition_info(
            [dg.AssetCheckKey(key, name) for name in checks], partition_keys=list(partitions)):
        out.setdefault(info.partition_key, {})[info.check_key.name] = info
    return out


def recorded_days(instance: dg.DagsterInstance, key: dg.AssetKey, days: Sequence[dt.date],
                  checks: Sequence[str] = ()) -> dict[dt.date, DayRecord]:
    """The current record of each of `days` that has one: the newer of its latest
    materialisation (ready) and its latest quarantine observation, with the latest status of
    each of `checks` evaluated after it (NOT EVALUATED for one evaluated only before)."""
    wanted = [d.isoformat() for d in days]
    ready = _latest_events(instance.fetch_materializations, key, wanted)
    quarantined = _latest_events(instance.fetch_observations, key, wanted)
    infos = _check_infos(instance, key, checks, wanted)
    out: dict[dt.date, DayRecord] = {}
    for partition in set(ready) | set(quarantined):
        latest = max((e for e in (ready.get(partition), quarantined.get(partition)) if e),
                     key=lambda e: e.storage_id)
        day = dt.date.fromisoformat(partition)
        statuses = {
            name: info.latest_execution_status.value
            if (info.latest_check_event_storage_id or 0) > latest.storage_id else NOT_EVALUATED
            for name, info in infos.get(partition, {}).items()
        }
        out[day] = DayRecord.from_metadata(day, latest.metadata).with_checks(statuses)
    return out


def check_statuses(instance: dg.DagsterInstance, key: dg.AssetKey, checks: Sequence[str],
                   days: Sequence[dt.date]) -> dict[dt.date, dict[str, str]]:
    """{day: {check: the latest evaluation's status}}, whatever it was evaluated for."""
    return {dt.date.fromisoformat(p): {name: info.latest_execution_status.value
                                       for name, info in by_check.items()}
            for p, by_check in _check_infos(instance, key, checks,
                                            [d.isoformat() for d in days]).items()}


def partition_statuses(instance: dg.DagsterInstance, key: dg.AssetKey, days: Sequence[dt.date],
                       partitions_def: dg.PartitionsDefinition) -> dict[dt.date, str]:
    """Dagster's own status of each day (MATERIALIZED, FAILED, IN_PROGRESS), where it has
    one: what the UI's Partitions tab shows."""
    status = instance.get_status_by_partition(key, [d.isoformat() for d in days],
                                              partitions_def) or {}
    return {dt.date.fromisoformat(p): s.value for p, s in status.items() if s is not None}


def evaluation_target(instance: dg.DagsterInstance, key: dg.AssetKey, partition: str,
                      run_id: str) -> AssetCheckEvaluationTargetMaterializationData:
    """What a check evaluation of `partition` points at: the materialisation run `run_id`
    just recorded (stored synchronously, so it is there)."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=5).records
    record = next(r for r in records if r.run_id == run_id)
    return AssetCheckEvaluationTargetMaterializationData(
        storage_id=record.storage_id, run_id=record.run_id, timestamp=record.timestamp)


@dataclass(frozen=True)
class Evaluation:
    """One check evaluation as recorded: what `rlx-assets accept` binds to."""

    passed: bool
    description: str
    metadata: dict[str, object]  # plain values
    run_id: str


def latest_evaluation(instance: dg.DagsterInstance, key: dg.AssetKey, check: str,
                      partition: str | None) -> Evaluation | None:
    """The latest evaluation of `check` for `partition` (None: an unpartitioned check), or
    None if it was never evaluated."""
    history = instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(key, check), limit=5,
        partition_filter=PartitionKeyFilter(key=partition) if partition else None)
    for record in history:  # newest first; a planned execution has no evaluation yet
        evaluation = record.event.asset_check_evaluation if record.event else None
        if evaluation is not None:
            return Evaluation(evaluation.passed, evaluation.description or "",
                              {k: v.value for k, v in evaluation.metadata.items()},
                              record.run_id)
    return None


def events_after(instance: dg.DagsterInstance, after: int,
                 event_types: Sequence[dg.DagsterEventType],
                 page: int) -> Iterator[tuple[int, dg.EventLogEntry]]:
    """Events of `event_types` after storage id `after`, in storage order, one page of the
    union. `get_logs_for_all_runs_by_log_id` reads the instance-wide index (as Dagster's own
    run-retry daemon does), so ids are global on run-sharded SQLite storage too, where
    `get_event_records(EventRecordsFilter(after_cursor=...))` refuses a plain cursor."""
    merged: dict[int, dg.EventLogEntry] = {}
    for event_type in event_types:
        merged.update(instance.event_log_storage.get_logs_for_all_runs_by_log_id(
            after_cursor=after, dagster_event_type=event_type, limit=page))
    yield from sorted(merged.items())[:page]


def run_step_events(instance: dg.DagsterInstance, run_id: str,
                    event_types: set[dg.DagsterEventType]) -> list[dg.EventLogEntry]:
    """The run's events of `event_types`, in order."""
    return [r.event_log_entry for r in instance.event_log_storage.get_records_for_run(
        run_id, of_type=event_types).records]
