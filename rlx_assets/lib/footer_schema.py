"""The normalised footer's schema: renamed leaves, time columns declared UTC nanosecond
timestamps, and what makes a file not qualify for the footer rewrite."""

from __future__ import annotations

from rlx_assets.lib.footer_fields import (
    FMD_SCHEMA,
    INT64,
    INT_64,
    INT_SIGNED,
    LOGICAL_INTEGER,
    LOGICAL_TIMESTAMP,
    SE_CHILDREN,
    SE_CONVERTED,
    SE_LOGICAL,
    SE_NAME,
    SE_TYPE,
    TIMESTAMP_UNIT,
    TIMESTAMP_UTC,
    UNIT_NANOS,
)
from rlx_assets.lib.thrift_compact import (
    BINARY,
    BOOL,
    LIST,
    STRUCT,
    List,
    Struct,
    items_of,
    value_of,
)


class Unqualified(Exception):
    """The file does not qualify for the footer rewrite."""


def _leaves(metadata: Struct) -> list[Struct] | None:
    """The leaf columns of a flat schema, or None for a nested or malformed one."""
    elements = items_of(metadata, FMD_SCHEMA)
    if not elements:
        return None
    root, leaves = elements[0], elements[1:]
    if value_of(root, SE_CHILDREN, -1) != len(leaves):
        return None
    if any(SE_CHILDREN in leaf or SE_NAME not in leaf for leaf in leaves):
        return None
    return leaves


def _plain_int64(leaf: Struct) -> bool:
    if value_of(leaf, SE_TYPE) != INT64:
        return False
    logical = value_of(leaf, SE_LOGICAL)
    if logical is not None:
        integer = value_of(logical, LOGICAL_INTEGER)
        if integer is None or not value_of(integer, INT_SIGNED, False):
            return False
    return value_of(leaf, SE_CONVERTED, INT_64) == INT_64


def _utc_nanos() -> Struct:
    unit = {UNIT_NANOS: (STRUCT, {})}
    timestamp = {TIMESTAMP_UTC: (BOOL, True), TIMESTAMP_UNIT: (STRUCT, unit)}
    return {LOGICAL_TIMESTAMP: (STRUCT, timestamp)}


def edited_schema(elements: list[Struct], renames: dict[str, str],
                   timestamp_columns: tuple[str, ...]) -> tuple[list[Struct], list[str],
                                                                list[str], list[Struct]]:
    """(new schema elements, old names, new names, old leaves); raises Unqualified."""
    leaves = _leaves({FMD_SCHEMA: (LIST, List(STRUCT, elements))})
    if leaves is None:
        raise Unqualified
    names = [value_of(leaf, SE_NAME).decode("utf-8", "replace") for leaf in leaves]
    new_names = [renames.get(n, n) for n in names]
    if len(set(new_names)) != len(new_names):
        raise Unqualified
    new_leaves = []
    for leaf, old, new in zip(leaves, names, new_names, strict=True):
        leaf = dict(leaf)
        leaf[SE_NAME] = (BINARY, new.encode())
        if new in timestamp_columns and old != new:
            if not _plain_int64(leaf):
                raise Unqualified
            leaf.pop(SE_CONVERTED, None)
            leaf[SE_LOGICAL] = (STRUCT, _utc_nanos())
        new_leaves.append(leaf)
    return [elements[0], *new_leaves], names, new_names, leaves
