"""Issue 13: vendor-shaped days through the real vendor path (lakeapi + boto3 against moto on
127.0.0.1), a writer-restart hole, and accepting it as the contract says.

A clean vendor-shaped day passes every blocking check; a restart hole over the threshold
fails `temporal_continuity` naming the hole and `contains_gaps`; after `rlx-assets accept`
the day passes with the acceptance in its metadata, reaches ready/, is marked in `status`,
named with its reason in the certificate and in one Slack message; a new violation or a
changed vendor file fails again; a revoked acceptance fails again and stays on record. The
same acceptance works from the UI's Launchpad (the `accept_vendor_exception` job) with the
`accepted_exceptions` sensor re-checking the partition.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from rlx_assets.cli import main
from rlx_assets.definitions import build_definitions
from rlx_assets.defs import acceptances
from rlx_assets.defs.alerts import SlackAlertsResource, build_alert_sensors
from rlx_assets.defs.assets import table_run_config
from rlx_assets.defs.catalog import CATALOG_KEY
from rlx_assets.defs.keys import certificate_key, table_key
from rlx_assets.defs.status import collect_states
from rlx_assets.lib import acceptance as acc
from rlx_assets.lib.demo_habits import Habits
from rlx_assets.lib.lake import Lake
from rlx_assets.lib.tables import TABLES
from rlx_assets.settings import Settings
from rlx_assets_tests.conftest import settings_for
from rlx_assets_tests.run_inspection import partition_status, zone_files
from rlx_assets_tests.slack_stand_in import SlackStandIn
from rlx_assets_tests.stand_ins import BTC, VendorBucket

CLEAN, RESTART = dt.date(2024, 1, 2), dt.date(2024, 1, 3)
CONTINUITY = "temporal_continuity"
REASON = "vendor confirmed its writer was down 09:00-09:20; the data does not exist"


class Story:
    """The vendor's bucket, our lake, the definitions and one instance."""

    def __init__(self, bucket: VendorBucket, tmp_path: Path, instance: dg.DagsterInstance,
                 **extra: str) -> None:
        self.bucket, self.lake_root, self.instance = bucket, tmp_path / "lake", instance
        self.env = {"CRYPTO_LAKE_SOURCE": "lakeapi", "RLX_LAKE_ROOT": str(self.lake_root),
                    "RLX_START_DATE": CLEAN.isoformat(), "RLX_END_DATE": RESTART.isoformat(),
                    **extra}
        self.settings = settings_for(self.env)
        self.defs = build_definitions(self.settings)
        self.lake = Lake.at(str(self.lake_root))

    def materialize(self, day: dt.date, tables=tuple(TABLES),
                    from_raw: bool = False) -> dg.ExecuteInProcessResult:
        keys = [table_key(BTC, t) for t in tables]
        return dg.materialize([self.defs.get_assets_def(k) for k in keys],
                              partition_key=day.isoformat(), instance=self.instance,
                              resources=self.defs.resources, raise_on_error=False,
                              run_config=table_run_config(keys, from_raw))

    def evaluation(self, result: dg.ExecuteInProcessResult, table: str,
                   check: str = CONTINUITY) -> dg.AssetCheckEvaluation:
        [found] = [e for e in result.get_asset_check_evaluations()
                   if e.check_name == check and e.asset_key == table_key(BTC, table)]
        return found

    def certify(self) -> dg.ExecuteInProcessResult:
        key = certificate_key(BTC)
        return dg.materialize([self.defs.get_assets_def(key)], instance=self.instance,
                              resources=self.defs.resources, raise_on_error=False)


@pytest.fixture
def story(vendor_bucket: VendorBucket, tmp_path: Path) -> Story:
    for table in TABLES:
        vendor_bucket.publish(table, CLEAN, listing=False)
        vendor_bucket.publish(table, RESTART, habits=Habits(restart=True), listing=False)
    vendor_bucket.refresh_listing()
    with dg.instance_for_test() as instance:
        yield Story(vendor_bucket, tmp_path, instance)


def slack_tick(story: Story, slack: SlackStandIn, cursor: str | None) -> str | None:
    context = dg.build_sensor_context(
        instance=story.instance, cursor=cursor,
        resources={"slack": SlackAlertsResource(webhook_url=slack.webhook_url)})
    return build_alert_sensors(Settings.from_env())[0](context).cursor


