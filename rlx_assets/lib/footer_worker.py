"""Editing a big vendor footer in a second process, beside the measuring pass.

The footer of a busy vendor day holds about a million Thrift values (thousands of row
groups, or hundreds of the 83-column book); decoding, editing and encoding them is pure
Python (`thrift_compact`), a second or two. On a thread beside the measuring pass it would
hold the GIL that the pass needs and double the pass's time (measured: 1.1 s alone, 2.0 s
beside a footer thread, for a 30M-row book_delta_v2 day); in its own process it runs on
the other core. Small footers are edited in-process: starting a process costs more than
they do.

`FooterWorker(path, renames, time_columns)` starts `python -m rlx_assets.lib.footer_worker`,
which decodes and edits the footer at once; `encode(patches, column)` hands it the replaced
time chunks (if any) and returns the footer's bytes, or None when the file does not qualify
for the rewrite. The child imports only this module, `parquet_footer` and `thrift_compact`.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

from rlx_assets.lib.parquet_footer import NotParquet, Struct, edit_footer, read_footer

IN_PROCESS_BYTES = 1 << 20  # footers smaller than this are edited in-process


class FooterWorker:
    def __init__(self, path: Path, renames: dict[str, str],
                 time_columns: tuple[str, ...]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "rlx_assets.lib.footer_worker", str(path)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        pickle.dump((renames, time_columns), self.process.stdin)
        self.process.stdin.flush()

    def encode(self, patches: dict[int, Struct] | None, column: str) -> bytes | None:
        try:
            pickle.dump((patches, column), self.process.stdin)
            self.process.stdin.close()
            kind, value = pickle.load(self.process.stdout)
        except (OSError, EOFError, pickle.UnpicklingError):
            error = self.process.stderr.read().decode(errors="replace").strip()
            self.close()
            raise RuntimeError(f"the footer worker stopped: {error[-500:]}") from None
        self.close()
        if kind == "unreadable":
            raise NotParquet(value)
        return value

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None and not stream.closed:
                stream.close()


def _serve(path: Path) -> None:
    source, sink = sys.stdin.buffer, sys.stdout.buffer
    renames, time_columns = pickle.load(source)
    try:
        edit = edit_footer(read_footer(path), renames, time_columns)
    except NotParquet as exc:
        pickle.load(source)
        pickle.dump(("unreadable", str(exc)), sink)
        return
    except (KeyError, TypeError, AttributeError, ValueError):
        edit = None  # a footer shaped unlike any writer's: the caller re-encodes
    patches, column = pickle.load(source)
    pickle.dump(("footer", edit.encode(patches, column) if edit is not None else None), sink)
    sink.flush()


if __name__ == "__main__":
    _serve(Path(sys.argv[1]))
