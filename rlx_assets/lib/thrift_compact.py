"""Thrift compact protocol, read and written without an IDL (what parquet footers use).

Parquet's `FileMetaData` is a Thrift struct in the compact protocol. Types travel with the
values, so a footer can be decoded into plain Python values, a few fields edited, and
encoded again without knowing the rest of the schema: fields this module does not know
about (newer parquet versions add some) survive unchanged. Structs are `{field id:
(type, value)}` dicts; lists are `List(element type, [values])`.

No library in the project's stack can rewrite a parquet footer (pyarrow reads it but does
not write it back), hence this small codec; `parquet_footer` holds the parquet meaning.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

STOP, TRUE, FALSE, BYTE, I16, I32, I64, DOUBLE, BINARY, LIST, SET, MAP, STRUCT = range(13)
BOOL = TRUE  # the type recorded for a bool field; its value says true or false


class ThriftError(ValueError):
    """The bytes are not a well-formed compact-protocol struct."""


@dataclass
class List:
    element_type: int
    values: list = field(default_factory=list)
    kind: int = LIST  # LIST or SET: same encoding


@dataclass
class Map:
    key_type: int
    value_type: int
    items: list[tuple] = field(default_factory=list)


Struct = dict[int, tuple[int, object]]


def value_of(fields: Struct, fid: int, default: object = None) -> object:
    """The value of field `fid`, or `default` when the struct does not have it."""
    return fields[fid][1] if fid in fields else default


def items_of(fields: Struct, fid: int) -> list:
    """The elements of list field `fid` ([] when absent)."""
    return fields[fid][1].values if fid in fields else []


def decode_struct(data: bytes | memoryview, offset: int = 0) -> tuple[Struct, int]:
    """The struct starting at `offset`, and the offset just after it."""
    reader = _Reader(memoryview(data), offset)
    try:
        return reader.struct(), reader.pos
    except (IndexError, struct.error, UnicodeDecodeError, RecursionError) as exc:
        raise ThriftError(f"truncated or malformed thrift struct ({exc})") from exc


def encode_struct(value: Struct) -> bytes:
    out = bytearray()
    _write_struct(out, value)
    return bytes(out)


class _Reader:
    def __init__(self, data: memoryview, pos: int) -> None:
        self.data, self.pos = data, pos

    def byte(self) -> int:
        value = self.data[self.pos]
        self.pos += 1
        return value

    def varint(self) -> int:
        shift = result = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7
            if shift > 70:
                raise ThriftError("varint too long")

    def zigzag(self) -> int:
        v = self.varint()
        return (v >> 1) ^ -(v & 1)

    def value(self, ctype: int) -> object:
        if ctype in (TRUE, FALSE):  # inside a list or map: one byte each
            return self.byte() == TRUE
        if ctype == BYTE:
            return struct.unpack("b", bytes([self.byte()]))[0]
        if ctype in (I16, I32, I64):
            return self.zigzag()
        if ctype == DOUBLE:
            value = struct.unpack_from("<d", self.data, self.pos)[0]
            self.pos += 8
            return value
        if ctype == BINARY:
            n = self.varint()
            if self.pos + n > len(self.data):
                raise ThriftError("binary runs past the end")
            value = bytes(self.data[self.pos:self.pos + n])
            self.pos += n
            return value
        if ctype in (LIST, SET):
            header = self.byte()
            n, element = header >> 4, header & 0x0F
            if n == 15:
                n = self.varint()
            return List(element, [self.value(element) for _ in range(n)], ctype)
        if ctype == MAP:
            n = self.varint()
            if n == 0:
                return Map(0, 0, [])
            types = self.byte()
            k, v = types >> 4, types & 0x0F
            return Map(k, v, [(self.value(k), self.value(v)) for _ in range(n)])
        if ctype == STRUCT:
            return self.struct()
        raise ThriftError(f"unknown compact type {ctype}")

    def struct(self) -> Struct:
        fields: Struct = {}
        last = 0
        while True:
            header = self.byte()
            if header == STOP:
                return fields
            delta, ctype = header >> 4, header & 0x0F
            fid = last + delta if delta else self.zigzag()
            if ctype in (TRUE, FALSE):
                fields[fid] = (BOOL, ctype == TRUE)
            else:
                fields[fid] = (ctype, self.value(ctype))
            last = fid


def _varint(out: bytearray, n: int) -> None:
    while True:
        if n < 0x80:
            out.append(n)
            return
        out.append((n & 0x7F) | 0x80)
        n >>= 7


def _zigzag(out: bytearray, n: int) -> None:
    _varint(out, (n << 1) ^ (n >> 63))


def _write_value(out: bytearray, ctype: int, value: object) -> None:
    if ctype in (TRUE, FALSE):
        out.append(TRUE if value else FALSE)
    elif ctype == BYTE:
        out += struct.pack("b", value)
    elif ctype in (I16, I32, I64):
        _zigzag(out, int(value))
    elif ctype == DOUBLE:
        out += struct.pack("<d", value)
    elif ctype == BINARY:
        _varint(out, len(value))
        out += value
    elif ctype in (LIST, SET):
        n = len(value.values)
        out.append((min(n, 15) << 4) | value.element_type)
        if n >= 15:
            _varint(out, n)
        for item in value.values:
            _write_value(out, value.element_type, item)
    elif ctype == MAP:
        _varint(out, len(value.items))
        if value.items:
            out.append((value.key_type << 4) | value.value_type)
            for k, v in value.items:
                _write_value(out, value.key_type, k)
                _write_value(out, value.value_type, v)
    elif ctype == STRUCT:
        _write_struct(out, value)
    else:
        raise ThriftError(f"unknown compact type {ctype}")


def _write_struct(out: bytearray, fields: Struct) -> None:
    last = 0
    for fid in sorted(fields):  # thrift writers emit fields in id order
        ctype, value = fields[fid]
        wire_type = (TRUE if value else FALSE) if ctype == BOOL else ctype
        if 0 < fid - last <= 15:
            out.append(((fid - last) << 4) | wire_type)
        else:
            out.append(wire_type)
            _zigzag(out, fid)
        if ctype != BOOL:
            _write_value(out, ctype, value)
        last = fid
    out.append(STOP)
