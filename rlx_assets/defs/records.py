"""The one reader of what the Dagster instance recorded per partition.

A table run records a day that passed its blocking checks as a materialisation and a
quarantined day as an observation (so that Dagster shows that partition as failed), both
carrying a `DayRecord` as metadata, followed by the day's check evaluations. This module
turns that back into one current `DayRecord` per partition, with the status of each check
evaluated for it. The certificate, `rlx-assets status`, the inventory, the new-days sensor,
the trailing days of the row-count check and the alerts all read through here.

Every use of Dagster internals (`dagster._core...`, `event_log_storage` methods) is in this
module, behind functions named for what they answer; `test_records.py` fails loudly if a
Dagster upgrade moves them. Three answers are read straight from Dagster's own tables
(with SQLAlchemy, as its SQL storages do), because its methods ask once per key and decode
what is not needed: the latest check execution per partition (`asset_check_executions`),
the latest event id per partition and the latest planned run per key (`event_logs`, the
last to take Dagster's stored partition-status cache as is while it is current);
`test_records.py` holds them to Dagster's own methods. Decoded day records are kept in the
record cache (`lib/record_cache.py`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import dagster as dg
import sqlalchemy as sa
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)
from dagster._core.event_api import EventRecordsFilter, PartitionKeyFilter
from dagster._core.loader import LoadingContext
from dagster._core.storage.event_log.base import AssetRecord
from dagster._core.storage.event_log.schema import (
    AssetCheckExecutionsTable,
    SqlEventLogStorageTable,
)
from dagster._core.storage.partition_status_cache import (
    AssetStatusCacheValue,
    get_and_update_asset_status_cache_value,
)

from rlx_assets.lib.day_record import DayRecord, VendorStamp
from rlx_assets.lib.gc_pause import paused_gc
from rlx_assets.lib.record_cache import RecordCache

NOT_EVALUATED = "NOT EVALUATED"
PAGE = 1000
IDS_PER_QUERY = 2000  # storage ids per `IN (...)`: under SQLite's and PostgreSQL's limits


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


class _CheckInfo(NamedTuple):  # a tuple: built once per check execution (130,000)
    status: str  # AssetCheckExecutionRecordStatus value: SUCCEEDED, FAILED, PLANNED...
    storage_id: int  # of the evaluation (or planned) event


Infos = dict[str, dict[str, _CheckInfo]]  # partition -> check -> latest execution


def _check_infos(instance: dg.DagsterInstance, key: dg.AssetKey, checks: Sequence[str],
                 partitions: Sequence[str]) -> Infos:
    return _check_infos_by_key(instance, [key], checks, partitions).get(key, {})


def _check_infos_by_key(instance: dg.DagsterInstance, keys: Sequence[dg.AssetKey],
                        checks: Sequence[str],
                        partitions: Sequence[str]) -> dict[dg.AssetKey, Infos]:
    """The latest execution of each (key, check, partition): what
    `get_asset_check_partition_info` answers, in one query over every key and check.

    Dagster's method runs one query per check key, each joined with the asset's latest
    materialisation per partition (which these readers do not use): 180 queries and about
    2.5 s for 20 instruments x 730 days. This reads the same table
    (`asset_check_executions`: the newest execution per partition that has an event) in one
    pass in id order; `test_records.py` holds the two to the same answer."""
    if not checks or not keys:
        return {}
    storage = instance.event_log_storage
    table = AssetCheckExecutionsTable
    by_name = {key.to_string(): key for key in keys}
    query = (sa.select(table.c.asset_key, table.c.check_name, table.c.partition,
                       table.c.execution_status, table.c.evaluation_event_storage_id)
             .where(table.c.asset_key.in_(list(by_name)), table.c.check_name.in_(list(checks)),
                    table.c.evaluation_event_storage_id.isnot(None))
             .order_by(table.c.id))
    wanted = set(partitions)
    by_string: dict[str, Infos] = {name: {} for name in by_name}
    # in id order, so the newest execution of each (key, check, partition) stays
    for asset_key, check, partition, status, storage_id in _driver_rows(storage, query):
        if partition in wanted:
            infos = by_string[asset_key]
            if partition in infos:
                infos[partition][check] = _CheckInfo(status, storage_id)
            else:
                infos[partition] = {check: _CheckInfo(status, storage_id)}
    return {by_name[name]: infos for name, infos in by_string.items() if infos}


def _driver_rows(storage, query: sa.Select) -> list[tuple]:
    """The rows of `query` as the database driver returns them, for the two reads of many
    rows (130,000 check executions at 20 instruments x 730 days). SQLAlchemy's own result
    rows cost more than the query: 0.52-0.67 s against 0.35 s for the same rows. The values
    are rendered into the statement (asset keys, check names, partitions and ids: all ours)
    and come back untyped: a time is text on SQLite."""
    with storage.index_connection() as connection:
        statement = str(query.compile(dialect=connection.dialect,
                                      compile_kwargs={"literal_binds": True}))
        cursor = connection.connection.cursor()
        try:
            cursor.execute(statement)
            return cursor.fetchall()
        finally:
            cursor.close()


def _day_record(partition: str, latest: _Latest, infos: Infos) -> tuple[dt.date, DayRecord]:
    """The partition's record, with the latest status of each check evaluated after it
    (NOT EVALUATED for one evaluated only before)."""
    day = dt.date.fromisoformat(partition)
    statuses = {
        name: info.status if info.storage_id > latest.storage_id else NOT_EVALUATED
        for name, info in infos.get(partition, {}).items()
    }
    return day, DayRecord.from_metadata(day, latest.metadata, statuses)


def _statuses_of(infos: Infos) -> dict[dt.date, dict[str, str]]:
    return {dt.date.fromisoformat(p): {name: info.status for name, info in by_check.items()}
            for p, by_check in infos.items()}


@paused_gc()
def recorded_days(instance: dg.DagsterInstance, key: dg.AssetKey, days: Sequence[dt.date],
                  checks: Sequence[str] = ()) -> dict[dt.date, DayRecord]:
    """The current record of each of `days` that has one: the newer of its latest
    materialisation (ready) and its latest quarantine observation, with the latest status of
    each of `checks` evaluated after it (NOT EVALUATED for one evaluated only before)."""
    wanted = [d.isoformat() for d in days]
    ready = _latest_events(instance.fetch_materializations, key, wanted)
    quarantined = _latest_events(instance.fetch_observations, key, wanted)
    infos = _check_infos(instance, key, checks, wanted)
    return dict(_day_record(partition, max(
        (e for e in (ready.get(partition), quarantined.get(partition)) if e),
        key=lambda e: e.storage_id), infos) for partition in set(ready) | set(quarantined))


def check_statuses(instance: dg.DagsterInstance, key: dg.AssetKey, checks: Sequence[str],
                   days: Sequence[dt.date]) -> dict[dt.date, dict[str, str]]:
    """{day: {check: the latest evaluation's status}}, whatever it was evaluated for."""
    return _statuses_of(_check_infos(instance, key, checks, [d.isoformat() for d in days]))


def partition_statuses(instance: dg.DagsterInstance, key: dg.AssetKey, days: Sequence[dt.date],
                       partitions_def: dg.PartitionsDefinition) -> dict[dt.date, str]:
    """Dagster's own status of each day (MATERIALIZED, FAILED, IN_PROGRESS), where it has
    one: what the UI's Partitions tab shows."""
    status = instance.get_status_by_partition(key, [d.isoformat() for d in days],
                                              partitions_def) or {}
    return {dt.date.fromisoformat(p): s.value for p, s in status.items() if s is not None}


# --- the same answers for many asset keys at once -------------------------------------------
# `rlx-assets status` and the inventory read every (instrument, table) series: asked one key
# at a time, that was ~25 queries (and as many SQLite connections) per series. These read all
# the keys with a few queries in all and must agree with the per-key functions above
# (`test_records.py` holds them to it).


class _Batch(LoadingContext):
    """Dagster's batching context: the asset records of all the keys are read in one query
    (as the GraphQL layer does) when the status cache asks for the first of them."""

    def __init__(self, instance: dg.DagsterInstance, keys: Sequence[dg.AssetKey]):
        self._instance, self._loaders = instance, {}
        AssetRecord.prepare(self, keys)

    @property
    def instance(self) -> dg.DagsterInstance:
        return self._instance

    @property
    def loaders(self) -> dict:
        return self._loaders

    def records(self, keys: Sequence[dg.AssetKey]) -> dict[dg.AssetKey, AssetRecord]:
        found = AssetRecord.blocking_get_many(self, keys)
        return {key: r for key, r in zip(keys, found, strict=True) if r}


def _record_cache(instance: dg.DagsterInstance) -> RecordCache:
    root = getattr(instance, "root_directory", None)
    return RecordCache(Path(root) / "rlx_assets" / "records.sqlite3" if root else None)


def _plain(partition: str, metadata: dict[str, object]) -> dict[str, object]:
    """What a `DayRecord` is made of, as plain JSON values (the record cache's entry)."""
    return DayRecord.from_metadata(dt.date.fromisoformat(partition), metadata).to_metadata()


_ASSET_EVENTS = (dg.DagsterEventType.ASSET_MATERIALIZATION, dg.DagsterEventType.ASSET_OBSERVATION)


def _latest_event_ids(storage, keys: Sequence[dg.AssetKey], partitions: Sequence[str]
                      ) -> Iterator[tuple[dg.AssetKey, str, int, str, float]]:
    """(key, partition, storage id, event type (its value), timestamp) of the latest
    materialisation and the latest observation of each partition of `keys`: one grouped
    query on Dagster's `idx_events_by_asset_partition` index, nothing decoded. (Dagster's
    `get_asset_event_summary_records` returns every event ever stored, one object each:
    0.7 s at 20 instruments x 730 days, growing with every re-run.)"""
    table, by_name, wanted = SqlEventLogStorageTable, {k.to_string(): k for k in keys}, \
        set(partitions)
    latest = (sa.select(sa.func.max(table.c.id))
              .where(table.c.asset_key.in_(list(by_name)), table.c.partition.isnot(None),
                     table.c.dagster_event_type.in_([t.value for t in _ASSET_EVENTS]))
              .group_by(table.c.asset_key, table.c.dagster_event_type, table.c.partition))
    query = sa.select(table.c.asset_key, table.c.partition, table.c.id,
                      table.c.dagster_event_type, table.c.timestamp).where(table.c.id.in_(latest))
    for asset_key, partition, storage_id, event_type, stamp in _driver_rows(storage, query):
        if partition in wanted:
            if not isinstance(stamp, dt.datetime):  # SQLite's text
                stamp = dt.datetime.fromisoformat(stamp)
            yield (by_name[asset_key], partition, storage_id, event_type,
                   stamp.replace(tzinfo=dt.UTC).timestamp())  # stored as naive UTC


def _latest_by_key(batch: _Batch, keys: Sequence[dg.AssetKey], partitions: Sequence[str],
                   names: Sequence[str] | None = None) -> dict[dg.AssetKey, dict[str, _Latest]]:
    """The newer of the latest materialisation and the latest observation of each (key,
    partition): their storage ids from one index-only query, then their records from the
    record cache (every value, or only `names`), and for the rest their payloads by storage
    id (decoded once, then cached)."""
    storage = batch.instance.event_log_storage
    records = batch.records(keys)
    wiped = {key: r.asset_entry.asset_details.last_wipe_timestamp or 0.0
             for key, r in records.items() if r.asset_entry.asset_details}
    newest: dict[tuple[dg.AssetKey, str], tuple[int, str, float]] = {}
    for key, partition, storage_id, event_type, stamp in _latest_event_ids(storage, keys,
                                                                           partitions):
        if stamp > wiped.get(key, 0.0) and storage_id > newest.get((key, partition), (-1,))[0]:
            newest[(key, partition)] = (storage_id, event_type, stamp)
    out: dict[dg.AssetKey, dict[str, _Latest]] = {key: {} for key in keys}
    cache = _record_cache(batch.instance)
    stamps = {i: t for i, _, t in newest.values()}  # as the index query reads them
    cached = cache.get(stamps, names)
    missing: dict[str, list[int]] = {}  # by event type
    for (key, partition), (storage_id, event_type, _) in newest.items():
        if storage_id in cached:
            out[key][partition] = _Latest(storage_id, cached[storage_id])
        else:
            missing.setdefault(event_type, []).append(storage_id)
    decoded = []
    for event_type, ids in missing.items():
        ids.sort()
        for start in range(0, len(ids), IDS_PER_QUERY):
            for record in storage.get_event_records(EventRecordsFilter(
                    event_type=dg.DagsterEventType(event_type),
                    storage_ids=ids[start:start + IDS_PER_QUERY])):
                event = record.asset_materialization or record.asset_observation
                if event is not None and record.asset_key is not None and event.partition:
                    plain = _plain(event.partition,
                                   {k: v.value for k, v in event.metadata.items()})
                    out[record.asset_key][event.partition] = _Latest(record.storage_id, plain)
                    decoded.append((record.storage_id, stamps[record.storage_id], plain))
    cache.put(decoded)
    return out


def _statuses_by_key(batch: _Batch, keys: Sequence[dg.AssetKey], partitions: Sequence[str],
                     partitions_def: dg.PartitionsDefinition) -> dict[dg.AssetKey, dict[str, str]]:
    """`instance.get_status_by_partition` for each key, its asset records read in one query:
    Dagster's own status cache as stored where it is current, else brought up to date by
    Dagster's own function."""
    out: dict[dg.AssetKey, dict[str, str]] = {}
    records, planned = batch.records(keys), _latest_planned_ids(batch.instance, keys)
    partitions_id = partitions_def.get_serializable_unique_identifier()
    for key in keys:
        cached = _current_status_cache(records.get(key), planned.get(key.to_string(), 0),
                                       partitions_id)
        if cached is None:
            cached = get_and_update_asset_status_cache_value(
                batch.instance, key, partitions_def, loading_context=batch)
        out[key] = {}
        if not isinstance(cached, AssetStatusCacheValue):
            continue
        # the precedence of `AssetMethods.get_status_by_partition`
        for status, subset in (
                ("MATERIALIZED", cached.deserialize_materialized_partition_subsets(partitions_def)),
                ("FAILED", cached.deserialize_failed_partition_subsets(partitions_def)),
                ("IN_PROGRESS", cached.deserialize_in_progress_partition_subsets(partitions_def))):
            # the subset's keys once, not a time-window lookup per partition asked for
            keys_in = set(subset.get_partition_keys())
            out[key].update({p: status for p in partitions if p in keys_in})
    return out


def _latest_planned_ids(instance: dg.DagsterInstance, keys: Sequence[dg.AssetKey]
                        ) -> dict[str, int]:
    """The storage id of each key's latest planned materialisation, in one grouped query
    (Dagster's status cache asks once per key on its OSS storages: 60 queries, 0.3 s)."""
    table = SqlEventLogStorageTable
    query = (sa.select(table.c.asset_key, sa.func.max(table.c.id))
             .where(table.c.asset_key.in_([k.to_string() for k in keys]),
                    table.c.dagster_event_type ==
                    dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED.value)
             .group_by(table.c.asset_key))
    with instance.event_log_storage.index_connection() as connection:
        return {key: storage_id for key, storage_id in connection.execute(query)}


def _current_status_cache(record: AssetRecord | None, planned_id: int,
                          partitions_id: str) -> AssetStatusCacheValue | None:
    """The stored status cache if Dagster's update would leave it as it is (no
    materialisation or planned run after it, no run it saw in progress, the same
    partitions), else None."""
    entry = record.asset_entry if record else None
    value = entry.cached_status if entry else None
    if (value is None or value.earliest_in_progress_materialization_event_id is not None
            or value.partitions_def_id != partitions_id
            or max(entry.last_materialization_storage_id or 0, planned_id)
            > value.latest_storage_id):
        return None
    return value


_STAMP_NAMES = ("vendor_version", "vendor_bytes")  # as `DayRecord.to_metadata()` names them


@paused_gc()
def vendor_stamps(instance: dg.DagsterInstance, keys: Sequence[dg.AssetKey],
                  days: Sequence[dt.date]) -> dict[dg.AssetKey, dict[dt.date, VendorStamp]]:
    """Which vendor file each day's current record came from (`DayRecord.vendor_stamp` of
    `read_series`'s records), for every key at once: all that the inventory and the
    new-days sensor compare with the vendor's listing, read without building the records
    (two values of each from the record cache: 0.1 s against 0.8 s at 43,800 days)."""
    wanted = [d.isoformat() for d in days]
    latest = _latest_by_key(_Batch(instance, keys), keys, wanted, _STAMP_NAMES)
    return {key: {dt.date.fromisoformat(p): VendorStamp(e.metadata["vendor_version"] or None,
                                                        e.metadata["vendor_bytes"])
                  for p, e in latest[key].items()} for key in keys}


@dataclass(frozen=True)
class Series:
    """What the instance holds for one asset over the days asked for."""

    statuses: dict[dt.date, str]  # `partition_statuses`
    checks: dict[dt.date, dict[str, str]]  # `check_statuses`
    records: dict[dt.date, DayRecord]  # `recorded_days` (with the same checks)


@paused_gc()
def read_series(instance: dg.DagsterInstance, keys: Sequence[dg.AssetKey],
                days: Sequence[dt.date], checks: Sequence[str],
                partitions_def: dg.PartitionsDefinition,
                with_records: bool = True) -> dict[dg.AssetKey, Series]:
    """The three answers for every key at once, the asset records and check infos read once
    for all: what `rlx-assets status` shows (without `with_records`, the records are left
    empty and no event is read; `vendor_stamps` reads what the records' vendor files were)."""
    wanted = [d.isoformat() for d in days]
    batch = _Batch(instance, keys)
    statuses = _statuses_by_key(batch, keys, wanted, partitions_def)
    latest = _latest_by_key(batch, keys, wanted) if with_records else {}
    infos = _check_infos_by_key(instance, keys, checks, wanted)
    return {key: Series(
        statuses={dt.date.fromisoformat(p): s for p, s in statuses[key].items()},
        checks=_statuses_of(infos.get(key, {})),
        records=dict(_day_record(p, e, infos.get(key, {}))
                     for p, e in latest.get(key, {}).items()),
    ) for key in keys}


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
