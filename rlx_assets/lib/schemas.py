"""Pandera (polars backend) models of the normalised tables: the `schema` check's contract.

The model is the single source of truth. Its structural half (exact column set, dtypes)
is validated by pandera once per file against the normalised schema; its row-level half
(non-null columns, allowed `side` values) is turned into polars expressions that the
single streaming pass evaluates batch by batch, so a 30M-row day is not validated row by
row in Python.
"""

from __future__ import annotations

from functools import cache

import pandera.polars as pa
import polars as pl
import pyarrow as pa_arrow

from rlx_assets.lib.tables import TABLES

SIDES = ("buy", "sell")


def polars_dtype(dtype: pa_arrow.DataType) -> pl.DataType:
    return pl.from_arrow(pa_arrow.array([], type=dtype)).dtype


@cache
def table_schema(table: str) -> pa.DataFrameSchema:
    """Exact column set, dtypes, non-null required columns and allowed `side` values."""
    spec = TABLES[table]
    columns = {
        name: pa.Column(
            polars_dtype(dtype),
            nullable=name not in spec.required,
            checks=[pa.Check.isin(SIDES)] if name == "side" else None,
        )
        for name, dtype in spec.columns.items()
    }
    return pa.DataFrameSchema(columns, strict=True, name=table)


def structural_problems(table: str, schema: pl.Schema) -> list[str]:
    """Missing, unexpected or mistyped columns, each named in one sentence."""
    try:
        table_schema(table).validate(pl.DataFrame(schema=schema), lazy=True)
    except pa.errors.SchemaErrors as exc:
        return [_describe(row) for row in exc.failure_cases.iter_rows(named=True)]
    return []


def _describe(row: dict) -> str:
    column, check, case = row.get("column"), str(row.get("check")), row.get("failure_case")
    if check.startswith("dtype("):
        return f"column {column!r} has dtype {case}, expected {check[7:-2]}"
    if check == "column_in_dataframe":
        return f"column {case!r} is missing"
    if check == "column_in_schema":
        return f"column {case!r} is not expected"
    return f"column {column!r}: {check} failed for {case!r}"


def row_rules(table: str, schema: pl.Schema) -> dict[str, pl.Expr]:
    """Row-level rules of the model as {problem: expression flagging offending rows}."""
    rules: dict[str, pl.Expr] = {}
    for name, column in table_schema(table).columns.items():
        if name not in schema:
            continue
        if not column.nullable:
            rules[f"column {name!r} has nulls"] = pl.col(name).is_null()
        for check in column.checks:
            allowed = check.statistics.get("allowed_values")
            if check.name == "isin" and allowed is not None and schema[name] == pl.String:
                label = f"column {name!r} has values outside {sorted(allowed)}"
                rules[label] = pl.col(name).is_not_null() & ~pl.col(name).is_in(list(allowed))
    return rules
