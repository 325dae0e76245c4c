"""`rlx-assets`: the demo backfill (the quick start's main job), re-checks, status, SQL,
accepted vendor exceptions, doctor and inventory."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import sys
import time
from pathlib import Path

# The demo prints its own summary; failures are explained there, not as tracebacks.
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _demo_env(args: argparse.Namespace) -> tuple[dt.date, dt.date]:
    """Point the settings at the demo lake and window unless the user chose otherwise."""
    start = dt.date.fromisoformat(args.start)
    end = start + dt.timedelta(days=args.days - 1)
    os.environ.setdefault("CRYPTO_LAKE_SOURCE", str(Path(args.vendor_dir).absolute()))
    os.environ.setdefault("RLX_LAKE_ROOT", str(Path(args.lake_root).absolute()))
    os.environ["RLX_START_DATE"], os.environ["RLX_END_DATE"] = start.isoformat(), end.isoformat()
    _default_home()
    return start, end


def _default_home() -> None:
    """Use the project's dagster_home when DAGSTER_HOME is not set."""
    home = PROJECT_ROOT / "dagster_home"
    if "DAGSTER_HOME" not in os.environ and (home / "dagster.yaml").is_file():
        os.environ["DAGSTER_HOME"] = str(home)


def backfill(defs, instance, settings, days: list[dt.date], tables: list[str],
             from_raw: bool = False, instruments=None) -> tuple[dict, dict[str, int]]:
    """Materialise `tables` for each day in-process (one run per instrument and day), with
    the production assets and resources; print one line per run.

    Returns ({(instrument, day): {"table.check": passed}}, {table: rows}).
    """
    import dagster as dg

    from rlx_assets.defs.assets import table_run_config
    from rlx_assets.defs.keys import table_key

    outcomes: dict[tuple[str, str], dict[str, bool]] = {}
    rows: dict[str, int] = {table: 0 for table in tables}
    for instrument in instruments or settings.instruments:
        keys = [table_key(instrument, t) for t in tables]
        for day in days:
            started = time.perf_counter()
            result = dg.materialize([defs.get_assets_def(k) for k in keys],
                                    partition_key=day.isoformat(), instance=instance,
                                    resources=defs.resources, raise_on_error=False,
                                    run_config={**QUIET, **table_run_config(keys, from_raw)})
            checks = outcomes.setdefault((str(instrument), day.isoformat()), {})
            for event in result.get_asset_check_evaluations():
                checks[f"{event.asset_key.path[-1]}.{event.check_name}"] = event.passed
            for key in keys:  # ready days are materialisations, quarantined ones observations
                node = "__".join(key.path)
                for event in [*result.asset_materializations_for_node(node),
                              *result.asset_observations_for_node(node)]:
                    rows[key.path[-1]] += int(event.metadata["dagster/row_count"].value)
            failed = [name for name, ok in checks.items() if not ok]
            errors = [e.step_failure_data.user_failure_data.description
                      for e in result.get_step_failure_events()
                      if e.step_failure_data.user_failure_data] if not failed else []
            verdict = "all checks passed" if result.success else (
                "FAILED " + ", ".join(failed or errors or ["(see the run in the UI)"]))
            print(f"    {instrument} {day}: {verdict} ({time.perf_counter() - started:.1f} s)")
    return outcomes, rows


