"""`rlx-assets`: the demo backfill (the quick start's main job), re-checks, status, SQL,
accepted vendor exceptions, doctor, inventory and the vendor's instruments."""

from __future__ import annotations

import argparse
import sys

from rlx_assets.cli.demo import demo
from rlx_assets.cli.lake import accept, recheck, sql, status
from rlx_assets.cli.vendor import doctor, instruments, inventory
from rlx_assets.lib.tables import TABLES

__all__ = ["main"]


def _tables_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--table", action="append", choices=list(TABLES),
                        help="only these tables (repeatable)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rlx-assets", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="generate demo vendor days, backfill them, certify them")
    p.add_argument("--days", type=int, default=3, help="number of demo days (default 3)")
    p.add_argument("--start", default="2024-01-01", help="first demo day (default 2024-01-01)")
    p.add_argument("--vendor-dir", default="demo_lake", help="where demo vendor files go")
    p.add_argument("--lake-root", default="data", help="RLX_LAKE_ROOT for the demo")
    p.add_argument("--bad-day", action="store_true",
                   help="make the last day's trades bad, to see a check fail and quarantine")
    p.add_argument("--restart", action="store_true",
                   help="a vendor writer restart on the last day: a 20-minute hole in every "
                        "table and contains_gaps=Yes (see `rlx-assets accept`)")
    p.set_defaults(func=demo)
    q = sub.add_parser("sql", help="query the DuckDB catalog over ready/ (read-only)")
    q.add_argument("query", help='e.g. "select dt, count(*) from trades group by dt"')
    q.add_argument("--lake-root", help="defaults to RLX_LAKE_ROOT (or ./data)")
    q.add_argument("--max-rows", type=int, default=40)
    q.set_defaults(func=sql)
    r = sub.add_parser("recheck", help="re-run checks on stored raw/ data, no download")
    r.add_argument("start", help="first day, YYYY-MM-DD")
    r.add_argument("end", nargs="?", help="last day (default: the first)")
    _tables_option(r)
    r.set_defaults(func=recheck)
    st = sub.add_parser("status", help="calendar of partition states from the instance and lake")
    st.add_argument("--json", action="store_true", help="one JSON object per partition")
    _tables_option(st)
    st.set_defaults(func=status)
    dr = sub.add_parser("doctor", help="check source, credentials, endpoint, discovery, one "
                        "object, lake root and Dagster instance, one line each")
    dr.set_defaults(func=doctor)
    ac = sub.add_parser("accept", help="accept a vendor exception (a failure the vendor will "
                        "never fix), revoke one, or list them; the partition is re-checked")
    ac.add_argument("--table", choices=list(TABLES))
    ac.add_argument("--day", help="the partition, YYYY-MM-DD")
    ac.add_argument("--check", help="the failing blocking check, e.g. temporal_continuity")
    ac.add_argument("--reason", help="why it is accepted (kept in the certificate)")
    ac.add_argument("--instrument", help="EXCHANGE:SYMBOL (default: the only one configured)")
    ac.add_argument("--by", help="who accepts (default: the login name)")
    ac.add_argument("--list", action="store_true", help="list every acceptance")
    ac.add_argument("--revoke", action="store_true", help="revoke the acceptance")
    ac.add_argument("--no-recheck", action="store_true",
                    help="do not re-check the partition from its raw copy now")
    ac.set_defaults(func=accept)
    inv = sub.add_parser("inventory", help="vendor days in the window against what is "
                         "materialised: ready, not fetched, vendor holes, sizes")
    inv.add_argument("--json", action="store_true", help="one JSON object per partition")
    _tables_option(inv)
    inv.add_argument("--sizes", action="store_true",
                     help="with CRYPTO_LAKE_SOURCE=lakeapi, ask each object's size (one HEAD "
                          "request per day; other sources list sizes anyway)")
    inv.set_defaults(func=inventory)
    ins = sub.add_parser("instruments", help="the instruments the vendor has (from its listing), "
                         "with their tables; * marks the configured ones")
    ins.add_argument("--exchange", help="only this exchange, e.g. BINANCE")
    _tables_option(ins)
    ins.set_defaults(func=instruments)
    args = parser.parse_args(argv)
    if getattr(args, "days", 1) < 1:
        parser.error("--days must be at least 1")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
