"""`rlx-assets doctor`: is everything in place for a run? One step at a time, one line each.

Steps run in order and share a `Checkup`; each returns (ok, one-line message) and the first
failure ends the checkup. Network calls use short timeouts and one retry at most, so an
unreachable endpoint fails in seconds. Credential values never appear in a message: steps
name variables only, and every line is passed through a redactor as well. Plain logic: the
caller hands in how to load the settings and how to open the Dagster instance, so this module
imports neither.
"""

from __future__ import annotations

import datetime as dt
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from rlx_assets.lib import s3
from rlx_assets.lib.instruments import instrument_prefix
from rlx_assets.lib.lake import LakeError
from rlx_assets.lib.lakeapi_access import CONTENTS_FILE, contents_keys
from rlx_assets.lib.slack import Redactor
from rlx_assets.lib.tables import TABLES
from rlx_assets.lib.vendor import CREDENTIAL_NAMES, CREDENTIAL_VARIABLES
from rlx_assets.lib.vendor_local import LocalSource

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

    @property
    def where(self) -> str:
        source = self.settings.source
        return str(source.path) if source.kind == "local" else \
            f"s3://{source.bucket}/{source.prefix}".rstrip("/")

    def key(self, relative: str) -> str:
        prefix = self.settings.source.prefix
        return f"{prefix}/{relative}" if prefix else relative


Result = tuple[bool, str]


def _not_found(fault: s3.Fault) -> bool:
    return fault.kind in (s3.Kind.NOT_FOUND, s3.Kind.NO_BUCKET)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# --- the steps -----------------------------------------------------------------------------

def check_source(c: Checkup) -> Result:
    try:
        c.settings = c.load_settings()
    except ValueError as exc:  # ConfigError: one sentence naming the variable
        return False, f"Configuration: {exc}"
    s = c.settings
    chosen = "CRYPTO_LAKE_SOURCE" if c.env.get("CRYPTO_LAKE_SOURCE", "").strip() else \
        "CRYPTO_LAKE_SOURCE (unset, so the demo lake)"
    where = "" if s.source.kind == "local" else f" ({c.where})"
    return True, (f"Source: {chosen} = {s.source}, {KINDS[s.source.kind]}{where}; "
                  f"instruments {', '.join(map(str, s.instruments))}; window "
                  f"{s.start_date}..{s.window_end()}.")


def _session_client(c: Checkup, anonymous: bool, **credentials: str | None):
    import boto3

    session = boto3.Session(**credentials)
    c.client = s3.client(session, anonymous=anonymous, region=REGION, attempts=2,
                         connect_timeout=CONNECT_TIMEOUT_SECONDS,
                         read_timeout=READ_TIMEOUT_SECONDS)
    return session


def check_credentials(c: Checkup) -> Result:
    kind = c.settings.source.kind
    if kind == "local":
        return True, "Credentials: none needed for a local directory."
    if kind == "sample":
        _session_client(c, anonymous=True)
        return True, "Credentials: none needed (the sample bucket is read anonymously)."
    found = {field: next((n for n in names if c.env.get(n, "").strip()), None)
             for field, names in CREDENTIAL_NAMES.items()}
    key, secret = found["aws_access_key_id"], found["aws_secret_access_key"]
    if bool(key) != bool(secret):
        other = ("aws_secret_access_key (or AWS_SECRET_ACCESS_KEY)" if key
                 else "aws_access_key_id (or AWS_ACCESS_KEY_ID)")
        return False, (f"Credentials: {key or secret} is set but {other} is not; set both in "
                       "the environment or .env.")
    if key:
        _session_client(c, anonymous=False, **{f: c.env[n] for f, n in found.items() if n})
        names = " and ".join(n for n in found.values() if n)
        return True, f"Credentials: {names} set (values not shown)."
    session = _session_client(c, anonymous=False)
    credentials = session.get_credentials()
    if credentials is None:
        return False, (f"Credentials: none found for CRYPTO_LAKE_SOURCE={c.settings.source}; "
                       f"set {CREDENTIAL_VARIABLES} in the environment or .env.")
    return True, f"Credentials: found by boto3 ({credentials.method}; values not shown)."


def _endpoint(client) -> str:
    parts = urlsplit(client.meta.endpoint_url)
    host = parts.netloc.rpartition("@")[2]  # never show user:password@
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _unreachable(c: Checkup, exc: Exception) -> Result | None:
    if s3.classify(exc).kind is not s3.Kind.UNREACHABLE:
        return None
    return False, (f"Endpoint: cannot reach {_endpoint(c.client)} ({type(exc).__name__}); "
                   "check the network or proxy, and AWS_ENDPOINT_URL if it is set.")


