"""Normalising by footer rewrite: the Thrift codec, the rewritten footer, hashing and slicing.

The fast path of `normalise_day` keeps the vendor's data pages and writes a new footer
(`parquet_footer.plan_rewrite`, encoded by `thrift_compact`). These tests pin down that the
codec is byte-exact on real footers (pyarrow's and polars'), that the rewritten file reads
back exactly as the polars normalisation does (polars, pyarrow, duckdb), that files which do
not qualify take the slow path with the same measurements, that the output hash built from
the download's hash states is the file's, that a day is measured in bounded slices, and that
corrupt input is reported as such.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import struct
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rlx_assets.lib import hashing
from rlx_assets.lib import normalise as normalise_module
from rlx_assets.lib.checks import SCHEMA, evaluate
from rlx_assets.lib.demo_data import write_day
from rlx_assets.lib.demo_faults import Fault
from rlx_assets.lib.demo_habits import IDEAL
from rlx_assets.lib.footer_fields import (
    CC_FILE_PATH,
    CC_META,
    FMD_KEY_VALUES,
    FMD_ROW_GROUPS,
    FMD_SCHEMA,
    RG_COLUMNS,
    RG_NUM_ROWS,
)
from rlx_assets.lib.footer_read import Footer, NotParquet, read_footer
from rlx_assets.lib.hashing import StreamHash, sha256_file
from rlx_assets.lib.instruments import Instrument
from rlx_assets.lib.normalise import (
    UnreadableVendorFile,
    normalise_day,
    normalise_frame,
    row_slices,
)
from rlx_assets.lib.parquet_footer import footer_tail, plan_rewrite
from rlx_assets.lib.scan import DayScan
from rlx_assets.lib.tables import RENAMES, TABLES, TIME_COLUMNS, TRADES
from rlx_assets.lib.thrift_compact import (
    BINARY,
    BOOL,
    BYTE,
    DOUBLE,
    FALSE,
    I16,
    I32,
    I64,
    LIST,
    MAP,
    SET,
    STRUCT,
    TRUE,
    List,
    Map,
    ThriftError,
)
from rlx_assets.lib.thrift_decode import decode_struct
from rlx_assets.lib.thrift_encode import encode_struct

DAY = dt.date(2024, 1, 3)
BTC = Instrument("BINANCE", "BTC-USDT")
ROWS = 2_000
TIME_TYPE = pa.timestamp("ns", tz="UTC")
STALE_KEYS = {b"ARROW:schema", b"pandas"}


# --- helpers -------------------------------------------------------------------------------


def thrift_footer(path: Path) -> bytes:
    """The footer's thrift bytes: from read_footer's start to the length and magic."""
    data = path.read_bytes()
    return data[read_footer(path).start:len(data) - 8]


def rewrite(raw: Path, out: Path) -> Path:
    """What the fast path writes: the raw data region followed by the planned footer."""
    footer = read_footer(raw)
    new_footer = plan_rewrite(footer, RENAMES, TIME_COLUMNS)
    assert new_footer is not None, f"{raw.name} should qualify for a footer rewrite"
    out.write_bytes(raw.read_bytes()[:footer.start] + footer_tail(new_footer))
    return out


def polars_normalised(raw: Path) -> pl.DataFrame:
    frame = pl.scan_parquet(raw)
    return normalise_frame(frame, frame.collect_schema()).collect()


def assert_same_frame(path: Path, expected: pl.DataFrame) -> None:
    got = pl.read_parquet(path)
    assert got.schema == expected.schema
    assert got.equals(expected)


def write_variant(raw: Path, out: Path, edit) -> Path:
    """`raw` read by pyarrow, changed by `edit(table)`, written to `out`."""
    pq.write_table(edit(pq.read_table(raw)), out)
    return out


def replace(table: pa.Table, name: str, column: pa.Array | pa.ChunkedArray) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, column)


def cast(name: str, dtype: pa.DataType):
    return lambda t: replace(t, name, t.column(name).cast(dtype))


@pytest.fixture(scope="module")
def vendor_days(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One small clean vendor day per table, shaped as the vendor writes them but without
    sentinel times (those take the patching path, tested in test_vendor_habits.py)."""
    root = tmp_path_factory.mktemp("vendor")
    return {table: write_day(root, table, BTC, DAY, ROWS, habits=IDEAL) for table in TABLES}


def mixed_table(rows: int) -> pa.Table:
    """Columns of many parquet kinds, for footers with a varied schema."""
    rng = np.random.default_rng(7)
    ints = np.arange(rows, dtype=np.int64)
    return pa.table({
        "id": ints,
        "price": np.round(rng.normal(100, 5, rows), 2),
        "flag": pa.array(rng.random(rows) < 0.5),
        "side": pa.array(np.where(rng.random(rows) < 0.5, "buy", "sell")),
        "maybe": pa.array([None if i % 5 == 0 else int(i) for i in range(rows)], pa.int32()),
        "when": pa.array(ints * 10**9, TIME_TYPE),
        "day": pa.array(ints % 400, pa.int32()).cast(pa.date32()),
        "amount": pa.array([f"{i}.25" for i in range(rows)]).cast(pa.decimal128(12, 2)),
        "tags": pa.array([[int(i), int(i) + 1] for i in range(rows)], pa.list_(pa.int64())),
        "pair": pa.array([{"a": int(i), "b": str(i)} for i in range(rows)]),
    })


# --- 1. the codec round-trips real footers and hand-made structs byte for byte -----------


