"""Commands about the vendor: `doctor` (is everything in place for a run?), `inventory`
(the vendor's days against ours) and `instruments` (what the vendor has)."""

from __future__ import annotations

import argparse
import contextlib
import sys

from rlx_assets.cli.common import default_home, json_text
from rlx_assets.lib.gc_pause import paused_gc


def doctor(args: argparse.Namespace) -> int:
    """Check source, credentials, endpoint, discovery, one object, lake root and instance."""
    from rlx_assets.lib.doctor import run_doctor
    from rlx_assets.settings import Settings, environment

    env = environment()
    default_home()

    def emit(passed: bool, line: str) -> None:
        print(f"{'ok' if passed else 'FAIL':<4}  {line}", flush=True)

    def probe_instance() -> tuple[str, int]:
        import dagster as dg

        with dg.DagsterInstance.get() as instance:
            return type(instance.run_storage).__name__, instance.get_runs_count()

    return 0 if run_doctor(env, emit, lambda: Settings.from_env(env), probe_instance) else 1


def _settings_and_source():
    """(Settings, vendor source) from the environment, or None once the configuration or
    vendor error is printed."""
    from rlx_assets.defs.inventory import crypto_lake_from_env
    from rlx_assets.lib.vendor import VendorError
    from rlx_assets.settings import ConfigError, Settings

    try:
        settings = Settings.from_env()
        return settings, crypto_lake_from_env(settings).vendor()
    except (ConfigError, VendorError) as exc:
        print(exc)
        return None


@paused_gc()  # a bulk read of the instance and the vendor: see lib/gc_pause.py
def inventory(args: argparse.Namespace) -> int:
    """Vendor days in the window per instrument and table, against what is materialised."""
    import dagster as dg

    from rlx_assets.defs.inventory import collect_inventory
    from rlx_assets.lib import inventory as inv
    from rlx_assets.lib.vendor import VendorError

    default_home()
    loaded = _settings_and_source()
    if loaded is None:
        return 2
    settings, source = loaded
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
        sys.stdout.write(json_text({"source": str(settings.source), "start": start.isoformat(),
                                    "end": end.isoformat(), **inv.totals(days),
                                    "days": [d.to_json() for d in days]}, rows_key="days"))
        return 0
    print(f"Vendor inventory of {settings.source}, window {start}..{end}")
    print("\n".join(inv.text_lines(days)))
    if settings.source.kind == "lakeapi" and not args.sizes:
        print("(sizes: add --sizes to ask the vendor for each object's size, one request a day)")
    return 0


def instruments(args: argparse.Namespace) -> int:
    """What the vendor has (its listing): one line per instrument with its tables; `*` marks
    the configured ones, and configured ones the vendor lacks are named at the end."""
    from rlx_assets.lib.tables import TABLES
    from rlx_assets.lib.vendor import VendorError

    loaded = _settings_and_source()
    if loaded is None:
        return 2
    settings, source = loaded
    tables = args.table or list(TABLES)
    exchange = args.exchange.strip().upper() if args.exchange else None
    has: dict = {}
    try:
        with contextlib.redirect_stdout(sys.stderr):  # lakeapi prints its warnings
            for table in tables:
                for instrument in source.list_instruments(table, exchange):
                    has.setdefault(instrument, []).append(table)
    except VendorError as exc:
        print(exc)
        return 1
    scope = " ".join(filter(None, [exchange, ", ".join(tables)]))
    print(f"Vendor instruments at {settings.source} ({scope}): {len(has)}; "
          "* = in the configuration")
    width = max((len(str(i)) for i in has), default=0)
    for instrument in sorted(has):
        mark = "*" if instrument in settings.instruments else " "
        print(f"{mark} {str(instrument):<{width}}  {', '.join(has[instrument])}")
    absent = [str(i) for i in settings.instruments
              if i not in has and exchange in (None, i.exchange)]
    if absent:
        print(f"Configured but not at the vendor: {', '.join(absent)} (`rlx-assets doctor` "
              "names the closest).")
    return 0