def check_endpoint(c: Checkup) -> Result:
    import botocore.exceptions

    source = c.settings.source
    if source.kind == "local":
        if source.path.is_dir():
            return True, f"Vendor directory: {source.path} exists."
        return False, (f"Vendor directory: {source.path} does not exist; run `rlx-assets demo` "
                       "to generate the demo lake, or point CRYPTO_LAKE_SOURCE at your data.")
    endpoint = _endpoint(c.client)
    try:
        c.client.head_bucket(Bucket=source.bucket)
    except botocore.exceptions.ClientError as exc:
        fault = s3.classify(exc)
        if _not_found(fault):
            return False, (f"Endpoint: {endpoint} answered, but has no bucket {source.bucket}; "
                           "check CRYPTO_LAKE_SOURCE, and AWS_ENDPOINT_URL if it is set.")
        return True, (f"Endpoint: {endpoint} answered (HTTP {fault.status} {fault.code} to "
                      "HeadBucket, as for keys without s3:ListBucket).")
    except Exception as exc:
        unreachable = _unreachable(c, exc)
        if unreachable is None:
            raise
        return unreachable
    return True, f"Endpoint: {endpoint} answered; bucket {source.bucket} exists."


def _listed(c: Checkup, prefix: str) -> list[str]:
    """Up to one page of parquet keys under `prefix` (needs s3:ListBucket)."""
    page = c.client.list_objects_v2(Bucket=c.settings.source.bucket, Prefix=prefix,
                                    MaxKeys=LIST_PAGE)
    return [o["Key"] for o in page.get("Contents", []) if o["Key"].endswith(".parquet")]


class DiscoveryFailed(Exception):
    """No way to find vendor files; the message says why."""


def _contents(c: Checkup, table: str) -> list[str] | None:
    """The keys in the vendor's `<table>/contents.json.gz`, or None if there is none."""
    import botocore.exceptions

    key = c.key(f"{table}/{CONTENTS_FILE}")
    try:
        body = c.client.get_object(Bucket=c.settings.source.bucket, Key=key)["Body"].read()
    except botocore.exceptions.ClientError as exc:
        if _not_found(s3.classify(exc)):
            return None
        raise
    return contents_keys(body)


def _discover_s3(c: Checkup) -> tuple[dict[tuple[str, str], list[str]], str]:
    """Keys per (instrument, table) and a note on how they were found."""
    import botocore.exceptions

    source, found, notes = c.settings.source, {}, []
    for table in TABLES:
        listing = _contents(c, table) if source.kind == "lakeapi" else None
        if source.kind == "lakeapi" and listing is None:
            notes.append(f"{table}/{CONTENTS_FILE}")
        for instrument in c.settings.instruments:
            prefix = c.key(instrument_prefix(table, instrument))
            if listing is not None:
                keys = sorted(k for k in listing if k.startswith(prefix))
            else:
                try:
                    keys = _listed(c, prefix)
                except botocore.exceptions.ClientError as exc:
                    if s3.classify(exc).kind is not s3.Kind.DENIED:
                        raise
                    missing = (f"s3://{source.bucket}/{c.key(f'{table}/{CONTENTS_FILE}')} is "
                               "missing and " if source.kind == "lakeapi" else "")
                    raise DiscoveryFailed(
                        f"Discovery: {missing}listing s3://{source.bucket}/{prefix} is denied "
                        "(no s3:ListBucket), so no vendor file can be found; "
                        + ("ask Crypto Lake to publish the listing file, or use credentials "
                           "that may list the bucket." if missing else
                           "grant s3:ListBucket, or for Crypto Lake itself use "
                           "CRYPTO_LAKE_SOURCE=lakeapi (it reads contents.json.gz).")
                    ) from None
            found[(str(instrument), table)] = keys
    if source.kind != "lakeapi":
        how = "listing the bucket"
    elif notes:
        how = (f"{', '.join(notes)} missing, found by listing the bucket instead (lakeapi "
               "does the same)")
    else:
        how = "the vendor's contents.json.gz"
    return found, how


def check_discovery(c: Checkup) -> Result:
    import botocore.exceptions

    source = c.settings.source
    try:
        if source.kind == "local":
            local = LocalSource(source.path)
            found = {(str(i), t): [o.location for _, o in sorted(local.list_days(
                t, i, dt.date.min, dt.date.max).items())]
                for i in c.settings.instruments for t in TABLES}
            how = "the directory"
        else:
            found, how = _discover_s3(c)
    except DiscoveryFailed as exc:
        return False, str(exc)
    except botocore.exceptions.ClientError as exc:
        fault = s3.classify(exc)
        advice = (f"; check that {CREDENTIAL_VARIABLES} are right and that your subscription "
                  "covers these tables") if fault.kind is s3.Kind.DENIED else ""
        return False, (f"Discovery: {c.where} answered {fault.code} (HTTP {fault.status}) when "
                       f"asked for its listing{advice}.")
    except (zlib.error, ValueError, KeyError, TypeError) as exc:
        return False, (f"Discovery: a contents.json.gz under {c.where} is not a zlib-compressed "
                       f"JSON listing ({_first_line(exc)}); the vendor's listing is damaged.")
    except Exception as exc:
        unreachable = _unreachable(c, exc)
        if unreachable is None:
            raise
        return unreachable
    if not any(found.values()):
        return False, (f"Discovery: no vendor files for {', '.join(sorted({i for i, _ in found}))} "
                       f"in {', '.join(TABLES)} at {c.where}; check RLX_INSTRUMENTS "
                       "(EXCHANGE:SYMBOL as the vendor spells them) and CRYPTO_LAKE_SOURCE.")
    # The object to read: the latest day of the first instrument's trades, else of any series.
    c.sample = next(keys[-1] for keys in found.values() if keys)
    counts = "; ".join(
        f"{i} " + ", ".join(f"{t} {_count(found[(i, t)], how)}" for t in TABLES)
        for i in dict.fromkeys(i for i, _ in found))
    return True, f"Discovery: vendor files via {how}: {counts}."


