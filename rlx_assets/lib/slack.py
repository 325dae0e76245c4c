"""Posting to Slack: transports (incoming webhook, Web API, or the log), secret redaction,
and sending a queue of messages in order with Slack's rate limits honoured.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

SLACK_API_URL = "https://slack.com/api/"
REDACTED = "[redacted]"
_SECRET_PATTERNS = (
    re.compile(r"xox[a-z]-[A-Za-z0-9-]+"),  # Slack tokens
    re.compile(r"https?://hooks\.slack(?:-gov)?\.com/\S+"),  # Slack webhook URLs
)

Log = Callable[[str], None]


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

@dataclass
class Sent:
    count: int = 0  # messages taken by Slack, from the front of the queue
    stopped: str | None = None  # why sending stopped before the end of the queue


def send_in_order(
    queue: Sequence[tuple[str, str]],
    transport: Transport,
    *,
    max_messages: int = 20,
    max_wait_seconds: float = 10.0,
    budget_seconds: float = 40.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Sent:
    """Send (summary, text) messages from the front of `queue`, in order, until one is not
    taken or `max_messages` are sent. A rate limit whose Retry-After fits in
    `max_wait_seconds` (and the tick's budget) is waited out; any other refusal stops, so
    that the next tick starts at the unsent message: nothing is lost or sent twice."""
    deadline = clock() + budget_seconds
    result = Sent()
    for summary, text in queue:
        if result.count >= max_messages:
            result.stopped = f"{max_messages} messages sent, the batch for this tick"
            break
        problem = _send(transport, text, deadline, max_wait_seconds, sleep, clock)
        if problem:
            result.stopped = f"Slack did not take the alert for {summary}: {problem}"
            break
        result.count += 1
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
