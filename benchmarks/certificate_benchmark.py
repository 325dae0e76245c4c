"""Benchmark: issuing the certificate over a year of full-size ready/ files (issue 14).

    .venv/bin/python benchmarks/certificate_benchmark.py [--days 365] [--sample-days 20]
        [--workdir /tmp/rlx-certificate-bench] [--out benchmarks/results/certificate.json]
        [--keep]

Not part of the test suite. What it does:

1. Checks the free space where `--workdir` lives and that the filesystem keeps sparse files
   sparse, then builds a local lake of `--days` days (2024-01-01 onwards) x 3 tables of
   BINANCE BTC-USDT ready/ files at the vendor's sizes (trades 63 MB, book 267 MB,
   book_delta_v2 170 MB a day: 182.5 GB for a year) with `truncate`: sparse files of zeros,
   a few kB of disk in all. What Dagster would have recorded for each (size, sha256, the
   blocking checks passed) is built as `DayRecord`s; the sha256 of each size of zeros is
   computed here with hashlib, apart from the code under test.
2. (a) First issue: the certificate's verification (`lib/verification.verifier_for`, then
   `lib/certificate.build_certificate`, then `verification.save`, then
   `lib/certificate_files.issue` - what the certificate asset calls, in its order) over the
   first `--sample-days` days with no verification records, so every file is read and
   hashed. A year of that would take 5-10 minutes here, so the sample's time is
   extrapolated linearly to `--days` (the cost is one sha256 per file, nothing else grows
   with the window) unless `--sample-days` equals `--days`. The output says which.
3. Records for the days outside the sample are written as the first issue writes them
   (size, mtime_ns, ctime_ns, sha256 verified, when), so the lake looks as it would after a
   first issue over the whole window.
4. (b) Re-issue: the same calls over all `--days` unchanged days, three times (the median
   is reported); it must read no file (checked).
5. (c) The whole asset, re-issued end to end: every day's `DayRecord` and its blocking
   checks' evaluations are reported to an in-memory Dagster instance (as the table steps
   record them), then `dg.materialize` runs the certificate asset of the real definitions
   (RLX_LAKE_ROOT = the sparse lake): run start, reading 365 x 3 partitions from the event
   log, verification, writing the certificate. A SQLite or PostgreSQL instance reads its
   event log somewhat slower than memory.

The files are sparse, so reading them costs no disk I/O: (a) is the sha256 floor of this
CPU (page-cache fills included); on a real disk it is also bounded by the disk's read rate.
(b) and (c) touch file metadata only (one `stat` per file) either way.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import shutil
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path

from rlx_assets.lib import certificate_files, verification
from rlx_assets.lib.certificate import PASSED, build_certificate, window_days
from rlx_assets.lib.checks import BLOCKING_CHECKS
from rlx_assets.lib.day_record import READY, DayRecord
from rlx_assets.lib.instruments import Instrument
from rlx_assets.lib.lake import Lake

BTC = Instrument("BINANCE", "BTC-USDT")
START = dt.date(2024, 1, 1)
# One BINANCE BTC-USDT day as the vendor ships it (design notes: "Volumes").
SIZES = {"trades": 63_000_000, "book": 267_000_000, "book_delta_v2": 170_000_000}
ROWS = {"trades": 1_500_000, "book": 864_000, "book_delta_v2": 27_000_000}
MIN_FREE = 2 << 30  # the sparse files need a few kB; leave room for everyone else
DAY_NS = 86_400 * 10**9


def check_disk(workdir: Path) -> dict[str, object]:
    """Enough free space, and sparse files stay sparse (or the year would need 182 GB)."""
    workdir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(workdir).free
    if free < MIN_FREE:
        sys.exit(f"Only {free / 1e9:.1f} GB free under {workdir}; need {MIN_FREE / 1e9:.0f} GB.")
    probe = workdir / "sparse-probe"
    with open(probe, "wb") as handle:
        handle.truncate(64 << 20)
    allocated = probe.stat().st_blocks * 512
    probe.unlink()
    if allocated > 1 << 20:
        sys.exit(f"{workdir} does not keep sparse files sparse ({allocated} bytes allocated "
                 "for a 64 MB hole); use --workdir on ext4, xfs, btrfs or tmpfs.")
    return {"workdir": str(workdir), "free_gb": round(free / 1e9, 1)}


def zeros_sha256(size: int) -> str:
    digest, block = hashlib.sha256(), bytes(8 << 20)
    for offset in range(0, size, len(block)):
        digest.update(block[:min(len(block), size - offset)])
    return digest.hexdigest()


def build_lake(root: Path, days: list[dt.date]) -> tuple[Lake, dict[str, dict]]:
    """Sparse ready/ files and what Dagster recorded about each: table -> day -> record."""
    lake = Lake.at(str(root))
    sha = {table: zeros_sha256(size) for table, size in SIZES.items()}
    checks = dict.fromkeys(BLOCKING_CHECKS, PASSED)
    recorded: dict[str, dict] = {table: {} for table in SIZES}
    for day in days:
        midnight = int(dt.datetime.combine(day, dt.time(), dt.UTC).timestamp()) * 10**9
        for table, size in SIZES.items():
            path = lake.zone_file(READY, table, BTC, day)
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "wb") as handle:
                handle.truncate(size)
            recorded[table][day] = DayRecord(
                day=day, zone=READY, rows=ROWS[table], first_time=midnight + 10**6,
                last_time=midnight + DAY_NS - 10**6, location=str(path), version="",
                sha256=sha[table], size=size, checks=checks)
    return lake, recorded


def issue(lake: Lake, recorded: dict[str, dict], end: dt.date) -> tuple[float, dict, int]:
    """What the certificate asset does after reading Dagster's records: (seconds, the
    verification summary, the certificate's size in bytes)."""
    window = {table: {d: r for d, r in days.items() if d <= end}
              for table, days in recorded.items()}
    started = time.perf_counter()
    verifier = verification.verifier_for(lake, BTC)
    verdict = build_certificate(str(BTC), START, end, window, dt.datetime.now(dt.UTC), verifier)
    verification.save(lake, BTC, verifier)
    if verdict.certificate is None:
        sys.exit("Refused: " + "; ".join(verdict.problems[:5]))
    location = certificate_files.issue(lake, BTC, START, end, verdict.certificate)
    seconds = time.perf_counter() - started
    return seconds, verifier.summary(), Path(location).stat().st_size


