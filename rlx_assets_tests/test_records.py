"""The one reader of what Dagster recorded (`defs/records.py`), against a real instance.

Every use of Dagster internals lives in that module; these tests call each of its functions
on a ready day, a quarantined day and a day never run, so that a Dagster upgrade that moves
or changes an internal fails here, loudly, instead of quietly disabling a feature (as a
"recovered" alert that is never sent would).
"""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import dagster as dg
import pytest

from rlx_assets.defs import records
from rlx_assets.defs.keys import table_key
from rlx_assets.defs.partitions import daily_partitions
from rlx_assets.lib.checks import BLOCKING_CHECKS, POSITIVE_PRICES
from rlx_assets.lib.day_record import DayRecord
from rlx_assets.lib.demo_data import write_day
from rlx_assets.lib.demo_faults import Fault
from rlx_assets_tests.conftest import materialize_day, settings_for
from rlx_assets_tests.stand_ins import BTC

READY, BAD, NEVER = dt.date(2024, 1, 1), dt.date(2024, 1, 2), dt.date(2024, 1, 3)
KEY = table_key(BTC, "trades")


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("records")
    vendor = root / "vendor"
    write_day(vendor, "trades", BTC, READY, rows=3_000)
    write_day(vendor, "trades", BTC, BAD, rows=3_000, fault=Fault.NEGATIVE_PRICE)
    env = {"CRYPTO_LAKE_SOURCE": str(vendor), "RLX_LAKE_ROOT": str(root / "lake")}
    with dg.instance_for_test() as instance:
        assert materialize_day(env, "trades", READY, instance).success
        assert not materialize_day(env, "trades", BAD, instance).success
        yield instance


def test_recorded_days_reads_the_ready_and_the_quarantined_record(instance) -> None:
    days = records.recorded_days(instance, KEY, [READY, BAD, NEVER], BLOCKING_CHECKS)
    assert set(days) == {READY, BAD}
    ready, bad = days[READY], days[BAD]
    assert isinstance(ready, DayRecord) and ready.ready and ready.rows == 3_000
    assert ready.checks == dict.fromkeys(BLOCKING_CHECKS, "SUCCEEDED")
    assert not bad.ready and bad.failed_checks == (POSITIVE_PRICES,)
    assert bad.checks[POSITIVE_PRICES] == "FAILED" and bad.vendor_sha256
    assert DayRecord.from_metadata(READY, ready.to_metadata()) == ready.with_checks({})


def test_statuses_and_check_statuses(instance) -> None:
    partitions = daily_partitions(settings_for({}))
    assert records.partition_statuses(instance, KEY, [READY, BAD, NEVER], partitions) == {
        READY: "MATERIALIZED", BAD: "FAILED"}
    statuses = records.check_statuses(instance, KEY, BLOCKING_CHECKS, [READY, BAD])
    assert statuses[BAD][POSITIVE_PRICES] == "FAILED"
    assert statuses[READY] == dict.fromkeys(BLOCKING_CHECKS, "SUCCEEDED")


def test_latest_evaluation(instance) -> None:
    failed = records.latest_evaluation(instance, KEY, POSITIVE_PRICES, BAD.isoformat())
    assert failed is not None and not failed.passed
    assert failed.metadata["violations"] and failed.run_id
    assert records.latest_evaluation(instance, KEY, POSITIVE_PRICES, NEVER.isoformat()) is None


def test_events_and_run_events(instance) -> None:
    events = list(records.events_after(
        instance, -1, (dg.DagsterEventType.ASSET_CHECK_EVALUATION,), 1_000))
    assert len(events) >= 2 * len(BLOCKING_CHECKS)
    assert [i for i, _ in events] == sorted(i for i, _ in events)
    last_run = events[-1][1].run_id
    steps = records.run_step_events(instance, last_run, {dg.DagsterEventType.STEP_FAILURE})
    assert [e.dagster_event.event_type for e in steps] == [dg.DagsterEventType.STEP_FAILURE]


