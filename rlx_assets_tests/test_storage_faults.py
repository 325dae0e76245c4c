"""The lake's storage under stress: two runs of one partition at once, a full disk, a lake
root that cannot be written. Each leaves either a whole, correct partition or nothing
partial, and says what went wrong in one sentence naming the path.

The full-disk and read-only cases run in a private mount namespace (`unshare -rm`) with a
small tmpfs or a read-only bind mount as the lake root; they are skipped where that is not
permitted. A tmpfs vanishes with its namespace, so the wrapped command lists the lake from
inside before it exits.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest

from rlx_assets.lib.demo_data import write_day
from rlx_assets.lib.hashing import sha256_file
from rlx_assets.lib.normalise import normalise_day
from rlx_assets.lib.tables import TABLES
from rlx_assets_tests.conftest import materialize_day
from rlx_assets_tests.run_inspection import table_asset_key, zone_dir, zone_files
from rlx_assets_tests.stand_ins import BTC

TABLE = "book_delta_v2"
DAY = dt.date(2024, 1, 2)
ASSET = f"binance/btc_usdt/{TABLE}"
DAGSTER = Path(sys.executable).with_name("dagster")
REPO = Path(__file__).resolve().parents[1]
LOCK_NAME = f"{TABLE}.{BTC.slug}.{DAY}.lock"
FAILURE_PREFIX = "dagster._core.definitions.events.Failure: "
# What must never reach the user instead of our one sentence.
RAW_ERROR_TEXT = ("Traceback (most recent call last)", "OSError", "PermissionError",
                  "[Errno", "LakeError", "The above exception", "During handling")


# --- helpers -------------------------------------------------------------------------------

def dagster_home(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return path


def cli_env(vendor: Path, lake: Path, home: Path) -> dict[str, str]:
    return {**os.environ, "CRYPTO_LAKE_SOURCE": str(vendor), "RLX_LAKE_ROOT": str(lake),
            "RLX_END_DATE": "2024-01-05", "DAGSTER_HOME": str(home)}


def materialize_cmd() -> list[str]:
    return [str(DAGSTER), "asset", "materialize", "-m", "rlx_assets.definitions",
            "--select", ASSET, "--partition", DAY.isoformat()]


def one_sentence(text: str) -> bool:
    """One line ending in a full stop, with no sentence break inside (paths hold dots, but
    never a dot followed by a space and a capital)."""
    return "\n" not in text.strip() and text.strip().endswith(".") \
        and re.search(r"[.;:]\s+[A-Z]", text.strip()) is None


def cli_failure(stderr: str) -> str:
    """The failure description the dagster CLI shows (once for the step, once for the run)."""
    shown = {line[len(FAILURE_PREFIX):] for line in stderr.splitlines()
             if line.startswith(FAILURE_PREFIX)}
    assert len(shown) == 1, f"expected one failure message, got {shown}:\n{stderr[-3000:]}"
    return shown.pop()


def assert_no_raw_error(text: str) -> None:
    for fragment in RAW_ERROR_TEXT:
        assert fragment not in text, f"{fragment!r} shown to the user:\n{text[-3000:]}"


def mount_namespace_or_skip(tmp_path: Path, mount: str) -> None:
    """Skip unless this machine lets us make a private mount namespace and mount in it."""
    probe = tmp_path / "mount_probe"
    probe.mkdir()
    script = {"tmpfs": 'mount -t tmpfs -o size=64k tmpfs "$1"',
              "bind": 'mount --bind -o ro "$1" "$1"'}[mount]
    try:
        done = subprocess.run(["unshare", "-rm", "sh", "-c", script, "sh", str(probe)],
                              capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        pytest.skip("unshare is not installed")
    if done.returncode != 0:
        pytest.skip(f"cannot {mount}-mount in a private mount namespace (unshare -rm): "
                    f"{done.stderr.strip()}")
    probe.rmdir()


# --- 1. two runs of one partition at once ----------------------------------------------------

def lock_waiters(lock: Path) -> int:
    """Processes blocked in flock() on `lock`, from the kernel's lock table."""
    suffix = f":{lock.stat().st_ino} "
    return sum(1 for line in Path("/proc/locks").read_text().splitlines()
               if "->" in line and suffix in line + " ")


