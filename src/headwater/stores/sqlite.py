"""SQLite store: the embedded transactional default (``app``) and metadata file.

One connection per call (cheap for SQLite); WAL journal so readers never block the writer;
statement timeouts through SQLite's progress handler.
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
    QueryTimeout,
    StoreUnavailable,
    WriteError,
)
from headwater.stores._sql import SqlStore, rows_to_batch, unify_batches
from headwater.stores.base import Capabilities, ColumnInfo, TableInfo

__all__ = ["SQLiteStore"]


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
        with self._idle_lock:
            if len(self._idle) < 8:
                self._idle.append(con)
                return
        con.close()

    def execute(
        self,
        sql: str,
        params: Sequence[Any] = (),
        *,
        batch_size: int = 65_536,
        timeout_s: float | None = None,
    ) -> pa.RecordBatchReader:
        """Run ``sql`` and stream the result as Arrow batches of ``batch_size`` rows."""
        con = self._checkout()
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
        for con in idle:
            con.close()
