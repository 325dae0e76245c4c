"""Everything specific to `lakeapi` (0.22.3), Crypto Lake's own client, and why each piece exists.

We use lakeapi for one thing: `list_data`, the vendor's way to discover files. It reads
`<prefix>/<table>/contents.json.gz` (zlib-compressed JSON `{"objects": [key, ...]}`), so
that vendor keys without `s3:ListBucket` still find their files, and lists the bucket when
that file cannot be read. Downloads are plain boto3 (`lakeapi.load_data` builds one pandas
DataFrame for the whole range and cannot stream), so lakeapi's login Lambda and its
CloudFront/S3 fallback, which only `load_data` calls, are never used here.

The workarounds, each for a behaviour of lakeapi 0.22.3:

- Its caches (listings, logins) are `FSLRUCache`s under `./.lake_cache`, created in the
  current directory as soon as the module is imported. `lakeapi_module` imports it once,
  under a lock, from inside our cache directory, so nothing lands in a user's checkout.
- It caches listings for up to an hour (contents.json.gz) and eight hours (List* calls), so
  a day published since stays invisible, or a key that is gone stays listed.
  `clear_listing_cache` deletes the cache files; `FSLRUCache.clear()` cannot be trusted
  (see there).
- It caches a failed contents.json.gz fetch as None for an hour and lists the bucket
  instead, which a vendor key without `s3:ListBucket` may not do: one transient error would
  become "access denied" for every partition. `forget_failed_contents_listing` drops it.
- It reads contents.json.gz only for its *default* bucket: `list_files` sets it each time.
- Its contents cache key is the bucket's first seven characters, so a listing cached for
  another bucket can answer (`InvalidArgumentValue`): treated as a miss, listed afresh.
- It prints warnings to stdout; the CLI moves them to stderr where stdout is a report.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import threading
import zlib
from pathlib import Path

from rlx_assets.lib.instruments import Instrument

CONTENTS_FILE = "contents.json.gz"
_IMPORT_LOCK = threading.Lock()


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "rlx_assets" / "lakeapi"


def lakeapi_module(cache_dir: Path):
    """Import lakeapi with its `.lake_cache` folders under `cache_dir`, not the working dir.

    lakeapi creates its caches relative to the current directory when imported, so the
    import runs once, under a lock, from inside our cache directory.
    """
    with _IMPORT_LOCK:
        if "lakeapi" not in sys.modules:
            cache_dir.mkdir(parents=True, exist_ok=True)
            cwd = os.getcwd()
            os.chdir(cache_dir)
            try:
                import lakeapi  # noqa: F401
                import lakeapi.main  # noqa: F401
            finally:
                os.chdir(cwd)
        return sys.modules["lakeapi"]


def clear_listing_cache(lakeapi) -> None:
    """Forget lakeapi's cached listings (its contents.json.gz copies and List* answers).

    The caches are `cachetools_ext` FSLRUCaches, one pickle file per key. Their `clear()`
    cannot be trusted: it maps file names back to keys with `name.strip(".pkl")`, which also
    eats a key's own trailing `p`, `k` or `l` - the key of table `book` becomes `boo`, the
    look-up fails and `clear()` stops there, so `book` listings survived. Remove the files.
    """
    for fs_cache in (lakeapi.main.contents_cache, lakeapi.main.cache):
        for entry in Path(fs_cache.path).glob("*.pkl"):
            entry.unlink(missing_ok=True)


def forget_failed_contents_listing(lakeapi, bucket_path: str, table: str) -> None:
    """Drop a failed `contents.json.gz` fetch that lakeapi cached (as None, for an hour).

    Meanwhile lakeapi would list the bucket instead, which vendor keys without s3:ListBucket
    may not do: one transient error would turn into "access denied" for every partition.
    The key is lakeapi 0.22's `_get_table_contents_cache_key` cache key.
    """
    key = f"bucket={bucket_path[:7]}-table={table}"
    cache = lakeapi.main.contents_cache
    try:
        if cache[key] is None:
            del cache[key]
    except KeyError:
        pass


def list_files(bucket_path: str, table: str, instrument: Instrument, first: dt.date,
               last: dt.date, session, cache_dir: Path | None = None,
               fresh: bool = True) -> list[dict[str, str]]:
    """`lakeapi.list_data`'s entries (`dt`, `filename`, ...) for days first..last, inclusive.

    No files is an empty list. `fresh` forgets cached listings first; without it a listing
    cached for another bucket also counts as none found (the caller lists again, fresh).
    """
    return _list_data(bucket_path, table, session, cache_dir, fresh,
                      start=dt.datetime.combine(first, dt.time()),
                      end=dt.datetime.combine(last + dt.timedelta(days=1), dt.time()),
                      symbols=[instrument.symbol], exchanges=[instrument.exchange])


def list_instruments(bucket_path: str, table: str, session, cache_dir: Path | None = None,
                     exchange: str | None = None) -> set[Instrument]:
    """The instruments in `table`'s fresh `lakeapi.list_data` listing (all days), as the
    vendor spells them; only `exchange`'s if given."""
    return {Instrument(f["exchange"], f["symbol"]) for f in _list_data(
        bucket_path, table, session, cache_dir, True, start=None, end=dt.datetime.max,
        symbols=None, exchanges=[exchange] if exchange else None)}


def _list_data(bucket_path: str, table: str, session, cache_dir: Path | None, fresh: bool,
               **filters) -> list[dict[str, str]]:
    lakeapi = lakeapi_module(cache_dir or default_cache_dir())
    if fresh:
        clear_listing_cache(lakeapi)
    lakeapi.set_default_bucket(bucket_path)
    try:
        return lakeapi.list_data(table, bucket=bucket_path, boto3_session=session, **filters)
    except lakeapi.exceptions.NoFilesFound:
        return []
    except lakeapi.exceptions.InvalidArgumentValue:
        if fresh:
            raise
        return []
    finally:
        forget_failed_contents_listing(lakeapi, bucket_path, table)


def contents_keys(body: bytes) -> list[str]:
    """The keys in a `contents.json.gz` body, read as lakeapi reads them (ValueError,
    KeyError, TypeError or zlib.error if it is damaged)."""
    return [str(key) for key in json.loads(zlib.decompress(body))["objects"]]
