"""Postgres store (psycopg 3 with a connection pool): the production transactional store.

Reads stream through server-side cursors (``DECLARE ... CURSOR``), so a large result never sits
in memory; statement timeouts are ``SET LOCAL statement_timeout`` inside the read's own
transaction; bulk writes use ``COPY``. The connection string is a secret: it is never part of a
repr, a log line or an error message.

Two pools. The platform's own pool (writes, DDL, ANALYZE, introspection, CDC) keeps the owner
role of the DSN. Principal reads (``execute(..., scope=...)``) and ``explain`` take a reader
pool whose connections are set up once, when the pool opens them, with
``SET ROLE <reader_role>`` (a NOLOGIN role that holds SELECT on the catalogued tables only) and
``SET default_transaction_read_only = on`` (every autocommit statement is its own READ ONLY
transaction): no round trip per query is added. ``reader_dsn`` instead logs the reader pool in
as a LOGIN role of its own, which a statement cannot leave (a session whose login may assume
other roles can return to them with ``set_config('role', ...)``). A connection whose reported
``default_transaction_read_only`` or ``is_superuser`` changed while it ran a statement is
closed, never pooled again. :meth:`PostgresStore.sync_reader_grants` keeps the role's grants in
step with the catalog; :meth:`PostgresStore.grant_script` prints them for an administrator.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
import weakref
from collections.abc import Iterable, Iterator, Sequence
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
from headwater.stores._sql import SqlStore, rows_to_batch
from headwater.stores.base import (
    BACKSTOP_RULE,
    Capabilities,
    ColumnInfo,
    ReadScope,
    TableInfo,
    WriteResult,
)

__all__ = ["PostgresStore"]

_log = logging.getLogger("headwater.stores.postgres")

_OID_TYPES: dict[int, pa.DataType] = {
    16: pa.bool_(),
    20: pa.int64(),
    21: pa.int16(),
    23: pa.int32(),
    26: pa.int64(),
    700: pa.float32(),
    701: pa.float64(),
    25: pa.string(),
    1043: pa.string(),
    1042: pa.string(),
    19: pa.string(),
    114: pa.string(),
    3802: pa.string(),
    2950: pa.string(),
    1082: pa.date32(),
    1083: pa.time64("us"),
    1114: pa.timestamp("us"),
    1184: pa.timestamp("us", tz="UTC"),
    17: pa.binary(),
}

_NAME_TYPES: dict[str, pa.DataType] = {
    "boolean": pa.bool_(),
    "bigint": pa.int64(),
    "integer": pa.int32(),
    "smallint": pa.int16(),
    "real": pa.float32(),
    "double precision": pa.float64(),
    "text": pa.string(),
    "character varying": pa.string(),
    "character": pa.string(),
    "json": pa.string(),
    "jsonb": pa.string(),
    "uuid": pa.string(),
    "date": pa.date32(),
    "time without time zone": pa.time64("us"),
    "timestamp without time zone": pa.timestamp("us"),
    "timestamp with time zone": pa.timestamp("us", tz="UTC"),
    "bytea": pa.binary(),
}

_cursor_ids = itertools.count()


def _numeric_type(precision: int | None, scale: int | None) -> pa.DataType:
    if precision:
        return pa.decimal128(min(precision, 38), scale or 0)
    return pa.float64()


class PostgresStore(SqlStore):
    """A Postgres database (one schema of it) reached through a psycopg connection pool."""

    kind: ClassVar[str] = "postgres"
    pyformat: ClassVar[bool] = True
    before_read: Any = None
    """Called before each principal read takes a reader connection (the platform brings the
    reader role's grants in step with the catalog there: a dictionary look-up when nothing
    changed)."""

    def __init__(
        self,
        name: str,
        dsn: str,
        *,
        schema: str = "public",
        min_connections: int = 1,
        max_connections: int = 8,
        connect_timeout_s: float = 5.0,
        reader_role: str | None = None,
        reader_dsn: str | None = None,
    ) -> None:
        """``reader_role``: the role principal reads run as (``SET ROLE`` on the reader pool's
        connections; None: read-only transactions as the DSN's own role). ``reader_dsn``: log the
        reader pool in with this connection string instead (a secret, like ``dsn``)."""
        try:
            import psycopg  # noqa: F401
            import psycopg_pool  # noqa: F401
        except ImportError:
            raise MissingDependency(
                "the Postgres store needs psycopg; pip install 'headwater[postgres]'",
                extra="postgres",
            ) from None
        self.name = name
        self.schema = schema
        self._dsn = dsn
        self.capabilities = Capabilities(sql=True, dialect="postgres")
        self._min = min_connections
        self._max = max_connections
        self._connect_timeout = connect_timeout_s
        self._pool: Any = None
        self._reader_pool: Any = None
        self._pool_lock = threading.Lock()
        self.reader_role = reader_role
        self._reader_dsn = reader_dsn
        self._restricted = bool(reader_role or reader_dsn)
        """Principal reads run as a role of their own (else: read-only as the DSN's role)."""
        self._timeouts: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()

    def __repr__(self) -> str:
        return f"PostgresStore(name={self.name!r}, schema={self.schema!r})"

    # -- connections -------------------------------------------------------------------
    def _configure(self, conn: Any) -> None:
        from psycopg.types.string import TextLoader

        for typ in ("json", "jsonb", "uuid"):
            conn.adapters.register_loader(typ, TextLoader)
        conn.autocommit = True

    def _configure_reader(self, conn: Any) -> None:
        """Once per reader connection: the reader role and read-only transactions (one round trip)."""
        self._configure(conn)
        from psycopg import sql

        steps = []
        if self.reader_role:
            steps.append(sql.SQL("SET ROLE {}").format(sql.Identifier(self.reader_role)))
        steps.append(sql.SQL("SET default_transaction_read_only = on"))
        conn.execute(sql.SQL("; ").join(steps))
        if not _read_only_intact(conn, self._restricted):
            raise ConfigError(
                f"Postgres store {self.name!r}: principal reads would run with superuser rights; the reader "
                "role (and a reader_dsn's login) must not be a superuser")

    def _new_pool(self, dsn: str, configure: Any, label: str, min_size: int) -> Any:
        from psycopg_pool import ConnectionPool

        pool = ConnectionPool(
            dsn,
            min_size=min_size,
            max_size=self._max,
            timeout=self._connect_timeout,
            configure=configure,
            kwargs={"connect_timeout": max(1, int(self._connect_timeout))},
            open=False,
            name=f"headwater-{self.name}{label}",
        )
        pool.open(wait=False)
        return pool

    def _get_pool(self, reader: bool = False) -> Any:
        if reader:
            if self._reader_pool is None:
                with self._pool_lock:
                    if self._reader_pool is None:
                        self._check_reader()
                        self._reader_pool = self._new_pool(
                            self._reader_dsn or self._dsn, self._configure_reader, "-reader", self._min)
            return self._reader_pool
        if self._pool is None:
            with self._pool_lock:
                if self._pool is None:
                    self._pool = self._new_pool(self._dsn, self._configure, "", self._min)
        return self._pool

    def _check_reader(self) -> None:
        """Set one reader connection up before the pool does, so a missing role or a superuser
        reader is a clear error now rather than a pool that never hands out a connection."""
        import psycopg

        try:
            conn = psycopg.connect(self._reader_dsn or self._dsn,
                                   connect_timeout=max(1, int(self._connect_timeout)))
        except Exception as err:  # noqa: BLE001
            raise StoreUnavailable(
                f"cannot connect to Postgres store {self.name!r} for reads: {self._scrub(err)}",
                store=self.name) from None
        try:
            self._configure_reader(conn)
        except HeadwaterError:
            raise
        except Exception as err:  # noqa: BLE001
            raise ConfigError(
                f"Postgres store {self.name!r}: cannot assume the reader role {self.reader_role!r} "
                f"({self._scrub(err)}); create it and its grants with `headwater stores grants "
                f"{self.name} --apply` (docs/store-security.md)") from None
        finally:
            with contextlib.suppress(Exception):
                conn.close()

    @contextlib.contextmanager
    def connection(self, *, reader: bool = False) -> Iterator[Any]:
        """A pooled connection (autocommit; open a transaction explicitly).

        ``reader``: one of the reader pool's (reader role, read-only transactions), for
        principal SQL only. One that was tampered with while in use is closed, not pooled.
        """
        if reader and self.before_read is not None:
            self.before_read()
        pool = self._get_pool(reader)
        try:
            conn = pool.getconn()
        except Exception as err:  # PoolTimeout, OperationalError
            raise StoreUnavailable(
                f"cannot connect to Postgres store {self.name!r}: {self._scrub(err)}",
                store=self.name,
            ) from None
        try:
            yield conn
        finally:
            if reader and not _read_only_intact(conn, self._restricted):
                _log.warning("Postgres store %r: a principal read changed its session's read-only "
                             "setting or role; the connection is discarded", self.name)
                with contextlib.suppress(Exception):
                    conn.close()
            pool.putconn(conn)

    def _scrub(self, err: BaseException) -> str:
        text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        from psycopg.conninfo import conninfo_to_dict

        for dsn in (self._dsn, self._reader_dsn):
            with contextlib.suppress(Exception):
                password = conninfo_to_dict(dsn).get("password") if dsn else None
                if password:
                    text = text.replace(str(password), "***")
        return text

    def _translate(self, err: Exception, *, sql: str | None = None) -> HeadwaterError:
        import psycopg
        from psycopg import errors as pge

        msg = self._scrub(err)
        if isinstance(err, pge.QueryCanceled):
            return QueryTimeout(f"query on {self.name!r} exceeded its timeout", store=self.name)
        if isinstance(err, pge.SyntaxError) and "multiple commands" in msg:
            return QueryRejected(f"{self.name!r} (postgres) refused a second statement: principal reads are "
                                 "exactly one statement", rule=BACKSTOP_RULE, store=self.name)
        if isinstance(err, pge.InsufficientPrivilege | pge.ReadOnlySqlTransaction):
            return QueryRejected(
                f"{self.name!r} (postgres) refused it: {msg} (principal reads run read-only as the reader "
                f"role {self.reader_role!r}, which may read catalogued tables only)",
                rule=BACKSTOP_RULE, store=self.name)
        if isinstance(err, psycopg.IntegrityError | psycopg.DataError):
            return WriteError(f"write to {self.name!r} rejected: {msg}", store=self.name)
        if isinstance(err, psycopg.OperationalError) and not isinstance(err, pge.QueryCanceled):
            return StoreUnavailable(f"Postgres store {self.name!r} unavailable: {msg}", store=self.name)
        if isinstance(err, pge.UndefinedTable):
            return DatasetNotFound(f"{self.name!r}: {msg}", store=self.name)
        return QueryError(f"{self.name!r} (postgres) rejected the statement: {msg}", store=self.name)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Any]:
        with self.connection() as conn:
            try:
                with conn.transaction(), conn.cursor() as cur:
                    yield cur
            except HeadwaterError:
                raise
            except Exception as err:  # noqa: BLE001
                raise self._translate(err) from None

    # -- SQL helpers -------------------------------------------------------------------
    def _placeholder(self, n: int) -> str:
        return "%s"

    def name_key(self, name: str) -> str:
        """Headwater quotes every Postgres identifier, and quoted names compare exactly."""
        return name

    def _physical(self, table: str) -> str:
        return f"{self._quote(self.schema)}.{self._quote(table)}"

    def _sql_type(self, type_: pa.DataType) -> str:
        if pa.types.is_boolean(type_):
            return "BOOLEAN"
        if pa.types.is_int8(type_) or pa.types.is_int16(type_):
            return "SMALLINT"
        if pa.types.is_int32(type_):
            return "INTEGER"
        if pa.types.is_integer(type_):
            return "BIGINT"
        if pa.types.is_float32(type_):
            return "REAL"
        if pa.types.is_floating(type_):
            return "DOUBLE PRECISION"
        if pa.types.is_decimal(type_):
            return f"NUMERIC({type_.precision}, {type_.scale})"
        if pa.types.is_timestamp(type_):
            return "TIMESTAMPTZ" if type_.tz else "TIMESTAMP"
        if pa.types.is_date(type_):
            return "DATE"
        if pa.types.is_time(type_):
            return "TIME"
        if pa.types.is_binary(type_) or pa.types.is_large_binary(type_):
            return "BYTEA"
        return "TEXT"

    def _create_staging(self, cur: Any, stage: str, physical: str, schema: pa.Schema) -> None:
        cols = ", ".join(self._quote(n) for n in schema.names)
        cur.execute(
            f"CREATE TEMPORARY TABLE {stage} ON COMMIT DROP AS SELECT {cols} FROM {physical} WITH NO DATA"
        )

    def _drop_staging(self, cur: Any, stage: str) -> None:
        """Dropped on commit."""

    def _insert_arrow(self, cur: Any, physical: str, data: pa.Table) -> None:
        if data.num_rows == 0:
            return
        cols = ", ".join(self._quote(c) for c in data.column_names)
        with cur.copy(f"COPY {physical} ({cols}) FROM STDIN") as copy:
            for batch in data.to_batches(max_chunksize=10_000):
                columns = [c.to_pylist() for c in batch.columns]
                for row in zip(*columns, strict=True):
                    copy.write_row(row)

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
        """Run ``sql`` and stream Arrow batches.

        Rows arrive in libpq's chunked mode (``cursor.stream(size=...)``): one round trip, no
        server-side cursor, never more than one chunk in memory. The statement timeout is a
        session setting changed only when it differs from the connection's current one. With
        ``scope`` (a principal's read) the query runs on the reader pool (module docstring);
        a refusal is :class:`QueryRejected` (``rule="store-backstop"``).
        """
        stack = contextlib.ExitStack()
        try:
            conn = stack.enter_context(self.connection(reader=scope is not None))
            self._set_timeout(conn, timeout_s)
            cur = stack.enter_context(conn.cursor())
            values = list(params) if params else None
            rows_iter = cur.stream(sql, values, size=min(batch_size, 10_000))
            try:
                first = next(rows_iter)
            except StopIteration:
                first = None
                cur.execute(sql, values)  # an empty result: run it plainly to learn its columns
            desc = cur.description or []
        except HeadwaterError:
            stack.close()
            raise
        except Exception as err:  # noqa: BLE001
            translated = self._translate(err, sql=sql)
            with contextlib.suppress(Exception):
                stack.close()
            raise translated from None
        names = [d.name for d in desc]
        types = [
            _numeric_type(d.precision, d.scale) if d.type_code == 1700 else _OID_TYPES.get(d.type_code)
            for d in desc
        ]
        schema_types = [t or pa.string() for t in types]
        schema = pa.schema([pa.field(n, t) for n, t in zip(names, schema_types, strict=True)])

        def gen() -> Iterator[pa.RecordBatch]:
            try:
                if first is None:
                    return
                rows = [first]
                try:
                    for row in rows_iter:
                        rows.append(row)
                        if len(rows) >= batch_size:
                            yield _conform(rows_to_batch(rows, names, schema_types), schema)
                            rows = []
                except Exception as err:  # noqa: BLE001
                    raise self._translate(err, sql=sql) from None
                if rows:
                    yield _conform(rows_to_batch(rows, names, schema_types), schema)
            finally:
                with contextlib.suppress(Exception):
                    rows_iter.close()
                with contextlib.suppress(Exception):
                    stack.close()

        return pa.RecordBatchReader.from_batches(schema, gen())

    def _set_timeout(self, conn: Any, timeout_s: float | None) -> None:
        want = int(timeout_s * 1000) if timeout_s else 0
        if self._timeouts.get(conn, 0) != want:
            conn.execute(f"SET statement_timeout = {want}")
            self._timeouts[conn] = want

    def _fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.connection() as conn:
            try:
                return conn.execute(sql, list(params) if params else None).fetchall()
            except Exception as err:  # noqa: BLE001
                raise self._translate(err, sql=sql) from None

    def tables(self) -> list[TableInfo]:
        """Every table and view in the store's schema."""
        rows = self._fetchall(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
            "AND table_name NOT LIKE 'hw\\_%%' ORDER BY table_name",
            [self.schema],
        )
        return [self.table(r[0]) for r in rows]

    def table(self, name: str) -> TableInfo:
        """Introspect one table from ``information_schema`` and ``pg_index``."""
        rows = self._fetchall(
            "SELECT column_name, data_type, is_nullable, numeric_precision, numeric_scale "
            "FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
            "ORDER BY ordinal_position",
            [self.schema, name],
        )
        if not rows:
            raise DatasetNotFound(
                f"table {name!r} does not exist in store {self.name!r}", dataset=f"{self.name}.{name}"
            )
        pk_rows = self._fetchall(
            "SELECT a.attname FROM pg_index i "
            "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
            "WHERE i.indrelid = (quote_ident(%s) || '.' || quote_ident(%s))::regclass AND i.indisprimary "
            "ORDER BY array_position(i.indkey, a.attnum)",
            [self.schema, name],
        )
        pk = tuple(r[0] for r in pk_rows)
        cols = tuple(
            ColumnInfo(
                name=r[0],
                type=_numeric_type(r[3], r[4]) if r[1] == "numeric" else _NAME_TYPES.get(r[1], pa.string()),
                nullable=r[2] == "YES",
                primary_key=r[0] in pk,
            )
            for r in rows
        )
        return TableInfo(
            name=name, columns=cols, primary_key=pk, location=f"postgres://{self._host()}/{self.schema}.{name}"
        )

    def _host(self) -> str:
        from psycopg.conninfo import conninfo_to_dict

        with contextlib.suppress(Exception):
            d = conninfo_to_dict(self._dsn)
            return f"{d.get('host', 'localhost')}:{d.get('port', 5432)}/{d.get('dbname', '')}"
        return "postgres"

    def explain(self, sql: str, params: Sequence[Any] = ()) -> str:
        """Postgres's ``EXPLAIN`` output, planned on the reader pool (``sql`` is principal SQL)."""
        with self.connection(reader=True) as conn:
            try:
                rows = conn.execute(f"EXPLAIN {sql}", list(params) if params else None).fetchall()
            except Exception as err:  # noqa: BLE001
                raise self._translate(err, sql=sql) from None
        return "\n".join(r[0] for r in rows)

    # -- the reader role's grants --------------------------------------------------------
    def _granted(self, role: str) -> set[str]:
        """Tables and views of the schema on which ``role`` holds SELECT by a grant to it."""
        rows = self._fetchall(
            "SELECT c.relname FROM pg_catalog.pg_class c "
            "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "CROSS JOIN LATERAL pg_catalog.aclexplode(c.relacl) a "
            "JOIN pg_catalog.pg_roles r ON r.oid = a.grantee "
            "WHERE n.nspname = %s AND r.rolname = %s AND a.privilege_type = 'SELECT'",
            [self.schema, role])
        return {r[0] for r in rows}

    def grant_statements(self, tables: Iterable[str], *, create_role: bool = True) -> list[str]:
        """The SQL that gives the reader role SELECT on exactly ``tables`` of the store's schema.

        Creates the NOLOGIN role when missing (``create_role``), lets the platform's login
        assume it, grants USAGE on the schema and SELECT per table, and revokes every grant to
        the role on the schema's other tables (read from the database: idempotent).
        """
        from psycopg import sql

        role = self.reader_role
        if not role:
            raise ConfigError(f"Postgres store {self.name!r} has no reader_role to grant to")
        wanted = sorted(set(tables))
        exists = bool(self._fetchall("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = %s", [role]))
        stale = sorted(self._granted(role) - set(wanted)) if exists else []
        with self.connection() as conn:
            def text(q: Any) -> str:
                return q.as_string(conn)

            ident = sql.Identifier(role)
            out = []
            if create_role:
                out.append(text(sql.SQL(
                    "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = {}) "
                    "THEN CREATE ROLE {} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT; END IF; END $$"
                ).format(sql.Literal(role), ident)))
            if self._reader_dsn is None:
                superuser = conn.info.parameter_status("is_superuser") == "on"
                if not superuser:  # a superuser may SET ROLE to any role already
                    out.append(text(sql.SQL("GRANT {} TO CURRENT_USER").format(ident)))
            out.append(text(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(self.schema), ident)))
            for t in wanted:
                out.append(text(sql.SQL("GRANT SELECT ON TABLE {}.{} TO {}").format(
                    sql.Identifier(self.schema), sql.Identifier(t), ident)))
            for t in stale:
                out.append(text(sql.SQL("REVOKE ALL ON TABLE {}.{} FROM {}").format(
                    sql.Identifier(self.schema), sql.Identifier(t), ident)))
        return out

    def sync_reader_grants(self, tables: Iterable[str], *, create_role: bool = True) -> list[str]:
        """Apply :meth:`grant_statements` in one transaction on the platform's own connection;
        returns the statements run. Concurrent syncs (another process) are retried once."""
        import psycopg

        for attempt in (1, 2):
            statements = self.grant_statements(tables, create_role=create_role)
            try:
                with self.connection() as conn, conn.transaction():
                    for stmt in statements:
                        conn.execute(stmt)
                return statements
            except (psycopg.errors.DuplicateObject, psycopg.errors.UniqueViolation,
                    psycopg.errors.InternalError_) as err:
                if attempt == 2:
                    raise self._translate(err) from None
            except Exception as err:  # noqa: BLE001
                raise self._translate(err) from None
        return []  # pragma: no cover

    def replace(self, table: str, data: Any, *, key: Sequence[str] = ()) -> WriteResult:
        """``CREATE OR REPLACE``; the new table keeps the reader role's SELECT grant."""
        granted = bool(self.reader_role) and table in self._granted_if_role()
        result = super().replace(table, data, key=key)
        if granted:
            from psycopg import sql

            with self.connection() as conn:
                try:
                    conn.execute(sql.SQL("GRANT SELECT ON TABLE {}.{} TO {}").format(
                        sql.Identifier(self.schema), sql.Identifier(table), sql.Identifier(self.reader_role)))
                except Exception as err:  # noqa: BLE001
                    raise self._translate(err) from None
        return result

    def _granted_if_role(self) -> set[str]:
        assert self.reader_role
        if not self._fetchall("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = %s", [self.reader_role]):
            return set()
        return self._granted(self.reader_role)

    def close(self) -> None:
        """Close the pools."""
        for attr in ("_pool", "_reader_pool"):
            pool = getattr(self, attr)
            if pool is not None:
                with contextlib.suppress(Exception):
                    pool.close()
                setattr(self, attr, None)


def _read_only_intact(conn: Any, restricted: bool) -> bool:
    """Whether a reader connection still reports read-only transactions and, when it reads as a
    role of its own (``restricted``), no superuser rights (server-reported parameters, read
    locally: no round trip)."""
    info = conn.info
    return (info.parameter_status("default_transaction_read_only") == "on"
            and (not restricted or info.parameter_status("is_superuser") == "off"))


def _conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """``batch`` cast to ``schema`` (a no-op, and no per-column cast call, when they agree)."""
    return batch if batch.schema.equals(schema) else batch.cast(schema)
