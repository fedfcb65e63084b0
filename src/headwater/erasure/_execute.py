"""Change and verify one dataset target through the store's row primitives.

The subject's value (text, as given) is converted to each key column's type as the store
reports it now (``int64`` columns compare with ``123``, strings with ``'123'``); a value that
cannot be of the column's type cannot be in it. Deletes and updates go through
``Store.delete_rows`` / ``Store.update_rows`` (one transaction on SQL stores; a file rewrite
and one manifest swap on Parquet). Verification is a separate ``SELECT count(*)`` of the
subject's rows on the store itself.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
from sqlglot import exp

from headwater.errors import ColumnNotFound, InvalidInput
from headwater.stores._sql import param
from headwater.stores.base import ColumnInfo, Store, TableInfo

__all__ = ["NOFIT", "anonymise_rows", "coerce", "count_rows", "delete_rows", "subject_predicate"]

NOFIT = object()
"""What :func:`coerce` returns for a value that cannot be of the type."""


def coerce(value: str, type_: pa.DataType) -> Any:
    """``value`` as a Python value of ``type_``, or ``NOFIT`` when it cannot be one."""
    try:
        if pa.types.is_integer(type_):
            return int(value)
        if pa.types.is_floating(type_):
            return float(value)
        if pa.types.is_decimal(type_):
            return decimal.Decimal(value)
        if pa.types.is_boolean(type_):
            low = value.lower()
            if low in ("true", "t", "1"):
                return True
            if low in ("false", "f", "0"):
                return False
            return NOFIT
        if pa.types.is_date(type_):
            return dt.date.fromisoformat(value)
        if pa.types.is_timestamp(type_):
            return dt.datetime.fromisoformat(value)
    except (ValueError, decimal.InvalidOperation):
        return NOFIT
    return value


def _column(info: TableInfo, name: str, dataset: str) -> ColumnInfo:
    col = info.column(name)
    if col is None:
        raise ColumnNotFound(f"{dataset} has no column {name!r} any more", dataset=dataset, column=name)
    return col


def subject_predicate(info: TableInfo, columns: Sequence[str], value: str,
                      dataset: str) -> tuple[exp.Expression | None, list[Any]]:
    """``col1 = ? OR col2 = ?`` over the key columns that can hold ``value`` (None: none can)."""
    conds: list[exp.Expression] = []
    params: list[Any] = []
    for name in columns:
        col = _column(info, name, dataset)
        v = coerce(value, col.type)
        if v is NOFIT:
            continue
        conds.append(exp.column(col.name, quoted=True).eq(param(len(params))))
        params.append(v)
    if not conds:
        return None, []
    return exp.or_(*conds) if len(conds) > 1 else conds[0], params


def count_rows(store: Store, table: str, columns: Sequence[str], value: str, dataset: str) -> int:
    """Rows of ``table`` whose key columns hold ``value``, counted by the store."""
    info = store.table(table)
    where, params = subject_predicate(info, columns, value, dataset)
    if where is None:
        return 0
    tree = exp.select(exp.alias_(exp.func("count", exp.Star()), "n")).from_(store.table_expr(info.name)).where(where)
    result = store.execute(*store.render(tree, params)).read_all()
    return int(result.column(0)[0].as_py() or 0)


def delete_rows(store: Store, table: str, columns: Sequence[str], value: str, dataset: str) -> int:
    """Delete the subject's rows; returns how many went."""
    info = store.table(table)
    where, params = subject_predicate(info, columns, value, dataset)
    if where is None:
        return 0
    return store.delete_rows(info.name, where, params).rows_written


def _surrogate(col: ColumnInfo, surrogate: str) -> exp.Expression | None:
    if pa.types.is_integer(col.type):
        # Negative, so it cannot collide with a real (positive) key; random per job.
        return exp.Literal.number(-(int(surrogate[:7], 16) + 1))
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        return exp.Literal.string(f"anon-{surrogate}")
    return exp.null() if col.nullable else None


def anonymise_rows(store: Store, table: str, columns: Sequence[str], value: str, dataset: str,
                   surrogate: str, pii_columns: Sequence[str]) -> tuple[int, list[str]]:
    """Replace the key columns with the job's surrogate and null the PII columns of the
    subject's rows (a not-null text column gets the surrogate). Returns (rows, columns changed)."""
    info = store.table(table)
    where, params = subject_predicate(info, columns, value, dataset)
    if where is None:
        return 0, []
    sets: dict[str, exp.Expression] = {}
    for name in columns:
        col = _column(info, name, dataset)
        v = _surrogate(col, surrogate)
        if v is None:
            raise InvalidInput(f"{dataset}.{col.name} ({col.type}, not null) cannot be anonymised; "
                               "erase with mode='delete'", dataset=dataset, column=col.name)
        sets[col.name] = v
    for name in pii_columns:
        col = info.column(name)
        if col is None or col.name in sets:
            continue
        v = exp.null() if col.nullable else _surrogate(col, surrogate)
        if v is not None:
            sets[col.name] = v
    n = store.update_rows(info.name, sets, where, params).rows_written
    return n, list(sets)
