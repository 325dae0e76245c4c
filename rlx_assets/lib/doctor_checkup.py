"""What the doctor's steps share: the `Checkup` they fill in, one step's result, and how an
S3 failure is put into words (see `doctor.py`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from rlx_assets.lib import s3

REGION = "eu-west-1"
CONNECT_TIMEOUT_SECONDS = 3
READ_TIMEOUT_SECONDS = 10
PARQUET_MAGIC = b"PAR1"
LIST_PAGE = 1000
KINDS = {
    "lakeapi": "Crypto Lake through lakeapi",
    "sample": "Crypto Lake's free sample bucket, read anonymously",
    "s3": "an S3 bucket in the vendor layout",
    "local": "a local directory in the vendor layout",
}


# (storage class name, number of runs) of the Dagster instance; raises if it is not usable
InstanceProbe = Callable[[], tuple[str, int]]


@dataclass
class Checkup:
    env: Mapping[str, str]
    load_settings: Callable[[], Any]  # rlx_assets.settings.Settings; raises ValueError
    probe_instance: InstanceProbe
    settings: Any = None
    client: object | None = None  # boto3 S3 client with short timeouts (S3 sources)
    sample: str | None = None  # one vendor object to read: a key (S3) or a path (local)
    contents: dict[str, list[str] | None] = field(default_factory=dict)  # per table, fetched

    @property
    def where(self) -> str:
        source = self.settings.source
        return str(source.path) if source.kind == "local" else \
            f"s3://{source.bucket}/{source.prefix}".rstrip("/")

    def key(self, relative: str) -> str:
        prefix = self.settings.source.prefix
        return f"{prefix}/{relative}" if prefix else relative


Result = tuple[bool, str]


def not_found(fault: s3.Fault) -> bool:
    return fault.kind in (s3.Kind.NOT_FOUND, s3.Kind.NO_BUCKET)




def session_client(c: Checkup, anonymous: bool, **credentials: str | None):
    import boto3

    session = boto3.Session(**credentials)
    c.client = s3.client(session, anonymous=anonymous, region=REGION, attempts=2,
                         connect_timeout=CONNECT_TIMEOUT_SECONDS,
                         read_timeout=READ_TIMEOUT_SECONDS)
    return session


def endpoint_url_of(client) -> str:
    parts = urlsplit(client.meta.endpoint_url)
    host = parts.netloc.rpartition("@")[2]  # never show user:password@
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def cannot_reach(c: Checkup, exc: Exception) -> Result | None:
    if s3.classify(exc).kind is not s3.Kind.UNREACHABLE:
        return None
    return False, (f"Endpoint: cannot reach {endpoint_url_of(c.client)} ({type(exc).__name__}); "
                   "check the network or proxy, and AWS_ENDPOINT_URL if it is set.")


