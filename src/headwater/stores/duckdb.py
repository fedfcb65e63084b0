"""DuckDB store: the embedded analytical default (``warehouse``).

One database handle per store; every call works on its own cursor (DuckDB's per-thread
connection), so reads stream concurrently. Extensions are never downloaded: autoinstall is off
and :func:`load_extension` loads the offline ``duckdb-ext-*`` packages by path.

The backstop. DuckDB opens a file once per process and its configuration belongs to that one
database instance (every cursor shares it), so the store's instance is the locked one: external
access off (no files, URLs, ATTACH of files, extension loading, COPY to files) and the
configuration locked (no ``SET``/``PRAGMA`` can turn it back on), with ``allowed_directories``
(set before locking) limited to what the platform itself must read through DuckDB. The
platform's own work on the file (writes from Arrow, DML, ANALYZE, introspection) needs no
external access; anything that must read or write files (an export, a future COPY) runs on a
separate in-memory connection that reads the warehouse through Arrow. A principal read
(``execute(..., scope=...)``) must parse, by DuckDB's own parser, as exactly one ``SELECT``
that names only the scope's tables and registered views (no table function, no other table:
Headwater's own, uncatalogued ones, ``information_schema``; CTE names resolved per scope as
DuckDB binds them), and runs in a ``READ ONLY`` transaction, so it cannot write, attach, set or
copy. Federation
engines are locked the same way (:func:`new_connection` with ``locked=True``).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import itertools
import json
import os
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import duckdb
import pyarrow as pa

from headwater.errors import (
    DatasetNotFound,
    HeadwaterError,
    InvalidInput,
    MissingDependency,
    QueryError,
    QueryRejected,
    QueryTimeout,
    StoreUnavailable,
    WriteError,
)
from headwater.stores._sql import SqlStore
from headwater.stores.base import BACKSTOP_RULE, Capabilities, ColumnInfo, ReadScope, TableInfo

__all__ = ["DuckDBStore", "check_read_statement", "extension_path", "load_extension", "lock", "new_connection"]

_CONFIG = {
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
}
_LOCKED = {"enable_external_access": False, "lock_configuration": True}


def new_connection(
    path: str | Path = ":memory:", *, read_only: bool = False, allow_unsigned: bool = False,
    locked: bool = False, allowed_directories: Sequence[str] = (),
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection that never downloads extensions.

    ``locked`` gives the instance external access off and its configuration locked (the
    backstop for principal SQL; see the module docstring), after ``allowed_directories``: the
    only local folders DuckDB may then read. ``allow_unsigned`` lets :func:`load_extension`
    load the offline extension packages and cannot be combined with ``locked``: keep it off on
    connections that run principal SQL.
    """
    if locked and allow_unsigned:
        raise InvalidInput("a locked DuckDB connection cannot load unsigned extensions")
    config: dict[str, Any] = dict(_CONFIG)
    if allow_unsigned:
        config["allow_unsigned_extensions"] = True
    if locked and not allowed_directories:
        config.update(_LOCKED)  # at start-up: no SET statements to pay for
    con = duckdb.connect(str(path), read_only=read_only, config=config)
    _register_functions(con)
    if locked and allowed_directories:
        lock(con, allowed_directories)
    return con


def lock(con: duckdb.DuckDBPyConnection, allowed_directories: Sequence[str] = ()) -> None:
    """Turn external access off and lock the configuration of ``con``'s database instance.

    ``allowed_directories`` must be set first (DuckDB refuses it once external access is off);
    each is a local folder DuckDB may still read (``/`` appended). Irreversible for the
    instance: every cursor and every later connection to the same file inherits it.
    """
    if allowed_directories:
        dirs = ", ".join("'" + (d.rstrip("/") + "/").replace("'", "''") + "'" for d in allowed_directories)
        con.execute(f"SET allowed_directories = [{dirs}]")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


_CHECKED: dict[str, bool] = {}
_CHECKED_MAX = 4096


