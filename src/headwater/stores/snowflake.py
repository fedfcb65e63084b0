"""Snowflake store (snowflake-connector-python 4.x): the hosted warehouse.

Reads stream the connector's Arrow result chunks (``fetch_arrow_batches``), re-cut to
``batch_size`` rows; statement timeouts are the connector's own ``execute(..., timeout=...)``
(it cancels the query server-side when the timer fires). The password is a secret: it is never
part of a repr, a log line or an error message.

Identifiers. Snowflake folds unquoted identifiers to upper case, so a table created with
``CREATE TABLE customers (id INT)`` is stored as ``CUSTOMERS(ID)``. This store follows that
convention both ways:

* lookups (``table("customers")``, writes into an existing table) try the exact name first and
  then match case-insensitively, so ``customers`` finds ``CUSTOMERS``;
* names are reported as the store holds them (``TableInfo.name == "CUSTOMERS"``, columns
  ``ID``, ``NAME``), never re-cased on the way out;
* tables and columns created by ``write`` get the name an unquoted identifier would get:
  all-lowercase simple names (``customers``, ``order_id``) are stored upper-case, so plain SQL
  (``SELECT id FROM customers``) finds them; mixed-case or unusual names (``"Order Id"``) are
  kept exactly as given and must be quoted in SQL.

Writes. Snowflake commits any open transaction when it runs DDL, so ``write`` never runs DDL
inside its transaction: a new table is created first (and dropped again if the insert fails),
an upsert's staging table is created and filled before ``BEGIN`` and dropped after ``COMMIT``.
Everything that changes the target's rows runs between one ``BEGIN`` and ``COMMIT``.

Reads. Principal reads (``execute(..., scope=...)``) and ``explain`` run on connections of their
own, opened with ``role=<reader_role>`` and set up once with ``USE ROLE <reader_role>``: a role
that holds USAGE on the database, schema and warehouse and SELECT on the catalogued tables only
(:meth:`SnowflakeStore.grant_statements` writes the script; an administrator or
:meth:`SnowflakeStore.sync_reader_grants` applies it). The platform's own writes, DDL and
introspection keep the configured ``role``. Snowflake has no read-only session: the reader role
holding no privilege but SELECT is what keeps principal SQL from writing.

Types. Snowflake integers (``NUMBER(p, 0)``) read as ``int64``, other ``NUMBER`` as
``decimal128``; timestamps and times are read at microsecond precision (Headwater's common unit),
truncating any nanoseconds.
"""

from __future__ import annotations

import contextlib
import math
import re
import threading
import uuid
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

import pyarrow as pa

from headwater.errors import (
    ConfigError,
    DatasetNotFound,
    HeadwaterError,
    MissingDependency,
    QueryError,
    QueryRejected,
    QueryTimeout,
    StoreUnavailable,
    WriteError,
)
from headwater.stores._sql import (
    SqlStore,
    _column_array,
    _match_names,
    _normalise_new,
    cast_to_schema,
    dedupe_last,
    reject_case_duplicates,
    rows_to_batch,
    upsert_key,
)
from headwater.stores.base import (
    BACKSTOP_RULE,
    Capabilities,
    ColumnInfo,
    ReadScope,
    TableInfo,
    WriteMode,
    WriteResult,
)

__all__ = ["SnowflakeStore"]

_SIMPLE_LOWER = re.compile(r"^[a-z_][a-z0-9_$]*$")
_QUOTED = re.compile(r'^"(.*)"$', re.S)
_INSERT_ROWS = 1_000
"""Rows per client-side bound INSERT (Snowflake caps statement text at about 1 MB)."""
_TIMEOUT_ERRNOS = {604, 630}
_UNAVAILABLE_ERRNOS = {250001, 250002, 250003, 251001, 251005, 251006, 251011, 251012, 390100,
                       390101, 390102, 390103, 390104, 390114, 390144, 390201, 390318}


def _fold(ident: str) -> str:
    """The name Snowflake stores for ``ident`` written unquoted (quoted names stay as given)."""
    m = _QUOTED.match(ident)
    if m:
        return m.group(1).replace('""', '"')
    return ident.upper() if _SIMPLE_LOWER.match(ident) else ident