def demo(args: argparse.Namespace) -> int:
    start, end = _demo_env(args)
    import dagster as dg

    from rlx_assets.definitions import build_definitions
    from rlx_assets.defs.catalog import CATALOG_KEY
    from rlx_assets.defs.inventory import INVENTORY_KEY
    from rlx_assets.defs.keys import certificate_key
    from rlx_assets.lib.certificate import window_days
    from rlx_assets.lib.demo_data import write_day, write_demo_lake
    from rlx_assets.lib.demo_faults import Fault
    from rlx_assets.lib.demo_habits import Habits
    from rlx_assets.lib.tables import TABLES
    from rlx_assets.settings import Settings

    settings = Settings.from_env()
    days = window_days(start, end)
    if settings.source.kind != "local":
        print(f"CRYPTO_LAKE_SOURCE={settings.source} is not a local directory; the demo "
              "generates its own vendor files, so unset it or point it at a directory.")
        return 2
    print(f"1/3 Writing demo vendor files for {len(days)} days to {settings.source.path} ...")
    write_demo_lake(settings.source.path, settings.instruments, days)
    if args.restart:  # the vendor's writer restarted on the last day: a 20-minute hole
        for table in TABLES:
            write_day(settings.source.path, table, settings.instruments[0], days[-1],
                      habits=Habits(restart=True))
    if args.bad_day:
        write_day(settings.source.path, "trades", settings.instruments[0], days[-1],
                  fault=Fault.NEGATIVE_PRICE)

    defs = build_definitions(settings)
    instance = dg.DagsterInstance.get()
    print(f"2/3 Backfilling {len(days)} days x {len(TABLES)} tables x "
          f"{len(settings.instruments)} instrument(s) through Dagster "
          f"(instance: {instance.root_directory}) ...")
    outcomes, rows = backfill(defs, instance, settings, days, list(TABLES))

    print("3/3 Certificate, DuckDB catalog and vendor inventory ...")
    lake = settings.lake()
    cert_keys = [certificate_key(i) for i in settings.instruments]
    cert = dg.materialize([defs.get_assets_def(k) for k in cert_keys] +
                          [defs.get_assets_def(k) for k in (CATALOG_KEY, INVENTORY_KEY)],
                          instance=instance,
                          resources=defs.resources, raise_on_error=False, run_config=QUIET)
    print()
    print(f"Days {start}..{end}; rows per table: "
          + ", ".join(f"{t} {n:,}" for t, n in rows.items()))
    passed = sum(ok for checks in outcomes.values() for ok in checks.values())
    total = sum(len(checks) for checks in outcomes.values())
    print(f"Checks: {passed} of {total} passed"
          + ("" if passed == total else " (failed partitions are in quarantine/)"))
    print(f"Lake: {lake.root} (raw/, ready/, quarantine/, certificates/)")
    for instrument in settings.instruments:
        path = lake.certificate_path(instrument, start, end)
        if path.exists():
            print(f"Certificate: {path}")
    for event in cert.get_step_failure_events():
        print(event.step_failure_data.user_failure_data.description
              if event.step_failure_data.user_failure_data else event.step_failure_data.error)
    if args.restart:
        print(f"Accept the restart hole the vendor will never fill, per table: rlx-assets accept "
              f"--table book --day {end} --check temporal_continuity --reason 'writer restart'")
    print(f"SQL: rlx-assets sql --lake-root {lake.root} "
          "\"select dt, count(*) from trades group by dt order by dt\"")
    print(f"UI:  RLX_END_DATE={end} DAGSTER_HOME={os.environ.get('DAGSTER_HOME', '<home>')} "
          ".venv/bin/dagster dev   (then open http://127.0.0.1:3000)")
    return 0 if cert.success else 1


def sql(args: argparse.Namespace) -> int:
    """Run a read-only query against the catalog and print the result as a table."""
    import duckdb

    from rlx_assets.lib.catalog import connect_to_lake
    from rlx_assets.lib.lake import LakeError
    from rlx_assets.settings import Settings

    settings = Settings.from_env()
    lake = dataclasses.replace(settings, lake_root=args.lake_root or settings.lake_root).lake()
    path = lake.catalog_path
    if not path.is_file():
        print(f"No catalog at {path}; run `rlx-assets demo` or materialise duckdb_catalog.")
        return 2
    with duckdb.connect(str(path), read_only=True) as conn:
        try:
            connect_to_lake(conn, lake)
        except LakeError as exc:
            print(exc)
            return 1
        try:
            conn.sql(args.query).show(max_rows=args.max_rows)
        except duckdb.Error as exc:
            print(f"Query failed: {exc}")
            return 1
    return 0


