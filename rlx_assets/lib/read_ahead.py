"""Read the next piece while the caller works on this one.

polars and pyarrow decode without holding the GIL, and numpy's sorts and ufuncs release it
too, so on two cores reading piece k+1 in a worker thread overlaps the work on piece k.
Memory holds two pieces at a time, never more."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

Item = TypeVar("Item")
Piece = TypeVar("Piece")


def read_ahead(read: Callable[[Item], Piece], items: Iterable[Item]) -> Iterator[Piece]:
    """`read(item)` for each item in order, one read ahead of the caller. The reads run one
    after another in a single worker, so `read` may keep state from piece to piece; the
    caller must not share that state (what a read needs later, it returns)."""
    with ThreadPoolExecutor(1) as reader:
        pending: Future[Piece] | None = None
        for item in items:
            upcoming = reader.submit(read, item)
            if pending is not None:
                yield pending.result()
            pending = upcoming
        if pending is not None:
            yield pending.result()
