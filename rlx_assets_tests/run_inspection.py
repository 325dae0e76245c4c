"""Reading what a materialisation did: failure text, step attempts, check outcomes, zones."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
from dagster import DagsterEventType
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from rlx_assets.defs.keys import table_key
from rlx_assets.lib.checks import BLOCKING_CHECKS
from rlx_assets.lib.instruments import Instrument
from rlx_assets_tests.stand_ins import BTC

SUCCEEDED = AssetCheckExecutionRecordStatus.SUCCEEDED
FAILED = AssetCheckExecutionRecordStatus.FAILED


def table_asset_key(table: str, instrument: Instrument = BTC) -> dg.AssetKey:
    return table_key(instrument, table)


def failure_text(result: dg.ExecuteInProcessResult) -> str:
    """Every step failure's error chain and user-facing description, as one string."""
    parts: list[str] = []
    for event in result.get_step_failure_events():
        data = event.step_failure_data
        error = data.error
        while error is not None:
            parts.append(error.message)
            error = error.cause
        if data.user_failure_data is not None and data.user_failure_data.description:
            parts.append(data.user_failure_data.description)
    return "\n".join(parts)


def step_attempts(result: dg.ExecuteInProcessResult) -> int:
    """How many times the (single) step ran: its start plus each restart after a retry."""
    kinds = [e.event_type for e in result.all_events]
    return kinds.count(DagsterEventType.STEP_START) + kinds.count(DagsterEventType.STEP_RESTARTED)


def check_evaluations(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    """The blocking checks' evaluations (WARN-level checks are tested on their own)."""
    return {
        e.event_specific_data.check_name: e.event_specific_data
        for e in result.all_events
        if e.event_type == DagsterEventType.ASSET_CHECK_EVALUATION
        and e.event_specific_data.check_name in BLOCKING_CHECKS
    }


def materialization_metadata(result: dg.ExecuteInProcessResult) -> dict[str, object]:
    events = result.get_asset_materialization_events()
    assert len(events) == 1, events
    return {k: v.value for k, v in events[0].materialization.metadata.items()}


def quarantine_metadata(result: dg.ExecuteInProcessResult) -> dict[str, object]:
    """A quarantined day is recorded as an observation, never a materialisation."""
    assert not result.get_asset_materialization_events()
    events = result.get_asset_observation_events()
    assert len(events) == 1, events
    return {k: v.value for k, v in events[0].asset_observation_data.asset_observation
            .metadata.items()}


def partition_status(instance: dg.DagsterInstance, table: str, day: dt.date,
                     instrument: Instrument = BTC) -> str | None:
    """What the UI's Partitions tab shows for the day: MATERIALIZED, FAILED, ..."""
    from rlx_assets.defs.partitions import daily_partitions
    from rlx_assets_tests.conftest import settings_for

    partitions = daily_partitions(settings_for({}))
    status = instance.get_status_by_partition(table_asset_key(table, instrument),
                                              [day.isoformat()], partitions) or {}
    value = status.get(day.isoformat())
    return value.value if value is not None else None


def check_statuses(
    instance: dg.DagsterInstance, table: str, instrument: Instrument = BTC
) -> dict[str, dict[str, AssetCheckExecutionRecordStatus]]:
    """{partition: {check: latest status}} as the event log stores them per partition."""
    keys = [dg.AssetCheckKey(table_asset_key(table, instrument), name) for name in BLOCKING_CHECKS]
    out: dict[str, dict[str, AssetCheckExecutionRecordStatus]] = {}
    for info in instance.event_log_storage.get_asset_check_partition_info(keys):
        out.setdefault(info.partition_key, {})[info.check_key.name] = info.latest_execution_status
    return out


def zone_dir(lake: Path, zone: str, table: str, day: dt.date,
             instrument: Instrument = BTC) -> Path:
    return (lake / zone / table / f"exchange={instrument.exchange}"
            / f"symbol={instrument.symbol}" / f"dt={day.isoformat()}")


def zone_files(lake: Path, zone: str, table: str, day: dt.date,
               instrument: Instrument = BTC) -> list[Path]:
    folder = zone_dir(lake, zone, table, day, instrument)
    return sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
