"""column_lineage: transformation types through CTEs, unions, windows, subqueries, stars,
aliases, INSERT/CTAS/plain queries, and gaps reported for what cannot be followed."""

from __future__ import annotations

import pytest

from headwater.catalog import CatalogColumn, Dataset
from headwater.errors import QueryParseError
from headwater.lineage import column_lineage

SCHEMA = {
    "app.orders": {"o_id": "BIGINT", "o_cust": "BIGINT", "amount": "DOUBLE", "status": "VARCHAR",
                   "created": "TIMESTAMP"},
    "app.customers": {"c_id": "BIGINT", "email": "VARCHAR", "name": "VARCHAR", "region": "VARCHAR"},
    "warehouse.order_facts": {"o_id": "BIGINT", "customer_email": "VARCHAR", "amount": "DOUBLE"},
}


def lin(sql: str, **kw):
    return column_lineage(sql, schema=SCHEMA, **kw)


def inputs(result, column: str) -> dict[tuple[str, str], set[str]]:
    return {(f.dataset, f.field): {t.subtype for t in f.transformations}
            for f in result.column(column).inputs}


def dataset_level(result) -> dict[tuple[str, str], set[str]]:
    return {(f.dataset, f.field): {t.subtype for t in f.transformations} for f in result.dataset}


def test_identity_transformation_aggregation_and_aliases():
    r = lin("CREATE TABLE warehouse.t AS SELECT o.o_id AS id, o.amount * 2 AS doubled, "
            "sum(o.amount) AS total, count(*) AS n FROM app.orders AS o GROUP BY o.o_id")
    assert r.statement == "CREATE TABLE AS" and r.target == "warehouse.t" and r.complete
    assert list(r.columns) == ["id", "doubled", "total", "n"]
    assert inputs(r, "id") == {("app.orders", "o_id"): {"IDENTITY"}}
    assert inputs(r, "doubled") == {("app.orders", "amount"): {"TRANSFORMATION"}}
    assert inputs(r, "total") == {("app.orders", "amount"): {"AGGREGATION"}}
    assert inputs(r, "n") == {}
    assert dataset_level(r) == {("app.orders", "o_id"): {"GROUP_BY"}}
    assert all(t.type == "DIRECT" for c in r.columns.values() for f in c.inputs for t in f.transformations)


def test_join_filter_sort_are_dataset_level_indirect():
    r = lin("INSERT INTO warehouse.order_facts SELECT o.o_id, c.email, o.amount FROM app.orders o "
            "JOIN app.customers c ON o.o_cust = c.c_id WHERE o.status = 'done' ORDER BY o.created")
    assert r.statement == "INSERT" and r.target == "warehouse.order_facts"
    # INSERT without a column list takes the target's column names, in order.
    assert list(r.columns) == ["o_id", "customer_email", "amount"]
    assert inputs(r, "customer_email") == {("app.customers", "email"): {"IDENTITY"}}
    assert dataset_level(r) == {
        ("app.orders", "o_cust"): {"JOIN"}, ("app.customers", "c_id"): {"JOIN"},
        ("app.orders", "status"): {"FILTER"}, ("app.orders", "created"): {"SORT"},
    }
    assert all(t.type == "INDIRECT" for f in r.dataset for t in f.transformations)
    assert r.inputs == ("app.customers", "app.orders")


def test_comma_join_in_where_is_a_join():
    r = lin("SELECT c.name FROM app.orders o, app.customers c WHERE o.o_cust = c.c_id AND o.amount > 1",
            target="warehouse.x")
    assert r.statement == "SELECT" and r.target == "warehouse.x"
    d = dataset_level(r)
    assert d[("app.orders", "o_cust")] == {"JOIN"} and d[("app.customers", "c_id")] == {"JOIN"}
    assert d[("app.orders", "amount")] == {"FILTER"}


def test_insert_column_list_maps_by_position():
    r = lin("INSERT INTO warehouse.order_facts (customer_email, o_id) SELECT email, c_id FROM app.customers")
    assert inputs(r, "customer_email") == {("app.customers", "email"): {"IDENTITY"}}
    assert inputs(r, "o_id") == {("app.customers", "c_id"): {"IDENTITY"}}


