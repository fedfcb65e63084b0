"""The stores' backstop on the embedded stores (SQLite, DuckDB, Parquet): principal reads that
bypass the planner on purpose are refused with ``QueryRejected(rule="store-backstop")``.

Each test calls the store's principal-read path (``execute(..., scope=...)``) with raw SQL, as if
the SQL front door had missed it; the platform's own path (no scope) keeps working.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from headwater import QueryRejected
from headwater.stores.base import BACKSTOP_RULE, ReadScope
from headwater.stores.duckdb import DuckDBStore, new_connection
from headwater.stores.parquet import ParquetStore
from headwater.stores.sqlite import SQLiteStore

CUSTOMERS = pa.table({"id": [1, 2, 3], "name": ["a", "b", "c"], "ssn": ["111", "222", "333"]})
SCOPE = ReadScope(tables={"customers": frozenset({"id", "name"})})


def _refused(store, sql: str, scope: ReadScope = SCOPE, params=()) -> QueryRejected:
    with pytest.raises(QueryRejected) as info:
        store.execute(sql, params, scope=scope).read_all()
    assert info.value.context["rule"] == BACKSTOP_RULE
    return info.value


# -- SQLite ---------------------------------------------------------------------------------
@pytest.fixture
def sqlite_store(tmp_path: Path):
    store = SQLiteStore("app", tmp_path / "app.db")
    store.write("customers", CUSTOMERS, key=["id"])
    store.write("orders", pa.table({"id": [1], "customer_id": [1]}))
    with sqlite3.connect(tmp_path / "app.db") as con:
        con.execute("CREATE TABLE _hw_changes (seq INTEGER PRIMARY KEY, row TEXT)")
        con.execute("INSERT INTO _hw_changes (row) VALUES ('{\"ssn\": \"111\"}')")
        con.execute("CREATE TABLE hw_internal (x TEXT)")
        con.execute("CREATE VIEW customer_names AS SELECT id, name FROM customers")
    yield store
    store.close()


def test_sqlite_planned_reads_pass(sqlite_store: SQLiteStore) -> None:
    out = sqlite_store.execute(
        "SELECT id, lower(name) AS n, count(*) OVER () AS c FROM customers WHERE id >= ? ORDER BY id",
        [2], scope=SCOPE).read_all()
    assert out.to_pylist() == [{"id": 2, "n": "b", "c": 2}, {"id": 3, "n": "c", "c": 2}]
    assert sqlite_store.execute("SELECT count(*) AS n FROM customers", scope=SCOPE).read_all().to_pylist() == [{"n": 3}]
    view = ReadScope(tables={"customer_names": frozenset({"id", "name"})})
    assert sqlite_store.execute("SELECT name FROM customer_names WHERE id = 1", scope=view).read_all().num_rows == 1


@pytest.mark.parametrize("sql", [
    "SELECT ssn FROM customers",                          # a hidden column
    "SELECT * FROM customers",                            # * reaches the hidden column
    "SELECT id FROM customers WHERE ssn = '111'",         # a hidden column in a predicate
    "SELECT * FROM orders",                               # a table outside the plan
    "SELECT * FROM _hw_changes",                          # CDC before/after rows
    "SELECT * FROM hw_internal",                          # Headwater's own tables
    "SELECT name, sql FROM sqlite_master",                # the schema
    "SELECT * FROM customer_names",                       # a view outside the plan
    "SELECT sqlite_version()",                            # a function outside the allow-list
    "SELECT load_extension('x')",
    "SELECT * FROM pragma_table_info('customers')",
    "PRAGMA table_info(customers)",
    "ATTACH DATABASE ':memory:' AS other",
    "INSERT INTO customers (id, name) VALUES (9, 'x')",
    "DELETE FROM customers",
    "UPDATE customers SET name = 'x'",
    "CREATE TABLE stolen AS SELECT id FROM customers",
    "CREATE TEMP TABLE t (x)",
    "DROP TABLE customers",
])
def test_sqlite_refuses_outside_the_plan(sqlite_store: SQLiteStore, sql: str) -> None:
    _refused(sqlite_store, sql)
    # the platform's own path is untouched, and the data is still there
    assert sqlite_store.execute("SELECT count(*) AS n FROM customers").read_all().column(0)[0].as_py() == 3


def test_sqlite_scope_rechecked_for_a_cached_statement(sqlite_store: SQLiteStore) -> None:
    """The same SQL text, allowed under one scope, is checked again under a narrower one on the
    same pooled connection (SQLite's statement cache must not keep the old decision)."""
    wide = ReadScope(tables={"customers": frozenset({"id", "name", "ssn"})})
    sql = "SELECT ssn FROM customers WHERE id = ?"
    for _ in range(3):
        assert sqlite_store.execute(sql, [1], scope=wide).read_all().num_rows == 1
    _refused(sqlite_store, sql, params=[1])
    assert sqlite_store.execute(sql, [1], scope=wide).read_all().num_rows == 1


def test_sqlite_reads_are_read_only_connections(sqlite_store: SQLiteStore) -> None:
    everything = ReadScope(tables={"customers": frozenset({"id", "name", "ssn"})})
    sqlite_store.execute("SELECT id FROM customers", scope=everything).read_all()
    con = sqlite_store._ro_idle.pop()  # the connection that read (taken out of the pool)
    try:
        con.set_authorizer(None)  # below the authorizer: the connection itself is read-only
        assert con.execute("PRAGMA query_only").fetchone() == (1,)
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            con.execute("DELETE FROM customers")
    finally:
        con.close()


# -- DuckDB ---------------------------------------------------------------------------------
@pytest.fixture
def duck(tmp_path: Path):
    store = DuckDBStore("warehouse", tmp_path / "warehouse.duckdb")
    store.write("customers", CUSTOMERS, key=["id"])
    store.write("hw_internal", pa.table({"secret": ["x"]}))
    store.write("orders_raw", pa.table({"id": [1]}))
    cur = store.cursor()
    cur.execute("CREATE SEQUENCE seq")
    cur.close()
    (tmp_path / "secret.csv").write_text("ssn\n111\n")
    yield store
    store.close()


def test_duckdb_planned_reads_pass(duck: DuckDBStore) -> None:
    out = duck.execute("SELECT id, name FROM customers WHERE id = ?", [2], scope=SCOPE).read_all()
    assert out.to_pylist() == [{"id": 2, "name": "b"}]
    ctes = ("WITH c AS (SELECT id FROM main.customers), d AS (SELECT id FROM c) "
            "SELECT count(*) AS n FROM d WHERE id IN (SELECT id FROM c)")
    assert duck.execute(ctes, scope=SCOPE).read_all().to_pylist() == [{"n": 3}]
    rec = ("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) "
           "SELECT count(*) AS n FROM r, customers")
    assert duck.execute(rec, scope=SCOPE).read_all().to_pylist() == [{"n": 9}]


@pytest.mark.parametrize("sql", [
    "SELECT * FROM read_csv('{dir}/secret.csv')",
    "SELECT * FROM '{dir}/secret.csv'",                  # replacement scan of a quoted path
    "SELECT * FROM read_text('/etc/hostname')",
    "SELECT * FROM hw_internal",                         # Headwater's own table
    "SELECT * FROM orders_raw",                          # a table outside the catalog
    "SELECT * FROM customers, (SELECT * FROM orders_raw) x",
    "SELECT id FROM customers WHERE id IN (SELECT id FROM orders_raw)",
    "SELECT * FROM information_schema.tables",
    "SELECT * FROM duckdb_tables()",
    "SELECT * FROM range(3)",
    # a CTE name used outside its scope, or inside its own body, is the table
    "SELECT * FROM (WITH hw_internal AS (SELECT 1 AS secret) SELECT 1) s, hw_internal",
    "WITH hw_internal AS (SELECT * FROM hw_internal) SELECT * FROM hw_internal",
    "WITH a AS (SELECT * FROM b), b AS (SELECT 1 AS x) SELECT * FROM a",
    "SELECT * FROM glob('{dir}/*')",
    "SELECT 1; DELETE FROM customers",                   # a second statement
    "DELETE FROM customers",
    "INSERT INTO customers VALUES (9, 'x', 'y')",
    "CREATE TABLE stolen AS SELECT * FROM customers",
    "SELECT nextval('seq')",                             # a write hidden in a SELECT
    "ATTACH '{dir}/other.duckdb' AS other",
    "ATTACH ':memory:' AS other",
    "COPY customers TO '{dir}/out.csv'",
    "SET enable_external_access = true",
    "SET lock_configuration = false",
    "PRAGMA enable_profiling",
    "INSTALL httpfs",
    "LOAD httpfs",
    "CALL checkpoint()",
])
def test_duckdb_refuses_outside_the_plan(duck: DuckDBStore, tmp_path: Path, sql: str) -> None:
    _refused(duck, sql.format(dir=tmp_path))
    assert duck.execute("SELECT count(*) FROM customers").read_all().column(0)[0].as_py() == 3
    assert not (tmp_path / "out.csv").exists()


def test_duckdb_instance_is_locked_for_everyone(duck: DuckDBStore, tmp_path: Path) -> None:
    """Even the platform's own cursor cannot turn external access back on or read files."""
    cur = duck.cursor()
    try:
        with pytest.raises(duckdb.Error, match="locked|disabled"):
            cur.execute("SET enable_external_access = true")
        with pytest.raises(duckdb.PermissionException):
            cur.execute(f"SELECT * FROM read_csv('{tmp_path}/secret.csv')")
    finally:
        cur.close()


def test_duckdb_allowed_directories(tmp_path: Path) -> None:
    """A folder the platform must read stays readable; anything else does not."""
    lake = tmp_path / "lake"
    lake.mkdir()
    (lake / "ok.csv").write_text("a\n1\n")
    (tmp_path / "secret.csv").write_text("a\n2\n")
    store = DuckDBStore("warehouse", tmp_path / "w.duckdb", allowed_directories=[str(lake)])
    try:
        cur = store.cursor()
        assert cur.execute(f"SELECT a FROM read_csv('{lake}/ok.csv')").fetchall() == [(1,)]
        with pytest.raises(duckdb.PermissionException):
            cur.execute(f"SELECT a FROM read_csv('{tmp_path}/secret.csv')")
        cur.close()
    finally:
        store.close()


def test_federation_engine_is_locked(tmp_path: Path) -> None:
    (tmp_path / "secret.csv").write_text("ssn\n111\n")
    con = new_connection(locked=True)
    con.register("hw_src_0", pa.table({"x": [1]}))
    engine = DuckDBStore.over("federation", con)
    views = ReadScope(views=frozenset({"hw_src_0"}))
    assert engine.execute("SELECT x FROM hw_src_0", scope=views).read_all().num_rows == 1
    for sql in (f"SELECT * FROM '{tmp_path}/secret.csv'", "SELECT 1; SELECT 2",
                "SET enable_external_access = true"):
        con = new_connection(locked=True)
        _refused(DuckDBStore.over("federation", con), sql, ReadScope())


# -- Parquet --------------------------------------------------------------------------------
@pytest.fixture
def lake(tmp_path: Path) -> ParquetStore:
    store = ParquetStore("lake", str(tmp_path / "lake"))
    store.write("customers", CUSTOMERS, key=["id"])
    store.write("payroll", pa.table({"id": [1], "salary": [100]}))
    # retention archives: deleted rows kept on the lake, never a dataset
    archived = tmp_path / "lake" / "archive" / "customers" / "2025-01-01"
    archived.mkdir(parents=True)
    import pyarrow.parquet as pq

    pq.write_table(CUSTOMERS, archived / "run.parquet")
    return store


def test_parquet_planned_reads_pass(lake: ParquetStore) -> None:
    assert lake.execute("SELECT name FROM customers WHERE id = ?", [1], scope=SCOPE).read_all().num_rows == 1


@pytest.mark.parametrize("sql", [
    "SELECT * FROM payroll",
    "SELECT * FROM archive",
    "SELECT * FROM customers, payroll",
    "SELECT * FROM read_parquet('{dir}/lake/payroll/*.parquet')",
    "SELECT * FROM '{dir}/lake/archive/customers/2025-01-01/run.parquet'",
    "SELECT 1; SELECT 2",
])
def test_parquet_refuses_outside_the_plan(lake: ParquetStore, tmp_path: Path, sql: str) -> None:
    _refused(lake, sql.format(dir=tmp_path))