def recheck(args: argparse.Namespace) -> int:
    """Re-run the pass and checks on stored raw/ copies (no vendor), e.g. after new thresholds."""
    import dagster as dg

    from rlx_assets.definitions import build_definitions
    from rlx_assets.lib.certificate import window_days
    from rlx_assets.settings import ConfigError, Settings

    _default_home()
    try:
        settings = Settings.from_env()
        days = window_days(dt.date.fromisoformat(args.start),
                           dt.date.fromisoformat(args.end or args.start))
    except (ConfigError, ValueError) as exc:
        print(exc)
        return 2
    outcomes, _ = backfill(build_definitions(settings), dg.DagsterInstance.get(), settings,
                           days, args.table or ["trades", "book", "book_delta_v2"],
                           from_raw=True)
    return 0 if all(all(c.values()) for c in outcomes.values()) else 1


def status(args: argparse.Namespace) -> int:
    """Print a calendar of partition states per instrument and table (or JSON)."""
    import json

    import dagster as dg

    from rlx_assets.defs.status import certificate_states, collect_states
    from rlx_assets.lib.lake import LakeError
    from rlx_assets.lib.status import LEGEND, calendar
    from rlx_assets.settings import ConfigError, Settings

    _default_home()
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(exc)
        return 2
    try:
        instance = dg.DagsterInstance.get()
        states = collect_states(instance, settings, args.table or None)
        certificates = certificate_states(instance, settings)
    except LakeError as exc:
        print(exc)
        return 1
    if args.json:
        sys.stdout.write(json.dumps([{"instrument": s.instrument, "table": s.table,
                           "day": s.day.isoformat(), "state": s.state,
                           "failed_checks": list(s.failed_checks),
                           "accepted_checks": list(s.accepted)} for s in states], indent=1)
                         + "\n")
        return 0
    print(f"Window {settings.start_date}..{settings.window_end()}   {LEGEND}")
    print("\n".join(calendar(states)))
    for instrument, state, why in certificates:
        print(f"Certificate {instrument}: {state} ({why})")
    return 0


def accept(args: argparse.Namespace) -> int:
    """Accept (or revoke, or list) a vendor exception, then re-check the partition."""
    import dagster as dg

    from rlx_assets.definitions import build_definitions
    from rlx_assets.defs import acceptances
    from rlx_assets.lib import acceptance as acc
    from rlx_assets.lib.lake import LakeError
    from rlx_assets.settings import ConfigError, Settings

    _default_home()
    try:
        settings = Settings.from_env()
        lake = settings.lake()
        if args.list:
            return _list_acceptances(acc.every(lake))
        missing = [f"--{name}" for name in ("table", "day", "check")
                   if not getattr(args, name)]
        if not args.revoke and not args.reason:
            missing.append("--reason")
        if missing:
            print(f"rlx-assets accept needs {', '.join(missing)} (or --list).")
            return 2
        day = dt.date.fromisoformat(args.day)
        fields = {"table": args.table, "day": day, "check": args.check,
                  "instrument": args.instrument, "by": args.by}
        instance = dg.DagsterInstance.get()
        if args.revoke:
            done = acceptances.revoke(settings, lake, **fields)
            print(f"Revoked the acceptance of {done.check} on {done.table} {done.instrument} "
                  f"{done.day} (kept in the lake, marked revoked).")
        else:
            done = acceptances.accept(instance, settings, lake, reason=args.reason, **fields)
            print(f"Accepted {done.check} on {done.table} {done.instrument} {done.day} "
                  f"(vendor file sha256 {done.vendor_sha256[:12]}): {done.reason}")
            for violation in done.violations:
                print(f"  accepted: {violation}")
    except (ConfigError, LakeError, acc.AcceptanceError, ValueError) as exc:
        print(exc)
        return 2
    if args.no_recheck:
        print(f"Not re-checked; run `rlx-assets recheck {day} --table {args.table}` (or let the "
              "accepted_exceptions sensor do it).")
        return 0
    print(f"Re-checking {args.table} {day} from its raw copy ...")
    outcomes, _ = backfill(build_definitions(settings), instance, settings, [day],
                           [args.table], from_raw=True,
                           instruments=[acceptances.instrument_of(settings, args.instrument)])
    passed = all(all(c.values()) for c in outcomes.values())
    return 0 if passed != args.revoke else 1


