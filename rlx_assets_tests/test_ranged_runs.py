"""Ranged backfill runs: one run covers several days, and each day is still recorded on its own.

A table run over a range (`BackfillPolicy.multi_run`) must leave exactly what one run per day
would: one materialisation per day with that day's metadata, per-partition check results
pointing at it, the bad days quarantined or named in one failure, the rest recorded.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import polars as pl
import pyarrow.parquet as pq
import pytest
from dagster._core.definitions.backfill_policy import BackfillPolicyType
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from rlx_assets.definitions import build_definitions
from rlx_assets.defs.keys import table_key
from rlx_assets.lib.checks import BLOCKING_CHECKS, TEMPORAL_CONTINUITY, WARNING_CHECKS
from rlx_assets.lib.demo_data import vendor_relpath, write_day
from rlx_assets.lib.demo_faults import Fault
from rlx_assets.lib.hashing import sha256_file
from rlx_assets.lib.lake import QUARANTINE, READY, Lake
from rlx_assets.lib.normalise import UnreadableVendorFile
from rlx_assets.lib.tables import TABLES
from rlx_assets.settings import ConfigError, Settings
from rlx_assets_tests.conftest import materialize_day, settings_for
from rlx_assets_tests.stand_ins import BTC

TABLE = "trades"
KEY = table_key(BTC, TABLE)
DAYS = [dt.date(2024, 1, d) for d in range(1, 5)]
PARTITIONS = [d.isoformat() for d in DAYS]
CHECKS = (*BLOCKING_CHECKS, *WARNING_CHECKS[TABLE])
SUCCEEDED = AssetCheckExecutionRecordStatus.SUCCEEDED
FAILED = AssetCheckExecutionRecordStatus.FAILED
GAP = "gap_from_previous_day_seconds"
# Metadata that describes the day's data (not how long the run took).
DATA_METADATA = ("dagster/row_count", "sha256", "bytes", "zone", "first_origin_time",
                 "last_origin_time", "first_origin_time_ns", "last_origin_time_ns",
                 "vendor_sha256", "vendor_bytes")


def rows_on(day: dt.date) -> int:
    """A different row count per day, so that one day's metadata cannot pass for another's."""
    return 2_000 + 150 * DAYS.index(day)


@dataclass
class Setup:
    """A local vendor directory, our lake, the definitions over them and one instance."""

    vendor: Path
    lake: Path
    instance: dg.DagsterInstance

    @property
    def env(self) -> dict[str, str]:
        return {"CRYPTO_LAKE_SOURCE": str(self.vendor), "RLX_LAKE_ROOT": str(self.lake)}

    def publish(self, day: dt.date, fault: Fault | None = None, rows: int | None = None) -> None:
        write_day(self.vendor, TABLE, BTC, day, rows or rows_on(day), fault=fault)

    def run_range(self, first: dt.date, last: dt.date) -> dg.ExecuteInProcessResult:
        defs = build_definitions(settings_for(self.env))
        return dg.materialize(
            [defs.get_assets_def(KEY)], resources=defs.resources, instance=self.instance,
            tags={"dagster/asset_partition_range_start": first.isoformat(),
                  "dagster/asset_partition_range_end": last.isoformat()},
            raise_on_error=False,
        )

    def materializations(self, once: bool = True) -> dict[str, tuple[int, dict[str, object]]]:
        """{partition: (storage id, plain metadata)} of the latest materialisation of each
        partition; with `once`, fails if a partition was materialised more than once."""
        records = self.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=KEY), limit=100).records  # newest first
        partitions = [r.asset_materialization.partition for r in records]
        if once:
            assert len(partitions) == len(set(partitions)), partitions
        latest: dict[str, tuple[int, dict[str, object]]] = {}
        for r in records:
            latest.setdefault(r.asset_materialization.partition, (r.storage_id, {
                k: v.value for k, v in r.asset_materialization.metadata.items()}))
        return latest

    def records(self) -> dict[str, tuple[int, dict[str, object], str]]:
        """{partition: (storage id, plain metadata, kind)} of each partition's latest record:
        a materialisation (ready) or an observation (quarantined), one per partition."""
        latest: dict[str, tuple[int, dict[str, object], str]] = {}
        for kind, fetch in (("materialization", self.instance.fetch_materializations),
                            ("observation", self.instance.fetch_observations)):
            records = fetch(dg.AssetRecordsFilter(asset_key=KEY), limit=100).records
            partitions = [r.partition_key for r in records]
            assert len(partitions) == len(set(partitions)), (kind, partitions)
            for r in records:
                event = r.asset_materialization if kind == "materialization" \
                    else r.event_log_entry.asset_observation
                assert r.partition_key not in latest, f"{r.partition_key}: recorded twice"
                latest[r.partition_key] = (r.storage_id, {
                    k: v.value for k, v in event.metadata.items()}, kind)
        return latest

    def statuses(self) -> dict[str, str]:
        """What the UI's Partitions tab shows per day."""
        from rlx_assets.defs.partitions import daily_partitions

        status = self.instance.get_status_by_partition(
            KEY, PARTITIONS, daily_partitions(settings_for(self.env))) or {}
        return {p: s.value for p, s in status.items() if s is not None}

    def check_infos(self) -> dict[tuple[str | None, str], object]:
        """{(partition, check name): AssetCheckPartitionInfo} for every check of the table."""
        infos = self.instance.event_log_storage.get_asset_check_partition_info(
            [dg.AssetCheckKey(KEY, name) for name in CHECKS])
        return {(i.partition_key, i.check_key.name): i for i in infos}

    def zone_file(self, zone: str, day: dt.date) -> Path:
        return Lake.at(str(self.lake)).zone_file(zone, TABLE, BTC, day)


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    return Setup(tmp_path / "vendor", tmp_path / "lake", dg.DagsterInstance.ephemeral())