def test_cte_chain_composes_transformations():
    r = lin("""CREATE TABLE warehouse.t AS
        WITH paid AS (SELECT o_cust, amount FROM app.orders WHERE status = 'paid'),
             per_cust AS (SELECT o_cust AS cust, sum(amount) AS spend FROM paid GROUP BY o_cust)
        SELECT c.email, p.spend, round(p.spend) AS rounded FROM per_cust p JOIN app.customers c ON c.c_id = p.cust""")
    assert r.complete
    assert inputs(r, "email") == {("app.customers", "email"): {"IDENTITY"}}
    assert inputs(r, "spend") == {("app.orders", "amount"): {"AGGREGATION"}}
    assert inputs(r, "rounded") == {("app.orders", "amount"): {"AGGREGATION"}}
    d = dataset_level(r)
    assert d[("app.orders", "status")] == {"FILTER"}  # from inside the CTE
    assert d[("app.orders", "o_cust")] == {"GROUP_BY", "JOIN"}
    assert d[("app.customers", "c_id")] == {"JOIN"}


def test_union_merges_branches_by_position():
    r = lin("CREATE TABLE warehouse.contacts AS SELECT email AS contact, 'c' AS kind FROM app.customers "
            "UNION ALL SELECT upper(status), 'o' FROM app.orders WHERE amount > 0 ORDER BY contact")
    assert list(r.columns) == ["contact", "kind"]
    assert inputs(r, "contact") == {("app.customers", "email"): {"IDENTITY"},
                                    ("app.orders", "status"): {"TRANSFORMATION"}}
    assert inputs(r, "kind") == {}
    d = dataset_level(r)
    assert d[("app.orders", "amount")] == {"FILTER"}
    assert d[("app.customers", "email")] == {"SORT"} and "SORT" in d[("app.orders", "status")]


def test_except_branch_only_filters():
    r = lin("SELECT email FROM app.customers EXCEPT SELECT email FROM app.customers WHERE region = 'x'",
            target="warehouse.t")
    assert inputs(r, "email") == {("app.customers", "email"): {"IDENTITY"}}
    assert {"FILTER"} <= dataset_level(r)[("app.customers", "region")]


def test_window_function_partition_and_order_are_window():
    r = lin("CREATE TABLE warehouse.t AS SELECT o_id, "
            "sum(amount) OVER (PARTITION BY o_cust ORDER BY created) AS running, "
            "row_number() OVER (PARTITION BY o_cust ORDER BY amount DESC) AS rn, "
            "lag(status) OVER (ORDER BY created) AS prev_status FROM app.orders")
    assert inputs(r, "running") == {("app.orders", "amount"): {"AGGREGATION"},
                                    ("app.orders", "o_cust"): {"WINDOW"},
                                    ("app.orders", "created"): {"WINDOW"}}
    assert inputs(r, "rn") == {("app.orders", "o_cust"): {"WINDOW"}, ("app.orders", "amount"): {"WINDOW"}}
    assert inputs(r, "prev_status") == {("app.orders", "status"): {"TRANSFORMATION"},
                                        ("app.orders", "created"): {"WINDOW"}}


def test_case_condition_is_conditional():
    r = lin("CREATE TABLE warehouse.t AS SELECT CASE WHEN region = 'EU' THEN email ELSE name END AS contact, "
            "IF(c_id > 10, 'big', 'small') AS size FROM app.customers")
    assert inputs(r, "contact") == {("app.customers", "region"): {"CONDITIONAL"},
                                    ("app.customers", "email"): {"TRANSFORMATION"},
                                    ("app.customers", "name"): {"TRANSFORMATION"}}
    assert inputs(r, "size") == {("app.customers", "c_id"): {"CONDITIONAL"}}


def test_masking_function():
    r = lin("CREATE TABLE warehouse.t AS SELECT md5(email) AS h FROM app.customers")
    (f,) = r.column("h").inputs
    assert f.transformations[0].masking and f.transformations[0].subtype == "TRANSFORMATION"


