"""Scale benchmark (issue 15, part 1): N instruments x D days x 3 tables in one instance.

    .venv/bin/python benchmarks/scale_benchmark.py [--instruments 20] [--days 30,90,365,730]
        [--workdir /dev/shm/rlx-scale] [--keep] [--reuse] [--vendor local|s3]
        [--timeout 300] [--out benchmarks/results/scale.json]

Not part of the test suite. For each day count D it builds, under `--workdir/D<D>`:

- a DAGSTER_HOME with SQLite storage holding what table runs record, day by day, for every
  (instrument, table, day): an `AssetMaterialization` of the partition whose metadata is a
  `DayRecord.to_metadata()` (plus the per-run extras of `defs/day_events.partition_metadata`),
  then one partitioned `AssetCheckEvaluation` per blocking check (passed, blocking, ERROR) -
  the shape `defs/day_events.record_day` yields, reported run-less; then a backlog of 1,000
  failed evaluations (on instruments other than the first) for `slack_alerts`;
- a lake with a tiny real ready/ file per partition (size and sha256 recorded), so the
  certificate verifies real files;
- a vendor listing in the vendor layout (tiny placeholder files): a local directory, or with
  `--vendor s3` the same objects uploaded to the vendor's bucket on moto's S3 server on
  127.0.0.1, which the measurements then list through boto3.

It checks that `defs/records.recorded_days` reads the synthetic records back as ready with
every blocking check passed, then measures each figure in its own fresh interpreter (wall
time of the child and its peak RSS from `os.wait4`), against the issue's targets, and writes
`--out` (JSON) and a plot beside it. What reads every day's record (the new-days tick,
`status`, `inventory`) runs twice: first with no record cache beside the instance
(`cold_wall_seconds`), then the figure, with it, as every later run has it.

Building costs about 5 ms of Dagster CPU per event on SQLite (`report_runless_asset_event`,
even on tmpfs): 20 x 730 x 3 x 4 = 175k events take about 17 minutes. `--keep` keeps the
built instances and `--reuse` measures kept ones again. moto's server lists a prefix by
scanning every key of the bucket, so with `--vendor s3` the listing figures grow with the
whole bucket (43,800 objects at 730 days), which S3 does not do.

`--workdir` defaults to /dev/shm (tmpfs): SQLite's fsyncs cost nothing there, which halves
the build time; the reads measured are page-cache reads either way.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

START = dt.date(2024, 1, 1)
SYMBOLS = ["BTC-USDT", "ETH-USDT", "SOL-USDT", "BNB-USDT", "XRP-USDT", "ADA-USDT", "DOGE-USDT",
           "AVAX-USDT", "DOT-USDT", "LINK-USDT", "TRX-USDT", "LTC-USDT", "BCH-USDT", "ATOM-USDT",
           "NEAR-USDT", "APT-USDT", "ARB-USDT", "OP-USDT", "FIL-USDT", "ETC-USDT", "UNI-USDT",
           "XLM-USDT", "ICP-USDT", "SUI-USDT"]
BACKLOG = 1000
DAY_NS = 86_400 * 10**9
ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent

# (name, what, target seconds, RSS target MB or None, how the figure is taken)
TARGETS = {
    "load_definitions": ("loading the definitions (process start to Definitions built)", 5.0,
                         None),
    "tick_certificate_automation": ("certificate automation: one evaluation of every "
                                    "asset's automation condition (steady-state tick)", 10.0,
                                    1024),
    "tick_slack_alerts": ("slack_alerts tick over a backlog of 1,000 failed evaluations",
                          10.0, 1024),
    "tick_new_vendor_days": ("new_vendor_days tick (nothing new at the vendor)", 10.0, 1024),
    "cli_status": ("rlx-assets status (whole command)", 5.0, None),
    "cli_inventory": ("rlx-assets inventory (whole command)", 5.0, None),
    "certificate_reissue": ("issuing one instrument's certificate over D unchanged days "
                            "(dg.materialize)", 30.0, None),
    "graphql_partitions": ("GraphQL asset partitions page query, one table asset", 5.0, None),
}


# What reads every day's record (and so fills the record cache on its first run)
READS_RECORDS = ("tick_new_vendor_days", "cli_status", "cli_inventory")


def instruments(n: int) -> list[str]:
    if n > len(SYMBOLS):
        sys.exit(f"At most {len(SYMBOLS)} instruments.")
    return [f"BINANCE:{s}" for s in SYMBOLS[:n]]


def env_for(workdir: Path, names: list[str], days: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RLX_", "CRYPTO_LAKE_", "SLACK_", "DAGSTER_"))}
    env.update({
        "DAGSTER_HOME": str(workdir / "dagster_home"),
        "CRYPTO_LAKE_SOURCE": str(workdir / "vendor"),
        "RLX_LAKE_ROOT": str(workdir / "lake"),
        "RLX_INSTRUMENTS": ",".join(names),
        "RLX_START_DATE": START.isoformat(),
        "RLX_END_DATE": (START + dt.timedelta(days=days - 1)).isoformat(),
        "RLX_CATALOG_PATH": str(workdir / "catalog.duckdb"),
    })
    return env


# --- building the instance, the lake and the vendor listing --------------------------------

def build(workdir: Path, names: list[str], days: int) -> dict[str, object]:
    """Everything the measurements read; returns build figures and the alert cursor."""
    import dagster as dg

    from rlx_assets.defs.keys import table_key
    from rlx_assets.lib.checks import BLOCKING_CHECKS
    from rlx_assets.lib.day_record import READY, DayRecord
    from rlx_assets.lib.demo_data import vendor_relpath
    from rlx_assets.lib.instruments import Instrument
    from rlx_assets.lib.lake import Lake
    from rlx_assets.lib.tables import TABLES

    shutil.rmtree(workdir, ignore_errors=True)
    home = workdir / "dagster_home"
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    lake = Lake.at(str(workdir / "lake"))
    vendor = workdir / "vendor"
    instance = dg.DagsterInstance.from_config(str(home))
    insts = [Instrument.parse(n) if hasattr(Instrument, "parse") else
             Instrument(*n.split(":")) for n in names]
    window = [START + dt.timedelta(days=i) for i in range(days)]
    t0 = time.perf_counter()
    events = 0
    for inst in insts:
        for table in TABLES:
            key = table_key(inst, table)
            for day in window:
                vpath = vendor / vendor_relpath(table, inst, day)
                vpath.parent.mkdir(parents=True, exist_ok=True)
                vpath.write_bytes(b"PAR1" + day.isoformat().encode() + b"PAR1")
                vstat = vpath.stat()
                data = f"{inst} {table} {day} ready".encode()
                rpath = lake.zone_file(READY, table, inst, day)
                rpath.parent.mkdir(parents=True, exist_ok=True)
                rpath.write_bytes(data)
                midnight = int(dt.datetime.combine(day, dt.time(), dt.UTC).timestamp()) * 10**9
                record = DayRecord(
                    day=day, zone=READY, rows=1000, first_time=midnight + 10**6,
                    last_time=midnight + DAY_NS - 10**6, location=str(rpath), version="",
                    sha256=hashlib.sha256(data).hexdigest(), size=len(data),
                    vendor_object=str(vpath), vendor_bytes=vstat.st_size,
                    vendor_sha256=hashlib.sha256(vpath.read_bytes()).hexdigest(),
                    vendor_version=f"{vstat.st_size}-{vstat.st_mtime_ns}",
                    vendor_contains_gaps="No")
                metadata = {  # what defs/day_events.partition_metadata adds per run
                    **record.to_metadata(), "path": dg.MetadataValue.path(str(rpath)),
                    "raw_reused": False, "download_attempts": 1, "download_mb_per_s": 50.0,
                    "seconds": 1.5, "rows_per_s": 666,
                    "dagster/column_schema": dg.TableSchema(columns=[
                        dg.TableColumn("origin_time", "timestamp[ns, tz=UTC]"),
                        dg.TableColumn("price", "double")]),
                }
                partition = day.isoformat()
                instance.report_runless_asset_event(dg.AssetMaterialization(
                    asset_key=key, partition=partition, metadata=metadata))
                for check in BLOCKING_CHECKS:
                    instance.report_runless_asset_event(dg.AssetCheckEvaluation(
                        asset_key=key, check_name=check, passed=True, partition=partition,
                        blocking=True, severity=dg.AssetCheckSeverity.ERROR,
                        description=f"{check} passed", metadata={"rows": 1000}))
                events += 1 + len(BLOCKING_CHECKS)
        print(f"  D={days}: {inst} recorded ({events} events, "
              f"{time.perf_counter() - t0:.0f} s)", flush=True)
    records_s = time.perf_counter() - t0
    # The alert cursor: every event so far handled; the backlog follows.
    after = max(instance.event_log_storage.get_logs_for_all_runs_by_log_id(
        after_cursor=-1, dagster_event_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION,
        limit=None).keys())
    t1 = time.perf_counter()
    others = insts[1:] or insts
    slots = [(i, t, c, d) for d in reversed(window) for i in others for t in TABLES
             for c in BLOCKING_CHECKS]
    # In a run, as real failures are: Dagster keeps one run-less evaluation per (check,
    # partition) and refuses a second one (UNIQUE constraint on asset_check_executions).
    run_id = str(uuid.uuid4())
    for inst, table, check, day in slots[:BACKLOG]:
        instance.report_dagster_event(run_id=run_id, dagster_event=dg.DagsterEvent(
            event_type_value=dg.DagsterEventType.ASSET_CHECK_EVALUATION.value,
            job_name="__ASSET_JOB", event_specific_data=dg.AssetCheckEvaluation(
                asset_key=table_key(inst, table), check_name=check, passed=False,
                partition=day.isoformat(), blocking=True,
                severity=dg.AssetCheckSeverity.ERROR,
                description=f"{check} failed: 3 rows with a non-positive price",
                metadata={"bad_rows": 3, "first_bad_row": 17,
                          "violations": ["row 17: price 0"]})))
    backlog_s = time.perf_counter() - t1
    verified = verify_readback(instance, insts[0], window)
    instance.dispose()
    return {"events": events + min(BACKLOG, len(slots)), "record_seconds": round(records_s, 1),
            "backlog_seconds": round(backlog_s, 1), "alert_cursor": after,
            "readback": verified}


def build_in_child(workdir: Path, n: int, days: int) -> dict[str, object]:
    """Build in a child so this process stays small: a child's peak RSS as `wait4` reports it
    includes the RSS of the process it was forked from (Linux keeps the pre-exec high-water
    mark), so a parent that had built the instance would inflate every figure."""
    out = workdir.parent / f"build-D{days}.json"
    subprocess.run([sys.executable, __file__, "build", str(workdir), str(n), str(days),
                    str(out)], check=True, cwd=str(ROOT))
    return json.loads(out.read_text())


def verify_readback(instance, inst, window: list[dt.date]) -> str:
    """The synthetic records must read back through the one reader as ready, checks passed."""
    from rlx_assets.defs.keys import table_key
    from rlx_assets.defs.records import recorded_days
    from rlx_assets.lib.checks import BLOCKING_CHECKS
    from rlx_assets.lib.tables import TABLES

    for table in TABLES:
        got = recorded_days(instance, table_key(inst, table), window, BLOCKING_CHECKS)
        bad = [d for d in window if d not in got or not got[d].ready
               or set(got[d].checks.values()) != {"SUCCEEDED"}]
        if bad:
            sys.exit(f"Synthetic records do not read back as ready+passed for {inst} {table}: "
                     f"{bad[:3]} -> {[got.get(d) for d in bad[:1]]}")
    return f"{inst}: {len(window)} days x {len(TABLES)} tables ready, all blocking checks passed"


@contextlib.contextmanager
def vendor_listing(kind: str, vendor: Path, env: dict[str, str]) -> Iterator[dict[str, object]]:
    """The vendor the measurements list: the local directory as built, or (`s3`) the same
    objects uploaded to the vendor's bucket on a moto server on 127.0.0.1, which `env` is
    pointed at for as long as the measurements run."""
    if kind == "local":
        yield {"kind": "local directory", "source": str(vendor)}
        return
    import boto3
    import requests
    from moto.server import ThreadedMotoServer

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        # moto's backends live in this process: a server started for an earlier size holds
        # that size's bucket
        requests.post(f"{endpoint}/moto-api/reset", timeout=10).raise_for_status()
        bucket, prefix = "qnt.data", "market-data/cryptofeed"
        client = boto3.client("s3", endpoint_url=endpoint, region_name="eu-west-1",
                              aws_access_key_id="testing", aws_secret_access_key="testing")
        client.create_bucket(Bucket=bucket,
                             CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        t = time.perf_counter()
        files = sorted(p for p in vendor.rglob("*") if p.is_file())
        for path in files:
            client.put_object(Bucket=bucket, Key=f"{prefix}/{path.relative_to(vendor)}",
                              Body=path.read_bytes())
        upload_s = time.perf_counter() - t
        print(f"  vendor: {len(files)} objects uploaded to moto in {upload_s:.0f} s", flush=True)
        env.update({"CRYPTO_LAKE_SOURCE": f"s3://{bucket}/{prefix}",
                    "AWS_ENDPOINT_URL": endpoint, "aws_access_key_id": "testing",
                    "aws_secret_access_key": "testing", "AWS_DEFAULT_REGION": "eu-west-1"})
        yield {"kind": "moto S3 server on 127.0.0.1", "source": env["CRYPTO_LAKE_SOURCE"],
               "objects": len(files), "upload_seconds": round(upload_s, 1)}
    finally:
        server.stop()


# --- the measurements (each runs in a fresh interpreter: `measure <name> <result file>`) ------

def _defs():
    from rlx_assets.definitions import build_definitions
    from rlx_assets.settings import Settings
    return build_definitions(Settings.from_env())


def _sensor_tick(name: str, cursor: str | None) -> dict[str, object]:
    import dagster as dg
    defs = _defs()
    instance = dg.DagsterInstance.get()
    sensor = defs.resolve_sensor_def(name)
    t = time.perf_counter()
    result = sensor(dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs,
                                            resources=defs.resources))
    seconds = time.perf_counter() - t
    return {"seconds": seconds, "run_requests": len(result.run_requests or []),
            "skip_reason": (result.skip_reason or "")[:200] if hasattr(result, "skip_reason")
            else ""}


def measure(name: str, extra: dict[str, object]) -> dict[str, object]:
    import dagster as dg
    if name == "load_definitions":
        t = time.perf_counter()
        defs = _defs()
        graph = defs.resolve_asset_graph()
        return {"seconds": time.perf_counter() - t,
                "assets": len(list(graph.get_all_asset_keys())),
                "sensors": len(list(defs.sensors or []))}
    if name == "tick_slack_alerts":
        return _sensor_tick("slack_alerts", str(extra["alert_cursor"]))
    if name == "tick_new_vendor_days":
        return _sensor_tick("new_vendor_days", None)
    if name == "tick_certificate_automation":
        defs = _defs()
        instance = dg.DagsterInstance.get()
        t = time.perf_counter()
        first = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        first_s = time.perf_counter() - t
        t = time.perf_counter()
        second = dg.evaluate_automation_conditions(defs=defs, instance=instance,
                                                   cursor=first.cursor)
        return {"seconds": time.perf_counter() - t, "first_tick_seconds": first_s,
                "requested_first": first.total_requested,
                "requested_second": second.total_requested}
    if name == "certificate_reissue":
        from rlx_assets.defs.keys import certificate_key
        from rlx_assets.settings import Settings
        defs = _defs()
        instance = dg.DagsterInstance.get()
        key = certificate_key(Settings.from_env().instruments[0])
        asset = defs.get_assets_def(key)
        times = []
        for _ in range(2):  # the first issue verifies every file; the second is a re-issue
            t = time.perf_counter()
            result = dg.materialize([asset], instance=instance, resources=defs.resources)
            times.append(time.perf_counter() - t)
            assert result.success
        [mat] = result.asset_materializations_for_node("__".join(key.path))
        return {"seconds": times[1], "first_issue_seconds": times[0],
                "ready_files_verified": mat.metadata["ready_files_verified"].value,
                "ready_files_rehashed": mat.metadata["ready_files_rehashed"].value}
    if name == "graphql_partitions":
        return _graphql(extra)
    raise SystemExit(f"unknown measurement {name}")


QUERY = """
query AssetPartitions($assetKey: AssetKeyInput!) {
  assetNodeOrError(assetKey: $assetKey) {
    __typename
    ... on AssetNode {
      partitionKeysByDimension { name }
      partitionStats { numMaterialized numFailed numMaterializing numPartitions }
      assetPartitionStatuses {
        __typename
        ... on TimePartitionStatuses { ranges { status startKey endKey } }
        ... on DefaultPartitionStatuses { materializedPartitions failedPartitions }
      }
    }
  }
}
"""


def _graphql(extra: dict[str, object]) -> dict[str, object]:
    import dagster as dg
    from dagster_graphql.test.utils import define_out_of_process_context, execute_dagster_graphql

    from rlx_assets.defs.keys import table_key
    from rlx_assets.settings import Settings
    location = Path(str(extra["workdir"])) / "code_location.py"
    location.write_text("from rlx_assets.definitions import defs  # noqa: F401\n")
    key = table_key(Settings.from_env().instruments[-1], "trades")
    instance = dg.DagsterInstance.get()
    t = time.perf_counter()
    with define_out_of_process_context(str(location), None, instance) as context:
        started = time.perf_counter() - t
        times, result = [], None
        for _ in range(2):  # a cold and a warm query
            t = time.perf_counter()
            result = execute_dagster_graphql(context, QUERY, {"assetKey": {"path": key.path}})
            times.append(time.perf_counter() - t)
    node = result.data["assetNodeOrError"]
    if node.get("__typename") != "AssetNode":
        raise SystemExit(f"GraphQL answered {result.data} {result.errors}")
    return {"seconds": times[0], "warm_seconds": times[1], "code_server_start_seconds": started,
            "partitionStats": node["partitionStats"],
            "ranges": node["assetPartitionStatuses"].get("ranges")}


# --- running children -----------------------------------------------------------------------

def run_child(argv: list[str], env: dict[str, str], timeout: float,
              stdout_path: Path) -> dict[str, object]:
    """Run argv in its own session; wall seconds, peak RSS (MB) of it and its waited-for
    descendants, exit status; killed (whole group) after `timeout`."""
    with open(stdout_path, "wb") as out:
        t = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, cwd=str(ROOT), stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        timer = threading.Timer(timeout, kill)
        timer.start()
        _, status, usage = os.wait4(proc.pid, 0)
        timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
    return {"wall_seconds": round(time.perf_counter() - t, 2),
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "exit": proc.returncode, "timed_out": timed_out.is_set()}


def measure_all(workdir: Path, env: dict[str, str], extra: dict[str, object],
                timeout: float) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    plans: list[tuple[str, list[str]]] = [
        (name, [sys.executable, __file__, "measure", name]) for name in
        ["load_definitions", "tick_certificate_automation", "tick_slack_alerts",
         "tick_new_vendor_days"]]
    plans += [("cli_status", [str(VENV_BIN / "rlx-assets"), "status", "--json"]),
              ("cli_inventory", [str(VENV_BIN / "rlx-assets"), "inventory", "--json"])]
    plans += [(name, [sys.executable, __file__, "measure", name])
              for name in ["graphql_partitions", "certificate_reissue"]]
    for name, argv in plans:
        result_file = workdir / f"{name}.json"
        result_file.unlink(missing_ok=True)
        child_env = {**env, "RLX_SCALE_RESULT": str(result_file),
                     "RLX_SCALE_EXTRA": json.dumps(extra)}
        cold = None
        if name in READS_RECORDS:
            # The first run decodes every day's event and fills the record cache beside the
            # instance (`lib/record_cache.py`); the figure is the run after it (as every run
            # after the first is), with the first one's time kept as `cold_wall_seconds`.
            shutil.rmtree(workdir / "dagster_home" / "rlx_assets", ignore_errors=True)
            cold = run_child(argv, child_env, timeout, workdir / f"{name}-cold.log")
            if result_file.exists():
                cold.update(json.loads(result_file.read_text()))
                result_file.unlink()
        figures = run_child(argv, child_env, timeout, workdir / f"{name}.log")
        if cold is not None:
            figures["cold_wall_seconds"] = round(float(cold.get("seconds",
                                                                 cold["wall_seconds"])), 2)
            figures["cold_peak_rss_mb"] = cold["peak_rss_mb"]
        if result_file.exists():
            figures.update(json.loads(result_file.read_text()))
        if figures["exit"] != 0 and not figures["timed_out"]:
            tail = (workdir / f"{name}.log").read_text(errors="replace")[-600:]
            figures["error"] = tail
        # The figure compared with the target: the operation itself where the child timed it,
        # else (the CLI commands) the whole process.
        figures["figure_seconds"] = round(float(figures.get("seconds",
                                                            figures["wall_seconds"])), 2)
        if name == "load_definitions":  # process start to definitions built, imports included
            figures["figure_seconds"] = figures["wall_seconds"]
        out[name] = figures
        print(f"    {name}: {figures['figure_seconds']} s (process {figures['wall_seconds']} s, "
              f"{figures['peak_rss_mb']} MB){' TIMEOUT' if figures['timed_out'] else ''}"
              f"{' FAILED' if figures['exit'] and not figures['timed_out'] else ''}", flush=True)
    return out


def rss_mb(figures: dict[str, object]) -> float:
    """The child's own peak RSS where it reported it (`VmHWM`): `wait4`'s figure also counts
    what the parent held when it forked (moto's objects, with `--vendor s3`)."""
    return float(figures.get("own_peak_rss_mb") or figures["peak_rss_mb"])


def verdict(name: str, figures: dict[str, object]) -> tuple[str, str, str]:
    _, target_s, target_mb = TARGETS[name]
    target = f"<= {target_s:g} s" + (f", RSS <= {target_mb} MB" if target_mb else "")
    if figures["timed_out"]:
        return f"> {figures['wall_seconds']} s (timed out)", target, "not met"
    if figures["exit"] != 0:
        return "failed", target, "not measured"
    figure = f"{figures['figure_seconds']:.2f} s, {rss_mb(figures):.0f} MB"
    if "cold_wall_seconds" in figures:
        figure += f" (cold cache {figures['cold_wall_seconds']:.2f} s)"
    met = figures["figure_seconds"] <= target_s and (
        target_mb is None or rss_mb(figures) <= target_mb)
    return figure, target, "met" if met else "NOT MET"


def plot(results: dict[str, object], path: Path) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    runs = results["runs"]
    days = [r["days"] for r in runs]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(13, 5))
    for name in TARGETS:
        ys = [r["figures"][name]["figure_seconds"] if not r["figures"][name]["exit"] else None
              for r in runs]
        ax.plot(days, ys, marker="o", label=name)
        bx.plot(days, [rss_mb(r["figures"][name]) for r in runs], marker="o", label=name)
    ax.set(xlabel=f"days in the window ({results['instruments']} instruments x 3 tables)",
           ylabel="seconds", title="time vs days")
    bx.set(xlabel="days", ylabel="peak RSS (MB)", title="peak RSS of the child process")
    ax.legend(fontsize=7)
    ax.grid(alpha=.3)
    bx.grid(alpha=.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instruments", type=int, default=20)
    parser.add_argument("--days", default="30,90,365,730", help="comma-separated day counts")
    parser.add_argument("--workdir", type=Path, default=Path("/dev/shm/rlx-scale"))
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds before a measurement is killed")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/scale.json")
    parser.add_argument("--keep", action="store_true", help="keep the built instances")
    parser.add_argument("--reuse", action="store_true",
                        help="measure an instance kept by an earlier --keep run of the same "
                             "size instead of building it again")
    parser.add_argument("--vendor", choices=["local", "s3"], default="local",
                        help="the vendor listing: a local directory, or the same objects in "
                             "the vendor's bucket on moto's S3 server (127.0.0.1)")
    args = parser.parse_args()
    names = instruments(args.instruments)
    started = time.perf_counter()
    results: dict[str, object] = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "instruments": len(names), "tables": 3, "workdir": str(args.workdir),
        "cpus": os.cpu_count(), "python": sys.version.split()[0], "runs": []}
    for days in [int(d) for d in args.days.split(",")]:
        workdir = args.workdir / f"D{days}"
        built_file = workdir.parent / f"build-D{days}.json"
        if args.reuse and built_file.exists() and workdir.exists():
            built = json.loads(built_file.read_text())
            print(f"D={days}: reusing {workdir}", flush=True)
        else:
            print(f"D={days}: building {len(names)} instruments x {days} days x 3 tables",
                  flush=True)
            built = build_in_child(workdir, len(names), days)
        print(f"  built: {built}", flush=True)
        extra = {"alert_cursor": built["alert_cursor"], "workdir": str(workdir)}
        env = env_for(workdir, names, days)
        with vendor_listing(args.vendor, workdir / "vendor", env) as listing:
            figures = measure_all(workdir, env, extra, args.timeout)
        results["runs"].append({"days": days, "build": built, "vendor": listing,
                                "figures": figures})
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1, default=str))  # after every D
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    results["total_seconds"] = round(time.perf_counter() - started, 1)
    results["plot"] = str(args.out.with_suffix(".png")) if plot(
        results, args.out.with_suffix(".png")) else None
    args.out.write_text(json.dumps(results, indent=1, default=str))
    print_table(results)


