"""The ready pipeline app.<table> -> bus -> warehouse.<table> on the embedded platform (SQLite
triggers) and with a Postgres ``app`` (logical replication): inserts, updates and deletes reach
the replica, re-runs are idempotent, and lineage links each source column to its replica column."""

from __future__ import annotations

import contextlib
import sqlite3
import uuid

import pytest

from headwater.cdc import CDCPipeline, replicate
from headwater.errors import ConfigError, InvalidInput

CUSTOMERS = [
    {"id": 1, "name": "Ada", "email": "ada@example.com", "country": "GB"},
    {"id": 2, "name": "Bob", "email": "bob@example.com", "country": "US"},
    {"id": 3, "name": "Cyd", "email": "cyd@example.com", "country": "DE"},
]


def _platform(kind: str, request):
    if kind == "embedded":
        return request.getfixturevalue("platform")
    request.getfixturevalue("cdc_dsn")  # skips unless wal_level = logical and psycopg2 is there
    return request.getfixturevalue("pg_platform")


def _source_sql(platform, statements: list[str]) -> None:
    """Write to the source the way an application would: one transaction, straight SQL."""
    from headwater.config import PostgresConfig

    cfg = platform.config.stores["app"]
    if isinstance(cfg, PostgresConfig):
        import psycopg

        with psycopg.connect(cfg.dsn.get_secret_value(), autocommit=False) as conn:
            conn.execute(f'SET search_path TO "{cfg.schema_}"')
            for s in statements:
                conn.execute(s)
        return
    with contextlib.closing(sqlite3.connect(platform.store("app").path, isolation_level=None)) as con:
        con.execute("BEGIN")
        for s in statements:
            con.execute(s)
        con.execute("COMMIT")


def _same(session) -> tuple[list, list]:
    src = session.sql("SELECT id, name, email, country FROM app.customers ORDER BY id").to_pylist()
    rep = session.sql("SELECT id, name, email, country FROM warehouse.customers WHERE NOT _deleted "
                      "ORDER BY id").to_pylist()
    return src, rep


