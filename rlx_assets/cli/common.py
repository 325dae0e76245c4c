"""What the commands share: the project's Dagster home, quiet in-process runs, and the
backfill the demo, `recheck` and `accept` run (one run per instrument and day)."""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from pathlib import Path

# The commands print their own summary; failures are explained there, not as tracebacks.
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def json_text(value: object, rows_key: str | None = None) -> str:
    """`value` as JSON with each of its rows (the list itself, or the list under `rows_key`)
    on a line of its own: readable, and written by json's C encoder (an indented dump of
    tens of thousands of rows takes a second in the pure-Python one)."""
    rows = value if rows_key is None else value[rows_key]
    listed = "[" + ",".join(f"\n {json.dumps(row)}" for row in rows) + "\n]"
    if rows_key is None:
        return listed + "\n"
    head = json.dumps({k: v for k, v in value.items() if k != rows_key})
    return f"{head[:-1]}{', ' if len(head) > 2 else ''}{json.dumps(rows_key)}: {listed}}}\n"


def default_home() -> None:
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
