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

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rlx_assets.lib.stores import write_error

_HINT = getattr(os, "POSIX_FADV_DONTNEED", None)  # not on macOS or Windows


HINT_BYTES = 8 * 1024 * 1024  # start writeback once this much has been written since
COPY_BYTES = HINT_BYTES  # bytes per kernel copy, each then handed to writeback
_NO_KERNEL_COPY = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EBADF,
                   errno.EPERM}


class WritebackFile:
    """Wraps a binary file open for writing; every HINT_BYTES written start their writeback
    (so many small writes, as a parquet writer makes, cost no syscall each)."""

    def __init__(self, handle, path: Path) -> None:
        self.handle, self.path, self.offset, self._hinted = handle, path, 0, 0

    def write(self, data: bytes | memoryview) -> int:
        try:
            written = self.handle.write(data)
            self.offset += written
            self._hint()
        except OSError as exc:
            raise write_error(self.path, exc) from exc
        return written

    def _hint(self) -> None:
        if _HINT is not None and self.offset - self._hinted >= HINT_BYTES:
            self.handle.flush()
            os.posix_fadvise(self.handle.fileno(), self._hinted, self.offset - self._hinted,
                             _HINT)
            self._hinted = self.offset

    def copy_from(self, source, count: int) -> None:
        """Append `count` bytes of the open file `source`, from its position, copied by the
        kernel (`copy_file_range`: no trip through Python) where it can, else read and
        written here. A failed read of `source` is an OSError; a failed write a LakeError."""
        self.handle.flush()
        remaining = count
        while remaining:
            try:
                moved = os.copy_file_range(source.fileno(), self.handle.fileno(),
                                           min(remaining, COPY_BYTES))
            except (AttributeError, OSError) as exc:
                if isinstance(exc, OSError) and exc.errno not in _NO_KERNEL_COPY:
                    raise write_error(self.path, exc) from exc
                break  # not on this system or between these filesystems: copy it here
            if moved == 0:
                raise OSError(f"{self.path.name}: the source ended {remaining:,} bytes early")
            remaining -= moved
            self.offset += moved
            self._hint()
        self.handle.seek(0, os.SEEK_END)  # the buffered writer learns where the kernel left it
        while remaining and (chunk := source.read(min(remaining, COPY_BYTES))):
            self.write(chunk)
            remaining -= len(chunk)
        if remaining:
            raise OSError(f"{self.path.name}: the source ended {remaining:,} bytes early")


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
