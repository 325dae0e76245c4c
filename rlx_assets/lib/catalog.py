"""The DuckDB catalog: SQL views over ready/ for researchers.

Views read `ready/` through a glob with hive partitioning (`exchange`, `symbol`, `dt`), so
they see new partitions as soon as they land; a refresh creates the views of tables that
have data and drops those of tables that have none. Quarantined data is never visible.
"""

from __future__ import annotations

import urllib.parse

import duckdb

from rlx_assets.lib.instruments import Instrument, instrument_prefix
from rlx_assets.lib.lake import READY, Lake, LakeError


def _glob(lake: Lake, table: str, instrument: Instrument | None) -> str:
    exchange = f"exchange={instrument.exchange}" if instrument else "exchange=*"
    symbol = f"symbol={instrument.symbol}" if instrument else "symbol=*"
    return lake.location(f"{READY}/{table}/{exchange}/{symbol}/dt=*/*.parquet")


def view_name(table: str, instrument: Instrument | None = None) -> str:
    return f"{instrument.slug}_{table}" if instrument else table


def connect_to_lake(conn: duckdb.DuckDBPyConnection, lake: Lake) -> None:
    """Let `conn` read an s3:// lake: DuckDB's httpfs extension and a session secret from the
    standard AWS chain. Nothing for a local lake.

    The secret lives only in this connection; the catalog file keeps the views, not the
    credentials, so every session that queries an s3:// lake calls this first.
    """
    if lake.is_local:
        return
    import boto3

    try:
        conn.execute("INSTALL httpfs")  # a no-op once installed; downloads it otherwise
        conn.execute("LOAD httpfs")
    except duckdb.Error as exc:
        raise LakeError(
            f"DuckDB cannot load its httpfs extension, which views over {lake.root} need "
            f"({str(exc).splitlines()[0]}); run `INSTALL httpfs` once on a machine with "
            "internet access, or copy ~/.duckdb/extensions from one.") from None
    session = boto3.session.Session()
    options = {"REGION": session.region_name or "us-east-1"}
    credentials = session.get_credentials()
    if credentials is not None:
        frozen = credentials.get_frozen_credentials()
        options.update(KEY_ID=frozen.access_key, SECRET=frozen.secret_key)
        if frozen.token:
            options["SESSION_TOKEN"] = frozen.token
    endpoint = lake.endpoint_url
    if endpoint:
        url = urllib.parse.urlparse(endpoint)
        options.update(ENDPOINT=url.netloc, URL_STYLE="path",
                       USE_SSL="true" if url.scheme == "https" else "false")
    params = ", ".join(f"{key} ${key.lower()}" for key in options)
    try:
        conn.execute(f"CREATE OR REPLACE SECRET rlx_lake (TYPE s3, {params})",
                     {key.lower(): value for key, value in options.items()})
    except duckdb.Error:
        # Some DuckDB versions do not prepare CREATE SECRET: quote the values instead, and
        # never let an error message carry them.
        literals = ", ".join(f"{key} '{str(value).replace(chr(39), chr(39) * 2)}'"
                             for key, value in options.items())
        try:
            conn.execute(f"CREATE OR REPLACE SECRET rlx_lake (TYPE s3, {literals})")
        except duckdb.Error:
            raise LakeError(f"DuckDB could not create the S3 secret for {lake.root}; check "
                            "the AWS credentials and endpoint variables.") from None


def refresh_catalog(
    conn: duckdb.DuckDBPyConnection,
    lake: Lake,
    instruments: list[Instrument],
    tables: list[str],
) -> dict[str, str]:
    """(Re)create one view per table and instrument, plus one per table over all instruments.

    Returns {view: glob} for the views created; tables with no ready data yet get no view.
    """
    connect_to_lake(conn, lake)
    created: dict[str, str] = {}
    for table in tables:
        keys = lake.store.list(f"{READY}/{table}/")  # one listing per table
        for instrument in [*instruments, None]:
            folder = f"{READY}/" + (instrument_prefix(table, instrument) if instrument
                                    else f"{table}/")
            name = view_name(table, instrument)
            if not any(k.startswith(folder) and k.endswith(".parquet") for k in keys):
                conn.execute(f'DROP VIEW IF EXISTS "{name}"')
                continue
            pattern = _glob(lake, table, instrument)
            literal = pattern.replace("'", "''")
            conn.execute(
                f"CREATE OR REPLACE VIEW \"{name}\" AS SELECT * FROM read_parquet('{literal}', "
                "hive_partitioning = true, hive_types = {'exchange': VARCHAR, 'symbol': VARCHAR, "
                "'dt': DATE})"
            )
            created[name] = pattern
    return created