def _count(keys: list[str], how: str) -> str:
    """Listing stops after one page: say "at least" then."""
    return f"{len(keys)}+" if len(keys) >= LIST_PAGE and "listing" in how else str(len(keys))


def check_object(c: Checkup) -> Result:
    import botocore.exceptions

    source = c.settings.source
    try:
        if source.kind == "local":
            where = c.sample
            with open(c.sample, "rb") as handle:
                handle.seek(0, 2)
                handle.seek(max(0, handle.tell() - 8))
                tail = handle.read()
        else:
            where = f"s3://{source.bucket}/{c.sample}"
            tail = c.client.get_object(Bucket=source.bucket, Key=c.sample,
                                       Range="bytes=-8")["Body"].read()
    except botocore.exceptions.ClientError as exc:
        fault = s3.classify(exc)
        return False, (f"Object: reading {where} failed with {fault.code} (HTTP {fault.status}); "
                       + (f"check that your subscription covers it ({CREDENTIAL_VARIABLES})."
                          if fault.kind is s3.Kind.DENIED else
                          "the vendor listed it but cannot serve it."))
    except OSError as exc:
        return False, f"Object: cannot read {where} ({exc.strerror or exc})."
    except Exception as exc:
        unreachable = _unreachable(c, exc)
        if unreachable is None:
            raise
        return unreachable
    if len(tail) < 8 or tail[-4:] != PARQUET_MAGIC:
        return False, (f"Object: {where} does not end in the parquet magic bytes PAR1 (it ends "
                       f"{tail[-4:]!r}); the file is truncated or not parquet.")
    footer = int.from_bytes(tail[:4], "little")
    return True, (f"Object: read the last 8 bytes of {where}: a complete parquet file "
                  f"(footer {footer:,} bytes, PAR1).")


def check_lake(c: Checkup) -> Result:
    try:
        lake = c.settings.lake()
        lake.check_writable()
    except LakeError as exc:
        return False, f"Lake root: {exc}"
    return True, f"Lake root: {lake.root} is writable."


def check_instance(c: Checkup) -> Result:
    home = c.env.get("DAGSTER_HOME", "").strip()
    if not home:
        return False, ("Dagster instance: DAGSTER_HOME is not set; set it to a directory "
                       "holding a dagster.yaml, such as the project's dagster_home.")
    try:
        storage, runs = c.probe_instance()
    except Exception as exc:
        return False, (f"Dagster instance: DAGSTER_HOME={home} is not usable "
                       f"({_first_line(exc)}); point DAGSTER_HOME at an existing directory "
                       "holding a valid dagster.yaml.")
    return True, f"Dagster instance: DAGSTER_HOME={home} works ({storage}, {runs} runs)."


STEPS: tuple[Callable[[Checkup], Result], ...] = (
    check_source, check_credentials, check_endpoint, check_discovery, check_object,
    check_lake, check_instance,
)


def run_doctor(env: Mapping[str, str], emit: Callable[[bool, str], None],
               load_settings: Callable[[], Any], probe_instance: InstanceProbe) -> bool:
    """Run the steps in order, emitting one line each; stop at the first failure.

    `env` is the environment as the pipeline sees it (`os.environ` after `.env`); boto3 and
    Dagster read the process environment too, so the two should agree. `load_settings`
    reads the configuration from it; `probe_instance` opens the Dagster instance.
    """
    redact = Redactor(env.get(name) for names in CREDENTIAL_NAMES.values() for name in names)
    checkup = Checkup(env, load_settings, probe_instance)
    for step in STEPS:
        try:
            ok, message = step(checkup)
        except Exception as exc:  # a step's own surprise still gets one line, not a traceback
            label = step.__name__.removeprefix("check_").replace("_", " ").capitalize()
            ok, message = False, f"{label}: unexpected {type(exc).__name__}: {_first_line(exc)}"
        emit(ok, redact(" ".join(message.split())))
        if not ok:
            return False
    return True
