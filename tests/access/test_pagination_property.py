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