def test_subqueries_derived_scalar_in_exists():
    r = lin("""CREATE TABLE warehouse.t AS
        SELECT d.email,
               (SELECT max(o.amount) FROM app.orders o WHERE o.o_cust = d.c_id) AS biggest
        FROM (SELECT c_id, lower(email) AS email FROM app.customers WHERE region = 'EU') AS d
        WHERE d.c_id IN (SELECT o_cust FROM app.orders WHERE status = 'paid')
          AND EXISTS (SELECT 1 FROM app.orders o2 WHERE o2.o_cust = d.c_id AND o2.amount > 100)""")
    assert r.complete, r.gaps
    assert inputs(r, "email") == {("app.customers", "email"): {"TRANSFORMATION"}}
    big = inputs(r, "biggest")
    assert big[("app.orders", "amount")] == {"AGGREGATION"}
    assert big[("app.orders", "o_cust")] == {"JOIN"} and big[("app.customers", "c_id")] == {"JOIN"}
    d = dataset_level(r)
    assert d[("app.customers", "region")] == {"FILTER"}
    assert d[("app.orders", "o_cust")] == {"FILTER"} and d[("app.orders", "status")] == {"FILTER"}
    assert d[("app.orders", "amount")] == {"FILTER"}
    # EXISTS selects nothing that flows anywhere
    assert ("app.orders", "o_id") not in d


def test_star_expansion():
    r = lin("CREATE TABLE warehouse.copy AS SELECT * FROM app.customers")
    assert list(r.columns) == ["c_id", "email", "name", "region"]
    assert all(inputs(r, c) == {("app.customers", c): {"IDENTITY"}} for c in r.columns)
    r = lin("CREATE TABLE warehouse.t AS SELECT c.*, o.amount FROM app.customers c JOIN app.orders o ON o.o_cust = c.c_id")
    assert list(r.columns) == ["c_id", "email", "name", "region", "amount"]


def test_unknown_dataset_is_a_gap_not_silence():
    r = lin("CREATE TABLE warehouse.t AS SELECT x, y + 1 AS y1 FROM app.mystery")
    assert inputs(r, "x") == {("app.mystery", "x"): {"IDENTITY"}}
    assert any("app.mystery" in g for g in r.gaps)
    r = lin("CREATE TABLE warehouse.t AS SELECT * FROM app.mystery")
    assert not r.columns and any("cannot expand" in g for g in r.gaps)


def test_ambiguous_and_table_function_gaps():
    r = lin("CREATE TABLE warehouse.t AS SELECT zzz FROM app.orders o JOIN app.customers c ON o.o_cust = c.c_id")
    assert any("zzz" in g for g in r.gaps)
    r = lin("CREATE TABLE warehouse.t AS SELECT g.range AS n, o.amount FROM range(3) AS g, app.orders o")
    assert inputs(r, "amount") == {("app.orders", "amount"): {"IDENTITY"}}
    assert r.gaps


def test_statements_not_followed_are_reported():
    r = lin("UPDATE app.orders SET amount = amount + 1")
    assert not r.columns and r.gaps and "UPDATE" in r.gaps[0]
    r = lin("INSERT INTO app.orders VALUES (1, 2, 3.0, 'x', now())")
    assert r.statement == "INSERT" and not r.columns


def test_schema_callable_and_case_insensitive_names():
    calls = []

    def schema(name):
        # as schema_from_catalog does: the catalog Dataset, whose name is the canonical spelling
        calls.append(name)
        cols = SCHEMA.get(name.lower())
        if cols is None:
            return None
        store, table = name.lower().split(".")
        return Dataset(name=name.lower(), store=store, table=table, kind="table", location="",
                       columns=tuple(CatalogColumn(c, t) for c, t in cols.items()))

    r = column_lineage("CREATE TABLE warehouse.t AS SELECT EMAIL FROM APP.CUSTOMERS", schema=schema)
    assert inputs(r, "email") == {("app.customers", "email"): {"IDENTITY"}}
    assert "APP.CUSTOMERS" in calls


def test_parse_errors_raise():
    with pytest.raises(QueryParseError):
        lin("SELEC nope FROM")
    with pytest.raises(QueryParseError):
        lin("  ")
