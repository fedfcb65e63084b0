"""Column lineage on all 22 TPC-H queries (texts and schema from DuckDB's tpch extension),
wrapped as ``CREATE TABLE warehouse.q<N> AS <query>``: hand-checked lineage on a few, and
complete, validating START/COMPLETE/FAIL events for every one."""

from __future__ import annotations

import pytest

from headwater.lineage import build_fail_event, build_run_events, column_lineage

QUERIES = list(range(1, 23))


def subtypes(fields, dataset: str, field: str) -> set[str]:
    return {t.subtype for f in fields if f.dataset == dataset and f.field == field for t in f.transformations}


@pytest.fixture(scope="module")
def results(tpch):
    statements, schema = tpch
    return {n: column_lineage(sql, schema=schema) for n, sql in statements.items()}


def test_all_22_queries_present(tpch):
    statements, schema = tpch
    assert sorted(statements) == QUERIES
    assert len(schema) == 8


@pytest.mark.parametrize("n", QUERIES)
def test_every_query_has_complete_lineage(results, tpch, n):
    r = results[n]
    statements, schema = tpch
    assert r.statement == "CREATE TABLE AS" and r.target == f"warehouse.q{n}"
    assert r.complete, r.gaps
    assert r.columns and r.inputs
    known = {(ds, c) for ds, cols in schema.items() for c in cols}
    for f in (*r.dataset, *(i for c in r.columns.values() for i in c.inputs)):
        assert (f.dataset, f.field) in known
        assert f.transformations
    # every dataset read appears somewhere in the column lineage
    assert set(r.inputs) == set(r.input_fields())


@pytest.mark.parametrize("n", QUERIES)
def test_every_query_events_validate(results, tpch, conformance, n):
    statements, schema = tpch
    r = results[n]
    start, complete = build_run_events("headwater://test", f"tpch.q{n}", statements[n], r,
                                       schemas=schema, rows_written=1)
    _, fail = build_fail_event("headwater://test", f"tpch.q{n}", statements[n], r, schemas=schema,
                               error=RuntimeError("boom"))
    for ev in (start, complete, fail):
        assert conformance.errors(ev) == []
    out = complete["outputs"][0]
    assert out["name"] == f"warehouse.q{n}"
    assert set(out["facets"]["columnLineage"]["fields"]) == set(r.columns)


def test_q1_aggregations_group_and_filter(results):
    r = results[1]
    li = "warehouse.lineitem"
    assert r.column("sum_qty").subtypes(li, "l_quantity") == {"AGGREGATION"}
    assert r.column("l_returnflag").subtypes(li, "l_returnflag") == {"IDENTITY"}
    assert {f.field for f in r.column("sum_charge").inputs} == {"l_extendedprice", "l_discount", "l_tax"}
    assert r.column("count_order").inputs == ()
    assert r.dataset_subtypes(li, "l_shipdate") == {"FILTER"}
    assert r.dataset_subtypes(li, "l_returnflag") == {"GROUP_BY", "SORT"}


def test_q3_join_columns_are_indirect_join(results):
    r = results[3]
    assert r.dataset_subtypes("warehouse.customer", "c_custkey") == {"JOIN"}
    assert r.dataset_subtypes("warehouse.orders", "o_custkey") == {"JOIN"}
    assert r.dataset_subtypes("warehouse.orders", "o_orderkey") == {"JOIN"}
    assert "JOIN" in r.dataset_subtypes("warehouse.lineitem", "l_orderkey")
    assert r.dataset_subtypes("warehouse.customer", "c_mktsegment") == {"FILTER"}
    assert r.column("revenue").subtypes("warehouse.lineitem", "l_extendedprice") == {"AGGREGATION"}
    assert r.column("o_orderdate").subtypes("warehouse.orders", "o_orderdate") == {"IDENTITY"}
    # ORDER BY revenue sorts by what revenue is computed from
    assert r.dataset_subtypes("warehouse.lineitem", "l_discount") == {"SORT"}


def test_q13_derived_table_with_outer_join(results):
    r = results[13]
    assert r.column("c_count").subtypes("warehouse.orders", "o_orderkey") == {"AGGREGATION"}
    # the LEFT JOIN's ON holds both the key and the o_comment condition
    assert r.dataset_subtypes("warehouse.orders", "o_comment") == {"JOIN"}
    assert r.dataset_subtypes("warehouse.orders", "o_custkey") == {"JOIN"}
    # GROUP BY c_count (in the outer query) groups by what c_count is computed from
    assert "GROUP_BY" in r.dataset_subtypes("warehouse.orders", "o_orderkey")


def test_q15_cte_and_scalar_subquery_filter(results):
    r = results[15]
    assert r.column("total_revenue").subtypes("warehouse.lineitem", "l_extendedprice") == {"AGGREGATION"}
    # total_revenue = (SELECT max(total_revenue) FROM revenue) filters on the CTE's inputs
    assert "FILTER" in r.dataset_subtypes("warehouse.lineitem", "l_extendedprice")
    assert "JOIN" in r.dataset_subtypes("warehouse.supplier", "s_suppkey")


def test_q22_substring_and_anti_join(results):
    r = results[22]
    assert r.column("cntrycode").subtypes("warehouse.customer", "c_phone") == {"TRANSFORMATION"}
    assert r.column("totacctbal").subtypes("warehouse.customer", "c_acctbal") == {"AGGREGATION"}
    assert r.dataset_subtypes("warehouse.orders", "o_custkey") == {"FILTER"}
