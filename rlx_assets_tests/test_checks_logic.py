"""The blocking checks, fast and without Dagster: `normalise_day` + `evaluate` on generated days.

Every (table, fault) pair must fail exactly the checks the contract names, with the figures
behind the failure in the metadata. The streaming scan is cross-checked against a numpy
oracle on whole arrays, including days cut into many small batches so that an unsorted
pair, a hole or a bad row straddles a batch boundary.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rlx_assets.lib import normalise as normalise_module
from rlx_assets.lib.checks import (
    BLOCKING_CHECKS,
    POSITIVE_PRICES,
    SCHEMA,
    TEMPORAL_CONTINUITY,
    CheckOutcome,
    evaluate,
)
from rlx_assets.lib.demo_data import vendor_relpath, write_day
from rlx_assets.lib.demo_faults import Fault
from rlx_assets.lib.demo_habits import PREVIOUS_DAY_ROWS
from rlx_assets.lib.normalise import UnreadableVendorFile, normalise_day
from rlx_assets.lib.scan import DayScan, TimeRules, format_ns
from rlx_assets.lib.schemas import polars_dtype
from rlx_assets.lib.tables import BOOK_LEVELS, TABLES
from rlx_assets_tests.stand_ins import BTC

DAY = dt.date(2024, 1, 3)
DAY_START = int(dt.datetime(2024, 1, 3, tzinfo=dt.UTC).timestamp()) * 10**9
NS = 10**9
HOUR = 3_600 * NS
PRICE_COLUMN = {"trades": "price", "book": "bid_0_price", "book_delta_v2": "price"}

EXPECTED_FAILURES: dict[Fault, set[str]] = {
    Fault.NEGATIVE_PRICE: {POSITIVE_PRICES},
    Fault.ZERO_QUANTITY: {POSITIVE_PRICES},
    Fault.NULL_PRICE: {POSITIVE_PRICES, SCHEMA},
    Fault.MISSING_COLUMN: {SCHEMA},
    Fault.WRONG_DTYPE: {SCHEMA},
    Fault.UNKNOWN_SIDE: {SCHEMA},
    Fault.UNSORTED: {TEMPORAL_CONTINUITY},
    Fault.OUTSIDE_DAY: {TEMPORAL_CONTINUITY},
    Fault.HOLE: {TEMPORAL_CONTINUITY},
    Fault.EMPTY: {TEMPORAL_CONTINUITY},
}
CASES = [(table, fault) for table in TABLES for fault in EXPECTED_FAILURES
         if fault is not Fault.UNKNOWN_SIDE or table == "trades"]


TOLERANCE = 5.0  # the default day-boundary tolerance, seconds


def run_checks(raw: Path, table: str, out: Path, max_gap: float | None = None,
               previous_last_time: int | None = None,
               boundary: float = TOLERANCE) -> tuple[DayScan, dict[str, CheckOutcome]]:
    gap = TABLES[table].default_max_gap_seconds if max_gap is None else max_gap
    scan = normalise_day(raw, TABLES[table], DAY, out, rules=TimeRules(gap, boundary))
    outcomes = [o for o in evaluate(scan, previous_last_time) if o.blocking]
    assert [o.name for o in outcomes] == list(BLOCKING_CHECKS)
    return scan, {o.name: o for o in outcomes}


def failed(outcomes: dict[str, CheckOutcome]) -> set[str]:
    return {name for name, o in outcomes.items() if not o.passed}


def raw_times(path: Path) -> np.ndarray:
    return pq.read_table(path, columns=["timestamp"]).column("timestamp").to_numpy()


def raw_received(path: Path) -> np.ndarray:
    return pq.read_table(path, columns=["receipt_timestamp"]).column(0).to_numpy()


def time_oracle(ts: np.ndarray, received: np.ndarray | None = None,
                tolerance: float = TOLERANCE, max_gap: float = 900) -> dict[str, object]:
    """What the temporal evidence must say, computed on the whole array at once: times <= 0
    are missing (placed at their receipt time for holes), rows within `tolerance` seconds
    across the day's edges are counted apart."""
    end, tol = DAY_START + 86_400 * NS, int(tolerance * NS)
    real = ts[ts > 0]
    back = np.flatnonzero(np.diff(real) < 0) + 1
    outside = np.flatnonzero((real < DAY_START - tol) | (real >= end + tol))
    before = np.flatnonzero((real >= DAY_START - tol) & (real < DAY_START))
    after = np.flatnonzero((real >= end) & (real < end + tol))
    effective = ts if received is None else np.where(ts > 0, ts, received)
    steps = np.diff(effective)
    gap_at = int(np.argmax(steps)) if len(steps) else 0
    largest = int(steps[gap_at]) if len(steps) and steps[gap_at] > 0 else 0
    holes = np.flatnonzero(steps > max_gap * NS)
    return {
        "rows": len(ts),
        "unsorted_rows": len(back),
        "first_unsorted_origin_times": [format_ns(t) for t in real[back[:5]]],
        "rows_outside_day": len(outside),
        "first_outside_origin_times": [format_ns(t) for t in real[outside[:5]]],
        "rows_before_day_within_tolerance": len(before),
        "rows_after_day_within_tolerance": len(after),
        "origin_time_missing_rows": int((ts <= 0).sum()),
        "largest_gap_seconds": largest / 1e9,
        "largest_gap_after": format_ns(effective[gap_at]) if largest else None,
        "holes_over_threshold": len(holes),
        "holes": [{"start": format_ns(effective[i]), "end": format_ns(effective[i + 1]),
                   "seconds": (effective[i + 1] - effective[i]) / 1e9} for i in holes[:50]],
        "hole_at_day_start_seconds": max(0, effective[0] - DAY_START) / 1e9,
        "hole_at_day_end_seconds": max(0, end - effective[-1]) / 1e9,
    }


