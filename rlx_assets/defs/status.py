"""Partition states per (instrument, table, day) from the instance and the lake (for
`rlx-assets status` and the inventory); the rules are in `lib/status.py`."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from rlx_assets.defs.keys import CERTIFIED, certificate_key, table_key
from rlx_assets.defs.partitions import daily_partitions
from rlx_assets.defs.records import latest_evaluation, read_series
from rlx_assets.lib.certificate import window_days
from rlx_assets.lib.checks import BLOCKING_CHECKS
from rlx_assets.lib.day_record import DayRecord
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
            # evaluations recorded before the `state` key said it in their first word
            state = latest.metadata.get("state") or latest.description.split(":")[0]
            out.append((str(instrument), state, latest.description))
    return out


Recorded = dict[tuple[str, str], dict[dt.date, DayRecord]]  # (instrument, table) -> day -> record


def collect_states(
    instance: dg.DagsterInstance, settings: Settings, tables: list[str] | None = None
) -> list[PartitionState]:
    return collect_states_and_records(instance, settings, tables)[0]


def collect_states_and_records(
    instance: dg.DagsterInstance, settings: Settings, tables: list[str] | None = None
) -> tuple[list[PartitionState], Recorded]:
    """The states, and the records they were drawn from (for the inventory), every series
    read from the instance at once (`records.read_series`)."""
    lake = settings.lake()
    days = window_days(settings.start_date, settings.window_end())
    series = [(instrument, table) for instrument in settings.instruments
              for table in tables or list(TABLES)]
    keys = [table_key(instrument, table) for instrument, table in series]
    read = read_series(instance, keys, days, BLOCKING_CHECKS, daily_partitions(settings))
    states, recorded = [], {}
    for (instrument, table), key in zip(series, keys, strict=True):
        status, checks, records = read[key].statuses, read[key].checks, read[key].records
        recorded[(str(instrument), table)] = records
        ready = lake.zone_days(READY, table, instrument)
        quarantined = lake.zone_days(QUARANTINE, table, instrument)
        for day in days:
            record = records.get(day)
            state, failed = partition_state(
                status.get(day), checks.get(day, {}), day in ready, day in quarantined,
                accepted=tuple(record.accepted) if record and record.ready else ())
            states.append(PartitionState(str(instrument), table, day, state, failed,
                                         accepted=tuple(record.accepted) if record else ()))
    return states, recorded
