"""Decoding compact-protocol bytes into Python values (`thrift_compact` has the types)."""

from __future__ import annotations

import struct

from rlx_assets.lib.thrift_compact import (
    BINARY,
    BOOL,
    BYTE,
    DOUBLE,
    FALSE,
    INTS,
    LIST,
    MAP,
    SET,
    STOP,
    STRUCT,
    TRUE,
    List,
    Map,
    Struct,
    ThriftError,
    read_varint,
)


def decode_struct(data: bytes | memoryview, offset: int = 0) -> tuple[Struct, int]:
    """The struct starting at `offset`, and the offset just after it."""
    reader = _Reader(bytes(data), offset)
    try:
        return reader.struct(), reader.pos
    except (IndexError, struct.error, UnicodeDecodeError, RecursionError) as exc:
        raise ThriftError(f"truncated or malformed thrift struct ({exc})") from exc


def decode_value(data: bytes, ctype: int, offset: int = 0) -> object:
    """The value of type `ctype` starting at `offset`."""
    try:
        return _Reader(data, offset).value(ctype)
    except (IndexError, struct.error, UnicodeDecodeError, RecursionError) as exc:
        raise ThriftError(f"truncated or malformed thrift value ({exc})") from exc


class _Reader:
    """Footers of vendor days hold a million values (thousands of row groups): the hot paths
    (field headers, one-byte varints) are written out inline."""

    def __init__(self, data: bytes, pos: int) -> None:
        self.data, self.pos = data, pos

    def varint(self) -> int:
        data, pos = self.data, self.pos
        shift = result = 0
        while True:
            b = data[pos]
            pos += 1
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                self.pos = pos
                return result
            shift += 7
            if shift > 70:
                raise ThriftError("varint too long")

    def zigzag(self) -> int:
        b = self.data[self.pos]
        if b < 0x80:  # one byte: most values in a footer
            self.pos += 1
            return (b >> 1) ^ -(b & 1)
        v = self.varint()
        return (v >> 1) ^ -(v & 1)

    def value(self, ctype: int) -> object:
        if ctype in INTS:
            return self.zigzag()
        if ctype == BINARY:
            b = self.data[self.pos]
            if b < 0x80:
                self.pos += 1
                n = b
            else:
                n = self.varint()
            start = self.pos
            if start + n > len(self.data):
                raise ThriftError("binary runs past the end")
            self.pos = start + n
            return self.data[start:start + n]
        if ctype == STRUCT:
            return self.struct()
        if ctype in (LIST, SET):
            header = self.data[self.pos]
            self.pos += 1
            n, element = header >> 4, header & 0x0F
            if n == 15:
                n = self.varint()
            if element == STRUCT:
                read = self.struct
                return List(element, [read() for _ in range(n)], ctype)
            if element in INTS:
                read = self.zigzag
                return List(element, [read() for _ in range(n)], ctype)
            value = self.value
            return List(element, [value(element) for _ in range(n)], ctype)
        if ctype in (TRUE, FALSE):  # inside a list or map: one byte each
            b = self.data[self.pos]
            self.pos += 1
            return b == TRUE
        if ctype == BYTE:
            b = self.data[self.pos]
            self.pos += 1
            return b - 256 if b > 127 else b
        if ctype == DOUBLE:
            value = struct.unpack_from("<d", self.data, self.pos)[0]
            self.pos += 8
            return value
        if ctype == MAP:
            n = self.varint()
            if n == 0:
                return Map(0, 0, [])
            types = self.data[self.pos]
            self.pos += 1
            k, v = types >> 4, types & 0x0F
            return Map(k, v, [(self.value(k), self.value(v)) for _ in range(n)])
        raise ThriftError(f"unknown compact type {ctype}")

    def struct(self) -> Struct:
        fields: Struct = {}
        last = 0
        data, value, size = self.data, self.value, len(self.data)
        while True:
            pos = self.pos
            header = data[pos]
            pos += 1
            if header == STOP:
                self.pos = pos
                return fields
            delta, ctype = header >> 4, header & 0x0F
            if delta:
                fid = last + delta
            else:
                self.pos = pos
                fid = self.zigzag()
                pos = self.pos
            # The commonest fields, inline: integers and short strings.
            if ctype in INTS:
                result, pos = read_varint(data, pos)
                fields[fid] = (ctype, (result >> 1) ^ -(result & 1))
                self.pos = pos
            elif ctype == BINARY and data[pos] < 0x80:
                end = pos + 1 + data[pos]
                if end > size:
                    raise ThriftError("binary runs past the end")
                fields[fid] = (ctype, data[pos + 1:end])
                self.pos = end
            elif ctype == TRUE or ctype == FALSE:
                fields[fid] = (BOOL, ctype == TRUE)
                self.pos = pos
            else:
                self.pos = pos
                fields[fid] = (ctype, value(ctype))
            last = fid
