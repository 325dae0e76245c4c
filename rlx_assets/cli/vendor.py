"""Commands about the vendor: `doctor` (is everything in place for a run?) and
`inventory` (the vendor's days against ours)."""

from __future__ import annotations

import argparse
import sys

from rlx_assets.cli.common import default_home


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


def inventory(args: argparse.Namespace) -> int:
    """Vendor days in the window per instrument and table, against what is materialised."""
    import contextlib
    import json

    import dagster as dg

    from rlx_assets.defs.inventory import collect_inventory, crypto_lake_from_env
    from rlx_assets.lib import inventory as inv
    from rlx_assets.lib.vendor import VendorError
    from rlx_assets.settings import ConfigError, Settings

    default_home()
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