def _evaluations(result: dg.ExecuteInProcessResult,
                 check: str) -> dict[str, dict[str, object]]:
    """{partition: plain metadata} of `check`'s evaluations in the run."""
    return {e.partition: {k: v.value for k, v in e.metadata.items()}
            for e in result.get_asset_check_evaluations() if e.check_name == check}


def _step_failures(result: dg.ExecuteInProcessResult) -> list[dg.DagsterEvent]:
    return result.get_step_failure_events()


def test_a_clean_range_records_each_day_with_its_own_metadata_and_checks(setup: Setup) -> None:
    for day in DAYS:
        setup.publish(day)
    result = setup.run_range(DAYS[0], DAYS[-1])
    assert result.success, [e.message for e in _step_failures(result)]

    recorded = setup.materializations()
    assert sorted(recorded) == PARTITIONS
    for day in DAYS:
        _, meta = recorded[day.isoformat()]
        ready = setup.zone_file(READY, day)
        assert meta["zone"] == "ready"
        assert meta["path"] == str(ready)
        assert meta["sha256"] == sha256_file(ready)
        frame = pl.read_parquet(ready)
        times = frame["origin_time"].cast(pl.Int64)
        assert meta["dagster/row_count"] == frame.height == rows_on(day)
        assert (meta["first_origin_time_ns"], meta["last_origin_time_ns"]) == \
            (times[0], times[-1])
        # The file opens with the previous day's last second, as the vendor's writer does.
        assert meta["first_origin_time"].startswith(
            f"{day - dt.timedelta(days=1)}T23:59:59")
        assert meta["last_origin_time"].startswith(day.isoformat())
        assert not setup.zone_file(QUARANTINE, day).exists()

    infos = setup.check_infos()
    assert {partition for partition, _ in infos} == set(PARTITIONS), "no unpartitioned check"
    for day in PARTITIONS:
        for name in CHECKS:
            info = infos[(day, name)]
            assert info.latest_execution_status == SUCCEEDED, (day, name)
            assert info.latest_target_materialization_storage_id == recorded[day][0], (day, name)


def test_a_blocking_fault_quarantines_its_day_and_fails_the_run_at_the_end(setup: Setup) -> None:
    bad = DAYS[1]
    for day in DAYS:
        setup.publish(day, Fault.NEGATIVE_PRICE if day == bad else None)
    result = setup.run_range(DAYS[0], DAYS[-1])

    assert not result.success
    failures = _step_failures(result)
    assert len(failures) == 1
    assert "positive_prices" in failures[0].step_failure_data.error.message
    # The failure came after every day was done: all four are recorded, the bad one as an
    # observation (never a materialisation), so that the Partitions tab shows it failed.
    recorded = setup.records()
    assert sorted(recorded) == PARTITIONS
    assert setup.statuses() == {p: "FAILED" if p == bad.isoformat() else "MATERIALIZED"
                                for p in PARTITIONS}
    infos = setup.check_infos()
    for day in DAYS:
        key = day.isoformat()
        storage_id, meta, kind = recorded[key]
        status = infos[(key, "positive_prices")].latest_execution_status
        if day == bad:
            assert kind == "observation" and meta["zone"] == "quarantine"
            assert meta["failed_checks"] == ["positive_prices"]
            assert status == FAILED
            assert not setup.zone_file(READY, day).exists()
            assert meta["sha256"] == sha256_file(setup.zone_file(QUARANTINE, day))
            assert all(infos[(key, n)].latest_check_event_storage_id > storage_id
                       for n in CHECKS)
        else:
            assert kind == "materialization" and meta["zone"] == "ready"
            assert setup.zone_file(READY, day).exists()
            assert not setup.zone_file(QUARANTINE, day).exists()
            assert all(infos[(key, n)].latest_execution_status == SUCCEEDED for n in CHECKS)
            assert all(infos[(key, n)].latest_target_materialization_storage_id == storage_id
                       for n in CHECKS)


