"""Issue 4: the certificate is refused while anything fails, issued once all pass, re-issued."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import dagster as dg
import pytest

from rlx_assets.definitions import build_definitions
from rlx_assets.defs.keys import certificate_key, table_key
from rlx_assets.lib.certificate import canonical_sha256
from rlx_assets.lib.demo_data import write_day
from rlx_assets.lib.demo_faults import Fault
from rlx_assets.lib.tables import TABLES
from rlx_assets_tests.conftest import settings_for
from rlx_assets_tests.stand_ins import BTC

DAYS = [dt.date(2024, 1, 1), dt.date(2024, 1, 2)]
CERT = certificate_key(BTC)
TABLE_KEYS = [table_key(BTC, t) for t in TABLES]


class Lake:
    """A demo vendor directory, our lake, the definitions over them and one instance."""

    def __init__(self, root: Path) -> None:
        self.vendor, self.lake = root / "vendor", root / "lake"
        self.env = {"CRYPTO_LAKE_SOURCE": str(self.vendor), "RLX_LAKE_ROOT": str(self.lake),
                    "RLX_START_DATE": "2024-01-01", "RLX_END_DATE": "2024-01-02"}
        self.defs_settings = settings_for(self.env)
        self.defs = build_definitions(self.defs_settings)
        self.instance = dg.DagsterInstance.ephemeral()
        self.cursor = None

    def publish(self, table: str, day: dt.date, fault: Fault | None = None) -> None:
        write_day(self.vendor, table, BTC, day, fault=fault)

    def materialize(self, day: dt.date, tables=tuple(TABLES)) -> bool:
        assets = [self.defs.get_assets_def(table_key(BTC, t))
                  for t in tables]
        return dg.materialize(assets, partition_key=day.isoformat(), instance=self.instance,
                              resources=self.defs.resources, raise_on_error=False).success

    def materialize_clean_window(self) -> None:
        for day in DAYS:
            for table in TABLES:
                self.publish(table, day)
            assert self.materialize(day)

    def certify(self) -> dg.ExecuteInJobResult:
        return dg.materialize([self.defs.get_assets_def(CERT)], instance=self.instance,
                              resources=self.defs.resources, raise_on_error=False,
                              selection=[CERT])

    def certified(self) -> tuple[str, str] | None:
        """The latest status and description of the certificate's own check."""
        from rlx_assets.defs.keys import CERTIFIED

        history = self.instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(CERT, CERTIFIED), limit=1)
        if not history:
            return None
        evaluation = history[0].event.asset_check_evaluation
        return history[0].status.value, evaluation.description

    def requested(self) -> int:
        return self.requested_for(CERT)

    def requested_for(self, key: dg.AssetKey) -> int:
        result = dg.evaluate_automation_conditions(
            defs=self.defs, instance=self.instance,
            asset_selection=dg.AssetSelection.assets(key), cursor=self.cursor)
        self.cursor = result.cursor
        return result.get_num_requested(key)


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake(tmp_path)


def _failure_text(result: dg.ExecuteInJobResult) -> str:
    return "\n".join(str(e.step_failure_data.user_failure_data.description)
                     for e in result.get_step_failure_events())


def test_certificate_waits_for_every_partition_then_fires_once(lake: Lake) -> None:
    for day in DAYS:
        for table in TABLES:
            lake.publish(table, day, Fault.NEGATIVE_PRICE
                         if (table, day) == ("trades", DAYS[1]) else None)
    assert lake.requested() == 0, "nothing materialised yet"

    assert lake.materialize(DAYS[0])
    assert lake.requested() == 0, "one of two days materialised"

    assert not lake.materialize(DAYS[1]), "the bad trades day fails its run"
    assert lake.requested() == 0, "all materialised but one blocking check failed"

    refused = lake.certify()
    assert not refused.success
    text = _failure_text(refused)
    assert "trades 2024-01-02: quarantined (positive_prices failed)" in text
    assert "refused: 1 partition problem(s)" in text
    status, description = lake.certified()  # on the certificate's page too
    assert status == "FAILED"
    assert description == ("refused: 1 partition problem(s), first: trades 2024-01-02: "
                           "quarantined (positive_prices failed)")
    assert not (lake.lake / "certificates").exists(), "no partial certificate"

    lake.publish("trades", DAYS[1])  # the vendor re-publishes a clean day
    assert lake.materialize(DAYS[1], tables=("trades",))
    assert lake.requested() == 1, "everything passes: certificate requested"
    assert lake.certify().success
    assert lake.requested() == 0, "nothing new: not requested again"

    lake.publish("book", DAYS[0])  # an upstream partition is re-materialised
    assert lake.materialize(DAYS[0], tables=("book",))
    assert lake.requested() == 1, "stale after an upstream change, re-issued"


