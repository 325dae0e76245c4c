"""Large sequential file writes that start reaching the disk at once, and say where they
failed.

A vendor day is written twice (raw/ and its normalised copy), over a gigabyte for a busy
day. Left to the page cache, those bytes pile up as dirty pages until the kernel throttles
the writer to disk speed all at once, which makes a big day superlinearly slower than a
small one and leaves gigabytes unwritten when the step ends. Asking the kernel to write
each chunk out right after it is written (`posix_fadvise(DONTNEED)` starts writeback of
dirty pages without waiting for it) keeps the disk busy alongside the decoding instead.

A failed write (a full disk, a read-only mount) is a `LakeError` naming the file; the
caller removes the partial file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rlx_assets.lib.stores import write_error

_HINT = getattr(os, "POSIX_FADV_DONTNEED", None)  # not on macOS or Windows


HINT_BYTES = 8 * 1024 * 1024  # start writeback once this much has been written since


class WritebackFile:
    """Wraps a binary file open for writing; every HINT_BYTES written start their writeback
    (so many small writes, as a parquet writer makes, cost no syscall each)."""

    def __init__(self, handle, path: Path) -> None:
        self.handle, self.path, self.offset, self._hinted = handle, path, 0, 0

    def write(self, data: bytes | memoryview) -> int:
        try:
            written = self.handle.write(data)
            self.offset += written
            if _HINT is not None and self.offset - self._hinted >= HINT_BYTES:
                self.handle.flush()
                os.posix_fadvise(self.handle.fileno(), self._hinted, self.offset - self._hinted,
                                 _HINT)
                self._hinted = self.offset
        except OSError as exc:
            raise write_error(self.path, exc) from exc
        return written


@contextmanager
def writing(path: Path) -> Iterator[WritebackFile]:
    """Open `path` for writing; any OSError of open, write or close is a LakeError."""
    try:
        handle = open(path, "wb")
    except OSError as exc:
        raise write_error(path, exc) from exc
    try:
        yield WritebackFile(handle, path)
    finally:
        try:
            handle.close()
        except OSError as exc:
            raise write_error(path, exc) from exc