def test_a_missing_vendor_day_fails_once_naming_it_and_the_others_are_recorded(
        setup: Setup) -> None:
    missing = DAYS[2]
    for day in DAYS:
        if day != missing:
            setup.publish(day)
    result = setup.run_range(DAYS[0], DAYS[-1])

    assert not result.success
    failures = _step_failures(result)
    assert len(failures) == 1, "a missing file is not retried"
    user = failures[0].step_failure_data.user_failure_data
    assert user.description.startswith("1 of 4 days failed (the other days are recorded")
    assert f"- {missing}: " in user.description
    assert all(f"- {day}:" not in user.description for day in DAYS if day != missing)
    assert user.metadata["failed_days"].value == [missing.isoformat()]

    recorded = setup.materializations()
    assert sorted(recorded) == [d.isoformat() for d in DAYS if d != missing]
    infos = setup.check_infos()
    for day in recorded:
        assert all(infos[(day, n)].latest_execution_status == SUCCEEDED for n in CHECKS)
        assert setup.zone_file(READY, dt.date.fromisoformat(day)).exists()
    for name in CHECKS:  # planned, never evaluated: nothing points at a materialisation
        info = infos[(missing.isoformat(), name)]
        assert info.latest_execution_status not in (SUCCEEDED, FAILED)
        assert info.latest_target_materialization_storage_id is None
    assert not setup.zone_file(READY, missing).exists()
    assert not setup.zone_file(QUARANTINE, missing).exists()


def test_one_run_per_day_gives_the_same_results_as_one_ranged_run(tmp_path: Path) -> None:
    ranged = Setup(tmp_path / "vendor", tmp_path / "lake_ranged",
                   dg.DagsterInstance.ephemeral())
    daily = Setup(ranged.vendor, tmp_path / "lake_daily", dg.DagsterInstance.ephemeral())
    for day in DAYS:
        ranged.publish(day, Fault.NEGATIVE_PRICE if day == DAYS[1] else None)

    ranged_result = ranged.run_range(DAYS[0], DAYS[-1])
    daily_results = [materialize_day(daily.env, TABLE, day, instance=daily.instance)
                     for day in DAYS]
    assert [r.success for r in daily_results] == [True, False, True, True]
    assert not ranged_result.success

    by_range, by_day = ranged.records(), daily.records()
    assert sorted(by_range) == sorted(by_day) == PARTITIONS
    for day in PARTITIONS:
        assert {k: by_range[day][1][k] for k in DATA_METADATA} == \
            {k: by_day[day][1][k] for k in DATA_METADATA}, day
    assert [by_range[d][1]["zone"] for d in PARTITIONS] == \
        ["ready", "quarantine", "ready", "ready"]
    assert ranged.statuses() == daily.statuses()

    def outcomes(setup: Setup) -> dict[tuple[str | None, str], object]:
        return {k: i.latest_execution_status for k, i in setup.check_infos().items()}

    assert outcomes(ranged) == outcomes(daily)
    daily_gaps = {}
    for result in daily_results:
        daily_gaps.update(_evaluations(result, TEMPORAL_CONTINUITY))
    assert _evaluations(ranged_result, TEMPORAL_CONTINUITY) == daily_gaps


def test_the_gap_from_the_day_before_comes_from_the_day_just_recorded_in_the_run(
        setup: Setup) -> None:
    for day in DAYS[:3]:
        setup.publish(day)
    first = setup.run_range(DAYS[0], DAYS[2])
    assert first.success
    recorded = setup.materializations()
    continuity = _evaluations(first, TEMPORAL_CONTINUITY)
    assert GAP not in continuity[PARTITIONS[0]], "nothing was recorded before the first day"
    for before, day in zip(PARTITIONS[:2], PARTITIONS[1:3], strict=True):
        expected = (recorded[day][1]["first_origin_time_ns"]
                    - recorded[before][1]["last_origin_time_ns"]) / 1e9
        assert continuity[day][GAP] == pytest.approx(expected)
        assert 0 < continuity[day][GAP] < 15 * 60

    # Day 1 republished without its last rows: a new range over days 1-2 measures day 2's gap
    # from the day 1 it has just recorded, not from the one an earlier run left.
    old_last = recorded[PARTITIONS[0]][1]["last_origin_time_ns"]
    vendor_file = setup.vendor / vendor_relpath(TABLE, BTC, DAYS[0])
    table = pq.read_table(vendor_file)
    pq.write_table(table.slice(0, table.num_rows - 3), vendor_file, compression="snappy")
    second = setup.run_range(DAYS[0], DAYS[1])
    assert second.success
    new_last = setup.materializations(once=False)[PARTITIONS[0]][1]["last_origin_time_ns"]
    assert new_last < old_last
    gap = _evaluations(second, TEMPORAL_CONTINUITY)[PARTITIONS[1]][GAP]
    assert gap == pytest.approx((recorded[PARTITIONS[1]][1]["first_origin_time_ns"]
                                 - new_last) / 1e9)


