"""One way in to S3: the client factory and the error classifier that the vendor sources, the
lake's `S3Store` and `rlx-assets doctor` share.

`client` builds every boto3 S3 client we use: standard-mode retries counted in requests,
connect and read timeouts, a region, an endpoint (an S3-compatible server) and unsigned
(anonymous) requests for public buckets. Credentials and `AWS_ENDPOINT_URL` come from the
session, i.e. boto3's own chain; nothing here reads the environment.

`classify` names what went wrong with an S3 call in one `Kind` and a reason that completes
a sentence whose subject is the place asked: `f"{where} {fault.reason}"`. Callers add their
own advice (which variable to set, whether to retry).
"""

from __future__ import annotations

import enum
import http.client
from dataclasses import dataclass

# S3 codes (and HTTP statuses) per kind. A HEAD answer has no body: its code is the status.
DENIED_CODES = {"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"}
NOT_FOUND_CODES = {"404", "NoSuchKey", "NotFound"}
REGION_CODES = {"PermanentRedirect", "301", "AuthorizationHeaderMalformed",
                "IllegalLocationConstraintException"}
TRANSIENT_CODES = {"500", "502", "503", "504", "SlowDown", "Throttling", "ThrottlingException",
                   "RequestTimeout", "RequestTimeTooSkewed", "InternalError",
                   "ServiceUnavailable"}
# Network faults, by class name (botocore's) or class: no connection, or one that broke.
NETWORK_NAMES = {"EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError",
                 "ConnectionClosedError", "SSLError", "ProxyConnectionError",
                 "ResponseStreamingError", "IncompleteReadError"}
NETWORK_TYPES = (http.client.IncompleteRead, ConnectionError, TimeoutError)


class Kind(enum.Enum):
    NO_CREDENTIALS = "no credentials"
    DENIED = "denied"
    NOT_FOUND = "not found"  # no such key (or, for a HEAD, no such bucket)
    NO_BUCKET = "no bucket"
    WRONG_REGION = "wrong region"
    TRANSIENT = "transient"  # the server's temporary fault (5xx, throttling, timeouts)
    UNREACHABLE = "unreachable"  # no connection, or it broke
    OTHER = "other"


@dataclass(frozen=True)
class Fault:
    kind: Kind
    reason: str  # completes "<where> ...": "denied access (AccessDenied, HTTP 403)"
    code: str = ""  # S3 error code, for ClientErrors
    status: str = ""  # HTTP status, for ClientErrors
    message: str = ""  # the server's message, or the exception's text

    @property
    def retriable(self) -> bool:
        return self.kind in (Kind.TRANSIENT, Kind.UNREACHABLE)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def classify(exc: BaseException) -> Fault:
    """What kind of S3 failure `exc` is (Kind.OTHER for anything else)."""
    import botocore.exceptions as bx

    if isinstance(exc, bx.NoCredentialsError):
        return Fault(Kind.NO_CREDENTIALS, "could not be asked: no AWS credentials were found",
                     message=str(exc))
    if isinstance(exc, bx.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
        said, message = f"{code}, HTTP {status}", str(error.get("Message", ""))
        if code in DENIED_CODES or status == "403":
            kind, reason = Kind.DENIED, f"denied access ({said})"
        elif code == "NoSuchBucket":
            kind, reason = Kind.NO_BUCKET, f"does not exist ({said})"
        elif code in NOT_FOUND_CODES or status == "404":
            kind, reason = Kind.NOT_FOUND, f"has no such key ({said})"
        elif code in REGION_CODES or status == "301":
            kind, reason = Kind.WRONG_REGION, f"is in another region ({said})"
        elif code in TRANSIENT_CODES or status.startswith("5"):
            kind, reason = Kind.TRANSIENT, f"answered {code} (HTTP {status}), a temporary fault"
        else:
            kind, reason = Kind.OTHER, f"answered {code} (HTTP {status})"
        return Fault(kind, reason, code, status, message)
    if type(exc).__name__ in NETWORK_NAMES or isinstance(exc, NETWORK_TYPES):
        return Fault(Kind.UNREACHABLE, f"connection failed ({exc})", message=str(exc))
    return Fault(Kind.OTHER, f"failed ({first_line(exc)})", message=str(exc))


def client(session=None, endpoint_url: str | None = None, anonymous: bool = False,
           region: str | None = None, attempts: int = 5, connect_timeout: float = 10,
           read_timeout: float = 60):
    """A boto3 S3 client from `session` (default: a new one, boto3's credential chain).

    `attempts` counts requests, first one included: botocore's `max_attempts` would count
    retries (N + 1 requests), `total_max_attempts` counts requests. `anonymous` sends
    unsigned requests (public buckets such as Crypto Lake's sample bucket).
    """
    import boto3
    import botocore
    from botocore.config import Config

    config = Config(retries={"mode": "standard", "total_max_attempts": max(1, attempts)},
                    connect_timeout=connect_timeout, read_timeout=read_timeout,
                    signature_version=botocore.UNSIGNED if anonymous else None)
    session = session or boto3.session.Session()
    return session.client("s3", region_name=region, endpoint_url=endpoint_url, config=config)


def head(s3_client, bucket: str, key: str) -> dict | None:
    """The object's HEAD answer, or None if there is no such key; other failures raise."""
    try:
        return s3_client.head_object(Bucket=bucket, Key=key)
    except Exception as exc:
        if classify(exc).kind is Kind.NOT_FOUND:
            return None
        raise
