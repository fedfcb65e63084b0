"""Property: for random small tables (duplicates, NULLs), random page sizes and random keyset
chunk sizes (DuckDB and Parquet fetch a page in chunks), the pages concatenated equal the fully
ordered result, on every embedded store."""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from headwater import Config, Platform
from headwater.access import session as session_mod
from tests.access.test_pagination import py_order

SCHEMA = pa.schema([("id", pa.int64()), ("g", pa.int64()), ("v", pa.string()), ("w", pa.int64())])
COLUMNS = ("g", "v", "w")


@pytest.fixture(scope="module")
def shared_platform(tmp_path_factory):
    p = Platform.open(Config.embedded(tmp_path_factory.mktemp("prop") / "hw"))
    # Create each dataset with a row first: examples then overwrite it (possibly with no rows).
    for store in ("app", "warehouse", "lake"):
        _load(p.session("prop"), f"{store}.prop", [{"g": 0, "v": "a", "w": 0}])
    yield p
    p.close()


row_st = st.fixed_dictionaries({
    "g": st.one_of(st.none(), st.integers(-2, 2)),
    "v": st.one_of(st.none(), st.sampled_from(["a", "b", "c"])),
    "w": st.one_of(st.none(), st.integers(0, 1)),
})
keys_st = st.lists(
    st.tuples(st.sampled_from(COLUMNS), st.booleans()), min_size=1, max_size=3,
    unique_by=lambda k: k[0],
)


def _load(session, dataset, rows):
    data = [{"id": i, **r} for i, r in enumerate(rows)]
    session.write(dataset, pa.Table.from_pylist(data, SCHEMA), mode="overwrite", key="id")
    return data


def _pages(first):
    out = []
    for page in first:
        out.extend(page.to_pylist())
    return out


@pytest.mark.parametrize("store", ["app", "warehouse", "lake"])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(row_st, max_size=25), keys=keys_st, page_size=st.integers(1, 8),
       chunk=st.sampled_from([1, 2, 3, 4096]))
def test_pages_concatenate_to_ordered_result(shared_platform, store, rows, keys, page_size, chunk):
    real_chunk = session_mod._DUCKDB_TOPN_ROWS
    session_mod._DUCKDB_TOPN_ROWS = chunk  # a chunk boundary inside runs of identical rows
    try:
        _check(shared_platform, store, rows, keys, page_size)
    finally:
        session_mod._DUCKDB_TOPN_ROWS = real_chunk


def _check(shared_platform, store, rows, keys, page_size):
    session = shared_platform.session("prop")
    dataset = f"{store}.prop"
    data = _load(session, dataset, rows)
    order_sql = ", ".join(f"{n} DESC" if d else n for n, d in keys)

    # non-unique order through sql(): ties broken by the other output columns, then identical rows
    got = _pages(session.sql(f"SELECT g, v, w FROM {dataset} ORDER BY {order_sql}", page_size=page_size))
    projected = [{c: r[c] for c in COLUMNS} for r in data]
    tie = [(c, False) for c in COLUMNS if c not in dict(keys)]
    assert got == py_order(projected, [*keys, *tie])

    # unique order through read(): the primary key breaks ties
    got = _pages(session.read(dataset, order_by=[f"{n} desc" if d else n for n, d in keys],
                              page_size=page_size))
    assert got == py_order(data, [*keys, ("id", False)])


