"""Shared machinery for SQL stores: parameter markers, rendering, Arrow conversion, writes.

Backends subclass :class:`SqlStore` and fill in connection handling, type mapping and
introspection; the write algorithm (create if missing, validate and cast, stage, update matched
keys, insert new ones, all in one transaction) lives here once.

Names. Every store matches identifiers its own way, and a write must bind column names exactly
as the store will (a check that binds ``country`` while the store writes ``COUNTRY`` is a way
around a row filter): :meth:`SqlStore.name_key` is the store's rule (SQLite and DuckDB fold ASCII
case, Snowflake upper-cases unquoted names, Postgres compares quoted names exactly), and data
whose column names differ only in case is refused outright (:func:`reject_case_duplicates`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from headwater.errors import (
    ColumnNotFound,
    DatasetNotFound,
    HeadwaterError,
    WriteError,
)
from headwater.stores.base import Capabilities, RowChange, TableInfo, WriteMode, WriteResult

__all__ = [
    "SqlStore", "ascii_fold", "bind_columns", "bind_template", "bound_assignments", "cast_to_schema", "column_of",
    "param", "param_template", "reject_case_duplicates", "rows_to_batch", "split_params",
]

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def ascii_fold(name: str) -> str:
    """``name`` with ASCII letters lower-cased: how SQLite and DuckDB compare identifiers (other
    letters keep their case there: ``"É"`` and ``"é"`` are two columns)."""
    return name.translate(_ASCII_LOWER)


def reject_case_duplicates(names: Sequence[str], dataset: str) -> None:
    """``WriteError`` when two column names differ only in case (Unicode case folding).

    A store that folds case would write one of them and a check that folds case would read the
    other (DuckDB binds the first and renames the second), so such data is never written.
    """
    seen: dict[str, str] = {}
    for name in names:
        if not isinstance(name, str):
            raise WriteError(f"column names of data for {dataset} must be strings", dataset=dataset)
        other = seen.setdefault(name.casefold(), name)
        if other != name:
            raise WriteError(f"the data for {dataset} has columns {other!r} and {name!r}, which differ only "
                             "in case; send each column once", dataset=dataset, columns=[other, name])

_MARKER = "__hwparam{}__"
_MARKER_RE = re.compile(r"__hwparam(\d+)__")


def param(index: int) -> exp.Expression:
    """A placeholder for ``params[index]`` that survives rendering in every dialect."""
    return exp.Var(this=_MARKER.format(index))


def param_template(
    sql: str, placeholder: Callable[[int], str], *, pyformat: bool = False
) -> tuple[str, tuple[int, ...]]:
    """Replace parameter markers in rendered SQL with native placeholders, once.

    Returns the SQL and, per placeholder in order of appearance, the index of the parameter it
    takes (a marker may appear twice, or out of order, after rewriting). Reusable for every
    execution of the same tree.
    """
    if "__hwparam" not in sql:
        return sql, ()
    out: list[str] = []
    order: list[int] = []
    pos = 0
    for m in _MARKER_RE.finditer(sql):
        chunk = sql[pos : m.start()]
        out.append(chunk.replace("%", "%%") if pyformat else chunk)
        order.append(int(m.group(1)))
        out.append(placeholder(len(order)))
        pos = m.end()
    tail = sql[pos:]
    out.append(tail.replace("%", "%%") if pyformat else tail)
    return "".join(out), tuple(order)


def bind_template(order: Sequence[int], params: Sequence[Any]) -> list[Any]:
    """Parameter values in placeholder order for a :func:`param_template` result."""
    if order and max(order) >= len(params):
        raise HeadwaterError(f"query uses parameter {max(order) + 1} but only {len(params)} given")
    return [params[i] for i in order]


def split_params(
    sql: str, params: Sequence[Any], placeholder: Callable[[int], str], *, pyformat: bool = False
) -> tuple[str, list[Any]]:
    """Replace parameter markers with native placeholders; returns SQL and ordered values."""
    text, order = param_template(sql, placeholder, pyformat=pyformat)
    return text, bind_template(order, params)


def column_of(info: TableInfo, name: str, dataset: str) -> str:
    """The stored name of column ``name`` (case-insensitive), or ``ColumnNotFound``."""
    col = info.column(name)
    if col is None:
        raise ColumnNotFound(
            f"{dataset} has no column {name!r}; its columns are {', '.join(c.name for c in info.columns)}",
            dataset=dataset, column=name,
        )
    return col.name


def bind_columns(tree: exp.Expression, info: TableInfo, dataset: str) -> exp.Expression:
    """A copy of a row predicate or value expression whose column references are the table's
    own columns, unqualified and quoted as stored; unknown columns raise ``ColumnNotFound``.

    Columns inside subqueries belong to those subqueries and are left alone.
    """
    if not isinstance(tree, exp.Expression):
        raise WriteError(f"row predicates and values for {dataset} must be sqlglot expressions, "
                         f"not {type(tree).__name__}", dataset=dataset)
    tree = tree.copy()
    for col in list(tree.find_all(exp.Column)):
        if col.find_ancestor(exp.Select) is not None:
            continue
        stored = column_of(info, col.name, dataset)
        col.replace(exp.column(stored, quoted=True))
    return tree


def _column_array(values: Sequence[Any], type_: pa.DataType | None) -> pa.Array:
    if type_ is not None and not pa.types.is_null(type_):
        try:
            return pa.array(values, type=type_)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
            pass
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
        return pa.array([None if v is None else str(v) for v in values], type=pa.string())


def rows_to_batch(
    rows: Sequence[Sequence[Any]], names: Sequence[str], types: Sequence[pa.DataType | None]
) -> pa.RecordBatch:
    """Turn DB-API row tuples into one Arrow record batch, column by column."""
    if rows:
        columns = list(zip(*rows, strict=True))
    else:
        columns = [() for _ in names]
    arrays = [_column_array(col, t) for col, t in zip(columns, types, strict=True)]
    return pa.RecordBatch.from_arrays(arrays, names=list(names))


def unify_batches(first: pa.RecordBatch, rest: Iterator[pa.RecordBatch]) -> pa.RecordBatchReader:
    """A reader whose schema is the first batch's; later batches are cast to it."""
    schema = first.schema
    # Columns that were all-null in the first batch have no type yet: call them strings.
    fields = [
        pa.field(f.name, pa.string()) if pa.types.is_null(f.type) else f for f in schema
    ]
    schema = pa.schema(fields)

    def gen() -> Iterator[pa.RecordBatch]:
        yield _cast_batch(first, schema)
        for batch in rest:
            yield _cast_batch(batch, schema)

    return pa.RecordBatchReader.from_batches(schema, gen())


