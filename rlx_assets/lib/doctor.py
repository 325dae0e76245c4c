"""`rlx-assets doctor`: is everything in place for a run? One step at a time, one line each.

Steps run in order and share a `Checkup`; each returns (ok, one-line message) and the first
failure ends the checkup. Network calls use short timeouts and one retry at most, so an
unreachable endpoint fails in seconds. Credential values never appear in a message: steps
name variables only, and every line is passed through a redactor as well. Plain logic: the
caller hands in how to load the settings and how to open the Dagster instance, so this module
imports neither.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from rlx_assets.lib import s3
from rlx_assets.lib.doctor_checkup import (
    KINDS,
    PARQUET_MAGIC,
    Checkup,
    InstanceProbe,
    Result,
    cannot_reach,
    endpoint_url_of,
    not_found,
    session_client,
)
from rlx_assets.lib.doctor_discovery import check_discovery
from rlx_assets.lib.lake import LakeError
from rlx_assets.lib.s3 import first_line
from rlx_assets.lib.slack import Redactor
from rlx_assets.lib.vendor import CREDENTIAL_NAMES, CREDENTIAL_VARIABLES, credential_variables


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


def check_credentials(c: Checkup) -> Result:
    kind = c.settings.source.kind
    if kind == "local":
        return True, "Credentials: none needed for a local directory."
    if kind == "sample":
        session_client(c, anonymous=True)
        return True, "Credentials: none needed (the sample bucket is read anonymously)."
    found = credential_variables(c.env)
    key, secret = found.get("aws_access_key_id"), found.get("aws_secret_access_key")
    if bool(key) != bool(secret):
        other = ("aws_secret_access_key (or AWS_SECRET_ACCESS_KEY)" if key
                 else "aws_access_key_id (or AWS_ACCESS_KEY_ID)")
        return False, (f"Credentials: {key or secret} is set but {other} is not; set both in "
                       "the environment or .env.")
    if key:
        session_client(c, anonymous=False, **{f: c.env[n] for f, n in found.items()})
        names = " and ".join(found.values())
        return True, f"Credentials: {names} set (values not shown)."
    session = session_client(c, anonymous=False)
    credentials = session.get_credentials()
    if credentials is None:
        return False, (f"Credentials: none found for CRYPTO_LAKE_SOURCE={c.settings.source}; "
                       f"set {CREDENTIAL_VARIABLES} in the environment or .env.")
    return True, f"Credentials: found by boto3 ({credentials.method}; values not shown)."


def check_endpoint(c: Checkup) -> Result:
    import botocore.exceptions

    source = c.settings.source
    if source.kind == "local":
        if source.path.is_dir():
            return True, f"Vendor directory: {source.path} exists."
        return False, (f"Vendor directory: {source.path} does not exist; run `rlx-assets demo` "
                       "to generate the demo lake, or point CRYPTO_LAKE_SOURCE at your data.")
    endpoint = endpoint_url_of(c.client)
    try:
        c.client.head_bucket(Bucket=source.bucket)
    except botocore.exceptions.ClientError as exc:
        fault = s3.classify(exc)
        if not_found(fault):
            return False, (f"Endpoint: {endpoint} answered, but has no bucket {source.bucket}; "
                           "check CRYPTO_LAKE_SOURCE, and AWS_ENDPOINT_URL if it is set.")
        return True, (f"Endpoint: {endpoint} answered (HTTP {fault.status} {fault.code} to "
                      "HeadBucket, as for keys without s3:ListBucket).")
    except Exception as exc:
        unreachable = cannot_reach(c, exc)
        if unreachable is None:
            raise
        return unreachable
    return True, f"Endpoint: {endpoint} answered; bucket {source.bucket} exists."


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
        unreachable = cannot_reach(c, exc)
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
                       f"({first_line(exc)}); point DAGSTER_HOME at an existing directory "
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
            ok, message = False, f"{label}: unexpected {type(exc).__name__}: {first_line(exc)}"
        emit(ok, redact(" ".join(message.split())))
        if not ok:
            return False
    return True
