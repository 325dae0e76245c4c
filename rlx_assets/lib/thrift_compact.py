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


class Encoded(bytes):
    """A struct already encoded: written as it is wherever a struct value may go (a footer's
    row groups are encoded ahead, while other work runs)."""


def value_of(fields: Struct, fid: int, default: object = None) -> object:
    """The value of field `fid`, or `default` when the struct does not have it."""
    return fields[fid][1] if fid in fields else default


def items_of(fields: Struct, fid: int) -> list:
    """The elements of list field `fid` ([] when absent)."""
    return fields[fid][1].values if fid in fields else []


def decode_struct(data: bytes | memoryview, offset: int = 0) -> tuple[Struct, int]:
    """The struct starting at `offset`, and the offset just after it."""
    reader = _Reader(bytes(data), offset)
    try:
        return reader.struct(), reader.pos
    except (IndexError, struct.error, UnicodeDecodeError, RecursionError) as exc:
        raise ThriftError(f"truncated or malformed thrift struct ({exc})") from exc


def encode_struct(value: Struct) -> bytes:
    out = bytearray()
    _write_struct(out, value)
    return bytes(out)


_INTS = frozenset((I16, I32, I64))


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
        if ctype in _INTS:
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
            if element in _INTS:
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
            if ctype in _INTS:
                shift = result = 0
                while True:
                    b = data[pos]
                    pos += 1
                    result |= (b & 0x7F) << shift
                    if b < 0x80:
                        break
                    shift += 7
                    if shift > 70:
                        raise ThriftError("varint too long")
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
    if ctype in _INTS:
        n = int(value)
        z = (n << 1) ^ (n >> 63)
        if 0 <= z < 0x80:
            out.append(z)
        else:
            _varint(out, z)
    elif ctype == BINARY:
        n = len(value)
        if n < 0x80:
            out.append(n)
        else:
            _varint(out, n)
        out += value
    elif ctype == STRUCT:
        if isinstance(value, Encoded):
            out += value
        else:
            _write_struct(out, value)
    elif ctype in (LIST, SET):
        n = len(value.values)
        element = value.element_type
        out.append((min(n, 15) << 4) | element)
        if n >= 15:
            _varint(out, n)
        for item in value.values:
            _write_value(out, element, item)
    elif ctype in (TRUE, FALSE):
        out.append(TRUE if value else FALSE)
    elif ctype == BYTE:
        out += struct.pack("b", value)
    elif ctype == DOUBLE:
        out += struct.pack("<d", value)
    elif ctype == MAP:
        _varint(out, len(value.items))
        if value.items:
            out.append((value.key_type << 4) | value.value_type)
            for k, v in value.items:
                _write_value(out, value.key_type, k)
                _write_value(out, value.value_type, v)
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
