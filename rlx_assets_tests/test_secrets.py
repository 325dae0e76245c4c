"""Issue 8: credentials never reach logs, metadata, failures shown in the UI, or alerts.

Known fake secrets (the vendor's key pair, a Slack bot token and webhook URL) are set; clean,
failing-check, missing and unreadable vendor days are materialised through the real
lakeapi/boto3 path against moto, and the alert sensor posts to a loopback Slack. Then every
byte Dagster stored (event logs, run records, compute logs under the instance directory),
every byte in the lake, everything printed or logged, and every Slack message is searched.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import dagster as dg
import pytest

from rlx_assets.defs.alerts import build_alert_sensors, slack_resource
from rlx_assets.lib.demo_faults import Fault
from rlx_assets.settings import Settings
from rlx_assets_tests.conftest import materialize_day
from rlx_assets_tests.slack_stand_in import BOT_TOKEN, SlackStandIn
from rlx_assets_tests.stand_ins import FAKE_KEY_ID, FAKE_SECRET, VendorBucket

CLEAN, BAD, MISSING, CORRUPT = (dt.date(2024, 1, d) for d in (2, 3, 4, 5))


def stored_bytes(*roots: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for root in roots for p in root.rglob("*") if p.is_file()}


def test_no_secret_is_stored_logged_or_sent(
        vendor_bucket: VendorBucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    # Everything a production log configuration shows (INFO), and Dagster's and ours in full.
    # (botocore's DEBUG log, off unless asked for, prints request headers with the key id.)
    caplog.set_level(logging.INFO)
    for name in ("dagster", "rlx_assets"):
        caplog.set_level(logging.DEBUG, logger=name)
    vendor_bucket.publish("trades", CLEAN)
    vendor_bucket.publish("trades", BAD, fault=Fault.NEGATIVE_PRICE)
    key = vendor_bucket.publish("trades", CORRUPT)
    vendor_bucket.client.put_object(Bucket=vendor_bucket.bucket, Key=key, Body=b"PAR1 broken")
    with SlackStandIn() as slack:
        monkeypatch.setenv("SLACK_WEBHOOK_URL", slack.webhook_url)
        monkeypatch.setenv("SLACK_BOT_TOKEN", BOT_TOKEN)
        monkeypatch.setenv("SLACK_CHANNEL", "#alerts")
        secrets = [FAKE_KEY_ID, FAKE_SECRET, BOT_TOKEN, slack.webhook_url,
                   slack.webhook_url.rsplit("/", 1)[-1]]
        env = {"CRYPTO_LAKE_SOURCE": "lakeapi", "RLX_LAKE_ROOT": str(tmp_path / "lake"),
               "RLX_STEP_RETRIES": "0"}
        home = tmp_path / "dagster_home"
        home.mkdir()
        with dg.instance_for_test(temp_dir=str(home)) as instance:
            outcomes = {day: materialize_day(env, "trades", day, instance).success
                        for day in (CLEAN, BAD, MISSING, CORRUPT)}
            sensor = build_alert_sensors(Settings.from_env())[0]
            alerts = slack_resource(Settings.from_env())
            sensor(dg.build_sensor_context(instance=instance, resources={"slack": alerts}))
            runs = instance.get_runs()
            failures = [e.message or "" for run in runs for e in instance.all_logs(run.run_id)]
            sent = slack.texts()
    printed = capfd.readouterr()

    assert outcomes == {CLEAN: True, BAD: False, MISSING: False, CORRUPT: False}
    assert len(sent) >= 3, "alerts for the failed check, the missing and the unreadable day"
    texts = {"stdout": printed.out, "stderr": printed.err, "logging": caplog.text,
             "event messages": "\n".join(failures), "slack": "\n".join(sent),
             "run configs": repr([(r.run_config, r.tags) for r in runs])}
    files = stored_bytes(home, tmp_path / "lake")
    assert any(p.suffix == ".db" for p in files), "the instance's storage was searched"
    for secret in secrets:
        for where, text in texts.items():
            assert secret not in text, f"{secret!r} appears in {where}"
        for path, data in files.items():
            assert secret.encode() not in data, f"{secret!r} appears in {path}"
