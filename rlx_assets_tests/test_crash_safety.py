"""A run killed in the middle of writing a partition leaves nothing partial behind."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq

from rlx_assets.lib.demo_data import write_day
from rlx_assets_tests.stand_ins import BTC

DAY = dt.date(2024, 1, 2)


def _materialize(env: dict[str, str], cwd: Path) -> subprocess.Popen:
    dagster = Path(sys.executable).with_name("dagster")
    return subprocess.Popen(
        [str(dagster), "asset", "materialize", "-m", "rlx_assets.definitions",
         "--select", "binance/btc_usdt/book_delta_v2", "--partition", DAY.isoformat()],
        env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        start_new_session=True)


def test_sigkill_while_writing_leaves_no_partial_file(tmp_path: Path) -> None:
    vendor, lake, home = tmp_path / "vendor", tmp_path / "lake", tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    write_day(vendor, "book_delta_v2", BTC, DAY, rows=6_000_000)
    env = {**os.environ, "CRYPTO_LAKE_SOURCE": str(vendor), "RLX_LAKE_ROOT": str(lake),
           "RLX_END_DATE": "2024-01-05", "DAGSTER_HOME": str(home)}
    staging = lake / "_staging"
    ready = lake / "ready" / "book_delta_v2"

    proc = _materialize(env, tmp_path)
    deadline = time.monotonic() + 120
    while not (staging.is_dir() and any(p.stat().st_size > 0 for p in staging.iterdir())):
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "the run never started writing"
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)  # mid-write: the staged file is partial
    proc.wait()
    assert list(staging.iterdir()), "the interrupted attempt left its staged file"
    assert not list(ready.rglob("*.parquet")), "nothing partial reaches ready/"

    retry = _materialize(env, tmp_path)
    assert retry.wait(timeout=180) == 0, retry.stderr.read().decode()[-2000:]
    files = list(ready.rglob("*.parquet"))
    assert len(files) == 1 and pq.ParquetFile(files[0]).metadata.num_rows == 6_000_000
    assert not list(staging.iterdir()), "the next run removed the leftovers"
