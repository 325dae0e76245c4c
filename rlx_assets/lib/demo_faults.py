"""Ways a vendor day can be bad (`Fault`), each meant to fail one named check, and how a
clean chunk is corrupted to show one."""

from __future__ import annotations

import datetime as dt
import enum

import numpy as np
import pyarrow as pa

from rlx_assets.lib.demo_rows import day_start_ns


class Fault(enum.StrEnum):
    """Ways a vendor day can be bad, each meant to fail one named check."""

    NEGATIVE_PRICE = "negative_price"  # positive_prices
    ZERO_QUANTITY = "zero_quantity"  # positive_prices
    NULL_PRICE = "null_price"  # positive_prices and schema
    MISSING_COLUMN = "missing_column"  # schema
    WRONG_DTYPE = "wrong_dtype"  # schema
    UNKNOWN_SIDE = "unknown_side"  # schema (trades only)
    UNSORTED = "unsorted"  # temporal_continuity
    OUTSIDE_DAY = "outside_day"  # temporal_continuity (an hour before the day)
    HOLE = "hole"  # temporal_continuity (three hours without data)
    EMPTY = "empty"  # temporal_continuity (no rows)
    MISSING_TIME = "missing_time"  # no blocking check: five rows without an exchange time
    TRUNCATED = "truncated"  # unreadable file: retried, then a clear failure


# Faults of the whole file (every chunk); the others touch row 10 of the day proper.
WHOLE_FILE_FAULTS = (Fault.HOLE, Fault.EMPTY, Fault.MISSING_COLUMN, Fault.WRONG_DTYPE)


def _set(table: pa.Table, name: str, index: int, value: object) -> pa.Table:
    values = table.column(name).to_pylist()
    values[index] = value
    return table.set_column(table.schema.get_field_index(name), name,
                            pa.array(values, table.schema.field(name).type))


def _price_column(table: str) -> str:
    return "bid_0_price" if table == "book" else "price"


def apply_fault(chunk: pa.Table, table: str, fault: Fault, day: dt.date) -> pa.Table:
    """Corrupt a chunk of a day the way `fault` says (the first of the day proper, or every
    chunk for WHOLE_FILE_FAULTS)."""
    row = min(10, chunk.num_rows - 1)
    price = _price_column(table)
    if fault is Fault.NEGATIVE_PRICE:
        return _set(chunk, price, row, -1.0)
    if fault is Fault.ZERO_QUANTITY:
        return _set(chunk, {"trades": "amount", "book": "bid_0_size"}.get(table, "size"), row,
                    0.0 if table != "book_delta_v2" else -1.0)
    if fault is Fault.NULL_PRICE:
        return _set(chunk, price, row, None)
    if fault is Fault.MISSING_COLUMN:
        return chunk.drop_columns([price])
    if fault is Fault.WRONG_DTYPE:
        index = chunk.schema.get_field_index(price)
        return chunk.set_column(index, price, chunk.column(price).cast(pa.string()))
    if fault is Fault.UNKNOWN_SIDE:
        if table != "trades":
            raise ValueError("unknown_side applies to trades only")
        return _set(chunk, "side", row, "hold")
    if fault is Fault.UNSORTED:
        ts = chunk.column("timestamp").to_numpy().copy()
        ts[row], ts[-row] = ts[-row], ts[row]
        index = chunk.schema.get_field_index("timestamp")
        return chunk.set_column(index, "timestamp", pa.array(ts))
    if fault is Fault.OUTSIDE_DAY:
        return _set(chunk, "timestamp", row, day_start_ns(day) - 3_600 * 10**9)
    if fault is Fault.HOLE:  # by exchange time, else receipt time (a resync's rows)
        ts = chunk.column("timestamp").to_numpy()
        ts = np.where(ts > 0, ts, chunk.column("receipt_timestamp").to_numpy())
        start = day_start_ns(day)
        keep = (ts < start + 6 * 3_600 * 10**9) | (ts >= start + 9 * 3_600 * 10**9)
        return chunk.filter(pa.array(keep))
    if fault is Fault.EMPTY:
        return chunk.slice(0, 0)
    if fault is Fault.MISSING_TIME:
        ts = chunk.column("timestamp").to_numpy().copy()
        ts[row:row + 5] = -1 if table == "trades" else 0
        index = chunk.schema.get_field_index("timestamp")
        return chunk.set_column(index, "timestamp", pa.array(ts))
    return chunk
