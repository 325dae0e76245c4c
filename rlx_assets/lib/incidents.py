"""Check failures as incidents, without Dagster: what the Slack sensor should say, and when.

A failing (instrument, table, check, partition) is one incident: it opens with one message
when its check first fails, stays open without further messages while later evaluations
(another run, a retry, the new-days sensor's run) fail it again, and closes with one
"recovered" (or "accepted") message when it passes. When more than `digest_after`
incidents open in one tick - a backfill over a bad vendor month - they are announced as one
digest per instrument, table and check, listing the days as ranges and the worst figures,
instead of one message per day.

`AlertCursor` is what the sensor carries from tick to tick, as JSON: how far it has read the
event log, the open incidents, and an outbox of messages decided but not yet taken by Slack
(when Slack is down or rate-limits, they wait there: nothing is lost or decided twice).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

DIGEST_AFTER = 10  # more new incidents than this in one tick: digests instead
OUTBOX_LIMIT = 500  # messages kept waiting for Slack; the event log is not read further


@dataclass
class AlertCursor:
    after: int | None = None  # storage id of the last event handled
    open: dict[str, int] = field(default_factory=dict)  # incident key -> opening event
    outbox: list[tuple[str, str]] = field(default_factory=list)  # (summary, text) to send

    @classmethod
    def parse(cls, text: str | None) -> AlertCursor:
        """The cursor, from JSON or from the plain storage id earlier versions kept."""
        if not text or not text.strip():
            return cls()
        if text.strip().lstrip("-").isdigit():
            return cls(after=int(text))
        try:
            data = json.loads(text)
            return cls(data.get("after"), {str(k): int(v) for k, v in data["open"].items()},
                       [(str(a), str(b)) for a, b in data.get("outbox", [])])
        except (ValueError, KeyError, TypeError, AttributeError):
            return cls()

    def dump(self) -> str:
        return json.dumps({"after": self.after, "open": self.open, "outbox": self.outbox},
                          sort_keys=True, separators=(",", ":"))

    @property
    def full(self) -> bool:
        return len(self.outbox) >= OUTBOX_LIMIT


@dataclass(frozen=True)
class Finding:
    """One check evaluation, as the incidents see it."""

    storage_id: int
    instrument: str
    table: str
    check: str
    partition: str | None
    passed: bool
    # The message for this evaluation alone (failed, recovered or accepted), or how to write
    # it: most evaluations open or close nothing, so their text is never rendered.
    text: str | Callable[[], str]
    figures: Mapping[str, float] = field(default_factory=dict)  # for digests: worst-of
    recent: bool = True  # within RLX_ALERT_MAX_AGE_HOURS: announced (else only counted)

    def message(self) -> str:
        return self.text() if callable(self.text) else self.text

    @property
    def key(self) -> str:
        return "|".join((self.instrument, self.table, self.check, self.partition or "-"))


@dataclass
class Incidents:
    """Open incidents: key -> storage id of the evaluation that opened it."""

    open: dict[str, int] = field(default_factory=dict)

    def triage(self, findings: Iterable[Finding]) -> tuple[list[Finding], list[Finding]]:
        """(incidents opened, incidents closed) by `findings`, in order; state updated."""
        opened, closed = [], []
        for finding in findings:
            if not finding.passed and finding.key not in self.open:
                self.open[finding.key] = finding.storage_id
                opened.append(finding)
            elif finding.passed and finding.key in self.open:
                del self.open[finding.key]
                closed.append(finding)
        return opened, closed


def messages(opened: Sequence[Finding], closed: Sequence[Finding],
             digest: Callable[[list[Finding], bool], str], digest_after: int = DIGEST_AFTER,
             ) -> list[tuple[int, str, str]]:
    """(storage id, summary, text) for one tick: one per incident opened or closed, at its
    event, or - when more than `digest_after` opened (or closed) - one digest per
    instrument, table and check, at its group's last event."""
    out: list[tuple[int, str, str]] = []
    for findings, recovered in ((opened, False), (closed, True)):
        verdict = "passes again" if recovered else "FAILED"
        if len(findings) <= digest_after:
            out += [(f.storage_id, f"{f.check} on {f.instrument} {f.table} {f.partition}: "
                     f"{verdict}", f.message()) for f in findings]
            continue
        groups: dict[tuple[str, str, str], list[Finding]] = {}
        for finding in findings:
            groups.setdefault((finding.instrument, finding.table, finding.check),
                              []).append(finding)
        for (instrument, table, check), group in groups.items():
            out.append((group[-1].storage_id, f"digest: {check} on {instrument} {table}, "
                        f"{len(group)} partition(s) {verdict}", digest(group, recovered)))
    return sorted(out, key=lambda m: m[0])


def days_of(findings: Iterable[Finding]) -> list[dt.date]:
    days = []
    for f in findings:
        try:
            days.append(dt.date.fromisoformat(f.partition or ""))
        except ValueError:
            continue
    return days


def worst(findings: Sequence[Finding]) -> dict[str, tuple[float, str | None]]:
    """{figure: (largest value, the partition it was in)} over `findings`."""
    out: dict[str, tuple[float, str | None]] = {}
    for f in findings:
        for name, value in f.figures.items():
            if name not in out or value > out[name][0]:
                out[name] = (value, f.partition)
    return out
