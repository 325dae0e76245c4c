"""Issue 13: the vendor writer's habits are not defects, and real defects still fail.

Hand-made days, each with one habit (or one defect next to it), through `normalise_day` and
`evaluate` without Dagster: rows just across a day boundary, missing exchange times (the
writer's 0 / -1), resyncs with their sequence jumps, repeated sequence numbers, every hole
listed, the vendor's `contains_gaps` flag, and nulls (never 1970) in the normalised file with
the vendor's other column chunks copied byte for byte.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rlx_assets.lib.checks import ORIGIN_TIME_MISSING, TEMPORAL_CONTINUITY, evaluate
from rlx_assets.lib.demo_data import write_day
from rlx_assets.lib.demo_habits import Habits
from rlx_assets.lib.footer_read import read_footer
from rlx_assets.lib.normalise import normalise_day
from rlx_assets.lib.scan import TimeRules
from rlx_assets.lib.tables import TABLES
from rlx_assets_tests.stand_ins import BTC

DAY = dt.date(2024, 1, 3)
START = int(dt.datetime(2024, 1, 3, tzinfo=dt.UTC).timestamp()) * 10**9
NS, MINUTE = 10**9, 60 * 10**9


def even(n: int, start: int = START, end: int = START + 86_400 * NS) -> np.ndarray:
    return start + np.arange(n, dtype=np.int64) * ((end - 1 - start) // (n - 1))


def trades(ts: np.ndarray, received: np.ndarray | None = None) -> pa.Table:
    n = len(ts)
    return pa.table({
        "side": pa.array(np.where(np.arange(n) % 2 == 0, "buy", "sell")),
        "amount": np.full(n, 0.5), "price": np.full(n, 42_000.0),
        "id": np.arange(n, dtype=np.int64), "timestamp": ts.astype(np.int64),
        "receipt_timestamp": (np.maximum(ts, START) + 5_000_000 if received is None
                              else received).astype(np.int64),
    })


def deltas(ts: np.ndarray, seq: np.ndarray, received: np.ndarray | None = None) -> pa.Table:
    n = len(ts)
    return pa.table({
        "timestamp": ts.astype(np.int64),
        "receipt_timestamp": (ts + 5_000_000 if received is None else received).astype(np.int64),
        "sequence_number": seq.astype(np.int64), "side_is_bid": np.arange(n) % 2 == 0,
        "price": np.full(n, 42_000.0), "size": np.full(n, 1.5),
    })


def check(tmp_path: Path, table: pa.Table, name: str, *, rules: TimeRules | None = None,
          metadata: dict[bytes, bytes] | None = None, row_group_size: int = 1_000):
    raw = tmp_path / "raw.parquet"
    if metadata:
        table = table.replace_schema_metadata(metadata)
    pq.write_table(table, raw, row_group_size=row_group_size, data_page_version="2.0")
    rules = rules or TimeRules(TABLES[name].default_max_gap_seconds)
    scan = normalise_day(raw, TABLES[name], DAY, tmp_path / "out.parquet", rules=rules)
    outcomes = {o.name: o for o in evaluate(scan)}
    assert outcomes["schema"].passed and outcomes["positive_prices"].passed
    return scan, outcomes


@pytest.mark.parametrize(("offset_seconds", "tolerance", "passes"), [
    (-0.8, 5.0, True),  # the writer's habit: the previous day's last second opens the file
    (-4.9, 5.0, True),
    (-6.0, 5.0, False),  # beyond the tolerance: outside the day, as before
    (-0.8, 0.0, False),  # a tolerance of 0 is the idealised vendor
])
def test_rows_just_across_the_day_start(tmp_path: Path, offset_seconds: float,
                                        tolerance: float, passes: bool) -> None:
    ts = even(2_000)
    ts[:3] = START + int(offset_seconds * NS) + np.arange(3)
    _, outcomes = check(tmp_path, trades(ts), "trades", rules=TimeRules(900, tolerance))
    temporal = outcomes[TEMPORAL_CONTINUITY]
    assert temporal.passed is passes, temporal.description
    meta = temporal.metadata
    if passes:
        assert meta["rows_before_day_within_tolerance"] == 3 and meta["rows_outside_day"] == 0
        assert "3 rows within the boundary tolerance" in temporal.description
    else:
        assert meta["rows_outside_day"] == 3
        assert "boundary tolerance" in temporal.description
    assert meta["hole_at_day_start_seconds"] == 0  # rows cross the edge: no hole there


def test_rows_just_across_the_day_end(tmp_path: Path) -> None:
    ts = even(2_000)
    ts[-2:] = START + 86_400 * NS + np.array([NS // 2, NS])
    _, outcomes = check(tmp_path, trades(ts), "trades")
    meta = outcomes[TEMPORAL_CONTINUITY].metadata
    assert outcomes[TEMPORAL_CONTINUITY].passed
    assert meta["rows_after_day_within_tolerance"] == 2
    assert meta["first_after_day_origin_times"][0].startswith("2024-01-04T00:00:00.5")


def test_missing_trade_times_are_counted_never_outside_backwards_or_a_hole(
        tmp_path: Path) -> None:
    ts = even(5_000)
    ts[100:400] = -1  # 300 trades without an exchange time: ~1.5 h of them
    scan, outcomes = check(tmp_path, trades(ts, received=even(5_000) + 1), "trades")
    temporal = outcomes[TEMPORAL_CONTINUITY]
    assert temporal.passed, temporal.description
    assert temporal.metadata["rows_outside_day"] == 0
    assert temporal.metadata["unsorted_rows"] == 0
    assert temporal.metadata["origin_time_missing_rows"] == 300
    assert temporal.metadata["largest_gap_seconds"] < 60  # judged by received_time
    missing = outcomes[ORIGIN_TIME_MISSING]
    assert not missing.passed and not missing.blocking  # a warning in trades
    assert missing.metadata["origin_time_missing_rows"] == 300
    assert [p["row"] for p in missing.metadata["first_missing"]] == [100, 101, 102, 103, 104]
    assert missing.metadata["first_missing"][0]["received_time"].startswith("2024-01-03")
    assert scan.first_time == ts[0] and scan.last_time == ts[-1]


@pytest.mark.parametrize(("received_hole_minutes", "passes"), [(0, True), (30, False)])
def test_a_day_without_any_exchange_time_is_judged_by_received_time(
        tmp_path: Path, received_hole_minutes: int, passes: bool) -> None:
    """Every Kucoin delta row has exchange time 0 (lakeapi issue #15)."""
    n = 3_000
    received = even(n)
    received[n // 2:] += received_hole_minutes * MINUTE
    received = np.minimum(received, START + 86_400 * NS - 1)
    seq = np.arange(n) // 3  # three rows per message
    _, outcomes = check(tmp_path, deltas(np.zeros(n), seq, received), "book_delta_v2")
    temporal = outcomes[TEMPORAL_CONTINUITY]
    assert temporal.passed is passes, temporal.description
    assert temporal.metadata["origin_time_missing_rows"] == n
    if not passes:
        [hole] = temporal.metadata["holes"]
        assert hole["seconds"] > 30 * 60
    missing = outcomes[ORIGIN_TIME_MISSING]
    assert not missing.passed and "received_time" in missing.description


def test_a_resync_is_located_and_its_sequence_jump_is_not_a_failure(tmp_path: Path) -> None:
    n = 6_000
    ts = even(n)
    seq = 1_000 + np.arange(n) // 4 * 7  # four rows per message: repeats are normal
    received = ts + 5_000_000
    # A REST snapshot written after row 2,999: no exchange time, one update id ahead of the
    # stream; the buffered deltas after it step back below that id.
    ts = np.concatenate([ts[:3_000], np.zeros(200, np.int64), ts[3_000:]])
    seq = np.concatenate([seq[:3_000], np.full(200, seq[2_999] + 50_000), seq[3_000:]])
    received = np.concatenate([received[:3_000], np.full(200, received[2_999] + 1_000),
                               received[3_000:]])
    _, outcomes = check(tmp_path, deltas(ts, seq, received), "book_delta_v2")
    temporal = outcomes[TEMPORAL_CONTINUITY]
    assert temporal.passed, temporal.description
    meta = temporal.metadata
    assert meta["resyncs"] == 1 and meta["origin_time_missing_rows"] == 200
    assert meta["sequence_number_resets_at_resyncs"] == 1
    assert meta["sequence_number_decreases"] == 0
    missing = outcomes[ORIGIN_TIME_MISSING]
    assert missing.passed  # rows of a resync are explained: no warning
    [where] = missing.metadata["resync_locations"]
    assert where["row"] == 3_000 and where["sequence_number"] == seq[3_000]
    assert where["received_time"].startswith("2024-01-03T11:59:52")


def test_a_sequence_step_back_outside_a_resync_still_fails(tmp_path: Path) -> None:
    n = 4_000
    seq = np.arange(n) // 2 * 3
    seq[2_500] = seq[2_499] - 1
    _, outcomes = check(tmp_path, deltas(even(n), seq), "book_delta_v2")
    temporal = outcomes[TEMPORAL_CONTINUITY]
    assert not temporal.passed
    assert temporal.metadata["sequence_number_decreases"] == 1
    assert "row 2500" in temporal.metadata["first_sequence_number_decreases"][0]
    assert "outside a resync" in temporal.description


def test_every_hole_over_the_threshold_is_listed(tmp_path: Path) -> None:
    pieces = [even(500, START, START + 4 * 3_600 * NS),
              even(500, START + 4 * 3_600 * NS + 20 * MINUTE, START + 8 * 3_600 * NS),
              even(500, START + 8 * 3_600 * NS + 30 * MINUTE, START + 16 * 3_600 * NS),
              even(500, START + 16 * 3_600 * NS + 40 * MINUTE, START + 86_400 * NS)]
    ts = np.concatenate(pieces)
    _, outcomes = check(tmp_path, trades(ts), "trades",
                        metadata={b"contains_gaps": b"Yes", b"date": b"2024-01-03"})
    temporal = outcomes[TEMPORAL_CONTINUITY]
    holes = temporal.metadata["holes"]
    assert temporal.metadata["holes_over_threshold"] == 3
    assert [round(h["seconds"] / 60) for h in holes] == [20, 30, 40]
    assert holes[0]["start"].startswith("2024-01-03T03:59:") and \
        holes[0]["end"] == "2024-01-03T04:20:00.000000000Z"
    assert temporal.metadata["vendor_contains_gaps"] == "Yes"
    assert "3 hole(s) over 900 s" in temporal.description
    assert "contains_gaps=Yes" in temporal.description
    assert len(temporal.violations) == 3 and all(v.startswith("hole ") for v in
                                                 temporal.violations)


def _expected(raw: Path) -> pl.DataFrame:
    frame = pl.read_parquet(raw)
    return frame.rename({"timestamp": "origin_time", "receipt_timestamp": "received_time",
                         "amount": "quantity", "id": "trade_id"}, strict=False).with_columns(
        pl.when(pl.col("origin_time") > 0).then(pl.col("origin_time"))
        .cast(pl.Datetime("ns", "UTC")),
        pl.col("received_time").cast(pl.Datetime("ns", "UTC")))


@pytest.mark.parametrize("every_row", [False, True])
def test_sentinels_become_nulls_and_other_chunks_keep_the_vendors_bytes(
        tmp_path: Path, every_row: bool) -> None:
    raw = write_day(tmp_path / "vendor", "book_delta_v2", BTC, DAY, rows=120_000)
    if every_row:  # a Kucoin-like day: no row has an exchange time
        table = pq.read_table(raw)
        pq.write_table(table.set_column(0, "timestamp", pa.array(np.zeros(table.num_rows,
                                                                          np.int64))),
                       raw, row_group_size=10_000, data_page_version="2.0")
    out = tmp_path / "ready.parquet"
    scan = normalise_day(raw, TABLES["book_delta_v2"], DAY, out)
    expected = _expected(raw)
    assert pl.read_parquet(out).equals(expected)
    missing = expected["origin_time"].null_count()
    assert missing == (120_000 if every_row else 200)
    raw_times = pq.read_table(raw, columns=["timestamp"]).column(0).to_numpy()
    assert scan.sentinel_row_groups == set(np.flatnonzero(raw_times <= 0) // 10_000)
    assert len(scan.sentinel_row_groups) == 12 if every_row else \
        2 <= len(scan.sentinel_row_groups) < 12
    # The vendor's data region is the normalised file's first bytes: no page re-encoded but
    # the time chunks of the row groups holding a sentinel, appended after it.
    start = read_footer(raw).start
    assert out.read_bytes()[:start] == raw.read_bytes()[:start]
    assert read_footer(out).start > start
    # Every reader sees null, never 1970-01-01.
    assert pq.read_table(out).column("origin_time").null_count == missing
    [(low, nulls)] = duckdb.sql(f"select min(origin_time), count(*) - count(origin_time) "
                                f"from '{out}'").fetchall()
    assert nulls == missing
    assert low is None if every_row else low.year == 2024


def test_a_required_time_column_with_sentinels_is_re_encoded_with_nulls(tmp_path: Path) -> None:
    ts = even(3_000)
    ts[10:12] = 0
    table = deltas(ts, np.arange(3_000))
    schema = table.schema.set(0, pa.field("timestamp", pa.int64(), nullable=False))
    raw = tmp_path / "raw.parquet"
    pq.write_table(table.cast(schema), raw, row_group_size=1_000)
    out = tmp_path / "out.parquet"
    normalise_day(raw, TABLES["book_delta_v2"], DAY, out)
    assert pl.read_parquet(out).equals(_expected(raw))
    assert pl.read_parquet(out)["origin_time"].null_count() == 2


def test_the_demo_writes_days_the_way_the_vendors_writer_does(tmp_path: Path) -> None:
    for table, group_rows in (("trades", 10_000), ("book", 3_000), ("book_delta_v2", 10_000)):
        path = write_day(tmp_path, table, BTC, DAY, habits=Habits(restart=True))
        meta = pq.ParquetFile(path).metadata
        assert meta.format_version == "2.6"
        assert {meta.row_group(i).num_rows for i in range(meta.num_row_groups - 1)} == \
            {group_rows}
        keys = pq.read_schema(path).metadata
        assert keys[b"contains_gaps"] == b"Yes" and keys[b"event_type"] == table.encode()
        assert set(keys) == {b"date", b"contains_gaps", b"symbol", b"event_type", b"exchange"}
        ts = pq.read_table(path, columns=["timestamp"]).column(0).to_numpy()
        real = ts[ts > 0]
        assert (real[:5] < START).all() and (real[:5] > START - NS).all()
        assert (real % 1_000_000 != 0).any()  # float rounding noise in the last digits
        restart = (real >= START + 9 * 3_600 * NS) & (real < START + (9 * 60 + 20) * MINUTE)
        assert not restart.any()
        if table == "book_delta_v2":
            frame = pl.read_parquet(path)
            messages = frame.group_by("sequence_number").agg(pl.len(), pl.col("side_is_bid"))
            assert messages["len"].max() > 1
            # bids before asks inside a message
            assert all(bids == sorted(bids, reverse=True)
                       for bids in messages["side_is_bid"].to_list())
            assert (frame["timestamp"] == 0).sum() == 200  # two snapshots of 100 levels


def test_the_footer_edit_copies_what_it_does_not_change(tmp_path: Path) -> None:
    """The footer is edited by walking its bytes: the row groups of the normalised footer
    decode to the vendor's, with only the renamed columns' paths changed."""
    from rlx_assets.lib.footer_fields import CC_META, CMD_PATH, FMD_ROW_GROUPS, RG_COLUMNS
    from rlx_assets.lib.footer_read import read_footer
    from rlx_assets.lib.parquet_footer import edit_footer
    from rlx_assets.lib.tables import RENAMES, TIME_COLUMNS
    from rlx_assets.lib.thrift_decode import decode_struct

    raw = write_day(tmp_path / "vendor", "book_delta_v2", BTC, DAY, rows=60_000)
    footer = read_footer(raw)
    edit = edit_footer(footer, RENAMES, TIME_COLUMNS)
    new = decode_struct(edit.encode())[0]
    before, after = footer.metadata[FMD_ROW_GROUPS][1].values, new[FMD_ROW_GROUPS][1].values
    assert len(before) == len(after) == len(edit.group_rows) == 6
    for old_group, new_group in zip(before, after, strict=True):
        for old_chunk, new_chunk in zip(old_group[RG_COLUMNS][1].values,
                                        new_group[RG_COLUMNS][1].values, strict=True):
            old_meta, new_meta = dict(old_chunk[CC_META][1]), dict(new_chunk[CC_META][1])
            old_path = old_meta.pop(CMD_PATH)[1].values[0].decode()
            assert new_meta.pop(CMD_PATH)[1].values == [RENAMES.get(old_path,
                                                                    old_path).encode()]
            assert new_meta == old_meta
        assert {k: v for k, v in new_group.items() if k != RG_COLUMNS} == \
            {k: v for k, v in old_group.items() if k != RG_COLUMNS}


@pytest.mark.parametrize("same_file", [True, False])
def test_a_footer_started_from_the_vendor_s_bytes_is_used_only_if_they_match(
        tmp_path: Path, same_file: bool) -> None:
    """The footer edit starts from the vendor's last bytes before the download; if the
    downloaded file ends otherwise (re-published in between), it is not used."""
    from rlx_assets.lib.footer_job import read_tail
    from rlx_assets.lib.normalise import start_footer

    raw = write_day(tmp_path / "vendor", "trades", BTC, DAY, rows=20_000)
    other = write_day(tmp_path / "other", "trades", BTC, DAY, rows=20_000 if same_file
                      else 19_000)
    data = other.read_bytes()
    job = start_footer(read_tail(lambda n: data[-n:], other.name), len(data))
    expected = normalise_day(raw, TABLES["trades"], DAY, tmp_path / "expected.parquet")
    got = normalise_day(raw, TABLES["trades"], DAY, tmp_path / "got.parquet", footer=job)
    assert (tmp_path / "got.parquet").read_bytes() == \
        (tmp_path / "expected.parquet").read_bytes()
    assert got.output_sha256 == expected.output_sha256


def test_an_unreadable_footer_is_reported(tmp_path: Path) -> None:
    from rlx_assets.lib import footer_job
    from rlx_assets.lib.footer_read import NotParquet
    from rlx_assets.lib.tables import RENAMES, TIME_COLUMNS

    raw = write_day(tmp_path / "vendor", "trades", BTC, DAY, rows=5_000)
    data = bytearray(raw.read_bytes())
    length = int.from_bytes(data[-8:-4], "little")
    data[-8 - length:-8] = b"\xff" * length  # the footer: not Thrift any more
    job = footer_job.FooterJob(bytes(data[-8 - length:]), len(data), RENAMES, TIME_COLUMNS)
    try:
        with pytest.raises(NotParquet):
            job.encode(None, "timestamp")
    finally:
        job.close()
