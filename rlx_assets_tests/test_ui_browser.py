"""Issues 17 and 18, in a real browser: what a person sees in the Dagster UI.

Three vendor-shaped demo days, the last with a negative trade price, a webserver and a daemon
on 127.0.0.1, and Chromium (driven by Playwright) clicking as a person would:

1. the trades asset, *Materialize...*, a partition range, *Launch backfill*; the backfill page
   ends with two partitions succeeded and one failed;
2. the Partitions tab reads "Failed (1)" and "Materialized (2)", the status bar green for the
   good days and red for the bad one, whose page says its run did not materialise it;
3. the Checks tab shows `positive_prices` FAILED for that partition, with its evidence;
4. the certificate, asked for by hand, shows its refusal on its own page (its check
   `window_certified` FAILED, naming the quarantined day), and `vendor_inventory`, once
   materialised, renders its markdown as tables.

With RLX_UI_SCREENSHOTS=docs the pages are saved for the README
(`RLX_UI_SCREENSHOTS=docs ./quickstart.sh test -m browser`); a failing step saves one.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from pathlib import Path

import pytest

from rlx_assets.lib.demo_data import write_day
from rlx_assets.lib.demo_faults import Fault
from rlx_assets.lib.tables import TABLES
from rlx_assets_tests.browser import Browser, browser, chromium_or_skip
from rlx_assets_tests.dagster_servers import dagster_servers, write_instance
from rlx_assets_tests.stand_ins import BTC

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.timeout(480)]

DAYS = [dt.date(2024, 1, 1), dt.date(2024, 1, 2), dt.date(2024, 1, 3)]
BAD = DAYS[-1]
ASSETS = "/assets/binance/btc_usdt"


def demo_with_a_bad_day(root: Path) -> tuple[dict[str, str], Path]:
    vendor, home = root / "vendor", root / "dagster_home"
    for day in DAYS:
        for table in TABLES:
            write_day(vendor, table, BTC, day,
                      fault=Fault.NEGATIVE_PRICE if (table, day) == ("trades", BAD) else None)
    env = {"CRYPTO_LAKE_SOURCE": str(vendor), "RLX_LAKE_ROOT": str(root / "lake"),
           "RLX_START_DATE": DAYS[0].isoformat(), "RLX_END_DATE": DAYS[-1].isoformat(),
           "RLX_BACKFILL_DAYS_PER_RUN": "2", "RLX_STEP_RETRIES": "0"}
    write_instance(home)
    return env, home


def status_bar(page) -> list[tuple[float, float, str]]:
    """The Partitions tab's status bar: (left %, width %, colour) per span."""
    return [(float(left), float(width), colour) for left, width, colour in re.findall(
        r"left: min\(100% - 2px, ([\d.]+)%\); width: ([\d.]+)%;[^>]*><span[^>]*><div "
        r"class=\"PartitionStatusBar_colorSpan[^\"]*\" style=\"background: var\(--color-"
        r"accent-(\w+)\);", page.content())]


def wait_for_text(ui: Browser, pattern: str, timeout: float, reload_every: float = 10.0) -> str:
    """The page's text once it matches `pattern` (reloading now and then, as a person
    waiting would), else a failure."""
    deadline = time.monotonic() + timeout
    reload_at = time.monotonic() + reload_every
    while True:
        text = ui.text()
        if re.search(pattern, text):
            return text
        if time.monotonic() > deadline:
            raise AssertionError(f"{pattern!r} not on the page after {timeout:.0f} s:\n"
                                 f"{text[-2000:]}")
        if time.monotonic() > reload_at:
            ui.page.reload()
            reload_at = time.monotonic() + reload_every
        time.sleep(0.5)


def launch_backfill(ui: Browser, table: str, first: dt.date, last: dt.date) -> str:
    """Materialize... on the table's page, a partition range, Launch backfill: its id."""
    ui.open(f"{ASSETS}/{table}", wait_for="Materialize")
    ui.page.get_by_role("button", name="Materialize…").first.click()
    box = ui.page.get_by_placeholder("ex: 2024-01-01, 2024-01-02")
    box.fill(f"[{first}...{last}]")
    box.press("Enter")
    ui.page.get_by_text(f"{(last - first).days + 1} partitions", exact=True).wait_for()
    ui.shot("launch-backfill")
    ui.page.get_by_role("button", name="Launch backfill").click()
    ui.page.get_by_text("Created backfill").wait_for(timeout=30_000)
    return re.search(r"Created backfill (\w+)", ui.text()).group(1)


