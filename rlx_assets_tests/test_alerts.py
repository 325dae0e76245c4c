"""Slack alerts from check evaluations and failed runs, against a loopback Slack: incidents
(one message when a check starts failing, one when it passes again, digests for bursts),
failed runs, outages and rate limits, secrets."""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from rlx_assets.definitions import build_definitions
from rlx_assets.defs.alerts import (
    SENSOR_NAME,
    SlackAlertsResource,
    build_alert_sensors,
    slack_resource,
)
from rlx_assets.lib import alert_text as lib
from rlx_assets.lib import slack as transports
from rlx_assets.lib.demo_data import write_day
from rlx_assets.lib.demo_faults import Fault
from rlx_assets.lib.incidents import AlertCursor, Finding, Incidents, messages
from rlx_assets.settings import ConfigError, Settings
from rlx_assets_tests.conftest import materialize_day, settings_for
from rlx_assets_tests.slack_stand_in import BOT_TOKEN, WEBHOOK_PATH, SlackStandIn
from rlx_assets_tests.stand_ins import BTC, FAKE_KEY_ID, FAKE_SECRET

BAD_PRICE_DAY, CLEAN_DAY, HOLE_DAY, MISSING_DAY = (dt.date(2024, 1, d) for d in (2, 3, 4, 5))
ROWS = 2_000
TRADES = "binance/btc_usdt/trades"


# --- fixtures ------------------------------------------------------------------------------

def write_vendor_days(source: Path) -> None:
    """01-02 fails positive_prices, 01-03 is clean, 01-04 fails temporal_continuity, 01-05 is
    missing (the run fails without a check)."""
    write_day(source, "trades", BTC, BAD_PRICE_DAY, rows=ROWS, fault=Fault.NEGATIVE_PRICE)
    write_day(source, "trades", BTC, CLEAN_DAY, rows=ROWS)
    write_day(source, "trades", BTC, HOLE_DAY, rows=ROWS, fault=Fault.HOLE)


@pytest.fixture(scope="module")
def lake_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("alerts_lake")
    write_vendor_days(root / "vendor")
    return {"CRYPTO_LAKE_SOURCE": str(root / "vendor"), "RLX_LAKE_ROOT": str(root / "lake")}


@pytest.fixture(scope="module")
def failing_instance(lake_env: dict[str, str]) -> Iterator[dg.DagsterInstance]:
    """A persistent instance (run-sharded SQLite, Dagster's local default) holding two failed
    check evaluations, passed ones, and one run that failed for a missing vendor day."""
    with pytest.MonkeyPatch.context() as mp:
        for name in [n for n in os.environ if n.startswith(("SLACK_", "RLX_ALERT"))]:
            mp.delenv(name)
        with dg.instance_for_test() as instance:
            outcomes = [materialize_day(lake_env, "trades", day, instance).success
                        for day in (BAD_PRICE_DAY, CLEAN_DAY, HOLE_DAY, MISSING_DAY)]
            assert outcomes == [False, True, False, False]
            yield instance


@pytest.fixture
def slack() -> Iterator[SlackStandIn]:
    with SlackStandIn() as stand_in:
        yield stand_in


def tick(instance: dg.DagsterInstance, resource: SlackAlertsResource,
         cursor: str | None = None) -> dg.SensorResult:
    sensor = build_alert_sensors(Settings.from_env())[0]
    context = dg.build_sensor_context(instance=instance, cursor=cursor,
                                      resources={"slack": resource})
    return sensor(context)


def read_to(cursor: str | None) -> int | None:
    """How far the sensor has read the event log, from its cursor."""
    return AlertCursor.parse(cursor).after


def waiting(cursor: str | None) -> int:
    """Messages decided and not yet taken by Slack."""
    return len(AlertCursor.parse(cursor).outbox)


def handled_ids(instance: dg.DagsterInstance) -> list[int]:
    storage = instance.event_log_storage
    ids: list[int] = []
    for event_type in (dg.DagsterEventType.ASSET_CHECK_EVALUATION,
                       dg.DagsterEventType.RUN_FAILURE):
        ids += storage.get_logs_for_all_runs_by_log_id(dagster_event_type=event_type)
    return sorted(ids)


