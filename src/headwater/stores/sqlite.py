"""SQLite store: the embedded transactional default (``app``) and metadata file.

One connection per call (cheap for SQLite); WAL journal so readers never block the writer;
statement timeouts through SQLite's progress handler.

Principal reads (``execute(..., scope=...)``) run on their own pool of read-only connections
(``mode=ro`` URI, ``PRAGMA query_only``) with an authorizer (``set_authorizer``) that allows the
scope's tables and columns, an allow-list of pure functions and nothing else: no other table
(``_hw_changes``, ``sqlite_master``, Headwater's own), no PRAGMA, ATTACH or write. SQLite asks
the authorizer while it prepares a statement, so a read costs nothing per row; setting an
authorizer expires the connection's prepared statements, so a statement cached under one scope
is checked again under the next.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa

from headwater.errors import (
    DatasetNotFound,
    HeadwaterError,
    QueryError,
    QueryRejected,
    QueryTimeout,
    StoreUnavailable,
    WriteError,
)
from headwater.stores._sql import SqlStore, rows_to_batch, unify_batches
from headwater.stores.base import BACKSTOP_RULE, Capabilities, ColumnInfo, ReadScope, TableInfo

__all__ = ["READ_FUNCTIONS", "SQLiteStore"]

READ_FUNCTIONS = frozenset({
    # core scalar functions without side effects (load_extension, sqlite_* introspection and
    # anything unknown are refused)
    "abs", "char", "coalesce", "concat", "concat_ws", "format", "glob", "hex", "ifnull", "iif",
    "instr", "length", "like", "likelihood", "likely", "lower", "ltrim", "max", "min", "nullif",
    "octet_length", "printf", "quote", "random", "randomblob", "replace", "round", "rtrim", "sign",
    "soundex", "substr", "substring", "trim", "typeof", "unhex", "unicode", "unlikely", "upper",
    "zeroblob",
    # date and time
    "date", "time", "datetime", "julianday", "unixepoch", "strftime", "timediff",
    # aggregates
    "avg", "count", "group_concat", "string_agg", "sum", "total",
    # window functions
    "row_number", "rank", "dense_rank", "percent_rank", "cume_dist", "ntile", "lag", "lead",
    "first_value", "last_value", "nth_value",
    # math
    "acos", "acosh", "asin", "asinh", "atan", "atan2", "atanh", "ceil", "ceiling", "cos", "cosh",
    "degrees", "exp", "floor", "ln", "log", "log10", "log2", "mod", "pi", "pow", "power",
    "radians", "sin", "sinh", "sqrt", "tan", "tanh", "trunc",
    # JSON (pure)
    "json", "json_array", "json_array_length", "json_extract", "json_object", "json_quote",
    "json_type", "json_valid", "json_group_array", "json_group_object", "jsonb",
    "jsonb_extract",
})
"""Functions a principal read may call on SQLite (lower case); every other one is refused."""

_AUTH_NAMES = {v: k for k, v in vars(sqlite3).items()
               if k.startswith("SQLITE_") and isinstance(v, int) and k not in ("SQLITE_OK", "SQLITE_DENY",
                                                                               "SQLITE_IGNORE")}


class _ReadConnection(sqlite3.Connection):
    """A read-only connection that remembers the scope its authorizer enforces."""

    scope: ReadScope | None = None
    denied: str | None = None
    """What the authorizer refused during the last statement (for the error message)."""


def _authorizer(con: _ReadConnection, scope: ReadScope) -> Any:
    """The ``set_authorizer`` callback enforcing ``scope`` (allow-list; everything else denied)."""
    ok, deny = sqlite3.SQLITE_OK, sqlite3.SQLITE_DENY
    tables = scope.tables
    select, read, function, recursive = (sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ,
                                         sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE)

    def check(code: int, arg1: str | None, arg2: str | None, db: str | None, source: str | None) -> int:
        if code == select or code == recursive:
            return ok
        if code == read and arg1 is not None and db in (None, "main"):
            if source is not None and source.lower() in tables:
                return ok  # a column of a planned view's definition (the view's own columns are checked)
            cols = tables.get(arg1.lower())
            if cols is not None and (not arg2 or arg2.lower() in cols):
                return ok  # an empty column is the rowid (count(*)): no column value
            con.denied = f"read of {arg1}.{arg2}" if arg2 else f"read of {arg1}"
            return deny
        if code == function and arg2 is not None:
            if arg2.lower() in READ_FUNCTIONS:
                return ok
            con.denied = f"function {arg2}()"
            return deny
        con.denied = _AUTH_NAMES.get(code, str(code)).removeprefix("SQLITE_").replace("_", " ").lower()
        if arg1:
            con.denied += f" {arg1}"
        return deny

    return check


def _adapt_date(v: dt.date) -> str:
    return v.isoformat()


def _adapt_datetime(v: dt.datetime) -> str:
    return v.isoformat(sep=" ")


def _convert_date(raw: bytes) -> dt.date | None:
    try:
        return dt.date.fromisoformat(raw.decode()[:10])
    except ValueError:
        return None


def _convert_timestamp(raw: bytes) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(raw.decode())
    except ValueError:
        return None


sqlite3.register_adapter(dt.date, _adapt_date)
sqlite3.register_adapter(dt.datetime, _adapt_datetime)
sqlite3.register_adapter(decimal.Decimal, str)
sqlite3.register_converter("DATE", _convert_date)
sqlite3.register_converter("TIMESTAMP", _convert_timestamp)
sqlite3.register_converter("DATETIME", _convert_timestamp)


def arrow_type_of_decl(decl: str) -> pa.DataType | None:
    """Arrow type for a SQLite declared column type (affinity rules, plus dates)."""
    d = (decl or "").upper()
    if not d:
        return None
    if "BOOL" in d:
        return pa.bool_()
    if "INT" in d:
        return pa.int64()
    if "TIMESTAMP" in d or "DATETIME" in d:
        return pa.timestamp("us")
    if d.startswith("DATE"):
        return pa.date32()
    if any(s in d for s in ("CHAR", "CLOB", "TEXT")):
        return pa.string()
    if "BLOB" in d:
        return pa.binary()
    if any(s in d for s in ("REAL", "FLOA", "DOUB", "NUMERIC", "DECIMAL")):
        return pa.float64()
    return pa.string()


class SQLiteStore(SqlStore):
    """A SQLite database file."""

    kind: ClassVar[str] = "sqlite"

    def __init__(self, name: str, path: str | Path, *, busy_timeout_s: float = 10.0) -> None:
        self.name = name
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        self.capabilities = Capabilities(sql=True, dialect="sqlite")
        self._idle: list[sqlite3.Connection] = []
        self._ro_idle: list[_ReadConnection] = []
        self._idle_lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.closing(self._connect()) as con:
            con.execute("PRAGMA journal_mode=WAL")

    def __repr__(self) -> str:
        return f"SQLiteStore(name={self.name!r}, path={str(self.path)!r})"

    def _connect(self) -> sqlite3.Connection:
        try:
            con = sqlite3.connect(
                self.path,
                timeout=self.busy_timeout_s,
                detect_types=sqlite3.PARSE_DECLTYPES,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as err:
            raise StoreUnavailable(
                f"cannot open SQLite store {self.name!r} at {self.path}: {err}", store=self.name
            ) from None
        con.execute("PRAGMA synchronous=NORMAL")
        return con

    def _connect_ro(self) -> _ReadConnection:
        """A read-only connection for principal reads (``mode=ro`` and ``query_only``)."""
        try:
            con = sqlite3.connect(
                f"{self.path.resolve().as_uri()}?mode=ro",
                uri=True,
                timeout=self.busy_timeout_s,
                detect_types=sqlite3.PARSE_DECLTYPES,
                isolation_level=None,
                check_same_thread=False,
                factory=_ReadConnection,
            )
            con.execute("PRAGMA query_only=1")
        except sqlite3.Error as err:
            raise StoreUnavailable(
                f"cannot open SQLite store {self.name!r} at {self.path} for reading: {err}", store=self.name
            ) from None
        return con  # type: ignore[return-value]

    def _sql_type(self, type_: pa.DataType) -> str:
        if pa.types.is_boolean(type_):
            return "BOOLEAN"
        if pa.types.is_integer(type_):
            return "INTEGER"
        if pa.types.is_floating(type_) or pa.types.is_decimal(type_):
            return "REAL"
        if pa.types.is_timestamp(type_):
            return "TIMESTAMP"
        if pa.types.is_date(type_):
            return "DATE"
        if pa.types.is_binary(type_) or pa.types.is_large_binary(type_):
            return "BLOB"
        return "TEXT"

    def _translate(self, err: Exception, *, sql: str | None = None) -> HeadwaterError:
        msg = str(err)
        if isinstance(err, sqlite3.OperationalError) and "interrupted" in msg:
            return QueryTimeout(f"query on {self.name!r} exceeded its timeout", store=self.name)
        if isinstance(err, sqlite3.IntegrityError):
            return WriteError(f"write to {self.name!r} violates a constraint: {msg}", store=self.name)
        if isinstance(err, sqlite3.OperationalError) and (
            "unable to open" in msg or "disk I/O" in msg
        ):
            return StoreUnavailable(f"SQLite store {self.name!r} unavailable: {msg}", store=self.name)
        return QueryError(f"{self.name!r} (sqlite) rejected the statement: {msg}", store=self.name)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Cursor]:
        con = self._connect()
        try:
            cur = con.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                yield cur
            except BaseException:
                con.rollback()
                raise
            con.commit()
        finally:
            con.close()

    def _create_staging(self, cur: Any, stage: str, physical: str, schema: pa.Schema) -> None:
        cur.execute(f"DROP TABLE IF EXISTS temp.{stage}")
        super()._create_staging(cur, stage, physical, schema)

    def _to_python(self, col: pa.Array) -> list[Any]:
        if pa.types.is_decimal(col.type):
            return [None if v is None else float(v) for v in col.to_pylist()]
        return col.to_pylist()

    def _checkout(self) -> sqlite3.Connection:
        with self._idle_lock:
            if self._idle:
                return self._idle.pop()
        return self._connect()

    def _checkin(self, con: sqlite3.Connection) -> None:
        con.set_progress_handler(None, 0)
        if con.in_transaction:
            con.close()
            return
        idle = self._ro_idle if isinstance(con, _ReadConnection) else self._idle
        with self._idle_lock:
            if len(idle) < 8:
                idle.append(con)  # type: ignore[arg-type]
                return
        con.close()

    def _checkout_reader(self, scope: ReadScope) -> _ReadConnection:
        """A read-only connection whose authorizer enforces ``scope``."""
        con: _ReadConnection | None = None
        with self._idle_lock:
            if self._ro_idle:
                con = self._ro_idle.pop()
        if con is None:
            con = self._connect_ro()
        if con.scope is not scope:
            # Scopes are made once per plan: the same object means the same rules, and keeping
            # the authorizer keeps the connection's prepared statements (set_authorizer expires them).
            con.set_authorizer(_authorizer(con, scope))
            con.scope = scope
        con.denied = None
        return con

    def _rejected(self, con: _ReadConnection, err: sqlite3.Error) -> HeadwaterError:
        """The backstop's refusal, or the store's own error when the authorizer allowed it."""
        msg = str(err)
        if con.denied is not None or "not authorized" in msg or "prohibited" in msg or "readonly" in msg:
            what = con.denied or "a statement outside the plan"
            return QueryRejected(
                f"{self.name!r} (sqlite) refused {what}: principal reads may only read the planned "
                "tables and columns", rule=BACKSTOP_RULE, store=self.name)
        return self._translate(err)

    def execute(
        self,
        sql: str,
        params: Sequence[Any] = (),
        *,
        batch_size: int = 65_536,
        timeout_s: float | None = None,
        scope: ReadScope | None = None,
    ) -> pa.RecordBatchReader:
        """Run ``sql`` and stream the result as Arrow batches of ``batch_size`` rows.

        With ``scope``: a principal's read on a read-only connection under the authorizer
        (module docstring); a refusal is :class:`QueryRejected` (``rule="store-backstop"``).
        """
        con = self._checkout() if scope is None else self._checkout_reader(scope)
        if timeout_s:
            deadline = time.monotonic() + timeout_s
            con.set_progress_handler(lambda: 1 if time.monotonic() > deadline else 0, 10_000)
        try:
            cur = con.execute(sql, tuple(params))
            names = [d[0] for d in cur.description or ()]
            types = self._result_types(con, cur)
            first_rows = cur.fetchmany(batch_size)
        except sqlite3.Error as err:
            self._checkin(con)
            if isinstance(con, _ReadConnection):
                raise self._rejected(con, err) from None
            raise self._translate(err, sql=sql) from None
        first = rows_to_batch(first_rows, names, types)

        done = len(first_rows) < batch_size
        if done:
            cur.close()
            self._checkin(con)

        def rest() -> Iterator[pa.RecordBatch]:
            if done:
                return
            try:
                while True:
                    try:
                        rows = cur.fetchmany(batch_size)
                    except sqlite3.Error as err:
                        raise self._translate(err, sql=sql) from None
                    if not rows:
                        return
                    yield rows_to_batch(rows, names, types)
            finally:
                cur.close()
                self._checkin(con)

        return unify_batches(first, rest())

    def _result_types(self, con: sqlite3.Connection, cur: sqlite3.Cursor) -> list[pa.DataType | None]:
        # sqlite3 does not expose declared types of result columns; inference per batch with
        # PARSE_DECLTYPES converters gives dates/timestamps their types.
        return [None] * len(cur.description or ())

    def _exec(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with contextlib.closing(self._connect()) as con:
            try:
                return con.execute(sql, tuple(params)).fetchall()
            except sqlite3.Error as err:
                raise self._translate(err, sql=sql) from None

    def tables(self) -> list[TableInfo]:
        """Every user table in the file (SQLite's own and Headwater's internal ones excluded)."""
        names = [
            r[0]
            for r in self._exec(
                "SELECT name FROM sqlite_master WHERE type IN ('table','view') "
                "AND name NOT LIKE 'sqlite_%' AND name NOT LIKE 'hw\\_%' ESCAPE '\\' "
                "AND name NOT LIKE '\\_hw\\_%' ESCAPE '\\' ORDER BY name"
            )
        ]
        return [self.table(n) for n in names]

    def table(self, name: str) -> TableInfo:
        """Introspect one table through ``PRAGMA table_info``."""
        rows = self._exec(f"PRAGMA table_info({self._quote(name)})")
        if not rows:
            raise DatasetNotFound(f"table {name!r} does not exist in store {self.name!r}",
                                  dataset=f"{self.name}.{name}")
        pk = tuple(r[1] for r in sorted((r for r in rows if r[5]), key=lambda r: r[5]))
        cols = tuple(
            ColumnInfo(
                name=r[1],
                type=arrow_type_of_decl(r[2]) or pa.string(),
                nullable=not r[3] and not r[5],
                primary_key=bool(r[5]),
            )
            for r in rows
        )
        return TableInfo(
            name=name, columns=cols, primary_key=pk, location=f"sqlite://{self.path}#{name}"
        )

    def explain(self, sql: str, params: Sequence[Any] = ()) -> str:
        """``EXPLAIN QUERY PLAN`` output, one step per line."""
        rows = self._exec(f"EXPLAIN QUERY PLAN {sql}", params)
        return "\n".join(str(r[-1]) for r in rows)

    def close(self) -> None:
        """Close idle read connections."""
        with self._idle_lock:
            idle, self._idle = self._idle, []
            ro, self._ro_idle = self._ro_idle, []
        for con in [*idle, *ro]:
            con.close()