def test_evaluation_target_points_at_the_run_s_materialisation(instance, tmp_path: Path) -> None:
    record = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=KEY, asset_partitions=[READY.isoformat()]),
        limit=1).records[0]
    target = records.evaluation_target(instance, KEY, READY.isoformat(), record.run_id)
    assert (target.storage_id, target.run_id) == (record.storage_id, record.run_id)


def test_batched_reads_agree_with_the_per_key_ones(instance) -> None:
    days, never_run = [READY, BAD, NEVER], table_key(BTC, "book")
    keys = [KEY, never_run]
    partitions = daily_partitions(settings_for({}))
    per_key = {key: records.Series(
        statuses=records.partition_statuses(instance, key, days, partitions),
        checks=records.check_statuses(instance, key, BLOCKING_CHECKS, days),
        records=records.recorded_days(instance, key, days, BLOCKING_CHECKS)) for key in keys}
    assert set(per_key[KEY].records) == {READY, BAD} and per_key[never_run].records == {}
    assert records.read_series(instance, keys, days, BLOCKING_CHECKS, partitions) == per_key
    without_checks = records.read_series(instance, keys, days, (), partitions)
    assert {key: s.records for key, s in without_checks.items()} == {
        key: records.recorded_days(instance, key, days) for key in keys}
    assert {key: s.statuses for key, s in without_checks.items()} == {
        key: s.statuses for key, s in per_key.items()}


def test_vendor_stamps_are_the_records_vendor_files(instance) -> None:
    """The lean read (two cached values per day) answers what the full records say, with
    the record cache cold (events decoded) and warm."""
    days, keys = [READY, BAD, NEVER], [KEY, table_key(BTC, "book")]
    cache = Path(instance.root_directory) / "rlx_assets" / "records.sqlite3"
    cache.unlink(missing_ok=True)
    cold = records.vendor_stamps(instance, keys, days)
    full = records.read_series(instance, keys, days, (), daily_partitions(settings_for({})))
    assert cold == {key: {day: r.vendor_stamp for day, r in s.records.items()}
                    for key, s in full.items()}
    assert set(cold[KEY]) == {READY, BAD} and cold[KEY][READY].size > 0
    assert records.vendor_stamps(instance, keys, days) == cold


def test_check_infos_agree_with_dagsters_method(instance) -> None:
    """`_check_infos_by_key` reads `asset_check_executions` in one query; it must answer what
    Dagster's `get_asset_check_partition_info` does, re-evaluations included."""
    other = table_key(BTC, "book_delta_v2")
    for partition, outcomes in {"2024-02-01": (True, False), "2024-02-02": (False, True),
                                "2024-02-03": (True,)}.items():
        for passed in outcomes:  # one run each: Dagster keeps one run-less evaluation
            instance.report_dagster_event(run_id=str(uuid.uuid4()), dagster_event=dg.DagsterEvent(
                event_type_value=dg.DagsterEventType.ASSET_CHECK_EVALUATION.value,
                job_name="__ASSET_JOB", event_specific_data=dg.AssetCheckEvaluation(
                    asset_key=other, check_name=POSITIVE_PRICES, passed=passed,
                    partition=partition, severity=dg.AssetCheckSeverity.ERROR)))
    keys, days = [KEY, other], [READY.isoformat(), BAD.isoformat(), NEVER.isoformat(),
                                "2024-02-01", "2024-02-02"]
    ours = records._check_infos_by_key(instance, keys, BLOCKING_CHECKS, days)
    theirs: dict = {}
    for info in instance.event_log_storage.get_asset_check_partition_info(
            [dg.AssetCheckKey(k, c) for k in keys for c in BLOCKING_CHECKS], partition_keys=days):
        theirs.setdefault(info.check_key.asset_key, {}).setdefault(info.partition_key, {})[
            info.check_key.name] = records._CheckInfo(info.latest_execution_status.value,
                                                      info.latest_check_event_storage_id)
    assert ours == theirs
    assert {p: c[POSITIVE_PRICES].status for p, c in ours[other].items()} == {
        "2024-02-01": "FAILED", "2024-02-02": "SUCCEEDED"}  # 2024-02-03 was not asked for
    assert ours[KEY][BAD.isoformat()][POSITIVE_PRICES].status == "FAILED"


