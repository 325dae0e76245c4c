"""Commands over what was recorded and the lake: `status`, `recheck`, `accept`, `sql`."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import sys

from rlx_assets.cli.common import backfill, default_home, json_text
from rlx_assets.lib.gc_pause import paused_gc
from rlx_assets.lib.tables import TABLES


@paused_gc()  # a bulk read of the instance: see lib/gc_pause.py
def status(args: argparse.Namespace) -> int:
    """Print a calendar of partition states per instrument and table (or JSON)."""
    import dagster as dg

    from rlx_assets.defs.status import certificate_states, collect_states
    from rlx_assets.lib.lake import LakeError
    from rlx_assets.lib.status import LEGEND, calendar
    from rlx_assets.settings import ConfigError, Settings

    default_home()
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
        sys.stdout.write(json_text([{"instrument": s.instrument, "table": s.table,
                                     "day": s.day.isoformat(), "state": s.state,
                                     "failed_checks": list(s.failed_checks),
                                     "accepted_checks": list(s.accepted)} for s in states]))
        return 0
    print(f"Window {settings.start_date}..{settings.window_end()}   {LEGEND}")
    print("\n".join(calendar(states)))
    for instrument, state, why in certificates:
        print(f"Certificate {instrument}: {state} ({why})")
    return 0


def recheck(args: argparse.Namespace) -> int:
    """Re-run the pass and checks on stored raw/ copies (no vendor), e.g. after new thresholds."""
    import dagster as dg

    from rlx_assets.definitions import build_definitions
    from rlx_assets.lib.certificate import window_days
    from rlx_assets.settings import ConfigError, Settings

    default_home()
    try:
        settings = Settings.from_env()
        days = window_days(dt.date.fromisoformat(args.start),
                           dt.date.fromisoformat(args.end or args.start))
    except (ConfigError, ValueError) as exc:
        print(exc)
        return 2
    outcomes, _ = backfill(build_definitions(settings), dg.DagsterInstance.get(), settings,
                           days, args.table or list(TABLES),
                           from_raw=True)
    return 0 if all(all(c.values()) for c in outcomes.values()) else 1


def accept(args: argparse.Namespace) -> int:
    """Accept (or revoke, or list) a vendor exception, then re-check the partition."""
    import dagster as dg

    from rlx_assets.definitions import build_definitions
    from rlx_assets.defs import acceptances
    from rlx_assets.lib import acceptance as acc
    from rlx_assets.lib.lake import LakeError
    from rlx_assets.settings import ConfigError, Settings

    default_home()
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