def staged_sizes(lake: Path) -> list[int]:
    sizes = []
    for path in (lake / "_staging").glob("*.parquet"):
        try:
            sizes.append(path.stat().st_size)
        except FileNotFoundError:  # published meanwhile
            pass
    return sizes


def recorded(home: Path) -> list[dict[str, object]]:
    """The metadata of every materialisation of the partition that `home`'s runs recorded."""
    with dg.DagsterInstance.from_config(str(home)) as instance:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=table_asset_key(TABLE),
                                  asset_partitions=[DAY.isoformat()]), limit=10).records
        return [{**{k: v.value for k, v in r.asset_materialization.metadata.items()},
                 "_timestamp": r.timestamp} for r in records]


def test_two_runs_of_one_partition_take_turns_and_leave_one_correct_copy(
        tmp_path: Path) -> None:
    if not Path("/proc/locks").is_file():
        pytest.skip("no /proc/locks to see the runs wait on the partition lock")
    vendor, lake = tmp_path / "vendor", tmp_path / "lake"
    vendor_path = write_day(vendor, TABLE, BTC, DAY, rows=3_000_000)
    oracle = normalise_day(vendor_path, TABLES[TABLE], DAY, tmp_path / "oracle.parquet")
    vendor_sha = sha256_file(vendor_path)
    assert oracle.output_sha256 == sha256_file(tmp_path / "oracle.parquet")

    # The start gate: this test holds the partition's lock while both runs start, so that
    # both are inside the partition (blocked on the lock) before either may begin.
    lock = lake / "_locks" / LOCK_NAME
    lock.parent.mkdir(parents=True)
    gate = open(lock, "a")  # released by hand below, once both runs wait
    fcntl.flock(gate, fcntl.LOCK_EX)
    procs: list[subprocess.Popen] = []
    logs = [tmp_path / f"run{i}.log" for i in (1, 2)]
    homes = [dagster_home(tmp_path / f"home{i}") for i in (1, 2)]
    try:
        for home, log in zip(homes, logs, strict=True):
            with open(log, "wb") as out:
                procs.append(subprocess.Popen(
                    materialize_cmd(), env=cli_env(vendor, lake, home), cwd=tmp_path,
                    stdout=subprocess.DEVNULL, stderr=out, start_new_session=True))
        deadline = time.monotonic() + 60
        while lock_waiters(lock) < 2:
            for proc, log in zip(procs, logs, strict=True):
                assert proc.poll() is None, ("a run ended while this test held the partition "
                                             f"lock:\n{log.read_text()[-3000:]}")
            assert time.monotonic() < deadline, "the runs never waited on the partition lock"
            time.sleep(0.02)
        fcntl.flock(gate, fcntl.LOCK_UN)
        gate.close()
        # Watch them: the lock covers the whole pass, so at some moment one run is writing
        # its normalised file in _staging/ while the other still waits on the lock.
        staged_while_waiting = False
        deadline = time.monotonic() + 120
        while any(proc.poll() is None for proc in procs):
            assert time.monotonic() < deadline, "the runs did not finish within 120 s"
            if not staged_while_waiting and lock_waiters(lock) == 1:
                staged_while_waiting = any(size > 0 for size in staged_sizes(lake))
            time.sleep(0.005)
        for proc, log in zip(procs, logs, strict=True):
            assert proc.wait() == 0, log.read_text()[-3000:]
    finally:
        gate.close()
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    assert staged_while_waiting, "no run waited while the other wrote its normalised file"

    # One ready file, the vendor day normalised; nothing in quarantine/.
    ready = zone_files(lake, "ready", TABLE, DAY)
    assert [p.name for p in ready] == ["data.parquet"]
    assert pq.ParquetFile(ready[0]).metadata.num_rows == oracle.rows == 3_000_000
    assert sha256_file(ready[0]) == oracle.output_sha256
    assert not [p for p in (lake / "quarantine").rglob("*") if p.is_file()]
    assert [p.relative_to(lake / "ready").as_posix()
            for p in (lake / "ready").rglob("*") if p.is_file()] == [
        f"{TABLE}/exchange=BINANCE/symbol=BTC-USDT/dt={DAY}/data.parquet"]

    # One raw copy, byte for byte the vendor's, and its manifest.
    raw = zone_files(lake, "raw", TABLE, DAY)
    assert [p.name for p in raw] == ["1.snappy.parquet", "1.snappy.parquet.json"]
    assert raw[0].read_bytes() == vendor_path.read_bytes()
    manifest = json.loads(raw[1].read_text())
    assert manifest["sha256"] == vendor_sha and manifest["size"] == vendor_path.stat().st_size
    assert manifest["location"] == str(vendor_path)

    # Nothing half-done anywhere; the only other file is the lock.
    assert not list(lake.rglob("*.part"))
    assert not list((lake / "_staging").iterdir())
    assert [p.name for p in (lake / "_locks").iterdir()] == [LOCK_NAME]

    # They took turns: one downloaded; the other, let in after it, found that raw copy.
    runs = [recorded(home) for home in homes]
    assert [len(r) for r in runs] == [1, 1], runs
    first, second = sorted((r[0] for r in runs), key=lambda m: m["_timestamp"])
    assert (first["raw_reused"], first["download_attempts"]) == (False, 1)
    assert (second["raw_reused"], second["download_attempts"]) == (True, 0)
    for meta in (first, second):
        assert meta["zone"] == "ready"
        assert meta["sha256"] == oracle.output_sha256
        assert meta["dagster/row_count"] == 3_000_000
        assert meta["vendor_sha256"] == vendor_sha


