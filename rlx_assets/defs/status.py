"""Partition states per (instrument, table, day) from the instance and the lake (for
`rlx-assets status` and the inventory); the rules are in `lib/status.py`."""

from __future__ import annotations

import dagster as dg

from rlx_assets.defs.keys import CERTIFIED, certificate_key, table_key
from rlx_assets.defs.partitions import daily_partitions
from rlx_assets.defs.records import (
    check_statuses,
    latest_evaluation,
    partition_statuses,
    recorded_days,
)
from rlx_assets.lib.certificate import window_days
from rlx_assets.lib.checks import BLOCKING_CHECKS
from rlx_assets.lib.lake import QUARANTINE, READY
from rlx_assets.lib.status import PartitionState, partition_state
from rlx_assets.lib.tables import TABLES
from rlx_assets.settings import Settings


def certificate_states(instance: dg.DagsterInstance,
                       settings: Settings) -> list[tuple[str, str, str]]:
    """(instrument, state, why) of each instrument's certificate: issued, withdrawn or
    refused (its own check, `window_certified`), or not issued yet."""
    out = []
    for instrument in settings.instruments:
        latest = latest_evaluation(instance, certificate_key(instrument), CERTIFIED, None)
        if latest is None:
            out.append((str(instrument), "not issued", "never asked for yet"))
        elif latest.passed:
            out.append((str(instrument), "issued", latest.description))
        else:
            state = "withdrawn" if latest.description.startswith("withdrawn") else "refused"
            out.append((str(instrument), state, latest.description))
    return out


def collect_states(
    instance: dg.DagsterInstance, settings: Settings, tables: list[str] | None = None
) -> list[PartitionState]:
    lake = settings.lake()
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