PYARROW_OPTIONS = {
    "statistics, dictionary, page index": dict(
        write_statistics=True, use_dictionary=True, write_page_index=True),
    "page v2, checksums, sorting, bloom filter": dict(
        data_page_version="2.0", write_page_checksum=True, write_page_index=True,
        sorting_columns=[pq.SortingColumn(0)], bloom_filter_options={"side": {"ndv": 2}}),
    "no dictionary, no statistics": dict(use_dictionary=False, write_statistics=False),
}


@pytest.mark.parametrize("options", PYARROW_OPTIONS.values(), ids=PYARROW_OPTIONS.keys())
def test_pyarrow_footer_round_trips_byte_identical(tmp_path: Path, options: dict) -> None:
    table = mixed_table(3_000).replace_schema_metadata({"vendor": "cryptolake", "v": "2"})
    path = tmp_path / "mixed.parquet"
    pq.write_table(table, path, row_group_size=700, **options)
    footer_bytes = thrift_footer(path)
    decoded, end = decode_struct(footer_bytes)
    assert end == len(footer_bytes)
    assert encode_struct(decoded) == footer_bytes
    # The footer really has what the options promise, so the round trip covers it.
    assert read_footer(path).row_group_rows == [700, 700, 700, 700, 200]
    first_chunk = decoded[FMD_ROW_GROUPS][1].values[0][RG_COLUMNS][1].values[0]
    if options.get("write_page_index"):
        assert {4, 5, 6, 7} <= set(first_chunk)  # offset and column index locations
    if options.get("write_statistics"):
        assert 12 in first_chunk[CC_META][1]  # ColumnMetaData.statistics


@pytest.mark.parametrize("statistics", [True, "full", False])
def test_polars_footer_round_trips_byte_identical(tmp_path: Path, statistics) -> None:
    frame = pl.from_arrow(mixed_table(2_500))
    path = tmp_path / "polars.parquet"
    frame.write_parquet(path, statistics=statistics, row_group_size=1_000,
                        metadata={"vendor": "cryptolake"})
    footer_bytes = thrift_footer(path)
    decoded, end = decode_struct(footer_bytes)
    assert end == len(footer_bytes)
    assert encode_struct(decoded) == footer_bytes
    assert sum(read_footer(path).row_group_rows) == 2_500


def test_vendor_day_footers_round_trip(vendor_days: dict[str, Path]) -> None:
    for path in vendor_days.values():
        footer_bytes = thrift_footer(path)
        assert encode_struct(decode_struct(footer_bytes)[0]) == footer_bytes


HANDMADE: dict[int, tuple[int, object]] = {
    1: (I32, -1),
    2: (I32, -(2**31)),
    3: (I64, -(2**63)),
    4: (I64, 2**63 - 1),
    5: (BOOL, True),
    6: (BOOL, False),
    20: (DOUBLE, -0.0),  # a jump of 14 (short form) ...
    37: (DOUBLE, 1.5e300),  # ... of 17 (long form)
    300: (DOUBLE, float("inf")),
    301: (BYTE, -128),
    302: (BYTE, 127),
    303: (I16, -32768),
    1_000: (BOOL, True),  # a bool field in long form
    1_001: (BINARY, b""),
    1_002: (BINARY, bytes(range(256)) * 3),
    2_000: (LIST, List(LIST, [List(I32, [1, -2, 3]), List(I32, []),
                              List(LIST, [List(I64, [-(2**40)])])])),
    2_001: (LIST, List(TRUE, [True, False, True, False])),
    2_002: (LIST, List(FALSE, [False])),  # a writer may record bool elements as FALSE
    2_003: (LIST, List(I64, list(range(-7, 8)))),  # exactly 15 elements: size in a varint
    2_004: (LIST, List(BINARY, [str(i).encode() for i in range(300)])),
    2_005: (SET, List(I32, [5, 6, 7], kind=SET)),
    2_006: (LIST, List(TRUE, [i % 3 == 0 for i in range(16)])),
    2_007: (LIST, List(STRUCT, [{}, {1: (BOOL, False), 16: (I32, 5)}, {32_767: (I16, 1)}])),
    3_000: (MAP, Map(BINARY, STRUCT, [(b"k", {1: (I64, -5)}), (b"", {})])),
    3_001: (MAP, Map(I32, LIST, [(-1, List(DOUBLE, [0.5, -2.25])), (2**30, List(I32, []))])),
    3_002: (MAP, Map(I16, TRUE, [(1, True), (2, False)])),
    3_003: (MAP, Map(0, 0, [])),
    4_000: (STRUCT, {1: (STRUCT, {2: (STRUCT, {})}), 40: (I32, 0)}),
    32_767: (I32, 2**31 - 1),
}


def test_handmade_struct_round_trips_exactly() -> None:
    encoded = encode_struct(HANDMADE)
    decoded, end = decode_struct(encoded)
    assert end == len(encoded)
    assert decoded == HANDMADE
    assert encode_struct(decoded) == encoded
    # Decoding at an offset returns the offset just past the struct, whatever follows.
    again, end = decode_struct(b"junk" + encoded + b"tail", 4)
    assert again == HANDMADE
    assert end == 4 + len(encoded)


