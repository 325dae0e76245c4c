"""Nanosecond timestamps as text, with no numpy or polars to import (the status and
inventory commands format times and should not pay for a dataframe library)."""

from __future__ import annotations

import datetime as dt

_NS = 1_000_000_000


def format_ns(ns: int | None) -> str | None:
    """ISO 8601 UTC with nanoseconds: 2024-01-02T00:00:00.004189123Z."""
    if ns is None:
        return None
    seconds, fraction = divmod(int(ns), _NS)
    moment = dt.datetime(1970, 1, 1) + dt.timedelta(seconds=seconds)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{fraction:09d}Z"