def test_a_restart_hole_fails_until_accepted_then_the_certificate_names_it(
        story: Story, monkeypatch: pytest.MonkeyPatch) -> None:
    clean = story.materialize(CLEAN)
    assert clean.success, "a clean vendor-shaped day passes every blocking check"
    book = {e.check_name: e for e in clean.get_asset_check_evaluations()
            if e.asset_key == table_key(BTC, "book_delta_v2")}
    assert book["origin_time_missing"].passed  # resync rows: counted, no warning
    mat = [m for m in clean.asset_materializations_for_node("binance__btc_usdt__book_delta_v2")]
    assert mat[0].metadata["resyncs"].value == 2
    assert mat[0].metadata["origin_time_missing_rows"].value == 200
    assert mat[0].metadata["vendor_contains_gaps"].value == "No"

    restart = story.materialize(RESTART)
    assert not restart.success
    for table in TABLES:
        failed = story.evaluation(restart, table)
        assert not failed.passed
        assert "1 hole(s) over" in failed.description and "09:20:" in failed.description
        assert "contains_gaps=Yes" in failed.description
        [hole] = failed.metadata["holes"].value
        assert hole["start"].startswith("2024-01-03T08:5") and hole["seconds"] > 1_200
        assert failed.metadata["vendor_contains_gaps"].value == "Yes"
        assert zone_files(story.lake_root, "quarantine", table, RESTART)
        assert partition_status(story.instance, table, RESTART) == "FAILED"
    assert "quarantined" in "\n".join(
        str(e.step_failure_data.user_failure_data.description)
        for e in story.certify().get_step_failure_events())

    # Nothing accepted yet: the accept command refuses what does not fail.
    with pytest.raises(acc.AcceptanceError, match="nothing to accept"):
        acceptances.accept(story.instance, story.settings, story.lake, table="trades",
                           day=CLEAN, check=CONTINUITY, reason=REASON)

    # Accept through the command line: recorded in the lake, then re-checked from raw/.
    for name, value in story.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr("dagster.DagsterInstance.get", lambda: story.instance)
    for table in TABLES:
        assert main(["accept", "--table", table, "--day", RESTART.isoformat(), "--check",
                     CONTINUITY, "--reason", REASON, "--by", "quant-ops"]) == 0
        assert zone_files(story.lake_root, "ready", table, RESTART)
        assert not zone_files(story.lake_root, "quarantine", table, RESTART)
        assert partition_status(story.instance, table, RESTART) == "MATERIALIZED"
    stored = acc.load(story.lake, "trades", BTC, RESTART, CONTINUITY)
    assert stored.reason == REASON and stored.accepted_by == "quant-ops"
    assert stored.vendor_sha256 and stored.violations[0].startswith("hole 2024-01-03T08:5")
    assert stored.evidence["vendor_contains_gaps"] == "Yes"

    states = {(s.table, s.day): s for s in collect_states(story.instance, story.settings)}
    assert {states[(t, RESTART)].state for t in TABLES} == {"accepted"}
    assert {states[(t, CLEAN)].state for t in TABLES} == {"ready"}
    # `status` reads records only for days with an acceptance; reading all agrees with it
    assert list(states.values()) == collect_states(story.instance, story.settings,
                                                   every_record=True)

    issued = story.certify()
    assert issued.success
    cert = json.loads(story.lake.certificate_path(BTC, CLEAN, RESTART).read_text())
    assert [(e["table"], e["day"], e["check"], e["reason"]) for e in
            cert["accepted_exceptions"]] == [(t, RESTART.isoformat(), CONTINUITY, REASON)
                                             for t in TABLES]
    day = cert["tables"]["trades"]["days"][1]
    assert day["accepted"][CONTINUITY]["accepted_by"] == "quant-ops"
    assert day["vendor_contains_gaps"] == "Yes"

    # Readers never see the sentinel as a time: no 1970 in ready/ or in SQL.
    assert dg.materialize([story.defs.get_assets_def(CATALOG_KEY)], instance=story.instance,
                          resources=story.defs.resources).success
    with duckdb.connect(str(story.lake.catalog_path), read_only=True) as conn:
        [(low, nulls)] = conn.sql("select min(origin_time), count(*) - count(origin_time) "
                                  "from binance_btc_usdt_book_delta_v2").fetchall()
    assert low.year == 2024 and nulls == 400  # two resyncs of 100 rows, two days

    assert main(["accept", "--list"]) == 0


