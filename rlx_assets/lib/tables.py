"""The three Crypto Lake tables: vendor columns, normalised names and per-table defaults.

Column types are named by pyarrow's aliases and built only when asked for, so that what
needs only the names (the status and inventory commands) does not import pyarrow."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

BOOK_LEVELS = 20
# Rows this close across a day boundary belong to the day's file (see TableSpec).
DEFAULT_BOUNDARY_SECONDS = 5.0

# lakeapi.load_data's renames, so that our data reads like what users already know.
RENAMES = {
    "timestamp": "origin_time",
    "receipt_timestamp": "received_time",
    "amount": "quantity",
    "id": "trade_id",
}
TIME_COLUMNS = ("origin_time", "received_time")


@dataclass(frozen=True)
class TimeRules:
    """The time thresholds of one (instrument, table): see RLX_MAX_GAP_SECONDS and
    RLX_DAY_BOUNDARY_SECONDS."""

    max_gap_seconds: float
    boundary_seconds: float = DEFAULT_BOUNDARY_SECONDS


@dataclass(frozen=True)
class TableSpec:
    name: str
    raw_columns: dict[str, str]  # name -> pyarrow type alias, as the vendor writes it
    # Columns that must never be null after normalisation. origin_time is not among them:
    # the vendor writes 0 (-1 in trades) where the exchange gave no time, which we store as
    # null, and judge those rows by received_time.
    required: tuple[str, ...]
    # Longest hole in origin_time (seconds) inside a day before temporal_continuity fails.
    default_max_gap_seconds: int
    description: str
    # Rows this close across a day boundary belong to the day's file (the vendor's writer
    # files a row by its own clock when it arrives): kept and counted, not a failure.
    default_boundary_seconds: float = DEFAULT_BOUNDARY_SECONDS

    @cached_property
    def columns(self) -> dict[str, pa.DataType]:
        """Normalised column names and Arrow types, as written to `ready/`."""
        import pyarrow as pa

        out = {}
        for raw_name, alias in self.raw_columns.items():
            name = RENAMES.get(raw_name, raw_name)
            out[name] = (pa.timestamp("ns", tz="UTC") if name in TIME_COLUMNS
                         else pa.type_for_alias(alias))
        return out

    @property
    def has_sequence(self) -> bool:
        return "sequence_number" in self.raw_columns

    def arrow_schema(self) -> pa.Schema:
        import pyarrow as pa

        return pa.schema(list(self.columns.items()))


def _book_levels() -> dict[str, str]:
    cols: dict[str, str] = {}
    for side in ("bid", "ask"):
        for i in range(BOOK_LEVELS):
            cols[f"{side}_{i}_price"] = "double"
            cols[f"{side}_{i}_size"] = "double"
    return cols


_TIMES = {"timestamp": "int64", "receipt_timestamp": "int64"}

TRADES = TableSpec(
    name="trades",
    raw_columns={
        "side": "string",
        "amount": "double",
        "price": "double",
        "id": "int64",
        **_TIMES,
    },
    required=("side", "quantity", "price", "trade_id", "received_time"),
    default_max_gap_seconds=15 * 60,
    description="Every trade: side, price, quantity, trade id, exchange and receipt times.",
)
BOOK = TableSpec(
    name="book",
    raw_columns={**_TIMES, "sequence_number": "int64", **_book_levels()},
    # Levels may be null in a thin book, but the top of each side must be there.
    required=("received_time", "sequence_number",
              "bid_0_price", "bid_0_size", "ask_0_price", "ask_0_size"),
    default_max_gap_seconds=5 * 60,
    description="20-level L2 order book snapshots (bid/ask price and size per level).",
)
BOOK_DELTA_V2 = TableSpec(
    name="book_delta_v2",
    raw_columns={
        **_TIMES,
        "sequence_number": "int64",
        "side_is_bid": "bool",
        "price": "double",
        "size": "double",
    },
    required=("received_time", "sequence_number", "side_is_bid", "price", "size"),
    default_max_gap_seconds=5 * 60,
    description="L2 order book updates; size 0 removes the level.",
)

TABLES: dict[str, TableSpec] = {t.name: t for t in (TRADES, BOOK, BOOK_DELTA_V2)}
