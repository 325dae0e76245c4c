"""Issue 14 part 3: incremental verification of ready/ files, one current certificate per
window start with the rest in certificates/history/, withdrawal that keeps what it withdraws."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import time
from pathlib import Path

import dagster as dg
import pytest

from rlx_assets.definitions import build_definitions
from rlx_assets.lib import certificate_files, verification
from rlx_assets.lib.certificate import Verdict, canonical_sha256
from rlx_assets.lib.lake import Lake as LakeRoot
from rlx_assets.lib.tables import TABLES
from rlx_assets_tests.conftest import settings_for
from rlx_assets_tests.stand_ins import BTC
from rlx_assets_tests.test_certificate import CERT, DAYS
from rlx_assets_tests.test_certificate import Lake as Window

MB = 1 << 20


@pytest.fixture
def hashed(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The files whose bytes the verification reads (every sha256 of a ready file)."""
    calls: list[Path] = []
    real = verification.sha256_file

    def counting(path: Path) -> str:
        calls.append(path)
        return real(path)

    monkeypatch.setattr(verification, "sha256_file", counting)
    return calls


@pytest.fixture
def settled(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files written a moment ago may be recorded (in production: 2 s after their last
    write, see `verification.RACY_NS`); the tests wait 0.1 s instead of 2."""
    monkeypatch.setattr(verification, "RACY_NS", 50_000_000)


def _write(path: Path, data: bytes) -> tuple[str, int, str, str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return str(path), len(data), hashlib.sha256(data).hexdigest(), ""


def _files(root: Path, count: int = 3) -> list[tuple[str, int, str, str]]:
    files = [_write(root / f"ready/t/dt=2024-01-0{i + 1}/data.parquet", bytes([i]) * MB)
             for i in range(count)]
    time.sleep(0.1)
    return files


def _issue(lake: LakeRoot, files, **kwargs) -> tuple[list[str | None], dict[str, int]]:
    """What the certificate does with each ready file: verify, then keep the records."""
    verifier = verification.verifier_for(lake, BTC, **kwargs)
    problems = [verifier(*f) for f in files]
    verification.save(lake, BTC, verifier)
    return problems, verifier.summary()


def test_re_issue_reads_no_unchanged_file(tmp_path: Path, hashed: list, settled: None) -> None:
    lake = LakeRoot.at(str(tmp_path))
    files = _files(tmp_path)
    assert _issue(lake, files) == ([None] * 3, {"files": 3, "rehashed": 3,
                                                "rehashed_bytes": 3 * MB, "trusted": 0})
    assert (tmp_path / "_verified" / "binance_btc_usdt.json").is_file()
    hashed.clear()
    assert _issue(lake, files)[1]["trusted"] == 3
    assert hashed == [], "nothing read on re-issue"
    assert not list((tmp_path / "_verified").glob(".*part")), "written atomically"


def test_a_same_size_change_with_a_new_mtime_is_caught(tmp_path: Path, hashed: list,
                                                       settled: None) -> None:
    lake = LakeRoot.at(str(tmp_path))
    files = _files(tmp_path)
    _issue(lake, files)
    path = Path(files[1][0])
    before = path.stat()
    path.write_bytes(b"x" * MB)  # same size, other bytes
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))
    hashed.clear()
    problems, summary = _issue(lake, files)
    assert problems == [None, f"file {path} changed since it was materialised", None]
    assert hashed == [path] and summary["trusted"] == 2
    hashed.clear()
    assert _issue(lake, files)[0][1] is not None and hashed == [path], "never trusted again"


def test_restoring_the_mtime_does_not_hide_a_change(tmp_path: Path, hashed: list,
                                                    settled: None) -> None:
    """Unlike rsync's size + mtime, the record holds ctime too, which `os.utime` (or
    `touch -d`) cannot set back."""
    lake = LakeRoot.at(str(tmp_path))
    files = _files(tmp_path)
    _issue(lake, files)
    path = Path(files[0][0])
    before = path.stat()
    time.sleep(0.1)
    path.write_bytes(b"y" * MB)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    problems, _ = _issue(lake, files)
    assert problems[0] == f"file {path} changed since it was materialised"


def test_a_change_that_leaves_size_mtime_and_ctime_alone_is_not_caught(
        tmp_path: Path, hashed: list, settled: None) -> None:
    """The documented trade-off (the quick check of rsync and git): bytes changed under the
    filesystem (media corruption, writes to the block device, a clock set back) are not seen
    until a full re-hash. Simulated by recording the tampered file's own times."""
    lake = LakeRoot.at(str(tmp_path))
    files = _files(tmp_path)
    _issue(lake, files)
    path = Path(files[2][0])
    path.write_bytes(b"z" * MB)
    records = json.loads((tmp_path / "_verified/binance_btc_usdt.json").read_text())
    now = path.stat()
    records["files"][str(path)].update(mtime_ns=now.st_mtime_ns, ctime_ns=now.st_ctime_ns)
    (tmp_path / "_verified/binance_btc_usdt.json").write_text(json.dumps(records))
    hashed.clear()
    assert _issue(lake, files)[0] == [None, None, None], "not caught by the quick check"
    assert hashed == []
    problems, summary = _issue(lake, files, rehash_all=True)
    assert problems[2] == f"file {path} changed since it was materialised"
    assert summary["rehashed"] == 3


