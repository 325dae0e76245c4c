"""Partition states per (instrument, table, day) from the instance and the lake (for
`rlx-assets status` and the inventory); the rules are in `lib/status.py`."""

from __future__ import annotations

import dagster as dg

from rlx_assets.defs.assets import table_key
from rlx_assets.defs.partitions import daily_partitions
from rlx_assets.defs.records import check_statuses, partition_statuses, recorded_days
from rlx_assets.lib.certificate import window_days
from rlx_assets.lib.checks import BLOCKING_CHECKS
from rlx_assets.lib.lake import QUARANTINE, READY, Lake
from rlx_assets.lib.status import PartitionState, partition_state
from rlx_assets.lib.tables import TABLES
from rlx_assets.settings import Settings


def collect_states(
    instance: dg.DagsterInstance, settings: Settings, tables: list[str] | None = None
) -> list[PartitionState]:
    lake = Lake.at(settings.lake_root)
    days = window_days(settings.start_date, settings.window_end())
    partitions = daily_partitions(settings)
    states = []
    for instrument in settings.instruments:
        for table in tables or list(TABLES):
            key = table_key(instrument, table)
            status = partition_statuses(instance, key, days, partitions)
            checks = check_statuses(instance, key, BLOCKING_CHECKS, days)
            records = recorded_days(instance, key, days)
            ready = lake.zone_days(READY, table, instrument)
            quarantined = lake.zone_days(QUARANTINE, table, instrument)
            for day in days:
                record = records.get(day)
                state, failed = partition_state(
                    status.get(day), checks.get(day, {}), day in ready, day in quarantined,
                    accepted=tuple(record.accepted) if record and record.ready else ())
                states.append(PartitionState(str(instrument), table, day, state, failed,
                                             accepted=tuple(record.accepted) if record else ()))
    return states
