"""Finding and decoding a parquet file's footer (on disk, in memory, or from its tail)."""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

from rlx_assets.lib.footer_fields import (
    FMD_KEY_VALUES,
    FMD_ROW_GROUPS,
    KV_KEY,
    KV_VALUE,
    RG_NUM_ROWS,
)
from rlx_assets.lib.thrift_compact import Struct, ThriftError, items_of, value_of
from rlx_assets.lib.thrift_decode import decode_struct

MAGIC = b"PAR1"


class NotParquet(ValueError):
    """The file has no readable parquet footer (truncated, corrupt, encrypted)."""


@dataclass(frozen=True)
class Footer:
    start: int  # offset of the footer: the data region is bytes [0, start)
    metadata: Struct | None  # decoded (None when only its bytes were read)
    raw: bytes = b""  # the footer's thrift bytes

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
    return Footer(start, None, tail[:length])  # walked, not decoded, by `edit_footer`


def _decoded(name: str, raw: bytes, start: int) -> Footer:
    try:
        metadata, end = decode_struct(raw)
    except ThriftError as exc:
        raise NotParquet(f"{name}: unreadable footer ({exc})") from exc
    if end != len(raw):
        raise NotParquet(f"{name}: footer is {len(raw)} bytes but decodes to {end}")
    return Footer(start, metadata, raw)
