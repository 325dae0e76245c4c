"""Issue 16 part 3: the delta stream's completeness, from sequence numbers alone, on a
simulated order book's stream (`order_book_sim`); the demo day through the consistency
asset is in test_consistency_asset.py."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from rlx_assets.lib.delta_stream import CANNOT_INFER, delta_stream_complete
from rlx_assets_tests.order_book_sim import OrderBookSim


def stream(tmp_path: Path, shift_after: int | None = None, by: int = 0) -> Path:
    """The simulated stream (one resync after 3 lost messages), its ids shifted by `by`
    from row `shift_after` on."""
    table = OrderBookSim(seed=3).run(1_500, resync_at=(700,)).deltas_table()
    if shift_after is not None:
        seq = table.column("sequence_number").to_numpy().copy()
        seq[shift_after:] += by
        table = table.set_column(table.schema.get_field_index("sequence_number"),
                                 "sequence_number", pa.array(seq))
    path = tmp_path / "deltas.parquet"
    pq.write_table(table, path, row_group_size=97)  # row groups that cut messages
    return path


def first_row_of_a_message(path: Path, after: int) -> int:
    """The index of the first row of an ordinary message at or after row `after`."""
    table = pq.read_table(path)
    seq = table.column("sequence_number").to_numpy()
    resync = pc.is_null(table.column("origin_time")).to_numpy(zero_copy_only=False)
    return next(i for i in range(after, len(seq))
                if seq[i] != seq[i - 1] and not resync[i] and not resync[i - 1])


@pytest.mark.parametrize("rows_per_batch", [1_250_000, 1, 300])
def test_a_complete_stream_with_a_resync_passes_and_locates_it(tmp_path, rows_per_batch) -> None:
    """Batches of whole row groups (one file, one row group at a time, a few) find the same
    messages: a message cut by a batch's end is carried into the next."""
    outcome = delta_stream_complete(stream(tmp_path), rows_per_batch=rows_per_batch)
    assert outcome.passed and not outcome.blocking, outcome.description
    meta = outcome.metadata
    assert meta["messages"] == 1_500 and meta["resyncs"] == 1
    assert meta["suspected_gaps"] == 0 and meta["backwards_steps"] == 0
    gap = meta["resync_gaps"][0]
    assert gap["step"] == gap["to_id"] - gap["from_id"] >= 3  # three messages were lost
    assert gap["time"].startswith("2024-01-02T")
    assert meta["what_can_be_inferred"] == CANNOT_INFER


def test_a_jump_in_update_ids_is_a_located_suspected_gap(tmp_path) -> None:
    probe = stream(tmp_path)
    at = first_row_of_a_message(probe, 300)
    outcome = delta_stream_complete(stream(tmp_path, shift_after=at, by=1_000_000))
    assert not outcome.passed
    meta = outcome.metadata
    assert meta["suspected_gaps"] == 1 and meta["resyncs"] == 1
    jump = meta["first_suspected_gaps"][0]
    assert jump["step"] > 1_000_000 and jump["step"] < 1_000_010
    assert outcome.violations == (
        f"suspected gap at {jump['time']} ({jump['from_id']}->{jump['to_id']})",)


def test_update_ids_going_backwards_warn(tmp_path) -> None:
    probe = stream(tmp_path)
    at = first_row_of_a_message(probe, 900)
    outcome = delta_stream_complete(stream(tmp_path, shift_after=at, by=-500))
    assert not outcome.passed
    assert outcome.metadata["backwards_steps"] == 1
    assert outcome.metadata["first_backwards_steps"][0]["step"] < 0


def test_slices_come_from_the_footer_or_from_the_column_alike(tmp_path) -> None:
    from rlx_assets.lib.time_slices import time_slices

    table = pq.read_table(stream(tmp_path))
    plain = tmp_path / "no_statistics.parquet"
    pq.write_table(table, plain, write_statistics=False, row_group_size=500)
    assert pq.ParquetFile(plain).metadata.row_group(0).column(1).statistics is None
    with_stats = tmp_path / "statistics.parquet"
    pq.write_table(table, with_stats, row_group_size=500)
    assert list(time_slices([plain], 7)) == list(time_slices([with_stats], 7))
    assert len(list(time_slices([plain], 7))) > 5


