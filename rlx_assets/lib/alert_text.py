"""What Slack alerts say, without Dagster: message text from plain values.

Messages are Slack mrkdwn built from a check evaluation, a failed run or a digest of
incidents (`incidents.py`), so they are testable without an instance.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote

from rlx_assets.lib.incidents import Finding, days_of, worst
from rlx_assets.lib.inventory import day_ranges

MAX_TEXT_CHARS = 3000  # well below Slack's limits, so no alert is ever rejected for its size
MAX_SAMPLE_TIMES = 3


# --- what an alert is about ----------------------------------------------------------------

@dataclass(frozen=True)
class CheckEvaluation:
    """One asset-check evaluation, as plain values."""

    asset_path: tuple[str, ...]
    check_name: str
    passed: bool
    partition: str | None
    severity: str = "ERROR"
    blocking: bool = True
    description: str | None = None
    metadata: Mapping[str, object] = field(default_factory=dict)
    run_id: str = ""


@dataclass(frozen=True)
class RunFailure:
    """A failed run, with one line per failed step (or the run's own error)."""

    run_id: str
    job_name: str
    partition: str | None
    asset_paths: tuple[tuple[str, ...], ...]
    reason: str
    errors: tuple[str, ...]
    retry_number: int = 0


@dataclass(frozen=True)
class StepFailure:
    step_key: str
    error_class: str
    text: str


CHECK_FAILED_ERROR = "DagsterAssetCheckFailedError"


def run_failure_worth_alerting(reason: str, steps: Sequence[StepFailure],
                               will_retry: bool) -> bool:
    """False for a run that will be retried (its retry reports) and for one that failed only
    because blocking checks failed (each failed evaluation is already alerted)."""
    if will_retry:
        return False
    only_checks = bool(steps) and all(s.error_class == CHECK_FAILED_ERROR for s in steps)
    return not (reason == "STEP_FAILURE" and only_checks)


# --- message text --------------------------------------------------------------------------

def instrument_and_table(asset_path: Sequence[str]) -> tuple[str, str]:
    """`("binance", "btc_usdt", "trades")` -> `("BINANCE:BTC-USDT", "trades")`."""
    if len(asset_path) == 3:
        exchange, symbol, table = asset_path
        return f"{exchange.upper()}:{symbol.upper().replace('_', '-')}", table
    return "/".join(asset_path[:-1]) or "-", asset_path[-1] if asset_path else "-"


def escape(text: object) -> str:
    """Slack mrkdwn treats &, < and > as control characters."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@dataclass(frozen=True)
class Links:
    """Links into the Dagster UI when DAGSTER_WEBSERVER_URL is known."""

    webserver_url: str | None = None

    def _base(self) -> str | None:
        return self.webserver_url.rstrip("/") if self.webserver_url else None

    def asset(self, path: Sequence[str], check_name: str | None = None,
              partition: str | None = None) -> str | None:
        base = self._base()
        if base is None:
            return None
        url = f"{base}/assets/{'/'.join(quote(p, safe='') for p in path)}"
        if check_name:
            return f"{url}?view=checks&checkDetail={quote(check_name, safe='')}"
        if partition:
            return f"{url}?view=partitions&partition={quote(partition, safe='')}"
        return url

    def run(self, run_id: str) -> str | None:
        base = self._base()
        return f"{base}/runs/{run_id}" if base else None


def _link(url: str | None, label: str) -> str | None:
    return f"<{url}|{label}>" if url else None


def _number(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _times(times: object) -> str:
    values = [str(t) for t in times] if isinstance(times, list | tuple) else []
    more = ", …" if len(values) > MAX_SAMPLE_TIMES else ""
    return ", ".join(values[:MAX_SAMPLE_TIMES]) + more


def failure_figures(metadata: Mapping[str, object]) -> list[str]:
    """The numbers behind a failed check, one short line each, from its metadata."""
    m = metadata
    lines: list[str] = []
    offending = m.get("offending_rows")
    if isinstance(m.get("offending_row_count"), int) and not (
            isinstance(offending, Mapping) and len(offending) == 1):
        lines.append(f"offending rows: {_number(m['offending_row_count'])}")
    if isinstance(offending, Mapping):
        for label, evidence in offending.items():
            if isinstance(evidence, Mapping):
                first = _times(evidence.get("first_origin_times"))
                lines.append(f"{label}: {_number(evidence.get('rows'))} rows"
                             + (f", first at {first}" if first else ""))
    if m.get("unevaluable_columns"):
        lines.append(f"cannot evaluate columns: {', '.join(map(str, m['unevaluable_columns']))}")
    threshold = m.get("max_gap_seconds_threshold")
    if isinstance(m.get("largest_gap_seconds"), int | float):
        text = f"largest hole: {_number(m['largest_gap_seconds'])} s"
        if m.get("largest_gap_after"):
            text += f" after {m['largest_gap_after']}"
        if isinstance(threshold, int | float):
            text += f" (threshold {_number(threshold)} s)"
        lines.append(text)
    for where in ("start", "end"):
        hole = m.get(f"hole_at_day_{where}_seconds")
        if isinstance(hole, int | float) and isinstance(threshold, int | float) \
                and hole > threshold:
            lines.append(f"no data for the first {_number(hole)} s of the day" if where == "start"
                         else f"no data for the last {_number(hole)} s of the day")
    if m.get("unsorted_rows"):
        lines.append(f"origin_time goes backwards {_number(m['unsorted_rows'])} times, first at "
                     f"{_times(m.get('first_unsorted_origin_times'))}")
    if m.get("rows_outside_day"):
        lines.append(f"{_number(m['rows_outside_day'])} rows outside the day, first at "
                     f"{_times(m.get('first_outside_origin_times'))}")
    if m.get("sequence_number_decreases"):
        lines.append(f"sequence_number goes backwards {_number(m['sequence_number_decreases'])} "
                     "times")
    if m.get("rows") == 0:
        lines.append("the day has no rows")
    known = {"unsorted", "outside"}
    for name, value in m.items():  # any other check's `first_<what>_origin_times` evidence
        what = name.removeprefix("first_").removesuffix("_origin_times")
        if name.startswith("first_") and name.endswith("_origin_times") and what not in known \
                and value:
            lines.append(f"first {what.replace('_', ' ')} at {_times(value)}")
    return lines


def _clip(text: str) -> str:
    return text if len(text) <= MAX_TEXT_CHARS else text[: MAX_TEXT_CHARS - 1] + "…"


def _subject(path: Sequence[str], partition: str | None) -> str:
    instrument, table = instrument_and_table(path)
    where = f"partition *{escape(partition)}*" if partition else "no partition"
    return f"*{escape(instrument)}* `{escape(table)}`, {where}"


def check_failure_text(ev: CheckEvaluation, links: Links) -> str:
    kind = "blocking" if ev.blocking else "non-blocking"
    lines = [f":rotating_light: *Check failed:* `{escape(ev.check_name)}` on "
             f"{_subject(ev.asset_path, ev.partition)} ({escape(ev.severity)}, {kind})"]
    if ev.description:
        lines.append(f"> {escape(ev.description)}")
    lines += [f"• {escape(line)}" for line in failure_figures(ev.metadata)]
    refs = [_link(links.asset(ev.asset_path, ev.check_name), "check in Dagster"),
            _link(links.asset(ev.asset_path, partition=ev.partition), "partition"),
            _link(links.run(ev.run_id), "run") if ev.run_id else None]
    refs = [r for r in refs if r]
    lines.append(" · ".join(refs) if refs else f"run {escape(ev.run_id[:8])}")
    return _clip("\n".join(lines))


def check_recovered_text(ev: CheckEvaluation, links: Links) -> str:
    text = (f":white_check_mark: *Recovered:* `{escape(ev.check_name)}` passes again on "
            f"{_subject(ev.asset_path, ev.partition)}")
    ref = _link(links.asset(ev.asset_path, ev.check_name), "check in Dagster")
    return _clip(text + (f"\n{ref}" if ref else ""))


def check_accepted_text(ev: CheckEvaluation, links: Links) -> str:
    """A failing check now passes only because its failure was accepted: say so, once."""
    accepted = ev.metadata.get("accepted")
    accepted = accepted if isinstance(accepted, Mapping) else {}
    lines = [f":white_check_mark: *Accepted vendor exception used:* `{escape(ev.check_name)}` "
             f"passes on {_subject(ev.asset_path, ev.partition)} under an acceptance",
             f"> {escape(accepted.get('reason', ''))} ({escape(accepted.get('accepted_by', ''))}, "
             f"{escape(accepted.get('accepted_at', ''))})"]
    evidence = ev.metadata.get("accepted_evidence")
    if isinstance(evidence, Mapping) and evidence.get("description"):
        lines.append(f"• accepted: {escape(evidence['description'])}")
    ref = _link(links.asset(ev.asset_path, ev.check_name), "check in Dagster")
    if ref:
        lines.append(ref)
    return _clip("\n".join(lines))


def run_failure_text(run: RunFailure, links: Links) -> str:
    targets = [f"*{escape(i)}* `{escape(t)}`"
               for i, t in (instrument_and_table(p) for p in run.asset_paths[:5])]
    if len(run.asset_paths) > 5:
        targets.append(f"and {len(run.asset_paths) - 5} more")
    what = ", ".join(targets) or f"job `{escape(run.job_name)}`"
    where = f", partition *{escape(run.partition)}*" if run.partition else ""
    retry = f", retry {run.retry_number}" if run.retry_number else ""
    lines = [f":x: *Run failed:* {what}{where} (run {escape(run.run_id[:8])}{retry}, "
             f"{escape(run.reason.lower().replace('_', ' '))})"]
    lines += [f"> {escape(error)}" for error in run.errors[:5]]
    ref = _link(links.run(run.run_id), "run in Dagster")
    if ref:
        lines.append(ref)
    return _clip("\n".join(lines))


def error_line(text: str, limit: int = 400) -> str:
    """The first line of an error, without the exception's module path."""
    first = (text or "").strip().splitlines()[0] if (text or "").strip() else "unknown error"
    first = re.sub(r"^[\w.]+(?:Error|Exception|Failure)\w*: ", "", first)
    return first if len(first) <= limit else first[: limit - 1] + "…"


# --- digests of many incidents ---------------------------------------------------------------

DIGEST_FIGURES = {  # metadata value -> how a digest names its worst
    "offending_row_count": "offending rows",
    "largest_gap_seconds": "largest hole (s)",
    "holes_over_threshold": "holes over the threshold",
    "unsorted_rows": "times going backwards",
    "rows_outside_day": "rows outside the day",
    "sequence_number_decreases": "sequence steps back",
}


def digest_figures(metadata: Mapping[str, object]) -> dict[str, float]:
    """The numbers of a failed evaluation that a digest compares (the worst one is named)."""
    return {label: float(metadata[name]) for name, label in DIGEST_FIGURES.items()
            if isinstance(metadata.get(name), int | float) and metadata[name]}


def digest_text(group: Sequence[Finding], recovered: bool, links: Links) -> str:
    """One message for many partitions failing (or passing again) one check of one
    instrument and table: the days as ranges, and the worst figures where they failed."""
    first = group[0]
    days = days_of(group)
    where = day_ranges(days, limit=20) if days else ", ".join(f.partition or "-" for f in group)
    if recovered:
        lines = [f":white_check_mark: *{len(group)} partitions recovered:* "
                 f"`{escape(first.check)}` passes again on *{escape(first.instrument)}* "
                 f"`{escape(first.table)}`: {escape(where)}"]
    else:
        lines = [f":rotating_light: *{len(group)} partitions failed* `{escape(first.check)}` "
                 f"on *{escape(first.instrument)}* `{escape(first.table)}`: {escape(where)}"]
        lines += [f"• worst {label}: {_number(value)} ({escape(partition or '-')})"
                  for label, (value, partition) in worst(group).items()]
    path = (*first.instrument.lower().replace("-", "_").split(":"), first.table)
    ref = _link(links.asset(path, first.check), "check in Dagster")
    if ref:
        lines.append(ref)
    return _clip("\n".join(lines))
