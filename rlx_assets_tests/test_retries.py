"""Transient vendor faults: retried with exponential backoff, then a clear, bounded failure.

The faults are real HTTP behaviour injected by a loopback proxy in front of the moto S3
server (`AWS_ENDPOINT_URL` points at the proxy): 500s, 503 SlowDown, connection resets and
bodies cut short, on the GET of the vendor's parquet object.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import botocore.exceptions as bx
import dagster as dg
import pytest

from rlx_assets.definitions import build_definitions
from rlx_assets.defs.resources import CryptoLakeResource
from rlx_assets.lib.demo_data import vendor_relpath
from rlx_assets.lib.lakeapi_access import default_cache_dir, lakeapi_module
from rlx_assets.lib.retry import Backoff
from rlx_assets.lib.vendor import (
    TransientVendorError,
    VendorAccessDenied,
    VendorCredentialsMissing,
    VendorError,
    download,
    translate_errors,
)
from rlx_assets.lib.vendor_s3 import S3Source
from rlx_assets_tests.conftest import materialize_day, settings_for
from rlx_assets_tests.faulty_proxy import FaultyProxy, faulty_proxy
from rlx_assets_tests.run_inspection import (
    failure_text,
    materialization_metadata,
    step_attempts,
    zone_files,
)
from rlx_assets_tests.stand_ins import BTC, FAKE_KEY_ID, FAKE_SECRET, VendorBucket

DAY = dt.date(2024, 1, 2)
FAST = Backoff(attempts=4, base_seconds=0.05)
# What each fault looks like in the retry log and the final error.
FAULT_TEXT = {"500": "InternalError (HTTP 500)", "503": "SlowDown (HTTP 503)",
              "reset": "connection failed", "short": "connection failed",
              "refuse": "connection failed"}


@pytest.fixture
def proxy(vendor_bucket: VendorBucket, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultyProxy]:
    """The vendor bucket with one trades day, reached through the fault-injecting proxy."""
    vendor_bucket.publish("trades", DAY)
    with faulty_proxy(vendor_bucket.endpoint) as running:
        monkeypatch.setenv("AWS_ENDPOINT_URL", running.url)
        yield running


def session() -> boto3.Session:
    return boto3.Session(aws_access_key_id=FAKE_KEY_ID, aws_secret_access_key=FAKE_SECRET,
                         region_name="eu-west-1")


def s3_source(botocore_attempts: int = 1) -> S3Source:
    """botocore's own retries off by default, so that every retry below is ours."""
    return S3Source(bucket="qnt.data", prefix="market-data/cryptofeed", session_factory=session,
                    listing="s3", max_attempts=botocore_attempts)


def vendor_bytes(bucket: VendorBucket) -> bytes:
    return (bucket.staging / vendor_relpath("trades", BTC, DAY)).read_bytes()


@pytest.mark.parametrize("fault", list(FAULT_TEXT))
def test_download_succeeds_after_transient_faults(proxy: FaultyProxy, vendor_bucket: VendorBucket,
                                                  tmp_path: Path, fault: str) -> None:
    source = s3_source()
    obj = source.locate("trades", BTC, DAY)
    proxy.inject(fault, fault)
    logs: list[str] = []
    got = download(source, obj, tmp_path / "raw" / "1.snappy.parquet", FAST, logs.append)
    assert got.attempts == 3 and proxy.injected == [fault, fault] and proxy.object_gets == 3
    expected = vendor_bytes(vendor_bucket)
    assert got.path.read_bytes() == expected
    assert (got.size, got.sha256) == (len(expected), hashlib.sha256(expected).hexdigest())
    assert [line.split(" of ")[0] for line in logs] == ["Download attempt 1", "Download attempt 2"]
    assert all(FAULT_TEXT[fault] in line and "retrying in" in line for line in logs), logs
    assert [p.name for p in got.path.parent.iterdir()] == [got.path.name]  # no .part left


@pytest.mark.parametrize("fault", ["503", "short", "reset"])
def test_a_persistent_fault_ends_in_one_clear_error(proxy: FaultyProxy, tmp_path: Path,
                                                    fault: str) -> None:
    source = s3_source()
    obj = source.locate("trades", BTC, DAY)
    proxy.persistent = fault
    dest = tmp_path / "raw" / "1.snappy.parquet"
    started = time.perf_counter()
    with pytest.raises(TransientVendorError) as raised:
        download(source, obj, dest, FAST)
    assert time.perf_counter() - started < 10  # four attempts, 0.35 s of backoff at most
    message = str(raised.value)
    assert message.startswith(f"Download of {obj.location} failed after 4 attempts")
    assert FAULT_TEXT[fault] in message and "retrying" not in message, message
    assert proxy.object_gets == 4
    assert not dest.exists() and not list(dest.parent.iterdir())  # the partial file is gone


