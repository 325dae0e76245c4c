"""Slack alerts without Dagster: message text, transports, secret redaction, in-order delivery.

Messages are Slack mrkdwn text built from plain values (a check evaluation, a failed run), so
they are testable without an instance. `deliver` sends them in event-log order and stops at the
first one Slack does not take: the caller's cursor then points at the last event handled, so a
later tick resumes there and nothing is lost or sent twice.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import quote, urlsplit

SLACK_API_URL = "https://slack.com/api/"
MAX_TEXT_CHARS = 3000  # well below Slack's limits, so no alert is ever rejected for its size
MAX_SAMPLE_TIMES = 3
REDACTED = "[redacted]"
_SECRET_PATTERNS = (
    re.compile(r"xox[a-z]-[A-Za-z0-9-]+"),  # Slack tokens
    re.compile(r"https?://hooks\.slack(?:-gov)?\.com/\S+"),  # Slack webhook URLs
)

Log = Callable[[str], None]


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


# --- secrets -------------------------------------------------------------------------------

class Redactor:
    """Removes known secret values (and anything shaped like a Slack token or webhook URL)."""

    def __init__(self, secrets: Iterable[str | None]) -> None:
        values: set[str] = set()
        for secret in filter(None, secrets):
            values.add(secret)
            path = urlsplit(secret).path if "://" in secret else ""
            if len(path) >= 8:  # a webhook URL's path is the secret part
                values.add(path)
        # Short values would redact ordinary words; credentials are long.
        self._values = sorted((v for v in values if len(v) >= 6), key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for value in self._values:
            text = text.replace(value, REDACTED)
        for pattern in _SECRET_PATTERNS:
            text = pattern.sub(REDACTED, text)
        return text


# --- transports ----------------------------------------------------------------------------

class SlackUnavailable(Exception):
    """Slack did not take a message; `retry_after` is its Retry-After in seconds, if any."""

    def __init__(self, detail: str, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after


class Transport(Protocol):
    description: str

    def send(self, text: str) -> None:
        """Post one message or raise `SlackUnavailable`."""


def _quiet_logger() -> logging.Logger:
    """slack_sdk logs request URLs (a webhook URL is a secret) on retries and at debug level."""
    logger = logging.getLogger("rlx_assets.alerts.slack_sdk")
    logger.propagate = False
    logger.setLevel(logging.CRITICAL)
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
    return logger


def retry_after_seconds(headers: Mapping[str, object] | None) -> float | None:
    for name, value in (headers or {}).items():
        if name.lower() == "retry-after":
            raw = value[0] if isinstance(value, list | tuple) and value else value
            try:
                return max(0.0, float(str(raw)))
            except ValueError:
                return None
    return None


class WebhookTransport:
    description = "Slack incoming webhook"

    def __init__(self, url: str, timeout_seconds: int = 10) -> None:
        from slack_sdk.webhook import WebhookClient

        self._client = WebhookClient(url, timeout=timeout_seconds, logger=_quiet_logger(),
                                     retry_handlers=[])

    def send(self, text: str) -> None:
        try:
            response = self._client.send(text=text, unfurl_links=False, unfurl_media=False)
        except Exception as exc:  # connection refused, timeout, DNS: all mean "not now"
            raise SlackUnavailable(f"request failed: {type(exc).__name__}: {exc}") from None
        if response.status_code != 200:
            raise SlackUnavailable(
                f"answered HTTP {response.status_code} {str(response.body)[:100]!r}",
                retry_after_seconds(response.headers),
            )


class BotTransport:
    description = "Slack Web API (chat.postMessage)"

    def __init__(self, token: str, channel: str, base_url: str = SLACK_API_URL,
                 timeout_seconds: int = 10) -> None:
        from slack_sdk import WebClient

        self._channel = channel
        self._client = WebClient(token=token, base_url=base_url.rstrip("/") + "/",
                                 timeout=timeout_seconds, logger=_quiet_logger(),
                                 retry_handlers=[])

    def send(self, text: str) -> None:
        from slack_sdk.errors import SlackApiError

        try:
            self._client.chat_postMessage(channel=self._channel, text=text, unfurl_links=False,
                                          unfurl_media=False)
        except SlackApiError as exc:
            response = exc.response
            error = response.get("error") if isinstance(response.data, dict) else None
            raise SlackUnavailable(f"answered HTTP {response.status_code} ({error})",
                                   retry_after_seconds(response.headers)) from None
        except Exception as exc:
            raise SlackUnavailable(f"request failed: {type(exc).__name__}: {exc}") from None


class LogTransport:
    """No Slack configured: log what would have been sent; never fails."""

    description = "log only (set SLACK_WEBHOOK_URL, or SLACK_BOT_TOKEN and SLACK_CHANNEL)"

    def __init__(self, log: Log) -> None:
        self._log = log

    def send(self, text: str) -> None:
        self._log(f"Slack is not configured; would have sent:\n{text}")


# --- delivery ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Alert:
    """The outcome of reading one event: a message to send, nothing (`text=None`), or
    `defer` when the event cannot be judged yet and must be read again on a later tick."""

    storage_id: int
    summary: str
    text: str | None = None
    defer: bool = False


@dataclass
class Delivery:
    cursor: int | None
    sent: list[str] = field(default_factory=list)
    handled: int = 0
    stopped: str | None = None  # why the tick stopped before the end of the events read


def deliver(
    alerts: Iterable[Alert],
    transport: Transport,
    *,
    cursor: int | None,
    max_messages: int = 20,
    max_wait_seconds: float = 10.0,
    budget_seconds: float = 40.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Delivery:
    """Send alerts in order; the returned cursor is the storage id of the last event handled.

    A rate limit whose Retry-After fits in `max_wait_seconds` (and the tick's budget) is waited
    out; any other refusal stops the tick so that the next one starts at the unsent alert.
    """
    deadline = clock() + budget_seconds
    result = Delivery(cursor=cursor)
    for alert in alerts:
        if alert.defer:
            result.stopped = f"{alert.summary}: not decidable yet, read again next tick"
            break
        if alert.text is not None:
            if len(result.sent) >= max_messages:
                result.stopped = f"{max_messages} messages sent, the batch for this tick"
                break
            problem = _send(transport, alert.text, deadline, max_wait_seconds, sleep, clock)
            if problem:
                result.stopped = f"Slack did not take the alert for {alert.summary}: {problem}"
                break
            result.sent.append(alert.summary)
        result.cursor = alert.storage_id
        result.handled += 1
    return result


def _send(transport: Transport, text: str, deadline: float, max_wait: float,
          sleep: Callable[[float], None], clock: Callable[[], float]) -> str | None:
    """None once sent, else why not."""
    for _attempt in range(3):
        if clock() > deadline:
            return "out of time for this tick"
        try:
            transport.send(text)
            return None
        except SlackUnavailable as exc:
            wait = exc.retry_after
            if wait is None or wait > max_wait or clock() + wait > deadline:
                later = f" (Retry-After {wait:g} s)" if wait is not None else ""
                return f"{exc.detail}{later}"
            sleep(wait)
    return "still rate limited after waiting"