def failure_ids(instance: dg.DagsterInstance) -> dict[str, int]:
    """Storage id of each failed check evaluation, by check name."""
    got = instance.event_log_storage.get_logs_for_all_runs_by_log_id(
        dagster_event_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    return {e.dagster_event.event_specific_data.check_name: i for i, e in got.items()
            if not e.dagster_event.event_specific_data.passed}


# --- pure message building -----------------------------------------------------------------

POSITIVE_FAIL = lib.CheckEvaluation(
    asset_path=("binance", "btc_usdt", "book_delta_v2"), check_name="positive_prices",
    passed=False, partition="2024-03-07", description="price is null or not positive (3 rows)",
    metadata={"offending_row_count": 5, "offending_rows": {
        "price is null or not positive": {"rows": 3, "first_origin_times": [
            "2024-03-07T00:00:01Z", "2024-03-07T00:00:02Z", "2024-03-07T00:00:03Z",
            "2024-03-07T00:00:04Z"]},
        "size is negative": {"rows": 2, "first_origin_times": ["2024-03-07T01:00:00Z"]}}},
    run_id="0123456789abcdef")
GAP_FAIL = lib.CheckEvaluation(
    asset_path=("binance", "eth_usdt", "book"), check_name="temporal_continuity", passed=False,
    partition="2024-03-08", description="a 10,800 s hole after 2024-03-08T02:00:00Z exceeds 120 s",
    metadata={"largest_gap_seconds": 10800.0, "largest_gap_after": "2024-03-08T02:00:00Z",
              "max_gap_seconds_threshold": 120, "unsorted_rows": 4,
              "first_unsorted_origin_times": ["2024-03-08T05:00:00Z"], "rows_outside_day": 0,
              "first_outside_origin_times": [], "hole_at_day_end_seconds": 600.0,
              "hole_at_day_start_seconds": 1.0, "rows": 17000},
    run_id="fedcba9876543210")


@pytest.mark.parametrize(("evaluation", "expected"), [
    (POSITIVE_FAIL, ["*BINANCE:BTC-USDT* `book_delta_v2`", "`positive_prices`",
                     "partition *2024-03-07*", "offending rows: 5",
                     "price is null or not positive: 3 rows, first at 2024-03-07T00:00:01Z, "
                     "2024-03-07T00:00:02Z, 2024-03-07T00:00:03Z, …",
                     "size is negative: 2 rows, first at 2024-03-07T01:00:00Z"]),
    (GAP_FAIL, ["*BINANCE:ETH-USDT* `book`", "`temporal_continuity`", "partition *2024-03-08*",
                "largest hole: 10,800 s after 2024-03-08T02:00:00Z (threshold 120 s)",
                "origin_time goes backwards 4 times, first at 2024-03-08T05:00:00Z",
                "no data for the last 600 s of the day"]),
])
def test_check_failure_text_names_what_failed_and_why(evaluation: lib.CheckEvaluation,
                                                      expected: list[str]) -> None:
    text = lib.check_failure_text(evaluation, lib.Links())
    for part in expected:
        assert part in text
    assert "(ERROR, blocking)" in text
    assert "http" not in text and "outside the day" not in text and "first 1.0 s" not in text
    linked = lib.check_failure_text(evaluation, lib.Links("http://dagster.example:3000/"))
    path = "/".join(evaluation.asset_path)
    assert (f"<http://dagster.example:3000/assets/{path}?view=checks&checkDetail="
            f"{evaluation.check_name}|check in Dagster>") in linked
    assert f"<http://dagster.example:3000/runs/{evaluation.run_id}|run>" in linked


def test_message_text_escapes_slack_control_characters() -> None:
    evaluation = lib.CheckEvaluation(("x", "y", "t"), "c", False, "p",
                                     description="<!channel> a & b")
    text = lib.check_failure_text(evaluation, lib.Links())
    assert "&lt;!channel&gt; a &amp; b" in text and "<!channel>" not in text


@pytest.mark.parametrize(("reason", "classes", "will_retry", "alert"), [
    ("STEP_FAILURE", ["DagsterAssetCheckFailedError"], False, False),
    ("STEP_FAILURE", ["DagsterAssetCheckFailedError", "Failure"], False, True),
    ("STEP_FAILURE", ["Failure"], False, True),
    ("STEP_FAILURE", ["Failure"], True, False),
    ("RUN_EXCEPTION", [], False, True),
    ("UNEXPECTED_TERMINATION", ["DagsterAssetCheckFailedError"], False, True),
])
def test_which_failed_runs_are_alerted(reason: str, classes: list[str], will_retry: bool,
                                       alert: bool) -> None:
    steps = [lib.StepFailure("s", cls, "text") for cls in classes]
    assert lib.run_failure_worth_alerting(reason, steps, will_retry) is alert


def test_redactor_removes_secrets_and_anything_shaped_like_slack_credentials() -> None:
    redact = transports.Redactor(["http://127.0.0.1:9/services/T1/B1/secretpath123",
                                  FAKE_SECRET, "", None, "abc"])
    text = redact(f"a {FAKE_SECRET} b /services/T1/B1/secretpath123 c xoxb-123-abc "
                  "https://hooks.slack.com/services/T9/B9/zzz abc")
    assert FAKE_SECRET not in text and "secretpath123" not in text
    assert "xoxb" not in text and "hooks.slack.com" not in text
    assert text.endswith(" abc")  # short values are not treated as secrets


class _Recorder:
    description = "recorder"

    def __init__(self) -> None:
        self.sent: list[str] = []

    def send(self, text: str) -> None:
        self.sent.append(text)


def test_send_in_order_stops_at_the_first_refusal_and_at_the_batch_bound() -> None:
    class Refusing(_Recorder):
        def send(self, text: str) -> None:
            if text == "two":
                raise transports.SlackUnavailable("down")
            super().send(text)

    transport = Refusing()
    queue = [("a", "one"), ("b", "two"), ("c", "three")]
    result = transports.send_in_order(queue, transport)
    assert transport.sent == ["one"] and result.count == 1 and "down" in result.stopped
    bounded = transports.send_in_order([("c", "three"), ("d", "four")], transport,
                                       max_messages=1)
    assert transport.sent == ["one", "three"] and bounded.count == 1


def _finding(n: int, passed: bool, day: int = 2, check: str = "positive_prices") -> Finding:
    return Finding(n, "BINANCE:BTC-USDT", "trades", check, f"2024-01-{day:02d}", passed,
                   f"text {n}", {"offending rows": float(day)})


def test_a_failing_partition_is_one_incident_until_it_passes() -> None:
    incidents = Incidents()
    opened, closed = incidents.triage([_finding(1, False), _finding(2, False),  # two runs
                                       _finding(3, False, day=3)])
    assert [f.storage_id for f in opened] == [1, 3] and closed == []
    opened, closed = incidents.triage([_finding(4, False), _finding(5, True),
                                       _finding(6, True), _finding(7, False)])
    assert [f.storage_id for f in opened] == [7] and [f.storage_id for f in closed] == [5]
    assert set(incidents.open) == {"BINANCE:BTC-USDT|trades|positive_prices|2024-01-02",
                                   "BINANCE:BTC-USDT|trades|positive_prices|2024-01-03"}


def test_a_burst_of_incidents_becomes_one_digest_per_check() -> None:
    opened = [_finding(n, False, day=n) for n in (1, 2, 3, 5)] + \
        [_finding(10 + n, False, day=n, check="schema") for n in (1, 2)]
    few = messages(opened, [], lambda g, r: "digest", digest_after=10)
    assert [text for *_, text in few] == [f.text for f in sorted(opened,
                                                                 key=lambda f: f.storage_id)]
    out = messages(opened, [], lambda g, r: lib.digest_text(g, r, lib.Links()),
                   digest_after=3)
    assert len(out) == 2
    prices, schema = (text for *_, text in out)
    assert "*4 partitions failed* `positive_prices` on *BINANCE:BTC-USDT* `trades`" in prices
    assert "2024-01-01..2024-01-03, 2024-01-05" in prices
    assert "worst offending rows: 5.0 (2024-01-05)" in prices
    assert "*2 partitions failed* `schema`" in schema
    closed = messages([], opened[:4], lambda g, r: lib.digest_text(g, r, lib.Links()),
                      digest_after=3)
    assert [text.split(":")[1] for *_, text in closed] == ["white_check_mark"]
    assert "*4 partitions recovered:*" in closed[0][2]


def test_the_cursor_reads_its_earlier_form_and_round_trips() -> None:
    assert AlertCursor.parse("42") == AlertCursor(after=42)
    assert AlertCursor.parse(None) == AlertCursor() == AlertCursor.parse("not json")
    cursor = AlertCursor(7, {"k": 3}, [("s", "t")])
    assert AlertCursor.parse(cursor.dump()) == cursor


# --- the sensor against a real instance ----------------------------------------------------

def test_failed_checks_and_failed_run_alert_once_each(
        failing_instance: dg.DagsterInstance, lake_env: dict[str, str], slack: SlackStandIn,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Wired through the real definitions (resource from the environment, EnvVar secrets)."""
    slack_env = {"SLACK_WEBHOOK_URL": slack.webhook_url,
                 "DAGSTER_WEBSERVER_URL": "http://dagster.example:3000"}
    for name, value in slack_env.items():  # the settings name them; the EnvVar reads them
        monkeypatch.setenv(name, value)
    defs = build_definitions(settings_for({**lake_env, **slack_env}))
    sensor = defs.resolve_sensor_def(SENSOR_NAME)
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING

    result = sensor(dg.build_sensor_context(instance=failing_instance, definitions=defs,
                                            resources=defs.resources))
    texts = slack.texts()
    assert len(texts) == 3, texts
    positive, hole, run = texts
    assert "`positive_prices` on *BINANCE:BTC-USDT* `trades`, partition *2024-01-02*" in positive
    assert "price is null or not positive: 1 rows, first at 2024-01-02T" in positive
    assert ("http://dagster.example:3000/assets/binance/btc_usdt/trades?view=checks&"
            "checkDetail=positive_prices") in positive
    assert "`temporal_continuity`" in hole and "partition *2024-01-04*" in hole
    assert "largest hole: 10,921 s after 2024-01-04T" in hole and "(threshold 900 s)" in hole
    assert run.startswith(":x: *Run failed:* *BINANCE:BTC-USDT* `trades`, partition *2024-01-05*")
    assert "No vendor file for table trades, instrument BINANCE:BTC-USDT, day 2024-01-05" in run
    assert "http://dagster.example:3000/runs/" in run
    # The runs that failed only because of blocking checks were not alerted a second time.
    assert not any("Run failed" in t for t in (positive, hole))
    assert read_to(result.cursor) == max(handled_ids(failing_instance))
    assert waiting(result.cursor) == 0

    again = sensor(dg.build_sensor_context(instance=failing_instance, definitions=defs,
                                           resources=defs.resources, cursor=result.cursor))
    assert len(slack.texts()) == 3 and again.cursor == result.cursor


def test_outage_and_rate_limits_delay_alerts_but_lose_or_repeat_none(
        failing_instance: dg.DagsterInstance, slack: SlackStandIn) -> None:
    resource = SlackAlertsResource(webhook_url=slack.webhook_url, max_retry_wait_seconds=2)
    first_failure = min(failure_ids(failing_instance).values())

    assert first_failure
    slack.fail_next(2, status=500)  # Slack is down: nothing is taken, all waits in the cursor
    down = tick(failing_instance, resource)
    assert slack.texts() == [] and slack.requests == 1
    assert waiting(down.cursor) == 3
    assert "Slack did not take the alert for positive_prices" in down.skip_reason.skip_message

    down_again = tick(failing_instance, resource, down.cursor)
    assert slack.texts() == [] and down_again.cursor == down.cursor

    slack.fail_next(1, status=429, retry_after=120)  # longer than we wait: try next tick
    limited = tick(failing_instance, resource, down_again.cursor)
    assert slack.texts() == [] and limited.cursor == down.cursor
    assert "Retry-After 120 s" in limited.skip_reason.skip_message

    slack.fail_next(1, status=429, retry_after=0.2)  # short: waited out within the tick
    started = time.monotonic()
    back = tick(failing_instance, resource, limited.cursor)
    assert time.monotonic() - started >= 0.2
    texts = slack.texts()
    assert [t.split("*")[1] for t in texts] == ["Check failed:", "Check failed:", "Run failed:"]
    assert read_to(back.cursor) == max(handled_ids(failing_instance))
    assert waiting(back.cursor) == 0

    tick(failing_instance, resource, back.cursor)
    assert slack.texts() == texts  # nothing repeated


def test_batch_per_tick_is_bounded_and_the_rest_follows(
        failing_instance: dg.DagsterInstance, slack: SlackStandIn) -> None:
    resource = SlackAlertsResource(webhook_url=slack.webhook_url, max_messages_per_tick=1)
    cursor, counts = None, []
    for _ in range(4):
        cursor = tick(failing_instance, resource, cursor).cursor
        counts.append(len(slack.texts()))
    assert counts == [1, 2, 3, 3]
    assert len(set(slack.texts())) == 3


def test_events_older_than_the_max_age_are_not_posted(failing_instance: dg.DagsterInstance,
                                                       slack: SlackStandIn) -> None:
    resource = SlackAlertsResource(webhook_url=slack.webhook_url, max_age_hours=1e-6)
    result = tick(failing_instance, resource)
    assert slack.requests == 0 and read_to(result.cursor) == max(handled_ids(failing_instance))
    assert AlertCursor.parse(result.cursor).open  # counted as open, not announced


def test_bot_token_transport_posts_to_the_channel(failing_instance: dg.DagsterInstance,
                                                  slack: SlackStandIn,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", BOT_TOKEN)
    monkeypatch.setenv("SLACK_CHANNEL", "#market-data-alerts")
    monkeypatch.setenv("SLACK_API_BASE_URL", slack.api_url)
    resource = slack_resource(Settings.from_env())
    assert isinstance(resource.bot_token, dg.EnvVar)  # bound, not read, at load time

    slack.bot_token = "xoxb-another-token"  # Slack rejects ours: nothing lost, nothing moves
    rejected = tick(failing_instance, resource)
    assert waiting(rejected.cursor) == 3
    assert slack.posts == []
    assert "invalid_auth" in rejected.skip_reason.skip_message

    slack.bot_token = BOT_TOKEN
    slack.fail_next(1, status=429, retry_after=0.1)
    result = tick(failing_instance, resource, rejected.cursor)
    assert [p.channel for p in slack.posts] == ["#market-data-alerts"] * 3
    assert slack.requests == 5  # rejected, rate limited, then three messages
    assert "`positive_prices`" in slack.posts[0].text
    assert read_to(result.cursor) == max(handled_ids(failing_instance))
    assert waiting(result.cursor) == 0


def bad_trades(tmp_path: Path, days: list[dt.date]) -> dict[str, str]:
    """Trades days with a negative price in a vendor directory; the lake's environment."""
    source = tmp_path / "vendor"
    for day in days:
        write_day(source, "trades", BTC, day, rows=ROWS, fault=Fault.NEGATIVE_PRICE)
    return {"CRYPTO_LAKE_SOURCE": str(source), "RLX_LAKE_ROOT": str(tmp_path / "lake")}


def test_a_check_failing_again_in_another_run_is_not_alerted_again(
        tmp_path: Path, slack: SlackStandIn) -> None:
    """Contract: a failing (instrument, table, check, partition) is one incident - a manual
    run and the new-days sensor's run failing the same check give one message."""
    env = bad_trades(tmp_path, [BAD_PRICE_DAY])
    resource = SlackAlertsResource(webhook_url=slack.webhook_url)
    with dg.instance_for_test() as instance:
        assert not materialize_day(env, "trades", BAD_PRICE_DAY, instance).success
        cursor = tick(instance, resource).cursor
        assert not materialize_day(env, "trades", BAD_PRICE_DAY, instance).success
        assert not materialize_day(env, "trades", BAD_PRICE_DAY, instance).success
        cursor = tick(instance, resource, cursor).cursor
        assert len(slack.texts()) == 1
        assert list(AlertCursor.parse(cursor).open) == [
            "BINANCE:BTC-USDT|trades|positive_prices|2024-01-02"]


def test_a_bad_month_is_one_digest_per_check(tmp_path: Path, slack: SlackStandIn) -> None:
    days = [dt.date(2024, 1, d) for d in range(1, 7)]
    env = bad_trades(tmp_path, days)
    resource = SlackAlertsResource(webhook_url=slack.webhook_url, digest_after=3)
    with dg.instance_for_test() as instance:
        for day in days:
            assert not materialize_day(env, "trades", day, instance).success
        tick(instance, resource)
    [digest] = slack.texts()
    assert "*6 partitions failed* `positive_prices` on *BINANCE:BTC-USDT* `trades`: " \
        "2024-01-01..2024-01-06" in digest
    assert "worst offending rows: 1" in digest


def test_recovered_message_when_a_failed_partition_passes_again(
        tmp_path: Path, slack: SlackStandIn) -> None:
    env = bad_trades(tmp_path, [BAD_PRICE_DAY])
    source = Path(env["CRYPTO_LAKE_SOURCE"])
    resource = SlackAlertsResource(webhook_url=slack.webhook_url)
    with dg.instance_for_test() as instance:
        assert not materialize_day(env, "trades", BAD_PRICE_DAY, instance).success
        cursor = tick(instance, resource).cursor
        assert len(slack.texts()) == 1
        write_day(source, "trades", BTC, BAD_PRICE_DAY, rows=ROWS)  # the vendor fixed the day
        assert materialize_day(env, "trades", BAD_PRICE_DAY, instance).success
        cursor = tick(instance, resource, cursor).cursor
        assert materialize_day(env, "trades", BAD_PRICE_DAY, instance).success
        tick(instance, resource, cursor)
    texts = slack.texts()
    assert len(texts) == 2, texts  # schema and temporal_continuity never failed; no repeat
    assert texts[1].startswith(":white_check_mark: *Recovered:* `positive_prices` passes again "
                               "on *BINANCE:BTC-USDT* `trades`, partition *2024-01-02*")


def test_retried_runs_alert_once(tmp_path: Path, slack: SlackStandIn) -> None:
    """A failed run that run retries will re-execute is left to its retry, which says so."""
    env = {"CRYPTO_LAKE_SOURCE": str(tmp_path / "vendor"), "RLX_LAKE_ROOT": str(tmp_path / "l")}
    (tmp_path / "vendor").mkdir()
    defs = build_definitions(settings_for(env))
    asset = defs.get_assets_def(dg.AssetKey.from_user_string(TRADES))
    resource = SlackAlertsResource(webhook_url=slack.webhook_url)
    with dg.instance_for_test() as instance:
        for tags in ({"dagster/will_retry": "true"},
                     {"dagster/will_retry": "false", "dagster/retry_number": "1"}):
            dg.materialize([asset], partition_key=MISSING_DAY.isoformat(), instance=instance,
                           resources=defs.resources, tags=tags, raise_on_error=False)
        cursor = tick(instance, resource).cursor
        tick(instance, resource, cursor)
    texts = slack.texts()
    assert len(texts) == 1 and ", retry 1, step failure)" in texts[0]


def test_unconfigured_logs_what_it_would_send_and_secrets_never_leak(
        tmp_path: Path, slack: SlackStandIn, monkeypatch: pytest.MonkeyPatch,
        capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    # An error message that carries a secret: the vendor directory is named after it.
    source = tmp_path / f"vendor-{FAKE_SECRET}"
    source.mkdir()
    env = {"CRYPTO_LAKE_SOURCE": str(source), "RLX_LAKE_ROOT": str(tmp_path / "lake")}
    for name, value in (("aws_access_key_id", FAKE_KEY_ID), ("aws_secret_access_key",
                                                            FAKE_SECRET)):
        monkeypatch.setenv(name, value)
    caplog.set_level(logging.DEBUG)
    with dg.instance_for_test() as instance:
        assert not materialize_day(env, "trades", MISSING_DAY, instance).success
        capfd.readouterr()  # forget the run's own logs: only the sensor's matter here
        caplog.clear()

        unconfigured = tick(instance, slack_resource(Settings.from_env()))
        logged = capfd.readouterr()
        assert "Slack is not configured; would have sent:" in logged.err + logged.out
        assert "No vendor file for table trades" in logged.err + logged.out
        assert read_to(unconfigured.cursor) == max(handled_ids(instance))

        monkeypatch.setenv("SLACK_WEBHOOK_URL", slack.webhook_url)
        monkeypatch.setenv("SLACK_BOT_TOKEN", BOT_TOKEN)
        slack.fail_next(1, status=500)
        resource = slack_resource(Settings.from_env())
        down = tick(instance, resource)
        sent = tick(instance, resource, down.cursor)
        logged_later = capfd.readouterr()
    outputs = [logged.out, logged.err, logged_later.out, logged_later.err, caplog.text,
               *slack.texts(), str(unconfigured), str(down), str(sent)]
    assert "Alert via Slack incoming webhook" in logged_later.err + logged_later.out
    assert len(slack.texts()) == 1 and "[redacted]" in slack.texts()[0]
    for secret in (FAKE_SECRET, FAKE_KEY_ID, BOT_TOKEN, WEBHOOK_PATH, slack.webhook_url):
        assert not any(secret in text for text in outputs), secret


def test_configuration_errors_name_the_variable() -> None:
    with pytest.raises(ConfigError, match="SLACK_CHANNEL"):
        slack_resource(Settings.from_env({"SLACK_BOT_TOKEN": "xoxb-1"}))
    with pytest.raises(ConfigError, match="RLX_ALERT_INTERVAL_SECONDS"):
        build_alert_sensors(Settings.from_env({"RLX_ALERT_INTERVAL_SECONDS": "0"}))
    with pytest.raises(ConfigError, match="DAGSTER_WEBSERVER_URL"):
        slack_resource(Settings.from_env({"DAGSTER_WEBSERVER_URL": "dagster:3000"}))
    assert build_alert_sensors(Settings.from_env({}))[0].minimum_interval_seconds == 30
    assert build_alert_sensors(Settings.from_env({"RLX_ALERT_INTERVAL_SECONDS": "2"}))[0] \
        .minimum_interval_seconds == 2
    unset = slack_resource(Settings.from_env({}))
    assert isinstance(unset.transport(lambda _t: None), transports.LogTransport)


# --- the real daemon -----------------------------------------------------------------------

def _wait_for(predicate, timeout: float, what: str, poll: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _stop_group(process: subprocess.Popen) -> None:
    """SIGINT to the daemon's whole process group (its code server too), then SIGKILL."""
    for sig, grace in ((signal.SIGINT, 15.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            process.poll()  # reap the daemon itself; init reaps its orphaned children
            if not _group_alive(process.pid):
                break
            time.sleep(0.2)
        else:
            continue
        break
    process.wait(timeout=5)


def test_daemon_posts_one_message_per_failed_check(tmp_path: Path, slack: SlackStandIn) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(
        "telemetry:\n  enabled: false\n"
        "run_retries:\n  enabled: true\n  max_retries: 1\n  retry_on_asset_or_op_failure: false\n")
    (tmp_path / "workspace.yaml").write_text(
        "load_from:\n  - python_module:\n      module_name: rlx_assets.definitions\n"
        "      location_name: rlx_assets\n")
    source = tmp_path / "vendor"
    write_day(source, "trades", BTC, BAD_PRICE_DAY, rows=ROWS, fault=Fault.NEGATIVE_PRICE)
    write_day(source, "trades", BTC, CLEAN_DAY, rows=ROWS)
    lake_vars = {"CRYPTO_LAKE_SOURCE": str(source), "RLX_LAKE_ROOT": str(tmp_path / "lake"),
                 "RLX_START_DATE": "2024-01-01", "RLX_END_DATE": "2024-01-05"}
    env = {**os.environ, **lake_vars, "DAGSTER_HOME": str(home),
           "SLACK_WEBHOOK_URL": slack.webhook_url, "RLX_ALERT_INTERVAL_SECONDS": "1"}
    with dg.DagsterInstance.from_config(str(home)) as instance:
        # Create the SQLite schemas before the daemon starts, so the two do not race to.
        instance.get_runs(limit=1)
        instance.all_instigator_state()
        instance.event_log_storage.get_maximum_record_id()
    log_path = tmp_path / "daemon.log"
    with log_path.open("wb") as log:
        daemon = subprocess.Popen(
            [str(Path(sys.executable).with_name("dagster-daemon")), "run", "-w",
             str(tmp_path / "workspace.yaml")],
            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def ticks() -> int:
            return log_path.read_text(errors="replace").count(
                f"Checking for new runs for sensor: {SENSOR_NAME}")

        with dg.DagsterInstance.from_config(str(home)) as instance:
            assert not materialize_day(lake_vars, "trades", BAD_PRICE_DAY, instance).success
            assert materialize_day(lake_vars, "trades", CLEAN_DAY, instance).success
        _wait_for(lambda: len(slack.texts()) >= 1, 90, "the check alert")
        seen = ticks()
        _wait_for(lambda: ticks() >= seen + 3, 45, "three more sensor ticks")
        texts = slack.texts()
        assert len(texts) == 1, texts
        assert "`positive_prices` on *BINANCE:BTC-USDT* `trades`, partition *2024-01-02*" \
            in texts[0]
        assert "price is null or not positive: 1 rows" in texts[0]
        assert WEBHOOK_PATH not in log_path.read_text(errors="replace")
    finally:
        _stop_group(daemon)
    assert not _group_alive(daemon.pid), "the daemon left processes behind"