@pytest.mark.parametrize("damage", ["deleted", "garbage", "other format"])
def test_a_lost_record_falls_back_to_a_full_hash(tmp_path: Path, hashed: list, settled: None,
                                                 damage: str) -> None:
    lake = LakeRoot.at(str(tmp_path))
    files = _files(tmp_path)
    _issue(lake, files)
    records = tmp_path / "_verified" / "binance_btc_usdt.json"
    if damage == "deleted":
        records.unlink()
    else:
        records.write_text("{not json" if damage == "garbage" else '{"format": 99, "files": {}}')
    hashed.clear()
    assert _issue(lake, files) == ([None] * 3, {"files": 3, "rehashed": 3,
                                                "rehashed_bytes": 3 * MB, "trusted": 0})
    assert len(hashed) == 3


def test_a_record_vouches_only_for_the_sha256_it_verified(tmp_path: Path, hashed: list,
                                                          settled: None) -> None:
    """Dagster records a new sha256 (the day was re-materialised) but the file did not
    change: the record does not vouch for the new hash, so the file is read, and fails."""
    lake = LakeRoot.at(str(tmp_path))
    files = _files(tmp_path)
    _issue(lake, files)
    hashed.clear()
    location, size, _, version = files[0]
    problems, _ = _issue(lake, [(location, size, "0" * 64, version), *files[1:]])
    assert problems[0] == f"file {location} changed since it was materialised"
    assert hashed == [Path(location)]


def test_files_written_just_now_are_not_recorded(tmp_path: Path, hashed: list) -> None:
    """A write in the same timestamp tick as the hash would leave the times as recorded:
    a file changed within 2 s of being hashed is hashed again next time."""
    lake = LakeRoot.at(str(tmp_path))
    files = [_write(tmp_path / "ready/fresh/data.parquet", b"a" * MB)]
    assert _issue(lake, files)[1]["rehashed"] == 1
    assert _issue(lake, files)[1]["rehashed"] == 1 and len(hashed) == 2


def test_a_gone_file_is_named_and_forgotten(tmp_path: Path, settled: None) -> None:
    lake = LakeRoot.at(str(tmp_path))
    files = _files(tmp_path, 2)
    _issue(lake, files)
    Path(files[0][0]).unlink()
    assert _issue(lake, files)[0][0] == f"file {files[0][0]} is gone"
    records = json.loads((tmp_path / "_verified/binance_btc_usdt.json").read_text())
    assert list(records["files"]) == [files[1][0]]


# --- certificates/: one current per instrument and window start, the rest in history/ ----


def _certificate(start: str, end: str, at: str) -> dict:
    body = {"instrument": str(BTC), "window": {"start": start, "end": end},
            "generated_at": at}
    return {**body, "content_sha256": canonical_sha256(body)}


