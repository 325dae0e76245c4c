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
