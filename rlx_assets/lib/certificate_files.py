"""The certificate's files and their lifecycle; the one owner of withdrawal.

- **Current**: `certificates/<slug>_<start>_<end>.json`, exactly one per instrument and
  window start. An open window (no RLX_END_DATE) gets a new end every day.
- **History**: `certificates/history/<slug>_<start>_<end>.<issued>.json`, where `<issued>`
  is the certificate's own `generated_at` (UTC, to the microsecond). Issuing a certificate
  moves every other current one of that instrument and start (an older end, or the same
  window issued before) here with a `superseded` note (when, by which file). Withdrawing
  one moves it here as `….<issued>.withdrawn.json` with a `withdrawn` note (when, why).
  Nothing is deleted; `content_sha256` still covers exactly what was issued (every field
  but itself, `superseded` and `withdrawn`: see `intact`).

Only files directly in `certificates/` named like a current certificate are current
(`current_certificates`): readers never mistake history (or a writer's `.part` file) for
one. A move is copy-then-delete, so a crash in between leaves the certificate in both
places, never in neither; the next issue or withdrawal tidies it.

Withdrawal happens at two moments, both through `withdraw`: the table step, when a day of
a certified window fails its blocking checks (`withdraw_covering`, called before ready/
loses the day, so no certificate outlives its data), and the certificate asset, when a
re-issue is refused or a partition changed while it was being issued.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rlx_assets.lib.certificate import canonical_sha256

if TYPE_CHECKING:
    from rlx_assets.lib.instruments import Instrument
    from rlx_assets.lib.lake import Lake

CERTIFICATES = "certificates/"
HISTORY = "certificates/history/"
NOTES = ("content_sha256", "superseded", "withdrawn")  # not part of what was issued
_CURRENT = re.compile(r"^(?P<slug>[a-z0-9_]+)_(?P<start>\d{4}-\d{2}-\d{2})_"
                      r"(?P<end>\d{4}-\d{2}-\d{2})\.json$")


def current_key(slug: str, start: dt.date, end: dt.date) -> str:
    return f"{CERTIFICATES}{slug}_{start}_{end}.json"


@dataclass(frozen=True)
class Current:
    key: str
    slug: str
    start: dt.date
    end: dt.date


@dataclass(frozen=True)
class Moved:
    location: str  # where the certificate was current
    kept_at: str  # where it is now, under history/


def parse_current(key: str) -> Current | None:
    """The current certificate that `key` names, or None (history, anything else)."""
    match = _CURRENT.match(key.removeprefix(CERTIFICATES)) if key.startswith(
        CERTIFICATES) else None
    if match is None:
        return None
    try:
        start, end = (dt.date.fromisoformat(match[k]) for k in ("start", "end"))
    except ValueError:
        return None
    return Current(key, match["slug"], start, end)


def current_certificates(lake: Lake, slug: str | None = None) -> list[Current]:
    """The certificates in force, of one instrument or all."""
    found = (parse_current(key) for key in lake.store.list(CERTIFICATES, recursive=False))
    return [c for c in found if c is not None and (slug is None or c.slug == slug)]


def intact(certificate: dict) -> bool:
    """Its `content_sha256` matches what was issued (notes added later are left out)."""
    body = {k: v for k, v in certificate.items() if k not in NOTES}
    return certificate.get("content_sha256") == canonical_sha256(body)


def _stamp(certificate: dict) -> str:
    try:
        issued = dt.datetime.fromisoformat(str(certificate.get("generated_at")))
    except ValueError:
        issued = dt.datetime.now(dt.UTC)
    return issued.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")


def history_key(key: str, certificate: dict, withdrawn: bool) -> str:
    stem = key.removeprefix(CERTIFICATES).removesuffix(".json")
    return f"{HISTORY}{stem}.{_stamp(certificate)}{'.withdrawn' if withdrawn else ''}.json"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def _to_history(lake: Lake, key: str, note: str, detail: dict[str, str],
                delete: bool = True, certificate: dict | None = None) -> Moved | None:
    """Copy the certificate at `key` (read now unless given) under history/ with `note`, then
    delete it (unless it is about to be overwritten). An unreadable file vouches for nothing:
    it is deleted."""
    certificate = certificate if certificate is not None else lake.read_json(key)
    if certificate is None:  # gone already (a concurrent move), or not JSON
        if delete:
            lake.delete(key)
        return None
    target = history_key(key, certificate, note == "withdrawn")
    lake.write_json(target, {**certificate, note: detail})
    if delete:
        lake.delete(key)
    return Moved(lake.location(key), lake.location(target))


def issue(lake: Lake, instrument: Instrument, start: dt.date, end: dt.date,
          certificate: dict) -> str:
    """Make `certificate` the current one of `instrument` and `start`; every other current
    one of that instrument and start goes to history/. Returns its location."""
    key = current_key(instrument.slug, start, end)
    superseded = {"at": _now(), "by": lake.location(key)}
    earlier = lake.read_json(key)
    if earlier is not None:  # the same window, issued before
        _to_history(lake, key, "superseded", superseded, delete=False, certificate=earlier)
    location = lake.write_json(key, certificate)
    for other in current_certificates(lake, instrument.slug):
        if other.start == start and other.key != key:
            _to_history(lake, other.key, "superseded", superseded)
    return location


def withdraw(lake: Lake, key: str, reason: str) -> Moved | None:
    """Move the current certificate at `key` to history/, saying why; None if there was
    none."""
    return _to_history(lake, key, "withdrawn", {"at": _now(), "reason": reason})


def withdraw_where(lake: Lake, instrument: Instrument,
                   reason_for: Callable[[Current], str | None]) -> list[Moved]:
    """Withdraw each current certificate of `instrument` for which `reason_for` gives a
    reason (None: it still holds)."""
    moved = []
    for current in current_certificates(lake, instrument.slug):
        reason = reason_for(current)
        if reason is not None and (kept := withdraw(lake, current.key, reason)) is not None:
            moved.append(kept)
    return moved


def withdraw_covering(lake: Lake, instrument: Instrument, day: dt.date,
                      reason: str) -> list[Moved]:
    """A day of `instrument` failed its blocking checks: withdraw every current certificate
    whose window holds it. The table step calls this before ready/ loses the day."""
    return withdraw_where(lake, instrument,
                         lambda c: reason if c.start <= day <= c.end else None)
