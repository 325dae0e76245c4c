"""Walking compact-protocol bytes without decoding them.

A footer of thousands of row groups holds a million values, and an edit touches a few of
them: walking the bytes (finding where each value ends) is ten times faster than decoding
them into Python objects, and untouched spans are then copied as they are.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from rlx_assets.lib.thrift_compact import (
    BINARY,
    BYTE,
    DOUBLE,
    FALSE,
    I16,
    I32,
    I64,
    LIST,
    MAP,
    SET,
    STOP,
    STRUCT,
    TRUE,
    ThriftError,
    read_varint,
)

Span = tuple[int, int, int, int]  # field id, type, value start, value end


def skip_value(data: bytes, pos: int, ctype: int) -> int:
    """Where the value of type `ctype` starting at `pos` ends. (Written out inline: this is
    the hot loop of a footer edit.)"""
    if ctype == I32 or ctype == I64 or ctype == I16:
        while data[pos] & 0x80:
            pos += 1
        return pos + 1
    if ctype == BINARY:
        n, pos = read_varint(data, pos)
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
            n, pos = read_varint(data, pos)
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
        n, pos = read_varint(data, pos)
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
    v, pos = read_varint(data, pos)
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
        n, pos = read_varint(data, pos)
    return element, n, pos
