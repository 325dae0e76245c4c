"""One way in to S3 (`lib/s3.py`): the error classifier, and the client factory that the vendor
sources, the lake's store and the doctor all use."""

from __future__ import annotations

import datetime as dt
import http.client
from dataclasses import replace

import boto3
import botocore
import botocore.exceptions as bx
import pytest

from rlx_assets.cli import main
from rlx_assets.lib import s3
from rlx_assets.lib.s3 import Kind
from rlx_assets.lib.stores import S3Store
from rlx_assets.lib.vendor import VendorAccessDenied
from rlx_assets.lib.vendor_s3 import S3Source
from rlx_assets_tests.stand_ins import BTC, FAKE_KEY_ID, FAKE_SECRET, VendorBucket, free_port

DAY = dt.date(2024, 1, 2)
CLOSED = "http://127.0.0.1:9"


def client_error(code: str, status: int) -> bx.ClientError:
    return bx.ClientError({"Error": {"Code": code, "Message": "m"},
                           "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject")


# S3's answers: (code, HTTP status) -> kind, reason. A HEAD answer's code is its status.
ANSWERS = [
    ("AccessDenied", 403, Kind.DENIED, "denied access (AccessDenied, HTTP 403)"),
    ("SignatureDoesNotMatch", 403, Kind.DENIED, "denied access (SignatureDoesNotMatch, HTTP 403)"),
    # A skewed clock is a 403 too: denied, not retried (as before there was a classifier).
    ("RequestTimeTooSkewed", 403, Kind.DENIED, "denied access (RequestTimeTooSkewed, HTTP 403)"),
    ("NoSuchKey", 404, Kind.NOT_FOUND, "has no such key (NoSuchKey, HTTP 404)"),
    ("404", 404, Kind.NOT_FOUND, "has no such key (404, HTTP 404)"),
    ("NoSuchBucket", 404, Kind.NO_BUCKET, "does not exist (NoSuchBucket, HTTP 404)"),
    ("PermanentRedirect", 301, Kind.WRONG_REGION, "is in another region (PermanentRedirect, "
                                                   "HTTP 301)"),
    ("SlowDown", 503, Kind.TRANSIENT, "answered SlowDown (HTTP 503), a temporary fault"),
    ("RequestTimeout", 400, Kind.TRANSIENT, "answered RequestTimeout (HTTP 400), a temporary "
                                            "fault"),
    ("InvalidRange", 416, Kind.OTHER, "answered InvalidRange (HTTP 416)"),
]


@pytest.mark.parametrize(("code", "status", "kind", "reason"), ANSWERS)
def test_every_answer_kind_and_its_sentence(code: str, status: int, kind: Kind,
                                            reason: str) -> None:
    fault = s3.classify(client_error(code, status))
    assert (fault.kind, fault.reason) == (kind, reason)
    assert (fault.code, fault.status, fault.message) == (code, str(status), "m")
    assert fault.retriable is (kind is Kind.TRANSIENT)


@pytest.mark.parametrize(("error", "kind", "reason"), [
    (bx.NoCredentialsError(), Kind.NO_CREDENTIALS,
     "could not be asked: no AWS credentials were found"),
    (bx.EndpointConnectionError(endpoint_url=CLOSED), Kind.UNREACHABLE,
     f'connection failed (Could not connect to the endpoint URL: "{CLOSED}")'),
    (bx.ReadTimeoutError(endpoint_url=CLOSED), Kind.UNREACHABLE,
     f'connection failed (Read timeout on endpoint URL: "{CLOSED}")'),
    (bx.SSLError(endpoint_url=CLOSED, error="bad"), Kind.UNREACHABLE,
     f"connection failed (SSL validation failed for {CLOSED} bad)"),
    (http.client.IncompleteRead(b"ab", 3), Kind.UNREACHABLE,
     "connection failed (IncompleteRead(2 bytes read, 3 more expected))"),
    (ConnectionResetError(104, "reset"), Kind.UNREACHABLE, "connection failed ([Errno 104] reset)"),
    (ValueError("bad\nmore"), Kind.OTHER, "failed (bad)"),
])
def test_every_other_kind_and_its_sentence(error: Exception, kind: Kind, reason: str) -> None:
    fault = s3.classify(error)
    assert (fault.kind, fault.reason) == (kind, reason)
    assert fault.retriable is (kind is Kind.UNREACHABLE)


def test_errors_from_a_real_server_are_classified(vendor_bucket: VendorBucket,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    client = vendor_bucket.client

    def fault(call) -> s3.Fault:
        with pytest.raises(Exception) as raised:
            call()
        return s3.classify(raised.value)

    missing_key = fault(lambda: client.get_object(Bucket="qnt.data", Key="nope"))
    assert (missing_key.kind, missing_key.code) == (Kind.NOT_FOUND, "NoSuchKey")
    assert fault(lambda: client.head_object(Bucket="qnt.data", Key="nope")).kind is \
        Kind.NOT_FOUND
    assert s3.head(client, "qnt.data", "nope") is None
    no_bucket = fault(lambda: client.get_object(Bucket="no-such-bucket", Key="k"))
    assert no_bucket.reason == "does not exist (NoSuchBucket, HTTP 404)"
    closed = f"http://127.0.0.1:{free_port()}"
    unreachable = fault(lambda: s3.client(endpoint_url=closed, anonymous=True,
                                          attempts=1).list_buckets())
    assert unreachable.kind is Kind.UNREACHABLE and closed in unreachable.reason
    monkeypatch.delenv("aws_access_key_id")  # the lower-case names are ours, not boto3's
    anonymous_chain = boto3.Session(region_name="eu-west-1")
    assert anonymous_chain.get_credentials() is None
    no_credentials = fault(lambda: s3.client(anonymous_chain).list_buckets())
    assert no_credentials.kind is Kind.NO_CREDENTIALS


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> list:
    """Every client `s3.client` makes, whoever asks for it."""
    clients: list = []
    factory = s3.client

    def recording(*args, **kwargs):
        clients.append(factory(*args, **kwargs))
        return clients[-1]

    monkeypatch.setattr(s3, "client", recording)
    return clients


def retries(client) -> int:
    return client.meta.config.retries["total_max_attempts"]


def test_the_vendor_source_gets_its_clients_from_the_factory(vendor_bucket: VendorBucket,
                                                              made: list) -> None:
    vendor_bucket.publish("trades", DAY)
    source = S3Source(bucket="qnt.data", prefix="market-data/cryptofeed", listing="s3",
                      session_factory=lambda: boto3.Session(
                          aws_access_key_id=FAKE_KEY_ID, aws_secret_access_key=FAKE_SECRET,
                          region_name="eu-west-1"), max_attempts=3)
    found = source.locate("trades", BTC, DAY)
    assert source.read_last(found, 4) == b"PAR1"
    # The endpoint is boto3's own (AWS_ENDPOINT_URL here), as lakeapi's client sees it too.
    assert made and all(c.meta.endpoint_url == vendor_bucket.endpoint for c in made)
    assert [retries(c) for c in made] == [3] * (len(made) - 1) + [1]  # the footer: one try
    assert made[0].meta.config.signature_version is not botocore.UNSIGNED
    # The sample bucket is read anonymously: the private stand-in bucket refuses that.
    made.clear()
    with pytest.raises(VendorAccessDenied, match="denied access"):
        replace(source, anonymous=True).locate("trades", BTC, DAY)
    assert made and all(c.meta.config.signature_version is botocore.UNSIGNED for c in made)


def test_listings_run_together_on_one_client(vendor_bucket: VendorBucket, made: list) -> None:
    """`list_many` (the inventory, the new-days sensor) lists every series at once, each
    answer the one `list_days` gives alone, on one client; a series that cannot be listed
    gives its error in its place."""
    from rlx_assets.lib.instruments import Instrument
    from rlx_assets.lib.vendor import VendorError, list_many

    for day in (DAY, DAY + dt.timedelta(days=1)):
        vendor_bucket.publish("trades", day)
    vendor_bucket.publish("book", DAY)
    source = S3Source(bucket="qnt.data", prefix="market-data/cryptofeed", listing="s3",
                      session_factory=lambda: boto3.Session(
                          aws_access_key_id=FAKE_KEY_ID, aws_secret_access_key=FAKE_SECRET,
                          region_name="eu-west-1"))
    eth = Instrument.parse("BINANCE:ETH-USDT")
    series = [(BTC, "trades"), (BTC, "book"), (BTC, "book_delta_v2"), (eth, "trades")]
    end = DAY + dt.timedelta(days=5)
    listed = list_many(source, series, DAY, end)
    assert len(made) == 1
    assert listed == {(i, t): source.list_days(t, i, DAY, end) for i, t in series}
    assert sorted(listed[(BTC, "trades")]) == [DAY, DAY + dt.timedelta(days=1)]
    assert listed[(eth, "trades")] == {}
    broken = replace(source, bucket="no-such-bucket")
    errors = list_many(broken, series, DAY, end).values()
    assert all(isinstance(v, VendorError) and "does not exist" in str(v)
               and "CRYPTO_LAKE_SOURCE" in str(v) for v in errors)


def test_the_lake_store_gets_its_client_from_the_factory(vendor_bucket: VendorBucket,
                                                         made: list,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    vendor_bucket.client.create_bucket(
        Bucket="lake", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    monkeypatch.delenv("AWS_ENDPOINT_URL")  # the endpoint comes from the settings only
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "lake-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "lake-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    store = S3Store("lake", "zones", endpoint_url=vendor_bucket.endpoint)
    store.write_json("a.json", {"ok": True})
    assert store.read_json("a.json") == {"ok": True}
    [client] = made
    assert client.meta.endpoint_url == vendor_bucket.endpoint
    assert (retries(client), client.meta.config.connect_timeout,
            client.meta.config.read_timeout) == (5, 10, 60)


def test_the_doctor_gets_its_client_from_the_factory(vendor_bucket: VendorBucket, made: list,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    vendor_bucket.publish("trades", DAY)
    monkeypatch.setenv("CRYPTO_LAKE_SOURCE", "s3://qnt.data/market-data/cryptofeed")
    monkeypatch.setenv("RLX_START_DATE", "2024-01-01")
    main(["doctor"])
    lines = capsys.readouterr().out.splitlines()
    assert any(f"Endpoint: {vendor_bucket.endpoint} answered" in line for line in lines), lines
    [client] = made
    assert client.meta.endpoint_url == vendor_bucket.endpoint
    assert client.meta.region_name == "eu-west-1"
    assert (retries(client), client.meta.config.connect_timeout,
            client.meta.config.read_timeout) == (2, 3, 10)