def check_read_statement(con: duckdb.DuckDBPyConnection, sql: str, store: str) -> None:
    """Refuse ``sql`` unless DuckDB's own parser reads it as exactly one ``SELECT``.

    The principal's SQL was parsed by sqlglot; checking it again with the parser that will run
    it closes any gap between the two (a second statement after ``;``, a statement sqlglot
    reads differently). Results are cached per SQL text (the rendered text of a plan repeats).
    """
    ok = _CHECKED.get(sql)
    if ok is None:
        try:
            statements = con.extract_statements(sql)
        except duckdb.Error:
            ok = False
        else:
            ok = len(statements) == 1 and statements[0].type == duckdb.StatementType.SELECT
        if len(_CHECKED) >= _CHECKED_MAX:
            _CHECKED.clear()
        _CHECKED[sql] = ok
    if not ok:
        raise QueryRejected(
            f"{store!r} (duckdb) refused a statement outside the plan: principal reads must be "
            "exactly one SELECT", rule=BACKSTOP_RULE, store=store)


_REFS: dict[str, tuple[frozenset[tuple[str, str, str]], frozenset[str]] | None] = {}


def check_read_tables(con: duckdb.DuckDBPyConnection, sql: str, scope: ReadScope, store: str) -> None:
    """Refuse ``sql`` unless every table it names (by DuckDB's own parser, CTEs resolved per
    scope) is a table or view of ``scope``, and it calls no table function.

    DuckDB has no per-table privileges; this is the table-level half of SQLite's authorizer.
    The names are read from ``json_serialize_sql`` once per SQL text (about 0.3 ms) and cached.
    """
    refs = _REFS.get(sql, False)
    if refs is False:
        refs = _table_refs(con, sql)
        if len(_REFS) >= _CHECKED_MAX:
            _REFS.clear()
        _REFS[sql] = refs
    if refs is None:
        raise QueryRejected(f"{store!r} (duckdb) refused a statement it cannot check: principal reads "
                            "must be one plain SELECT", rule=BACKSTOP_RULE, store=store)
    tables, functions = refs
    if functions:
        raise QueryRejected(
            f"{store!r} (duckdb) refused table function {sorted(functions)[0]}(): principal reads may "
            "only read the planned tables", rule=BACKSTOP_RULE, store=store)
    for catalog, schema, name in tables:
        planned = name in scope.tables or name in scope.views
        if not planned or catalog or schema not in ("", "main"):
            shown = ".".join(p for p in (catalog, schema, name) if p)
            raise QueryRejected(
                f"{store!r} (duckdb) refused a read of {shown[:80]!r}: principal reads may only read the "
                "planned tables", rule=BACKSTOP_RULE, store=store)


def _table_refs(con: duckdb.DuckDBPyConnection, sql: str) -> tuple[frozenset[tuple[str, str, str]], frozenset[str]] | None:
    """(catalog, schema, table) of every base-table reference and the names of table functions
    in ``sql``, lower case; None when DuckDB cannot serialise it."""
    try:
        row = con.execute("SELECT json_serialize_sql(?::VARCHAR)", [sql]).fetchone()
        tree = json.loads(row[0]) if row else {}
    except (duckdb.Error, ValueError):
        return None
    if tree.get("error") or len(tree.get("statements") or ()) != 1:
        return None
    tables: set[tuple[str, str, str]] = set()
    functions: set[str] = set()
    _walk(tree["statements"][0].get("node"), frozenset(), tables, functions)
    return frozenset(tables), frozenset(functions)


def _walk(node: Any, visible: frozenset[str], tables: set[tuple[str, str, str]], functions: set[str]) -> None:
    """Collect table references; ``visible`` are the CTE names a bare name resolves to here."""
    if isinstance(node, list):
        for item in node:
            _walk(item, visible, tables, functions)
        return
    if not isinstance(node, dict):
        return
    kind = node.get("type")
    if kind == "BASE_TABLE":
        catalog = (node.get("catalog_name") or "").lower()
        schema = (node.get("schema_name") or "").lower()
        name = (node.get("table_name") or "").lower()
        if catalog or schema or name not in visible:
            tables.add((catalog, schema, name))
        return
    if kind == "TABLE_FUNCTION":
        fn = node.get("function") or {}
        functions.add(str(fn.get("function_name") or "?").lower())
    ctes = (node.get("cte_map") or {}).get("map") if isinstance(node.get("cte_map"), dict) else None
    if ctes:
        inner = set(visible)
        for entry in ctes:
            name = str(entry.get("key") or "").lower()
            body = (entry.get("value") or {}).get("query")
            recursive = isinstance(body, dict) and (body.get("node") or {}).get("type") == "RECURSIVE_CTE_NODE"
            # A CTE's body sees the CTEs before it (and itself only when recursive): a name
            # that matches a CTE elsewhere is a table here.
            _walk(body, frozenset(inner | {name}) if recursive else frozenset(inner), tables, functions)
            inner.add(name)
        visible = frozenset(inner)
    for key, value in node.items():
        if key != "cte_map" and isinstance(value, dict | list):
            _walk(value, visible, tables, functions)


