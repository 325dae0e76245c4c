"""Check failures as incidents, without Dagster: what the Slack sensor should say, and when.

A failing (instrument, table, check, partition) is one incident: it opens with one message
when its check first fails, stays open without further messages while later evaluations
(another run, a retry, the new-days sensor's run) fail it again, and closes with one
"recovered" (or "accepted") message when it passes. When more than `digest_after`
incidents open in one tick - a backfill over a bad vendor month - they are announced as one
digest per instrument, table and check, listing the days as ranges and the worst figures,
instead of one message per day.

`Incidents` is the set of open incidents; it travels in the sensor's cursor as JSON.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from rlx_assets.lib.inventory import day_ranges

DIGEST_AFTER = 10  # more new incidents than this in one tick: digests instead


@dataclass(frozen=True)
class Finding:
    """One check evaluation, as the incidents see it."""

    storage_id: int
    instrument: str
    table: str
    check: str
    partition: str | None
    passed: bool
    text: str  # the message for this evaluation alone (failed, recovered or accepted)
    figures: Mapping[str, float] = field(default_factory=dict)  # for digests: worst-of

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


@dataclass(frozen=True)
class Message:
    summary: str  # for the tick log
    text: str


def messages(opened: Sequence[Finding], closed: Sequence[Finding],
             digest_after: int = DIGEST_AFTER,
             digest_text: Callable[[list[Finding]], str] | None = None) -> list[Message]:
    """The messages for one tick: one per incident, or digests when many opened."""
    out: list[Message] = []
    if len(opened) > digest_after:
        groups: dict[tuple[str, str, str], list[Finding]] = {}
        for finding in opened:
            groups.setdefault((finding.instrument, finding.table, finding.check),
                              []).append(finding)
        text = digest_text or plain_digest
        for (instrument, table, check), group in groups.items():
            out.append(Message(f"digest: {check} on {instrument} {table}, {len(group)} "
                               "partition(s)", text(group)))
    else:
        out += [Message(f"{f.check} on {f.instrument} {f.table} {f.partition}: FAILED",
                        f.text) for f in opened]
    out += [Message(f"{f.check} on {f.instrument} {f.table} {f.partition}: passes again",
                    f.text) for f in closed]
    return out


def _days(findings: Iterable[Finding]) -> list[dt.date]:
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


def plain_digest(group: list[Finding]) -> str:
    first = group[0]
    days = _days(group)
    where = day_ranges(days) if days else ", ".join(f.partition or "-" for f in group)
    lines = [f"{len(group)} partitions of {first.instrument} {first.table} failed "
             f"{first.check}: {where}"]
    lines += [f"worst {name}: {value:,.1f} ({partition})"
              for name, (value, partition) in worst(group).items()]
    return "\n".join(lines)
