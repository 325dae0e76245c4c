"""Read partition states from the Dagster instance and the lake (for `rlx-assets status`)."""

from __future__ import annotations

import dagster as dg

from rlx_assets.defs.assets import table_key
from rlx_assets.defs.partitions import daily_partitions
from rlx_assets.defs.records import check_infos
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
    keys = [d.isoformat() for d in days]
    partitions = daily_partitions(settings)
    states = []
    for instrument in settings.instruments:
        for table in tables or list(TABLES):
            key = table_key(instrument, table)
            status = instance.get_status_by_partition(key, keys, partitions) or {}
            checks = {partition: {name: info.latest_execution_status.value
                                  for name, info in by_check.items()}
                      for partition, by_check in check_infos(
                          instance, key, BLOCKING_CHECKS, keys).items()}
            ready = lake.zone_days(READY, table, instrument)
            quarantined = lake.zone_days(QUARANTINE, table, instrument)
            for day in days:
                raw_status = status.get(day.isoformat())
                state, failed = partition_state(
                    raw_status.value if raw_status else None,
                    checks.get(day.isoformat(), {}), day in ready, day in quarantined)
                states.append(PartitionState(str(instrument), table, day, state, failed))
    return states
