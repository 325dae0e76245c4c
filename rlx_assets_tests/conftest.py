from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import requests
from moto.server import ThreadedMotoServer

from rlx_assets.definitions import build_definitions
from rlx_assets.settings import Settings
from rlx_assets_tests.stand_ins import FAKE_KEY_ID, FAKE_SECRET, VendorBucket, free_port

# Settings of the test run itself, not of the code under test: kept.
TEST_SETTINGS = ("RLX_UI_SCREENSHOTS", "RLX_CHROMIUM")


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts in an empty directory with no rlx/AWS/Slack variables set."""
    for name in list(os.environ):
        if name in TEST_SETTINGS:
            continue
        if name.startswith(("RLX_", "AWS_", "SLACK_", "CRYPTO_LAKE")) or name in (
                "aws_access_key_id", "aws_secret_access_key", "aws_session_token"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def vendor_bucket(moto_endpoint: str, tmp_path: Path,
                  monkeypatch: pytest.MonkeyPatch) -> VendorBucket:
    """The vendor's bucket (`qnt.data`), empty, and the vendor's credentials in the env."""
    requests.post(f"{moto_endpoint}/moto-api/reset", timeout=10).raise_for_status()
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("aws_access_key_id", FAKE_KEY_ID)
    monkeypatch.setenv("aws_secret_access_key", FAKE_SECRET)
    return VendorBucket(moto_endpoint, tmp_path / "vendor_mirror")


def settings_for(env: dict[str, str]) -> Settings:
    """The settings of a run whose environment is the test's (which `_isolated` cleared of
    rlx/AWS/Slack variables, so it holds only what the test set) plus `env`."""
    base = {"RLX_START_DATE": "2024-01-01", "RLX_END_DATE": "2024-01-10",
            "RLX_RETRY_DELAY_SECONDS": "0", "RLX_STEP_RETRIES": "1"}
    return Settings.from_env({**base, **os.environ, **env})


def materialize_day(
    env: dict[str, str], table: str, day: dt.date, instance: dg.DagsterInstance | None = None,
    key_prefix: str = "binance/btc_usdt", run_config: dict | None = None,
) -> dg.ExecuteInJobResult:
    """Materialise one partition through the real definitions (resources from `env`)."""
    defs = build_definitions(settings_for(env))
    key = dg.AssetKey.from_user_string(f"{key_prefix}/{table}")
    return dg.materialize(
        [defs.get_assets_def(key)],
        partition_key=day.isoformat(),
        resources=defs.resources,
        instance=instance or dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
        run_config=run_config,
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "e2e: starts a Dagster webserver and daemon on 127.0.0.1")
    config.addinivalue_line(
        "markers", "browser: drives Debian's Chromium with Playwright against the UI")