@pytest.mark.parametrize(("value", "wire"), [
    ({1: (I32, -1)}, "15 01 00"),  # delta 1 | i32, zigzag(-1) = 1, stop
    ({1: (I32, 1), 2: (I64, 150)}, "15 02 16 ac 02 00"),  # zigzag(150) = 300 as a varint
    ({20: (I64, 150)}, "06 28 ac 02 00"),  # long form: type, zigzag(20) = 40, value
    ({15: (I32, 1)}, "f5 02 00"),  # a jump of 15 still fits the header
    ({16: (I32, 1)}, "05 20 02 00"),  # a jump of 16 does not
    ({1: (BOOL, True), 2: (BOOL, False)}, "11 12 00"),  # bools live in the field header
    ({1: (LIST, List(TRUE, [True, False, True]))}, "19 31 01 02 01 00"),
    ({1: (LIST, List(BYTE, [0] * 15))}, "19 f3 0f" + " 00" * 15 + " 00"),
    ({1: (BINARY, b"ab")}, "18 02 61 62 00"),
    ({1: (MAP, Map(BINARY, I32, [(b"a", 1)]))}, "1b 01 85 01 61 02 00"),
    ({1: (DOUBLE, 1.0)}, "17 00 00 00 00 00 00 f0 3f 00"),
    ({}, "00"),
], ids=["i32", "varint", "long-field-id", "jump-15", "jump-16", "bools", "bool-list",
        "list-15", "binary", "map", "double", "empty"])
def test_wire_bytes_follow_the_compact_protocol(value: dict, wire: str) -> None:
    """The encoding matches the Thrift compact spec, not only itself."""
    expected = bytes.fromhex(wire)
    assert encode_struct(value) == expected
    assert decode_struct(expected) == (value, len(expected))


# --- 2. malformed input is refused with a reason -------------------------------------------


@pytest.mark.parametrize(("data", "message"), [
    (b"", "truncated or malformed"),
    (bytes.fromhex("15"), "truncated or malformed"),  # an i32 field with no value
    (bytes.fromhex("1d 00"), "unknown compact type 13"),
    (bytes.fromhex("16") + b"\xff" * 11 + b"\x01", "varint too long"),
    (bytes.fromhex("18 05 61 62"), "binary runs past the end"),
    (bytes.fromhex("19 18 05 61"), "binary runs past the end"),  # inside a list
    (bytes.fromhex("19 f5 ff ff 03 02"), "truncated or malformed"),  # a list longer than data
    (bytes.fromhex("17 00 00 f0 3f"), "truncated or malformed"),  # half a double
], ids=["empty", "no-value", "unknown-type", "long-varint", "binary", "binary-in-list",
        "short-list", "short-double"])
def test_malformed_struct_raises_thrift_error(data: bytes, message: str) -> None:
    with pytest.raises(ThriftError, match=message):
        decode_struct(data)


