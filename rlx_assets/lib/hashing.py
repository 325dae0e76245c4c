"""sha256 of files and streams, and of "this file's first N bytes, then other bytes".

The ready file of a partition is the vendor file's bytes up to its footer followed by a
new footer (see `parquet_footer`). Its sha256 therefore shares a prefix with the vendor
file's, which the download hashes anyway: `StreamHash` keeps the hash state at the last
few chunk boundaries, so the ready file's hash costs a few megabytes instead of a
second pass over a gigabyte.
"""

from __future__ import annotations

import hashlib
from collections import deque
from pathlib import Path

CHUNK_BYTES = 8 * 1024 * 1024
KEPT_STATES = 3  # chunk boundaries remembered: footers sit in the last chunk or two


class StreamHash:
    """sha256 of the bytes fed in order, remembering the state at recent chunk boundaries."""

    def __init__(self) -> None:
        self._digest = hashlib.sha256()
        self.size = 0
        self._states: deque[tuple[int, hashlib._Hash]] = deque(maxlen=KEPT_STATES)

    @classmethod
    def of_file(cls, path: Path) -> StreamHash:
        digest = cls()
        with open(path, "rb") as handle:
            while chunk := handle.read(CHUNK_BYTES):
                digest.update(chunk)
        return digest

    def update(self, chunk: bytes) -> None:
        self._states.append((self.size, self._digest.copy()))
        self._digest.update(chunk)
        self.size += len(chunk)

    def hexdigest(self) -> str:
        return self._digest.hexdigest()

    def prefix(self, path: Path, length: int) -> hashlib._Hash | None:
        """The hash state after the first `length` bytes of `path` (the file that was fed
        in), or None when `length` is before the remembered boundaries."""
        usable = [(offset, state) for offset, state in self._states if offset <= length]
        if not usable or length > self.size:
            return None
        offset, state = usable[-1]
        digest = state.copy()
        with open(path, "rb") as handle:
            handle.seek(offset)
            remaining = length - offset
            while remaining and (chunk := handle.read(min(remaining, CHUNK_BYTES))):
                digest.update(chunk)
                remaining -= len(chunk)
        return digest


def sha256_file(path: Path) -> str:
    return StreamHash.of_file(path).hexdigest()
