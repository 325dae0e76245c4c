"""Nulls where the vendor wrote a sentinel time, without re-encoding the rest of the file.

The vendor's writer stores `0` (`-1` in trades) where the exchange gave no time; readers of
`ready/` must see null there, not 1970-01-01. Those rows are rare (a resync or two a day)
and sit in a few row groups, so only the time column chunk of each such row group is
re-encoded: pyarrow writes the nulled column into a small in-memory parquet file (one row
group per patched row group), and each of its column chunks is appended to the normalised
file after the vendor's data region, its page offsets moved to where it lands. The footer
(`parquet_footer.plan_rewrite`) then points those row groups at the new chunks; the old
ones stay behind as unreferenced bytes, and every other column chunk is the vendor's.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from rlx_assets.lib.footer_fields import (
    CC_FILE_OFFSET,
    CC_INDEX_FIELDS,
    CC_META,
    CMD_COMPRESSED,
    CMD_DATA_PAGE,
    CMD_DICTIONARY_PAGE,
    CMD_INDEX_PAGE,
    FMD_ROW_GROUPS,
    RG_COLUMNS,
)
from rlx_assets.lib.footer_read import footer_of
from rlx_assets.lib.thrift_compact import I64, STRUCT, Struct, items_of, value_of

GROUPS_PER_FILE = 64  # row groups re-encoded per in-memory file (bounded memory)


def nulled(values: pa.Array) -> pa.Array:
    """int64 times with every value <= 0 (the writer's "no time") as null."""
    ints = values.cast(pa.int64())
    array = ints.to_numpy(zero_copy_only=False)
    return pa.array(array, type=pa.int64(), mask=np.asarray(ints.is_null()) | (array <= 0))


def _relocated(chunk: Struct, data: bytes, position: int) -> tuple[Struct, bytes]:
    """A column chunk of an in-memory file, as bytes to append at `position` and its
    ColumnChunk struct with the page offsets moved there."""
    meta = dict(value_of(chunk, CC_META))
    start = value_of(meta, CMD_DICTIONARY_PAGE) or value_of(meta, CMD_DATA_PAGE)
    body = data[start:start + value_of(meta, CMD_COMPRESSED)]
    delta = position - start
    for field in (CMD_DATA_PAGE, CMD_DICTIONARY_PAGE):
        if field in meta:
            meta[field] = (I64, value_of(meta, field) + delta)
    meta.pop(CMD_INDEX_PAGE, None)
    moved = {k: v for k, v in chunk.items() if k not in CC_INDEX_FIELDS}
    moved[CC_META] = (STRUCT, meta)
    moved[CC_FILE_OFFSET] = (I64, position)
    return moved, body


def _runs(groups: list[int]) -> list[list[int]]:
    """Sorted group indexes cut into runs of consecutive ones."""
    runs: list[list[int]] = []
    for group in groups:
        if runs and runs[-1][-1] == group - 1:
            runs[-1].append(group)
        else:
            runs.append([group])
    return runs


def write_patches(raw_path: Path, column: str, groups: Iterable[int], group_rows: list[int],
                  out, digest, compression: str = "snappy") -> dict[int, Struct]:
    """Append re-encoded chunks of `column` (nulls for sentinels) for `groups` of the file at
    `raw_path` (`group_rows` rows per row group) to `out` (a `WritebackFile` positioned at the
    end of the data region), feeding `digest`; return {row group: its new ColumnChunk}."""
    source = pl.scan_parquet(raw_path).select(column)
    starts = np.cumsum([0, *group_rows])
    patches: dict[int, Struct] = {}
    ordered = sorted(groups)
    for first in range(0, len(ordered), GROUPS_PER_FILE):
        batch = ordered[first:first + GROUPS_PER_FILE]
        sink = pa.BufferOutputStream()
        schema = pa.schema([pa.field(column, pa.int64(), nullable=True)])
        with pq.ParquetWriter(sink, schema, compression=compression, use_dictionary=False,
                              data_page_version="2.0", write_statistics=True) as writer:
            for run in _runs(batch):  # consecutive groups: one read
                first_row = int(starts[run[0]])
                values = nulled(source.slice(first_row, int(starts[run[-1] + 1]) - first_row)
                                .collect().to_arrow().column(0).combine_chunks())
                for group in run:
                    table = pa.table([values.slice(int(starts[group]) - first_row,
                                                   group_rows[group])], schema=schema)
                    writer.write_table(table, row_group_size=max(1, table.num_rows))
        data = sink.getvalue().to_pybytes()
        written_groups = items_of(footer_of("patch", data).metadata, FMD_ROW_GROUPS)
        for group, written in zip(batch, written_groups, strict=True):
            [chunk] = items_of(written, RG_COLUMNS)
            patches[group], body = _relocated(chunk, data, out.offset)
            out.write(body)
            digest.update(body)
    return patches