def test_only_current_certificates_are_listed_and_withdrawn(tmp_path: Path) -> None:
    lake = LakeRoot.at(str(tmp_path))
    day = dt.date(2024, 1, 5)
    names = ["binance_btc_usdt_2024-01-01_2024-01-10.json",  # covers the day
             "binance_btc_usdt_2024-01-06_2024-01-10.json",  # does not
             "binance_btc_usdt_perp_2024-01-01_2024-01-10.json",  # another instrument
             "history/binance_btc_usdt_2024-01-01_2024-01-09.20240110T000000.000000Z.json",
             ".binance_btc_usdt_2024-01-01_2024-01-10.json.abc.part", "notes.txt"]
    for name in names:
        lake.write_json(f"certificates/{name}", _certificate("2024-01-01", "2024-01-10",
                                                             "2024-01-11T00:00:00+00:00"))
    current = certificate_files.current_certificates(lake, BTC.slug)
    assert [c.key.removeprefix("certificates/") for c in current] == names[:2]
    [moved] = certificate_files.withdraw_covering(lake, BTC, day, "trades 2024-01-05 failed")
    assert moved.location == str(tmp_path / "certificates" / names[0])
    kept = json.loads(Path(moved.kept_at).read_text())
    assert moved.kept_at.endswith("history/binance_btc_usdt_2024-01-01_2024-01-10."
                                  "20240111T000000.000000Z.withdrawn.json")
    assert kept["withdrawn"]["reason"] == "trades 2024-01-05 failed"
    assert certificate_files.intact(kept), "the issued content is untouched"
    left = {p.relative_to(tmp_path / "certificates").as_posix()
            for p in (tmp_path / "certificates").rglob("*") if p.is_file()}
    assert left == set(names[1:]) | {Path(moved.kept_at).relative_to(
        tmp_path / "certificates").as_posix()}


def _window(window: Window, end: dt.date) -> Window:
    """The same vendor, lake and instance, with RLX_END_DATE=end (an open window, a day
    later each day)."""
    window.env["RLX_END_DATE"] = end.isoformat()
    window.defs = build_definitions(settings_for(window.env))
    return window


def _certify(window: Window, **run_config) -> dg.ExecuteInJobResult:
    return dg.materialize([window.defs.get_assets_def(CERT)], instance=window.instance,
                          resources=window.defs.resources, raise_on_error=False,
                          run_config={"ops": {"binance__btc_usdt__certificate": {
                              "config": run_config}}} if run_config else None)


def _listing(window: Window) -> tuple[list[str], dict[str, dict]]:
    """The current certificates' names, and the history's files by name."""
    folder = window.lake / "certificates"
    history = sorted((folder / "history").glob("*.json"))
    return (sorted(p.name for p in folder.glob("*.json")),
            {p.name: json.loads(p.read_text()) for p in history})


@pytest.fixture
def window(tmp_path: Path) -> Window:
    return Window(tmp_path)


def test_an_open_window_keeps_one_current_certificate_and_its_history(
        window: Window, hashed: list, settled: None) -> None:
    window.materialize_clean_window()
    time.sleep(0.1)
    assert _certify(_window(window, DAYS[0])).success
    first = window.lake / "certificates" / "binance_btc_usdt_2024-01-01_2024-01-01.json"
    assert len(hashed) == 3, "first issue: one day, three tables, all read"

    result = _certify(_window(window, DAYS[1]))  # the next day: the window grows
    assert result.success
    assert len(hashed) == 3 + 3, "only the new day's files are read"
    metadata = result.asset_materializations_for_node(
        "binance__btc_usdt__certificate")[0].metadata
    assert (metadata["ready_files_rehashed"].value, metadata["ready_files_trusted"].value) == (
        3, 3)
    current, history = _listing(window)
    assert current == ["binance_btc_usdt_2024-01-01_2024-01-02.json"]
    [superseded] = history.values()
    assert superseded["window"]["end"] == "2024-01-01" and not first.exists()
    assert superseded["superseded"]["by"] == str(window.lake / "certificates" / current[0])
    assert certificate_files.intact(superseded)

    assert _certify(window).success  # re-issued for the same window (an upstream change)
    assert len(hashed) == 6, "nothing changed: nothing read"
    current, history = _listing(window)
    assert current == ["binance_btc_usdt_2024-01-01_2024-01-02.json"], "still one"
    assert [h["window"]["end"] for h in history.values()] == ["2024-01-01", "2024-01-02"]
    assert all(certificate_files.intact(h) for h in history.values())

    assert _certify(window, rehash_all=True).success
    assert len(hashed) == 12, "rehash_all reads every file"