@pytest.fixture(scope="module")
def vendor(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("vendor")


def fault_day(vendor: Path, table: str, fault: Fault | None) -> Path:
    root = vendor / (fault.value if fault else "clean")
    path = root / vendor_relpath(table, BTC, DAY)
    return path if path.exists() else write_day(root, table, BTC, DAY, fault=fault)


@pytest.mark.parametrize("table", list(TABLES))
def test_clean_day_passes_every_check_and_is_normalised(vendor: Path, tmp_path: Path,
                                                        table: str) -> None:
    raw = fault_day(vendor, table, None)
    scan, outcomes = run_checks(raw, table, tmp_path / "out.parquet")
    assert failed(outcomes) == set()
    assert scan.rows == pq.ParquetFile(raw).metadata.num_rows
    written = pl.read_parquet_schema(tmp_path / "out.parquet")
    assert written == {name: polars_dtype(t) for name, t in TABLES[table].columns.items()}
    assert pq.ParquetFile(tmp_path / "out.parquet").metadata.num_rows == scan.rows
    temporal = outcomes[TEMPORAL_CONTINUITY].metadata
    ts = raw_times(raw)
    oracle = time_oracle(ts, raw_received(raw), max_gap=TABLES[table].default_max_gap_seconds)
    assert {k: temporal[k] for k in oracle} == oracle
    assert outcomes[POSITIVE_PRICES].metadata["offending_row_count"] == 0
    # The vendor writer's habits are all there, and none is a failure.
    assert temporal["rows_before_day_within_tolerance"] == PREVIOUS_DAY_ROWS
    assert temporal["vendor_contains_gaps"] == "No"
    if table != "trades":
        assert temporal["resyncs"] >= 1 and temporal["origin_time_missing_rows"] >= 1
    # Readers never see the sentinel as a time: null in the normalised file.
    times = pl.read_parquet(tmp_path / "out.parquet", columns=["origin_time"])["origin_time"]
    assert times.null_count() == int((ts <= 0).sum())
    assert times.min() >= dt.datetime(2024, 1, 2, 23, 59, 59, tzinfo=dt.UTC)


@pytest.mark.parametrize(("table", "fault"), CASES,
                         ids=[f"{t}-{f.value}" for t, f in CASES])
def test_each_fault_fails_exactly_the_contract_checks(vendor: Path, tmp_path: Path, table: str,
                                                      fault: Fault) -> None:
    raw = fault_day(vendor, table, fault)
    scan, outcomes = run_checks(raw, table, tmp_path / "out.parquet")
    assert failed(outcomes) == EXPECTED_FAILURES[fault], {
        n: o.description for n, o in outcomes.items()}
    for name in EXPECTED_FAILURES[fault]:
        assert outcomes[name].description, name  # a sentence for the alert
    price = PRICE_COLUMN[table]
    # Faults touch row 10 of the day proper, after the previous day's rows opening the file.
    row10 = format_ns(raw_times(raw)[PREVIOUS_DAY_ROWS + 10]) if fault is not Fault.EMPTY \
        else None

    if fault in (Fault.NEGATIVE_PRICE, Fault.ZERO_QUANTITY, Fault.NULL_PRICE):
        meta = outcomes[POSITIVE_PRICES].metadata
        assert meta["offending_row_count"] == 1
        [evidence] = meta["offending_rows"].values()
        assert evidence == {"rows": 1, "first_origin_times": [row10]}
        assert "(1 rows)" in outcomes[POSITIVE_PRICES].description
    if fault is Fault.NULL_PRICE:
        schema_rows = outcomes[SCHEMA].metadata["offending_rows"]
        assert schema_rows == {f"column {price!r} has nulls":
                               {"rows": 1, "first_origin_times": [row10]}}
    if fault is Fault.MISSING_COLUMN:
        assert outcomes[SCHEMA].metadata["problems"] == [f"column {price!r} is missing"]
        assert outcomes[POSITIVE_PRICES].metadata["unevaluable_columns"] == [price]
        assert "not evaluated" in outcomes[POSITIVE_PRICES].description
    if fault is Fault.WRONG_DTYPE:
        [problem] = outcomes[SCHEMA].metadata["problems"]
        assert price in problem and "String" in problem and "Float64" in problem
        assert outcomes[SCHEMA].metadata["columns"][price] == "String"
    if fault is Fault.UNKNOWN_SIDE:
        [(label, evidence)] = outcomes[SCHEMA].metadata["offending_rows"].items()
        assert "side" in label and evidence == {"rows": 1, "first_origin_times": [row10]}

    temporal = outcomes[TEMPORAL_CONTINUITY]
    if fault is Fault.EMPTY:
        assert scan.rows == 0 and "no rows" in temporal.description
        return
    oracle = time_oracle(raw_times(raw), raw_received(raw),
                         max_gap=TABLES[table].default_max_gap_seconds)
    assert {k: temporal.metadata[k] for k in oracle} == oracle
    if fault is Fault.UNSORTED:
        assert temporal.metadata["unsorted_rows"] == 2
        assert "backwards" in temporal.description and "hole" not in temporal.description
    if fault is Fault.OUTSIDE_DAY:
        assert temporal.metadata["rows_outside_day"] == 1
        assert temporal.metadata["first_outside_origin_times"] == [
            format_ns(DAY_START - HOUR)]
        assert "outside" in temporal.description
    if fault is Fault.HOLE:
        assert temporal.metadata["largest_gap_seconds"] > 3 * 3_600 - 60
        assert temporal.metadata["unsorted_rows"] == 0
        after = temporal.metadata["largest_gap_after"]
        assert after.startswith("2024-01-03T05:")  # the hole is 06:00-09:00
        [hole] = temporal.metadata["holes"]
        assert hole["start"] == after and hole["end"].startswith("2024-01-03T09:00")
        assert f"{after}..{hole['end']}" in temporal.description


@pytest.mark.parametrize("table", list(TABLES))
def test_truncated_file_is_unreadable(vendor: Path, tmp_path: Path, table: str) -> None:
    raw = fault_day(vendor, table, Fault.TRUNCATED)
    with pytest.raises(UnreadableVendorFile, match=raw.name):
        normalise_day(raw, TABLES[table], DAY, tmp_path / "out.parquet")


# --- hand-made days --------------------------------------------------------------------------


def trades_table(ts: np.ndarray, price: np.ndarray | None = None,
                 amount: np.ndarray | None = None) -> pa.Table:
    n = len(ts)
    return pa.table({
        "side": pa.array(np.where(np.arange(n) % 2 == 0, "buy", "sell")),
        "amount": np.full(n, 0.5) if amount is None else amount,
        "price": np.full(n, 42_000.0) if price is None else price,
        "id": np.arange(n, dtype=np.int64),
        "timestamp": ts.astype(np.int64),
        "receipt_timestamp": ts.astype(np.int64) + 5_000_000,
    })


def deltas_table(ts: np.ndarray, seq: np.ndarray) -> pa.Table:
    n = len(ts)
    return pa.table({
        "timestamp": ts.astype(np.int64),
        "receipt_timestamp": ts.astype(np.int64) + 5_000_000,
        "sequence_number": seq.astype(np.int64),
        "side_is_bid": np.arange(n) % 2 == 0,
        "price": np.full(n, 42_000.0),
        "size": np.where(np.arange(n) % 5 == 0, 0.0, 1.5),
    })


ROW_GROUP_ROWS = 7_000


def write(tmp_path: Path, table: pa.Table, name: str = "raw.parquet",
          row_group_size: int | None = None) -> Path:
    path = tmp_path / name
    pq.write_table(table, path, row_group_size=row_group_size or ROW_GROUP_ROWS)
    return path


def even_times(n: int, start: int = DAY_START, end: int = DAY_START + 86_400 * NS) -> np.ndarray:
    """`n` evenly spaced times from `start` to just before `end` (integer arithmetic: float64
    cannot hold epoch nanoseconds exactly)."""
    return start + np.arange(n, dtype=np.int64) * ((end - 1 - start) // (n - 1))


@pytest.mark.parametrize(("gap_seconds", "passes"), [(900, True), (901, False)])
def test_hole_threshold_is_inclusive(tmp_path: Path, gap_seconds: int, passes: bool) -> None:
    step = 60 * NS
    ts = np.concatenate([np.arange(DAY_START, DAY_START + 12 * HOUR, step),
                         np.arange(DAY_START + 12 * HOUR - step + gap_seconds * NS,
                                   DAY_START + 24 * HOUR, step)])
    _, outcomes = run_checks(write(tmp_path, trades_table(ts)), "trades", tmp_path / "o.parquet",
                             max_gap=900)
    assert outcomes[TEMPORAL_CONTINUITY].metadata["largest_gap_seconds"] == gap_seconds
    assert outcomes[TEMPORAL_CONTINUITY].passed is passes


@pytest.mark.parametrize("where", ["start", "end"])
def test_a_hole_at_the_day_edge_counts(tmp_path: Path, where: str) -> None:
    ts = even_times(2_000, start=DAY_START + 20 * 60 * NS) if where == "start" else \
        even_times(2_000, end=DAY_START + 86_400 * NS - 20 * 60 * NS)
    _, outcomes = run_checks(write(tmp_path, trades_table(ts)), "trades", tmp_path / "o.parquet")
    temporal = outcomes[TEMPORAL_CONTINUITY]
    assert not temporal.passed and f"day's {where}" in temporal.description
    assert temporal.metadata[f"hole_at_day_{where}_seconds"] >= 20 * 60


def test_gap_from_the_previous_day_is_reported(tmp_path: Path) -> None:
    ts = even_times(1_000)
    _, outcomes = run_checks(write(tmp_path, trades_table(ts)), "trades", tmp_path / "o.parquet",
                             previous_last_time=int(ts[0]) - 7 * NS)
    assert outcomes[TEMPORAL_CONTINUITY].metadata["gap_from_previous_day_seconds"] == 7.0


@pytest.mark.parametrize("bad", [float("nan"), 0.0, -0.01, None])
def test_non_positive_nan_or_null_price_fails_positive_prices(tmp_path: Path, bad) -> None:
    price = pa.array([42_000.0] * 99 + [bad], pa.float64())
    table = trades_table(even_times(100)).set_column(2, "price", price)
    _, outcomes = run_checks(write(tmp_path, table), "trades", tmp_path / "o.parquet")
    assert not outcomes[POSITIVE_PRICES].passed
    assert outcomes[POSITIVE_PRICES].metadata["offending_row_count"] == 1
    assert outcomes[SCHEMA].passed is (bad is not None)  # null, unlike NaN, is also schema


def test_book_delta_size_zero_is_allowed_but_negative_or_nan_is_not(tmp_path: Path) -> None:
    ts = even_times(1_000)
    clean = deltas_table(ts, np.arange(1_000))
    _, outcomes = run_checks(write(tmp_path, clean), "book_delta_v2", tmp_path / "o.parquet")
    assert failed(outcomes) == set()
    size = clean.column("size").to_numpy().copy()
    size[[3, 7]] = [-1.0, np.nan]
    bad = clean.set_column(5, "size", pa.array(size))
    _, outcomes = run_checks(write(tmp_path, bad, "bad.parquet"), "book_delta_v2",
                             tmp_path / "o.parquet")
    assert failed(outcomes) == {POSITIVE_PRICES}
    assert outcomes[POSITIVE_PRICES].metadata["offending_row_count"] == 2


def book_table(n: int = 1_000) -> dict[str, object]:
    ts = even_times(n)
    cols: dict[str, object] = {"timestamp": ts, "receipt_timestamp": ts + 1,
                               "sequence_number": np.arange(n, dtype=np.int64)}
    for side, sign in (("bid", -1), ("ask", 1)):
        for i in range(BOOK_LEVELS):
            cols[f"{side}_{i}_price"] = pa.array(np.full(n, 42_000.0 + sign * (i + 1)))
            cols[f"{side}_{i}_size"] = pa.array(np.full(n, 0.25))
    return cols


@pytest.mark.parametrize(("change", "fails"), [
    ({"bid_19_price": None, "bid_19_size": None}, set()),  # a thin book: level absent
    ({"ask_5_size": None}, {POSITIVE_PRICES}),  # price without size
    ({"ask_5_price": None}, {POSITIVE_PRICES}),  # size without price
    ({"ask_3_size": float("nan")}, {POSITIVE_PRICES}),
    ({"bid_0_price": None, "bid_0_size": None}, {POSITIVE_PRICES, SCHEMA}),  # no top of book
])
def test_book_levels(tmp_path: Path, change: dict[str, object], fails: set[str]) -> None:
    cols = book_table()
    for name, value in change.items():
        values = cols[name].to_pylist()
        values[7] = value
        cols[name] = pa.array(values, pa.float64())
    _, outcomes = run_checks(write(tmp_path, pa.table(cols)), "book", tmp_path / "o.parquet")
    assert failed(outcomes) == fails
    if POSITIVE_PRICES in fails:
        assert outcomes[POSITIVE_PRICES].metadata["offending_row_count"] == 1


def test_missing_time_column_is_a_schema_failure_only(tmp_path: Path) -> None:
    table = trades_table(even_times(100)).drop_columns(["timestamp"])
    _, outcomes = run_checks(write(tmp_path, table), "trades", tmp_path / "o.parquet")
    assert failed(outcomes) == {SCHEMA}
    assert "not evaluated" in outcomes[TEMPORAL_CONTINUITY].description
    assert outcomes[SCHEMA].metadata["problems"] == ["column 'origin_time' is missing"]


def test_extra_column_is_a_schema_failure(tmp_path: Path) -> None:
    table = trades_table(even_times(100)).append_column("venue", pa.array(["x"] * 100))
    _, outcomes = run_checks(write(tmp_path, table), "trades", tmp_path / "o.parquet")
    assert failed(outcomes) == {SCHEMA}
    assert outcomes[SCHEMA].metadata["problems"] == ["column 'venue' is not expected"]


def test_dictionary_encoded_side_is_accepted(tmp_path: Path) -> None:
    """lakeapi and pandas write `side` as a category; that is still a valid string column."""
    table = trades_table(even_times(100))
    table = table.set_column(0, "side", table.column("side").dictionary_encode())
    _, outcomes = run_checks(write(tmp_path, table), "trades", tmp_path / "o.parquet")
    assert failed(outcomes) == set()


# --- batch boundaries ------------------------------------------------------------------------


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Batches of at least 10,000 rows (the floor; whole row groups of 10,000 rows as `write`
    makes them here), and a record of the batch sizes the scan saw."""
    monkeypatch.setattr(normalise_module, "BATCH_CELLS", 1)
    monkeypatch.setattr(sys.modules[__name__], "ROW_GROUP_ROWS", 10_000)
    sizes: list[int] = []
    original = DayScan.add

    def spy(self: DayScan, batch: pl.DataFrame) -> None:
        sizes.append(batch.height)
        original(self, batch)

    monkeypatch.setattr(DayScan, "add", spy)
    return sizes


def test_unsorted_pair_across_a_batch_boundary(tmp_path: Path, small_batches: list[int]) -> None:
    ts = even_times(40_000)
    ts[[9_999, 10_000]] = ts[[10_000, 9_999]]
    _, outcomes = run_checks(write(tmp_path, trades_table(ts)), "trades", tmp_path / "o.parquet")
    assert small_batches == [10_000] * 4
    temporal = outcomes[TEMPORAL_CONTINUITY]
    assert failed(outcomes) == {TEMPORAL_CONTINUITY}
    assert temporal.metadata["unsorted_rows"] == 1
    assert temporal.metadata["first_unsorted_origin_times"] == [format_ns(ts[10_000])]


def test_hole_across_a_batch_boundary(tmp_path: Path, small_batches: list[int]) -> None:
    ts = np.concatenate([even_times(10_000, end=DAY_START + 6 * HOUR),
                         even_times(30_000, start=DAY_START + 9 * HOUR)])
    _, outcomes = run_checks(write(tmp_path, trades_table(ts)), "trades", tmp_path / "o.parquet")
    assert len(small_batches) == 4
    temporal = outcomes[TEMPORAL_CONTINUITY]
    assert failed(outcomes) == {TEMPORAL_CONTINUITY}
    assert temporal.metadata["largest_gap_seconds"] == (ts[10_000] - ts[9_999]) / 1e9
    assert temporal.metadata["largest_gap_after"] == format_ns(ts[9_999])
    assert temporal.metadata["unsorted_rows"] == 0


def test_sequence_decrease_across_a_batch_boundary(tmp_path: Path,
                                                   small_batches: list[int]) -> None:
    seq = np.arange(30_000) * 3
    seq[10_000] = seq[9_999] - 1
    table = deltas_table(even_times(30_000), seq)
    _, outcomes = run_checks(write(tmp_path, table), "book_delta_v2", tmp_path / "o.parquet")
    assert len(small_batches) == 3
    temporal = outcomes[TEMPORAL_CONTINUITY]
    assert failed(outcomes) == {TEMPORAL_CONTINUITY}
    assert temporal.metadata["sequence_number_decreases"] == 1
    assert "sequence_number" in temporal.description


def test_evidence_accumulates_across_batches_in_file_order(tmp_path: Path,
                                                           small_batches: list[int]) -> None:
    ts = even_times(40_000)
    bad_rows = [9_998, 9_999, 10_000, 20_000, 30_000, 30_001, 39_999]
    price = np.full(40_000, 42_000.0)
    price[bad_rows] = -1.0
    _, outcomes = run_checks(write(tmp_path, trades_table(ts, price)), "trades",
                             tmp_path / "o.parquet")
    assert len(small_batches) == 4
    [evidence] = outcomes[POSITIVE_PRICES].metadata["offending_rows"].values()
    assert evidence == {"rows": 7, "first_origin_times": [format_ns(ts[i]) for i in bad_rows[:5]]}


def test_faulty_book_day_over_several_batches(vendor: Path, tmp_path: Path,
                                              small_batches: list[int]) -> None:
    """The demo UNSORTED fault swaps row 10 with a row of the next batch of the 83-column book."""
    raw = fault_day(vendor, "book", Fault.UNSORTED)
    _, outcomes = run_checks(raw, "book", tmp_path / "o.parquet")
    assert len(small_batches) >= 2
    assert failed(outcomes) == {TEMPORAL_CONTINUITY}
    oracle = time_oracle(raw_times(raw), raw_received(raw), max_gap=300)
    assert {k: outcomes[TEMPORAL_CONTINUITY].metadata[k] for k in oracle} == oracle


# --- property-style: the streaming scan agrees with the whole-array oracle ------------------


def random_day(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A trades day with random holes, swaps, rows outside the day and bad prices."""
    n = int(rng.integers(20_000, 45_000))
    ts = np.sort(rng.integers(DAY_START, DAY_START + 86_400 * NS, n))
    for _ in range(int(rng.integers(0, 3))):  # holes: push the tail forward
        at = int(rng.integers(1, n))
        ts[at:] = np.minimum(ts[at:] + int(rng.integers(1, 4 * 3_600)) * NS,
                             DAY_START + 86_400 * NS - 1)
    for _ in range(int(rng.integers(0, 4))):  # swaps, some adjacent, some far apart
        i = int(rng.integers(0, n - 1))
        j = i + 1 if rng.random() < 0.5 else int(rng.integers(0, n))
        ts[[i, j]] = ts[[j, i]]
    for _ in range(int(rng.integers(0, 3))):  # rows before or after the day
        ts[int(rng.integers(0, n))] += int(rng.choice([-1, 1])) * 86_400 * NS
    price = np.full(n, 42_000.0)
    price[rng.integers(0, n, int(rng.integers(0, 8)))] = rng.choice([0.0, -5.0, np.nan])
    return ts, price


@pytest.mark.parametrize("seed", range(12))
def test_scan_matches_the_oracle_whatever_the_batching(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       seed: int) -> None:
    rng = np.random.default_rng(seed)
    ts, price = random_day(rng)
    raw = write(tmp_path, trades_table(ts, price), row_group_size=int(rng.integers(3_000, 50_000)))
    _, whole = run_checks(raw, "trades", tmp_path / "whole.parquet")
    monkeypatch.setattr(normalise_module, "BATCH_CELLS", 1)  # 10,000-row batches
    _, batched = run_checks(raw, "trades", tmp_path / "batched.parquet")
    for name in BLOCKING_CHECKS:
        assert batched[name] == whole[name], name
    temporal = batched[TEMPORAL_CONTINUITY].metadata
    oracle = time_oracle(ts)
    assert {k: temporal[k] for k in oracle} == oracle
    bad = np.flatnonzero(~(price > 0))
    assert batched[POSITIVE_PRICES].metadata["offending_row_count"] == len(bad)
    assert batched[POSITIVE_PRICES].passed is (len(bad) == 0)
    expected_fail = bool(len(bad)), bool(
        oracle["unsorted_rows"] or oracle["rows_outside_day"]
        or oracle["largest_gap_seconds"] > 900 or oracle["hole_at_day_start_seconds"] > 900
        or oracle["hole_at_day_end_seconds"] > 900)
    assert (not batched[POSITIVE_PRICES].passed, not batched[TEMPORAL_CONTINUITY].passed) == \
        expected_fail
    assert batched[SCHEMA].passed


def summary(scan: DayScan) -> tuple:
    return (scan.rows, scan.first_time, scan.last_time, scan.min_time, scan.max_time,
            scan.unsorted, scan.outside_day, scan.largest_gap_ns, scan.largest_gap_after,
            scan.sequence_decreases, scan.problems, scan.times)


def test_day_scan_does_not_depend_on_where_batches_split() -> None:
    """Feed one small normalised frame to DayScan whole and split at every possible point."""
    rng = np.random.default_rng(7)
    n = 60
    ts = np.sort(rng.integers(DAY_START, DAY_START + 86_400 * NS, n))
    ts[[5, 6]] = ts[[6, 5]]
    ts[30] = DAY_START - 60 * NS  # beyond the tolerance
    ts[31] = DAY_START - 2 * NS  # within it
    seq = np.arange(n) * 2
    seq[44] = 1
    ts[50:53] = 0  # a resync: no exchange time; the sequence steps back out of it
    seq[50:53] = seq[49] + 100
    price = np.full(n, 42_000.0)
    price[[0, 17, 59]] = [-1.0, np.nan, 0.0]
    frame = pl.DataFrame({
        "origin_time": pl.Series(ts).cast(pl.Datetime("ns", "UTC")).scatter(
            np.flatnonzero(ts <= 0), None),
        "received_time": pl.Series(ts + 1).cast(pl.Datetime("ns", "UTC")),
        "sequence_number": seq, "side_is_bid": np.arange(n) % 2 == 0,
        "price": price, "size": np.ones(n),
    })

    def scanned(parts: list[pl.DataFrame]) -> DayScan:
        scan = DayScan("book_delta_v2", DAY)
        scan.prepare(frame.schema)
        for part in parts:
            scan.add(part)
        return scan

    whole = summary(scanned([frame]))
    assert whole[0] == n and whole[5].rows == 2 and whole[6].rows == 1 and whole[9] == 1
    times = whole[-1]
    assert (times.missing, times.resync_count, times.sequence_resets) == (3, 1, 1)
    assert times.before_day.rows == 1
    for cut in range(1, n):
        assert summary(scanned([frame[:cut], frame[cut:]])) == whole, cut
    for _ in range(20):
        cuts = sorted(set(rng.integers(1, n, int(rng.integers(2, 10)))))
        parts = [frame[a:b] for a, b in zip([0, *cuts], [*cuts, n], strict=True)]
        assert summary(scanned(parts)) == whole, cuts
