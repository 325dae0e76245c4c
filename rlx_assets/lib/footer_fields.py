"""Parquet's footer vocabulary: the field ids of `FileMetaData` and the structs under it,
and the few type codes the footer rewrite (`parquet_footer`) reads or writes."""

from __future__ import annotations

from rlx_assets.lib.thrift_compact import BINARY

INT64 = 2  # parquet physical type
INT_64 = 18  # converted type of a signed 64-bit integer

# FileMetaData, SchemaElement, RowGroup, ColumnChunk, ColumnMetaData, KeyValue field ids
# (parquet-format's parquet.thrift).
FMD_SCHEMA, FMD_ROW_GROUPS, FMD_KEY_VALUES = 2, 4, 5
SE_TYPE, SE_REPETITION, SE_NAME, SE_CHILDREN, SE_CONVERTED, SE_LOGICAL = 1, 3, 4, 5, 6, 10
OPTIONAL = 1  # repetition type
RG_COLUMNS, RG_TOTAL_BYTES, RG_NUM_ROWS, RG_TOTAL_COMPRESSED = 1, 2, 3, 6
CC_FILE_PATH, CC_FILE_OFFSET, CC_META = 1, 2, 3
CC_INDEX_FIELDS = (4, 5, 6, 7)  # offset and column index of a chunk's pages
FILE_PATH_HEADER = (CC_FILE_PATH << 4) | BINARY  # a ColumnChunk that opens with file_path
CMD_PATH, CMD_UNCOMPRESSED, CMD_COMPRESSED = 3, 6, 7
CMD_DATA_PAGE, CMD_INDEX_PAGE, CMD_DICTIONARY_PAGE = 9, 10, 11
KV_KEY, KV_VALUE = 1, 2
LOGICAL_INTEGER, LOGICAL_TIMESTAMP = 10, 8
INT_SIGNED = 2
TIMESTAMP_UTC, TIMESTAMP_UNIT, UNIT_NANOS = 1, 2, 3