def test_botocore_retries_server_errors_before_ours(proxy: FaultyProxy, tmp_path: Path) -> None:
    source = s3_source(botocore_attempts=2)
    obj = source.locate("trades", BTC, DAY)
    proxy.inject("503")
    got = download(source, obj, tmp_path / "x.parquet", FAST)
    assert got.attempts == 1 and proxy.object_gets == 2  # botocore's own retry absorbed it


def test_a_materialisation_survives_transient_faults(proxy: FaultyProxy, tmp_path: Path) -> None:
    instance = dg.DagsterInstance.ephemeral()
    lake = tmp_path / "lake"
    proxy.inject("short", "reset")
    result = materialize_day({"CRYPTO_LAKE_SOURCE": "lakeapi", "RLX_LAKE_ROOT": str(lake)},
                             "trades", DAY, instance)
    assert result.success, failure_text(result)
    assert proxy.injected == ["short", "reset"]
    assert materialization_metadata(result)["download_attempts"] == 3
    assert proxy.range_gets == 2  # the footer, read ahead of the download: length, then it
    assert step_attempts(result) == 1  # retried inside the step, not by re-running it
    messages = [entry.user_message for entry in instance.all_logs(result.run_id)]
    assert sum("Download attempt" in m and "retrying in" in m for m in messages) == 2
    assert zone_files(lake, "ready", "trades", DAY)


def test_a_failed_footer_read_ahead_only_costs_time(proxy: FaultyProxy,
                                                    tmp_path: Path) -> None:
    """The footer read ahead of the download is an optimisation: when it fails the day is
    normalised as well, from the downloaded file."""
    proxy.fail_ranges = True
    result = materialize_day({"CRYPTO_LAKE_SOURCE": "lakeapi",
                              "RLX_LAKE_ROOT": str(tmp_path / "lake")}, "trades", DAY,
                             dg.DagsterInstance.ephemeral())
    assert result.success, failure_text(result)
    assert proxy.range_gets >= 1 and proxy.object_gets == 1
    assert materialization_metadata(result)["download_attempts"] == 1


