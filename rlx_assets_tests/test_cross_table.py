"""Cross-table WARN checks (issue 16, parts 1 and 2) against a simulated order book whose
deltas, snapshots and trades all come from the same book."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from rlx_assets.lib.cross_table import (
    SNAPSHOTS_AGREE,
    TRADES_IN_MARKET,
    snapshots_agree_with_deltas,
    trades_inside_market,
)
from rlx_assets.lib.timestamps import format_ns
from rlx_assets_tests.order_book_sim import START_NS, Message, OrderBookSim, Snapshot

S = 1_000_000_000
RESYNC_AT = 600


def _sim() -> OrderBookSim:
    return OrderBookSim(seed=11).run(1_200, resync_at=(RESYNC_AT,))  # 60 s, 120 snapshots


@pytest.fixture(scope="module")
def sim() -> OrderBookSim:
    return _sim()


@pytest.fixture()
def clean(sim, tmp_path) -> dict[str, Path]:
    return sim.write(tmp_path)


def test_deltas_from_the_same_book_agree_fully(clean):
    outcome = snapshots_agree_with_deltas(clean["book"], clean["deltas"], slice_seconds=10)
    meta = outcome.metadata
    assert outcome.name == SNAPSHOTS_AGREE and outcome.passed and not outcome.blocking
    assert meta["agreement_rate"] == 1.0 and meta["first_disagreements"] == []
    assert meta["levels_compared"] > 3_000 and meta["resyncs"] == 1
    # The file starts mid-stream: the first snapshots hold prices the deltas never showed.
    assert 0 < meta["levels_not_verifiable"] < meta["levels_total"]
    assert meta["worst_hour"]["agreement_rate"] == 1.0
    json.dumps(meta)
    assert "\n" not in outcome.description and outcome.violations == ()


@pytest.mark.parametrize("slice_seconds", [1, 7, 3600])
def test_slicing_does_not_change_the_figures(clean, slice_seconds):
    ref = snapshots_agree_with_deltas(clean["book"], clean["deltas"], slice_seconds=10).metadata
    got = snapshots_agree_with_deltas(clean["book"], clean["deltas"],
                                      slice_seconds=slice_seconds).metadata
    assert {**got, "slice_seconds": 10} == ref


def test_a_corrupted_snapshot_level_is_detected_and_located(sim, tmp_path):
    paths = sim.write(tmp_path)
    row = next(i for i, s in enumerate(sim.snapshots) if s.after > RESYNC_AT + 30)
    book = pq.read_table(paths["book"])
    sizes = book.column("bid_3_size").to_pylist()
    sizes[row] += 0.5
    book = book.set_column(book.schema.get_field_index("bid_3_size"), "bid_3_size", [sizes])
    pq.write_table(book, paths["book"])

    outcome = snapshots_agree_with_deltas(paths["book"], paths["deltas"], min_agreement=1.0,
                                          slice_seconds=10)
    snap = sim.snapshots[row]
    assert not outcome.passed and outcome.metadata["levels_compared"] - \
        outcome.metadata["levels_agreeing"] == 1
    (bad,) = outcome.metadata["first_disagreements"]
    assert bad == {"time": format_ns(snap.t), "side": "bid", "level": 3,
                   "price": pytest.approx(snap.bids[3][0] / 100),
                   "snapshot_size": pytest.approx(snap.bids[3][1] + 0.5),
                   "delta_size": pytest.approx(snap.bids[3][1])}
    assert outcome.metadata["worst_hour"]["agreement_rate"] < 1.0
    assert "first disagreement" in outcome.description and outcome.violations
    # One bad level out of thousands stays within the default 99 %.
    assert snapshots_agree_with_deltas(paths["book"], paths["deltas"]).passed


def test_a_dropped_delta_message_is_detected_at_the_next_snapshot(sim, tmp_path):
    index, snap, bid, price = sim.detectable_drop(after=100)
    paths = sim.write(tmp_path, drop=frozenset({index}))
    outcome = snapshots_agree_with_deltas(paths["book"], paths["deltas"], slice_seconds=10)
    first = outcome.metadata["first_disagreements"]
    assert outcome.metadata["agreement_rate"] < 1.0
    assert first[0]["time"] == format_ns(snap.t)
    assert {"time": format_ns(snap.t), "side": "bid" if bid else "ask", "price": price} in [
        {k: d[k] for k in ("time", "side", "price")} for d in first]


def test_removals_resyncs_and_ties_follow_the_rules(tmp_path):
    """Hand-made: a level removed by the deltas but shown is a disagreement; a resync makes
    older prices unverifiable; a snapshot stamped with a message's time includes it."""
    sim = OrderBookSim()
    sim.messages = [
        Message(START_NS + 1 * S, 1,
                [(True, 10_000, 1.0), (True, 9_999, 2.0), (False, 10_001, 3.0)]),
        Message(START_NS + 2 * S, 2, [(True, 9_999, 0.0)]),
        Message(START_NS + 3 * S, 9, [(True, 10_000, 1.0), (False, 10_002, 4.0)], resync=True),
    ]
    sim.snapshots = [
        Snapshot(START_NS + S // 2, 0, -1, [(10_000, 1.0)], []),  # before any delta
        Snapshot(START_NS + 2 * S, 2, 1, [(10_000, 1.0), (9_999, 2.0)], [(10_001, 3.0)]),
        Snapshot(START_NS + 4 * S, 9, 2, [(10_000, 1.0)], [(10_001, 3.0), (10_002, 4.0)]),
    ]
    sim.trades = [(START_NS + 5 * S, 1, "buy", 1.0, 100.01)]
    paths = sim.write(tmp_path)
    meta = snapshots_agree_with_deltas(paths["book"], paths["deltas"], slice_seconds=1).metadata
    assert (meta["levels_total"], meta["levels_compared"], meta["levels_agreeing"],
            meta["levels_not_verifiable"], meta["resyncs"]) == (7, 5, 4, 2, 1)
    assert meta["first_disagreements"] == [{
        "time": format_ns(START_NS + 2 * S), "side": "bid", "level": 1, "price": 99.99,
        "snapshot_size": 2.0, "delta_size": 0.0}]


def test_trades_inside_the_market_pass(sim, tmp_path):
    sim = _sim()
    sim.trades.insert(0, (START_NS, 0, "sell", 1.0, 100.0))  # before the first snapshot
    paths = sim.write(tmp_path)
    outcome = trades_inside_market(paths["trades"], paths["book"], slice_seconds=10)
    meta = outcome.metadata
    assert outcome.name == TRADES_IN_MARKET and outcome.passed and not outcome.blocking
    assert meta["tick"] == 0.01 and meta["tick_inferred"]
    assert meta["trades_outside"] == 0 and meta["largest_excursion"] is None
    assert meta["trades_before_first_snapshot"] == 1
    assert meta["trades_compared"] == len(sim.trades) - 1
    json.dumps(meta)


def test_a_trade_through_the_spread_is_detected_and_located(tmp_path):
    sim = OrderBookSim(seed=11).run(600)
    sim.trade(offset_ticks=5)
    through = sim.trades[-1]
    sim.run(600)
    paths = sim.write(tmp_path)
    outcome = trades_inside_market(paths["trades"], paths["book"], max_outside_share=0.0,
                                   slice_seconds=10)
    meta = outcome.metadata
    assert not outcome.passed and meta["trades_outside"] == 1
    worst = meta["largest_excursion"]
    assert (worst["trade_id"], worst["time"], worst["excursion_ticks"]) == (
        through[1], format_ns(through[0]), 5.0)
    assert worst["excursion_price"] == pytest.approx(0.05)
    assert meta["first_outside"] == [worst] and outcome.violations
    assert "largest excursion" in outcome.description
    # Five ticks of tolerance (the tick given) let the same trade through.
    assert trades_inside_market(paths["trades"], paths["book"], tolerance_ticks=5,
                                tick=0.01).metadata["trades_outside"] == 0


def test_every_trade_outside_is_counted_once(sim, tmp_path):
    paths = sim.write(tmp_path)
    trades = pq.read_table(paths["trades"])
    prices = pc.add(trades.column("price"), 1.0)  # every trade a dollar above the market
    pq.write_table(trades.set_column(2, "price", prices), paths["trades"])
    meta = trades_inside_market(paths["trades"], paths["book"], slice_seconds=10).metadata
    assert meta["trades_outside"] == meta["trades_compared"] == len(sim.trades)
    assert len(meta["first_outside"]) == 5
    assert meta["first_outside"][0]["time"] == format_ns(sim.trades[0][0])


def _reference(book: Path, deltas: Path) -> dict[str, object]:
    """The rule written out one row at a time, with no slicing or joins: replay the deltas
    in time order (file order within a time, epochs numbered in file order), and judge each
    snapshot level against the last delta at its side and price up to its time."""
    d = pq.read_table(deltas)
    times = d.column("received_time").cast("int64").to_pylist()
    resync = d.column("origin_time").is_null().to_pylist()
    epochs, epoch = [], 0
    for i, r in enumerate(resync):
        epoch += r and not (i and resync[i - 1])
        epochs.append(epoch)
    rows = sorted(zip(times, epochs, d.column("side_is_bid").to_pylist(),
                      d.column("price").to_pylist(), d.column("size").to_pylist(),
                      strict=True), key=lambda r: r[0])
    b = pq.read_table(book)
    known: dict[tuple[bool, float], tuple[float, int]] = {}
    now, applied, total, compared, bad = 0, 0, 0, 0, []
    book_times = b.column("received_time").cast("int64").to_pylist()
    for row, t in sorted(enumerate(book_times), key=lambda r: r[1]):
        while applied < len(rows) and rows[applied][0] <= t:
            _, now, bid, price, size = rows[applied]
            known[(bid, price)] = (size, now)
            applied += 1
        for side, level in [(s, i) for s in ("bid", "ask") for i in range(20)]:
            price = b.column(f"{side}_{level}_price")[row].as_py()
            size = b.column(f"{side}_{level}_size")[row].as_py()
            if price is None or size is None or price != price or size != size:
                continue
            total += 1
            if price <= 0:  # no price to look up
                continue
            last = known.get((side == "bid", price))
            if last is None or last[1] != now:
                continue
            compared += 1
            if abs(size - last[0]) > max(abs(size), abs(last[0])) * 1e-9 + 1e-12:
                bad.append({"time": format_ns(t), "side": side, "level": level, "price": price,
                            "snapshot_size": size, "delta_size": last[0]})
    return {"levels_total": total, "levels_compared": compared,
            "levels_agreeing": compared - len(bad), "levels_not_verifiable": total - compared,
            "resyncs": epoch, "first_disagreements": bad[:5]}


def _scale_prices(paths: dict[str, Path], factor: float) -> None:
    """Every price of the book and the deltas times `factor` (equal prices stay equal)."""
    for name in ("book", "deltas"):
        table = pq.read_table(paths[name])
        for i, column in enumerate(table.column_names):
            if column.endswith("price"):
                table = table.set_column(i, column, pc.multiply(table.column(i), factor))
        pq.write_table(table, paths[name])


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("slice_seconds", [1, 3600])
@pytest.mark.parametrize("prices", ["on a tick grid", "on no decimal grid"])
def test_the_check_matches_the_rule_written_out(seed, slice_seconds, prices, tmp_path):
    """Random books with what makes the rule subtle: resyncs (one split across slices by a
    1 s slice), dropped messages, corrupted snapshot levels, a price repeated within a
    message, messages sharing a receive time, snapshots written out of time order, and
    prices that are not positive: ask deltas
    and ask snapshot levels at minus a bid's price (its bits differ from the bid's only in
    the sign, which the join key uses to mark bids)."""
    import random

    rng = random.Random(seed)
    sim = OrderBookSim(seed=seed).run(600, snapshot_every=3, resync_at=(150, 400))
    for i in range(1, len(sim.messages)):
        m = sim.messages[i]
        if rng.random() < 0.1:  # same receive time as the message before
            m.t = sim.messages[i - 1].t
        if rng.random() < 0.05 and m.rows:  # the same price twice: the later row counts
            bid, tick, size = m.rows[0]
            m.rows.insert(1, (bid, tick, round(size + 1.0, 4)))
        if rng.random() < 0.05 and m.rows and not m.resync:  # an ask at minus a bid's price
            m.rows.append((False, -sim.snapshots[0].bids[0][0], 7.0))
    for snap in sim.snapshots:
        if rng.random() < 0.2 and snap.bids:
            tick, size = snap.bids[-1]
            snap.bids[-1] = (tick, size + 0.25)
        if rng.random() < 0.05 and snap.asks and snap.bids:  # an ask at minus the best bid
            snap.asks[-1] = (-snap.bids[0][0], snap.asks[-1][1])
    drop = frozenset(rng.sample(range(len(sim.messages)), 15))
    paths = sim.write(tmp_path, drop=drop)
    if prices == "on no decimal grid":
        _scale_prices(paths, 1 / 3)
    book = pq.read_table(paths["book"])  # a few snapshots written out of time order
    order = list(range(book.num_rows))
    for i in rng.sample(range(1, book.num_rows), 10):
        order[i - 1], order[i] = order[i], order[i - 1]
    pq.write_table(book.take(order), paths["book"])
    got = snapshots_agree_with_deltas(paths["book"], paths["deltas"],
                                      slice_seconds=slice_seconds).metadata
    ref = _reference(paths["book"], paths["deltas"])
    assert ref["levels_compared"] > 1_000 and ref["levels_agreeing"] < ref["levels_compared"]
    assert {k: got[k] for k in ref} == ref


def test_resyncs_are_found_without_footer_statistics(sim, tmp_path):
    """`origin_time` is decoded only where the footer does not rule out a null there; a file
    written without statistics (or row groups without them) is read in full, same answers."""
    from rlx_assets.lib.delta_stream import delta_stream_complete

    (tmp_path / "with").mkdir()
    (tmp_path / "bare").mkdir()
    with_stats = sim.write(tmp_path / "with")
    bare = sim.write(tmp_path / "bare")
    for name in ("book", "deltas"):
        pq.write_table(pq.read_table(bare[name]), bare[name], write_statistics=False,
                       row_group_size=97)
    assert pq.ParquetFile(bare["deltas"]).metadata.row_group(0).column(0).statistics is None
    got = snapshots_agree_with_deltas(bare["book"], bare["deltas"], slice_seconds=7).metadata
    ref = snapshots_agree_with_deltas(with_stats["book"], with_stats["deltas"],
                                      slice_seconds=7).metadata
    assert got == ref and ref["resyncs"] == 1
    stream = delta_stream_complete(bare["deltas"], rows_per_batch=500).metadata
    assert stream["resyncs"] == 1 == delta_stream_complete(with_stats["deltas"]).metadata[
        "resyncs"]


def test_a_busy_day_is_cut_into_shorter_slices(tmp_path):
    """By default the slice is the longest divisor of an hour in which neither file holds
    more than SLICE_ROWS delta rows or snapshot levels, read from the footers; a row group
    counts whole in every slice it meets."""
    from rlx_assets.lib.time_slices import NS, slice_seconds_for

    start = 1_704_153_600 * NS
    path = tmp_path / "rows.parquet"
    # 3,600 rows a second for 4 s, in row groups of 1,000 rows (0.28 s each)
    times = start + (np.arange(14_400) * (NS // 3_600))
    pq.write_table(pa.table({"received_time": pa.array(times)}), path, row_group_size=1_000)
    assert slice_seconds_for({path: 1}, 20_000) == 3600  # the whole file fits
    assert slice_seconds_for({path: 1}, 9_000) == 2  # [0 s, 2 s): 8 groups, 8,000 rows
    # 7,200 rows lie in [0 s, 2 s), but the group across 2 s counts whole: 8,000 > 7,900
    assert slice_seconds_for({path: 1}, 7_900) == 1
    assert slice_seconds_for({path: 2}, 9_000) == 1  # weighted
    # [1 s, 2 s) holds 5 groups: nothing under 4,000 rows; rows in the largest group: 1,000
    assert slice_seconds_for({path: 1}, 4_000) == 1
    # one row group of the whole file: no slice holds fewer rows, so the longest one is taken
    whole = tmp_path / "one_group.parquet"
    pq.write_table(pa.table({"received_time": pa.array(times)}), whole)
    assert slice_seconds_for({whole: 1}, 1_000) == 3600
    # a stray row from 1970 in a row group of its own: counted, with no array over 54 years
    stray = tmp_path / "stray.parquet"
    with pq.ParquetWriter(stray, pa.schema([("received_time", pa.int64())])) as writer:
        writer.write_table(pa.table({"received_time": pa.array([NS])}))
        writer.write_table(pa.table({"received_time": pa.array(times)}), row_group_size=1_000)
    assert slice_seconds_for({stray: 1}, 7_900) == 1
    assert slice_seconds_for({stray: 1}, 9_000) == 2


def test_the_snapshot_check_picks_its_slices_from_the_footers(clean, monkeypatch):
    from rlx_assets.lib import book_agreement

    ref = snapshots_agree_with_deltas(clean["book"], clean["deltas"], slice_seconds=10).metadata
    assert snapshots_agree_with_deltas(clean["book"], clean["deltas"]).metadata[
        "slice_seconds"] == 3600
    for name in ("book", "deltas"):  # small row groups, so that short slices pay off
        pq.write_table(pq.read_table(clean[name]), clean[name], row_group_size=40)
    monkeypatch.setattr(book_agreement, "SLICE_ROWS", 2_000)
    got = snapshots_agree_with_deltas(clean["book"], clean["deltas"]).metadata
    assert got["slice_seconds"] < 60
    assert {**got, "slice_seconds": 10} == ref
