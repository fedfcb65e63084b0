"""``Session.sql`` on each embedded store: results, placeholders, explain and rejections."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from headwater import (
    ColumnNotFound,
    DatasetNotFound,
    InvalidInput,
    QueryParseError,
    QueryRejected,
)


# -- one store at a time -------------------------------------------------------------------
def test_sql_on_sqlite_app(session, seeded):
    got = session.sql(
        "SELECT id, name FROM app.customers WHERE country = 'US' ORDER BY id"
    ).to_pylist()
    assert got == [{"id": c["id"], "name": c["name"]} for c in seeded.customers if c["country"] == "US"]
    assert session.sql("SELECT count(*) AS n FROM app.customers").to_pylist() == [{"n": 40}]


def test_sql_on_duckdb_warehouse(session, seeded):
    got = session.sql(
        "SELECT status, count(*) AS n, sum(amount) AS total FROM warehouse.orders "
        "GROUP BY status ORDER BY status"
    ).to_pylist()
    expected = {}
    for o in seeded.orders:
        n, t = expected.get(o["status"], (0, 0.0))
        expected[o["status"]] = (n + 1, t + o["amount"])
    assert [(r["status"], r["n"]) for r in got] == [(k, v[0]) for k, v in sorted(expected.items())]
    for r in got:
        assert r["total"] == pytest.approx(expected[r["status"]][1])


def test_sql_on_parquet_lake(session, seeded):
    got = session.sql(
        "SELECT kind, count(*) AS n FROM lake.events WHERE customer_id <= 10 GROUP BY kind ORDER BY kind"
    ).to_pylist()
    counts = Counter(e["kind"] for e in seeded.events if e["customer_id"] <= 10)
    assert got == [{"kind": k, "n": n} for k, n in sorted(counts.items())]


def test_sql_runs_on_the_owning_store(session, seeded):
    assert session.sql("SELECT * FROM app.customers").plan.store == "app"
    assert session.sql("SELECT * FROM warehouse.orders").plan.store == "warehouse"
    assert session.sql("SELECT * FROM lake.events").plan.store == "lake"


def test_sql_without_datasets(session):
    assert session.sql("SELECT 42 AS answer").to_pylist() == [{"answer": 42}]


def test_dataset_names_case_insensitive_and_aliases(session, seeded):
    got = session.sql("SELECT c.id FROM APP.Customers AS c WHERE c.id < 3 ORDER BY c.id").to_pylist()
    assert got == [{"id": 1}, {"id": 2}]


def test_cte_and_subquery(session, seeded):
    got = session.sql(
        "WITH us AS (SELECT id FROM app.customers WHERE country = 'US') "
        "SELECT count(*) AS n FROM us WHERE id IN (SELECT id FROM app.customers WHERE email IS NOT NULL)"
    ).to_pylist()
    n = sum(1 for c in seeded.customers if c["country"] == "US" and c["email"] is not None)
    assert got == [{"n": n}]


def test_select_star_columns_in_table_order(session, seeded):
    assert session.sql("SELECT * FROM app.customers LIMIT 1").columns == ["id", "name", "country", "email"]


# -- placeholders --------------------------------------------------------------------------
@pytest.mark.parametrize("store,table,col", [
    ("app", "customers", "id"), ("warehouse", "orders", "order_id"), ("lake", "events", "seq"),
])
def test_placeholder_styles_on_each_store(session, seeded, store, table, col):
    q = f"SELECT {col} FROM {store}.{table} WHERE {col} >= {{a}} AND {col} < {{b}} ORDER BY {col}"
    want = [{col: v} for v in range(5, 9)]
    assert session.sql(q.format(a="?", b="?"), [5, 9]).to_pylist() == want
    assert session.sql(q.format(a="$1", b="$2"), [5, 9]).to_pylist() == want
    assert session.sql(q.format(a="$2", b="$1"), [9, 5]).to_pylist() == want
    assert session.sql(q.format(a=":lo", b=":hi"), {"lo": 5, "hi": 9}).to_pylist() == want
    assert session.sql(q.format(a=":lo", b=":hi"), {"hi": 9, "lo": 5, "unused": 0}).to_pylist() == want


def test_repeated_placeholders(session, seeded):
    got = session.sql("SELECT id FROM app.customers WHERE id = $1 OR id = $1 + 1 ORDER BY id", [3])
    assert got.to_pylist() == [{"id": 3}, {"id": 4}]
    got = session.sql("SELECT id FROM app.customers WHERE id = :x OR id = :x * 2 ORDER BY id", {"x": 4})
    assert got.to_pylist() == [{"id": 4}, {"id": 8}]


def test_string_params_are_values_not_sql(session, seeded):
    got = session.sql("SELECT count(*) AS n FROM app.customers WHERE name = ?", ["x' OR '1'='1"])
    assert got.to_pylist() == [{"n": 0}]


def test_plan_is_reused_for_other_param_values(session, seeded):
    q = "SELECT name FROM app.customers WHERE id = ?"
    assert session.sql(q, [1]).to_pylist() == [{"name": "cust001"}]
    assert session.sql(q, [2]).to_pylist() == [{"name": "cust002"}]


@pytest.mark.parametrize("query,params", [
    ("SELECT * FROM app.customers WHERE id = ? AND name = ?", [1]),
    ("SELECT * FROM app.customers WHERE id = ?", [1, 2]),
    ("SELECT * FROM app.customers WHERE id = ?", None),
    ("SELECT * FROM app.customers WHERE id = ?", []),
    ("SELECT * FROM app.customers", [1]),
    ("SELECT * FROM app.customers", {"x": 1}),
    ("SELECT * FROM app.customers WHERE id = $3", [1, 2]),
    ("SELECT * FROM app.customers WHERE id = $1", []),
    ("SELECT * FROM app.customers WHERE id = :x", {"y": 1}),
    ("SELECT * FROM app.customers WHERE id = :x", [1]),
    ("SELECT * FROM app.customers WHERE id = ?", {"x": 1}),
    ("SELECT * FROM app.customers WHERE id = $1", {"1": 1}),
])
def test_wrong_params_are_invalid_input(session, seeded, query, params):
    with pytest.raises(InvalidInput):
        session.sql(query, params)


# -- explain and pushdown ------------------------------------------------------------------
def _fetch_line(text: str, dataset: str) -> str:
    lines = [ln for ln in text.splitlines() if f"<- {dataset} via" in ln]
    assert len(lines) == 1, text
    return lines[0]


def _projected(line: str) -> set[str]:
    select = re.search(r"SELECT (.*?) FROM", line).group(1)
    return {c.strip().strip('"') for c in select.split(",")}


def test_explain_shows_pushdown_into_sqlite(session, seeded):
    text = session.explain(
        "SELECT c.name, o.amount FROM app.customers c JOIN warehouse.orders o ON o.customer_id = c.id "
        "WHERE c.country = ? AND o.amount > 10 AND o.amount > c.id",
        ["US"],
    )
    assert text.startswith("-- federated in DuckDB (warehouse)")
    line = _fetch_line(text, "app.customers")
    assert "via sqlite" in line
    # only the columns the query uses ...
    assert _projected(line.split("via sqlite: ", 1)[1]) == {"id", "name", "country"}
    assert "email" not in line
    # ... and only the conjuncts that read the source alone
    where = line.split(" WHERE ", 1)[1]
    assert re.search(r"\bcountry\b\s*=\s*\?", where)
    assert "amount" not in where
    assert "warehouse.orders (native)" in text


def test_explain_no_pushdown_into_null_supplying_side(session, seeded):
    text = session.explain(
        "SELECT o.order_id, c.name FROM warehouse.orders o LEFT JOIN app.customers c "
        "ON c.id = o.customer_id WHERE c.country = 'US'"
    )
    line = _fetch_line(text, "app.customers")
    assert " WHERE " not in line


def test_explain_single_store_shows_store_plan(session, seeded):
    text = session.explain("SELECT name FROM app.customers WHERE id = ?", [3])
    assert text.startswith("-- runs on app (sqlite)")
    assert "customers" in text
    assert re.search(r"SEARCH|SCAN", text)


def test_explain_lake_source(session, seeded):
    text = session.explain(
        "SELECT c.name, e.kind FROM app.customers c JOIN lake.events e ON e.customer_id = c.id WHERE c.id > 30"
    )
    assert "(in-memory)" in text.splitlines()[0]
    assert "lake.events (lake)" in text
    line = _fetch_line(text, "app.customers")
    assert _projected(line.split("via sqlite: ", 1)[1]) == {"id", "name"}
    assert re.search(r"WHERE id > 30", line)


# -- rejected and malformed ----------------------------------------------------------------
@pytest.mark.parametrize("query", [
    "SELEC * FROM app.customers",
    "SELECT * FROM app.customers WHERE (id = 1",
    "SELECT * FROM app.customers WHERE id = = 1",
    "SELECT FROM WHERE",
    "",
    "   ",
])
def test_malformed_sql_is_parse_error(session, seeded, query):
    with pytest.raises(QueryParseError):
        session.sql(query)


def test_parse_error_names_position(session, seeded):
    with pytest.raises(QueryParseError) as info:
        session.sql("SELECT *\nFROM app.customers WHERE (id = 1")
    assert info.value.line == 2
    assert "line 2" in str(info.value)


@pytest.mark.parametrize("query", [
    "SELECT 1; SELECT 2",
    "SELECT * FROM app.customers; DROP TABLE app.customers",
    "INSERT INTO app.customers VALUES (99, 'x', 'US', NULL)",
    "UPDATE app.customers SET name = 'x'",
    "DELETE FROM app.customers",
    "CREATE TABLE app.t (a INT)",
    "DROP TABLE app.customers",
    "ALTER TABLE app.customers ADD COLUMN x INT",
    "ATTACH '/tmp/other.db' AS other",
    "COPY app.customers TO '/tmp/out.csv'",
    "PRAGMA database_list",
    "SET threads = 1",
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_csv_auto('/etc/passwd')",
    "SELECT * FROM read_parquet('/tmp/*.parquet')",
    "SELECT * FROM glob('/etc/*')",
    "SELECT * FROM 'file.parquet'",
    "SELECT * FROM '/tmp/data.csv'",
    "SELECT * FROM 's3://bucket/key.parquet'",
    "SELECT * FROM app.customers WHERE id IN (SELECT id FROM 'ids.parquet')",
    "SELECT * FROM hw.app.customers",
    "SELECT * FROM memory.main.customers",
])
def test_rejected_statements(session, seeded, query):
    with pytest.raises(QueryRejected) as info:
        session.sql(query)
    assert info.value.rule


def test_rejected_statement_leaves_data_alone(session, seeded):
    with pytest.raises(QueryRejected):
        session.sql("SELECT 1; DELETE FROM app.customers")
    assert session.sql("SELECT count(*) AS n FROM app.customers").to_pylist() == [{"n": 40}]


def test_unknown_dataset(session, seeded):
    with pytest.raises(DatasetNotFound) as info:
        session.sql("SELECT * FROM app.nope")
    assert info.value.dataset == "app.nope"
    # A bare name is a CTE visible where it is used, or nothing: rejected, with a hint.
    with pytest.raises(QueryRejected, match=r"did you mean app\.customers") as rejected:
        session.sql("SELECT * FROM customers")
    assert rejected.value.rule == "catalog-only"
    with pytest.raises(DatasetNotFound):
        session.sql("SELECT * FROM nostore.customers")


def test_unknown_column(session, seeded):
    with pytest.raises(ColumnNotFound, match="nope"):
        session.sql("SELECT nope FROM app.customers")
    with pytest.raises(ColumnNotFound):
        session.sql("SELECT id FROM app.customers WHERE nope = 1")
    with pytest.raises(ColumnNotFound):
        session.sql(
            "SELECT c.nope FROM app.customers c JOIN warehouse.orders o ON o.customer_id = c.id"
        )
    with pytest.raises(ColumnNotFound):
        session.read("app.customers", columns=["id", "nope"])


def test_read_with_where_mapping_and_columns(session, seeded):
    got = session.read("app.customers", columns=["id"], where={"country": "DE"}, order_by="id desc")
    assert got.to_pylist() == [
        {"id": c["id"]} for c in sorted(seeded.customers, key=lambda c: -c["id"]) if c["country"] == "DE"
    ]
    got = session.read("app.customers", columns=["id"], where={"country": None}, order_by="id")
    assert [r["id"] for r in got.to_pylist()] == [c["id"] for c in seeded.customers if c["country"] is None]
    got = session.read("warehouse.orders", columns=["order_id"], where="amount > ?", params=[90],
                       order_by=["order_id"])
    assert [r["order_id"] for r in got.to_pylist()] == [o["order_id"] for o in seeded.orders if o["amount"] > 90]
    with pytest.raises(InvalidInput):
        session.read("app.customers", order_by="id sideways")