def test_certificate_content(lake: Lake) -> None:
    lake.materialize_clean_window()
    result = lake.certify()
    assert result.success
    path = lake.lake / "certificates" / "binance_btc_usdt_2024-01-01_2024-01-02.json"
    cert = json.loads(path.read_text())
    body = {k: v for k, v in cert.items() if k != "content_sha256"}
    assert cert["content_sha256"] == canonical_sha256(body)
    assert cert["window"] == {"start": "2024-01-01", "end": "2024-01-02", "days": 2}
    trades = cert["tables"]["trades"]
    assert [d["day"] for d in trades["days"]] == ["2024-01-01", "2024-01-02"]
    assert trades["totals"]["rows"] == sum(d["rows"] for d in trades["days"]) > 0
    assert trades["days"][0]["gap_from_previous_day_seconds"] is None
    gap = trades["days"][1]["gap_from_previous_day_seconds"]
    assert 0 < gap < 60
    assert all(d["checks"] == {"schema": "SUCCEEDED", "positive_prices": "SUCCEEDED",
                               "temporal_continuity": "SUCCEEDED"}
               for t in cert["tables"].values() for d in t["days"])
    summary = result.asset_materializations_for_node("binance__btc_usdt__certificate")[0]
    assert "trades" in summary.metadata["summary"].value


def test_refusal_names_every_gap(lake: Lake) -> None:
    for table in TABLES:
        lake.publish(table, DAYS[0])
    assert lake.materialize(DAYS[0])
    ready = next((lake.lake / "ready" / "book").rglob("data.parquet"))
    ready.write_bytes(ready.read_bytes()[:-10] + b"0123456789")  # tampered after the fact
    text = _failure_text(lake.certify())
    for table in TABLES:
        assert f"{table} 2024-01-02: not materialised" in text
    assert "book 2024-01-01: ready file" in text and "changed" in text
    assert "trades 2024-01-01" not in text


def test_a_quarantined_day_withdraws_the_certificates_that_cover_it(lake: Lake) -> None:
    """Research reads only certified windows: once a covered day fails its checks, the
    certificate for that window is gone; another instrument's or window's is left alone."""
    lake.materialize_clean_window()
    assert lake.certify().success
    folder = lake.lake / "certificates"
    certificate = folder / "binance_btc_usdt_2024-01-01_2024-01-02.json"
    other_window = folder / "binance_btc_usdt_2024-01-03_2024-01-04.json"
    other_instrument = folder / "binance_eth_usdt_2024-01-01_2024-01-02.json"
    for path in (other_window, other_instrument):
        path.write_text(certificate.read_text())
    assert certificate.exists()

    assert lake.certified() == ("SUCCEEDED", f"issued for 2024-01-01..2024-01-02: {certificate}")
    lake.publish("trades", DAYS[1], Fault.NEGATIVE_PRICE)  # the vendor re-publishes it broken
    assert not lake.materialize(DAYS[1], tables=("trades",))
    assert not certificate.exists(), "the certificate no longer vouches for a quarantined day"
    [kept] = (folder / "history").glob("binance_btc_usdt_2024-01-01_2024-01-02.*.withdrawn.json")
    assert json.loads(kept.read_text())["withdrawn"]["reason"] == (
        "trades 2024-01-02 failed positive_prices"), "kept, saying why"
    assert other_window.exists() and other_instrument.exists()
    assert lake.requested() == 0, "not re-issued while the day fails"
    # Visible in Dagster: the certificate's own check fails, saying why.
    status, text = lake.certified()
    assert status == "FAILED"
    assert text.startswith("withdrawn: trades 2024-01-02 failed positive_prices")

    lake.publish("trades", DAYS[1])  # fixed: re-issued, and the check passes again
    assert lake.materialize(DAYS[1], tables=("trades",))
    assert lake.requested() == 1 and lake.certify().success
    assert lake.certified()[0] == "SUCCEEDED" and certificate.exists()


def test_a_refused_certificate_withdraws_the_earlier_one(lake: Lake) -> None:
    lake.materialize_clean_window()
    assert lake.certify().success
    certificate = lake.lake / "certificates" / "binance_btc_usdt_2024-01-01_2024-01-02.json"
    ready = next((lake.lake / "ready" / "book").rglob("data.parquet"))
    ready.write_bytes(ready.read_bytes()[:-10] + b"0123456789")  # tampered after the fact
    refused = lake.certify()
    assert not refused.success and not certificate.exists()
    assert "the earlier certificate" in _failure_text(refused)


def test_a_partition_changing_while_the_certificate_is_issued_withdraws_it(
        lake: Lake, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run that quarantines a day while the certificate verifies the files (minutes for a
    year) must not leave a certificate behind that vouches for it. (A re-materialisation
    with the same content and outcomes changes nothing the certificate states.)"""
    from rlx_assets.defs import certificate as certificate_defs

    lake.materialize_clean_window()
    verify = certificate_defs.build_certificate

    def verify_while_a_run_lands(*args, **kwargs):
        result = verify(*args, **kwargs)
        lake.publish("trades", DAYS[0], Fault.NEGATIVE_PRICE)  # a concurrent run quarantines
        assert not lake.materialize(DAYS[0], tables=("trades",))  # a day of the window
        return result

    monkeypatch.setattr(certificate_defs, "build_certificate", verify_while_a_run_lands)
    result = lake.certify()
    assert not result.success
    assert "withdrawn: a partition was re-materialised" in _failure_text(result)
    from rlx_assets.defs.status import certificate_states

    [(_, state, _)] = certificate_states(lake.instance, lake.defs_settings)
    assert state == "withdrawn"  # what `rlx-assets status` says: issued, then taken back
    folder = lake.lake / "certificates"
    assert not list(folder.glob("*.json")), "no current certificate"
    [kept] = (folder / "history").iterdir()
    assert kept.name.endswith(".withdrawn.json")
    assert "re-materialised" in json.loads(kept.read_text())["withdrawn"]["reason"]
