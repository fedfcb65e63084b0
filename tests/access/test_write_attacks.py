"""Issue 14, writes: every attack on the write path, through the SDK, on every store.

carol may write only rows whose country is DE or FR and never reads salary (see
``_write_platforms``); each test tries to get around that and checks that nothing changed.
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pytest

from headwater import AccessDenied, HeadwaterError, InvalidInput, Platform, WriteError
from tests.access._write_platforms import PEOPLE, open_db_platform, people_table, table_rows
from tests.fix_services import STORE_KINDS

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(params=STORE_KINDS)
def db_platform(request: pytest.FixtureRequest, tmp_path) -> Iterator[Platform]:
    yield from open_db_platform(request, tmp_path)


def eu_table(rows: list[dict]) -> pa.Table:
    """Rows without salary (the column carol may not write)."""
    return people_table(rows).drop_columns(["salary"])


def _is_postgres(platform: Platform) -> bool:
    return platform.store("db").kind == "postgres"


# -- column names that differ only in case ------------------------------------------------------
def test_case_duplicate_columns_are_refused(db_platform: Platform) -> None:
    # The row-filter check (DuckDB) binds "country", a case-folding store would write "COUNTRY".
    for who in ("carol", "root"):
        for mode in ("append", "upsert", "overwrite"):
            with pytest.raises(WriteError, match="differ only in case"):
                db_platform.session(who).write(
                    "db.people", [{"id": 9, "country": "DE", "COUNTRY": "US", "name": "x"}], mode=mode)
    assert table_rows(db_platform, "people") == PEOPLE


def test_columns_are_bound_as_the_store_binds_them(db_platform: Platform) -> None:
    carol = db_platform.session("carol")
    attempt = [{"ID": 9, "COUNTRY": "US", "NAME": "x"}]
    # Folding stores write COUNTRY into country, so the check must see US; Postgres compares
    # quoted names exactly and has no column COUNTRY.
    with pytest.raises((AccessDenied, WriteError)):
        carol.write("db.people", attempt)
    assert table_rows(db_platform, "people") == PEOPLE
    if not _is_postgres(db_platform):
        carol.write("db.people", [{"ID": 9, "COUNTRY": "DE", "NAME": "x"}])
        assert table_rows(db_platform, "people")[-1] == {"id": 9, "country": "DE", "salary": None, "name": "x"}


# -- upserts keep what they were not given -----------------------------------------------------
def test_partial_upsert_keeps_stored_values_of_omitted_columns(db_platform: Platform) -> None:
    carol = db_platform.session("carol")
    # carol may not write salary; leaving it out must not set it to NULL.
    assert carol.write("db.people", [{"id": 1, "name": "Anna"}], mode="upsert").rows_written == 1
    assert carol.write("db.people", [{"id": 7, "country": "FR", "name": "New"}], mode="upsert").rows_written == 1
    got = table_rows(db_platform, "people")
    assert got[0] == {"id": 1, "country": "DE", "salary": 100, "name": "Anna"}
    assert got[-1] == {"id": 7, "country": "FR", "salary": None, "name": "New"}
    assert got[1:3] == PEOPLE[1:]
    with pytest.raises(AccessDenied, match="(?i)salary"):
        carol.write("db.people", [{"id": 1, "salary": 0}], mode="upsert")
    assert table_rows(db_platform, "people") == got


def test_partial_upsert_by_root_on_every_store(db_platform: Platform) -> None:
    root = db_platform.session("root")
    root.write("db.people", [{"id": 2, "salary": 250}], mode="upsert")
    root.write("db.people", pa.table({"name": ["Cyd"], "id": pa.array([3], pa.int32())}), mode="upsert")
    got = table_rows(db_platform, "people")
    assert got == [PEOPLE[0], {**PEOPLE[1], "salary": 250}, {**PEOPLE[2], "name": "Cyd"}]


def test_upsert_checks_rows_as_they_will_be_stored(db_platform: Platform) -> None:
    carol = db_platform.session("carol")
    # The US row is outside carol's filter before the upsert (pre-image) ...
    with pytest.raises(AccessDenied, match="outside its row filter"):
        carol.write("db.people", [{"id": 3, "name": "mine now"}], mode="upsert")
    # ... a DE row moved to the US is outside it afterwards (post-image) ...
    with pytest.raises(AccessDenied, match="outside its row filter"):
        carol.write("db.people", [{"id": 1, "country": "US"}], mode="upsert")
    # ... and a key sent as text finds the stored row it would update.
    with pytest.raises(AccessDenied, match="outside its row filter"):
        carol.write("db.people", pa.table({"id": ["3"], "name": ["typed"]}), mode="upsert")
    assert table_rows(db_platform, "people") == PEOPLE


def test_overwrite_checks_every_replaced_row(db_platform: Platform) -> None:
    with pytest.raises(AccessDenied, match="outside its row filter"):
        db_platform.session("carol").write("db.people", eu_table(PEOPLE[:1]), mode="overwrite")
    assert table_rows(db_platform, "people") == PEOPLE


# -- tables the catalog does not know ----------------------------------------------------------
def test_uncatalogued_table_is_governed_as_existing(db_platform: Platform) -> None:
    store = db_platform.store("db")
    us_only = people_table([PEOPLE[2]])
    store.write("hidden", us_only, key=["id"])  # created behind the platform's back
    hidden = store.table("hidden").name
    assert db_platform.catalog.find(f"db.{hidden}") is None
    carol = db_platform.session("carol")
    with pytest.raises(AccessDenied, match="outside its row filter"):
        carol.write("db.hidden", eu_table([PEOPLE[0]]), mode="overwrite")
    with pytest.raises(AccessDenied):
        db_platform.session("dave").write("db.hidden", eu_table([PEOPLE[0]]), mode="overwrite")
    with pytest.raises(AccessDenied, match="outside its row filter"):
        carol.write("db.hidden", [{"id": 3, "name": "mine"}], mode="upsert")
    assert table_rows(db_platform, "hidden") == [PEOPLE[2]]
    assert db_platform.catalog.find(f"db.{hidden}") is not None  # registered on first contact
    # CREATE TABLE over it is refused, not a silent replacement, whoever asks.
    store.write("hidden2", us_only, key=["id"])
    with pytest.raises(InvalidInput, match="already exists"):
        db_platform.session("root").sql("CREATE TABLE db.hidden2 AS SELECT * FROM db.people")
    assert table_rows(db_platform, "hidden2") == [PEOPLE[2]]


def test_create_or_replace_of_an_uncatalogued_table_checks_its_rows(db_platform: Platform) -> None:
    db_platform.store("db").write("hidden3", people_table([PEOPLE[2]]), key=["id"])
    with pytest.raises(AccessDenied):
        db_platform.session("carol").sql("CREATE OR REPLACE TABLE db.hidden3 AS SELECT id, country, name "
                                         "FROM db.people")
    assert table_rows(db_platform, "hidden3") == [PEOPLE[2]]


# -- the pre-image lookup fails closed ----------------------------------------------------------
def test_pre_image_lookup_fails_closed(db_platform: Platform) -> None:
    ds = db_platform.catalog.get("db.people")
    with pytest.raises(AccessDenied, match="nothing was written"):
        db_platform.system_rows(ds, match=pa.table({"no_such_column": [1]}))
    # The table disappears behind the catalog's back: the lookup fails, the write does not happen.
    store = db_platform.store("db")
    if store.kind == "parquet":
        store.drop(ds.table)
    else:
        with store._transaction() as cur:
            cur.execute(f"DROP TABLE {store._physical(ds.table)}")
    with pytest.raises(HeadwaterError):
        db_platform.session("carol").write("db.people", [{"id": 1, "name": "x"}], mode="upsert")
    with pytest.raises(HeadwaterError):
        db_platform.session("carol").write("db.people", eu_table(PEOPLE[:1]), mode="overwrite")
    with pytest.raises(HeadwaterError):
        store.table(ds.table)  # nothing was created either


def test_pre_image_of_many_keys_is_matched_in_duckdb(db_platform: Platform) -> None:
    # More keys than the pushed-down lookup takes: the scan-and-semi-join path, same answer.
    many = [{"id": 1000 + i, "country": "DE", "name": f"n{i}"} for i in range(5_001)]
    carol = db_platform.session("carol")
    carol.write("db.people", many, mode="upsert")
    with pytest.raises(AccessDenied, match="outside its row filter"):
        carol.write("db.people", [*many, {"id": 3, "name": "x"}], mode="upsert")
    assert len(table_rows(db_platform, "people")) == 3 + len(many)


# -- dataset names ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["db.peo\u200bple", "db.pe\u043eple", "db.people ", " db.people",
                                  "db.peo\u202eple", "db.peo\u00adple", "db.peo\tple"])
def test_confusable_dataset_names_are_refused(db_platform: Platform, name: str) -> None:
    with pytest.raises(InvalidInput):
        db_platform.session("root").write(name, [{"id": 9, "country": "DE", "name": "x"}])
    assert table_rows(db_platform, "people") == PEOPLE


def test_compatibility_forms_name_the_same_dataset(db_platform: Platform) -> None:
    # NFKC: fullwidth letters are the plain name, governed as it.
    with pytest.raises(AccessDenied):
        db_platform.session("carol").write("db.\uff50\uff45\uff4f\uff50\uff4c\uff45", eu_table([PEOPLE[0]]),
                                           mode="overwrite")
    db_platform.session("root").write("db.\uff50\uff45\uff4f\uff50\uff4c\uff45", [{"id": 4, "country": "FR"}])
    assert [r["id"] for r in table_rows(db_platform, "people")] == [1, 2, 3, 4]
