"""The doctor's discovery step: which vendor files each configured instrument has, by the
source's own way of listing (a directory, `s3:ListBucket`, lakeapi's `contents.json.gz`),
and the closest names when an instrument is not there."""

from __future__ import annotations

import datetime as dt
import difflib
import zlib

from rlx_assets.lib import s3
from rlx_assets.lib.doctor_checkup import (
    LIST_PAGE,
    Checkup,
    Result,
    cannot_reach,
    not_found,
)
from rlx_assets.lib.instruments import Instrument, instrument_prefix, listed_instrument
from rlx_assets.lib.lakeapi_access import CONTENTS_FILE, contents_keys
from rlx_assets.lib.s3 import first_line
from rlx_assets.lib.tables import TABLES
from rlx_assets.lib.vendor import CREDENTIAL_VARIABLES
from rlx_assets.lib.vendor_local import LocalSource
from rlx_assets.lib.vendor_s3 import listed_instruments


def _listed(c: Checkup, prefix: str) -> list[str]:
    """Up to one page of parquet keys under `prefix` (needs s3:ListBucket)."""
    page = c.client.list_objects_v2(Bucket=c.settings.source.bucket, Prefix=prefix,
                                    MaxKeys=LIST_PAGE)
    return [o["Key"] for o in page.get("Contents", []) if o["Key"].endswith(".parquet")]


class DiscoveryFailed(Exception):
    """No way to find vendor files; the message says why."""


def _contents(c: Checkup, table: str) -> list[str] | None:
    """The keys in the vendor's `<table>/contents.json.gz`, or None if there is none (fetched
    once per checkup: discovery and the closest names both use it)."""
    import botocore.exceptions

    if table not in c.contents:
        key = c.key(f"{table}/{CONTENTS_FILE}")
        try:
            body = c.client.get_object(Bucket=c.settings.source.bucket, Key=key)["Body"].read()
            c.contents[table] = contents_keys(body)
        except botocore.exceptions.ClientError as exc:
            if not not_found(s3.classify(exc)):
                raise
            c.contents[table] = None
    return c.contents[table]


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
                       f"JSON listing ({first_line(exc)}); the vendor's listing is damaged.")
    except Exception as exc:
        unreachable = cannot_reach(c, exc)
        if unreachable is None:
            raise
        return unreachable
    missing = [i for i in c.settings.instruments if not any(found[(str(i), t)] for t in TABLES)]
    if missing:
        return False, (f"Discovery: no vendor files for {', '.join(map(str, missing))} in "
                       f"{', '.join(TABLES)} at {c.where}; {_closest(c, missing)}; check "
                       "RLX_INSTRUMENTS (EXCHANGE:SYMBOL as the vendor spells them; `rlx-assets "
                       "instruments` lists them) and CRYPTO_LAKE_SOURCE.")
    # The object to read: the latest day of the first instrument's trades, else of any series.
    c.sample = next(keys[-1] for keys in found.values() if keys)
    counts = "; ".join(
        f"{i} " + ", ".join(f"{t} {_count(found[(i, t)], how)}" for t in TABLES)
        for i in dict.fromkeys(i for i, _ in found))
    return True, f"Discovery: vendor files via {how}: {counts}."


def _vendor_instruments(c: Checkup) -> set[Instrument]:
    """Every instrument the vendor has in any table: its folders, or for lakeapi the
    contents.json.gz listing (folder listings where that file is missing)."""
    source, found = c.settings.source, set()
    for table in TABLES:
        if source.kind == "local":
            found |= LocalSource(source.path).list_instruments(table)
            continue
        table_prefix = c.key(f"{table}/")
        keys = _contents(c, table) if source.kind == "lakeapi" else None
        if keys is None:
            found |= listed_instruments(c.client, source.bucket, table_prefix)
        else:
            found |= {i for k in keys if (i := listed_instrument(k.removeprefix(table_prefix)))}
    return found


def _closest(c: Checkup, missing: list[Instrument]) -> str:
    """For each missing instrument, the closest names the vendor has (difflib)."""
    import botocore.exceptions

    try:
        names = sorted(map(str, _vendor_instruments(c)))
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        return f"the vendor's instruments could not be listed ({first_line(exc)})"
    if not names:
        return "the vendor has no instruments there at all"
    return "; ".join(
        f"closest to {m}: " + (", ".join(close) if (close := difflib.get_close_matches(
            str(m), names, n=3, cutoff=0.6)) else f"none among the vendor's {len(names)}")
        for m in missing)


def _count(keys: list[str], how: str) -> str:
    """Listing stops after one page: say "at least" then."""
    return f"{len(keys)}+" if len(keys) >= LIST_PAGE and "listing" in how else str(len(keys))


