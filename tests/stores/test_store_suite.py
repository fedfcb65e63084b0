"""One suite for every store backend (``any_store`` from ``tests/fix_services.py``).

Where backends legitimately differ, the test reads the backend's :class:`Traits` below rather
than skipping; a test that cannot run on a backend says so in its skip reason.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import pickle
import traceback
import uuid
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pytest
from sqlglot import exp

from headwater.errors import (
    DatasetNotFound,
    HeadwaterError,
    QueryError,
    QueryParseError,
    QueryTimeout,
    StoreUnavailable,
    WriteError,
)
from headwater.stores._sql import param
from headwater.stores.base import Store, WriteMode
from tests.fix_services import free_port


@dataclass(frozen=True)
class Traits:
    """How one backend (as run in tests) differs from the others."""

    enforces_primary_key: bool
    """The store itself rejects a duplicate key on append."""
    key_not_null: bool
    """Introspection reports key columns as NOT NULL."""
    syntax_error: type[HeadwaterError]
    """What SQL that does not parse raises."""
    explain: bool
    """``explain`` works on the server used in tests."""
    slow_sql: str | None
    """A statement that runs for many seconds (timeout test); None when the test server cannot
    cancel a running statement."""


_DUCK_SLOW = "SELECT sum(hash(i * 7)) FROM range(100000000000) t(i)"

TRAITS: dict[str, Traits] = {
    "sqlite": Traits(
        enforces_primary_key=True, key_not_null=True, syntax_error=QueryError, explain=True,
        slow_sql="WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
                 "WHERE x < 10000000000) SELECT count(*) FROM c",
    ),
    "duckdb": Traits(True, True, QueryError, True, _DUCK_SLOW),
    "postgres": Traits(True, True, QueryError, True, "SELECT pg_sleep(30)"),
    # The lake parses SQL itself (to find dataset names) before DuckDB runs it.
    "parquet_local": Traits(False, False, QueryParseError, True, _DUCK_SLOW),
    "parquet_s3": Traits(False, False, QueryParseError, True, _DUCK_SLOW),
    # Snowflake does not enforce primary keys (fakesnow does, by failing with HTTP 500), and
    # fakesnow has neither EXPLAIN nor server-side cancellation.
    "snowflake": Traits(False, True, QueryError, False, None),
}


@pytest.fixture
def traits(store_kind: str) -> Traits:
    return TRAITS[store_kind]


# -- helpers ---------------------------------------------------------------------------
def ref(store: Store, name: str) -> exp.Table:
    """A table reference the store resolves (Postgres stores live in a non-default schema)."""
    if store.kind == "postgres":
        return exp.table_(name, db=store.schema)  # type: ignore[attr-defined]
    return exp.table_(name)


def query(store: Store, tree: exp.Expression, params: list[Any] | None = None, **kw: Any) -> pa.Table:
    sql, values = store.render(tree, params or [])
    return store.execute(sql, values, **kw).read_all()


def select_all(store: Store, name: str) -> exp.Select:
    return exp.select("*").from_(ref(store, name)).order_by("id")


def _norm(v: Any) -> Any:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, float):
        return round(v, 6)
    if hasattr(v, "to_pydatetime"):  # pandas Timestamp
        v = v.to_pydatetime()
    if isinstance(v, dt.datetime):
        return v.replace(tzinfo=None)
    return v


def rows(table: pa.Table) -> list[dict[str, Any]]:
    """Rows with lower-cased column names and comparable values (SQLite booleans are ints)."""
    return [{k.lower(): _norm(v) for k, v in r.items()} for r in table.to_pylist()]


def people(ids: list[int], tag: str = "p") -> pa.Table:
    return pa.table({
        "id": pa.array(ids, pa.int64()),
        "name": pa.array([f"{tag}{i}" for i in ids], pa.string()),
        "score": pa.array([i * 1.5 for i in ids], pa.float64()),
        "joined": pa.array([dt.date(2024, 1, 1 + i % 28) for i in ids], pa.date32()),
        "active": pa.array([i % 2 == 0 for i in ids], pa.bool_()),
        "updated": pa.array([dt.datetime(2024, 5, 1, 12, 0, i % 60) for i in ids], pa.timestamp("us")),
    })


def expected(table: pa.Table) -> list[dict[str, Any]]:
    return sorted(rows(table), key=lambda r: r["id"])


def read(store: Store, name: str) -> list[dict[str, Any]]:
    return rows(query(store, select_all(store, name)))


# -- writes ----------------------------------------------------------------------------
def test_append_creates_and_reads_back(any_store: Store) -> None:
    first = any_store.write("people", people([1, 2, 3]), key=["id"])
    assert first.created and first.rows_written == 3
    second = any_store.write("people", people([4, 5]))
    assert not second.created and second.rows_written == 2
    assert read(any_store, "people") == expected(people([1, 2, 3, 4, 5]))


def test_upsert_replaces_matching_keys_last_row_wins(any_store: Store) -> None:
    any_store.write("people", people([1, 2, 3]), key=["id"])
    update = pa.concat_tables([people([2], "old"), people([2, 4], "new")])
    result = any_store.write("people", update, mode=WriteMode.UPSERT, key=["id"])
    assert result.rows_written == 2
    got = read(any_store, "people")
    assert [r["id"] for r in got] == [1, 2, 3, 4]
    assert [r["name"] for r in got] == ["p1", "new2", "p3", "new4"]


def test_upsert_uses_the_table_key_when_none_given(any_store: Store) -> None:
    any_store.write("people", people([1, 2]), key=["id"])
    any_store.write("people", people([2, 3], "u"), mode="upsert")
    assert [r["name"] for r in read(any_store, "people")] == ["p1", "u2", "u3"]


def test_overwrite_replaces_all_rows(any_store: Store) -> None:
    any_store.write("people", people([1, 2, 3]), key=["id"])
    any_store.write("people", people([7, 8], "o"), mode=WriteMode.OVERWRITE)
    assert read(any_store, "people") == expected(people([7, 8], "o"))


def test_write_matches_columns_as_the_store_does_and_fills_missing(any_store: Store) -> None:
    any_store.write("people", people([1]), key=["id"])
    partial = pa.table({"ID": pa.array([2], pa.int32()), "Name": ["x"]})
    if any_store.kind == "postgres":
        # Headwater quotes Postgres identifiers, and quoted names compare exactly.
        with pytest.raises(WriteError, match="ID"):
            any_store.write("people", partial)
        partial = partial.rename_columns(["id", "name"])
    any_store.write("people", partial)
    got = read(any_store, "people")
    assert got[1]["id"] == 2 and got[1]["name"] == "x" and got[1]["score"] is None


def test_write_rejects_unknown_columns(any_store: Store) -> None:
    any_store.write("people", people([1]), key=["id"])
    with pytest.raises(WriteError, match="nope"):
        any_store.write("people", people([2]).append_column("nope", pa.array([1])))
    assert read(any_store, "people") == expected(people([1]))


# -- introspection ---------------------------------------------------------------------
def test_table_introspection_from_arrow_schema(any_store: Store, traits: Traits) -> None:
    any_store.write("people", people([1, 2]), key=["id"])
    info = any_store.table("people")
    assert info.name.lower() == "people"
    assert [c.name.lower() for c in info.columns] == [
        "id", "name", "score", "joined", "active", "updated"]
    assert tuple(k.lower() for k in info.primary_key) == ("id",)
    col = {c.name.lower(): c for c in info.columns}
    assert pa.types.is_integer(col["id"].type)
    assert pa.types.is_string(col["name"].type)
    assert pa.types.is_floating(col["score"].type)
    assert pa.types.is_date(col["joined"].type)
    assert pa.types.is_boolean(col["active"].type)
    assert pa.types.is_timestamp(col["updated"].type)
    assert col["id"].primary_key and not col["name"].primary_key
    assert col["name"].nullable
    assert col["id"].nullable is not traits.key_not_null
    assert info.column("ID") is not None and info.location
    assert info.schema.names == [c.name for c in info.columns]


def test_tables_lists_written_tables(any_store: Store) -> None:
    any_store.write("people", people([1]), key=["id"])
    any_store.write("events", pa.table({"id": [1], "kind": ["x"]}))
    names = sorted(t.name.lower() for t in any_store.tables())
    assert names == ["events", "people"]


def test_unknown_table_is_dataset_not_found(any_store: Store) -> None:
    with pytest.raises(DatasetNotFound):
        any_store.table("no_such_table")
    with pytest.raises((DatasetNotFound, QueryError)):
        query(any_store, exp.select("*").from_(ref(any_store, "no_such_table")))


def test_introspected_schema_matches_query_schema(any_store: Store) -> None:
    any_store.write("people", people([1, 2]), key=["id"])
    info = any_store.table("people")
    result = query(any_store, select_all(any_store, "people"))
    assert [n.lower() for n in result.schema.names] == [c.name.lower() for c in info.columns]
    for field, col in zip(result.schema, info.columns, strict=True):
        if any_store.kind == "sqlite":  # SQLite result types come from the values
            continue
        assert field.type.equals(col.type), (field, col)


# -- queries ---------------------------------------------------------------------------
def test_parameterised_query_through_render(any_store: Store) -> None:
    any_store.write("people", people(list(range(1, 11))), key=["id"])
    tree = (
        exp.select("id", "name")
        .from_(ref(any_store, "people"))
        .where(exp.column("id") >= param(0))
        .where(exp.column("name").neq(param(1)))
        # A literal percent sign must survive pyformat placeholders (Postgres, Snowflake).
        .where(exp.column("name").neq(exp.Literal.string("100%")))
        .where(exp.column("id") <= param(0) + exp.Literal.number(3))
        .order_by("id")
    )
    sql, values = any_store.render(tree, [5, "p6"])
    assert "__hwparam" not in sql
    assert values == [5, "p6", 5]
    got = rows(any_store.execute(sql, values).read_all())
    assert got == [{"id": 5, "name": "p5"}, {"id": 7, "name": "p7"}, {"id": 8, "name": "p8"}]


def test_result_streams_in_batches(any_store: Store) -> None:
    any_store.write("people", people(list(range(50))), key=["id"])
    sql, values = any_store.render(select_all(any_store, "people"))
    reader = any_store.execute(sql, values, batch_size=7)
    batches = list(reader)
    assert len(batches) > 1
    assert all(b.num_rows <= 7 for b in batches)
    assert sum(b.num_rows for b in batches) == 50
    assert all(b.schema.equals(reader.schema) for b in batches)
    ids = [r["id"] for b in batches for r in rows(pa.Table.from_batches([b]))]
    assert ids == list(range(50))


def test_empty_result_has_a_schema(any_store: Store) -> None:
    any_store.write("people", people([1]), key=["id"])
    tree = select_all(any_store, "people").where(exp.column("id") < param(0))
    result = query(any_store, tree, [0])
    assert result.num_rows == 0
    assert [n.lower() for n in result.schema.names][:2] == ["id", "name"]


def test_bad_sql_raises_query_error(any_store: Store, traits: Traits) -> None:
    any_store.write("people", people([1]), key=["id"])
    with pytest.raises(QueryError):
        query(any_store, exp.select("no_such_column").from_(ref(any_store, "people")))
    with pytest.raises(traits.syntax_error):
        any_store.execute("SELEC nothing FROM").read_all()


def test_explain_returns_text(any_store: Store, traits: Traits) -> None:
    any_store.write("people", people([1]), key=["id"])
    sql, values = any_store.render(
        select_all(any_store, "people").where(exp.EQ(this=exp.column("id"), expression=param(0))),
        [1],
    )
    if not traits.explain:
        # fakesnow has no EXPLAIN; the store still answers with a translated error.
        with pytest.raises(QueryError):
            any_store.explain(sql, values)
        return
    plan = any_store.explain(sql, values)
    assert isinstance(plan, str) and plan.strip()


def test_statement_timeout(any_store: Store, traits: Traits) -> None:
    if traits.slow_sql is None:
        pytest.skip(f"{any_store.kind}: the test server cannot cancel a running statement")
    with pytest.raises(QueryTimeout):
        any_store.execute(traits.slow_sql, timeout_s=0.5).read_all()


# -- atomicity -------------------------------------------------------------------------
def test_failed_cast_in_later_column_leaves_table_unchanged(any_store: Store) -> None:
    any_store.write("people", people([1, 2]), key=["id"])
    bad = pa.table({"id": pa.array([3, 4], pa.int64()), "name": ["a", "b"],
                    "score": pa.array(["1.5", "not a number"])})
    for mode in WriteMode:
        with pytest.raises(WriteError, match="(?i)score"):
            any_store.write("people", bad, mode=mode, key=["id"])
    assert read(any_store, "people") == expected(people([1, 2]))


def test_null_key_upsert_leaves_table_unchanged(any_store: Store) -> None:
    any_store.write("people", people([1, 2]), key=["id"])
    bad = pa.table({"id": pa.array([3, None], pa.int64()), "name": ["a", "b"]})
    with pytest.raises(WriteError):
        any_store.write("people", bad, mode=WriteMode.UPSERT, key=["id"])
    assert read(any_store, "people") == expected(people([1, 2]))


def _inject_failure(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the next write fail after part of its data reached the store."""
    if store.kind == "parquet":
        def fail_manifest(table: str, manifest: dict[str, Any]) -> None:
            raise OSError("injected failure before the manifest swap")

        monkeypatch.setattr(store, "_write_manifest", fail_manifest)
        return
    original = store._insert_arrow  # type: ignore[attr-defined]

    def half_then_fail(cur: Any, physical: str, data: pa.Table) -> None:
        original(cur, physical, data.slice(0, max(1, data.num_rows // 2)))
        raise RuntimeError("injected failure halfway through the insert")

    monkeypatch.setattr(store, "_insert_arrow", half_then_fail)


@pytest.mark.parametrize("mode", [WriteMode.APPEND, WriteMode.OVERWRITE])
def test_failure_halfway_rolls_back(any_store: Store, mode: WriteMode,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    any_store.write("people", people([1, 2]), key=["id"])
    with monkeypatch.context() as m:
        _inject_failure(any_store, m)
        with pytest.raises(HeadwaterError) as info:
            any_store.write("people", people([10, 11, 12, 13]), mode=mode)
    assert "injected" in str(info.value) or isinstance(info.value, StoreUnavailable | QueryError)
    assert read(any_store, "people") == expected(people([1, 2]))
    any_store.write("people", people([3]))  # the store is still usable
    assert [r["id"] for r in read(any_store, "people")] == [1, 2, 3]


def test_failure_creating_a_table_leaves_no_table(any_store: Store,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as m:
        _inject_failure(any_store, m)
        with pytest.raises(HeadwaterError):
            any_store.write("people", people([1, 2, 3, 4]), key=["id"])
    with pytest.raises(DatasetNotFound):
        any_store.table("people")


def test_duplicate_key_on_append(any_store: Store, traits: Traits) -> None:
    any_store.write("people", people([1, 2]), key=["id"])
    if any_store.kind == "snowflake":
        pytest.skip("Snowflake does not enforce primary keys and fakesnow answers HTTP 500")
    batch = people([5, 6, 2])  # the duplicate comes last, after rows that were fine
    if traits.enforces_primary_key:
        with pytest.raises(WriteError):
            any_store.write("people", batch)
        assert read(any_store, "people") == expected(people([1, 2]))
    else:
        any_store.write("people", batch)
        assert [r["id"] for r in read(any_store, "people")] == [1, 2, 2, 5, 6]


# -- secrets ---------------------------------------------------------------------------
SECRET = "hunter2-secret-pw"


def _assert_hidden(err: BaseException, *objects: Any) -> None:
    texts = [str(err), repr(err), "".join(traceback.format_exception(err)),
             repr(pickle.loads(pickle.dumps(err)).__dict__)]
    texts += [repr(o) for o in objects]
    for text in texts:
        assert SECRET not in text


def test_postgres_password_never_in_repr_or_errors() -> None:
    pytest.importorskip("psycopg")
    from headwater.stores.postgres import PostgresStore

    dsn = f"host=127.0.0.1 port={free_port()} dbname=test user=u password={SECRET}"
    store = PostgresStore("app", dsn, connect_timeout_s=1)
    try:
        with pytest.raises(StoreUnavailable) as info:
            store.execute("SELECT 1").read_all()
        _assert_hidden(info.value, store)
        assert "app" in str(info.value)
    finally:
        store.close()


def test_snowflake_password_never_in_repr_or_errors() -> None:
    pytest.importorskip("snowflake.connector")
    from headwater.stores.snowflake import SnowflakeStore

    store = SnowflakeStore(
        "warehouse", account="acct", user="u", password=SECRET, database="db",
        host="127.0.0.1", port=free_port(), protocol="http", login_timeout_s=2,
    )
    with pytest.raises(StoreUnavailable) as info:
        store.execute("SELECT 1").read_all()
    _assert_hidden(info.value, store)
    assert SECRET not in repr(vars(store))  # held in a wrapper that hides it from dumps too
    store.close()


def test_snowflake_live_store_repr_hides_password(snowflake_conn_args: dict[str, Any]) -> None:
    from headwater.stores.snowflake import SnowflakeStore

    store = SnowflakeStore("warehouse", **snowflake_conn_args)
    try:
        assert store.execute("SELECT 1 AS one").read_all().to_pylist() == [{"ONE": 1}]
        assert snowflake_conn_args["password"] not in repr(store) + repr(vars(store))
        with pytest.raises(QueryError) as info:
            store.execute("SELEC 1").read_all()
        assert snowflake_conn_args["password"] not in str(info.value)
    finally:
        store.close()


# -- Snowflake specifics ---------------------------------------------------------------
def test_snowflake_identifiers_fold_like_unquoted_names(snowflake_conn_args: dict[str, Any]) -> None:
    """New names are stored as unquoted SQL would store them; lookups ignore case."""
    from headwater.stores.snowflake import SnowflakeStore

    schema = f"HW_TEST_{uuid.uuid4().hex[:12].upper()}"
    store = SnowflakeStore("warehouse", **{**snowflake_conn_args, "schema": schema})
    try:
        store.write("customers", pa.table({"id": [1, 2], "Display Name": ["a", "b"]}), key=["id"])
        info = store.table("customers")
        assert info.name == "CUSTOMERS"
        assert [c.name for c in info.columns] == ["ID", "Display Name"]
        assert info.primary_key == ("ID",)
        assert store.table("CUSTOMERS") == info
        # Plain unquoted SQL finds what Headwater created.
        got = store.execute("SELECT id FROM customers WHERE id = %s", [2]).read_all()
        assert got.to_pylist() == [{"ID": 2}]
        # A quoted lower-case table made elsewhere is found by its exact name.
        store.execute('CREATE TABLE "events" ("kind" VARCHAR)').read_all()
        assert store.table("events").name == "events"
        assert sorted(t.name for t in store.tables()) == ["CUSTOMERS", "events"]
        store.write("events", pa.table({"KIND": ["x"]}))
        assert store.execute('SELECT * FROM "events"').read_all().to_pylist() == [{"kind": "x"}]
    finally:
        with contextlib.suppress(HeadwaterError):
            store.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE').read_all()
        store.close()


def test_snowflake_error_translation() -> None:
    pytest.importorskip("snowflake.connector")
    from snowflake.connector import errors as sfe

    from headwater.errors import Transient
    from headwater.stores.snowflake import SnowflakeStore

    store = SnowflakeStore("warehouse", account="acct", user="u", password=SECRET, database="db")
    cancelled = sfe.ProgrammingError(
        msg="SQL execution was cancelled by the client due to a timeout", errno=604)
    err = store._translate(cancelled)
    assert isinstance(err, QueryTimeout) and isinstance(err, Transient)
    missing = sfe.ProgrammingError(msg="Object 'X' does not exist", errno=2003, sqlstate="42S02")
    assert isinstance(store._translate(missing), DatasetNotFound)
    leaked = sfe.ProgrammingError(msg=f"syntax error near {SECRET}", errno=1003, sqlstate="42000")
    err = store._translate(leaked)
    assert isinstance(err, QueryError) and SECRET not in str(err)
    down = sfe.OperationalError(msg="Could not connect to Snowflake backend", errno=250001)
    assert isinstance(store._translate(down), StoreUnavailable)
