"""Slack alerts: one sensor, running by default, reading the instance's event log in order.

Each tick reads asset-check evaluations and run failures after the cursor (the storage id of
the last event handled), posts one message per failed evaluation, per failed run that no check
alert already explains and per partition whose check passes again after failing, and moves the
cursor only past events it has handled. Message text and transports live in `lib/alerts.py`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping

import dagster as dg

from rlx_assets.defs.records import events_after, previous_evaluation_failed, run_step_events
from rlx_assets.defs.resources import CREDENTIAL_NAMES
from rlx_assets.lib import alerts as lib
from rlx_assets.settings import ConfigError

SENSOR_NAME = "slack_alerts"
DEFAULT_INTERVAL_SECONDS = 30
DEFAULT_MAX_AGE_HOURS = 24.0
PAGE = 200  # events read per query
MAX_EVENTS_PER_TICK = 2_000  # events read per tick (most produce no message)
MAX_MESSAGES_PER_TICK = 20
RETRY_DECISION_GRACE_SECONDS = 60  # how long a failed run may lack its `dagster/will_retry` tag
EVENT_TYPES = (dg.DagsterEventType.ASSET_CHECK_EVALUATION, dg.DagsterEventType.RUN_FAILURE)
SECRET_VARIABLES = ("SLACK_WEBHOOK_URL", "SLACK_BOT_TOKEN",
                    *(name for names in CREDENTIAL_NAMES.values() for name in names))
WILL_RETRY_TAG = "dagster/will_retry"
RETRY_NUMBER_TAG = "dagster/retry_number"


class SlackAlertsResource(dg.ConfigurableResource):
    """Where alerts go: an incoming webhook, or a bot token and channel; else the tick log."""

    webhook_url: str | None = None
    bot_token: str | None = None
    channel: str | None = None
    api_base_url: str = lib.SLACK_API_URL
    webserver_url: str | None = None
    timeout_seconds: int = 10
    max_retry_wait_seconds: float = 10.0
    max_messages_per_tick: int = MAX_MESSAGES_PER_TICK
    max_age_hours: float = DEFAULT_MAX_AGE_HOURS  # older events are not posted; 0: no limit

    def transport(self, log: lib.Log) -> lib.Transport:
        if self.webhook_url:
            return lib.WebhookTransport(self.webhook_url, self.timeout_seconds)
        if self.bot_token and self.channel:
            return lib.BotTransport(self.bot_token, self.channel, self.api_base_url,
                                    self.timeout_seconds)
        return lib.LogTransport(log)

    def redactor(self) -> lib.Redactor:
        """Slack secrets and vendor credentials, read when a tick runs, never logged."""
        return lib.Redactor([self.webhook_url, self.bot_token,
                             *(os.environ.get(name) for name in SECRET_VARIABLES)])


def _number(env: Mapping[str, str], name: str, default: float, minimum: float = 0) -> float:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
        if value < minimum:
            raise ValueError
    except ValueError:
        raise ConfigError(f"{name}={text!r} is not a number of at least {minimum:g}.") from None
    return value


def slack_resource_from_env(env: Mapping[str, str] | None = None) -> SlackAlertsResource:
    """The resource for the variables that are set; secret values are bound as `EnvVar`s."""
    env = os.environ if env is None else env

    def present(name: str) -> bool:
        return bool(env.get(name, "").strip())

    if present("SLACK_BOT_TOKEN") and not present("SLACK_WEBHOOK_URL") \
            and not present("SLACK_CHANNEL"):
        raise ConfigError("SLACK_BOT_TOKEN is set but SLACK_CHANNEL is not; set SLACK_CHANNEL "
                          "to the channel alerts go to (e.g. #market-data-alerts).")
    webserver = env.get("DAGSTER_WEBSERVER_URL", "").strip() or None
    if webserver and not webserver.startswith(("http://", "https://")):
        raise ConfigError(f"DAGSTER_WEBSERVER_URL={webserver!r} is not an http(s) URL; use the "
                          "address people open the Dagster UI at, e.g. http://dagster:3000.")
    fields: dict[str, object] = {
        "webserver_url": webserver,
        "max_age_hours": _number(env, "RLX_ALERT_MAX_AGE_HOURS", DEFAULT_MAX_AGE_HOURS),
    }
    if present("SLACK_WEBHOOK_URL"):
        fields["webhook_url"] = dg.EnvVar("SLACK_WEBHOOK_URL")
    if present("SLACK_BOT_TOKEN"):
        fields["bot_token"] = dg.EnvVar("SLACK_BOT_TOKEN")
    if present("SLACK_CHANNEL"):
        fields["channel"] = env["SLACK_CHANNEL"].strip()
    if present("SLACK_API_BASE_URL"):
        fields["api_base_url"] = env["SLACK_API_BASE_URL"].strip()
    return SlackAlertsResource(**fields)


def _events(instance: dg.DagsterInstance, after: int) -> Iterator[tuple[int, dg.EventLogEntry]]:
    """Check evaluations and run failures after `after`, in storage order, page by page."""
    read = 0
    while read < MAX_EVENTS_PER_TICK:
        page = list(events_after(instance, after, EVENT_TYPES, PAGE))
        yield from page
        if len(page) < PAGE:
            return
        read += len(page)
        after = page[-1][0]


class AlertReader:
    """Turns event-log entries into `lib.Alert`s (a message, nothing, or "ask again later")."""

    def __init__(self, instance: dg.DagsterInstance, links: lib.Links, redact: lib.Redactor,
                 horizon: float | None, now: float) -> None:
        self.instance, self.links, self.redact = instance, links, redact
        self.horizon, self.now = horizon, now
        self._runs: dict[str, dg.DagsterRun | None] = {}

    def alerts(self, after: int) -> Iterator[lib.Alert]:
        for storage_id, entry in _events(self.instance, after):
            yield self.alert(storage_id, entry)

    def alert(self, storage_id: int, entry: dg.EventLogEntry) -> lib.Alert:
        event = entry.dagster_event
        if event is None:
            return lib.Alert(storage_id, f"event {storage_id}")
        if self.horizon is not None and entry.timestamp < self.horizon:
            return lib.Alert(storage_id, f"event {storage_id}: older than RLX_ALERT_MAX_AGE_HOURS")
        if event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            return self._check(storage_id, entry)
        return self._run_failure(storage_id, entry)

    def _run(self, run_id: str) -> dg.DagsterRun | None:
        if run_id not in self._runs:
            self._runs[run_id] = self.instance.get_run_by_id(run_id)
        return self._runs[run_id]

    def _run_partition(self, run: dg.DagsterRun | None) -> str | None:
        tags = run.tags if run else {}
        start = tags.get("dagster/asset_partition_range_start")
        end = tags.get("dagster/asset_partition_range_end")
        if start and end:
            return start if start == end else f"{start}…{end}"
        return tags.get("dagster/partition")

    def _check(self, storage_id: int, entry: dg.EventLogEntry) -> lib.Alert:
        ev = entry.dagster_event.event_specific_data
        plain = lib.CheckEvaluation(
            asset_path=tuple(ev.asset_key.path),
            check_name=ev.check_name,
            passed=ev.passed,
            partition=ev.partition or self._run_partition(self._run(entry.run_id)),
            severity=ev.severity.value,
            blocking=bool(ev.blocking),
            description=ev.description,
            metadata={name: getattr(value, "value", value) for name, value in ev.metadata.items()},
            run_id=entry.run_id,
        )
        summary = (f"{plain.check_name} on {ev.asset_key.to_user_string()} "
                   f"{plain.partition or '(no partition)'}: {'passed' if ev.passed else 'FAILED'}")
        if not ev.passed:
            return lib.Alert(storage_id, summary, self.redact(lib.check_failure_text(plain,
                                                                                    self.links)))
        if self._failed_before(ev, entry.run_id):
            if "accepted" in plain.metadata:
                return lib.Alert(storage_id, summary + " under an accepted exception",
                                 self.redact(lib.check_accepted_text(plain, self.links)))
            return lib.Alert(storage_id, summary + " again",
                             self.redact(lib.check_recovered_text(plain, self.links)))
        return lib.Alert(storage_id, summary)

    def _failed_before(self, ev, run_id: str) -> bool:
        """Whether the evaluation of the same check and partition before this one failed."""
        return previous_evaluation_failed(self.instance, dg.AssetCheckKey(ev.asset_key,
                                                                          ev.check_name),
                                          ev.partition, run_id)

    def _run_steps(self, run_id: str) -> tuple[list[lib.StepFailure], dict[str, set]]:
        """The run's failed steps, and the assets each step was to materialise."""
        steps: list[lib.StepFailure] = []
        planned: dict[str, set[tuple[str, ...]]] = {}
        for entry in run_step_events(self.instance, run_id, {
                dg.DagsterEventType.STEP_FAILURE,
                dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED}):
            event = entry.dagster_event
            step_key = entry.step_key or ""
            if event is None:
                continue
            if event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED:
                if event.asset_key is not None:
                    planned.setdefault(step_key, set()).add(tuple(event.asset_key.path))
                continue
            data = event.event_specific_data
            error = getattr(data, "error", None)
            user = getattr(data, "user_failure_data", None)
            steps.append(lib.StepFailure(
                step_key, error.cls_name if error else "",
                user.description if user and user.description
                else lib.error_line(error.message if error else "")))
        return steps, planned

    @staticmethod
    def _failed_assets(run: dg.DagsterRun, steps: list[lib.StepFailure],
                       planned: dict[str, set]) -> tuple[tuple[str, ...], ...]:
        failed = {path for s in steps if s.error_class != lib.CHECK_FAILED_ERROR
                  for path in planned.get(s.step_key, ())}
        if not failed:  # the run failed outside a step: name everything it was to build
            failed = {path for paths in planned.values() for path in paths} or {
                tuple(k.path) for k in run.asset_selection or ()}
        return tuple(sorted(failed))

    def _run_failure(self, storage_id: int, entry: dg.EventLogEntry) -> lib.Alert:
        run = self._run(entry.run_id)
        summary = f"run {entry.run_id[:8]} failed"
        if run is None:
            return lib.Alert(storage_id, summary + " (run deleted)")
        will_retry = run.tags.get(WILL_RETRY_TAG)
        if will_retry is None and self.instance.run_retries_enabled \
                and self.now - entry.timestamp < RETRY_DECISION_GRACE_SECONDS:
            return lib.Alert(storage_id, summary, defer=True)  # the retry decision is due
        steps, planned = self._run_steps(run.run_id)
        failure = entry.dagster_event.event_specific_data  # JobFailureData, or None
        reason_enum = getattr(failure, "failure_reason", None)
        reason = reason_enum.value if reason_enum is not None else \
            run.tags.get("dagster/failure_reason") or "UNKNOWN"
        if not lib.run_failure_worth_alerting(reason, steps, will_retry == "true"):
            return lib.Alert(storage_id, summary + " (not alerted: retried or check failures)")
        run_error = getattr(failure, "error", None)
        errors = [s.text for s in steps if s.error_class != lib.CHECK_FAILED_ERROR] or [
            lib.error_line(run_error.message) if run_error is not None
            else (entry.message or "no error recorded")]
        plain = lib.RunFailure(
            run_id=run.run_id,
            job_name=run.job_name,
            partition=self._run_partition(run),
            asset_paths=self._failed_assets(run, steps, planned),
            reason=reason,
            errors=tuple(dict.fromkeys(errors)),
            retry_number=int(run.tags.get(RETRY_NUMBER_TAG, "0") or 0),
        )
        return lib.Alert(storage_id, summary, self.redact(lib.run_failure_text(plain,
                                                                              self.links)))