def test_a_new_violation_or_a_changed_vendor_file_fails_again(story: Story) -> None:
    assert not story.materialize(RESTART, ("trades",)).success
    acceptances.accept(story.instance, story.settings, story.lake, table="trades",
                       day=RESTART, check=CONTINUITY, reason=REASON)
    accepted = story.materialize(RESTART, ("trades",), from_raw=True)
    assert accepted.success
    passed = story.evaluation(accepted, "trades")
    assert passed.description.startswith("ACCEPTED vendor exception (" + REASON)
    assert passed.metadata["accepted"].value["reason"] == REASON
    assert passed.metadata["accepted_evidence"].value["holes"][0]["seconds"] > 1_200

    # A lower threshold finds holes nobody accepted: the day fails again.
    stricter = Story(story.bucket, story.lake_root.parent, story.instance,
                     RLX_MAX_GAP_SECONDS="trades=10")
    again = stricter.materialize(RESTART, ("trades",), from_raw=True)
    assert not again.success
    assert "violations not accepted" in stricter.evaluation(again, "trades").description

    # The vendor re-publishes the day (still with the hole): the acceptance no longer holds.
    story.bucket.publish("trades", RESTART, habits=Habits(restart=True), rows=39_000)
    changed = story.materialize(RESTART, ("trades",))
    assert not changed.success
    assert "vendor file changed" in story.evaluation(changed, "trades").description


def test_revoking_fails_the_day_again_and_keeps_the_record(
        story: Story, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    assert not story.materialize(RESTART, ("book",)).success
    for name, value in story.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr("dagster.DagsterInstance.get", lambda: story.instance)
    assert main(["accept", "--table", "book", "--day", str(RESTART), "--check", CONTINUITY,
                 "--reason", REASON]) == 0
    assert zone_files(story.lake_root, "ready", "book", RESTART)
    assert main(["accept", "--revoke", "--table", "book", "--day", str(RESTART), "--check",
                 CONTINUITY]) == 0
    assert not zone_files(story.lake_root, "ready", "book", RESTART)
    assert partition_status(story.instance, "book", RESTART) == "FAILED"
    capsys.readouterr()
    assert main(["accept", "--list"]) == 0
    listed = capsys.readouterr().out
    assert "book 2024-01-03 temporal_continuity" in listed and "REVOKED" in listed
    # Refusals are one sentence each.
    assert main(["accept", "--table", "book", "--day", str(RESTART), "--check",
                 "crossed_book", "--reason", "x"]) == 2
    assert "Only a blocking check can be accepted" in capsys.readouterr().out
    assert main(["accept", "--table", "book", "--day", str(RESTART)]) == 2
    assert "needs --check, --reason" in capsys.readouterr().out


def test_accepting_from_the_launchpad_and_the_sensor_rechecks(
        story: Story, slack: SlackStandIn) -> None:
    assert not story.materialize(RESTART, ("trades",)).success
    cursor = slack_tick(story, slack, None)
    assert len(slack.texts()) == 1 and "Check failed" in slack.texts()[0]

    job = story.defs.get_job_def(acceptances.JOB_NAME)
    run_config = {"ops": {"record_acceptance": {"config": {
        "table": "trades", "day": RESTART.isoformat(), "check": CONTINUITY,
        "reason": REASON}}}}
    assert job.execute_in_process(run_config=run_config, instance=story.instance,
                                  resources=story.defs.resources).success

    sensor = story.defs.get_sensor_def(acceptances.SENSOR_NAME)
    context = dg.build_sensor_context(instance=story.instance,
                                      resources={"lake": story.defs.resources["lake"]})
    [request] = sensor(context).run_requests
    assert request.partition_key == RESTART.isoformat()
    assert request.asset_selection == [table_key(BTC, "trades")]
    rechecked = story.materialize(RESTART, ("trades",), from_raw=True)
    assert rechecked.success
    assert not sensor(context).run_requests  # done: nothing more to re-check

    slack_tick(story, slack, cursor)
    texts = slack.texts()
    assert len(texts) == 2, texts
    assert texts[1].startswith(":white_check_mark: *Accepted vendor exception used:* "
                               "`temporal_continuity`")
    assert REASON in texts[1]


@pytest.fixture
def slack():
    with SlackStandIn() as stand_in:
        yield stand_in
