"""Thrift compact protocol, read and written without an IDL (what parquet footers use).

Parquet's `FileMetaData` is a Thrift struct in the compact protocol. Types travel with the
values, so a footer can be decoded into plain Python values, a few fields edited, and
encoded again without knowing the rest of the schema: fields this module does not know
about (newer parquet versions add some) survive unchanged. Structs are `{field id:
(type, value)}` dicts; lists are `List(element type, [values])`.

No library in the project's stack can rewrite a parquet footer (pyarrow reads it but does
not write it back), hence this small codec; `parquet_footer` holds the parquet meaning.
This module holds the wire types and varints; `thrift_decode` and `thrift_encode` turn
bytes into values and back, and `thrift_walk` finds where values end without decoding them.
"""

from __future__ import annotations

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


INTS = frozenset((I16, I32, I64))  # zigzag varints on the wire


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """(value, position after it) of the varint at `pos`."""
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


def write_varint(out: bytearray, n: int) -> None:
    while True:
        if n < 0x80:
            out.append(n)
            return
        out.append((n & 0x7F) | 0x80)
        n >>= 7


def write_zigzag(out: bytearray, n: int) -> None:
    write_varint(out, (n << 1) ^ (n >> 63))
