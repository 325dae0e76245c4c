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
from collections.abc import Callable, Iterator
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
    reader = _Reader(bytes(data), offset)
    try:
        return reader.struct(), reader.pos
    except (IndexError, struct.error, UnicodeDecodeError, RecursionError) as exc:
        raise ThriftError(f"truncated or malformed thrift struct ({exc})") from exc


def encode_struct(value: Struct) -> bytes:
    out = bytearray()
    _write_struct(out, value)
    return bytes(out)


def encode_value(ctype: int, value: object) -> bytes:
    """One value (a field's, without its header) in the compact protocol."""
    out = bytearray()
    _write_value(out, ctype, value)
    return bytes(out)


def decode_value(data: bytes, ctype: int, offset: int = 0) -> object:
    """The value of type `ctype` starting at `offset`."""
    try:
        return _Reader(data, offset).value(ctype)
    except (IndexError, struct.error, UnicodeDecodeError, RecursionError) as exc:
        raise ThriftError(f"truncated or malformed thrift value ({exc})") from exc


# --- walking bytes without decoding them --------------------------------------------------
# A footer of thousands of row groups holds a million values, and an edit touches a few of
# them: walking the bytes (finding where each value ends) is ten times faster than decoding
# them into Python objects, and untouched spans are then copied as they are.

Span = tuple[int, int, int, int]  # field id, type, value start, value end


def _skip_varint(data: bytes, pos: int) -> int:
    while data[pos] & 0x80:
        pos += 1
    return pos + 1


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift > 70:
            raise ThriftError("varint too long")


def skip_value(data: bytes, pos: int, ctype: int) -> int:
    """Where the value of type `ctype` starting at `pos` ends. (Written out inline: this is
    the hot loop of a footer edit.)"""
    if ctype == I32 or ctype == I64 or ctype == I16:
        while data[pos] & 0x80:
            pos += 1
        return pos + 1
    if ctype == BINARY:
        n, pos = _read_varint(data, pos)
        if pos + n > len(data):
            raise ThriftError("binary runs past the end")
        return pos + n
    if ctype == STRUCT:
        return skip_struct(data, pos)
    if ctype == LIST or ctype == SET:
        header = data[pos]
        pos += 1
        n, element = header >> 4, header & 0x0F
        if n == 15:
            n, pos = _read_varint(data, pos)
        if element == I32 or element == I64 or element == I16:
            for _ in range(n):
                while data[pos] & 0x80:
                    pos += 1
                pos += 1
        elif element == STRUCT:
            for _ in range(n):
                pos = skip_struct(data, pos)
        else:
            for _ in range(n):
                pos = skip_value(data, pos, element)
        return pos
    if ctype in (TRUE, FALSE, BYTE):
        return pos + 1
    if ctype == DOUBLE:
        return pos + 8
    if ctype == MAP:
        n, pos = _read_varint(data, pos)
        if n:
            types = data[pos]
            pos += 1
            for _ in range(n):
                pos = skip_value(data, skip_value(data, pos, types >> 4), types & 0x0F)
        return pos
    raise ThriftError(f"unknown compact type {ctype}")


def skip_struct(data: bytes, pos: int) -> int:
    """Where the struct starting at `pos` ends (after its STOP)."""
    while True:
        header = data[pos]
        pos += 1
        if header == STOP:
            return pos
        if not header >> 4:  # a long field id follows
            while data[pos] & 0x80:
                pos += 1
            pos += 1
        ctype = header & 0x0F
        if ctype == I32 or ctype == I64 or ctype == I16:
            while data[pos] & 0x80:
                pos += 1
            pos += 1
        elif ctype == BINARY:
            b = data[pos]
            if b < 0x80:
                pos += 1 + b
                if pos > len(data):
                    raise ThriftError("binary runs past the end")
            else:
                pos = skip_value(data, pos, BINARY)
        elif ctype != TRUE and ctype != FALSE:  # a bool field's value is its type
            pos = skip_value(data, pos, ctype)


def _field_header(data: bytes, pos: int, last: int) -> tuple[int, int, int]:
    """(field id, type, position after the header) of the field header at `pos`; id 0 and
    type STOP at the end of a struct."""
    header = data[pos]
    pos += 1
    if header == STOP:
        return 0, STOP, pos
    delta, ctype = header >> 4, header & 0x0F
    if delta:
        return last + delta, ctype, pos
    v, pos = _read_varint(data, pos)
    return (v >> 1) ^ -(v & 1), ctype, pos


def _walk(data: bytes, pos: int, visit: Callable[[int, int, int], int | None] | None = None,
          ) -> Iterator[Span]:
    """The fields of the struct at `pos`, then (0, STOP, end, end) where the struct ends."""
    last = 0
    try:
        while True:
            fid, ctype, start = _field_header(data, pos, last)
            if ctype == STOP:
                yield 0, STOP, start, start
                return
            end = visit(fid, ctype, start) if visit is not None else None
            if end is None:
                end = start if ctype in (TRUE, FALSE) else skip_value(data, start, ctype)
            yield fid, ctype, start, end
            pos, last = end, fid
    except (IndexError, RecursionError) as exc:
        raise ThriftError(f"truncated or malformed thrift struct ({exc})") from exc


def struct_spans(data: bytes, pos: int,
                 visit: Callable[[int, int, int], int | None] | None = None,
                 ) -> tuple[list[Span], int]:
    """The fields of the struct at `pos` as (id, type, value start, value end), and where
    the struct ends. A bool field's value is its type: an empty span. `visit(id, type,
    start)` may walk a value itself and return where it ends (None: skip it here)."""
    *spans, (_, _, end, _) = _walk(data, pos, visit)
    return spans, end


def field_spans(data: bytes, pos: int, wanted: tuple[int, ...],
                until: int | None = None) -> tuple[dict[int, tuple[int, int, int]], int | None]:
    """{id: (type, value start, value end)} of the `wanted` fields of the struct at `pos`
    (the others are skipped), and where the struct ends; with `until`, the walk stops once
    that field is read (the end is then None)."""
    found: dict[int, tuple[int, int, int]] = {}
    for fid, ctype, start, end in _walk(data, pos):
        if ctype == STOP:
            return found, start
        if fid in wanted:
            found[fid] = (ctype, start, end)
            if fid == until:
                return found, None
    raise AssertionError("unreachable: a walk ends with STOP")


def list_header(data: bytes, pos: int) -> tuple[int, int, int]:
    """(element type, size, position of the first element) of the list at `pos`."""
    header = data[pos]
    n, element = header >> 4, header & 0x0F
    pos += 1
    if n == 15:
        n, pos = _read_varint(data, pos)
    return element, n, pos


def encode_list_header(element: int, n: int) -> bytes:
    out = bytearray([(min(n, 15) << 4) | element])
    if n >= 15:
        _varint(out, n)
    return bytes(out)


def assemble_struct(fields: list[tuple[int, int, bytes]]) -> bytes:
    """A struct from (id, type, encoded value) fields in id order; a bool field carries its
    value in its type (TRUE or FALSE) and no bytes."""
    out = bytearray()
    last = 0
    for fid, ctype, value in fields:
        if 0 < fid - last <= 15:
            out.append(((fid - last) << 4) | ctype)
        else:
            out.append(ctype)
            _zigzag(out, fid)
        out += value
        last = fid
    out.append(STOP)
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
                result, pos = _read_varint(data, pos)
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