def test_a_refusal_withdraws_only_certificates_over_a_failing_day(window: Window,
                                                                  settled: None) -> None:
    """Open window, a new day not yet ingested: the refusal leaves yesterday's certificate
    (it does not cover the new day); a changed file inside it withdraws it."""
    for table in TABLES:
        window.publish(table, DAYS[0])
    assert window.materialize(DAYS[0])
    assert _certify(_window(window, DAYS[0])).success
    assert not _certify(_window(window, DAYS[1])).success
    assert _listing(window) == (["binance_btc_usdt_2024-01-01_2024-01-01.json"], {})

    ready = next((window.lake / "ready" / "book").rglob("data.parquet"))
    ready.write_bytes(ready.read_bytes()[:-10] + b"0123456789")
    refused = _certify(window)
    assert not refused.success
    current, history = _listing(window)
    [(name, withdrawn)] = history.items()
    assert current == [] and name.endswith(".withdrawn.json")
    assert withdrawn["withdrawn"]["reason"].startswith("refused on re-issue: book 2024-01-01: "
                                                       "ready file"), "its own day's problem"


def test_verdict_names_the_problems_inside_a_window() -> None:
    verdict = Verdict(None, ["trades 2024-01-05: not materialised", "book 2024-01-07: x"],
                      {dt.date(2024, 1, 5): ("trades 2024-01-05: not materialised",),
                       dt.date(2024, 1, 7): ("book 2024-01-07: x",)})
    assert verdict.problems_within(dt.date(2024, 1, 1), dt.date(2024, 1, 5)) == [
        "trades 2024-01-05: not materialised"]
    assert verdict.problems_within(dt.date(2024, 1, 1), dt.date(2024, 1, 4)) == []
    assert len(verdict.problems_within(dt.date(2024, 1, 5), dt.date(2024, 1, 7))) == 2


def test_records_that_cannot_be_kept_do_not_stop_the_certificate(window: Window) -> None:
    """They only save work: without them the next issue hashes every file again."""
    window.materialize_clean_window()
    (window.lake / "_verified").write_text("a file where the records' folder should be")
    result = _certify(_window(window, DAYS[1]))
    assert result.success
    assert (window.lake / "certificates" / "binance_btc_usdt_2024-01-01_2024-01-02.json").exists()


def test_an_s3_lake_is_verified_from_one_listing_per_folder(
        vendor_bucket, monkeypatch: pytest.MonkeyPatch) -> None:
    """Size and ETag come from listing each table folder once (no HEAD per object); a
    changed object and a deleted one are both caught."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAOURLAKEKEY000001")  # our lake's own keys
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "our-lake-secret")
    client = vendor_bucket.client
    client.create_bucket(Bucket="rlx-lake",
                         CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    lake = LakeRoot.at("s3://rlx-lake/prod", endpoint_url=vendor_bucket.endpoint)
    files = []
    for n, day in enumerate(DAYS * 2):  # two days, two tables
        table = list(TABLES)[n // len(DAYS)]
        key = f"prod/ready/{table}/exchange=BINANCE/symbol=BTC-USDT/dt={day}/data.parquet"
        etag = client.put_object(Bucket="rlx-lake", Key=key, Body=b"x" * (n + 1))["ETag"]
        files.append((f"s3://rlx-lake/{key}", n + 1, "sha", etag.strip('"')))
    listings = []
    real = lake.store.sizes_and_etags
    monkeypatch.setattr(lake.store, "sizes_and_etags",
                        lambda prefix: listings.append(prefix) or real(prefix))
    monkeypatch.setattr(lake.store, "_head", lambda key: pytest.fail("a HEAD per object"))

    check = verification.verifier_for(lake, BTC)
    assert [check(*f) for f in files] == [None] * 4
    assert len(listings) == 2  # one per table folder
    client.put_object(Bucket="rlx-lake", Key=files[0][0].removeprefix("s3://rlx-lake/"),
                      Body=b"y")  # same size, new ETag
    client.delete_object(Bucket="rlx-lake", Key=files[3][0].removeprefix("s3://rlx-lake/"))
    check = verification.verifier_for(lake, BTC)
    assert [check(*f) for f in files] == [
        f"object {files[0][0]} changed since it was materialised", None, None,
        f"object {files[3][0]} is gone"]
    assert check.summary()["trusted"] == 2
