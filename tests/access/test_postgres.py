"""Postgres as the ``app`` store: pushdown, placeholders and writes through the same SDK calls."""

from __future__ import annotations

import re

import pytest

from headwater import DatasetNotFound, WriteError
from tests.access._seed import load_seed

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg(pg_platform):
    seed = load_seed(pg_platform)
    return pg_platform, pg_platform.session("alice"), seed


def test_catalog_sync_sees_postgres_tables(pg):
    platform, _, _ = pg
    platform.catalog.remove("app.customers")
    report = platform.sync_catalog(["app"])
    assert report.added == ["app.customers"]
    ds = platform.catalog.get("app.customers")
    assert ds.kind == "postgres"
    assert ds.primary_key == ("id",)
    assert ds.column_names == ["id", "name", "country", "email"]
    assert "password" not in ds.location


def test_single_store_query_runs_on_postgres(pg):
    _, session, seed = pg
    res = session.sql("SELECT name FROM app.customers WHERE name LIKE 'cust00%' AND id = $1", [4])
    assert res.plan.store == "app"
    assert res.to_pylist() == [{"name": "cust004"}]
    got = session.sql("SELECT count(*) AS n FROM app.customers WHERE country = :c", {"c": "US"})
    assert got.to_pylist() == [{"n": sum(c["country"] == "US" for c in seed.customers)}]


def test_explain_pushdown_into_postgres(pg):
    _, session, _ = pg
    text = session.explain(
        "SELECT c.name, o.amount FROM app.customers c JOIN warehouse.orders o ON o.customer_id = c.id "
        "WHERE c.country = ? AND o.amount > 10", ["US"],
    )
    line = next(ln for ln in text.splitlines() if "<- app.customers via postgres" in ln)
    assert re.search(r"WHERE country = %s", line)
    assert "email" not in line and "amount" not in line
    single = session.explain("SELECT name FROM app.customers WHERE id = ?", [1])
    assert single.startswith("-- runs on app (postgres)")


def test_write_modes_on_postgres(pg):
    _, session, _ = pg
    session.write("app.kv", [{"k": "a", "v": 1}, {"k": "b", "v": 2}], key="k")
    session.write("app.kv", {"k": ["b", "c"], "v": [20, 3]}, mode="upsert")
    assert session.sql("SELECT k, v FROM app.kv ORDER BY k").to_pylist() == [
        {"k": "a", "v": 1}, {"k": "b", "v": 20}, {"k": "c", "v": 3}]
    with pytest.raises(WriteError):
        session.write("app.kv", [{"k": "d", "v": "many"}])
    with pytest.raises(WriteError):
        session.write("app.kv", [{"k": "z", "v": 9}, {"k": "a", "v": 10}])  # duplicate key
    assert session.sql("SELECT count(*) AS n FROM app.kv").to_pylist() == [{"n": 3}]
    session.write("app.kv", [{"k": "x", "v": 0}], mode="overwrite")
    assert session.sql("SELECT k, v FROM app.kv").to_pylist() == [{"k": "x", "v": 0}]


def test_unknown_dataset_on_postgres(pg):
    _, session, _ = pg
    with pytest.raises(DatasetNotFound):
        session.sql("SELECT * FROM app.nope")
