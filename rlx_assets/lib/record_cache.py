"""Day records already decoded, by event storage id, in a small SQLite file beside the
instance (`$DAGSTER_HOME/rlx_assets/records.sqlite3`).

A stored event never changes, but reading one back through Dagster's serdes costs about
0.3 ms (its metadata is a list of typed entries, a column schema among them). Reading every
series of 20 instruments x 730 days x 3 tables decoded 43,800 events, about 15 s, on every
`rlx-assets status`, inventory and new-days tick. This cache keeps, per event, only the
plain values a `DayRecord` is made of, so each event is decoded once. An entry is keyed by
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
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

log = logging.getLogger(__name__)
_IDS_PER_QUERY = 5000  # under SQLite's limit of bound parameters
_SCHEMA = ("CREATE TABLE IF NOT EXISTS records (storage_id INTEGER PRIMARY KEY, "
           "timestamp REAL NOT NULL, metadata TEXT NOT NULL)")


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

    def get(self, wanted: Mapping[int, float]) -> dict[int, dict[str, object]]:
        """The cached metadata of each storage id in `wanted` ({storage id: timestamp})
        whose entry has that timestamp."""
        if self.path is None or not wanted:
            return {}
        ids = sorted(wanted)
        found: dict[int, dict[str, object]] = {}
        try:
            with self._connect() as connection:
                for start in range(0, len(ids), _IDS_PER_QUERY):
                    chunk = ids[start:start + _IDS_PER_QUERY]
                    rows = connection.execute(
                        "SELECT storage_id, timestamp, metadata FROM records WHERE storage_id "
                        f"IN ({','.join('?' * len(chunk))})", chunk)
                    found.update((i, json.loads(m)) for i, t, m in rows if t == wanted[i])
        except (OSError, sqlite3.Error, ValueError) as exc:
            log.debug("record cache %s unreadable (%s): decoding every event", self.path, exc)
            return {}
        return found

    def put(self, entries: Iterable[tuple[int, float, Mapping[str, object]]]) -> None:
        """Store (storage id, timestamp, plain JSON-able metadata) entries."""
        rows = [(i, t, json.dumps(m)) for i, t, m in entries]
        if self.path is None or not rows:
            return
        try:
            with self._connect() as connection:
                connection.executemany("INSERT OR REPLACE INTO records VALUES (?, ?, ?)", rows)
        except (OSError, sqlite3.Error) as exc:
            log.debug("record cache %s not written (%s)", self.path, exc)
