"""The row groups of a footer being rewritten, walked as bytes: only the renamed columns'
paths change (`parquet_footer.edit_footer`)."""

from __future__ import annotations

from rlx_assets.lib.footer_fields import (
    CC_META,
    CMD_PATH,
    FILE_PATH_HEADER,
    RG_COLUMNS,
    RG_NUM_ROWS,
)
from rlx_assets.lib.footer_schema import Unqualified
from rlx_assets.lib.thrift_compact import LIST, STRUCT
from rlx_assets.lib.thrift_decode import decode_value
from rlx_assets.lib.thrift_walk import field_spans, list_header, skip_struct, struct_spans


class RowGroupEditor:
    """Walks the row groups' bytes and renames the paths of the renamed columns' chunks in
    place; the other chunks are only skipped (a chunk's position is its column's, as the
    format says, and the renamed ones are checked by name)."""

    def __init__(self, data: bytes, columns: int, renamed: dict[int, tuple[bytes, bytes]]):
        self.data, self.columns = data, columns
        self.renamed = renamed  # position -> (old name, new path encoded)
        self.groups: list[bytes] = []
        self.group_rows: list[int] = []

    def row_groups(self, start: int) -> int:
        element, count, pos = list_header(self.data, start)
        if element != STRUCT:
            raise Unqualified
        for _ in range(count):
            pos = self._group(pos)
        return pos

    def _group(self, start: int) -> int:
        edits: list[tuple[int, int, bytes]] = []

        def visit(fid: int, ctype: int, at: int) -> int | None:
            if fid != RG_COLUMNS or ctype != LIST:
                return None
            element, count, pos = list_header(self.data, at)
            if element != STRUCT or count != self.columns:
                raise Unqualified
            for position in range(count):
                if self.data[pos] == FILE_PATH_HEADER:
                    raise Unqualified  # the column is stored in another file
                pos = self._chunk(pos, position, edits) if position in self.renamed \
                    else skip_struct(self.data, pos)
            return pos

        spans, end = struct_spans(self.data, start, visit)
        rows = [decode_value(self.data, ctype, at) for fid, ctype, at, _ in spans
                if fid == RG_NUM_ROWS]
        self.group_rows.append(int(rows[0]) if rows else 0)
        pieces, pos = [], start
        for edit_start, edit_end, value in edits:
            pieces += [self.data[pos:edit_start], value]
            pos = edit_end
        pieces.append(self.data[pos:end])
        self.groups.append(b"".join(pieces))
        return end

    def _chunk(self, start: int, position: int, edits: list[tuple[int, int, bytes]]) -> int:
        chunk, end = field_spans(self.data, start, (CC_META,))
        if chunk.get(CC_META, (None,))[0] != STRUCT:
            raise Unqualified
        meta, _ = field_spans(self.data, chunk[CC_META][1], (CMD_PATH,), until=CMD_PATH)
        if meta.get(CMD_PATH, (None,))[0] != LIST:
            raise Unqualified
        ctype, at, stop = meta[CMD_PATH]
        old, new = self.renamed[position]
        if decode_value(self.data, ctype, at).values != [old]:
            raise Unqualified
        edits.append((at, stop, new))
        return end
