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

The edit (`edit_footer`) walks the footer's bytes instead of decoding them: a busy day's
footer describes thousands of row groups (a million Thrift values), and only the schema,
the key-value metadata and the renamed columns' paths change; everything else is copied as
it is (a quarter of a second for 3,000 row groups, against a second and a half to decode and
re-encode it all).

Only flat files whose time columns are plain int64 qualify (`plan_rewrite` returns None
otherwise); anything else takes the general decode/encode path.

`footer_read` finds and decodes a file's footer, `footer_fields` names parquet's field ids,
`footer_schema` edits the schema and `footer_row_groups` the row groups' column paths.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from rlx_assets.lib.footer_fields import (
    CC_META,
    CMD_COMPRESSED,
    CMD_PATH,
    CMD_UNCOMPRESSED,
    FMD_KEY_VALUES,
    FMD_ROW_GROUPS,
    FMD_SCHEMA,
    KV_KEY,
    OPTIONAL,
    RG_COLUMNS,
    RG_TOTAL_BYTES,
    RG_TOTAL_COMPRESSED,
    SE_REPETITION,
)
from rlx_assets.lib.footer_read import MAGIC, Footer, NotParquet
from rlx_assets.lib.footer_row_groups import RowGroupEditor
from rlx_assets.lib.footer_schema import Unqualified, edited_schema
from rlx_assets.lib.thrift_compact import (
    BINARY,
    LIST,
    STRUCT,
    List,
    Struct,
    ThriftError,
    items_of,
    value_of,
)
from rlx_assets.lib.thrift_decode import decode_struct, decode_value
from rlx_assets.lib.thrift_encode import (
    assemble_struct,
    encode_list_header,
    encode_struct,
    encode_value,
)
from rlx_assets.lib.thrift_walk import struct_spans

STALE_METADATA_KEYS = {b"ARROW:schema", b"pandas"}


@dataclass(frozen=True)
class FooterEdit:
    """The normalised file's footer, edited but for the replaced time chunks: `encode` adds
    those (re-encoding only their row groups) and returns the footer's bytes.

    Built from the footer's bytes by walking them (`thrift_walk.struct_spans`): the
    schema and key-value metadata are decoded and edited, every column chunk's path is
    renamed in place, and everything else is copied as it is. For a footer of thousands of
    row groups that is ten times faster than decoding it all into Python objects."""

    fields: list[tuple[int, int, bytes]]  # FileMetaData fields, row groups' value left out
    groups: list[bytes]  # each row group, edited
    group_rows: list[int]  # rows per row group
    columns: dict[str, int]  # old column name -> its position in every row group
    nullable: dict[str, bool]  # old column name -> OPTIONAL (its chunks can hold nulls)
    new_names: dict[str, str]  # old column name -> normalised name

    def encode(self, patches: dict[int, Struct] | None = None,
               patched_column: str = "") -> bytes | None:
        """The footer's thrift bytes. `patches` maps row-group indexes to the ColumnChunk
        that replaces column `patched_column` (an old name) there (see `time_patch`); None
        when that column cannot hold nulls (REQUIRED: its other chunks have no room)."""
        groups = list(self.groups)
        if patches:
            if patched_column not in self.columns or not self.nullable[patched_column]:
                return None
            for index, chunk in patches.items():
                groups[index] = encode_struct(self._patched(
                    decode_struct(groups[index])[0], chunk, patched_column))
        value = encode_list_header(STRUCT, len(groups)) + b"".join(groups)
        return assemble_struct([(fid, ctype, value if fid == FMD_ROW_GROUPS else old)
                                for fid, ctype, old in self.fields])

    def _patched(self, group: Struct, chunk: Struct, column: str) -> Struct:
        """`group` with `chunk` in place of `column`'s; its byte totals follow."""
        position = self.columns[column]
        chunks = list(items_of(group, RG_COLUMNS))
        old = value_of(chunks[position], CC_META)
        meta = dict(value_of(chunk, CC_META))
        meta[CMD_PATH] = (LIST, List(BINARY, [self.new_names[column].encode()]))
        group = dict(group)
        for field, meta_field in ((RG_TOTAL_BYTES, CMD_UNCOMPRESSED),
                                  (RG_TOTAL_COMPRESSED, CMD_COMPRESSED)):
            if field in group:
                kind, total = group[field]
                group[field] = (kind, total - value_of(old, meta_field, 0)
                                + value_of(meta, meta_field, 0))
        chunks[position] = {**chunk, CC_META: (STRUCT, meta)}
        group[RG_COLUMNS] = (LIST, List(STRUCT, chunks))
        return group


def edit_footer(footer: Footer, renames: dict[str, str],
                timestamp_columns: tuple[str, ...]) -> FooterEdit | None:
    """The footer of the normalised file, or None if the file does not qualify: nested,
    columns stored elsewhere, a time column that is not plain int64, or a rename that would
    collide with an existing column. Malformed bytes raise NotParquet."""
    data = footer.raw or encode_struct(footer.metadata)
    try:
        return _edit(data, renames, timestamp_columns)
    except Unqualified:
        return None
    except (ThriftError, IndexError) as exc:
        raise NotParquet(f"unreadable footer ({exc})") from exc


def _edit(data: bytes, renames: dict[str, str],
          timestamp_columns: tuple[str, ...]) -> FooterEdit:
    top, end = struct_spans(data, 0)
    if end != len(data):
        raise ThriftError(f"footer is {len(data)} bytes but its struct ends at {end}")
    by_id = {fid: (ctype, at, stop) for fid, ctype, at, stop in top}
    if FMD_SCHEMA not in by_id or by_id[FMD_SCHEMA][0] != LIST:
        raise Unqualified
    elements = decode_value(data, LIST, by_id[FMD_SCHEMA][1]).values
    schema, names, new_names, leaves = edited_schema(elements, renames, timestamp_columns)
    editor = RowGroupEditor(data, len(names), {
        position: (old.encode(), encode_value(LIST, List(BINARY, [new.encode()])))
        for position, (old, new) in enumerate(zip(names, new_names, strict=True))
        if new != old})
    if FMD_ROW_GROUPS in by_id:
        if by_id[FMD_ROW_GROUPS][0] != LIST:
            raise Unqualified
        editor.row_groups(by_id[FMD_ROW_GROUPS][1])
    fields = []
    for fid, ctype, at, stop in top:
        value = data[at:stop]
        if fid == FMD_SCHEMA:
            value = encode_value(LIST, List(STRUCT, schema))
        elif fid == FMD_KEY_VALUES:
            kept = [kv for kv in decode_value(data, ctype, at).values
                    if value_of(kv, KV_KEY) not in STALE_METADATA_KEYS]
            if not kept:
                continue
            value = encode_value(LIST, List(STRUCT, kept))
        fields.append((fid, ctype, value))
    return FooterEdit(fields, editor.groups, editor.group_rows,
                      {name: i for i, name in enumerate(names)},
                      {name: value_of(leaf, SE_REPETITION) == OPTIONAL
                       for name, leaf in zip(names, leaves, strict=True)},
                      dict(zip(names, new_names, strict=True)))


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