def _parse_cursor(cursor: str | None) -> int | None:
    return int(cursor) if cursor and cursor.strip().lstrip("-").isdigit() else None


def alert_tick(context: dg.SensorEvaluationContext, slack: SlackAlertsResource) -> dg.SensorResult:
    redact = slack.redactor()
    transport = slack.transport(lambda text: context.log.info(redact(text)))
    cursor = _parse_cursor(context.cursor)
    now = time.time()
    reader = AlertReader(context.instance, lib.Links(slack.webserver_url), redact,
                         now - slack.max_age_hours * 3600 if slack.max_age_hours > 0 else None,
                         now)
    result = lib.deliver(reader.alerts(cursor if cursor is not None else -1), transport,
                         cursor=cursor, max_messages=slack.max_messages_per_tick,
                         max_wait_seconds=slack.max_retry_wait_seconds)
    for summary in result.sent:
        context.log.info(redact(f"Alert via {transport.description}: {summary}."))
    if result.stopped:
        context.log.warning(redact(f"Stopped after {result.handled} event(s): {result.stopped}. "
                                   "The next tick resumes from there."))
    text = f"{len(result.sent)} alert(s) sent for {result.handled} event(s) read"
    if result.stopped:
        text += f"; stopped: {result.stopped}"
    return dg.SensorResult(
        skip_reason=redact(text),
        cursor=str(result.cursor) if result.cursor is not None else context.cursor,
    )


def build_alert_sensors(env: Mapping[str, str] | None = None) -> list[dg.SensorDefinition]:
    env = os.environ if env is None else env
    interval = int(_number(env, "RLX_ALERT_INTERVAL_SECONDS", DEFAULT_INTERVAL_SECONDS, 1))

    @dg.sensor(
        name=SENSOR_NAME,
        minimum_interval_seconds=interval,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Posts to Slack one message per failed asset-check evaluation (with its "
                    "figures), per failed run not explained by a check, and when a failed "
                    "partition's check passes again. Logs the messages if Slack is not set up.",
    )
    def slack_alerts(context: dg.SensorEvaluationContext,
                     slack: SlackAlertsResource) -> dg.SensorResult:
        return alert_tick(context, slack)

    return [slack_alerts]
