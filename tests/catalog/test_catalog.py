"""The catalog: sync from stores, registration, tags, settable fields, removal, caching."""

from __future__ import annotations

import sqlite3
import time

import pyarrow as pa
import pytest

from headwater import Catalog, ColumnNotFound, DatasetNotFound, InvalidInput
from headwater.metadata import MetadataStore


def _seed_stores(platform):
    """Create tables directly in each store (not through the SDK), as another tool would."""
    with sqlite3.connect(platform.config.resolve("app.db")) as con:
        con.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, email TEXT, country TEXT)")
        con.execute("INSERT INTO customers VALUES (1, 'a@x.io', 'US')")
        con.execute("CREATE TABLE notes (body TEXT)")
    wh = platform.store("warehouse")
    with wh._transaction() as cur:
        cur.execute("CREATE TABLE orders (order_id BIGINT PRIMARY KEY, customer_id BIGINT, amount DOUBLE)")
    platform.store("lake").write("events", pa.table({"customer_id": [1, 2], "kind": ["x", "y"]}))


def test_sync_embedded_stores(platform):
    _seed_stores(platform)
    report = platform.sync_catalog()
    assert sorted(report.added) == ["app.customers", "app.notes", "lake.events", "warehouse.orders"]
    assert report.errors == {}
    names = [d.name for d in platform.catalog.list()]
    assert names == ["app.customers", "app.notes", "lake.events", "warehouse.orders"]

    customers = platform.catalog.get("app.customers")
    assert customers.store == "app"
    assert customers.table == "customers"
    assert customers.kind == "sqlite"
    assert customers.primary_key == ("id",)
    assert customers.column_names == ["id", "email", "country"]
    assert customers.column("id").type == "int64"
    assert customers.column("id").nullable is False
    assert customers.column("EMAIL").name == "email"

    orders = platform.catalog.get("warehouse.orders")
    assert orders.kind == "duckdb"
    assert orders.primary_key == ("order_id",)
    assert orders.column("amount").type == "double"

    events = platform.catalog.get("lake.events")
    assert events.kind == "parquet"
    assert events.column_names == ["customer_id", "kind"]

    # a second sync changes nothing
    again = platform.sync_catalog()
    assert again.added == [] and again.updated == [] and again.removed == []
    assert sorted(again.unchanged) == names


def test_sync_only_named_stores(platform):
    _seed_stores(platform)
    report = platform.sync_catalog(["app"])
    assert sorted(report.added) == ["app.customers", "app.notes"]
    assert platform.catalog.list("warehouse.*") == []


def test_sync_prunes_dropped_tables(platform):
    _seed_stores(platform)
    platform.sync_catalog()
    with sqlite3.connect(platform.config.resolve("app.db")) as con:
        con.execute("DROP TABLE notes")
    report = platform.sync_catalog()
    assert report.removed == ["app.notes"]
    assert platform.catalog.find("app.notes") is None
    assert platform.catalog.find("app.customers") is not None


def test_register_keeps_tags_after_resync(platform):
    _seed_stores(platform)
    platform.sync_catalog()
    platform.catalog.set_tags("app.customers", "email", ["pii.email"])
    platform.catalog.update("app.customers", owner="crm-team", retention_days=30)

    with sqlite3.connect(platform.config.resolve("app.db")) as con:
        con.execute("ALTER TABLE customers ADD COLUMN phone TEXT")
    report = platform.sync_catalog()
    assert report.updated == ["app.customers"]

    ds = platform.catalog.get("app.customers")
    assert ds.column_names == ["id", "email", "country", "phone"]
    assert ds.column("email").tags == ("pii.email",)
    assert ds.column("phone").tags == ()
    assert ds.owner == "crm-team"
    assert ds.retention_days == 30


def test_register_outcomes(platform):
    store = platform.store("app")
    store.write("t", pa.table({"id": [1], "v": ["a"]}), key=["id"])
    info = store.table("t")
    ds, outcome = platform.catalog.register("app", info, kind="sqlite", owner="bob")
    assert outcome == "added"
    assert ds.owner == "bob"
    assert platform.catalog.register("app", info, kind="sqlite")[1] == "unchanged"
    assert platform.catalog.get("app.t").owner == "bob"  # not reset by re-registration


def test_set_tags_adds_and_replaces(platform):
    _seed_stores(platform)
    platform.sync_catalog()
    cat = platform.catalog
    ds = cat.set_tags("app.customers", "email", ["pii.email"])
    assert ds.column("email").tags == ("pii.email",)
    ds = cat.set_tags("app.customers", "email", ["pii", "contact"])
    assert ds.column("email").tags == ("contact", "pii", "pii.email")
    ds = cat.set_tags("app.customers", "email", ["pii.email"], replace=True)
    assert ds.column("email").tags == ("pii.email",)
    cat.set_tags("app.customers", "country", ["geo"])
    assert [c.name for c in cat.get("app.customers").tagged("pii.*")] == ["email"]
    assert [c.name for c in cat.get("app.customers").tagged("*")] == ["email", "country"]
    with pytest.raises(ColumnNotFound) as info:
        cat.set_tags("app.customers", "nope", ["x"])
    assert "email" in str(info.value)  # lists the columns that exist
    with pytest.raises(DatasetNotFound):
        cat.set_tags("app.nothing", "email", ["x"])


