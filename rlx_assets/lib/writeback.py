"""Large sequential file writes that start reaching the disk at once.

A vendor day is written twice (raw/ and its normalised copy), over a gigabyte for a busy
day. Left to the page cache, those bytes pile up as dirty pages until the kernel throttles
the writer to disk speed all at once, which makes a big day superlinearly slower than a
small one and leaves gigabytes unwritten when the step ends. Asking the kernel to write
each chunk out right after it is written (`posix_fadvise(DONTNEED)` starts writeback of
dirty pages without waiting for it) keeps the disk busy alongside the decoding instead.
"""

from __future__ import annotations

import os
from typing import BinaryIO

_HINT = getattr(os, "POSIX_FADV_DONTNEED", None)  # not on macOS or Windows


class WritebackFile:
    """Wraps a binary file open for writing; every `write` also starts its writeback."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle, self.offset = handle, 0

    def write(self, data: bytes | memoryview) -> int:
        written = self.handle.write(data)
        if _HINT is not None and written:
            self.handle.flush()
            os.posix_fadvise(self.handle.fileno(), self.offset, written, _HINT)
        self.offset += written
        return written
