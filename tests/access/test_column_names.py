"""Unaliased output columns keep the name the engine gives them (DuckDB's rendering).

``qualify`` would alias them ``_col_<i>``; the planner restores DuckDB's own name for the
outermost select's unaliased expressions. Each test runs the same SQL on the warehouse's raw
DuckDB handle and compares names and values.
"""

from __future__ import annotations

import pyarrow as pa
import pytest

from headwater.access.planner import _simple_name, _unnamed_outputs

QUERIES = [
    "SELECT status, sum(amount), count(*), max(order_id) FROM warehouse.orders GROUP BY status ORDER BY status",
    "SELECT order_id + 1, upper(status), CAST(amount AS INTEGER), amount * 2 FROM warehouse.orders "
    "ORDER BY order_id LIMIT 5",
    "SELECT count(DISTINCT status), Sum( amount ), COUNT(*), avg(amount) FILTER (WHERE amount > 10) "
    "FROM warehouse.orders",
    "SELECT o.status, count(o.order_id), (SELECT 40 + 2), o.status IS NULL FROM warehouse.orders AS o "
    "GROUP BY o.status ORDER BY o.status",
    "SELECT min(order_id) FROM warehouse.orders UNION ALL SELECT max(order_id) FROM warehouse.orders",
    "WITH t AS (SELECT status, amount FROM warehouse.orders) SELECT status, list(amount ORDER BY amount)[1], "
    "first(amount ORDER BY amount) FROM t GROUP BY status ORDER BY status",
]


def _raw(platform, sql: str) -> pa.Table:
    physical = platform.store("warehouse").table_expr("orders").sql(dialect="duckdb")
    con = platform.store("warehouse").cursor()
    try:
        return con.execute(sql.replace("warehouse.orders", physical)).fetch_arrow_table()
    finally:
        con.close()


@pytest.mark.parametrize("sql", QUERIES)
def test_unaliased_outputs_are_named_as_duckdb_names_them(platform, session, seeded, sql):
    raw = _raw(platform, sql)
    got = session.sql(sql).to_arrow()
    assert got.column_names == raw.column_names
    assert not any(n.startswith("_col_") for n in got.column_names)
    assert sorted(map(repr, got.to_pylist())) == sorted(map(repr, raw.to_pylist()))


def test_aliases_and_plain_columns_are_untouched(session, seeded):
    got = session.sql(
        "SELECT status AS s, order_id, sum(amount) OVER (PARTITION BY status) AS running "
        "FROM warehouse.orders ORDER BY order_id LIMIT 3"
    )
    assert got.columns == ["s", "order_id", "running"]


def test_names_stay_unique(platform, session, seeded):
    # DuckDB would return two columns called sum(amount); a result needs unique names to be
    # paged and selected by name, so the second keeps the qualifier's name.
    raw = _raw(platform, "SELECT sum(amount), sum(amount) FROM warehouse.orders")
    got = session.sql("SELECT sum(amount), sum(amount) FROM warehouse.orders").to_arrow()
    assert raw.column_names == ["sum(amount)", "sum(amount)"]
    assert got.column_names[0] == "sum(amount)"
    assert len(set(got.column_names)) == 2
    assert got.to_pylist()[0]["sum(amount)"] == pytest.approx(raw.column(0)[0].as_py())


def test_pushed_down_queries_use_the_same_names(session, seeded):
    # app is SQLite: the name is still DuckDB's (the SDK dialect), not SQLite's.
    got = session.sql("SELECT country, count(*), max(id) FROM app.customers GROUP BY country ORDER BY country")
    assert got.columns == ["country", "count_star()", "max(id)"]
    expected: dict[str | None, list[int]] = {}
    for c in seeded.customers:
        expected.setdefault(c["country"], []).append(c["id"])
    assert {r["country"]: (r["count_star()"], r["max(id)"]) for r in got.to_pylist()} == {
        k: (len(v), max(v)) for k, v in expected.items()
    }


def test_pages_sort_by_an_engine_named_column(session, seeded):
    sql = "SELECT status, count(*) FROM warehouse.orders GROUP BY status ORDER BY count(*) DESC, status"
    whole = session.sql(sql).to_pylist()
    rows = []
    page = session.sql(sql, page_size=2)
    while page is not None:
        assert page.columns == ["status", "count_star()"]
        rows.extend(page.to_pylist())
        page = page.next_page()
    assert rows == whole
    assert [r["count_star()"] for r in rows] == sorted((r["count_star()"] for r in rows), reverse=True)


def test_governed_query_keeps_engine_names(platform, seeded):
    platform.policies.apply(
        "version: 1\nroles:\n  reader:\n    grants:\n      - {datasets: \"*\", actions: [select]}\n"
        "    row_filters:\n      - {datasets: warehouse.orders, where: \"status = principal.status\"}\n"
        "principals:\n  ann: {roles: [reader], attributes: {status: shipped}}\n",
        source="test", applied_by="test",
    )
    got = platform.session("ann").sql("SELECT status, count(*), sum(amount) FROM warehouse.orders GROUP BY status")
    assert got.columns == ["status", "count_star()", "sum(amount)"]
    shipped = [o for o in seeded.orders if o["status"] == "shipped"]
    assert [(r["status"], r["count_star()"]) for r in got.to_pylist()] == ([("shipped", len(shipped))] if shipped else [])


def test_simple_names_match_duckdb():
    """The names made without asking DuckDB are the ones DuckDB gives."""
    import duckdb
    import sqlglot

    sql = ("SELECT sum(x), SUM(L_q), Max( x ), count(*), COUNT(x), avg(x), median(x), stddev(x), list(x), "
           "any_value(x), min(x) FROM t")
    con = duckdb.connect()
    try:
        con.execute('CREATE TABLE t (x INTEGER, "L_q" INTEGER)')
        names = [d[0] for d in con.execute(sql).description]
    finally:
        con.close()
    tree = sqlglot.parse_one(sql, read="duckdb")
    simple = [_simple_name(node, sql) for node in tree.selects]
    # Calls sqlglot keeps no position for are left to DuckDB's parser (None here).
    assert all(s is None or s == n for s, n in zip(simple, names, strict=True))
    assert sum(s is not None for s in simple) >= 5
    tree = sqlglot.parse_one(sql, read="duckdb")
    assert _unnamed_outputs(tree, sql) == len(names)