class _Secret:
    """Holds a secret so that it shows up nowhere by accident (repr, vars dumps, tracebacks)."""

    __slots__ = ("_value",)

    def __init__(self, value: str | None) -> None:
        self._value = value

    def get(self) -> str | None:
        return self._value

    def __repr__(self) -> str:
        return "***"

    __str__ = __repr__


def _connector() -> Any:
    try:
        import snowflake.connector as sc
    except ImportError:
        raise MissingDependency(
            "the Snowflake store needs snowflake-connector-python; pip install 'headwater[snowflake]'",
            extra="snowflake",
        ) from None
    return sc


def _arrow_type(desc: Any) -> pa.DataType:
    """Arrow type for one column of a cursor description (``ResultMetadata``)."""
    from snowflake.connector.constants import FIELD_ID_TO_NAME

    kind = FIELD_ID_TO_NAME.get(desc.type_code, "")
    if kind == "FIXED":
        if not desc.scale:
            return pa.int64()
        return pa.decimal128(min(desc.precision or 38, 38), desc.scale)
    if kind == "REAL":
        return pa.float64()
    if kind == "DATE":
        return pa.date32()
    if kind in ("TIMESTAMP", "TIMESTAMP_NTZ"):
        return pa.timestamp("us")
    if kind in ("TIMESTAMP_LTZ", "TIMESTAMP_TZ"):
        return pa.timestamp("us", tz="UTC")
    if kind == "TIME":
        return pa.time64("us")
    if kind == "BINARY":
        return pa.binary()
    if kind == "BOOLEAN":
        return pa.bool_()
    # TEXT, VARIANT, OBJECT, ARRAY, GEOGRAPHY ...: their text form.
    return pa.string()


def _conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """Cast a connector batch to the description-derived schema (dropping field metadata)."""
    arrays = []
    for col, field in zip(batch.columns, schema, strict=True):
        if not col.type.equals(field.type):
            lossy = pa.types.is_timestamp(field.type) or pa.types.is_time(field.type)
            try:
                col = col.cast(field.type, safe=not lossy)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
                col = _column_array(col.to_pylist(), field.type)
                if not col.type.equals(field.type):
                    col = pa.array([None if v is None else str(v) for v in col.to_pylist()],
                                   type=pa.string()).cast(field.type, safe=False)
        arrays.append(col)
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _rechunk(batches: Iterator[pa.RecordBatch], size: int) -> Iterator[pa.RecordBatch]:
    """Re-cut a stream of batches into batches of exactly ``size`` rows (the last may be short)."""
    pending: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        if batch.num_rows == 0:
            continue
        pending.append(batch)
        count += batch.num_rows
        while count >= size:
            whole = pa.Table.from_batches(pending).combine_chunks()
            yield whole.slice(0, size).to_batches()[0]
            rest = whole.slice(size)
            pending = rest.to_batches() if rest.num_rows else []
            count = rest.num_rows
    if count:
        yield pa.Table.from_batches(pending).combine_chunks().to_batches()[0]


