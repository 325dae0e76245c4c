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
recovered, and `book` consumers re-initialise there).

Memory is bounded by design: the file is read a batch of row groups at a time, and what
crosses batches is counts, the first few of each finding, and the largest ordinary steps
(`_Tail`: about 0.1 % of the file's rows, enough for the exact percentile and every
suspected gap, since a suspected step lies above the percentile).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
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
USUAL = 0.999  # the usual step is this quantile of the day's ordinary steps
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


def _messages(deltas: Path, rows_per_batch: int) -> Iterator[pl.DataFrame]:
    """Batch by batch, one row per message (t, seq, resync, step from the previous message,
    after_resync), in file order; a message cut by a batch's end is carried into the next
    batch, and the first message of the file has no step."""
    carry = None
    for rows in _batches(deltas, rows_per_batch):
        if carry is not None:  # the previous batch's last message: steps across the cut
            rows = pl.concat([carry, rows])
        new = (pl.col("t") != pl.col("t").shift()) | (pl.col("seq") != pl.col("seq").shift())
        messages = rows.filter(new.fill_null(True)).with_columns(
            step=pl.col("seq") - pl.col("seq").shift(),
            after_resync=pl.col("resync") | pl.col("resync").shift().fill_null(False))
        if messages.height:
            yield messages if carry is None else messages.slice(1)
            carry = messages.select("t", "seq", "resync").tail(1)


@dataclass
class _Finding:
    """How many messages a rule found, and the first few (file order)."""

    count: int = 0
    first: list[dict[str, object]] = field(default_factory=list)

    def add(self, found: pl.DataFrame) -> None:
        self.count += found.height
        if len(self.first) < FIRST_SHOWN:
            self.first += _located(found.head(FIRST_SHOWN - len(self.first)))


@dataclass
class _Tail:
    """The `keep` largest ordinary steps seen so far (t, seq, step, and the message's
    ordinal, for file order), and how many ordinary steps there were."""

    keep: int
    steps: int = 0
    rows: pl.DataFrame | None = None

    def add(self, ordinary: pl.DataFrame) -> None:
        self.steps += ordinary.height
        both = ordinary if self.rows is None else pl.concat([self.rows, ordinary])
        self.rows = both.top_k(self.keep, by="step")

    def percentile(self, q: float) -> float | None:
        """The q-quantile of all ordinary steps, polars' "nearest" rule (index
        round((n - 1) q) of the sorted steps), read from the kept largest ones."""
        if not self.steps:
            return None
        from_top = self.steps - 1 - math.floor((self.steps - 1) * q + 0.5)
        if from_top >= self.keep:
            raise ValueError(f"keep {self.keep} steps to read the {q} quantile of "
                             f"{self.steps:,}")
        return float(self.rows["step"].sort(descending=True)[from_top])

    def above(self, limit: float) -> pl.DataFrame:
        """The kept steps above `limit` (all of them, if `limit` is at least the
        percentile), in file order."""
        return self.rows.filter(pl.col("step") > limit).sort("ordinal")


def _keep_for(deltas: Path, q: float) -> int:
    """Enough of the largest steps to read the q-quantile exactly: the file's rows bound
    the number of messages."""
    return math.ceil((1 - q) * pq.ParquetFile(deltas).metadata.num_rows) + 2


def _located(frame: pl.DataFrame) -> list[dict[str, object]]:
    return [{"time": format_ns(r["t"]), "from_id": r["seq"] - r["step"], "to_id": r["seq"],
             "step": r["step"]} for r in frame.head(FIRST_SHOWN).iter_rows(named=True)]


def delta_stream_complete(deltas: Path, jump_factor: float = 100.0, min_jump: int = 10_000,
                          rows_per_batch: int = BATCH_ROWS) -> CheckOutcome:
    if jump_factor < 1:
        raise ValueError(f"jump_factor must be at least 1 (a suspected gap is a step far "
                         f"above the usual one), got {jump_factor}")
    deltas = Path(deltas)
    messages, skipped, seen = 0, 0, 0
    resyncs, backwards = _Finding(), _Finding()
    tail = _Tail(_keep_for(deltas, USUAL))
    steps = pl.col("step").is_not_null()
    ordinary = steps & ~pl.col("after_resync")
    for batch in _messages(deltas, rows_per_batch):
        messages += batch.height
        batch = batch.with_columns(ordinal=pl.int_range(seen, seen + batch.height))
        seen += batch.height
        found = batch.filter(steps & pl.col("resync"))
        resyncs.add(found)
        skipped += int(found["step"].clip(lower_bound=0).sum())
        backwards.add(batch.filter(ordinary & (pl.col("step") < 0)))
        tail.add(batch.filter(ordinary).select("t", "seq", "step", "ordinal"))
    usual = tail.percentile(USUAL)
    limit = max(min_jump, jump_factor * usual) if usual is not None else None
    suspected = _Finding()
    if limit is not None:
        suspected.add(tail.above(limit))
    passed = backwards.count == 0 and suspected.count == 0
    description = (f"{messages:,} messages, {resyncs.count} resync(s) (certain gaps), "
                   f"{suspected.count} suspected gap(s), {backwards.count} backwards step(s)")
    return CheckOutcome(
        name=DELTA_STREAM, passed=passed, blocking=False, description=description,
        metadata={
            "messages": messages,
            "resyncs": resyncs.count,
            "resync_gaps": resyncs.first,
            "ids_skipped_at_resyncs": skipped,
            "usual_step_p999": usual,
            "suspected_gap_threshold": limit,
            "suspected_gaps": suspected.count,
            "first_suspected_gaps": suspected.first,
            "backwards_steps": backwards.count,
            "first_backwards_steps": backwards.first,
            "what_can_be_inferred": CANNOT_INFER,
        },
        violations=tuple(f"{kind} at {r['time']} ({r['from_id']}->{r['to_id']})"
                         for kind, finding in (("suspected gap", suspected),
                                               ("backwards", backwards))
                         for r in finding.first),
    )