def test_the_record_cache_keeps_every_field_of_a_record() -> None:
    from rlx_assets.lib import record_cache

    record = DayRecord(day=READY, zone="ready", rows=1, first_time=2, last_time=3,
                       location="x", version="v", sha256="s", size=4)
    assert set(record.to_metadata()) == set(record_cache._NAMES)


def test_decoded_records_are_cached_beside_the_instance(instance) -> None:
    days, partitions = [READY, BAD, NEVER], daily_partitions(settings_for({}))
    cache = Path(instance.root_directory) / "rlx_assets" / "records.sqlite3"
    cache.unlink(missing_ok=True)
    first = records.read_series(instance, [KEY], days, BLOCKING_CHECKS, partitions)
    assert cache.exists()
    assert records.read_series(instance, [KEY], days, BLOCKING_CHECKS, partitions) == first
    # cached entries are what is read now: change one, and the reader shows the change
    import sqlite3
    with sqlite3.connect(cache) as db:
        db.execute('UPDATE day_records SET "dagster/row_count" = 7 WHERE zone = \'ready\'')
    assert records.read_series(instance, [KEY], days, BLOCKING_CHECKS,
                               partitions)[KEY].records[READY].rows == 7
    # an entry whose timestamp is not the event's is not used; an unreadable cache is ignored
    with sqlite3.connect(cache) as db:
        db.execute("UPDATE day_records SET timestamp = timestamp + 1")
    assert records.read_series(instance, [KEY], days, BLOCKING_CHECKS, partitions) == first
    cache.write_bytes(b"not a database")
    for suffix in ("-wal", "-shm"):
        cache.with_name(cache.name + suffix).unlink(missing_ok=True)
    assert records.read_series(instance, [KEY], days, BLOCKING_CHECKS, partitions) == first


def test_the_stored_status_cache_is_used_only_while_it_is_current(tmp_path: Path) -> None:
    """`read_series` takes Dagster's stored status cache as is only when Dagster's own update
    would not change it; after a new run it is brought up to date by Dagster's function.
    Either way the statuses are Dagster's (`get_status_by_partition`)."""
    vendor, days = tmp_path / "vendor", [READY, BAD, NEVER]
    write_day(vendor, "trades", BTC, READY, rows=3_000)
    write_day(vendor, "trades", BTC, BAD, rows=3_000, fault=Fault.NEGATIVE_PRICE)
    env = {"CRYPTO_LAKE_SOURCE": str(vendor), "RLX_LAKE_ROOT": str(tmp_path / "lake")}
    partitions = daily_partitions(settings_for({}))

    def current() -> bool:
        batch = records._Batch(instance, [KEY])
        planned = records._latest_planned_ids(instance, [KEY]).get(KEY.to_string(), 0)
        return records._current_status_cache(
            batch.records([KEY]).get(KEY), planned,
            partitions.get_serializable_unique_identifier()) is not None

    def statuses() -> dict[dt.date, str]:
        return records.read_series(instance, [KEY], days, (), partitions,
                                   with_records=False)[KEY].statuses

    with dg.instance_for_test() as instance:
        assert materialize_day(env, "trades", READY, instance).success
        assert not current()  # no cache stored yet
        assert statuses() == records.partition_statuses(instance, KEY, days, partitions) == {
            READY: "MATERIALIZED"}
        assert current()  # stored by the read above: the next read takes it as is
        assert statuses() == {READY: "MATERIALIZED"}
        assert not materialize_day(env, "trades", BAD, instance).success
        assert not current()  # a planned run and an observation after it
        assert statuses() == records.partition_statuses(instance, KEY, days, partitions) == {
            READY: "MATERIALIZED", BAD: "FAILED"}
        assert current()