def _flaky_day(monkeypatch: pytest.MonkeyPatch, setup: Setup, day: dt.date) -> None:
    """`day`'s vendor file is truncated until its first read fails, then republished whole
    (a transient fault: the retry downloads a good copy)."""
    import rlx_assets.defs.assets as assets_module

    real = assets_module.ingest_partition
    setup.publish(day, Fault.TRUNCATED)

    def ingest(*args, **kwargs):
        try:
            return real(*args, **kwargs)
        except UnreadableVendorFile:
            setup.publish(day)
            raise

    monkeypatch.setattr(assets_module, "ingest_partition", ingest)


def test_a_step_retry_redoes_only_the_days_not_yet_recorded(
        setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    for day in (DAYS[0], DAYS[1], DAYS[3]):
        setup.publish(day)
    _flaky_day(monkeypatch, setup, DAYS[2])
    result = setup.run_range(DAYS[0], DAYS[-1])

    assert result.success
    kinds = [e.event_type for e in result.all_events]
    assert kinds.count(dg.DagsterEventType.STEP_RESTARTED) == 1
    retry = result.all_events[kinds.index(dg.DagsterEventType.STEP_RESTARTED):]
    assert [e.partition for e in retry if e.is_step_materialization] == [PARTITIONS[2]]
    recorded = setup.materializations()  # asserts one materialisation per day
    assert sorted(recorded) == PARTITIONS
    assert len(result.get_asset_materialization_events()) == len(DAYS)
    infos = setup.check_infos()
    for day in PARTITIONS:
        assert all(infos[(day, n)].latest_execution_status == SUCCEEDED for n in CHECKS)
        assert all(infos[(day, n)].latest_target_materialization_storage_id == recorded[day][0]
                   for n in CHECKS)


def test_a_blocking_failure_still_fails_the_run_after_a_step_retry(
        setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    """A one-day run of a quarantined day fails (`DagsterAssetCheckFailedError`); a ranged
    run that also needed a step retry for another day must fail as well."""
    bad = DAYS[1]
    for day in (DAYS[0], bad, DAYS[3]):
        setup.publish(day, Fault.NEGATIVE_PRICE if day == bad else None)
    _flaky_day(monkeypatch, setup, DAYS[2])
    result = setup.run_range(DAYS[0], DAYS[-1])

    recorded = setup.records()
    assert sorted(recorded) == PARTITIONS
    assert recorded[bad.isoformat()][1]["zone"] == "quarantine"
    assert setup.statuses()[bad.isoformat()] == "FAILED"
    assert setup.check_infos()[(bad.isoformat(), "positive_prices")].latest_execution_status \
        == FAILED
    assert not result.success, "the run succeeded although 2024-01-02 failed positive_prices"


def _table_assets(defs: dg.Definitions, settings: Settings) -> list[dg.AssetsDefinition]:
    return [defs.get_assets_def(table_key(instrument, table))
            for instrument in settings.instruments for table in TABLES]


@pytest.mark.parametrize(("value", "expected"), [(None, 15), ("3", 3), ("1", 1)])
def test_every_table_asset_groups_the_configured_days_per_run(value: str | None,
                                                              expected: int) -> None:
    env = {"RLX_INSTRUMENTS": "BINANCE:BTC-USDT,BINANCE:ETH-USDT"}
    if value is not None:
        env["RLX_BACKFILL_DAYS_PER_RUN"] = value
    settings = settings_for(env)
    assets = _table_assets(build_definitions(settings), settings)
    assert len(assets) == 2 * len(TABLES)
    for asset in assets:
        policy = asset.backfill_policy
        assert policy is not None, asset.key
        assert policy.policy_type == BackfillPolicyType.MULTI_RUN
        assert policy.max_partitions_per_run == expected, asset.key


@pytest.mark.parametrize("value", ["0", "-1", "x", "2.5"])
def test_a_bad_days_per_run_is_a_config_error_naming_the_variable(value: str) -> None:
    with pytest.raises(ConfigError, match="RLX_BACKFILL_DAYS_PER_RUN"):
        settings_for({"RLX_BACKFILL_DAYS_PER_RUN": value})
