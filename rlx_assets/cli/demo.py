"""`rlx-assets demo`: the quick start's main job - demo vendor days, their backfill through
Dagster, the certificate, the DuckDB catalog and the vendor inventory, offline."""

from __future__ import annotations

import argparse
import datetime as dt
import os
from pathlib import Path

from rlx_assets.cli.common import QUIET, backfill, default_home


def demo_env(args: argparse.Namespace) -> tuple[dt.date, dt.date]:
    """Point the settings at the demo lake and window unless the user chose otherwise."""
    start = dt.date.fromisoformat(args.start)
    end = start + dt.timedelta(days=args.days - 1)
    os.environ.setdefault("CRYPTO_LAKE_SOURCE", str(Path(args.vendor_dir).absolute()))
    os.environ.setdefault("RLX_LAKE_ROOT", str(Path(args.lake_root).absolute()))
    os.environ["RLX_START_DATE"], os.environ["RLX_END_DATE"] = start.isoformat(), end.isoformat()
    default_home()
    return start, end


def demo(args: argparse.Namespace) -> int:
    start, end = demo_env(args)
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