def _register_functions(con: duckdb.DuckDBPyConnection) -> None:
    """Functions that masks need (``hw_redact_pii``); cursors of ``con`` share them."""
    from headwater.policy._masks import REDACT_PII_FUNCTION

    def redact(values: Any) -> Any:
        from headwater.pii import redact_pii_arrow

        return redact_pii_arrow(values)

    try:
        con.create_function(REDACT_PII_FUNCTION, redact, ["VARCHAR"], "VARCHAR", type="arrow",
                            null_handling="special", side_effects=False)
    except duckdb.CatalogException:
        pass  # another connection to the same instance (file) registered it already


def extension_path(name: str) -> Path:
    """Path of extension ``name`` from its offline PyPI package ``duckdb-ext-<name>``."""
    spec = importlib.util.find_spec("duckdb_ext")
    roots = list(spec.submodule_search_locations or []) if spec else []
    for root in roots:
        found = sorted(Path(root).glob(f"extensions/v{duckdb.__version__}/*/{name}.duckdb_extension"))
        if found:
            return found[0]
    raise MissingDependency(
        f"DuckDB extension {name!r} is not installed for duckdb {duckdb.__version__}; "
        f"pip install 'duckdb-ext-{name}=={duckdb.__version__}.*'",
        package=f"duckdb-ext-{name}",
    )