class SnowflakeStore(SqlStore):
    """One schema of a Snowflake database (see the module docstring for identifier rules)."""

    kind: ClassVar[str] = "snowflake"
    pyformat: ClassVar[bool] = True
    before_read: Any = None
    """Called before each principal read takes a reader connection (see ``PostgresStore``)."""

    def __init__(
        self,
        name: str,
        *,
        account: str,
        user: str,
        password: str | None = None,
        database: str,
        schema: str = "PUBLIC",
        warehouse: str | None = None,
        role: str | None = None,
        host: str | None = None,
        port: int | None = None,
        protocol: str | None = None,
        login_timeout_s: float = 30.0,
        network_timeout_s: float | None = None,
        session_parameters: Mapping[str, Any] | None = None,
        max_idle_connections: int = 4,
        reader_role: str | None = None,
    ) -> None:
        """Connection options mirror ``snowflake.connector.connect``.

        ``reader_role``: the role principal reads run as (module docstring); None runs them
        with ``role``.

        ``host``/``port``/``protocol`` point the connector somewhere other than
        ``<account>.snowflakecomputing.com`` (a proxy, or fakesnow's server in tests).
        ``network_timeout_s`` bounds each HTTP exchange including the connector's retries (the
        connector also uses it as the default statement timeout).
        """
        _connector()
        self.name = name
        self.account = account
        self.user = user
        self._password = _Secret(password)
        self.database = database
        self.schema = schema
        self.warehouse = warehouse
        self.role = role
        self.host = host
        self.port = port
        self.protocol = protocol
        self.login_timeout_s = login_timeout_s
        self.network_timeout_s = network_timeout_s
        self._session_parameters = {"CLIENT_OUT_OF_BAND_TELEMETRY_ENABLED": False,
                                    **(session_parameters or {})}
        self._schema = _fold(schema)
        self._database = _fold(database)
        self.capabilities = Capabilities(sql=True, dialect="snowflake")
        self._idle: list[Any] = []
        self._reader_idle: list[Any] = []
        self._max_idle = max_idle_connections
        self._lock = threading.Lock()
        self.reader_role = reader_role
        self._roles: weakref.WeakKeyDictionary[Any, str | None] = weakref.WeakKeyDictionary()

    def __repr__(self) -> str:
        return (f"SnowflakeStore(name={self.name!r}, account={self.account!r}, "
                f"database={self.database!r}, schema={self.schema!r})")

    # -- connections -------------------------------------------------------------------
    def role_of(self, conn: Any) -> str | None:
        """The role a connection of this store was opened and set up with (None: the login's
        default role). Principal reads use connections whose role is ``reader_role``."""
        return self._roles.get(conn)

    def _connect(self, *, reader: bool = False) -> Any:
        sc = _connector()
        kwargs: dict[str, Any] = {
            "account": self.account,
            "user": self.user,
            "database": self.database,
            "schema": self.schema,
            "login_timeout": self.login_timeout_s,
            "session_parameters": dict(self._session_parameters),
            "client_session_keep_alive": False,
        }
        if self._password.get() is not None:
            kwargs["password"] = self._password.get()
        for key in ("warehouse", "role", "host", "port", "protocol"):
            if getattr(self, key) is not None:
                kwargs[key] = getattr(self, key)
        if self.network_timeout_s is not None:
            kwargs["network_timeout"] = self.network_timeout_s
        role = self.role
        if reader and self.reader_role:
            role = kwargs["role"] = self.reader_role
        try:
            conn = sc.connect(**kwargs)
        except Exception as err:  # noqa: BLE001 - translated at the boundary
            raise StoreUnavailable(
                f"cannot connect to Snowflake store {self.name!r} "
                f"(account {self.account!r}{' as the reader role' if reader else ''}): {self._scrub(err)}",
                store=self.name,
            ) from None
        if reader and self.reader_role:
            # Also set explicitly: a login whose default role differs must not keep it.
            try:
                with contextlib.closing(conn.cursor()) as cur:
                    cur.execute(f"USE ROLE {self._quote(_fold(self.reader_role))}")
            except Exception as err:  # noqa: BLE001
                with contextlib.suppress(Exception):
                    conn.close()
                raise ConfigError(
                    f"Snowflake store {self.name!r}: cannot use the reader role {self.reader_role!r} "
                    f"({self._scrub(err)}); create it and its grants with `headwater stores grants "
                    f"{self.name}` (docs/store-security.md)") from None
        self._roles[conn] = _fold(role) if role else None
        return conn

    def _acquire(self, *, reader: bool = False) -> Any:
        if reader and self.before_read is not None:
            self.before_read()
        idle = self._reader_idle if reader else self._idle
        with self._lock:
            while idle:
                conn = idle.pop()
                if not conn.is_closed():
                    return conn
        return self._connect(reader=reader)

    def _release(self, conn: Any, *, reader: bool = False) -> None:
        idle = self._reader_idle if reader else self._idle
        with self._lock:
            if not conn.is_closed() and len(idle) < self._max_idle:
                idle.append(conn)
                return
        with contextlib.suppress(Exception):
            conn.close()

    @contextlib.contextmanager
    def connection(self, *, reader: bool = False) -> Iterator[Any]:
        """A pooled connector connection (autocommit; open a transaction explicitly);
        ``reader``: one set up with the reader role, for principal SQL only."""
        conn = self._acquire(reader=reader)
        try:
            yield conn
        finally:
            self._release(conn, reader=reader)

    def _scrub(self, err: BaseException) -> str:
        text = getattr(err, "msg", None) or str(err)
        text = str(text).strip().splitlines()[0] if str(text).strip() else type(err).__name__
        password = self._password.get()
        if password:
            text = text.replace(password, "***")
        return text[:500]

    def _translate(self, err: Exception, *, sql: str | None = None) -> HeadwaterError:
        from snowflake.connector import errors as sfe

        msg = self._scrub(err)
        errno = getattr(err, "errno", None)
        sqlstate = getattr(err, "sqlstate", None)
        if errno in _TIMEOUT_ERRNOS or "cancelled by the client due to a timeout" in msg:
            return QueryTimeout(f"query on {self.name!r} exceeded its timeout", store=self.name)
        if isinstance(err, sfe.IntegrityError | sfe.DataError):
            return WriteError(f"write to {self.name!r} rejected: {msg}", store=self.name)
        if isinstance(err, sfe.ProgrammingError):
            if errno == 3001 or "insufficient privileges" in msg.lower():
                return QueryRejected(
                    f"{self.name!r} (snowflake) refused it: {msg} (principal reads run as the reader role "
                    f"{self.reader_role!r}, which may read catalogued tables only)",
                    rule=BACKSTOP_RULE, store=self.name)
            if sqlstate == "42S02" or errno == 2003:
                return DatasetNotFound(f"{self.name!r}: {msg}", store=self.name)
            return QueryError(f"{self.name!r} (snowflake) rejected the statement: {msg}",
                              store=self.name)
        unavailable = (sfe.OperationalError, sfe.InterfaceError, sfe.HttpError,
                       sfe.ServiceUnavailableError, sfe.GatewayTimeoutError,
                       sfe.BadGatewayError, sfe.RequestTimeoutError,
                       sfe.OtherHTTPRetryableError, sfe.ForbiddenError, sfe.TooManyRequests,
                       sfe.RequestExceedMaxRetryError, sfe.TokenExpiredError, OSError)
        if isinstance(err, unavailable) or errno in _UNAVAILABLE_ERRNOS:
            return StoreUnavailable(f"Snowflake store {self.name!r} unavailable: {msg}",
                                    store=self.name)
        return QueryError(f"{self.name!r} (snowflake) failed the statement: {msg}", store=self.name)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Any]:
        """A cursor between ``BEGIN`` and ``COMMIT`` (rolled back on error); no DDL inside."""
        with self.connection() as conn:
            cur = conn.cursor()
            try:
                cur.execute("BEGIN")
                try:
                    yield cur
                except BaseException:
                    with contextlib.suppress(Exception):
                        cur.execute("ROLLBACK")
                    raise
                cur.execute("COMMIT")
            finally:
                with contextlib.suppress(Exception):
                    cur.close()

    # -- SQL helpers -------------------------------------------------------------------
    def _placeholder(self, n: int) -> str:
        return "%s"

    def name_key(self, name: str) -> str:
        """Names compare as Snowflake compares unquoted identifiers: upper-cased."""
        return _fold(name).upper()

    def _physical(self, table: str) -> str:
        """Quoted ``schema.table`` for a name as stored (callers resolve names first)."""
        return f"{self._quote(self._schema)}.{self._quote(table)}"

    def _sql_type(self, type_: pa.DataType) -> str:
        if pa.types.is_boolean(type_):
            return "BOOLEAN"
        if pa.types.is_integer(type_):
            return "NUMBER(38, 0)"
        if pa.types.is_floating(type_):
            return "FLOAT"
        if pa.types.is_decimal(type_):
            return f"NUMBER({min(type_.precision, 38)}, {type_.scale})"
        if pa.types.is_timestamp(type_):
            return "TIMESTAMP_TZ(6)" if type_.tz else "TIMESTAMP_NTZ(6)"
        if pa.types.is_date(type_):
            return "DATE"
        if pa.types.is_time(type_):
            return "TIME(6)"
        if pa.types.is_binary(type_) or pa.types.is_large_binary(type_):
            return "BINARY"
        return "VARCHAR"

    def _to_python(self, col: pa.Array) -> list[Any]:
        if pa.types.is_large_binary(col.type) or pa.types.is_binary(col.type):
            return [None if v is None else bytes(v) for v in col.to_pylist()]
        return col.to_pylist()

    def _insert_arrow(self, cur: Any, physical: str, data: pa.Table) -> None:
        """Client-side bound multi-row INSERTs of at most ``_INSERT_ROWS`` rows each."""
        if data.num_rows == 0:
            return
        cols = ", ".join(self._quote(c) for c in data.column_names)
        marks = ", ".join(["%s"] * data.num_columns)
        sql = f"INSERT INTO {physical} ({cols}) VALUES ({marks})"
        for batch in data.to_batches(max_chunksize=_INSERT_ROWS):
            columns = [self._to_python(col) for col in batch.columns]
            cur.executemany(sql, list(zip(*columns, strict=True)))

    def _create_staging(self, cur: Any, stage: str, physical: str, schema: pa.Schema) -> None:
        cols = ", ".join(f"{self._quote(f.name)} {self._sql_type(f.type)}" for f in schema)
        cur.execute(f"CREATE TEMPORARY TABLE {stage} ({cols})")

    def _resolve(self, name: str) -> str | None:
        """The stored name of table ``name``: exact match first, then case-insensitive."""
        rows = self._fetchall(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = %s AND UPPER(table_name) = UPPER(%s)",
            [self._schema, _fold(name)],
        )
        found = [r[0] for r in rows]
        for candidate in (name, _fold(name)):
            if candidate in found:
                return candidate
        if len(found) == 1:
            return found[0]
        return None

    # -- Store protocol ----------------------------------------------------------------
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

        With ``scope`` (a principal's read) it runs on a reader-role connection.
        """
        reader = scope is not None
        conn = self._acquire(reader=reader)
        cur = None
        try:
            cur = conn.cursor()
            kwargs: dict[str, Any] = {}
            if timeout_s:
                kwargs["timeout"] = max(1, math.ceil(timeout_s))
            cur.execute(sql, list(params) if params else None, **kwargs)
            desc = list(cur.description or ())
            schema = pa.schema([pa.field(d.name, _arrow_type(d)) for d in desc])
            source = self._arrow_source(cur)
        except Exception as err:  # noqa: BLE001 - translated at the boundary
            if cur is not None:
                with contextlib.suppress(Exception):
                    cur.close()
            self._release(conn, reader=reader)
            raise self._translate(err, sql=sql) from None

        def batches() -> Iterator[pa.RecordBatch]:
            if source is not None:
                for table in source:
                    yield from table.to_batches()
                return
            names = [f.name for f in schema]
            types = list(schema.types)
            while True:
                rows = cur.fetchmany(batch_size)
                if not rows:
                    return
                yield rows_to_batch(rows, names, types)

        def gen() -> Iterator[pa.RecordBatch]:
            try:
                try:
                    for batch in _rechunk(batches(), batch_size):
                        yield _conform(batch, schema)
                except HeadwaterError:
                    raise
                except Exception as err:  # noqa: BLE001
                    raise self._translate(err, sql=sql) from None
            finally:
                with contextlib.suppress(Exception):
                    cur.close()
                self._release(conn, reader=reader)

        return pa.RecordBatchReader.from_batches(schema, gen())

    @staticmethod
    def _arrow_source(cur: Any) -> Iterator[pa.Table] | None:
        """The connector's Arrow chunks, or None when the result came back as JSON rows."""
        from snowflake.connector.errors import NotSupportedError

        try:
            try:
                return cur.fetch_arrow_batches(force_microsecond_precision=True)
            except TypeError:  # connectors before force_microsecond_precision
                return cur.fetch_arrow_batches()
        except NotSupportedError:
            return None

    def _fetchall(
        self, sql: str, params: Sequence[Any] = ()
    ) -> list[tuple[Any, ...]]:
        rows, _ = self._fetch(sql, params)
        return rows

    def _fetch(self, sql: str, params: Sequence[Any] = (), *, reader: bool = False,
               ) -> tuple[list[tuple[Any, ...]], list[Any]]:
        with self.connection(reader=reader) as conn:
            try:
                with contextlib.closing(conn.cursor()) as cur:
                    cur.execute(sql, list(params) if params else None)
                    return list(cur.fetchall()), list(cur.description or ())
            except Exception as err:  # noqa: BLE001
                raise self._translate(err, sql=sql) from None

    def tables(self) -> list[TableInfo]:
        """Every table and view in the store's schema (Headwater's ``HW_`` tables excluded)."""
        rows = self._fetchall(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
            "ORDER BY table_name",
            [self._schema],
        )
        return [self.table(r[0]) for r in rows if not r[0].upper().startswith("HW_")]

    def table(self, name: str) -> TableInfo:
        """Introspect one table: ``information_schema`` columns, types from a zero-row scan,
        the key from ``SHOW PRIMARY KEYS``."""
        stored = self._resolve(name)
        if stored is None:
            raise DatasetNotFound(
                f"table {name!r} does not exist in store {self.name!r}", dataset=f"{self.name}.{name}"
            )
        physical = self._physical(stored)
        rows = self._fetchall(
            "SELECT column_name, is_nullable FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
            [self._schema, stored],
        )
        _, desc = self._fetch(f"SELECT * FROM {physical} LIMIT 0")
        types = {d.name: _arrow_type(d) for d in desc}
        pk_rows, pk_desc = self._fetch(f"SHOW PRIMARY KEYS IN TABLE {physical}")
        pk: tuple[str, ...] = ()
        if pk_rows:
            idx = {d.name.lower(): i for i, d in enumerate(pk_desc)}
            # Keep only this table's rows (some servers answer for same-named tables elsewhere).
            mine = [r for r in pk_rows
                    if r[idx["schema_name"]] == self._schema and r[idx["table_name"]] == stored]
            ordered = sorted(mine, key=lambda r: r[idx["key_sequence"]])
            pk = tuple(dict.fromkeys(r[idx["column_name"]] for r in ordered))
        cols = tuple(
            ColumnInfo(
                name=r[0],
                type=types.get(r[0], pa.string()),
                nullable=r[1] == "YES" and r[0] not in pk,
                primary_key=r[0] in pk,
            )
            for r in rows
        )
        return TableInfo(
            name=stored,
            columns=cols,
            primary_key=pk,
            location=f"snowflake://{self.account}/{self._database}/{self._schema}.{stored}",
        )

    def explain(self, sql: str, params: Sequence[Any] = ()) -> str:
        """Snowflake's ``EXPLAIN USING TEXT`` plan, as the reader role (``sql`` is principal SQL)."""
        rows, _ = self._fetch(f"EXPLAIN USING TEXT {sql}", params, reader=True)
        return "\n".join(str(r[0]) for r in rows)

    # -- the reader role's grants --------------------------------------------------------
    def grant_statements(self, tables: Iterable[str]) -> list[str]:
        """The script that gives the reader role SELECT on exactly ``tables`` (names as stored).

        Creates the role, grants USAGE on the database, schema and warehouse, SELECT per table,
        REVOKE on every other table of the schema (revoking what was never granted is a no-op),
        and the role to the platform's user (so its connections may ``USE ROLE`` it).
        """
        role = self.reader_role
        if not role:
            raise ConfigError(f"Snowflake store {self.name!r} has no reader_role to grant to")
        r = self._quote(_fold(role))
        db = self._quote(self._database)
        schema = f"{db}.{self._quote(self._schema)}"
        wanted = sorted(set(tables))
        out = [f"CREATE ROLE IF NOT EXISTS {r}",
               f"GRANT USAGE ON DATABASE {db} TO ROLE {r}",
               f"GRANT USAGE ON SCHEMA {schema} TO ROLE {r}"]
        if self.warehouse:
            out.append(f"GRANT USAGE ON WAREHOUSE {self._quote(_fold(self.warehouse))} TO ROLE {r}")
        out += [f"GRANT SELECT ON TABLE {schema}.{self._quote(t)} TO ROLE {r}" for t in wanted]
        present = [row[0] for row in self._fetchall(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s ORDER BY table_name",
            [self._schema])]
        out += [f"REVOKE ALL ON TABLE {schema}.{self._quote(t)} FROM ROLE {r}"
                for t in present if t not in set(wanted)]
        out.append(f"GRANT ROLE {r} TO USER {self._quote(self.user)}")
        return out

    def sync_reader_grants(self, tables: Iterable[str]) -> list[str]:
        """Run :meth:`grant_statements` on the platform's own connection (needs a role that may
        create roles and grant on the schema's tables, e.g. the schema owner with
        ``SECURITYADMIN``); returns the statements run."""
        statements = self.grant_statements(tables)
        with self.connection() as conn, contextlib.closing(conn.cursor()) as cur:
            for stmt in statements:
                try:
                    cur.execute(stmt)
                except Exception as err:  # noqa: BLE001
                    raise self._translate(err, sql=stmt) from None
        return statements

    def write(
        self,
        table: str,
        data: pa.Table,
        *,
        mode: WriteMode = WriteMode.APPEND,
        key: Sequence[str] = (),
    ) -> WriteResult:
        """Write ``data`` atomically, keeping DDL out of the transaction (module docstring)."""
        mode = WriteMode(mode)
        dataset = f"{self.name}.{table}"
        reject_case_duplicates(data.column_names, dataset)
        info = self._table_or_none(table)
        created = info is None
        key = upsert_key(mode, key, info, dataset)
        if info is not None:
            stored = info.name
            # An upsert writes only the columns it was given (omitted ones keep their values).
            data = cast_to_schema(data, info.schema, dataset, fold=self.name_key,
                                  partial=mode is WriteMode.UPSERT)
        else:
            stored = _fold(table)
            data = _normalise_new(data)
            folded = [_fold(n) for n in data.column_names]
            if len({n for n in folded}) != len(folded):
                raise WriteError(f"{dataset}: column names collide once upper-cased: "
                                 f"{', '.join(data.column_names)}", dataset=dataset)
            data = data.rename_columns(folded)
        key = tuple(_match_names(key, data.column_names, dataset, self.name_key))
        if (created or mode is WriteMode.UPSERT) and any(data.column(k).null_count for k in key):
            raise WriteError(f"write to {dataset}: key columns must not be null", dataset=dataset)
        if mode is WriteMode.UPSERT:
            data = dedupe_last(data, key)
        physical = self._physical(stored)
        with self.connection() as conn:
            cur = conn.cursor()
            stage: str | None = None
            try:
                if created:
                    cur.execute(self._create_sql(physical, data.schema, key))
                if mode is WriteMode.UPSERT and not created:
                    stage = f"HW_STAGE_{uuid.uuid4().hex[:16].upper()}"
                    self._create_staging(cur, stage, physical, data.schema)
                    self._insert_arrow(cur, stage, data)
                cur.execute("BEGIN")
                try:
                    if mode is WriteMode.OVERWRITE and not created:
                        cur.execute(f"DELETE FROM {physical}")
                    if stage is not None:
                        self._merge_from_stage(cur, physical, stage, key, data.column_names)
                    else:
                        self._insert_arrow(cur, physical, data)
                except BaseException:
                    with contextlib.suppress(Exception):
                        cur.execute("ROLLBACK")
                    raise
                cur.execute("COMMIT")
            except BaseException as err:
                if created:
                    with contextlib.suppress(Exception):
                        cur.execute(f"DROP TABLE IF EXISTS {physical}")
                if isinstance(err, HeadwaterError) or not isinstance(err, Exception):
                    raise
                raise self._translate(err) from None
            finally:
                if stage is not None:
                    with contextlib.suppress(Exception):
                        cur.execute(f"DROP TABLE IF EXISTS {stage}")
                with contextlib.suppress(Exception):
                    cur.close()
        return WriteResult(dataset=dataset, mode=mode, rows_written=data.num_rows, created=created)

    def close(self) -> None:
        """Close the idle connections (connections held by open streams close when they end)."""
        with self._lock:
            idle, self._idle = self._idle, []
            readers, self._reader_idle = self._reader_idle, []
        for conn in [*idle, *readers]:
            with contextlib.suppress(Exception):
                conn.close()
