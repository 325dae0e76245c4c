"""Encoding Python values, or structs assembled from encoded fields, as compact-protocol
bytes (`thrift_compact` has the types)."""

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
    Struct,
    ThriftError,
    write_varint,
    write_zigzag,
)


def encode_struct(value: Struct) -> bytes:
    out = bytearray()
    _write_struct(out, value)
    return bytes(out)


def encode_value(ctype: int, value: object) -> bytes:
    """One value (a field's, without its header) in the compact protocol."""
    out = bytearray()
    _write_value(out, ctype, value)
    return bytes(out)


def encode_list_header(element: int, n: int) -> bytes:
    out = bytearray([(min(n, 15) << 4) | element])
    if n >= 15:
        write_varint(out, n)
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
            write_zigzag(out, fid)
        out += value
        last = fid
    out.append(STOP)
    return bytes(out)


def _write_value(out: bytearray, ctype: int, value: object) -> None:
    if ctype in INTS:
        n = int(value)
        z = (n << 1) ^ (n >> 63)
        if 0 <= z < 0x80:
            out.append(z)
        else:
            write_varint(out, z)
    elif ctype == BINARY:
        n = len(value)
        if n < 0x80:
            out.append(n)
        else:
            write_varint(out, n)
        out += value
    elif ctype == STRUCT:
        _write_struct(out, value)
    elif ctype in (LIST, SET):
        n = len(value.values)
        element = value.element_type
        out.append((min(n, 15) << 4) | element)
        if n >= 15:
            write_varint(out, n)
        for item in value.values:
            _write_value(out, element, item)
    elif ctype in (TRUE, FALSE):
        out.append(TRUE if value else FALSE)
    elif ctype == BYTE:
        out += struct.pack("b", value)
    elif ctype == DOUBLE:
        out += struct.pack("<d", value)
    elif ctype == MAP:
        write_varint(out, len(value.items))
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
            write_zigzag(out, fid)
        if ctype != BOOL:
            _write_value(out, ctype, value)
        last = fid
    out.append(STOP)
