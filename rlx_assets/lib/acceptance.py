"""Accepted vendor exceptions: a failure the vendor will never fix, accepted on the record.

A real hole that the vendor will never fill must not block the certificate forever, and must
never be hidden either. An `Acceptance` records who accepted which failing check of which
partition, when and why, bound to the vendor file's sha256 and to the exact violations
accepted. It is stored in the lake (`acceptances/<table>/exchange=../symbol=../dt=../
<check>.json`, a local directory or S3 alike), and a revoked acceptance stays there, marked
revoked, for the audit trail.

`apply` is what the next evaluation does: a blocking check that failed with nothing but
accepted violations, on the very vendor file accepted, passes with the acceptance and the
accepted evidence in its metadata. A changed vendor file or a violation not accepted fails
as before, saying why the acceptance did not apply.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from rlx_assets.lib.checks import CheckOutcome
from rlx_assets.lib.instruments import Instrument, day_prefix
from rlx_assets.lib.lake import Lake

FOLDER = "acceptances"


class AcceptanceError(ValueError):
    """An acceptance that cannot be made; the message says why and what to do."""


def acceptance_key(table: str, instrument: Instrument, day: dt.date, check: str) -> str:
    return f"{FOLDER}/{day_prefix(table, instrument, day)}{check}.json"


@dataclass(frozen=True)
class Acceptance:
    instrument: str
    table: str
    day: dt.date
    check: str
    reason: str
    accepted_by: str
    accepted_at: str  # ISO 8601 UTC
    vendor_sha256: str
    violations: tuple[str, ...]  # exactly what was accepted
    evidence: Mapping[str, object]  # the failed evaluation's description and figures
    revoked_at: str | None = None
    revoked_by: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def to_json(self) -> dict[str, object]:
        return {**dataclasses.asdict(self), "day": self.day.isoformat(),
                "violations": list(self.violations)}

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Acceptance:
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in fields}
        values["day"] = dt.date.fromisoformat(str(values["day"]))
        values["violations"] = tuple(values.get("violations") or ())
        return cls(**values)

    def summary(self) -> dict[str, str]:
        """What the day's record and the certificate say about it."""
        return {"reason": self.reason, "accepted_by": self.accepted_by,
                "accepted_at": self.accepted_at}

    def revoked(self, by: str, at: dt.datetime) -> Acceptance:
        return dataclasses.replace(self, revoked_at=at.isoformat(), revoked_by=by)


def save(lake: Lake, acceptance: Acceptance) -> str:
    key = acceptance_key(acceptance.table, Instrument.parse(acceptance.instrument),
                         acceptance.day, acceptance.check)
    return lake.write_json(key, acceptance.to_json())


def load(lake: Lake, table: str, instrument: Instrument, day: dt.date,
         check: str) -> Acceptance | None:
    data = lake.read_json(acceptance_key(table, instrument, day, check))
    return Acceptance.from_json(data) if data else None


def for_partition(lake: Lake, table: str, instrument: Instrument,
                  day: dt.date) -> dict[str, Acceptance]:
    """The active acceptances of one partition, by check (one listing of its folder)."""
    folder = f"{FOLDER}/{day_prefix(table, instrument, day)}"
    found = {}
    for key in lake.store.list(folder):
        data = lake.read_json(key) if key.endswith(".json") else None
        if data:
            acceptance = Acceptance.from_json(data)
            if acceptance.active:
                found[acceptance.check] = acceptance
    return found


def every(lake: Lake) -> list[Acceptance]:
    """Every acceptance in the lake, revoked ones included, by instrument, table and day."""
    out = [Acceptance.from_json(data) for key in lake.store.list(f"{FOLDER}/")
           if key.endswith(".json") and (data := lake.read_json(key))]
    return sorted(out, key=lambda a: (a.instrument, a.table, a.day, a.check))


def apply(outcomes: Iterable[CheckOutcome], accepted: Mapping[str, Acceptance],
          vendor_sha256: str) -> list[CheckOutcome]:
    """The outcomes with each accepted failure passed, or annotated where it does not hold."""
    out = []
    for outcome in outcomes:
        acceptance = accepted.get(outcome.name)
        if acceptance is None or outcome.passed or not outcome.blocking:
            out.append(outcome)
            continue
        new = [v for v in outcome.violations if v not in acceptance.violations]
        if acceptance.vendor_sha256 != vendor_sha256:
            why = (f"the vendor file changed since it was accepted on {acceptance.accepted_at} "
                   f"(sha256 {vendor_sha256[:12]}, accepted {acceptance.vendor_sha256[:12]})")
        elif new or not outcome.violations:
            why = f"violations not accepted: {'; '.join(new) or outcome.description}"
        else:
            out.append(dataclasses.replace(
                outcome, passed=True,
                description=f"ACCEPTED vendor exception ({acceptance.reason}; "
                            f"{acceptance.accepted_by}, {acceptance.accepted_at}): "
                            f"{outcome.description}",
                metadata={**outcome.metadata, "accepted": acceptance.summary(),
                          "accepted_evidence": dict(acceptance.evidence),
                          "accepted_vendor_sha256": acceptance.vendor_sha256}))
            continue
        out.append(dataclasses.replace(
            outcome, description=f"{outcome.description} (an acceptance exists but does not "
                                 f"apply: {why})",
            metadata={**outcome.metadata, "acceptance_not_applied": why}))
    return out


def accepted_checks(outcomes: Iterable[CheckOutcome]) -> dict[str, dict[str, str]]:
    """{check: summary} of the outcomes that passed under an acceptance."""
    return {o.name: dict(o.metadata["accepted"]) for o in outcomes
            if o.passed and "accepted" in o.metadata}