def print_table(results: dict[str, object]) -> None:
    for run in results["runs"]:
        print(f"\n{results['instruments']} instruments x {run['days']} days x 3 tables "
              f"({run['build']['events']} events)")
        print(f"| {'what':<30} | {'figure':<46} | {'target':<24} | met |")
        print(f"|{'-' * 32}|{'-' * 48}|{'-' * 26}|-----|")
        for name in TARGETS:
            figure, target, met = verdict(name, run["figures"][name])
            print(f"| {name:<30} | {figure:<46} | {target:<24} | {met} |")


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "measure":
        output = measure(sys.argv[2], json.loads(os.environ.get("RLX_SCALE_EXTRA", "{}")))
        status = Path("/proc/self/status")
        if status.exists():  # this interpreter's own peak, whatever it was forked from
            hwm = [line for line in status.read_text().splitlines() if line.startswith("VmHWM")]
            output["own_peak_rss_mb"] = round(int(hwm[0].split()[1]) / 1024, 1) if hwm else None
        Path(os.environ["RLX_SCALE_RESULT"]).write_text(json.dumps(output, default=str))
    elif len(sys.argv) == 6 and sys.argv[1] == "build":
        wd, n, d = Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
        Path(sys.argv[5]).write_text(json.dumps(build(wd, instruments(n), d), default=str))
    elif len(sys.argv) >= 2 and sys.argv[1] == "table":  # print (and re-plot) a results file
        print_table(json.loads(Path(sys.argv[2]).read_text()))
        plot(json.loads(Path(sys.argv[2]).read_text()), Path(sys.argv[2]).with_suffix(".png"))
    else:
        main()
