"""Cross-table WARN checks of one day (issue 16): the book's snapshots against its delta
stream, and trades against the quoted market. Plain polars, no Dagster.

Time axis: `received_time` for every as-of join. It is always present (`origin_time` is null
on resync rows), monotone per file in practice, and both tables are stamped by the same
writer host's clock. The vendor's writer derives each snapshot from the book it maintains
from the very delta messages it writes, so a snapshot received at t reflects every delta
received up to and including t: ties count as "before" (backward, inclusive joins), and
ties among deltas keep file order.

Memory is bounded by design: each file is scanned lazily and read one time slice of
`slice_seconds` at a time; only a small state crosses slices (the last delta per (side,
price) since the last resync; the last snapshot's best bid/ask). Within a slice the
snapshots are exploded to one row per level.
"""

from __future__ import annotations

from rlx_assets.lib.book_agreement import SNAPSHOTS_AGREE, snapshots_agree_with_deltas
from rlx_assets.lib.trades_in_market import TRADES_IN_MARKET, trades_inside_market

__all__ = ["SNAPSHOTS_AGREE", "TRADES_IN_MARKET", "snapshots_agree_with_deltas",
           "trades_inside_market"]
