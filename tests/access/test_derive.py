"""Deriving data with SQL: INSERT INTO ... SELECT and CREATE [OR REPLACE] TABLE ... AS, governed."""

from __future__ import annotations

import pytest

from headwater import AccessDenied, DatasetNotFound, InvalidInput, QueryRejected, WriteError

STORES = ["app", "warehouse", "lake"]


@pytest.fixture()
def seeded(session):
    session.write("app.c", [{"id": i, "country": ["DE", "US"][i % 2], "score": i * 1.5} for i in range(1, 11)], key="id")
    session.write("lake.e", [{"cid": i % 10 + 1, "n": i} for i in range(30)])
    return session


@pytest.mark.parametrize("store", STORES)
def test_create_table_as_across_stores(seeded, store: str) -> None:
    res = seeded.sql(
        f"CREATE TABLE {store}.totals AS SELECT c.country, sum(e.n) AS n FROM app.c c "
        "JOIN lake.e e ON e.cid = c.id GROUP BY c.country")
    assert res.to_pylist() == [{"rows_written": 2}]
    got = {r["country"]: r["n"] for r in seeded.sql(f"SELECT * FROM {store}.totals").to_pylist()}
    assert got == {"DE": sum(i for i in range(30) if (i % 10 + 1) % 2 == 0),
                   "US": sum(i for i in range(30) if (i % 10 + 1) % 2 == 1)}
    assert seeded.platform.catalog.get(f"{store}.totals").column_names == ["country", "n"]


@pytest.mark.parametrize("store", STORES)
def test_insert_select_with_and_without_column_list(seeded, store: str) -> None:
    seeded.sql(f"CREATE TABLE {store}.ids AS SELECT id, country FROM app.c WHERE id <= 2")
    seeded.sql(f"INSERT INTO {store}.ids SELECT id, country FROM app.c WHERE id = ?", [3])
    seeded.sql(f"INSERT INTO {store}.ids (country, id) SELECT country, id + 100 FROM app.c WHERE id = 4")
    rows = seeded.sql(f"SELECT id, country FROM {store}.ids ORDER BY id").to_pylist()
    assert rows == [{"id": 1, "country": "US"}, {"id": 2, "country": "DE"}, {"id": 3, "country": "US"},
                    {"id": 104, "country": "DE"}]


@pytest.mark.parametrize("store", STORES)
def test_create_or_replace_and_if_not_exists(seeded, store: str) -> None:
    seeded.sql(f"CREATE TABLE {store}.t AS SELECT id FROM app.c")
    with pytest.raises(InvalidInput, match="already exists"):
        seeded.sql(f"CREATE TABLE {store}.t AS SELECT id FROM app.c")
    assert seeded.sql(f"CREATE TABLE IF NOT EXISTS {store}.t AS SELECT 1 AS x").to_pylist() == [{"rows_written": 0}]
    seeded.sql(f"CREATE OR REPLACE TABLE {store}.t AS SELECT 'x' AS label, 2 AS k")
    assert seeded.sql(f"SELECT * FROM {store}.t").to_pylist() == [{"label": "x", "k": 2}]


def test_insert_into_missing_or_mismatched(seeded) -> None:
    with pytest.raises(DatasetNotFound):
        seeded.sql("INSERT INTO warehouse.nope SELECT id FROM app.c")
    seeded.sql("CREATE TABLE warehouse.nums AS SELECT id FROM app.c")
    with pytest.raises(WriteError):
        seeded.sql("INSERT INTO warehouse.nums SELECT country FROM app.c")  # text into a bigint column
    assert seeded.sql("SELECT count(*) AS n FROM warehouse.nums").to_pylist() == [{"n": 10}]
    with pytest.raises(InvalidInput):
        seeded.sql("INSERT INTO warehouse.nums SELECT id, country FROM app.c")
    with pytest.raises(QueryRejected):
        seeded.sql("UPDATE app.c SET country = 'FR'")


def test_derive_is_governed(platform, seeded) -> None:
    platform.policies.apply("""
version: 1
roles:
  reader: {grants: [{datasets: "*", actions: [select]}]}
  writer: {grants: [{datasets: "*", actions: [select, insert, delete]}]}
principals:
  bob: {roles: [reader]}
  wanda: {roles: [writer]}
""", source="t", applied_by="t")
    with pytest.raises(AccessDenied):
        platform.session("bob").sql("CREATE TABLE warehouse.x AS SELECT id FROM app.c")
    assert platform.catalog.find("warehouse.x") is None
    assert platform.session("wanda").sql("CREATE TABLE warehouse.x AS SELECT id FROM app.c").to_pylist() == [
        {"rows_written": 10}]
