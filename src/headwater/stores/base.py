"""The ``Store`` protocol every backend implements, and the value types it speaks.

A store is one physical system (a SQLite file, a Postgres database, a DuckDB file, a Snowflake
database, a folder or bucket of Parquet datasets) known to the platform under a logical name
(``app``, ``warehouse``, ``lake``). Callers never see driver objects or driver exceptions: the
store returns Arrow and raises :mod:`headwater.errors`.

Capabilities are data (:class:`Capabilities`): callers ask ``store.capabilities.sql`` rather
than catching ``NotImplementedError``.

Principal reads and the platform's own reads. ``execute(..., scope=ReadScope(...))`` runs SQL
on a principal's behalf through the store's backstop (a locked DuckDB instance in a read-only
transaction, a read-only SQLite connection with an authorizer, a Postgres reader role in
read-only transactions, a Snowflake reader role): the planner and the policy engine already
rewrote it, and the backstop refuses anything but the planned reads with
:class:`~headwater.errors.QueryRejected` (``rule="store-backstop"``) should that rewrite ever miss.
``execute`` without ``scope`` is the platform's own read (sync, CDC, retention, erasure); it
never carries principal SQL. See ``docs/store-security.md``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

import pyarrow as pa
from sqlglot import exp

__all__ = [
    "Capabilities",
    "BACKSTOP_RULE",
    "ColumnInfo",
    "ReadScope",
    "RowChange",
    "Store",
    "TableInfo",
    "WriteMode",
    "WriteResult",
]


class WriteMode(enum.StrEnum):
    """How ``Store.write`` combines new rows with the rows already in the table."""

    APPEND = "append"
    """Add the rows."""
    UPSERT = "upsert"
    """Replace rows whose key matches a new row, add the others (last row per key wins)."""
    OVERWRITE = "overwrite"
    """Replace the whole table's rows."""


class RowChange(enum.StrEnum):
    """What ``Store.delete_rows`` / ``Store.update_rows`` did (the ``mode`` of their result)."""

    DELETE = "delete"
    """Rows matching a predicate were removed."""
    UPDATE = "update"
    """Columns of rows matching a predicate were set."""


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a store can do; planners read this instead of probing."""

    sql: bool
    """Runs SQL itself (False for Parquet datasets, which DuckDB queries on their behalf)."""
    dialect: str
    """sqlglot dialect name used to render SQL for this store."""
    transactions: bool = True
    """Writes are atomic per call."""
    explain: bool = True
    """``explain`` returns the store's own plan."""
    timeout: bool = True
    """Statement timeouts are enforced by the store itself."""


BACKSTOP_RULE = "store-backstop"
"""The ``rule`` of every :class:`~headwater.errors.QueryRejected` a store's backstop raises."""


@dataclass(frozen=True, slots=True)
class ReadScope:
    """What one principal read may touch in one store: the planned tables and their columns.

    Built by the session from the plan (the datasets the planner resolved, their catalogued
    columns minus those the policy hides, plus the columns the policy's own row filters read).
    Names are physical table names in the store and column names, both lower-cased. Stores
    that can check reads per column (SQLite's authorizer) allow exactly these; the others use
    the scope as the mark of a principal read (role, read-only transaction, locked engine).
    """

    tables: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """Physical table name (lower case) -> column names (lower case) the read may use."""
    views: frozenset[str] = frozenset()
    """Names registered on a federation engine for this read (Arrow streams, lake datasets)."""
    directories: tuple[str, ...] = ()
    """Local directories DuckDB itself must read for this query (``allowed_directories``);
    empty unless a source is read by DuckDB's own file system (never the principal's paths)."""

    def allows_table(self, table: str) -> bool:
        """Whether ``table`` (any case) is one of the planned tables."""
        return table.lower() in self.tables

    def allows_column(self, table: str, column: str) -> bool:
        """Whether ``column`` of ``table`` (any case) may be read."""
        cols = self.tables.get(table.lower())
        return cols is not None and column.lower() in cols


@dataclass(frozen=True, slots=True)
class ColumnInfo:
    """One column as introspected from a store."""

    name: str
    type: pa.DataType
    nullable: bool = True
    primary_key: bool = False