def _list_acceptances(items) -> int:
    if not items:
        print("No accepted vendor exceptions.")
        return 0
    for item in items:
        state = f"REVOKED {item.revoked_at} by {item.revoked_by}" if not item.active else "active"
        print(f"{item.instrument} {item.table} {item.day} {item.check}: {item.reason} "
              f"({item.accepted_by}, {item.accepted_at}; {state})")
        for violation in item.violations:
            print(f"    {violation}")
    return 0


def doctor(args: argparse.Namespace) -> int:
    """Check source, credentials, endpoint, discovery, one object, lake root and instance."""
    from rlx_assets.lib.doctor import run_doctor
    from rlx_assets.settings import Settings, environment

    env = environment()
    _default_home()

    def emit(passed: bool, line: str) -> None:
        print(f"{'ok' if passed else 'FAIL':<4}  {line}", flush=True)

    def probe_instance() -> tuple[str, int]:
        import dagster as dg

        with dg.DagsterInstance.get() as instance:
            return type(instance.run_storage).__name__, instance.get_runs_count()

    return 0 if run_doctor(env, emit, lambda: Settings.from_env(env), probe_instance) else 1


def inventory(args: argparse.Namespace) -> int:
    """Vendor days in the window per instrument and table, against what is materialised."""
    import contextlib
    import json

    import dagster as dg

    from rlx_assets.defs.inventory import collect_inventory, crypto_lake_from_env
    from rlx_assets.lib import inventory as inv
    from rlx_assets.lib.vendor import VendorError
    from rlx_assets.settings import ConfigError, Settings

    _default_home()
    try:
        settings = Settings.from_env()
        source = crypto_lake_from_env(settings).vendor()
    except (ConfigError, VendorError) as exc:
        print(exc)
        return 2
    try:
        # lakeapi prints its warnings to stdout; keep stdout for the report (and --json).
        with contextlib.redirect_stdout(sys.stderr):
            days = collect_inventory(dg.DagsterInstance.get(), settings, source,
                                     args.table or None, sizes=args.sizes)
    except VendorError as exc:
        print(exc)
        return 1
    start, end = settings.start_date, settings.window_end()
    if args.json:
        sys.stdout.write(json.dumps({"source": str(settings.source), "start": start.isoformat(),
                                     "end": end.isoformat(), **inv.totals(days),
                                     "days": [d.to_json() for d in days]}, indent=1) + "\n")
        return 0
    print(f"Vendor inventory of {settings.source}, window {start}..{end}")
    print("\n".join(inv.text_lines(days)))
    if settings.source.kind == "lakeapi" and not args.sizes:
        print("(sizes: add --sizes to ask the vendor for each object's size, one request a day)")
    return 0


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
    r.add_argument("--table", action="append", choices=["trades", "book", "book_delta_v2"],
                   help="only these tables (repeatable)")
    r.set_defaults(func=recheck)
    st = sub.add_parser("status", help="calendar of partition states from the instance and lake")
    st.add_argument("--json", action="store_true", help="one JSON object per partition")
    st.add_argument("--table", action="append", choices=["trades", "book", "book_delta_v2"],
                    help="only these tables (repeatable)")
    st.set_defaults(func=status)
    dr = sub.add_parser("doctor", help="check source, credentials, endpoint, discovery, one "
                        "object, lake root and Dagster instance, one line each")
    dr.set_defaults(func=doctor)
    ac = sub.add_parser("accept", help="accept a vendor exception (a failure the vendor will "
                        "never fix), revoke one, or list them; the partition is re-checked")
    ac.add_argument("--table", choices=["trades", "book", "book_delta_v2"])
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
    inv.add_argument("--table", action="append", choices=["trades", "book", "book_delta_v2"],
                     help="only these tables (repeatable)")
    inv.add_argument("--sizes", action="store_true",
                     help="with CRYPTO_LAKE_SOURCE=lakeapi, ask each object's size (one HEAD "
                          "request per day; other sources list sizes anyway)")
    inv.set_defaults(func=inventory)
    args = parser.parse_args(argv)
    if getattr(args, "days", 1) < 1:
        parser.error("--days must be at least 1")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