@pytest.mark.parametrize("kind", ["embedded", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_pipeline_replicates_changes_and_records_lineage(kind, request) -> None:
    platform = _platform(kind, request)
    session = platform.session("alice")
    session.write("app.customers", CUSTOMERS, key="id")
    platform.catalog.set_tags("app.customers", "email", ["pii.email"])
    pipe = CDCPipeline(platform, tables=["customers"], name=f"t_{uuid.uuid4().hex[:10]}")
    try:
        first = pipe.sync()
        assert first["applied"] == {"customers": 3} and first["halted"] == []
        replica = platform.catalog.get("warehouse.customers")
        assert replica.column("email").tags == ("pii.email",) and replica.primary_key == ("id",)
        subject = f"{pipe.topic_of('customers')}-value"
        assert '"x-pii":"email"' in platform.schema_registry.get_version(subject, 1).schema
        src, rep = _same(session)
        assert rep == src and len(rep) == 3
        _source_sql(platform, [
            "INSERT INTO customers (id, name, email, country) VALUES (4, 'Dee', 'dee@example.com', 'FR')",
            "UPDATE customers SET email = 'ada@new.example' WHERE id = 1",
            "DELETE FROM customers WHERE id = 2",
        ])
        _source_sql(platform, ["UPDATE customers SET country = 'NL' WHERE id = 4"])
        second = pipe.sync()
        assert second["applied"] == {"customers": 4}
        src, rep = _same(session)
        assert rep == src and [r["id"] for r in rep] == [1, 3, 4]
        assert rep[0]["email"] == "ada@new.example" and rep[2]["country"] == "NL"
        tomb = session.sql("SELECT id FROM warehouse.customers WHERE _deleted").to_pylist()
        assert tomb == [{"id": 2}]
        assert pipe.sync()["applied"] == {"customers": 0}  # nothing new: nothing applied
        assert pipe.status()["pipeline"]["applied"] == 7
    finally:
        pipe.drop()

    # lineage: every source column feeds the replica column of the same name
    up = platform.lineage.upstream("warehouse.customers.email")
    assert up.columns == ["app.customers.email"]
    down = platform.lineage.downstream("app.customers")
    assert {"warehouse.customers.id", "warehouse.customers.name", "warehouse.customers.email",
            "warehouse.customers.country"} <= set(down.columns)
    edge = next(e for e in down.edges if e.target == "warehouse.customers.email")
    assert (edge.source, edge.type, edge.subtype) == ("app.customers.email", "DIRECT", "IDENTITY")


def test_pipeline_rejects_bad_configuration(platform, session) -> None:
    session.write("app.customers", CUSTOMERS, key="id")
    with pytest.raises(InvalidInput):
        CDCPipeline(platform, source="app", target="app")
    with pytest.raises(ConfigError):
        CDCPipeline(platform, source="nowhere")
    with pytest.raises(ConfigError, match="no change capture"):
        CDCPipeline(platform, source="warehouse", target="lake", tables=["x"])


def test_replicate_once_and_resume_after_restart(platform, session) -> None:
    session.write("app.customers", CUSTOMERS, key="id")
    assert replicate(platform, tables=["customers"])["applied"] == {"customers": 3}
    _source_sql(platform, ["DELETE FROM customers WHERE id = 3"])
    # a new pipeline object (a restarted process) continues from the change table and the
    # replica's watermark: nothing is applied twice
    out = replicate(platform, tables=["customers"])
    assert out["applied"] == {"customers": 1} and out["published"] == 1
    src, rep = _same(session)
    assert rep == src and len(rep) == 2


def test_run_streams_until_stopped_and_follows_a_new_column(platform, session) -> None:
    import threading
    import time

    session.write("app.customers", CUSTOMERS, key="id")
    platform.catalog.set_tags("app.customers", "email", ["pii.email"])
    pipe = CDCPipeline(platform, tables=["customers"])
    pipe.connector.poll_interval = 0.01
    thread = threading.Thread(target=pipe.run, kwargs={"poll": 0.05}, daemon=True)
    thread.start()

    def wait(pred, what: str) -> None:
        deadline = time.monotonic() + 20
        while not pred():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.05)

    try:
        wait(lambda: pipe.applied >= 3, "the snapshot")
        _source_sql(platform, ["ALTER TABLE customers ADD COLUMN tier TEXT"])
        # the running connector notices the schema change and rebuilds its triggers
        wait(lambda: pipe.connector.schemas.versions.get("main.customers") == 2, "the new schema version")
        _source_sql(platform, ["UPDATE customers SET tier = 'gold' WHERE id = 3"])
        wait(lambda: pipe.applied >= 4, "the update")
    finally:
        pipe.stop()
        thread.join(20)
    assert not thread.is_alive()
    rows = session.sql("SELECT id, tier FROM warehouse.customers WHERE id = 3").to_pylist()
    assert rows == [{"id": 3, "tier": "gold"}]
    src, rep = _same(session)
    assert rep == src
    # the recreated replica keeps its governance and the lineage covers the new column
    replica = platform.catalog.get("warehouse.customers")
    assert replica.column("email").tags == ("pii.email",) and replica.primary_key == ("id",)
    assert "app.customers.tier" in platform.lineage.upstream("warehouse.customers.tier").columns
    pipe.close()


def test_a_recreated_source_table_is_snapshotted_again(platform, session) -> None:
    session.write("app.customers", CUSTOMERS, key="id")
    pipe = CDCPipeline(platform, tables=["customers"])
    assert pipe.sync()["applied"] == {"customers": 3}
    # CREATE OR REPLACE drops the table (and the capture triggers with it) and creates it again
    session.sql("CREATE OR REPLACE TABLE app.customers AS SELECT * FROM app.customers WHERE id <> 2")
    _source_sql(platform, ["UPDATE customers SET name = 'Ada L.' WHERE id = 1"])  # not captured
    pipe.sync()
    src, rep = _same(session)
    assert rep == src and [r["id"] for r in rep] == [1, 3] and rep[0]["name"] == "Ada L."
    _source_sql(platform, ["UPDATE customers SET name = 'Cyd C.' WHERE id = 3"])  # captured again
    pipe.sync()
    src, rep = _same(session)
    assert rep == src and rep[1]["name"] == "Cyd C."
    pipe.close()
