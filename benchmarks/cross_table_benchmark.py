"""Cross-table checks (issue 16) on a full-scale-shaped day, beside one decode pass.

    .venv/bin/python benchmarks/cross_table_benchmark.py [--scale 1.0] [--dir DIR]

Scale 1.0: 30M book_delta_v2 rows (10M messages of 3 rows, bids first, size-0 removals,
three resync blocks with a null origin_time), 864k book snapshots x 40 levels (one per
100 ms), 1.5M trades, over one UTC day, written like the vendor's writer (row groups of
10,000 / 3,000 rows, snappy). The streams are generated vectorised (numpy) with the same
shape as `rlx_assets_tests/order_book_sim.py` (a tick grid around a drifting mid) but not
from one consistent book, which a Python-loop simulator cannot produce at 30M rows in
reasonable time: the agreement figures are meaningless here, the work per row is the same.

Each step runs in its own subprocess so that its peak RSS is its own; the checks' times are
printed as ratios to one decode pass (`pl.scan_parquet(p).select(pl.all()).collect()`) of
the two tables each check reads, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

DAY_START = 1_704_153_600 * 10**9
DAY_NS = 86_400 * 10**9
UTC = pa.timestamp("ns", tz="UTC")


def _times(ns: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    return pa.array(ns.astype(np.int64), type=pa.int64(), mask=mask).cast(UTC)


def generate(directory: Path, scale: float, seed: int = 3) -> dict[str, Path]:
    rng = np.random.default_rng(seed)
    messages, snapshots, trades = int(10_000_000 * scale), int(864_000 * scale), \
        int(1_500_000 * scale)
    msg_t = np.sort(rng.integers(DAY_START, DAY_START + DAY_NS, messages))
    mid = 4_000_000 + np.cumsum(rng.choice([-1, 0, 0, 0, 0, 0, 0, 0, 0, 1], messages))
    t = np.repeat(msg_t, 3)
    bid = np.tile([True, True, False], messages)
    offset = rng.integers(1, 200, t.size)
    ticks = np.repeat(mid, 3) + np.where(bid, -offset, offset)
    size = np.round(rng.uniform(0.001, 5.0, t.size), 4) * (rng.random(t.size) > 0.2)
    resync = np.zeros(t.size, bool)
    for start in (t.size // 4, t.size // 2, 3 * t.size // 4):
        resync[start:start + 3_000] = True
    paths = {n: directory / f"{n}.parquet" for n in ("deltas", "book", "trades")}
    pq.write_table(pa.table({
        "origin_time": _times(t - 2_000_000, resync), "received_time": _times(t),
        "sequence_number": pa.array(np.repeat(np.arange(messages) * 2, 3)),
        "side_is_bid": pa.array(bid), "price": pa.array(ticks / 100.0),
        "size": pa.array(size)}), paths["deltas"], row_group_size=10_000)
    del t, bid, offset, ticks, size
    snap_t = DAY_START + np.arange(snapshots) * (DAY_NS // snapshots)
    snap_mid = mid[np.clip(np.searchsorted(msg_t, snap_t), 0, messages - 1)]
    cols = {"origin_time": _times(snap_t - 2_000_000), "received_time": _times(snap_t),
            "sequence_number": pa.array(np.arange(snapshots))}
    for side, sign in (("bid", -1), ("ask", 1)):
        for i in range(20):
            cols[f"{side}_{i}_price"] = pa.array((snap_mid + sign * (i + 1)) / 100.0)
            cols[f"{side}_{i}_size"] = pa.array(np.round(rng.uniform(0.001, 5.0, snapshots), 4))
    pq.write_table(pa.table(cols), paths["book"], row_group_size=3_000)
    del cols
    trade_t = np.sort(rng.integers(DAY_START, DAY_START + DAY_NS, trades))
    trade_mid = mid[np.clip(np.searchsorted(msg_t, trade_t), 0, messages - 1)]
    buy = rng.random(trades) < 0.5
    pq.write_table(pa.table({
        "side": pa.array(np.where(buy, "buy", "sell")),
        "quantity": pa.array(np.round(rng.uniform(0.0001, 1.0, trades), 4)),
        "price": pa.array((trade_mid + np.where(buy, 1, -1)) / 100.0),
        "trade_id": pa.array(np.arange(trades)), "origin_time": _times(trade_t - 2_000_000),
        "received_time": _times(trade_t)}), paths["trades"], row_group_size=10_000)
    return paths


def step(name: str, directory: Path) -> dict[str, object]:
    import polars as pl

    from rlx_assets.lib.cross_table import snapshots_agree_with_deltas, trades_inside_market

    p = {n: directory / f"{n}.parquet" for n in ("deltas", "book", "trades")}
    began = time.perf_counter()
    result: object = None
    if name.startswith("decode:"):
        for table in name.split(":")[1].split("+"):
            pl.scan_parquet(p[table]).select(pl.all()).collect()
    elif name == "snapshots_agree_with_deltas":
        result = snapshots_agree_with_deltas(p["book"], p["deltas"]).description
    elif name == "trades_inside_market":
        result = trades_inside_market(p["trades"], p["book"]).description
    elif name == "delta_stream_complete":
        from rlx_assets.lib.delta_stream import delta_stream_complete

        result = delta_stream_complete(p["deltas"]).description
    seconds = time.perf_counter() - began
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork+exec from the parent.
    status = Path("/proc/self/status").read_text().split("VmHWM:")[1]
    rss_mb = int(status.split()[0]) / 1024
    return {"step": name, "seconds": round(seconds, 2), "peak_rss_mb": round(rss_mb),
            "result": result}


def measure(name: str, directory: Path) -> dict[str, object]:
    out = subprocess.run([sys.executable, __file__, "--step", name, "--dir", str(directory)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--dir", type=Path)
    parser.add_argument("--step")
    args = parser.parse_args()
    if args.step:
        print(json.dumps(step(args.step, args.dir)))
        return
    directory = args.dir or Path(tempfile.mkdtemp(prefix="cross_table_bench_"))
    directory.mkdir(parents=True, exist_ok=True)
    if not (directory / "trades.parquet").exists():
        began = time.perf_counter()
        generate(directory, args.scale)
        print(f"generated scale {args.scale} in {time.perf_counter() - began:.0f} s: "
              + ", ".join(f"{n} {pq.ParquetFile(directory / f'{n}.parquet').metadata.num_rows:,}"
                          f" rows" for n in ("deltas", "book", "trades")))
    pairs = {"snapshots_agree_with_deltas": "decode:book+deltas",
             "trades_inside_market": "decode:trades+book",
             "delta_stream_complete": "decode:deltas"}
    for check, decode in pairs.items():
        base, run = measure(decode, directory), measure(check, directory)
        print(f"{check}: {run['seconds']} s, peak RSS {run['peak_rss_mb']} MB | {decode}: "
              f"{base['seconds']} s, peak RSS {base['peak_rss_mb']} MB | time ratio "
              f"{run['seconds'] / base['seconds']:.2f}x\n  {run['result']}")


if __name__ == "__main__":
    main()