def _whole_day(path: Path, jump_factor: float = 100.0, min_jump: int = 10_000) -> dict:
    """The rule over the whole day in memory at once (what the streaming check must equal)."""
    import polars as pl

    rows = pl.read_parquet(path).select(
        t=pl.col("received_time").cast(pl.Int64), seq=pl.col("sequence_number"),
        resync=pl.col("origin_time").is_null())
    new = (pl.col("t") != pl.col("t").shift()) | (pl.col("seq") != pl.col("seq").shift())
    m = rows.filter(new.fill_null(True)).with_columns(
        step=pl.col("seq") - pl.col("seq").shift(),
        after_resync=pl.col("resync") | pl.col("resync").shift().fill_null(False))
    steps = pl.col("step").is_not_null()
    ordinary = steps & ~pl.col("after_resync")
    usual = m.select(pl.col("step").filter(ordinary).quantile(0.999)).item()
    limit = max(min_jump, jump_factor * usual) if usual is not None else None
    resyncs = m.filter(steps & pl.col("resync"))
    return {"messages": m.height, "resyncs": resyncs.height,
            "ids_skipped_at_resyncs": int(resyncs["step"].clip(lower_bound=0).sum()),
            "usual_step_p999": usual, "suspected_gap_threshold": limit,
            "suspected_gaps": m.filter(ordinary & (pl.col("step") > limit)).height,
            "first_suspected_to_ids": m.filter(ordinary & (pl.col("step") > limit))[
                "seq"].head(5).to_list(),
            "backwards_steps": m.filter(ordinary & (pl.col("step") < 0)).height}


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("rows_per_batch", [1, 1_000, 1_250_000])
def test_streaming_equals_the_whole_day(tmp_path, seed, rows_per_batch) -> None:
    """Random streams with heavy-tailed steps, a dozen jumps above the threshold (more
    than the first five), steps backwards and resyncs: read a batch at a time, keeping
    only the largest 0.1 % of steps, the check finds what the whole day in memory finds."""
    import numpy as np

    rng = np.random.default_rng(seed)
    n = 20_000
    step = rng.integers(1, 40, n)
    step[rng.choice(n, 8, replace=False)] = rng.integers(-500, -1, 8)
    step[rng.choice(n, 12, replace=False)] = rng.integers(50_000, 10**7, 12)
    seq = 10**9 + np.cumsum(step)
    rows_per_message = rng.integers(1, 4, n)
    resync = np.zeros(n, bool)  # a resync: one message (the REST snapshot) of null times
    resync[rng.choice(n, 3, replace=False)] = True
    t = 1_704_153_600 * 10**9 + np.cumsum(rng.integers(1, 10**7, n))
    repeat = np.repeat
    path = tmp_path / "deltas.parquet"
    pq.write_table(pa.table({
        "origin_time": pa.array(repeat(t - 1000, rows_per_message),
                                mask=repeat(resync, rows_per_message)),
        "received_time": pa.array(repeat(t, rows_per_message)),
        "sequence_number": pa.array(repeat(seq, rows_per_message)),
        "side_is_bid": pa.array(np.ones(rows_per_message.sum(), bool)),
        "price": pa.array(np.ones(rows_per_message.sum())),
        "size": pa.array(np.ones(rows_per_message.sum()))}), path, row_group_size=997)
    got = delta_stream_complete(path, rows_per_batch=rows_per_batch).metadata
    ref = _whole_day(path)
    assert ref["suspected_gaps"] > 5 and ref["backwards_steps"] > 0 and ref["resyncs"] == 3
    assert {**{k: got[k] for k in ref if k in got},
            "first_suspected_to_ids": [g["to_id"] for g in got["first_suspected_gaps"]]} == ref


def test_a_suspected_gap_must_be_above_the_usual_step(tmp_path) -> None:
    with pytest.raises(ValueError, match="jump_factor must be at least 1"):
        delta_stream_complete(stream(tmp_path), jump_factor=0.5)
