"""Real stand-ins for the outside world: moto's S3 server on loopback in the vendor's layout."""

from __future__ import annotations

import datetime as dt
import socket
from pathlib import Path

import boto3

from rlx_assets.lib.demo_data import (
    VENDOR_PREFIX,
    vendor_relpath,
    write_contents_index,
    write_day,
)
from rlx_assets.lib.demo_faults import Fault
from rlx_assets.lib.demo_habits import VENDOR, Habits
from rlx_assets.lib.instruments import Instrument

BTC = Instrument("BINANCE", "BTC-USDT")
FAKE_KEY_ID = "AKIAFAKEVENDORKEY0001"
FAKE_SECRET = "fake-vendor-secret-do-not-log-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class VendorBucket:
    """A bucket on the moto server holding vendor-layout files and contents.json.gz."""

    def __init__(self, endpoint: str, staging: Path, bucket: str = "qnt.data",
                 prefix: str = VENDOR_PREFIX) -> None:
        self.endpoint, self.bucket, self.prefix = endpoint, bucket, prefix
        self.staging = staging  # a local mirror of s3://bucket/prefix
        self.client = boto3.client(
            "s3", endpoint_url=endpoint, region_name="eu-west-1",
            aws_access_key_id=FAKE_KEY_ID, aws_secret_access_key=FAKE_SECRET,
        )
        self.client.create_bucket(
            Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})

    def key(self, relative: str) -> str:
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def publish(self, table: str, day: dt.date, instrument: Instrument = BTC,
                fault: Fault | None = None, rows: int | None = None,
                listing: bool = True, habits: Habits = VENDOR) -> str:
        """Write a vendor day, upload it and refresh the table's contents.json.gz."""
        path = write_day(self.staging, table, instrument, day, rows=rows, fault=fault,
                         habits=habits)
        key = self.key(vendor_relpath(table, instrument, day))
        self.client.upload_file(str(path), self.bucket, key)
        if listing:
            self.refresh_listing()
        return key

    def refresh_listing(self) -> None:
        for index in write_contents_index(self.staging, self.prefix):
            relative = index.relative_to(self.staging).as_posix()
            self.client.upload_file(str(index), self.bucket, self.key(relative))