def complete_records(lake: Lake, recorded: dict[str, dict]) -> int:
    """Records for every file not verified yet, as a first issue writes them."""
    key = verification.records_key(BTC)
    payload = lake.read_json(key) or {"format": verification.FORMAT, "files": {}}
    at = dt.datetime.now(dt.UTC)
    added = 0
    for days in recorded.values():
        for record in days.values():
            if record.location not in payload["files"]:
                stat = os.stat(record.location)
                payload["files"][record.location] = asdict(
                    verification.Verified.of(stat, record.sha256, at))
                added += 1
    lake.write_json(key, payload)
    return added


def whole_asset(root: Path, recorded: dict[str, dict], end: dt.date) -> tuple[float, dict]:
    """(seconds, metadata) of one run of the certificate asset over an event log that holds
    every day of `recorded` (see 5. above)."""
    import dagster as dg

    from rlx_assets.definitions import build_definitions
    from rlx_assets.defs.keys import certificate_key, table_key
    from rlx_assets.settings import Settings

    instance = dg.DagsterInstance.ephemeral()
    for table, days in recorded.items():
        for day, record in days.items():
            partition = day.isoformat()
            instance.report_runless_asset_event(dg.AssetMaterialization(
                asset_key=table_key(BTC, table), partition=partition,
                metadata=record.to_metadata()))
            for check in BLOCKING_CHECKS:
                instance.report_runless_asset_event(dg.AssetCheckEvaluation(
                    asset_key=table_key(BTC, table), check_name=check, passed=True,
                    partition=partition))
    defs = build_definitions(Settings.from_env({
        "RLX_LAKE_ROOT": str(root), "RLX_START_DATE": START.isoformat(),
        "RLX_END_DATE": end.isoformat()}))
    started = time.perf_counter()
    result = dg.materialize([defs.get_assets_def(certificate_key(BTC))], instance=instance,
                            resources=defs.resources)
    seconds = time.perf_counter() - started
    [materialization] = result.asset_materializations_for_node(
        "__".join(certificate_key(BTC).path))
    return seconds, {k: v.value for k, v in materialization.metadata.items()
                     if k.startswith(("ready_files_", "ready_bytes_"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--sample-days", type=int, default=20)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/rlx-certificate-bench"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/certificate.json"))
    parser.add_argument("--keep", action="store_true", help="keep the sparse lake")
    args = parser.parse_args()
    sample = min(args.sample_days, args.days)
    disk = check_disk(args.workdir)
    root = args.workdir / "lake"
    shutil.rmtree(root, ignore_errors=True)
    days = window_days(START, START + dt.timedelta(days=args.days - 1))
    try:
        t0 = time.perf_counter()
        lake, recorded = build_lake(root, days)
        built = time.perf_counter() - t0
        time.sleep(verification.RACY_NS / 1e9)  # files just written are not recorded
        first_s, first, first_bytes = issue(lake, recorded, days[sample - 1])
        assert first["rehashed"] == 3 * sample, first
        added = complete_records(lake, recorded)
        reissues = [issue(lake, recorded, days[-1]) for _ in range(3)]
        for _, summary, _ in reissues:
            assert summary["rehashed"] == 0 and summary["trusted"] == 3 * len(days), summary
        asset_s, asset_files = whole_asset(root, recorded, days[-1])
        assert asset_files["ready_files_rehashed"] == 0, asset_files
        history = len(list((root / "certificates" / "history").glob("*.json")))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    apparent = sum(SIZES.values()) * len(days)
    first_year = first_s * len(days) / sample
    reissue = statistics.median(s for s, _, _ in reissues)
    result = {
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, Python "
                   f"{platform.python_version()}",
        "date": dt.date.today().isoformat(),
        "command": " ".join([".venv/bin/python benchmarks/certificate_benchmark.py",
                             *sys.argv[1:]]),
        "config": {"days": len(days), "tables": list(SIZES), "bytes_per_day": SIZES,
                   "files": 3 * len(days), "apparent_bytes": apparent, "sparse": True,
                   "sample_days": sample, **disk},
        "build_seconds": round(built, 2),
        "first_issue": {
            "measured_days": sample, "measured_seconds": round(first_s, 3),
            "files_hashed": first["rehashed"],
            "hash_mb_per_s": round(first["rehashed_bytes"] / first_s / 1e6, 1),
            "seconds_for_window": round(first_year, 1),
            "extrapolated": sample < len(days)},
        "records_written_for_the_other_days": added,
        "re_issue": {"days": len(days), "seconds_median": round(reissue, 3),
                     "seconds_each": [round(s, 3) for s, _, _ in reissues],
                     "files_hashed": 0, "files_trusted": 3 * len(days),
                     "certificate_bytes": reissues[-1][2],
                     "history_files_after": history},
        "asset_re_issue": {"seconds": round(asset_s, 2), **asset_files,
                           "includes": "dg.materialize of the certificate asset: run start, "
                                       "event-log reads, verification, certificate written"},
        "ratio_first_to_re_issue": round(first_year / reissue, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    how = (f"extrapolated from {sample} days measured in {first_s:.2f} s"
           if sample < len(days) else "measured over the whole window")
    print(f"Certificate over {len(days)} days x 3 tables: {3 * len(days)} ready files, "
          f"{apparent / 1e9:,.1f} GB (sparse: no disk reads, so the first issue is the "
          "sha256 floor of this CPU)")
    print(f"{'':24}{'first issue':>22}{'re-issue, unchanged':>24}")
    print(f"{'seconds':24}{first_year:>22,.1f}{reissue:>24,.3f}")
    print(f"{'files read':24}{3 * len(days):>22,}{0:>24}")
    print(f"{'ratio':24}{first_year / reissue:>22,.0f}x")
    print(f"{'whole asset, seconds':24}{'':>22}{asset_s:>24,.2f}")
    print(f"first issue {how} ({result['first_issue']['hash_mb_per_s']:,.0f} MB/s); "
          f"re-issue: median of {[round(s, 3) for s, _, _ in reissues]} s; "
          f"certificate {reissues[-1][2] / 1e6:.2f} MB; whole asset: dg.materialize over an "
          "in-memory event log holding every day")
    print(f"Results: {args.out}")


if __name__ == "__main__":
    main()