def materialize_by_hand(ui: Browser, path: str) -> None:
    """Materialize on an unpartitioned asset's page, confirming past the UI's warning that
    upstream partitions are missing (the refusal is what we want to see); returns once the
    launch went through (leaving the page earlier would cancel it)."""
    ui.open(path, wait_for="Materialize")
    launched = ui.page.expect_response(
        lambda r: "graphql" in r.url and "LaunchPipelineExecution" in (r.request.post_data or ""),
        timeout=30_000)
    with launched as response:
        ui.page.get_by_role("button", name=re.compile(r"Materialize$")).first.click()
        confirm = ui.page.get_by_role("button", name="Confirm", exact=True)
        try:
            confirm.wait_for(timeout=5_000)
            confirm.click()
        except Exception:  # noqa: BLE001 - no warning: launched at once
            pass
    assert "LaunchRunSuccess" in response.value.text(), response.value.text()


def test_what_a_person_sees_of_a_backfill_with_a_bad_day(tmp_path: Path) -> None:
    chromium_or_skip()
    env, home = demo_with_a_bad_day(tmp_path)
    with dagster_servers(home, env) as servers, \
            browser(servers.url.removesuffix("/graphql"), tmp_path, "ui") as ui:
        # 1. A backfill launched as a person does, followed to its end.
        backfill = launch_backfill(ui, "trades", DAYS[0], DAYS[-1])
        ui.open(f"/runs/b/{backfill}", wait_for="Partition selection")
        text = wait_for_text(ui, r"Status\s+(Failed|Completed)", timeout=300)
        assert re.search(r"binance / btc_usdt / trades\s+100% completed\s+3\s+0\s+2\s+1", text), \
            text  # targeted, in progress, succeeded, failed
        ui.shot("backfill-with-a-bad-day")

        # 2. The Partitions tab: the quarantined day is failed (red), never materialised.
        ui.open(f"{ASSETS}/trades?view=partitions", wait_for="Failed (")
        text = ui.text()
        assert "Failed (1)" in text and "Materialized (2)" in text, text
        assert status_bar(ui.page) == [(0.0, 66.667, "green"), (66.667, 33.333, "red")]
        ui.shot("partitions-failed-day")
        ui.open(f"{ASSETS}/trades?view=partitions&partition={BAD}",
                wait_for="did not materialize")
        assert re.search(r"Run \w+ failed, and did not materialize this asset", ui.text())

        # 3. The check that failed, with its evidence, for that partition.
        ui.open(f"{ASSETS}/trades?view=checks&checkDetail=positive_prices",
                wait_for="Latest execution")
        text = ui.text()
        assert re.search(r"positive_prices\s+positive_prices\s+Failed", text), text
        assert re.search(r"price is null or not positive \(1 rows\)\s+Evaluation result\s+"
                         rf"Failed.*Partition\s+{BAD}", text, re.S), text
        assert re.search(r"offending_row_count\s+1", text), text
        ui.shot("check-failed-with-evidence")

        # 4. The certificate refuses, on its own page; the inventory renders as tables.
        materialize_by_hand(ui, f"{ASSETS}/certificate")
        ui.open(f"{ASSETS}/certificate?view=checks&checkDetail=window_certified",
                wait_for="window_certified")
        # the result and the description render separately: wait for both
        text = wait_for_text(ui, rf"trades {BAD}: quarantined \(positive_prices failed\)"
                             r"[\s\S]*Evaluation result\s+Failed", timeout=120)
        ui.shot("certificate-refused")

        materialize_by_hand(ui, "/assets/vendor_inventory")
        ui.open("/assets/vendor_inventory?view=events", wait_for="Events")
        text = wait_for_text(ui, r"Materialized in run", timeout=120)
        rows = ui.page.locator("table tr").all_inner_texts()
        assert re.search(r"vendor_size\s+[\d.]+ MB", text), text  # not a raw byte count
        assert any(re.match(rf"quarantined\s+1\s+[\d.]+ MB\s+{BAD}", r) for r in rows), rows
        assert any(re.match(r"ready\s+2\s+[\d.]+ MB\s+2024-01-01\.\.2024-01-02", r)
                   for r in rows), rows
        ui.shot("vendor-inventory")
