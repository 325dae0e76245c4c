"""The footer edit of a vendor file, started early and run beside other work: `FooterJob`.

A busy vendor day's footer describes thousands of row groups (2 MB of Thrift for a 30M-row
book_delta_v2 day); editing it takes a quarter of a second (`parquet_footer.edit_footer`
walks the bytes). `ingest` starts it as soon as the footer's bytes are known - read from
the vendor (the file's last bytes, one ranged request) before the download - so it runs on
a thread while the day downloads; `normalise` checks that the downloaded file ends with the
same bytes before using it.

`group_rows()` gives the rows of each row group (None when the file does not qualify for
the rewrite); `encode(patches, column)` adds the replaced time chunks (if any) and returns
the normalised footer's bytes (None: does not qualify).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from rlx_assets.lib.footer_read import NotParquet, footer_from_tail
from rlx_assets.lib.parquet_footer import FooterEdit, edit_footer
from rlx_assets.lib.thrift_compact import Struct

TAIL = 8  # a parquet file ends with the footer's length (4 bytes) and PAR1


def read_tail(read_last: Callable[[int], bytes], name: str) -> bytes:
    """The footer and the 8 bytes after it, from `read_last(n)` (the last n bytes)."""
    end = read_last(TAIL)
    if len(end) != TAIL or end[4:] != b"PAR1":
        raise NotParquet(f"{name} does not end in PAR1 (truncated or encrypted)")
    return read_last(int.from_bytes(end[:4], "little") + TAIL)


class FooterJob:
    """The normalised footer of the file of `file_size` bytes ending with `tail`, being
    edited on a thread."""

    def __init__(self, tail: bytes, file_size: int, renames: dict[str, str],
                 time_columns: tuple[str, ...]) -> None:
        self.tail = tail
        self._thread = ThreadPoolExecutor(1)
        self._edit = self._thread.submit(
            lambda: edit_footer(footer_from_tail(tail, file_size), renames, time_columns))

    def _result(self) -> FooterEdit | None:
        return self._edit.result()

    def group_rows(self) -> list[int] | None:
        edit = self._result()
        return edit.group_rows if edit is not None else None

    def encode(self, patches: dict[int, Struct] | None, column: str) -> bytes | None:
        edit = self._result()
        return edit.encode(patches, column) if edit is not None else None

    def close(self) -> None:
        """Wait for the thread (idempotent)."""
        self._thread.shutdown(wait=True)
