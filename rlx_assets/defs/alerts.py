"""Slack alerts: one sensor, running by default, reading the instance's event log in order.

Each tick reads asset-check evaluations and run failures after the cursor and decides what
to say: a failing (instrument, table, check, partition) is one incident - one message when it
opens, none while it stays open, one when it passes again (`lib/incidents.py`; a burst of
new incidents becomes one digest per instrument, table and check) - and a failed run that no
check explains gets one message. Decided messages wait in the cursor's outbox until Slack
takes them, in order. Message text is in `lib/alert_text.py`, transports in `lib/slack.py`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import dagster as dg

from rlx_assets.defs.records import events_after, run_step_events
from rlx_assets.lib import alert_text as lib
from rlx_assets.lib import slack as transports
from rlx_assets.lib.incidents import DIGEST_AFTER, AlertCursor, Finding, Incidents, messages
from rlx_assets.settings import ALERT_MAX_AGE_HOURS, Settings, secret_values

SENSOR_NAME = "slack_alerts"
PAGE = 200  # events read per query
MAX_EVENTS_PER_TICK = 2_000  # events read per tick (most produce no message)
MAX_MESSAGES_PER_TICK = 20
RETRY_DECISION_GRACE_SECONDS = 60  # how long a failed run may lack its `dagster/will_retry` tag
EVENT_TYPES = (dg.DagsterEventType.ASSET_CHECK_EVALUATION, dg.DagsterEventType.RUN_FAILURE)
WILL_RETRY_TAG = "dagster/will_retry"
RETRY_NUMBER_TAG = "dagster/retry_number"
DEFER = "defer"


class SlackAlertsResource(dg.ConfigurableResource):
    """Where alerts go: an incoming webhook, or a bot token and channel; else the tick log."""

    webhook_url: str | None = None
    bot_token: str | None = None
    channel: str | None = None
    api_base_url: str = transports.SLACK_API_URL
    webserver_url: str | None = None
    timeout_seconds: int = 10
    max_retry_wait_seconds: float = 10.0
    max_messages_per_tick: int = MAX_MESSAGES_PER_TICK
    max_age_hours: float = ALERT_MAX_AGE_HOURS  # older events are not posted; 0: no limit
    digest_after: int = DIGEST_AFTER  # more new incidents in one tick: one digest per check

    def transport(self, log: transports.Log) -> transports.Transport:
        if self.webhook_url:
            return transports.WebhookTransport(self.webhook_url, self.timeout_seconds)
        if self.bot_token and self.channel:
            return transports.BotTransport(self.bot_token, self.channel, self.api_base_url,
                                           self.timeout_seconds)
        return transports.LogTransport(log)

    def redactor(self) -> transports.Redactor:
        """Slack secrets and vendor credentials, read when a tick runs, never logged."""
        return transports.Redactor([self.webhook_url, self.bot_token, *secret_values()])


def slack_resource(settings: Settings) -> SlackAlertsResource:
    """The resource for the Slack variables that are set; secrets are bound as `EnvVar`s."""
    alerts = settings.alerts
    fields: dict[str, object] = {"webserver_url": alerts.webserver_url,
                                 "max_age_hours": alerts.max_age_hours,
                                 "digest_after": alerts.digest_after}
    if alerts.webhook_set:
        fields["webhook_url"] = dg.EnvVar("SLACK_WEBHOOK_URL")
    if alerts.bot_token_set:
        fields["bot_token"] = dg.EnvVar("SLACK_BOT_TOKEN")
    if alerts.channel:
        fields["channel"] = alerts.channel
    if alerts.api_base_url:
        fields["api_base_url"] = alerts.api_base_url
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


@dataclass
class Reading:
    """What one tick read: findings (check evaluations), messages for failed runs, and how
    far it got (a run whose retry decision is still due stops the reading there)."""

    findings: list[Finding] = field(default_factory=list)
    runs: list[tuple[int, str, str]] = field(default_factory=list)  # (id, summary, text)
    last: int | None = None
    stopped: str | None = None


class AlertReader:
    """Turns event-log entries into findings and run-failure messages."""

    def __init__(self, instance: dg.DagsterInstance, links: lib.Links,
                 redact: transports.Redactor, horizon: float | None, now: float) -> None:
        self.instance, self.links, self.redact = instance, links, redact
        self.horizon, self.now = horizon, now
        self._runs: dict[str, dg.DagsterRun | None] = {}

    def read(self, after: int | None) -> Reading:
        reading = Reading(last=after)
        for storage_id, entry in _events(self.instance, after if after is not None else -1):
            event = entry.dagster_event
            recent = self.horizon is None or entry.timestamp >= self.horizon
            if event is not None and event.event_type == \
                    dg.DagsterEventType.ASSET_CHECK_EVALUATION:
                reading.findings.append(self._check(storage_id, entry, recent))
            elif event is not None and recent:
                outcome = self._run_failure(entry)
                if outcome == DEFER:
                    reading.stopped = (f"run {entry.run_id[:8]} failed and its retry is not "
                                       "decided yet; read again next tick")
                    return reading
                if outcome is not None:
                    reading.runs.append((storage_id, *outcome))
            reading.last = storage_id
        return reading

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

    def _check(self, storage_id: int, entry: dg.EventLogEntry, recent: bool) -> Finding:
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
        write = (lib.check_failure_text if not ev.passed else lib.check_accepted_text
                 if "accepted" in plain.metadata else lib.check_recovered_text)
        instrument, table = lib.instrument_and_table(plain.asset_path)
        return Finding(storage_id, instrument, table, plain.check_name, plain.partition,
                       plain.passed, lambda: self.redact(write(plain, self.links)),
                       lib.digest_figures(plain.metadata), recent)

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

    def _run_failure(self, entry: dg.EventLogEntry) -> tuple[str, str] | str | None:
        """(summary, text) for a failed run worth a message, None, or DEFER."""
        run = self._run(entry.run_id)
        summary = f"run {entry.run_id[:8]} failed"
        if run is None:
            return None  # deleted since
        will_retry = run.tags.get(WILL_RETRY_TAG)
        if will_retry is None and self.instance.run_retries_enabled \
                and self.now - entry.timestamp < RETRY_DECISION_GRACE_SECONDS:
            return DEFER  # the retry decision is due
        steps, planned = self._run_steps(run.run_id)
        failure = entry.dagster_event.event_specific_data  # JobFailureData, or None
        reason_enum = getattr(failure, "failure_reason", None)
        reason = reason_enum.value if reason_enum is not None else \
            run.tags.get("dagster/failure_reason") or "UNKNOWN"
        if not lib.run_failure_worth_alerting(reason, steps, will_retry == "true"):
            return None  # retried, or explained by the failed checks' own messages
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
        return summary, self.redact(lib.run_failure_text(plain, self.links))


def alert_tick(context: dg.SensorEvaluationContext, slack: SlackAlertsResource) -> dg.SensorResult:
    redact = slack.redactor()
    transport = slack.transport(lambda text: context.log.info(redact(text)))
    cursor = AlertCursor.parse(context.cursor)
    now = time.time()
    read = Reading(last=cursor.after)
    if not cursor.full:  # Slack has taken too little for too long: read no further yet
        links = lib.Links(slack.webserver_url)
        reader = AlertReader(context.instance, links, redact,
                             now - slack.max_age_hours * 3600 if slack.max_age_hours > 0
                             else None, now)
        read = reader.read(cursor.after)
        incidents = Incidents(cursor.open)
        opened, closed = incidents.triage(read.findings)  # old events count, unannounced
        decided = read.runs + messages(
            [f for f in opened if f.recent], [f for f in closed if f.recent],
            lambda group, recovered: redact(lib.digest_text(group, recovered, links)),
            slack.digest_after)
        cursor.outbox += [(summary, text) for _, summary, text in
                          sorted(decided, key=lambda m: m[0])]  # in event order
        cursor.open, cursor.after = incidents.open, read.last
    sent = transports.send_in_order(cursor.outbox, transport,
                                    max_messages=slack.max_messages_per_tick,
                                    max_wait_seconds=slack.max_retry_wait_seconds)
    for summary, _ in cursor.outbox[:sent.count]:
        context.log.info(redact(f"Alert via {transport.description}: {summary}."))
    cursor.outbox = cursor.outbox[sent.count:]
    stopped = sent.stopped or read.stopped
    if stopped:
        context.log.warning(redact(f"{stopped}. The next tick resumes from there."))
    text = (f"{sent.count} alert(s) sent; {len(cursor.open)} incident(s) open; "
            f"{len(cursor.outbox)} message(s) waiting")
    return dg.SensorResult(skip_reason=redact(text + (f"; stopped: {stopped}" if stopped
                                                      else "")),
                           cursor=cursor.dump())


def build_alert_sensors(settings: Settings) -> list[dg.SensorDefinition]:
    interval = settings.alerts.interval_seconds

    @dg.sensor(
        name=SENSOR_NAME,
        minimum_interval_seconds=interval,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Posts to Slack one message when a (instrument, table, check, partition) "
                    "starts failing (with its figures; a burst becomes one digest per check) "
                    "and one when it passes again, and one per failed run not explained by a "
                    "check. Logs the messages if Slack is not set up.",
    )
    def slack_alerts(context: dg.SensorEvaluationContext,
                     slack: SlackAlertsResource) -> dg.SensorResult:
        return alert_tick(context, slack)

    return [slack_alerts]
