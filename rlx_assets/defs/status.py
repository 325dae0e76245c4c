"""Partition states per (instrument, table, day) from the instance and the lake (for
`rlx-assets status` and the inventory); the rules are in `lib/status.py`."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from rlx_assets.defs.keys import CERTIFIED, certificate_key, table_key
from rlx_assets.defs.partitions import daily_partitions
from rlx_assets.defs.records import Series, latest_evaluation, read_series, recorded_days
from rlx_assets.lib import acceptance
from rlx_assets.lib.certificate import window_days
from rlx_assets.lib.checks import BLOCKING_CHECKS
from rlx_assets.lib.instruments import Instrument
from rlx_assets.lib.lake import QUARANTINE, READY, Lake
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


def collect_states(instance: dg.DagsterInstance, settings: Settings,
                   tables: list[str] | None = None,
                   every_record: bool = False) -> list[PartitionState]:
    """The partition states, every series read from the instance at once
    (`records.read_series`). No day record is read except those of the days that have an
    acceptance in the lake, which say whether it was needed (`every_record` reads them all:
    a test holds the shortcut to the same states)."""
    lake = settings.lake()
    days = window_days(settings.start_date, settings.window_end())
    series = [(instrument, table) for instrument in settings.instruments
              for table in tables or list(TABLES)]
    keys = [table_key(instrument, table) for instrument, table in series]
    read = read_series(instance, keys, days, BLOCKING_CHECKS, daily_partitions(settings),
                       with_records=every_record)
    if not every_record:
        _records_of_accepted_days(instance, lake, series, keys, read)
    states = []
    for (instrument, table), key in zip(series, keys, strict=True):
        status, checks, records = read[key].statuses, read[key].checks, read[key].records
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


def _records_of_accepted_days(instance: dg.DagsterInstance, lake: Lake,
                              series: list[tuple[Instrument, str]], keys: list[dg.AssetKey],
                              read: dict[dg.AssetKey, Series]) -> None:
    """Fill in the records of the days with an acceptance (active or revoked) in the lake:
    only a record says whether a day's checks passed under one."""
    accepted: dict[tuple[str, str], set[dt.date]] = {}
    for a in acceptance.every(lake):
        accepted.setdefault((a.instrument, a.table), set()).add(a.day)
    for (instrument, table), key in zip(series, keys, strict=True):
        days = accepted.get((str(instrument), table))
        if days:
            read[key].records.update(recorded_days(instance, key, sorted(days), BLOCKING_CHECKS))