def _cast_batch(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    if batch.schema.equals(schema):
        return batch
    arrays = []
    for col, field in zip(batch.columns, schema, strict=True):
        if col.type.equals(field.type):
            arrays.append(col)
            continue
        try:
            arrays.append(col.cast(field.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            arrays.append(_column_array(col.to_pylist(), field.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def cast_to_schema(
    data: pa.Table, target: pa.Schema, dataset: str, *, fold: Callable[[str], str] = ascii_fold,
    partial: bool = False,
) -> pa.Table:
    """Check ``data`` against an existing table's schema and cast it, or raise ``WriteError``.

    Columns are matched by the store's identifier rule ``fold`` (default: ASCII case folded);
    columns that differ only in case, unknown columns and failed casts name the column. Columns of
    the target that ``data`` lacks are filled with nulls when nullable, or (``partial``, for
    upserts that keep the stored values of omitted columns) left out.
    """
    reject_case_duplicates(data.column_names, dataset)
    by_key = {fold(f.name): f for f in target}
    given = {fold(name): name for name in data.column_names}
    unknown = [name for key, name in given.items() if key not in by_key]
    if unknown:
        raise WriteError(
            f"{dataset} has no column(s) {', '.join(sorted(unknown))}; "
            f"its columns are {', '.join(f.name for f in target)}",
            dataset=dataset,
            columns=sorted(unknown),
        )
    arrays = []
    fields = []
    for field in target:
        src = given.get(fold(field.name))
        if src is None:
            if partial:
                continue
            if not field.nullable:
                raise WriteError(
                    f"{dataset}.{field.name} is required (NOT NULL) but the data has no such column",
                    dataset=dataset,
                    column=field.name,
                )
            arrays.append(pa.nulls(data.num_rows, type=field.type))
            fields.append(field)
            continue
        col = data.column(src)
        if not col.type.equals(field.type):
            try:
                col = col.cast(field.type, safe=True)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as err:
                raise WriteError(
                    f"{dataset}.{field.name} expects {field.type} but got {col.type} "
                    f"that does not convert safely",
                    dataset=dataset,
                    column=field.name,
                ) from _scrub(err)
        if not field.nullable and col.null_count:
            raise WriteError(
                f"{dataset}.{field.name} is NOT NULL but {col.null_count} row(s) have no value",
                dataset=dataset,
                column=field.name,
            )
        arrays.append(col)
        fields.append(field)
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _scrub(err: BaseException) -> BaseException | None:
    # Arrow messages can quote values; keep the chain for debugging but not the data.
    return None


def dedupe_last(data: pa.Table, key: Sequence[str]) -> pa.Table:
    """Keep the last row for each key value (upserts apply rows in order)."""
    if data.num_rows <= 1:
        return data
    idx = pa.array(range(data.num_rows), type=pa.int64())
    keyed = data.select(list(key)).append_column("__hw_idx", idx)
    last = keyed.group_by(list(key), use_threads=False).aggregate([("__hw_idx", "max")])
    if last.num_rows == data.num_rows:
        return data
    keep = pc.sort_indices(last.column("__hw_idx_max"))
    return data.take(pc.take(last.column("__hw_idx_max"), keep))


class SqlStore:
    """Base of SQL-speaking stores (SQLite, Postgres, DuckDB, Snowflake)."""

    kind: ClassVar[str] = "sql"
    name: str
    capabilities: Capabilities
    pyformat: ClassVar[bool] = False
    """Placeholders are ``%s`` and a literal ``%`` must be doubled."""

    # -- to override ------------------------------------------------------------------
    def _placeholder(self, n: int) -> str:
        return "?"

    def _transaction(self) -> AbstractContextManager[Any]:
        """Context manager yielding a DB-API cursor inside one transaction."""
        raise NotImplementedError(f"{self.kind} store does not implement _transaction")

    def _sql_type(self, type_: pa.DataType) -> str:
        raise NotImplementedError

    def _translate(self, err: Exception, *, sql: str | None = None) -> HeadwaterError:
        raise NotImplementedError

    def _physical(self, table: str) -> str:
        """Quoted physical name of a table inside the store."""
        return self._quote(table)

    def table_expr(self, table: str) -> exp.Table:
        """The physical table as a sqlglot node, for rewriting logical names."""
        return exp.to_table(self._physical(table), dialect=self.capabilities.dialect)

    def _quote(self, ident: str) -> str:
        return exp.to_identifier(ident, quoted=True).sql(dialect=self.capabilities.dialect)

    def name_key(self, name: str) -> str:
        """The key under which this store considers two identifiers the same (ASCII case
        folded: SQLite and DuckDB; Postgres and Snowflake override)."""
        return ascii_fold(name)

    def _insert_arrow(self, cur: Any, physical: str, data: pa.Table) -> None:
        """Insert an Arrow table with the open cursor (override for a faster bulk path)."""
        if data.num_rows == 0:
            return
        cols = ", ".join(self._quote(c) for c in data.column_names)
        marks = ", ".join(self._placeholder(i + 1) for i in range(data.num_columns))
        sql = f"INSERT INTO {physical} ({cols}) VALUES ({marks})"
        for batch in data.to_batches(max_chunksize=10_000):
            columns = [self._to_python(col) for col in batch.columns]
            cur.executemany(sql, list(zip(*columns, strict=True)))

    def _to_python(self, col: pa.Array) -> list[Any]:
        return col.to_pylist()

    def table(self, name: str) -> TableInfo:  # pragma: no cover - overridden
        raise NotImplementedError

    def _affected(self, cur: Any) -> int:
        """Rows the last DML statement on ``cur`` changed."""
        return int(cur.rowcount)

    # -- shared ----------------------------------------------------------------------
    def render_template(self, tree: exp.Expression) -> tuple[str, tuple[int, ...]]:
        """SQL text with native placeholders and the parameter index of each (cacheable)."""
        return param_template(tree.sql(dialect=self.capabilities.dialect), self._placeholder,
                              pyformat=self.pyformat)

    def render(self, tree: exp.Expression, params: Sequence[Any] = ()) -> tuple[str, list[Any]]:
        """Render ``tree`` in this store's dialect with native placeholders."""
        sql = tree.sql(dialect=self.capabilities.dialect)
        return split_params(sql, params, self._placeholder, pyformat=self.pyformat)

    def _table_or_none(self, name: str) -> TableInfo | None:
        try:
            return self.table(name)
        except DatasetNotFound:
            return None

    def _create_sql(self, physical: str, schema: pa.Schema, key: Sequence[str]) -> str:
        cols = [
            f"{self._quote(f.name)} {self._sql_type(f.type)}"
            + (" NOT NULL" if (not f.nullable or f.name in key) else "")
            for f in schema
        ]
        if key:
            cols.append(f"PRIMARY KEY ({', '.join(self._quote(k) for k in key)})")
        return f"CREATE TABLE {physical} ({', '.join(cols)})"

    def replace(self, table: str, data: pa.Table, *, key: Sequence[str] = ()) -> WriteResult:
        """Drop and recreate ``table`` with ``data``'s schema and rows in one transaction
        (``CREATE OR REPLACE TABLE ... AS``); on stores whose DDL commits (Snowflake) the swap is
        not atomic."""
        return _replace_table(self, table, data, key)

    def _merge_from_stage(
        self, cur: Any, physical: str, stage: str, key: Sequence[str], columns: Sequence[str]
    ) -> None:
        """Upsert the staged rows: set the staged non-key columns of rows whose key is staged,
        then insert the staged rows whose key is new. Columns the data left out keep their
        stored values on matched rows and take their defaults on new ones (an upsert never sets
        a column it was not given)."""
        q = self._quote
        rest = [c for c in columns if c not in key]
        if rest:
            sets = ", ".join(f"{q(c)} = s.{q(c)}" for c in rest)
            on = " AND ".join(f"{physical}.{q(k)} = s.{q(k)}" for k in key)
            cur.execute(f"UPDATE {physical} SET {sets} FROM {stage} AS s WHERE {on}")
        cols = ", ".join(q(c) for c in columns)
        picked = ", ".join(f"s.{q(c)}" for c in columns)
        match = " AND ".join(f"t.{q(k)} = s.{q(k)}" for k in key)
        cur.execute(f"INSERT INTO {physical} ({cols}) SELECT {picked} FROM {stage} AS s "
                    f"WHERE NOT EXISTS (SELECT 1 FROM {physical} AS t WHERE {match})")

    def _staging_name(self) -> str:
        return "hw_stage"

    def _create_staging(self, cur: Any, stage: str, physical: str, schema: pa.Schema) -> None:
        cols = ", ".join(f"{self._quote(f.name)} {self._sql_type(f.type)}" for f in schema)
        cur.execute(f"CREATE TEMPORARY TABLE {stage} ({cols})")

    def _drop_staging(self, cur: Any, stage: str) -> None:
        cur.execute(f"DROP TABLE IF EXISTS {stage}")

    def write(
        self,
        table: str,
        data: pa.Table,
        *,
        mode: WriteMode = WriteMode.APPEND,
        key: Sequence[str] = (),
    ) -> WriteResult:
        """Write ``data`` into ``table`` atomically (see :class:`headwater.stores.base.Store`)."""
        mode = WriteMode(mode)
        dataset = f"{self.name}.{table}"
        reject_case_duplicates(data.column_names, dataset)
        info = self._table_or_none(table)
        created = info is None
        key = upsert_key(mode, key, info, dataset)
        if info is not None:
            # An upsert writes only the columns it was given (omitted ones keep their values).
            data = cast_to_schema(data, info.schema, dataset, fold=self.name_key,
                                  partial=mode is WriteMode.UPSERT)
            key = tuple(_match_names(key, data.column_names, dataset, self.name_key))
        else:
            key = tuple(_match_names(key, data.column_names, dataset, self.name_key))
            data = _normalise_new(data)
        if mode is WriteMode.UPSERT:
            if any(data.column(k).null_count for k in key):
                raise WriteError(f"upsert into {dataset}: key columns must not be null", dataset=dataset)
            data = dedupe_last(data, key)
        physical = self._physical(table)
        try:
            with self._transaction() as cur:
                if created:
                    cur.execute(self._create_sql(physical, data.schema, key))
                if mode is WriteMode.OVERWRITE and not created:
                    cur.execute(f"DELETE FROM {physical}")
                if mode is WriteMode.UPSERT and not created:
                    stage = self._staging_name()
                    self._create_staging(cur, stage, physical, data.schema)
                    try:
                        self._insert_arrow(cur, stage, data)
                        self._merge_from_stage(cur, physical, stage, key, data.column_names)
                    finally:
                        self._drop_staging(cur, stage)
                else:
                    self._insert_arrow(cur, physical, data)
        except HeadwaterError:
            raise
        except Exception as err:  # noqa: BLE001 - translated at the boundary
            raise self._translate(err) from None
        return WriteResult(dataset=dataset, mode=mode, rows_written=data.num_rows, created=created)


    def delete_rows(
        self, table: str, where: exp.Expression, params: Sequence[Any] = ()
    ) -> WriteResult:
        """``DELETE FROM table WHERE where`` in one transaction (see ``Store.delete_rows``)."""
        info = self.table(table)
        dataset = f"{self.name}.{table}"
        tree = exp.Delete(this=self.table_expr(info.name),
                          where=exp.Where(this=bind_columns(where, info, dataset)))
        count = self._run_dml(tree, params)
        return WriteResult(dataset=dataset, mode=RowChange.DELETE, rows_written=count)

    def update_rows(
        self,
        table: str,
        assignments: Mapping[str, exp.Expression],
        where: exp.Expression,
        params: Sequence[Any] = (),
    ) -> WriteResult:
        """``UPDATE table SET ... WHERE where`` in one transaction (see ``Store.update_rows``)."""
        info = self.table(table)
        dataset = f"{self.name}.{table}"
        sets = bound_assignments(assignments, info, dataset)
        tree = exp.Update(
            this=self.table_expr(info.name),
            expressions=[exp.EQ(this=exp.column(c, quoted=True), expression=v) for c, v in sets],
            where=exp.Where(this=bind_columns(where, info, dataset)),
        )
        count = self._run_dml(tree, params)
        return WriteResult(dataset=dataset, mode=RowChange.UPDATE, rows_written=count)

    def _run_dml(self, tree: exp.Expression, params: Sequence[Any]) -> int:
        sql, values = self.render(tree, params)
        try:
            with self._transaction() as cur:
                cur.execute(sql, values)
                return self._affected(cur)
        except HeadwaterError:
            raise
        except Exception as err:  # noqa: BLE001 - translated at the boundary
            raise self._translate(err, sql=sql) from None


def bound_assignments(
    assignments: Mapping[str, exp.Expression], info: TableInfo, dataset: str
) -> list[tuple[str, exp.Expression]]:
    """Assignments with stored column names and bound value expressions."""
    if not assignments:
        raise WriteError(f"update of {dataset} needs at least one column to set", dataset=dataset)
    out: list[tuple[str, exp.Expression]] = []
    for name, value in assignments.items():
        if not isinstance(value, exp.Expression):
            raise WriteError(f"update of {dataset}: the value for {name!r} must be a sqlglot "
                             "expression (use param(i) for values)", dataset=dataset, column=name)
        out.append((column_of(info, name, dataset), bind_columns(value, info, dataset)))
    return out


def _replace_table(store: SqlStore, table: str, data: pa.Table, key: Sequence[str]) -> WriteResult:
    dataset = f"{store.name}.{table}"
    reject_case_duplicates(data.column_names, dataset)
    key = tuple(_match_names(key, data.column_names, dataset, store.name_key))
    data = _normalise_new(data)
    physical = store._physical(table)
    try:
        with store._transaction() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {physical}")
            cur.execute(store._create_sql(physical, data.schema, key))
            store._insert_arrow(cur, physical, data)
    except HeadwaterError:
        raise
    except Exception as err:  # noqa: BLE001 - translated at the boundary
        raise store._translate(err) from None
    return WriteResult(dataset=dataset, mode=WriteMode.OVERWRITE, rows_written=data.num_rows, created=True)


def upsert_key(mode: WriteMode, key: Sequence[str], info: TableInfo | None, dataset: str) -> Sequence[str]:
    """The key an upsert matches on: the given one, else the table's primary key."""
    if mode is not WriteMode.UPSERT:
        return key
    key = key or (info.primary_key if info is not None else ())
    if not key:
        raise WriteError(f"upsert into {dataset} needs key=[...] (the table has no primary key)",
                         dataset=dataset)
    return key


def _match_names(
    key: Sequence[str], columns: Sequence[str], dataset: str, fold: Callable[[str], str] = ascii_fold,
) -> list[str]:
    """The data's spelling of each key column, matched by the store's rule ``fold``."""
    by_key = {fold(c): c for c in columns}
    out = []
    for k in key:
        if not isinstance(k, str) or fold(k) not in by_key:
            raise WriteError(f"key column {k!r} is not a column of the data for {dataset}", dataset=dataset)
        out.append(by_key[fold(k)])
    return out


def _normalise_new(data: pa.Table) -> pa.Table:
    """Types a new table can hold everywhere: no nulls-only, large or dictionary columns."""
    fields = []
    arrays = []
    for f, col in zip(data.schema, data.columns, strict=True):
        t = f.type
        if pa.types.is_null(t):
            t = pa.string()
        elif pa.types.is_dictionary(t):
            t = t.value_type
        elif pa.types.is_large_string(t) or pa.types.is_string_view(t):
            t = pa.string()
        elif pa.types.is_large_binary(t):
            t = pa.binary()
        elif pa.types.is_timestamp(t) and t.unit == "ns":
            t = pa.timestamp("us", t.tz)
        if not t.equals(f.type):
            col = col.cast(t)
        fields.append(pa.field(f.name, t, True))
        arrays.append(col)
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))