def test_truncated_real_footer_raises_thrift_error(vendor_days: dict[str, Path]) -> None:
    footer_bytes = thrift_footer(vendor_days["trades"])
    for cut in (1, len(footer_bytes) // 2, len(footer_bytes) - 1):
        with pytest.raises(ThriftError, match="truncated or malformed|runs past the end"):
            decode_struct(footer_bytes[:cut])


def test_unknown_type_refused_on_encode() -> None:
    with pytest.raises(ThriftError, match="unknown compact type 13"):
        encode_struct({1: (13, 0)})
    with pytest.raises(ThriftError, match="unknown compact type 14"):
        encode_struct({1: (LIST, List(14, [1]))})


def test_deeply_nested_input_raises_thrift_error(tmp_path: Path) -> None:
    nested = bytes.fromhex("1c") * 50_000  # struct field 1 holding a struct, and so on
    with pytest.raises(ThriftError):
        decode_struct(nested)
    path = tmp_path / "nested-footer.parquet"
    path.write_bytes(b"PAR1" + nested + struct.pack("<I", len(nested)) + b"PAR1")
    with pytest.raises(NotParquet):
        read_footer(path)


def _cut_footer(data: bytes, start: int) -> bytes:
    footer = data[start:-8][: (len(data) - 8 - start) // 2]
    return data[:start] + footer + struct.pack("<I", len(footer)) + b"PAR1"


def _padded_footer(data: bytes, start: int) -> bytes:
    footer = data[start:-8] + b"\x00\x00\x00"
    return data[:start] + footer + struct.pack("<I", len(footer)) + b"PAR1"


MALFORMED_FILES = {
    "shorter than 12 bytes": (lambda data, start: b"PAR1PAR1", "too short for parquet"),
    "empty": (lambda data, start: b"", "is 0 bytes"),
    "not ending in PAR1": (lambda data, start: data[: len(data) // 2], "does not end in PAR1"),
    "encrypted footer magic": (lambda data, start: data[:-4] + b"PARE", "does not end in PAR1"),
    "length before the start": (
        lambda data, start: data[:-8] + struct.pack("<I", len(data)) + b"PAR1",
        "footer length past its start"),
    "length into the magic": (
        lambda data, start: data[:-8] + struct.pack("<I", len(data) - 11) + b"PAR1",
        "footer length past its start"),
    "truncated footer": (_cut_footer, "unreadable footer"),
    "footer longer than its struct": (_padded_footer, "decodes to"),
}


@pytest.mark.parametrize(("make", "message"), MALFORMED_FILES.values(),
                         ids=MALFORMED_FILES.keys())
def test_malformed_file_raises_not_parquet(vendor_days: dict[str, Path], tmp_path: Path,
                                           make, message: str) -> None:
    raw = vendor_days["book_delta_v2"]
    path = tmp_path / "bad.parquet"
    path.write_bytes(make(raw.read_bytes(), read_footer(raw).start))
    with pytest.raises(NotParquet, match=message):
        read_footer(path)


# --- 3. the rewritten file reads back as the polars normalisation --------------------------


def multi_group_trades(vendor_days: dict[str, Path], out: Path) -> Path:
    """The trades day in uneven row groups, with a page index and extra metadata."""
    table = pq.read_table(vendor_days["trades"])
    metadata = {**(table.schema.metadata or {}), b"vendor": b"cryptolake", b"pandas": b"{}"}
    with pq.ParquetWriter(out, table.schema.with_metadata(metadata),
                          write_page_index=True) as writer:
        for offset, rows in ((0, 300), (300, 1_200), (1_500, 500)):
            writer.write_table(table.slice(offset, rows))
    return out


def polars_trades(vendor_days: dict[str, Path], out: Path) -> Path:
    pl.read_parquet(vendor_days["trades"]).write_parquet(out, row_group_size=600)
    return out


def statistics(file: pq.ParquetFile, group: int, column: str) -> pq.Statistics:
    index = file.metadata.schema.names.index(column)
    return file.metadata.row_group(group).column(index).statistics


REWRITE_CASES = {
    "trades": lambda days, out: days["trades"],
    "book": lambda days, out: days["book"],
    "book_delta_v2": lambda days, out: days["book_delta_v2"],
    "trades-row-groups": multi_group_trades,
    "trades-by-polars": polars_trades,
}


@pytest.mark.parametrize("case", REWRITE_CASES)
def test_rewritten_file_reads_like_polars_normalisation(vendor_days: dict[str, Path],
                                                       tmp_path: Path, case: str) -> None:
    raw = REWRITE_CASES[case](vendor_days, tmp_path / "raw.parquet")
    out = rewrite(raw, tmp_path / "ready.parquet")
    expected = polars_normalised(raw)
    assert expected.height == ROWS
    assert_same_frame(out, expected)
    assert set(expected.columns) == set(TABLES[case.split("-")[0]].columns)

    # pyarrow: a UTC nanosecond timestamp, with the raw int64 min/max statistics intact.
    ready, vendor = pq.ParquetFile(out), pq.ParquetFile(raw)
    assert ready.schema_arrow.field("origin_time").type == TIME_TYPE
    assert ready.schema_arrow.field("received_time").type == TIME_TYPE
    assert ready.metadata.num_row_groups == vendor.metadata.num_row_groups > 0
    for group in range(ready.metadata.num_row_groups):
        for old, new in (("timestamp", "origin_time"), ("receipt_timestamp", "received_time")):
            before, after = statistics(vendor, group, old), statistics(ready, group, new)
            assert after.has_min_max
            assert (after.min_raw, after.max_raw) == (before.min, before.max)
            assert after.logical_type.type == "TIMESTAMP"
    assert pl.from_arrow(ready.read()).equals(expected)

    # duckdb agrees on the type and the values.
    times = pq.read_table(raw, columns=["timestamp"]).column("timestamp").to_numpy()
    with duckdb.connect() as con:
        low, high, kind = con.execute(
            "select epoch_ns(min(origin_time)), epoch_ns(max(origin_time)), "
            "typeof(min(origin_time)) from read_parquet(?)", [str(out)]).fetchone()
    assert (low, high) == (int(times.min()), int(times.max()))
    assert kind.startswith("TIMESTAMP")
    assert "TZ" in kind

    # Stale key-value metadata (naming the old columns) is gone; the rest survives.
    raw_keys = set(vendor.metadata.metadata or {})
    ready_keys = set(ready.metadata.metadata or {})
    assert ready_keys == raw_keys - STALE_KEYS
    assert b"ARROW:schema" in raw_keys


def test_only_stale_metadata_keys_are_dropped(vendor_days: dict[str, Path],
                                              tmp_path: Path) -> None:
    raw = multi_group_trades(vendor_days, tmp_path / "raw.parquet")
    assert {b"ARROW:schema", b"pandas", b"vendor"} <= set(pq.ParquetFile(raw).metadata.metadata)
    out = rewrite(raw, tmp_path / "ready.parquet")
    kept = {k: v for k, v in pq.ParquetFile(raw).metadata.metadata.items()
            if k not in STALE_KEYS}
    assert pq.ParquetFile(out).metadata.metadata == kept
    assert kept[b"vendor"] == b"cryptolake" and kept[b"contains_gaps"] == b"No"

    # With nothing else to keep, the key-value list disappears altogether.
    only_stale = tmp_path / "only-stale.parquet"
    pq.write_table(pq.read_table(vendor_days["book_delta_v2"]).replace_schema_metadata(None),
                   only_stale)
    new_footer = plan_rewrite(read_footer(only_stale), RENAMES, TIME_COLUMNS)
    assert new_footer is not None
    assert FMD_KEY_VALUES in read_footer(only_stale).metadata
    assert FMD_KEY_VALUES not in decode_struct(new_footer)[0]


def test_rewrite_edits_only_names_and_time_types(vendor_days: dict[str, Path]) -> None:
    footer = read_footer(vendor_days["trades"])
    new = decode_struct(plan_rewrite(footer, RENAMES, TIME_COLUMNS))[0]
    old_leaves = footer.metadata[FMD_SCHEMA][1].values[1:]
    new_leaves = new[FMD_SCHEMA][1].values[1:]
    assert [leaf[4][1] for leaf in new_leaves] == [
        RENAMES.get(leaf[4][1].decode(), leaf[4][1].decode()).encode() for leaf in old_leaves]
    for old, leaf in zip(old_leaves, new_leaves, strict=True):
        if leaf[4][1].decode() in TIME_COLUMNS:
            assert leaf[10] == (STRUCT, {8: (STRUCT, {1: (BOOL, True),
                                                      2: (STRUCT, {3: (STRUCT, {})})})})
            assert 6 not in leaf  # no converted type: NANOS has none
        else:
            assert {k: v for k, v in leaf.items() if k != 4} == {
                k: v for k, v in old.items() if k != 4}
    chunks = new[FMD_ROW_GROUPS][1].values[0][RG_COLUMNS][1].values
    assert [c[CC_META][1][3][1].values for c in chunks] == [[leaf[4][1]] for leaf in new_leaves]
    # Everything outside the schema, the paths and the key-value list is untouched.
    untouched = set(footer.metadata) - {FMD_SCHEMA, FMD_ROW_GROUPS, FMD_KEY_VALUES}
    assert {k: new[k] for k in untouched} == {k: footer.metadata[k] for k in untouched}


def test_row_group_rows(vendor_days: dict[str, Path], tmp_path: Path) -> None:
    raw = multi_group_trades(vendor_days, tmp_path / "raw.parquet")
    assert read_footer(raw).row_group_rows == [300, 1_200, 500]
    assert Footer(4, {}).row_group_rows == []


# --- 4. files that do not qualify take the slow path, with the same measurements -----------


def with_struct_column(table: pa.Table) -> pa.Table:
    return table.append_column("extra", pa.array([{"a": i} for i in range(table.num_rows)]))


def with_quantity_column(table: pa.Table) -> pa.Table:
    return table.append_column("quantity", table.column("amount"))


def with_file_path(raw: Path) -> Footer:
    footer = read_footer(raw)
    metadata = dict(footer.metadata)
    group = dict(metadata[FMD_ROW_GROUPS][1].values[0])
    chunks = [{**c, CC_FILE_PATH: (BINARY, b"elsewhere.parquet")}
              for c in group[RG_COLUMNS][1].values]
    group[RG_COLUMNS] = (LIST, List(STRUCT, chunks))
    metadata[FMD_ROW_GROUPS] = (LIST, List(STRUCT, [group]))
    return Footer(footer.start, metadata)


NOT_QUALIFYING = {
    "nested column": with_struct_column,
    "times already timestamps": lambda t: cast("receipt_timestamp", TIME_TYPE)(
        cast("timestamp", TIME_TYPE)(t)),
    "int32 time column": lambda t: replace(
        t, "timestamp", pa.array(np.arange(t.num_rows, dtype=np.int32))),
    "uint64 time column": cast("timestamp", pa.uint64()),
    "amount and quantity": with_quantity_column,
}


@pytest.mark.parametrize("edit", NOT_QUALIFYING.values(), ids=NOT_QUALIFYING.keys())
def test_plan_rewrite_refuses_files_that_do_not_qualify(vendor_days: dict[str, Path],
                                                       tmp_path: Path, edit) -> None:
    raw = write_variant(vendor_days["trades"], tmp_path / "raw.parquet", edit)
    assert plan_rewrite(read_footer(raw), RENAMES, TIME_COLUMNS) is None


def test_plan_rewrite_refuses_columns_stored_elsewhere(vendor_days: dict[str, Path]) -> None:
    raw = vendor_days["trades"]
    assert plan_rewrite(read_footer(raw), RENAMES, TIME_COLUMNS) is not None
    assert plan_rewrite(with_file_path(raw), RENAMES, TIME_COLUMNS) is None


def with_time_annotations(raw: Path, converted: int | None, logical: dict | None) -> Footer:
    """The footer of `raw` with the `timestamp` leaf's converted and logical types replaced."""
    footer = read_footer(raw)
    elements = footer.metadata[FMD_SCHEMA][1].values
    leaves = []
    for leaf in elements[1:]:
        if leaf[4][1] == b"timestamp":
            leaf = {k: v for k, v in leaf.items() if k not in (6, 10)}
            if converted is not None:
                leaf[6] = (I32, converted)
            if logical is not None:
                leaf[10] = (STRUCT, logical)
        leaves.append(leaf)
    metadata = {**footer.metadata, FMD_SCHEMA: (LIST, List(STRUCT, [elements[0], *leaves]))}
    return Footer(footer.start, metadata)


INT_64, UINT_64, TIMESTAMP_MICROS = 18, 14, 10  # parquet ConvertedType


def integer(bits: int, signed: bool) -> dict:
    return {10: (STRUCT, {1: (BYTE, bits), 2: (BOOL, signed)})}


@pytest.mark.parametrize(("converted", "logical", "qualifies"), [
    (None, None, True),
    (INT_64, None, True),
    (INT_64, integer(64, True), True),
    (None, integer(64, True), True),
    (UINT_64, integer(64, False), False),
    (None, integer(64, False), False),
    (UINT_64, None, False),
    (TIMESTAMP_MICROS, None, False),  # a legacy timestamp, converted type only
    (None, {8: (STRUCT, {1: (BOOL, True), 2: (STRUCT, {2: (STRUCT, {})})})}, False),
], ids=["plain", "INT_64", "INT_64+INTEGER", "INTEGER", "UINT_64+INTEGER", "unsigned",
        "UINT_64", "TIMESTAMP_MICROS", "TIMESTAMP"])
def test_plan_rewrite_accepts_signed_int64_times_only(vendor_days: dict[str, Path],
                                                      tmp_path: Path, converted: int | None,
                                                      logical: dict | None,
                                                      qualifies: bool) -> None:
    raw = vendor_days["book_delta_v2"]
    footer = with_time_annotations(raw, converted, logical)
    new_footer = plan_rewrite(footer, RENAMES, TIME_COLUMNS)
    assert (new_footer is not None) == qualifies
    if new_footer is not None:  # the annotations give way to TIMESTAMP(UTC, NANOS)
        out = tmp_path / "ready.parquet"
        out.write_bytes(raw.read_bytes()[:footer.start] + footer_tail(new_footer))
        assert_same_frame(out, polars_normalised(raw))


def scan_and_check(raw: Path, out: Path, table: str = "trades") -> tuple[DayScan, list]:
    scan = normalise_day(raw, TABLES[table], DAY, out)
    assert scan.output_sha256 == sha256_file(out)
    assert scan.output_bytes == out.stat().st_size
    return scan, evaluate(scan)


SLOW_PATH = {k: v for k, v in NOT_QUALIFYING.items() if k != "amount and quantity"}


@pytest.mark.parametrize("edit", SLOW_PATH.values(), ids=SLOW_PATH.keys())
def test_slow_path_writes_the_normalised_day(vendor_days: dict[str, Path], tmp_path: Path,
                                             edit, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = write_variant(vendor_days["trades"], tmp_path / "raw.parquet", edit)
    rewrites = []
    monkeypatch.setattr(normalise_module, "_copy_region",
                        lambda *args: rewrites.append(args))  # the fast path must not run
    scan, _ = scan_and_check(raw, tmp_path / "ready.parquet")
    assert rewrites == []
    assert scan.rows == ROWS
    assert_same_frame(tmp_path / "ready.parquet", polars_normalised(raw))


@pytest.mark.parametrize("fault", [None, Fault.NEGATIVE_PRICE, Fault.UNSORTED, Fault.HOLE])
def test_slow_path_checks_match_the_fast_path(tmp_path: Path, fault: Fault | None) -> None:
    """Same data, int64 times (footer rewrite) or timestamp times (re-encode): same verdict."""
    fast_raw = write_day(tmp_path / "vendor", "trades", BTC, DAY, ROWS, fault)
    slow_raw = write_variant(fast_raw, tmp_path / "typed.parquet",
                             NOT_QUALIFYING["times already timestamps"])
    assert plan_rewrite(read_footer(fast_raw), RENAMES, TIME_COLUMNS) is not None
    fast_scan, fast = scan_and_check(fast_raw, tmp_path / "fast.parquet")
    slow_scan, slow = scan_and_check(slow_raw, tmp_path / "slow.parquet")
    assert slow == fast
    assert (slow_scan.rows, slow_scan.min_time, slow_scan.max_time, slow_scan.largest_gap_ns) \
        == (fast_scan.rows, fast_scan.min_time, fast_scan.max_time, fast_scan.largest_gap_ns)
    assert pl.read_parquet(tmp_path / "slow.parquet").equals(
        pl.read_parquet(tmp_path / "fast.parquet"))
    if fault is not None:
        assert not all(o.passed for o in fast if o.blocking)


def test_nested_column_fails_schema_only(vendor_days: dict[str, Path], tmp_path: Path) -> None:
    raw = write_variant(vendor_days["trades"], tmp_path / "raw.parquet", with_struct_column)
    _, clean = scan_and_check(vendor_days["trades"], tmp_path / "clean.parquet")
    _, nested = scan_and_check(raw, tmp_path / "nested.parquet")
    assert [o for o in nested if o.name != SCHEMA] == [o for o in clean if o.name != SCHEMA]
    schema = next(o for o in nested if o.name == SCHEMA)
    assert not schema.passed
    assert "extra" in schema.description


def test_rename_collision_is_handled(vendor_days: dict[str, Path], tmp_path: Path) -> None:
    """A vendor file with both `amount` and `quantity` keeps both names (no rename onto an
    existing column): the data is written, and the schema check names the extra column."""
    raw = write_variant(vendor_days["trades"], tmp_path / "raw.parquet", with_quantity_column)
    scan = normalise_day(raw, TRADES, DAY, tmp_path / "ready.parquet")
    assert scan.rows == pl.read_parquet(tmp_path / "ready.parquet").height == ROWS
    outcomes = {o.name: o for o in evaluate(scan)}
    assert not outcomes[SCHEMA].passed
    assert "'amount' is not expected" in outcomes[SCHEMA].description


ARROW_ONLY_TYPES = {
    "duration": pa.array(np.arange(ROWS), pa.duration("ns")),
    "non-UTC timestamp": pa.array(np.arange(ROWS), pa.timestamp("ns", tz="America/New_York")),
    "dictionary": pa.array(["x", "y"] * (ROWS // 2)).dictionary_encode(),
}


@pytest.mark.parametrize("column", ARROW_ONLY_TYPES.values(), ids=ARROW_ONLY_TYPES.keys())
def test_column_typed_by_arrow_schema_only(vendor_days: dict[str, Path], tmp_path: Path,
                                           column: pa.Array) -> None:
    raw = write_variant(vendor_days["trades"], tmp_path / "raw.parquet",
                        lambda t: t.append_column("extra", column))
    scan = normalise_day(raw, TRADES, DAY, tmp_path / "ready.parquet")
    assert scan.rows == ROWS
    assert_same_frame(tmp_path / "ready.parquet", polars_normalised(raw))


# --- 5. the output hash, with and without the download's hash states ------------------------


def stream_hash(path: Path, chunk: int, data: bytes | None = None) -> StreamHash:
    digest = StreamHash()
    data = path.read_bytes() if data is None else data
    for offset in range(0, len(data), chunk):
        digest.update(data[offset:offset + chunk])
    return digest


@pytest.mark.parametrize("table", ["trades", "book_delta_v2"])
@pytest.mark.parametrize("with_download_hash", [False, True])
def test_fast_path_output_hash_and_bytes(vendor_days: dict[str, Path], tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch, table: str,
                                         with_download_hash: bool) -> None:
    monkeypatch.setattr(hashing, "CHUNK_BYTES", 1_024)
    raw = vendor_days[table]
    footer = read_footer(raw)
    raw_hash = stream_hash(raw, 1_024) if with_download_hash else None
    if raw_hash is not None:
        assert raw_hash.hexdigest() == sha256_file(raw)
        assert raw_hash.prefix(raw, footer.start) is not None  # the shortcut is taken
    out = tmp_path / "ready.parquet"
    scan = normalise_day(raw, TABLES[table], DAY, out, raw_hash)
    assert out.read_bytes() == rewrite(raw, tmp_path / "expected.parquet").read_bytes()
    assert scan.output_sha256 == sha256_file(out) == hashlib.sha256(out.read_bytes()).hexdigest()
    assert scan.output_bytes == out.stat().st_size
    assert scan.rows == ROWS


def test_output_hash_continues_the_download_hash(vendor_days: dict[str, Path], tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The hash is built on the states passed in, not on a re-read of the whole file."""
    monkeypatch.setattr(hashing, "CHUNK_BYTES", 1_024)
    raw = vendor_days["book_delta_v2"]
    other = b"\x00" + raw.read_bytes()[1:]  # what a different download would have hashed
    scan = normalise_day(raw, TABLES["book_delta_v2"], DAY, tmp_path / "ready.parquet",
                         stream_hash(raw, 1_024, other))
    assert scan.output_sha256 != sha256_file(tmp_path / "ready.parquet")


@pytest.mark.parametrize("feed", [1_024, 1_000, 3_000])
def test_stream_hash_prefix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, feed: int) -> None:
    monkeypatch.setattr(hashing, "CHUNK_BYTES", 1_024)
    data = np.random.default_rng(1).bytes(10 * 1_024 + 300)
    path = tmp_path / "blob"
    path.write_bytes(data)
    digest = stream_hash(path, feed)
    assert digest.hexdigest() == hashlib.sha256(data).hexdigest() == sha256_file(path)
    boundaries = list(range(0, len(data), feed))[-hashing.KEPT_STATES:]
    wanted = sorted({n for b in boundaries for n in (b, b + 1, b + 1_023, b + 1_024, b + 1_025)
                     if n <= len(data)} | {len(data)})
    for n in wanted:
        state = digest.prefix(path, n)
        assert state is not None, n
        assert state.hexdigest() == hashlib.sha256(data[:n]).hexdigest(), n
        state.update(b"more")  # a copy: the stream's own state is untouched
    assert digest.hexdigest() == hashlib.sha256(data).hexdigest()
    for n in (0, 1, boundaries[0] - 1, len(data) + 1):
        assert digest.prefix(path, n) is None, n


def test_stream_hash_of_empty_stream_has_no_prefix(tmp_path: Path) -> None:
    path = tmp_path / "empty"
    path.write_bytes(b"")
    assert StreamHash().prefix(path, 0) is None
    assert sha256_file(path) == hashlib.sha256(b"").hexdigest()


# --- 6. a day is measured in bounded slices ------------------------------------------------


def synthetic_footer(rows: list[int]) -> list[int]:
    """Row counts per group, as a footer lists them."""
    groups = [{RG_NUM_ROWS: (I64, n)} for n in rows]
    return Footer(4, {FMD_ROW_GROUPS: (LIST, List(STRUCT, groups))}).row_group_rows


@pytest.mark.parametrize("rows", [
    [3_000, 4_000, 5_000, 2_000],
    [3_000, 25_000, 2_000, 10_000, 9_999, 1, 0, 30_001, 7],
    [100_000],
    [10_000, 10_001, 20_000, 20_001],
    [9_999, 9_999, 9_999],
    [],
])
def test_row_slices_cover_the_file_in_order(monkeypatch: pytest.MonkeyPatch,
                                            rows: list[int]) -> None:
    monkeypatch.setattr(normalise_module, "BATCH_CELLS", 40_000)
    target = 10_000  # 40_000 cells over 4 columns
    slices = list(row_slices(synthetic_footer(rows), 4))
    offset = 0
    for start, n in slices:  # in order, without gap or overlap, none empty
        assert (start, n > 0) == (offset, True)
        offset += n
    assert offset == sum(rows)
    bounds = np.cumsum([0, *rows]).tolist()
    groups = [(bounds[i], bounds[i + 1]) for i in range(len(rows)) if rows[i]]
    giants = [(s, e) for s, e in groups if e - s > target]
    for start, n in slices:
        end = start + n
        if any(s <= start and end <= e for s, e in giants):  # a piece of a giant row group
            assert n <= target
            continue
        # A run of whole row groups, cut only once it reaches the target.
        assert start in bounds and end in bounds
        assert n < 2 * target
        if n < target:
            assert end == sum(rows) or any(s == end for s, _ in giants)
    for s, e in giants:  # even pieces
        pieces = [n for start, n in slices if s <= start < e]
        assert sum(pieces) == e - s
        assert max(pieces) - min(pieces) <= 1


@pytest.mark.parametrize(("rows", "expected"), [
    ([3_000, 4_000, 5_000, 2_000, 10_000, 1], [(0, 12_000), (12_000, 12_000), (24_000, 1)]),
    ([4_000, 6_000, 5_000], [(0, 10_000), (10_000, 5_000)]),  # a run reaching the target
    ([10_000, 10_000], [(0, 10_000), (10_000, 10_000)]),  # a group of exactly the target
    ([500, 10_001], [(0, 500), (500, 5_000), (5_500, 5_001)]),  # a run cut before a giant
])
def test_row_slices_join_small_groups(monkeypatch: pytest.MonkeyPatch, rows: list[int],
                                      expected: list[tuple[int, int]]) -> None:
    monkeypatch.setattr(normalise_module, "BATCH_CELLS", 40_000)
    assert list(row_slices(synthetic_footer(rows), 4)) == expected


def test_row_slices_cut_a_giant_group_evenly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(normalise_module, "BATCH_CELLS", 60_000)
    slices = list(row_slices(synthetic_footer([1_000, 95_001, 1_000]), 6))
    assert slices[0] == (0, 1_000)
    pieces = [n for _, n in slices[1:-1]]
    assert len(pieces) == 10
    assert max(pieces) <= 10_000
    assert max(pieces) - min(pieces) <= 1
    assert slices[-1] == (96_001, 1_000)
    # The floor of 10_000 rows holds however wide the table is.
    assert list(row_slices(synthetic_footer([25_000]), 10_000)) == [
        (0, 8_333), (8_333, 8_333), (16_666, 8_334)]


def spy_batches(monkeypatch: pytest.MonkeyPatch) -> list[pl.DataFrame]:
    batches: list[pl.DataFrame] = []
    add = DayScan.add

    def spy(self: DayScan, batch: pl.DataFrame) -> None:
        batches.append(batch)
        add(self, batch)

    monkeypatch.setattr("rlx_assets.lib.scan.DayScan.add", spy)
    return batches


def test_giant_row_group_is_measured_in_bounded_batches(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    raw = write_day(tmp_path / "vendor", "book_delta_v2", BTC, DAY, 200_000,
                    flush_rows=200_000)
    assert read_footer(raw).row_group_rows == [200_000]
    monkeypatch.setattr(normalise_module, "BATCH_CELLS", 60_000)  # 10_000 rows of 6 columns
    batches = spy_batches(monkeypatch)
    scan = normalise_day(raw, TABLES["book_delta_v2"], DAY, tmp_path / "ready.parquet")
    assert scan.rows == 200_000
    assert len(batches) == 20
    assert max(b.height for b in batches) <= 10_000
    assert pl.concat(batches).equals(pl.read_parquet(tmp_path / "ready.parquet"))


def test_mixed_row_groups_are_measured_in_even_slices_in_order(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Slices do not follow row groups (the footer is not decoded in the measuring process):
    even slices of at most BATCH_CELLS values, in file order, whatever the groups."""
    table = pq.read_table(write_day(tmp_path / "vendor", "book_delta_v2", BTC, DAY, 30_000))
    raw = tmp_path / "raw.parquet"
    with pq.ParquetWriter(raw, table.schema) as writer:
        for offset, rows in ((0, 4_000), (4_000, 7_000), (11_000, 12_000), (23_000, 7_000)):
            writer.write_table(table.slice(offset, rows))
    monkeypatch.setattr(normalise_module, "BATCH_CELLS", 60_000)  # 10_000 rows of 6 columns
    batches = spy_batches(monkeypatch)
    scan = normalise_day(raw, TABLES["book_delta_v2"], DAY, tmp_path / "ready.parquet")
    assert scan.rows == 30_000
    assert [b.height for b in batches] == [10_000, 10_000, 10_000]
    assert pl.concat(batches).equals(polars_normalised(raw))


# --- 7. unreadable vendor files --------------------------------------------------------------


def corrupt_page_header(data: bytearray, raw: Path) -> None:
    column = pq.ParquetFile(raw).metadata.row_group(0).column(3)
    offset = column.dictionary_page_offset or column.data_page_offset
    data[offset:offset + 16] = b"\xff" * 16


def corrupt_middle(data: bytearray, raw: Path) -> None:
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(b ^ 0xFF for b in data[middle:middle + 64])


@pytest.mark.parametrize("corrupt", [corrupt_page_header, corrupt_middle],
                         ids=["page header", "middle of the file"])
def test_corrupt_data_page_is_unreadable(vendor_days: dict[str, Path], tmp_path: Path,
                                         corrupt) -> None:
    raw = vendor_days["book_delta_v2"]
    data = bytearray(raw.read_bytes())
    corrupt(data, raw)
    path = tmp_path / "corrupt.parquet"
    path.write_bytes(bytes(data))
    footer = read_footer(path)  # the footer is intact: only data pages are hurt
    assert footer.start == read_footer(raw).start
    assert plan_rewrite(footer, RENAMES, TIME_COLUMNS) is not None
    with pytest.raises(UnreadableVendorFile, match="corrupt.parquet"):
        normalise_day(path, TABLES["book_delta_v2"], DAY, tmp_path / "ready.parquet")


def test_truncated_vendor_file_is_unreadable(tmp_path: Path) -> None:
    raw = write_day(tmp_path / "vendor", "trades", BTC, DAY, ROWS, Fault.TRUNCATED)
    with pytest.raises(UnreadableVendorFile):
        normalise_day(raw, TRADES, DAY, tmp_path / "ready.parquet")


def test_unsigned_times_beyond_int64_are_missing_times_not_a_stopped_run(
        vendor_days: dict[str, Path], tmp_path: Path) -> None:
    """uint64 `timestamp` values past 2**63 cannot be UTC nanoseconds: they become missing
    exchange times (null, counted and warned about), instead of a polars error that stops
    the day."""
    def unsigned(table: pa.Table) -> pa.Table:
        times = table.column("timestamp").to_numpy().astype(np.uint64)
        times[3] = 2**63 + 5
        index = table.schema.get_field_index("timestamp")
        return table.set_column(index, "timestamp", pa.array(times, pa.uint64()))

    raw = write_variant(vendor_days["trades"], tmp_path / "raw.parquet", unsigned)
    scan = normalise_day(raw, TRADES, DAY, tmp_path / "ready.parquet")
    assert scan.rows == ROWS
    outcomes = {o.name: o for o in evaluate(scan)}
    assert outcomes[SCHEMA].passed
    assert not outcomes["origin_time_missing"].passed
    assert outcomes["origin_time_missing"].metadata["origin_time_missing_rows"] == 1
    assert pl.read_parquet(tmp_path / "ready.parquet")["origin_time"].null_count() == 1