def test_a_persistent_fault_fails_the_materialisation_in_bounded_time(
    proxy: FaultyProxy, tmp_path: Path
) -> None:
    lake = tmp_path / "lake"
    defs = build_definitions(settings_for({"CRYPTO_LAKE_SOURCE": "lakeapi",
                                           "RLX_LAKE_ROOT": str(lake)}))
    resources = {**defs.resources, "crypto_lake": CryptoLakeResource(
        source="lakeapi", aws_access_key_id=FAKE_KEY_ID, aws_secret_access_key=FAKE_SECRET,
        max_attempts=3, backoff_seconds=0.05)}
    proxy.persistent = "short"
    started = time.perf_counter()
    result = dg.materialize(
        [defs.get_assets_def(dg.AssetKey.from_user_string("binance/btc_usdt/trades"))],
        partition_key=DAY.isoformat(), resources=resources,
        instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    assert time.perf_counter() - started < 60
    assert not result.success
    assert step_attempts(result) == 2  # RLX_STEP_RETRIES=1: the step is retried once too
    assert proxy.object_gets == 2 * 3
    text = failure_text(result)
    assert "failed after 3 attempts" in text and "trades" in text, text
    assert not zone_files(lake, "ready", "trades", DAY)
    assert not [p for p in zone_files(lake, "raw", "trades", DAY) if p.suffix == ".parquet"]


# --- error classification --------------------------------------------------------------------


def client_error(code: str, status: int) -> bx.ClientError:
    return bx.ClientError({"Error": {"Code": code, "Message": "m"},
                           "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject")


@pytest.mark.parametrize(("error", "expected", "retriable"), [
    (client_error("SlowDown", 503), TransientVendorError, True),
    (client_error("InternalError", 500), TransientVendorError, True),
    (client_error("BadGateway", 502), TransientVendorError, True),
    (client_error("RequestTimeout", 400), TransientVendorError, True),
    (client_error("AccessDenied", 403), VendorAccessDenied, False),
    (client_error("InvalidAccessKeyId", 403), VendorAccessDenied, False),
    (bx.NoCredentialsError(), VendorCredentialsMissing, False),
    (bx.EndpointConnectionError(endpoint_url="http://127.0.0.1:9"), TransientVendorError, True),
    (ConnectionResetError(104, "reset"), TransientVendorError, True),
])
def test_errors_are_classified(error: Exception, expected: type, retriable: bool) -> None:
    with pytest.raises(expected) as raised, translate_errors("s3://qnt.data"):
        raise error
    assert raised.value.retriable is retriable
    assert "s3://qnt.data" in str(raised.value)


def test_other_client_errors_pass_through_unretried() -> None:
    error = client_error("NoSuchKey", 404)
    with pytest.raises(bx.ClientError) as raised, translate_errors("s3://qnt.data"):
        raise error
    assert raised.value is error and not getattr(raised.value, "retriable", False)


# --- Backoff ---------------------------------------------------------------------------------


def test_delays_grow_exponentially_up_to_the_cap() -> None:
    backoff = Backoff(attempts=10, base_seconds=0.5, max_seconds=4.0)
    steps = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert [backoff.delay(n, rand=lambda: 1.0) for n in range(1, 7)] == steps
    assert [backoff.delay(n, rand=lambda: 0.0) for n in range(1, 7)] == [s / 2 for s in steps]


@pytest.mark.parametrize("failures", [1, 2, 3, 5, 8])
def test_jitter_stays_within_half_to_full_step(failures: int) -> None:
    backoff = Backoff(base_seconds=1.0, max_seconds=30.0)
    step = min(30.0, 2.0 ** (failures - 1))
    rng = random.Random(failures)
    delays = [backoff.delay(failures, rand=rng.random) for _ in range(500)]
    assert all(step / 2 <= d <= step for d in delays)
    assert max(delays) - min(delays) > step / 4  # it is actually jittered
    assert all(step / 2 <= backoff.delay(failures) <= step for _ in range(50))  # default rand


class Flaky(Exception):
    retriable = True


def is_transient(exc: BaseException) -> bool:
    return getattr(exc, "retriable", False)


def test_run_retries_transient_failures_then_returns() -> None:
    calls, sleeps, retries = [], [], []

    def fn() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise Flaky(f"try {len(calls)}")
        return "ok"

    backoff = Backoff(attempts=5, base_seconds=1.0)
    result = backoff.run(fn, is_transient, lambda n, e, w: retries.append((n, str(e), w)),
                         sleep=sleeps.append)
    assert result == "ok" and len(calls) == 3
    assert [(n, e) for n, e, _ in retries] == [(1, "try 1"), (2, "try 2")]
    assert sleeps == [w for *_, w in retries]
    assert 0.5 <= sleeps[0] <= 1.0 and 1.0 <= sleeps[1] <= 2.0


def test_run_gives_up_after_the_last_attempt_with_the_last_error() -> None:
    calls, sleeps = [], []

    def fn() -> None:
        calls.append(1)
        raise Flaky(f"try {len(calls)}")

    with pytest.raises(Flaky, match="try 4"):
        Backoff(attempts=4, base_seconds=0.1).run(fn, is_transient, sleep=sleeps.append)
    assert len(calls) == 4 and len(sleeps) == 3
    for failures, wait in enumerate(sleeps, start=1):  # 0.1 s doubling, equal jitter
        step = 0.1 * 2 ** (failures - 1)
        assert step / 2 <= wait <= step


@pytest.mark.parametrize("error", [ValueError("bad"), VendorError("denied"),
                                   VendorAccessDenied("no")])
def test_non_transient_errors_are_not_retried(error: Exception) -> None:
    calls, sleeps = [], []

    def fn() -> None:
        calls.append(1)
        raise error

    with pytest.raises(type(error)):
        Backoff(attempts=5).run(fn, is_transient, sleep=sleeps.append)
    assert len(calls) == 1 and sleeps == []


def test_interrupts_are_never_retried() -> None:
    calls = []

    def fn() -> None:
        calls.append(1)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Backoff(attempts=5).run(fn, lambda _e: True, sleep=lambda _s: None)
    assert len(calls) == 1


def test_zero_attempts_still_calls_once() -> None:
    assert Backoff(attempts=0).run(lambda: 42, is_transient, sleep=lambda _s: None) == 42


# --- lakeapi discovery with a key that cannot list the bucket ---------------------------------


def test_a_failed_contents_listing_is_not_kept(proxy: FaultyProxy, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """lakeapi caches a failed contents.json.gz fetch (as None) for an hour and lists the
    bucket instead, which a vendor key without s3:ListBucket may not do. One failed fetch
    must not turn every partition into "access denied" for the next hour."""
    lakeapi = lakeapi_module(default_cache_dir())
    lakeapi.main.contents_cache.clear()
    lakeapi.main.cache.clear()
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # lakeapi's own client: no botocore retries
    proxy.deny_list_bucket = True
    proxy.inject("503", suffix="/trades/contents.json.gz")
    env = {"CRYPTO_LAKE_SOURCE": "lakeapi", "RLX_LAKE_ROOT": str(tmp_path / "lake")}
    instance = dg.DagsterInstance.ephemeral()
    first = materialize_day(env, "trades", DAY, instance)
    assert proxy.injected == ["503"]
    assert first.success, failure_text(first)
    second = materialize_day(env, "trades", DAY, instance)
    assert second.success, failure_text(second)
