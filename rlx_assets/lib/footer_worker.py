"""The footer edit of a vendor file, started early and run beside other work: `FooterJob`.

The footer of a busy vendor day holds about a million Thrift values (thousands of row
groups, or hundreds of the 83-column book); decoding, editing and encoding them is pure
Python (`thrift_compact`), a second or two. Two things keep that off the critical path:

- It starts as soon as the footer's bytes are known: `ingest` reads them from the vendor
  (the file's last bytes, one ranged request) before the download, so the edit runs while
  the day downloads; `normalise` checks that the downloaded file ends with the same bytes.
- A big footer is edited in a second process (`python -m rlx_assets.lib.footer_worker`),
  not on a thread: a thread would hold the GIL that the measuring pass needs and double the
  pass's time (measured: 1.1 s alone, 2.0 s beside a footer thread, for a 30M-row
  book_delta_v2 day). Small footers are edited on a thread: a process costs more than they
  do. The child imports only this module, `parquet_footer` and `thrift_compact`.

`group_rows()` gives the rows of each row group once the footer is decoded (None when the
file does not qualify for the rewrite); `encode(patches, column)` hands the job the replaced
time chunks (if any) and returns the normalised footer's bytes (None: does not qualify).
"""

from __future__ import annotations

import pickle
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from rlx_assets.lib.parquet_footer import (
    FooterEdit,
    NotParquet,
    Struct,
    edit_footer,
    footer_from_tail,
)

IN_PROCESS_BYTES = 1 << 20  # footers smaller than this are edited on a thread
TAIL = 8  # a parquet file ends with the footer's length (4 bytes) and PAR1


def read_tail(read_last: Callable[[int], bytes], name: str) -> bytes:
    """The footer and the 8 bytes after it, from `read_last(n)` (the last n bytes)."""
    end = read_last(TAIL)
    if len(end) != TAIL or end[4:] != b"PAR1":
        raise NotParquet(f"{name} does not end in PAR1 (truncated or encrypted)")
    return read_last(int.from_bytes(end[:4], "little") + TAIL)


def _edit(tail: bytes, file_size: int, renames: dict[str, str],
          time_columns: tuple[str, ...]) -> FooterEdit | None:
    footer = footer_from_tail(tail, file_size)
    try:
        edit = edit_footer(footer, renames, time_columns)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        if isinstance(exc, NotParquet):
            raise
        return None  # a footer shaped unlike any writer's: the caller re-encodes
    return edit.prepare() if edit is not None else None


class FooterJob:
    """The normalised footer of the file ending with `tail`, being edited."""

    def __init__(self, tail: bytes, file_size: int, renames: dict[str, str],
                 time_columns: tuple[str, ...]) -> None:
        self.tail = tail
        self.process: subprocess.Popen | None = None
        self.edited: Future | None = None
        self._threads: ThreadPoolExecutor | None = None
        request = (tail, file_size, renames, time_columns)
        if len(tail) > IN_PROCESS_BYTES:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "rlx_assets.lib.footer_worker"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            pickle.dump(request, self.process.stdin)
            self.process.stdin.flush()
        else:
            self._threads = ThreadPoolExecutor(1)
            self.edited = self._threads.submit(_edit, *request)
        self._request = request
        self._local: FooterEdit | None = None  # the edit, when done here after all
        self._rows: list[int] | None = None

    def _fallback(self) -> FooterEdit | None:
        """The worker could not run here: do it in-process."""
        self.close()
        if self.edited is None:
            self._threads = ThreadPoolExecutor(1)
            self.edited = self._threads.submit(_edit, *self._request)
            self.process = None
        return self.edited.result()

    def group_rows(self) -> list[int] | None:
        """Rows per row group (waits for the footer to be decoded); None: not qualifying."""
        if self.process is None:
            edit = self.edited.result()
            return edit.group_rows if edit is not None else None
        if self._rows is None:
            try:
                kind, value = pickle.load(self.process.stdout)
            except (OSError, EOFError, pickle.UnpicklingError):
                edit = self._fallback()
                return edit.group_rows if edit is not None else None
            if kind == "unreadable":
                raise NotParquet(value)
            self._rows = value
        return self._rows

    def encode(self, patches: dict[int, Struct] | None, column: str) -> bytes | None:
        if self.process is not None and self.group_rows() is None:
            return None
        if self.process is None:
            edit = self.edited.result()
            return edit.encode(patches, column) if edit is not None else None
        try:
            pickle.dump((patches, column), self.process.stdin)
            self.process.stdin.close()
            kind, value = pickle.load(self.process.stdout)
            self.process.wait(timeout=10)  # it exits once it has answered
        except (OSError, EOFError, pickle.UnpicklingError, subprocess.TimeoutExpired):
            edit = self._fallback()
            return edit.encode(patches, column) if edit is not None else None
        return value

    def close(self) -> None:
        """Stop the work (idempotent)."""
        if self._threads is not None:
            self._threads.shutdown(wait=True)
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait()
            for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
                if stream is not None and not stream.closed:
                    stream.close()


def _serve() -> None:
    source, sink = sys.stdin.buffer, sys.stdout.buffer
    request = pickle.load(source)
    try:
        edit = _edit(*request)
    except NotParquet as exc:
        pickle.dump(("unreadable", str(exc)), sink)
        sink.flush()
        return
    pickle.dump(("layout", edit.group_rows if edit is not None else None), sink)
    sink.flush()
    if edit is None:
        return
    patches, column = pickle.load(source)
    pickle.dump(("footer", edit.encode(patches, column)), sink)
    sink.flush()


if __name__ == "__main__":
    _serve()