# --- 2. a full disk ----------------------------------------------------------------------------

# Runs inside the namespace after the dagster command: every file in the lake as JSON.
LISTER = textwrap.dedent("""
    import hashlib, json, os, sys
    root = sys.argv[1]
    out = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            data = open(path, "rb").read()
            out[os.path.relpath(path, root)] = {
                "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                "text": data.decode() if name.endswith(".json") else None}
    print(json.dumps(out))
""")

IN_TMPFS = """
mount -t tmpfs -o size="$1" tmpfs "$RLX_LAKE_ROOT" || exit 97
shift
"$@" 1>&2
rc=$?
printf '%s\\n' '@@LAKE@@'
"$LISTER_PYTHON" -c "$LISTER" "$RLX_LAKE_ROOT"
exit $rc
"""


def materialize_on_tmpfs(tmp_path: Path, vendor: Path, size_bytes: int
                         ) -> tuple[int, str, dict[str, dict]]:
    """`dagster asset materialize` with a `size_bytes` tmpfs as the lake root: its exit
    code, its stderr, and the lake's files as they were when it ended."""
    lake = tmp_path / "lake"
    lake.mkdir()
    env = {**cli_env(vendor, lake, dagster_home(tmp_path / "home")),
           "LISTER": LISTER, "LISTER_PYTHON": sys.executable}
    done = subprocess.run(
        ["unshare", "-rm", "sh", "-c", IN_TMPFS, "sh", f"{size_bytes // 1024}k",
         *materialize_cmd()],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode != 97, f"mounting the tmpfs failed:\n{done.stderr}"
    listing = done.stdout.split("@@LAKE@@\n", 1)
    assert len(listing) == 2, f"the lake was not listed:\n{done.stdout}\n{done.stderr[-3000:]}"
    return done.returncode, done.stderr, json.loads(listing[1])


def pages(size: int) -> int:
    page = os.sysconf("SC_PAGE_SIZE")
    return -(-size // page) * page


RAW_DIR = f"raw/{TABLE}/exchange=BINANCE/symbol=BTC-USDT/dt={DAY}"


@pytest.mark.parametrize("room", ["less_than_the_vendor_file", "the_raw_copy_not_its_manifest",
                                  "the_raw_copy_not_the_ready_copy"])
def test_full_disk_fails_with_one_sentence_and_leaves_nothing_partial(
        tmp_path: Path, room: str) -> None:
    mount_namespace_or_skip(tmp_path, "tmpfs")
    vendor = tmp_path / "vendor"
    vendor_path = write_day(vendor, TABLE, BTC, DAY, rows=200_000)
    size = vendor_path.stat().st_size
    tmpfs = {
        "less_than_the_vendor_file": pages(size // 2),
        # Exactly the raw copy's pages: its download fits, its manifest does not.
        "the_raw_copy_not_its_manifest": pages(size),
        # The raw copy and its manifest with room to spare, but not a second copy of the day.
        "the_raw_copy_not_the_ready_copy": pages(size) + 16 * os.sysconf("SC_PAGE_SIZE"),
    }[room]
    assert tmpfs < 2 * size

    rc, stderr, files = materialize_on_tmpfs(tmp_path, vendor, tmpfs)

    assert rc != 0, "the run succeeded on a full disk"
    message = cli_failure(stderr)
    assert one_sentence(message), message
    assert_no_raw_error(stderr)
    named = re.fullmatch(r"Cannot write to (\S+) \(the disk is full\); .*", message)
    assert named, message
    path = Path(named.group(1))
    where = path.relative_to(tmp_path / "lake").as_posix()
    expected = {
        "less_than_the_vendor_file": rf"{re.escape(RAW_DIR)}/\.1\.snappy\.parquet\.\d+\.part",
        "the_raw_copy_not_its_manifest": rf"{re.escape(RAW_DIR)}/1\.snappy\.parquet\.json",
        "the_raw_copy_not_the_ready_copy":
            rf"_staging/{TABLE}\.{BTC.slug}\.{DAY}\.[0-9a-f]{{32}}\.parquet",
    }[room]
    assert re.fullmatch(expected, where), message
    assert where not in files, "the file that could not be written was left behind"

    # Nothing partial: no download or manifest in progress, nothing staged or published.
    assert not [f for f in files if f.endswith(".part")], files
    assert not [f for f in files if f.startswith(("_staging/", "ready/", "quarantine/"))], files
    raw_files = {f: v for f, v in files.items() if f.startswith("raw/")}
    assert set(raw_files) <= {f"{RAW_DIR}/1.snappy.parquet", f"{RAW_DIR}/1.snappy.parquet.json"}
    raw = raw_files.get(f"{RAW_DIR}/1.snappy.parquet")
    manifest = raw_files.get(f"{RAW_DIR}/1.snappy.parquet.json")
    vendor_sha = sha256_file(vendor_path)
    if raw is not None:  # the raw copy, if kept, is the whole vendor file
        assert (raw["size"], raw["sha256"]) == (size, vendor_sha)
    if manifest is not None:  # a manifest describes a raw copy that is there
        assert raw is not None
        recorded_raw = json.loads(manifest["text"])
        assert (recorded_raw["size"], recorded_raw["sha256"]) == (size, vendor_sha)
    if room == "less_than_the_vendor_file":
        assert raw is None and manifest is None
    if room == "the_raw_copy_not_its_manifest":
        assert raw is None and manifest is None, "a raw copy no manifest describes is dropped"
    if room == "the_raw_copy_not_the_ready_copy":
        assert raw is not None and manifest is not None, "the complete raw copy is kept"
    assert set(files) - set(raw_files) == {f"_locks/{LOCK_NAME}"}, files


# --- 3. a lake root that cannot be written -------------------------------------------------------

def failure_description(result: dg.ExecuteInProcessResult) -> str | None:
    failures = result.get_step_failure_events()
    assert len(failures) == 1, failures
    data = failures[0].step_failure_data.user_failure_data
    return data.description if data is not None else None


@pytest.mark.parametrize("below", ["a_file", "a_file/lake"])
def test_lake_root_below_a_regular_file_fails_with_one_sentence(
        tmp_path: Path, below: str) -> None:
    vendor = tmp_path / "vendor"
    write_day(vendor, TABLE, BTC, DAY, rows=20_000)
    (tmp_path / "a_file").write_text("in the way\n")
    root = tmp_path / below

    result = materialize_day({"CRYPTO_LAKE_SOURCE": str(vendor), "RLX_LAKE_ROOT": str(root)},
                             TABLE, DAY)

    assert not result.success
    description = failure_description(result)
    assert description is not None, "the step failed without a description for people"
    assert one_sentence(description), description
    assert_no_raw_error(description)
    assert str(root) in description and "Not a directory" in description, description
    assert "RLX_LAKE_ROOT" in description
    assert (tmp_path / "a_file").read_text() == "in the way\n"


# Runs `materialize_day` inside the namespace, on a read-only bind mount of the lake.
READ_ONLY_RUN = textwrap.dedent("""
    import datetime as dt, json, sys
    from rlx_assets_tests.conftest import materialize_day
    vendor, lake, table, day = sys.argv[1:5]
    result = materialize_day({"CRYPTO_LAKE_SOURCE": vendor, "RLX_LAKE_ROOT": lake,
                              "RLX_STEP_RETRIES": "0"}, table, dt.date.fromisoformat(day))
    failures = []
    for event in result.get_step_failure_events():
        data = event.step_failure_data
        error, chain = data.error, []
        while error is not None:
            chain.append(error.message)
            error = error.cause
        failures.append({"description": data.user_failure_data.description
                         if data.user_failure_data is not None else None, "errors": chain})
    print("@@RESULT@@" + json.dumps({"success": result.success, "failures": failures}))
""")


def materialize_read_only(tmp_path: Path, vendor: Path, lake: Path) -> dict:
    done = subprocess.run(
        ["unshare", "-rm", "sh", "-c", 'mount --bind -o ro "$1" "$1" || exit 97; shift; '
         'exec "$@"', "sh", str(lake), sys.executable, "-c", READ_ONLY_RUN, str(vendor),
         str(lake), TABLE, DAY.isoformat()],
        env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=tmp_path, capture_output=True,
        text=True, timeout=120)
    assert done.returncode != 97, f"the read-only bind mount failed:\n{done.stderr}"
    marker = [line for line in done.stdout.splitlines() if line.startswith("@@RESULT@@")]
    assert marker, f"the run inside the namespace did not report:\n{done.stderr[-3000:]}"
    return json.loads(marker[0][len("@@RESULT@@"):])


def assert_read_only_failure(outcome: dict, lake: Path) -> None:
    assert not outcome["success"]
    [failure] = outcome["failures"]
    description = failure["description"]
    assert description is not None, \
        f"the step failed without a description for people: {failure['errors']}"
    assert one_sentence(description), description
    assert_no_raw_error(description)
    assert str(lake) in description and "Read-only file system" in description, description


def test_read_only_empty_lake_root_fails_with_one_sentence(tmp_path: Path) -> None:
    mount_namespace_or_skip(tmp_path, "bind")
    vendor, lake = tmp_path / "vendor", tmp_path / "lake"
    write_day(vendor, TABLE, BTC, DAY, rows=20_000)
    lake.mkdir()

    outcome = materialize_read_only(tmp_path, vendor, lake)

    assert_read_only_failure(outcome, lake)
    assert not list(lake.rglob("*"))


def test_read_only_lake_that_holds_the_partition_fails_with_one_sentence(
        tmp_path: Path) -> None:
    mount_namespace_or_skip(tmp_path, "bind")
    vendor, lake = tmp_path / "vendor", tmp_path / "lake"
    write_day(vendor, TABLE, BTC, DAY, rows=20_000)
    first = materialize_day({"CRYPTO_LAKE_SOURCE": str(vendor), "RLX_LAKE_ROOT": str(lake)},
                            TABLE, DAY)
    assert first.success
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest()
              for p in lake.rglob("*") if p.is_file()}
    assert (lake / "_locks" / LOCK_NAME) in before
    assert zone_dir(lake, "ready", TABLE, DAY).is_dir()

    outcome = materialize_read_only(tmp_path, vendor, lake)

    assert {p: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in lake.rglob("*") if p.is_file()} == before
    assert_read_only_failure(outcome, lake)