# -- paging over a masked primary key -----------------------------------------------------------
# The attack (issue 14): with the primary key masked for the principal, pages compared masked
# values under a "unique" order and silently dropped rows (every row equal under ``null`` or
# ``redact``, many under ``last4``). Each principal below sees ``id`` differently; paged through
# ``read()`` (primary-key order) and ``sql()``, the pages must be exactly the governed result in
# the pager's order, no row dropped or repeated.
MASKED_POLICY = """
version: 1
settings: {masked_predicates: allow}
roles:
  admin:
    grants: [{datasets: "*", actions: [select, insert, update, delete]}]
  r_null: {grants: [{datasets: "*", actions: [select]}], columns: [{column: id, mask: "null"}]}
  r_redact: {grants: [{datasets: "*", actions: [select]}], columns: [{column: id, mask: redact}]}
  r_last4: {grants: [{datasets: "*", actions: [select]}], columns: [{column: id, mask: last4}]}
  r_hash: {grants: [{datasets: "*", actions: [select]}], columns: [{column: id, mask: hash}]}
  r_token: {grants: [{datasets: "*", actions: [select]}], columns: [{column: id, mask: tokenise}]}
  r_custom: {grants: [{datasets: "*", actions: [select]}], columns: [{column: id, mask: {sql: "{col} % 3"}}]}
  # two roles: the key is raw on rows with w = 1 and NULL (denied) on the other rows of g >= 0
  r_deny_id:
    grants: [{datasets: "*", actions: [select]}]
    columns: [{column: id, deny: true}]
    row_filters: [{datasets: "*", where: "g >= 0"}]
  r_some_rows:
    grants: [{datasets: "*", actions: [select]}]
    row_filters: [{datasets: "*", where: "w = 1"}]
principals:
  loader: {roles: [admin]}
  u_null: {roles: [r_null]}
  u_redact: {roles: [r_redact]}
  u_last4: {roles: [r_last4]}
  u_hash: {roles: [r_hash]}
  u_token: {roles: [r_token]}
  u_custom: {roles: [r_custom]}
  u_mixed: {roles: [r_deny_id, r_some_rows]}
"""
MASKED_WHO = ["u_null", "u_redact", "u_last4", "u_hash", "u_token", "u_custom", "u_mixed"]
OUTPUTS = ("id", "g", "v", "w")


@pytest.fixture(scope="module")
def masked_platform(tmp_path_factory):
    p = Platform.open(Config.embedded(tmp_path_factory.mktemp("prop-masked") / "hw"))
    for store in ("app", "warehouse", "lake"):
        _load(p.session("loader"), f"{store}.prop", [{"g": 0, "v": "a", "w": 0}])
    p.apply_policy(MASKED_POLICY, source="masked.yaml", applied_by="test")
    yield p
    p.close()


@pytest.mark.parametrize("store", ["app", "warehouse", "lake"])
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(row_st, max_size=25), keys=keys_st, page_size=st.integers(1, 8),
       chunk=st.sampled_from([1, 3, 4096]), who=st.sampled_from(MASKED_WHO))
def test_pages_over_masked_keys_drop_and_repeat_nothing(masked_platform, store, rows, keys, page_size, chunk, who):
    real_chunk = session_mod._DUCKDB_TOPN_ROWS
    session_mod._DUCKDB_TOPN_ROWS = chunk
    try:
        dataset = f"{store}.prop"
        _load(masked_platform.session("loader"), dataset, rows)
        session = masked_platform.session(who)
        full = session.sql(f"SELECT id, g, v, w FROM {dataset}").to_pylist()  # what the principal sees
        rest = [(c, False) for c in OUTPUTS if c not in dict(keys)]

        got = _pages(session.read(dataset, order_by=[f"{n} desc" if d else n for n, d in keys],
                                  page_size=page_size))
        assert got == py_order(full, [*keys, *rest])

        order_sql = ", ".join(f"{n} DESC" if d else n for n, d in keys)
        got = _pages(session.sql(f"SELECT id, g, v, w FROM {dataset} ORDER BY {order_sql}", page_size=page_size))
        assert got == py_order(full, [*keys, *rest])

        got = _pages(session.read(dataset, page_size=page_size))  # no order: the (masked) key alone
        assert got == py_order(full, [(c, False) for c in OUTPUTS])
    finally:
        session_mod._DUCKDB_TOPN_ROWS = real_chunk


def test_masked_key_is_no_unique_key(masked_platform):
    """The planner falls back to the order over every output column for a masked key."""
    for who, unique in (("loader", True), ("u_hash", False), ("u_null", False), ("u_mixed", False)):
        plan = masked_platform.session(who).read("warehouse.prop", page_size=2).plan
        assert plan.unique_sort is unique, who
        assert [k.name for k in plan.sort] == (["id"] if unique else list(OUTPUTS))
        assert all(k.nullable for k in plan.sort) or unique


def test_derived_key_is_no_unique_key(masked_platform):
    """A key read through a derived table may be computed or repeated there."""
    s = masked_platform.session("loader")
    _load(s, "warehouse.prop", [{"g": i, "v": "a", "w": 0} for i in range(6)])
    got = _pages(s.sql("SELECT id FROM (SELECT 1 AS id FROM warehouse.prop) AS d", page_size=4))
    assert got == [{"id": 1}] * 6
    got = _pages(s.sql("SELECT id FROM (SELECT id FROM warehouse.prop UNION ALL SELECT id FROM warehouse.prop) u",
                       page_size=4))
    assert sorted(r["id"] for r in got) == sorted(list(range(6)) * 2)