def load_extension(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """Load extension ``name`` by path (the connection needs ``allow_unsigned=True``)."""
    con.execute(f"LOAD '{extension_path(name)}'")


class _Watchdog:
    """One thread that interrupts queries past their deadline.

    A ``threading.Timer`` per query costs a thread start (about a millisecond) on every call;
    this keeps one sleeping thread and a table of deadlines instead.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._deadlines: dict[int, tuple[float, Any]] = {}
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None
        self._wake_at = float("inf")  # when the sleeping thread wakes next

    def arm(self, timeout_s: float, action: Any) -> int:
        with self._cond:
            handle = next(self._ids)
            deadline = time.monotonic() + timeout_s
            self._deadlines[handle] = (deadline, action)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="headwater-watchdog", daemon=True)
                self._thread.start()
            if deadline < self._wake_at:
                # Only an earlier deadline wakes the thread: a wake-up per query would cost
                # every query a thread switch.
                self._cond.notify()
            return handle

    def disarm(self, handle: int) -> None:
        with self._cond:
            self._deadlines.pop(handle, None)

    def _run(self) -> None:
        while True:
            with self._cond:
                now = time.monotonic()
                due = [h for h, (d, _) in self._deadlines.items() if d <= now]
                actions = [self._deadlines.pop(h)[1] for h in due]
                wait = min((d for d, _ in self._deadlines.values()), default=now + 60) - now
                if not actions:
                    self._wake_at = now + max(wait, 0.001)
                    self._cond.wait(timeout=max(wait, 0.001))
                    self._wake_at = float("-inf")  # awake: no notify needed until it sleeps again
            for action in actions:
                with contextlib.suppress(Exception):
                    action()


_WATCHDOG = _Watchdog()


def _sql_type(type_: pa.DataType) -> str:
    if pa.types.is_boolean(type_):
        return "BOOLEAN"
    if pa.types.is_int8(type_):
        return "TINYINT"
    if pa.types.is_int16(type_):
        return "SMALLINT"
    if pa.types.is_int32(type_):
        return "INTEGER"
    if pa.types.is_integer(type_):
        return "BIGINT"
    if pa.types.is_float32(type_):
        return "REAL"
    if pa.types.is_floating(type_):
        return "DOUBLE"
    if pa.types.is_decimal(type_):
        return f"DECIMAL({min(type_.precision, 38)}, {type_.scale})"
    if pa.types.is_timestamp(type_):
        return "TIMESTAMPTZ" if type_.tz else "TIMESTAMP"
    if pa.types.is_date(type_):
        return "DATE"
    if pa.types.is_time(type_):
        return "TIME"
    if pa.types.is_binary(type_) or pa.types.is_large_binary(type_):
        return "BLOB"
    return "VARCHAR"


class DuckDBStore(SqlStore):
    """A DuckDB database file."""

    kind: ClassVar[str] = "duckdb"

    _single: bool = False
    _read_only_txn: bool = True
    """Principal reads run in a ``READ ONLY`` transaction (the store's file instance)."""

    def __init__(
        self, name: str, path: str | Path, *, read_only: bool = False,
        allowed_directories: Sequence[str] = (),
    ) -> None:
        """Open (or create) the database file with its instance locked (module docstring).

        ``allowed_directories``: local folders DuckDB itself may read after locking (e.g. a
        lake's root for DuckDB-native lake reads); none by default.
        """
        self.name = name
        self.path = str(path)
        self.capabilities = Capabilities(sql=True, dialect="duckdb")
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._allowed_directories = tuple(allowed_directories)
        try:
            self._db = self._open_locked(read_only=read_only)
        except duckdb.Error as err:
            raise StoreUnavailable(
                f"cannot open DuckDB store {name!r} at {self.path}: {err}", store=name
            ) from None
        self._lock = threading.Lock()

    def _open_locked(self, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
        """The store's database handle, locked: every (re)open of the file goes through here,
        so the instance principal reads run on never has external access."""
        return new_connection(self.path, read_only=read_only, locked=True,
                              allowed_directories=self._allowed_directories)

    @classmethod
    def over(cls, name: str, con: duckdb.DuckDBPyConnection, *, read_only_txn: bool = False) -> DuckDBStore:
        """A store over one existing connection (a federation engine).

        Calls use that connection itself, so views registered on it are visible; the first
        ``execute`` owns it and closes it when its stream ends. ``read_only_txn`` runs a
        principal read in a ``READ ONLY`` transaction (for a cursor of a file's instance; an
        in-memory engine holds nothing a write could harm).
        """
        self = cls.__new__(cls)
        self._single = True
        self._read_only_txn = read_only_txn
        self.name = name
        self.path = ":memory:"
        self.capabilities = Capabilities(sql=True, dialect="duckdb")
        self._db = con
        self._lock = threading.Lock()
        return self

    def __repr__(self) -> str:
        return f"DuckDBStore(name={self.name!r}, path={self.path!r})"

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A fresh cursor on the store's database (safe to use from one thread)."""
        if self._single:
            return self._db
        with self._lock:
            return self._db.cursor()

    def _sql_type(self, type_: pa.DataType) -> str:
        return _sql_type(type_)

    def _translate(self, err: Exception, *, sql: str | None = None) -> HeadwaterError:
        msg = str(err)
        if isinstance(err, duckdb.PermissionException) or (
            isinstance(err, duckdb.TransactionException) and "read-only" in msg
        ) or (isinstance(err, duckdb.InvalidInputException) and "configuration has been locked" in msg):
            return QueryRejected(
                f"{self.name!r} (duckdb) refused it: {msg.splitlines()[0][:200]} (external access is off, "
                "the configuration locked and principal reads read-only)", rule=BACKSTOP_RULE, store=self.name)
        if isinstance(err, duckdb.InterruptException):
            return QueryTimeout(f"query on {self.name!r} exceeded its timeout", store=self.name)
        if isinstance(err, duckdb.ConstraintException | duckdb.ConversionException):
            return WriteError(f"write to {self.name!r} rejected: {msg}", store=self.name)
        if isinstance(err, duckdb.IOException | duckdb.ConnectionException):
            return StoreUnavailable(f"DuckDB store {self.name!r} unavailable: {msg}", store=self.name)
        return QueryError(f"{self.name!r} (duckdb) rejected the statement: {msg}", store=self.name)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        cur = self.cursor()
        try:
            cur.begin()
            try:
                yield cur
            except BaseException:
                cur.rollback()
                raise
            cur.commit()
        finally:
            cur.close()

    def _affected(self, cur: Any) -> int:
        """DuckDB answers DML with one row holding the count (``rowcount`` is -1)."""
        row = cur.fetchone()
        return int(row[0]) if row else 0

    def _insert_arrow(self, cur: Any, physical: str, data: pa.Table) -> None:
        if data.num_rows == 0:
            return
        cur.register("hw_src", data)
        try:
            cols = ", ".join(self._quote(c) for c in data.column_names)
            cur.execute(f"INSERT INTO {physical} ({cols}) SELECT {cols} FROM hw_src")
        finally:
            cur.unregister("hw_src")

    def _create_staging(self, cur: Any, stage: str, physical: str, schema: pa.Schema) -> None:
        cur.execute(f"DROP TABLE IF EXISTS temp.{stage}")
        super()._create_staging(cur, stage, physical, schema)

    def execute(
        self,
        sql: str,
        params: Sequence[Any] = (),
        *,
        batch_size: int = 65_536,
        timeout_s: float | None = None,
        scope: ReadScope | None = None,
    ) -> pa.RecordBatchReader:
        """Run ``sql`` and stream the result as Arrow record batches.

        With ``scope`` (a principal's read): exactly one SELECT by DuckDB's parser, in a
        ``READ ONLY`` transaction, else :class:`QueryRejected` (``rule="store-backstop"``).
        """
        cur = self.cursor()
        if scope is not None:
            try:
                check_read_statement(cur, sql, self.name)
                check_read_tables(cur, sql, scope, self.name)
                if self._read_only_txn:
                    # Closing the cursor when the stream ends rolls the transaction back.
                    cur.execute("BEGIN TRANSACTION READ ONLY")
            except BaseException:
                cur.close()
                raise
        timer = _WATCHDOG.arm(timeout_s, cur.interrupt) if timeout_s else None
        try:
            res = cur.execute(sql, list(params)) if params else cur.execute(sql)
            reader = res.fetch_record_batch(batch_size)
        except duckdb.Error as err:
            if timer:
                _WATCHDOG.disarm(timer)
            cur.close()
            raise self._translate(err, sql=sql) from None

        def gen() -> Iterator[pa.RecordBatch]:
            try:
                while True:
                    try:
                        batch = reader.read_next_batch()
                    except StopIteration:
                        return
                    except duckdb.Error as err:
                        raise self._translate(err, sql=sql) from None
                    except pa.ArrowInvalid as err:
                        # DuckDB reports errors raised mid-stream through Arrow.
                        if "INTERRUPT" in str(err).upper():
                            raise QueryTimeout(
                                f"query on {self.name!r} exceeded its timeout", store=self.name
                            ) from None
                        raise QueryError(
                            f"{self.name!r} (duckdb) failed while streaming: {err}", store=self.name
                        ) from None
                    yield batch
            finally:
                if timer:
                    _WATCHDOG.disarm(timer)
                cur.close()

        return pa.RecordBatchReader.from_batches(reader.schema, gen())

    def arrow(self, sql: str, params: Sequence[Any] = ()) -> pa.Table:
        """Run ``sql`` and return the whole result (for small internal queries)."""
        return self.execute(sql, params).read_all()

    def tables(self) -> list[TableInfo]:
        """Every table and view in the ``main`` schema."""
        names = self.arrow(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' "
            "AND table_catalog = current_database() ORDER BY table_name"
        ).column(0).to_pylist()
        return [self.table(n) for n in names if not n.startswith("hw_")]

    def table(self, name: str) -> TableInfo:
        """Introspect one table: Arrow types from a zero-row scan, keys from constraints."""
        cur = self.cursor()
        try:
            exists = cur.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'main' "
                "AND lower(table_name) = lower(?) AND table_catalog = current_database()",
                [name],
            ).fetchone()
            if not exists or not exists[0]:
                raise DatasetNotFound(
                    f"table {name!r} does not exist in store {self.name!r}",
                    dataset=f"{self.name}.{name}",
                )
            schema = cur.execute(f"SELECT * FROM {self._quote(name)} LIMIT 0").fetch_arrow_table().schema
            rows = cur.execute(
                "SELECT column_name, is_nullable FROM information_schema.columns "
                "WHERE table_schema = 'main' AND lower(table_name) = lower(?) "
                "AND table_catalog = current_database() ORDER BY ordinal_position",
                [name],
            ).fetchall()
            pk_row = cur.execute(
                "SELECT constraint_column_names FROM duckdb_constraints() "
                "WHERE constraint_type = 'PRIMARY KEY' AND lower(table_name) = lower(?) "
                "AND schema_name = 'main' AND database_name = current_database()",
                [name],
            ).fetchone()
        except duckdb.Error as err:
            raise self._translate(err) from None
        finally:
            cur.close()
        pk = tuple(pk_row[0]) if pk_row else ()
        nullable = {r[0]: r[1] == "YES" for r in rows}
        cols = tuple(
            ColumnInfo(
                name=f.name,
                type=f.type,
                nullable=nullable.get(f.name, True) and f.name not in pk,
                primary_key=f.name in pk,
            )
            for f in schema
        )
        return TableInfo(name=name, columns=cols, primary_key=pk, location=f"duckdb://{self.path}#{name}")

    def explain(self, sql: str, params: Sequence[Any] = ()) -> str:
        """DuckDB's physical plan (``sql`` is checked as a principal read: one SELECT)."""
        with self._lock:
            check_read_statement(self._db, sql, self.name)
        rows = self.arrow(f"EXPLAIN {sql}", params)
        return "\n".join(str(v) for v in rows.column(rows.num_columns - 1).to_pylist())

    def close(self) -> None:
        """Close the database handle."""
        with contextlib.suppress(duckdb.Error):
            self._db.close()

    def rewrite_file(self) -> None:
        """Rewrite the database file from its live data, then reopen it (for erasure).

        DuckDB keeps deleted rows, and blocks freed by dropped tables, in the file. The database
        is copied into a new file (``COPY FROM DATABASE``: schemas, tables with their keys,
        views, sequences, macros) that then replaces the old one. The store's cursors are
        closed (a read streaming meanwhile fails). Refused with ``StoreUnavailable`` (nothing
        changed) while another handle on the file is open in this process: it would be left on
        the old file.
        """
        if self.path == ":memory:" or getattr(self, "_single", False):
            return
        path = Path(self.path)
        tmp = path.with_name(f"{path.name}.hw-rewrite")
        with self._lock:
            self._db.close()
            try:
                for stale in (tmp, Path(f"{tmp}.wal")):
                    stale.unlink(missing_ok=True)
                # A handle still open shares the database instance, and DuckDB refuses a new
                # connection with another configuration than that instance's: the guard.
                con = duckdb.connect(str(path), config={**_CONFIG, "threads": 1})
                try:
                    db = con.execute("SELECT current_database()").fetchone()[0]  # type: ignore[index]
                    con.execute("CHECKPOINT")
                    con.execute("ATTACH " + "'" + str(tmp).replace("'", "''") + "' AS hw_rewrite")
                    con.execute(f"COPY FROM DATABASE {self._quote(db)} TO hw_rewrite")
                    con.execute("DETACH hw_rewrite")
                finally:
                    con.close()
                if Path(f"{path}.wal").exists():
                    raise StoreUnavailable(f"DuckDB store {self.name!r} kept a WAL after a checkpoint; "
                                           "not rewritten", store=self.name)
                os.replace(tmp, path)
            except duckdb.Error as err:
                tmp.unlink(missing_ok=True)
                raise StoreUnavailable(f"cannot rewrite DuckDB store {self.name!r}: "
                                       f"{str(err).splitlines()[0][:300]}", store=self.name) from None
            finally:
                tmp.unlink(missing_ok=True)
                # Reopened locked, as every open of the file is: principal reads must never run
                # on an instance with external access.
                self._db = self._open_locked()
