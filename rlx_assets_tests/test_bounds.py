"""Issue 8, hostile input: partitions outside the window are refused, and a vendor file far
larger than expected is measured in bounded memory (the pass reads it in slices)."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import dagster as dg
import pytest

from rlx_assets.definitions import build_definitions
from rlx_assets.lib.demo_data import write_day
from rlx_assets.settings import Settings
from rlx_assets_tests.stand_ins import BTC

DAY = dt.date(2024, 1, 2)


@pytest.mark.parametrize("partition", ["2024-02-29", "2024-03-06", "2024-3-1", "../2024-03-01"])
def test_a_partition_outside_the_window_is_refused(partition: str, tmp_path: Path) -> None:
    defs = build_definitions(Settings.from_env({
        "RLX_START_DATE": "2024-03-01", "RLX_END_DATE": "2024-03-05",
        "RLX_LAKE_ROOT": str(tmp_path / "lake")}))
    asset = defs.get_assets_def(dg.AssetKey.from_user_string("binance/btc_usdt/trades"))
    with pytest.raises(dg.DagsterUnknownPartitionError, match="Could not find a partition"):
        dg.materialize([asset], partition_key=partition, resources=defs.resources,
                       instance=dg.DagsterInstance.ephemeral())
    assert not (tmp_path / "lake").exists(), "nothing was written for a refused partition"


PEAK = textwrap.dedent("""
    import datetime as dt, sys
    from pathlib import Path
    from rlx_assets.lib import normalise
    from rlx_assets.lib.tables import TABLES
    normalise.BATCH_CELLS = 60_000  # slices of 10,000 rows: many slices even for small days
    scan = normalise.normalise_day(Path(sys.argv[1]), TABLES["book_delta_v2"],
                                   dt.date.fromisoformat(sys.argv[2]), Path(sys.argv[3]))
    # VmHWM, not ru_maxrss: the latter keeps the (large) parent's high-water mark over exec.
    hwm = next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]
    print(scan.rows, int(hwm) // 1024)
""")


def peak_mb(raw: Path, out: Path) -> tuple[int, int]:
    done = subprocess.run([sys.executable, "-c", PEAK, str(raw), DAY.isoformat(), str(out)],
                          capture_output=True, text=True, check=True,
                          env={**os.environ, "POLARS_MAX_THREADS": "2"})
    rows, mb = done.stdout.split()
    return int(rows), int(mb)


def test_a_far_larger_day_is_measured_in_the_same_memory(tmp_path: Path) -> None:
    """16x the rows (row groups of up to 1M rows, read in 10,000-row slices): the peak
    stays put."""
    small = write_day(tmp_path / "small", "book_delta_v2", BTC, DAY, rows=200_000)
    large = write_day(tmp_path / "large", "book_delta_v2", BTC, DAY, rows=3_200_000)
    assert large.stat().st_size > 12 * small.stat().st_size
    small_rows, small_mb = peak_mb(small, tmp_path / "small.parquet")
    large_rows, large_mb = peak_mb(large, tmp_path / "large.parquet")
    assert (small_rows, large_rows) == (200_000, 3_200_000)
    # Measured: +42 MB (the larger file's mapped pages among it); decoding the large day
    # whole instead adds ~215 MB (3.2M rows x 6 columns x 8 bytes, and polars' copies).
    assert large_mb - small_mb < 100, (small_mb, large_mb)
