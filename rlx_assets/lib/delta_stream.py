"""Is the day's `book_delta_v2` stream complete? (issue 16, part 3)

One exchange message is several rows sharing `received_time` and `sequence_number` (for
Binance, the message's final update id `u`). Binance's rule for a complete stream is that
each message's first update id `U` is the previous message's `u` + 1. **The file does not
carry `U`**, so what can be inferred is limited, and the evidence says so:

- certain: a resync (rows with a null `origin_time`: the writer saw `U` != previous `u` + 1,
  and wrote the REST snapshot) is a gap; it is counted and located, with the update ids it
  skipped (an upper bound of what was lost);
- certain: an id that goes backwards between messages outside a resync is a broken stream;
- not certain: a lost message between two stored ones looks like one message with more
  updates. Steps far above the day's usual step (more than `jump_factor` times its 99.9th
  percentile, and at least `min_jump` ids) are listed as suspected gaps, never proven.

It warns on any backwards step or suspected gap; resyncs alone do not warn (the writer
recovered, and `book` consumers re-initialise there). Read a batch of row groups at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from rlx_assets.lib.checks import CheckOutcome
from rlx_assets.lib.read_ahead import read_ahead
from rlx_assets.lib.time_slices import groups_with_nulls
from rlx_assets.lib.timestamps import format_ns

DELTA_STREAM = "delta_stream_complete"
BATCH_ROWS = 1_250_000  # about an hour of a busy BTC-USDT day
FIRST_SHOWN = 5
CANNOT_INFER = ("The file carries each message's final update id only (not its first), so a "
                "lost message between two stored ones cannot be told from a larger message: "
                "resyncs are certain gaps, large steps are suspected ones.")


def _batches(deltas: Path, rows_per_batch: int) -> Iterator[pl.DataFrame]:
    """The file in order, whole row groups of about `rows_per_batch` rows at a time: t,
    seq, resync; the next batch read while the caller works on this one. (The stream is
    judged in file order, so no time filter is needed.)"""
    meta = pq.ParquetFile(deltas).metadata
    may_resync = set(groups_with_nulls(meta, "origin_time"))  # decode origin_time only there
    bounds, offset, size, nulls = [], 0, 0, False
    for g in range(meta.num_row_groups):
        size += meta.row_group(g).num_rows
        nulls = nulls or g in may_resync
        if size >= rows_per_batch or g == meta.num_row_groups - 1:
            bounds.append((offset, size, nulls))
            offset, size, nulls = offset + size, 0, False

    def read(bound: tuple[int, int, bool]) -> pl.DataFrame:
        offset, size, nulls = bound
        resync = pl.col("origin_time").is_null() if nulls else pl.lit(False)
        return (pl.scan_parquet(deltas).slice(offset, size)
                .select(pl.col("received_time").cast(pl.Int64).alias("t"),
                        pl.col("sequence_number").alias("seq"), resync.alias("resync"))
                .collect())

    return read_ahead(read, bounds)


def _messages(deltas: Path, rows_per_batch: int) -> pl.DataFrame:
    """One row per message (t, seq, resync, step from the previous message, after_resync),
    in file order, read a batch of row groups at a time; only these small columns are kept
    for the day."""
    parts, carry = [], None
    for rows in _batches(deltas, rows_per_batch):
        if carry is not None:  # the previous slice's last message: steps across the cut
            rows = pl.concat([carry, rows])
        new = (pl.col("t") != pl.col("t").shift()) | (pl.col("seq") != pl.col("seq").shift())
        messages = rows.filter(new.fill_null(True)).with_columns(
            step=pl.col("seq") - pl.col("seq").shift(),
            after_resync=pl.col("resync") | pl.col("resync").shift().fill_null(False))
        if messages.height:
            parts.append(messages if carry is None else messages.slice(1))
            carry = messages.select("t", "seq", "resync").tail(1)
    if not parts:
        return pl.DataFrame(schema={"t": pl.Int64, "seq": pl.Int64, "resync": pl.Boolean,
                                    "step": pl.Int64, "after_resync": pl.Boolean})
    return pl.concat(parts)


def _located(frame: pl.DataFrame) -> list[dict[str, object]]:
    return [{"time": format_ns(r["t"]), "from_id": r["seq"] - r["step"], "to_id": r["seq"],
             "step": r["step"]} for r in frame.head(FIRST_SHOWN).iter_rows(named=True)]


def delta_stream_complete(deltas: Path, jump_factor: float = 100.0, min_jump: int = 10_000,
                          rows_per_batch: int = BATCH_ROWS) -> CheckOutcome:
    messages = _messages(Path(deltas), rows_per_batch)
    steps = pl.col("step").is_not_null()
    ordinary = steps & ~pl.col("after_resync")
    resyncs = messages.filter(steps & pl.col("resync"))
    usual = messages.select(pl.col("step").filter(ordinary).quantile(0.999)).item()
    limit = max(min_jump, jump_factor * usual) if usual is not None else None
    backwards = messages.filter(ordinary & (pl.col("step") < 0))
    suspected = messages.filter(ordinary & (pl.col("step") > limit)) if limit is not None \
        else messages.clear()
    passed = backwards.height == 0 and suspected.height == 0
    description = (f"{messages.height:,} messages, {resyncs.height} resync(s) (certain gaps), "
                   f"{suspected.height} suspected gap(s), {backwards.height} backwards step(s)")
    return CheckOutcome(
        name=DELTA_STREAM, passed=passed, blocking=False, description=description,
        metadata={
            "messages": messages.height,
            "resyncs": resyncs.height,
            "resync_gaps": _located(resyncs),
            "ids_skipped_at_resyncs": int(resyncs["step"].clip(lower_bound=0).sum()),
            "usual_step_p999": usual,
            "suspected_gap_threshold": limit,
            "suspected_gaps": suspected.height,
            "first_suspected_gaps": _located(suspected),
            "backwards_steps": backwards.height,
            "first_backwards_steps": _located(backwards),
            "what_can_be_inferred": CANNOT_INFER,
        },
        violations=tuple(f"{kind} at {r['time']} ({r['from_id']}->{r['to_id']})"
                         for kind, frame in (("suspected gap", suspected),
                                             ("backwards", backwards))
                         for r in _located(frame)),
    )
