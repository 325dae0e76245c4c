"""The daily UTC partitions of every table, bounded by RLX_START_DATE / RLX_END_DATE."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from rlx_assets.settings import Settings


def daily_partitions(settings: Settings) -> dg.DailyPartitionsDefinition:
    end = settings.end_date + dt.timedelta(days=1) if settings.end_date else None
    return dg.DailyPartitionsDefinition(
        start_date=settings.start_date.isoformat(),
        end_date=end.isoformat() if end else None,
        timezone="UTC",
    )
