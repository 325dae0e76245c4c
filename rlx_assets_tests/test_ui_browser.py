"""Issue 18, in a real browser: the Partitions tab tells a quarantined day from a good one.

Three vendor-shaped demo days, the last with a negative trade price, are materialised into
a fresh instance; a webserver serves it on 127.0.0.1 and Chromium (driven by Playwright)
opens the trades asset as a person would. The Partitions tab must read "Failed (1)" and
"Materialized (2)", the status bar must be green for the good days and red for the bad one,
the bad day's page must say its run did not materialise it, and the Checks tab must show
`positive_prices` failed. With RLX_UI_SCREENSHOTS=docs the pages are saved for the README.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import dagster as dg
import pytest

from rlx_assets.definitions import build_definitions
from rlx_assets.defs.keys import table_key
from rlx_assets.lib.demo_data import Fault, write_day
from rlx_assets.lib.tables import TABLES
from rlx_assets_tests.browser import browser, chromium_or_skip
from rlx_assets_tests.conftest import settings_for
from rlx_assets_tests.dagster_servers import dagster_servers, write_instance
from rlx_assets_tests.stand_ins import BTC

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.timeout(300)]

DAYS = [dt.date(2024, 1, 1), dt.date(2024, 1, 2), dt.date(2024, 1, 3)]
BAD = DAYS[-1]
TRADES = "/assets/binance/btc_usdt/trades"


def demo_with_a_bad_day(root: Path) -> tuple[dict[str, str], Path]:
    vendor, home = root / "vendor", root / "dagster_home"
    for day in DAYS:
        for table in TABLES:
            write_day(vendor, table, BTC, day,
                      fault=Fault.NEGATIVE_PRICE if (table, day) == ("trades", BAD) else None)
    env = {"CRYPTO_LAKE_SOURCE": str(vendor), "RLX_LAKE_ROOT": str(root / "lake"),
           "RLX_START_DATE": DAYS[0].isoformat(), "RLX_END_DATE": DAYS[-1].isoformat()}
    write_instance(home)
    defs = build_definitions(settings_for(env))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for day in DAYS:
            result = dg.materialize([defs.get_assets_def(table_key(BTC, t)) for t in TABLES],
                                    partition_key=day.isoformat(), instance=instance,
                                    resources=defs.resources, raise_on_error=False)
            assert result.success is (day != BAD), day
    return env, home


def status_bar(page) -> list[tuple[float, float, str]]:
    """The Partitions tab's status bar: (left %, width %, colour) per span."""
    return [(float(left), float(width), colour) for left, width, colour in re.findall(
        r"left: min\(100% - 2px, ([\d.]+)%\); width: ([\d.]+)%;[^>]*><span[^>]*><div "
        r"class=\"PartitionStatusBar_colorSpan[^\"]*\" style=\"background: var\(--color-"
        r"accent-(\w+)\);", page.content())]


def test_the_partitions_tab_shows_the_quarantined_day_failed(tmp_path: Path) -> None:
    chromium_or_skip()
    env, home = demo_with_a_bad_day(tmp_path)
    with dagster_servers(home, env, start_daemon=False) as servers, \
            browser(servers.url.removesuffix("/graphql"), tmp_path, "partitions") as ui:
        ui.open(f"{TRADES}?view=partitions", wait_for="Failed (")
        text = ui.text()
        assert "Failed (1)" in text and "Materialized (2)" in text, text
        assert status_bar(ui.page) == [(0.0, 66.667, "green"), (66.667, 33.333, "red")]
        ui.shot("partitions-failed-day")

        ui.open(f"{TRADES}?view=partitions&partition={BAD}", wait_for="did not materialize")
        assert re.search(r"Run \w+ failed, and did not materialize this asset", ui.text())

        ui.open(f"{TRADES}?view=checks", wait_for="positive_prices")
        checks = ui.text()
        assert re.search(r"positive_prices\s+positive_prices\s+Failed", checks), checks
        assert re.search(r"schema\s+schema\s+Succeeded", checks), checks
