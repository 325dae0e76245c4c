"""Normalise a vendor parquet file by rewriting its footer only: no decode, no re-encode.

Normalising a vendor day means renaming four columns and declaring the two int64 time
columns as UTC nanosecond timestamps. In parquet both live in the footer alone: the
column chunks (the data pages) hold the same bytes either way. So the ready file is the
vendor file's bytes up to its footer, followed by a new footer in which

- the renamed columns carry their new names (schema elements and column chunk paths),
- `timestamp`/`receipt_timestamp` (plain or INT(64, signed) int64) become
  TIMESTAMP(isAdjustedToUTC=true, NANOS), the type polars and pyarrow write for
  `Datetime("ns", "UTC")`; min/max statistics of int64 stay valid as they are,
- the `ARROW:schema` and `pandas` key-value entries, which still name the old columns,
  are dropped (readers then take types from the parquet schema).

Where the vendor wrote a sentinel instead of an exchange time (0, or -1 in trades), the
time column chunks of the row groups holding one are replaced by re-encoded chunks with
nulls there (`time_patch`), appended after the data region; every other column chunk
stays the vendor's bytes.

Only flat files whose time columns are plain int64 qualify (`plan_rewrite` returns None
otherwise); anything else takes the general decode/encode path.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

from rlx_assets.lib.thrift_compact import (
    BINARY,
    BOOL,
    LIST,
    STRUCT,
    Encoded,
    List,
    Struct,
    ThriftError,
    decode_struct,
    encode_struct,
    items_of,
    value_of,
)

MAGIC = b"PAR1"
INT64 = 2  # parquet physical type
INT_64 = 18  # converted type of a signed 64-bit integer
STALE_METADATA_KEYS = {b"ARROW:schema", b"pandas"}

# FileMetaData, SchemaElement, RowGroup, ColumnChunk, ColumnMetaData, KeyValue field ids
# (parquet-format's parquet.thrift).
FMD_SCHEMA, FMD_ROW_GROUPS, FMD_KEY_VALUES = 2, 4, 5
SE_TYPE, SE_REPETITION, SE_NAME, SE_CHILDREN, SE_CONVERTED, SE_LOGICAL = 1, 3, 4, 5, 6, 10
OPTIONAL = 1  # repetition type
RG_COLUMNS, RG_TOTAL_BYTES, RG_NUM_ROWS, RG_TOTAL_COMPRESSED = 1, 2, 3, 6
CC_FILE_PATH, CC_FILE_OFFSET, CC_META = 1, 2, 3
CC_INDEX_FIELDS = (4, 5, 6, 7)  # offset and column index of a chunk's pages
CMD_PATH, CMD_UNCOMPRESSED, CMD_COMPRESSED = 3, 6, 7
CMD_DATA_PAGE, CMD_INDEX_PAGE, CMD_DICTIONARY_PAGE = 9, 10, 11
KV_KEY, KV_VALUE = 1, 2
LOGICAL_INTEGER, LOGICAL_TIMESTAMP = 10, 8
INT_SIGNED = 2
TIMESTAMP_UTC, TIMESTAMP_UNIT, UNIT_NANOS = 1, 2, 3


class NotParquet(ValueError):
    """The file has no readable parquet footer (truncated, corrupt, encrypted)."""


@dataclass(frozen=True)
class Footer:
    start: int  # offset of the footer: the data region is bytes [0, start)
    metadata: Struct

    @property
    def row_group_rows(self) -> list[int]:
        return [value_of(group, RG_NUM_ROWS, 0) for group in items_of(self.metadata,
                                                                      FMD_ROW_GROUPS)]


    def key_value(self, key: str) -> str | None:
        """A key-value metadata entry of the file (the vendor's `contains_gaps`, say)."""
        for kv in items_of(self.metadata, FMD_KEY_VALUES):
            if value_of(kv, KV_KEY) == key.encode():
                value = value_of(kv, KV_VALUE)
                return value.decode("utf-8", "replace") if value is not None else None
        return None

    def row_group(self, index: int) -> Struct:
        return items_of(self.metadata, FMD_ROW_GROUPS)[index]


def _footer_span(handle, name: str) -> tuple[int, int]:
    """(start, length) of the footer of the open parquet file `handle`."""
    size = os.fstat(handle.fileno()).st_size
    if size < 12:
        raise NotParquet(f"{name} is {size} bytes, too short for parquet")
    handle.seek(size - 8)
    tail = handle.read(8)
    length = struct.unpack("<I", tail[:4])[0]
    if tail[4:] != MAGIC:
        raise NotParquet(f"{name} does not end in PAR1 (truncated or encrypted)")
    start = size - 8 - length
    if start < 4:
        raise NotParquet(f"{name} has a footer length past its start")
    return start, length


def data_region_end(path: Path) -> int:
    """Where the footer of the parquet file at `path` starts (nothing decoded)."""
    with open(path, "rb") as handle:
        return _footer_span(handle, path.name)[0]


def read_footer(path: Path) -> Footer:
    """The decoded footer of the parquet file at `path`."""
    with open(path, "rb") as handle:
        start, length = _footer_span(handle, path.name)
        handle.seek(start)
        raw = handle.read(length)
    return _decoded(path.name, raw, start)


def footer_of(name: str, data: bytes) -> Footer:
    """The decoded footer of a parquet file held in memory."""
    if len(data) < 12 or data[-4:] != MAGIC:
        raise NotParquet(f"{name} does not end in PAR1")
    length = struct.unpack("<I", data[-8:-4])[0]
    start = len(data) - 8 - length
    if start < 4:
        raise NotParquet(f"{name} has a footer length past its start")
    return _decoded(name, data[start:start + length], start)


def footer_from_tail(tail: bytes, file_size: int, name: str = "vendor file") -> Footer:
    """The decoded footer from a file's last bytes: the footer, its length and PAR1."""
    if len(tail) < 8 or tail[-4:] != MAGIC:
        raise NotParquet(f"{name} does not end in PAR1 (truncated or encrypted)")
    length = struct.unpack("<I", tail[-8:-4])[0]
    start = file_size - 8 - length
    if length + 8 != len(tail) or start < 4:
        raise NotParquet(f"{name} has a footer length past its start")
    return _decoded(name, tail[:length], start)


def _decoded(name: str, raw: bytes, start: int) -> Footer:
    try:
        metadata, end = decode_struct(raw)
    except ThriftError as exc:
        raise NotParquet(f"{name}: unreadable footer ({exc})") from exc
    if end != len(raw):
        raise NotParquet(f"{name}: footer is {len(raw)} bytes but decodes to {end}")
    return Footer(start, metadata)


def _leaves(metadata: Struct) -> list[Struct] | None:
    """The leaf columns of a flat schema, or None for a nested or malformed one."""
    elements = items_of(metadata, FMD_SCHEMA)
    if not elements:
        return None
    root, leaves = elements[0], elements[1:]
    if value_of(root, SE_CHILDREN, -1) != len(leaves):
        return None
    if any(SE_CHILDREN in leaf or SE_NAME not in leaf for leaf in leaves):
        return None
    return leaves


def _plain_int64(leaf: Struct) -> bool:
    if value_of(leaf, SE_TYPE) != INT64:
        return False
    logical = value_of(leaf, SE_LOGICAL)
    if logical is not None:
        integer = value_of(logical, LOGICAL_INTEGER)
        if integer is None or not value_of(integer, INT_SIGNED, False):
            return False
    return value_of(leaf, SE_CONVERTED, INT_64) == INT_64


def _utc_nanos() -> Struct:
    unit = {UNIT_NANOS: (STRUCT, {})}
    timestamp = {TIMESTAMP_UTC: (BOOL, True), TIMESTAMP_UNIT: (STRUCT, unit)}
    return {LOGICAL_TIMESTAMP: (STRUCT, timestamp)}


@dataclass
class FooterEdit:
    """The normalised file's footer, edited but not yet encoded: names, time types and
    metadata are settled; `encode` adds the replaced time chunks, if any, and encodes.
    `prepare` encodes the row groups ahead (the bulk of the work), so that `encode` then
    re-encodes only the few that get a replaced chunk."""

    metadata: Struct
    columns: dict[str, int]  # old column name -> its position in every row group
    nullable: dict[str, bool]  # old column name -> OPTIONAL (its chunks can hold nulls)
    new_names: dict[str, str]  # old column name -> normalised name
    group_rows: list[int]  # rows per row group
    encoded: list[Encoded] | None = None  # the row groups, encoded ahead by `prepare`

    def prepare(self) -> FooterEdit:
        self.encoded = [Encoded(encode_struct(group))
                        for group in items_of(self.metadata, FMD_ROW_GROUPS)]
        return self

    def encode(self, patches: dict[int, Struct] | None = None,
               patched_column: str = "") -> bytes | None:
        """The footer's thrift bytes. `patches` maps row-group indexes to the ColumnChunk
        that replaces column `patched_column` (an old name) there (see `time_patch`); None
        when that column cannot hold nulls (REQUIRED: its other chunks have no room)."""
        if patches and (patched_column not in self.columns
                        or not self.nullable[patched_column]):
            return None
        groups = list(self.encoded or items_of(self.metadata, FMD_ROW_GROUPS))
        if not patches:
            return encode_struct({**self.metadata,
                                  FMD_ROW_GROUPS: (LIST, List(STRUCT, groups))})
        position = self.columns[patched_column]
        originals = items_of(self.metadata, FMD_ROW_GROUPS)
        for index, chunk in patches.items():
            group = dict(originals[index])
            chunks = list(items_of(group, RG_COLUMNS))
            old = value_of(chunks[position], CC_META)
            meta = dict(value_of(chunk, CC_META))
            meta[CMD_PATH] = (LIST, List(BINARY, [self.new_names[patched_column].encode()]))
            for field, meta_field in ((RG_TOTAL_BYTES, CMD_UNCOMPRESSED),
                                      (RG_TOTAL_COMPRESSED, CMD_COMPRESSED)):
                if field in group:  # the row group's byte totals follow
                    kind, total = group[field]
                    group[field] = (kind, total - value_of(old, meta_field, 0)
                                    + value_of(meta, meta_field, 0))
            chunks[position] = {**chunk, CC_META: (STRUCT, meta)}
            groups[index] = {**group, RG_COLUMNS: (LIST, List(STRUCT, chunks))}
        return encode_struct({**self.metadata,
                              FMD_ROW_GROUPS: (LIST, List(STRUCT, groups))})


def edit_footer(footer: Footer, renames: dict[str, str],
                timestamp_columns: tuple[str, ...]) -> FooterEdit | None:
    """The footer of the normalised file, or None if the file does not qualify: nested,
    columns stored elsewhere, a time column that is not plain int64, or a rename that would
    collide with an existing column."""
    metadata = footer.metadata
    leaves = _leaves(metadata)
    if leaves is None:
        return None
    names = [value_of(leaf, SE_NAME).decode("utf-8", "replace") for leaf in leaves]
    new_names = [renames.get(n, n) for n in names]
    if len(set(new_names)) != len(new_names):
        return None
    edited = dict(metadata)
    new_leaves = []
    for leaf, old, new in zip(leaves, names, new_names, strict=True):
        leaf = dict(leaf)
        leaf[SE_NAME] = (BINARY, new.encode())
        if new in timestamp_columns and old != new:
            if not _plain_int64(leaf):
                return None
            leaf.pop(SE_CONVERTED, None)
            leaf[SE_LOGICAL] = (STRUCT, _utc_nanos())
        new_leaves.append(leaf)
    edited[FMD_SCHEMA] = (LIST, List(STRUCT, [items_of(metadata, FMD_SCHEMA)[0], *new_leaves]))
    # Every chunk's path in schema is renamed; each new path list is shared (read only).
    paths = {old.encode(): (LIST, List(BINARY, [new.encode()]))
             for old, new in zip(names, new_names, strict=True)}
    groups = []
    for group in items_of(metadata, FMD_ROW_GROUPS):
        chunks = []
        for chunk in items_of(group, RG_COLUMNS):
            if CC_FILE_PATH in chunk or CC_META not in chunk:
                return None
            meta = value_of(chunk, CC_META)
            path = items_of(meta, CMD_PATH)
            if len(path) != 1 or path[0] not in paths:
                return None
            chunks.append({**chunk, CC_META: (STRUCT, {**meta, CMD_PATH: paths[path[0]]})})
        groups.append({**group, RG_COLUMNS: (LIST, List(STRUCT, chunks))})
    edited[FMD_ROW_GROUPS] = (LIST, List(STRUCT, groups))
    if FMD_KEY_VALUES in metadata:
        kept = [kv for kv in items_of(metadata, FMD_KEY_VALUES)
                if value_of(kv, KV_KEY) not in STALE_METADATA_KEYS]
        if kept:
            edited[FMD_KEY_VALUES] = (LIST, List(STRUCT, kept))
        else:
            del edited[FMD_KEY_VALUES]
    return FooterEdit(edited, {name: i for i, name in enumerate(names)},
                      {name: value_of(leaf, SE_REPETITION) == OPTIONAL
                       for name, leaf in zip(names, leaves, strict=True)},
                      dict(zip(names, new_names, strict=True)), footer.row_group_rows)


def plan_rewrite(footer: Footer, renames: dict[str, str],
                 timestamp_columns: tuple[str, ...],
                 patches: dict[int, Struct] | None = None,
                 patched_column: str = "") -> bytes | None:
    """`edit_footer`, then `FooterEdit.encode`: the new footer's bytes, or None."""
    edit = edit_footer(footer, renames, timestamp_columns)
    return edit.encode(patches, patched_column) if edit is not None else None


def footer_tail(footer_bytes: bytes) -> bytes:
    """What follows the data region: the footer, its length and the magic."""
    return footer_bytes + struct.pack("<I", len(footer_bytes)) + MAGIC