@dataclass(frozen=True, slots=True)
class TableInfo:
    """One table (or Parquet dataset) as introspected from a store."""

    name: str
    """Name inside the store, without the store's logical name (``customers``)."""
    columns: tuple[ColumnInfo, ...]
    location: str
    """Physical location for humans and lineage (``postgres://host/db/public.customers``)."""
    primary_key: tuple[str, ...] = ()
    row_count: int | None = None

    @property
    def schema(self) -> pa.Schema:
        """The table's columns as an Arrow schema."""
        return pa.schema([pa.field(c.name, c.type, c.nullable) for c in self.columns])

    def column(self, name: str) -> ColumnInfo | None:
        """The column called ``name`` (case-insensitive), or None."""
        low = name.lower()
        for col in self.columns:
            if col.name.lower() == low:
                return col
        return None


@dataclass(slots=True)
class WriteResult:
    """What a write did (for ``delete_rows``/``update_rows``: ``rows_written`` is the number of
    rows deleted or updated and ``mode`` a :class:`RowChange`)."""

    dataset: str
    mode: WriteMode | RowChange
    rows_written: int
    created: bool = False
    details: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Store(Protocol):
    """One physical data store behind one interface.

    Required methods raise :class:`headwater.errors.StoreError` subclasses, never driver
    exceptions. Optional ones raise ``NotImplementedError`` naming the backend, and the matching
    :class:`Capabilities` flag is False.
    """

    kind: ClassVar[str]
    """Backend kind: ``sqlite``, ``postgres``, ``duckdb``, ``snowflake``, ``parquet``."""
    name: str
    """Logical store name in the platform (``app``)."""
    capabilities: Capabilities

    def render(self, tree: exp.Expression, params: Sequence[Any] = ()) -> tuple[str, list[Any]]:
        """Render a resolved sqlglot tree in this store's dialect with native placeholders.

        ``tree`` holds :func:`headwater.stores._sql.param` markers; ``params[i]`` is the value
        of marker ``i``. Returns the SQL text and the values in placeholder order.
        """
        ...

    def render_template(self, tree: exp.Expression) -> tuple[str, tuple[int, ...]]:
        """Like :meth:`render` without values: SQL plus the parameter index per placeholder."""
        ...

    def table_expr(self, table: str) -> exp.Table:
        """The physical table as a sqlglot node (planners swap logical names for it)."""
        ...

    def execute(
        self,
        sql: str,
        params: Sequence[Any] = (),
        *,
        batch_size: int = 65_536,
        timeout_s: float | None = None,
        scope: ReadScope | None = None,
    ) -> pa.RecordBatchReader:
        """Run a query and stream its result; never holds the whole result in memory.

        With ``scope`` the query is a principal's read and runs through the store's backstop
        (module docstring): anything but a read of the scope's tables and columns raises
        :class:`~headwater.errors.QueryRejected` with ``rule="store-backstop"``. Without it the
        query is the platform's own.
        """
        ...

    def write(
        self,
        table: str,
        data: pa.Table,
        *,
        mode: WriteMode = WriteMode.APPEND,
        key: Sequence[str] = (),
    ) -> WriteResult:
        """Write Arrow data atomically: on any error no row of this call remains.

        A missing table is created from ``data.schema`` (with ``key`` as its primary key).
        """
        ...

    def delete_rows(
        self, table: str, where: exp.Expression, params: Sequence[Any] = ()
    ) -> WriteResult:
        """Delete the rows for which ``where`` is true, atomically (all or none).

        ``where`` is a sqlglot predicate over the table's columns (names matched
        case-insensitively, unknown ones raise ``ColumnNotFound``) that may hold
        :func:`headwater.stores._sql.param` markers for ``params``. ``rows_written`` of the
        result is the number of rows deleted.
        """
        ...

    def update_rows(
        self,
        table: str,
        assignments: Mapping[str, exp.Expression],
        where: exp.Expression,
        params: Sequence[Any] = (),
    ) -> WriteResult:
        """Set ``column = expression`` for each assignment on the rows where ``where`` is true,
        atomically; expressions may read the row's columns and use parameter markers.
        ``rows_written`` of the result is the number of rows updated."""
        ...

    def replace(self, table: str, data: pa.Table, *, key: Sequence[str] = ()) -> WriteResult:
        """Drop and recreate a table with ``data``'s schema and rows (``CREATE OR REPLACE``)."""
        ...

    def tables(self) -> list[TableInfo]:
        """Introspect every table the store holds."""
        ...

    def table(self, name: str) -> TableInfo:
        """Introspect one table; raises ``DatasetNotFound`` when it does not exist."""
        ...

    def explain(self, sql: str, params: Sequence[Any] = ()) -> str:
        """The store's plan for a query, as text."""
        ...

    def close(self) -> None:
        """Release connections and files."""
        ...