def test_update_fields(platform):
    _seed_stores(platform)
    platform.sync_catalog()
    cat = platform.catalog
    before = cat.version
    ds = cat.update("warehouse.orders", owner="finance", retention_days=365, tier="gold",
                    description="all orders", properties={"sla": "daily"})
    assert cat.version > before
    assert ds.owner == "finance"
    assert ds.retention_days == 365
    assert ds.tier == "gold"
    assert ds.description == "all orders"
    assert dict(ds.properties) == {"sla": "daily"}
    ds = cat.update("warehouse.orders", tier="silver")
    assert ds.tier == "silver"
    assert ds.owner == "finance"
    with pytest.raises(InvalidInput, match="settable"):
        cat.update("warehouse.orders", table="renamed")
    with pytest.raises(DatasetNotFound):
        cat.update("warehouse.nothing", owner="x")


def test_remove(platform):
    _seed_stores(platform)
    platform.sync_catalog()
    platform.catalog.remove("app.notes")
    with pytest.raises(DatasetNotFound):
        platform.catalog.get("app.notes")
    with pytest.raises(DatasetNotFound):
        platform.catalog.remove("app.notes")
    # the data is untouched: a sync brings it back
    assert platform.sync_catalog(["app"]).added == ["app.notes"]


def test_dataset_not_found_hints(platform):
    _seed_stores(platform)
    platform.sync_catalog()
    cat = platform.catalog
    with pytest.raises(DatasetNotFound, match=r"did you mean app\.customers") as info:
        cat.get("customers")
    assert info.value.dataset == "customers"
    with pytest.raises(DatasetNotFound, match=r"did you mean app\.customers"):
        cat.get("crm.customers")
    with pytest.raises(DatasetNotFound, match=r"<store>\.<table>"):
        cat.get("nothing_like_it")
    with pytest.raises(DatasetNotFound, match="catalog sync"):
        cat.get("app.nothing_like_it")
    assert cat.find("app.nothing_like_it") is None
    assert cat.get("APP.Customers").name == "app.customers"


def test_list_glob(platform):
    _seed_stores(platform)
    platform.sync_catalog()
    assert [d.name for d in platform.catalog.list("app.*")] == ["app.customers", "app.notes"]
    assert [d.name for d in platform.catalog.list("*.orders")] == ["warehouse.orders"]


def test_second_catalog_sees_changes_after_refresh(platform):
    _seed_stores(platform)
    platform.sync_catalog()
    url = platform.config.metadata.url.get_secret_value()
    other_meta = MetadataStore.open(url, base_dir=platform.dir)
    try:
        reader = Catalog(other_meta, refresh_s=0.3)
        writer = Catalog(MetadataStore.open(url, base_dir=platform.dir))
        assert reader.get("app.customers").owner is None
        v0 = reader.version

        writer.update("app.customers", owner="someone-else")
        writer.set_tags("app.customers", "email", ["pii.email"])
        writer.remove("app.notes")

        # within refresh_s the cached snapshot may still be served; afterwards it must not be
        time.sleep(0.4)
        ds = reader.get("app.customers")
        assert ds.owner == "someone-else"
        assert ds.column("email").tags == ("pii.email",)
        assert reader.find("app.notes") is None
        assert reader.version > v0
        writer.meta.close()
    finally:
        other_meta.close()


def test_cache_is_served_within_refresh_window_then_invalidated(platform):
    _seed_stores(platform)
    platform.sync_catalog()
    url = platform.config.metadata.url.get_secret_value()
    meta_a = MetadataStore.open(url, base_dir=platform.dir)
    meta_b = MetadataStore.open(url, base_dir=platform.dir)
    try:
        reader = Catalog(meta_a, refresh_s=3600)
        writer = Catalog(meta_b)
        assert reader.get("warehouse.orders").tier is None
        writer.update("warehouse.orders", tier="gold")
        assert reader.get("warehouse.orders").tier is None  # cached
        reader.invalidate()
        assert reader.get("warehouse.orders").tier == "gold"
    finally:
        meta_a.close()
        meta_b.close()


def test_platform_catalog_sees_external_change(platform):
    """The platform's own catalog (default refresh) picks up another process's change."""
    _seed_stores(platform)
    platform.sync_catalog()
    platform.catalog.refresh_s = 0.2
    url = platform.config.metadata.url.get_secret_value()
    meta = MetadataStore.open(url, base_dir=platform.dir)
    try:
        Catalog(meta).set_tags("app.customers", "country", ["geo"])
    finally:
        meta.close()
    time.sleep(0.3)
    assert platform.catalog.get("app.customers").column("country").tags == ("geo",)


def test_sync_reports_unreachable_store(platform):
    class Broken:
        kind = "sqlite"

        def tables(self):
            raise RuntimeError("store is down")

    _seed_stores(platform)
    report = platform.catalog.sync({"app": platform.store("app"), "bad": Broken()})
    assert "bad" in report.errors
    assert sorted(report.added) == ["app.customers", "app.notes"]


def test_sdk_write_registers_dataset(session, platform):
    session.write("app.people", [{"id": 1, "name": "Ann"}], key="id")
    ds = platform.catalog.get("app.people")
    assert ds.owner == "alice"
    assert ds.primary_key == ("id",)
    assert ds.column_names == ["id", "name"]
