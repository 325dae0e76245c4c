"""Day records already decoded, by event storage id, in a small SQLite file beside the
instance (`$DAGSTER_HOME/rlx_assets/records.sqlite3`).

A stored event never changes, but reading one back through Dagster's serdes costs about
0.3 ms (its metadata is a list of typed entries, a column schema among them). Reading every
series of 20 instruments x 730 days x 3 tables decoded 43,800 events, about 15 s, on every
`rlx-assets status`, inventory and new-days tick. This cache keeps, per event, only the
plain values a `DayRecord` is made of (`DayRecord.to_metadata()`, one column each), so each
event is decoded once. An entry is keyed by
storage id and the event's timestamp: an id that storage hands out again after a wipe comes
with another timestamp and misses.

The cache is only an optimisation: if the file cannot be opened, read or written (a
read-only home, a corrupt file), every lookup misses and nothing is stored.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

log = logging.getLogger(__name__)
# One column per metadata name, so that reading an entry back parses no JSON (lists and
# mappings, empty on nearly every day, are stored as JSON text).
_SCALARS = ("dagster/row_count", "first_origin_time", "last_origin_time",
            "first_origin_time_ns", "last_origin_time_ns", "zone", "path", "version", "sha256",
            "bytes", "vendor_object", "vendor_bytes", "vendor_sha256", "vendor_version",
            "vendor_contains_gaps", "origin_time_missing_rows", "resyncs")
_NESTED = ("failed_checks", "accepted_checks")
_NAMES = _SCALARS + _NESTED


def _quoted(names: Iterable[str]) -> str:
    return ", ".join(f'"{name}"' for name in names)


_SCHEMA = ("CREATE TABLE IF NOT EXISTS day_records (storage_id INTEGER PRIMARY KEY, "
           f"timestamp REAL NOT NULL, {_quoted(_NAMES)})")


class RecordCache:
    def __init__(self, path: Path | None) -> None:
        self.path = path

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A connection in one transaction (committed on success), closed after."""
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.closing(sqlite3.connect(self.path, timeout=10)) as connection:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute(_SCHEMA)
            with connection:
                yield connection

    def get(self, wanted: Mapping[int, float],
            names: Sequence[str] | None = None) -> dict[int, dict[str, object]]:
        """The cached metadata of each storage id in `wanted` ({storage id: timestamp})
        whose entry has that timestamp: every name, or only `names` (scalars: a reader that
        needs two values of 43,800 records reads them in a tenth of the time)."""
        if self.path is None or not wanted:
            return {}
        if names is None:
            columns, decode = _NAMES, _metadata
        elif set(names) <= set(_SCALARS):
            columns, decode = tuple(names), lambda values: dict(zip(names, values, strict=True))
        else:
            raise ValueError(f"not cached as a scalar: {sorted(set(names) - set(_SCALARS))}")
        found: dict[int, dict[str, object]] = {}
        try:
            with self._connect() as connection:  # one range scan, filtered here
                rows = connection.execute(
                    f"SELECT storage_id, timestamp, {_quoted(columns)} FROM day_records "
                    "WHERE storage_id BETWEEN ? AND ?", (min(wanted), max(wanted)))
                found.update((row[0], decode(row[2:])) for row in rows
                             if wanted.get(row[0]) == row[1])
        except (OSError, sqlite3.Error, ValueError) as exc:
            log.debug("record cache %s unreadable (%s): decoding every event", self.path, exc)
            return {}
        return found

    def put(self, entries: Iterable[tuple[int, float, Mapping[str, object]]]) -> None:
        """Store (storage id, timestamp, `DayRecord.to_metadata()`) entries."""
        rows = [(i, t, *(m.get(n) for n in _SCALARS), *(json.dumps(m.get(n)) for n in _NESTED))
                for i, t, m in entries]
        if self.path is None or not rows:
            return
        try:
            with self._connect() as connection:
                connection.executemany(
                    f"INSERT OR REPLACE INTO day_records VALUES "
                    f"({', '.join('?' * (2 + len(_NAMES)))})", rows)
        except (OSError, sqlite3.Error) as exc:
            log.debug("record cache %s not written (%s)", self.path, exc)


_EMPTY = {"[]": list, "{}": dict, "null": lambda: None}  # nearly every day's nested values


def _metadata(values: tuple) -> dict[str, object]:
    out = dict(zip(_SCALARS, values, strict=False))  # the scalars come first
    for name, text in zip(_NESTED, values[len(_SCALARS):], strict=True):
        empty = _EMPTY.get(text)
        out[name] = empty() if empty else json.loads(text)
    return out
