"""SQLite change capture (triggers into ``_hw_changes``) on the embedded platform: snapshot,
ordered envelopes, delete-after-ack, schema changes, and a replica that converges."""

from __future__ import annotations

import contextlib
import sqlite3

import pytest

from headwater.cdc import ReplicaSink
from headwater.cdc.base import CHANGE_TYPE, SNAPSHOT_TYPE, Connector
from headwater.cdc.sqlite import CHANGE_TABLE, SQLiteCDC


def _db(platform) -> sqlite3.Connection:
    return sqlite3.connect(platform.store("app").path, isolation_level=None)


def _events(bus, topic: str, group: str = "check") -> list:
    consumer = bus.subscribe(topic, group)
    out = []
    while True:
        msgs = consumer.fetch(1000, timeout=0.2)
        if not msgs:
            consumer.close()
            return out
        out.extend(m.event() for m in msgs)
        consumer.ack_many(msgs)


def _backlog(platform) -> int:
    with contextlib.closing(_db(platform)) as con:
        return con.execute(f"SELECT count(*) FROM {CHANGE_TABLE}").fetchone()[0]


@pytest.fixture
def items(platform, session):
    session.write("app.items", [{"id": 1, "name": "one", "price": 1.5, "ok": True},
                                {"id": 2, "name": "two", "price": 2.0, "ok": False}], key="id")
    return "items"


def test_snapshot_stream_order_and_replica(platform, session, items) -> None:
    bus = platform.bus
    cdc = SQLiteCDC(platform.store("app"), bus=bus, tables=[items], registry=platform.schema_registry)
    assert isinstance(cdc, Connector)
    assert cdc.run(idle_timeout=0.1) == 3  # two snapshot rows and the marker
    with contextlib.closing(_db(platform)) as con:
        con.execute("BEGIN")
        con.execute("INSERT INTO items (id, name, price, ok) VALUES (3, 'three', 3.25, 1)")
        con.execute("UPDATE items SET name = 'uno' WHERE id = 1")
        con.execute("COMMIT")
        con.execute("BEGIN")
        con.execute("INSERT INTO items (id, name) VALUES (99, 'rolled back')")
        con.execute("ROLLBACK")
        con.execute("DELETE FROM items WHERE id = 2")
        con.execute("UPDATE items SET id = 30 WHERE id = 3")
    assert _backlog(platform) == 4
    assert cdc.run(idle_timeout=0.1) == 4
    assert _backlog(platform) == 0  # deleted only once the bus acknowledged them
    evs = _events(bus, cdc.topic_of(items))
    assert cdc.topic_of(items) == "cdc.app.main.items"
    assert [(e.type, e.data.get("op")) for e in evs] == [
        (CHANGE_TYPE, "r"), (CHANGE_TYPE, "r"), (SNAPSHOT_TYPE, None),
        (CHANGE_TYPE, "c"), (CHANGE_TYPE, "u"), (CHANGE_TYPE, "d"), (CHANGE_TYPE, "u")]
    snap = evs[0].data
    assert snap["after"] == {"id": 1, "name": "one", "price": 1.5, "ok": True}
    assert snap["source"]["connector"] == "sqlite" and snap["source"]["snapshot"] == "true"
    stream = [e for e in evs[3:]]
    seqs = [e.data["source"]["lsn"] for e in stream]
    assert seqs == sorted(seqs) and len(set(seqs)) == 4 and seqs[0] > snap["source"]["lsn"]
    assert [e.subject for e in stream] == ["3", "1", "2", "30"]
    assert stream[1].data["before"]["name"] == "one" and stream[1].data["after"]["name"] == "uno"
    assert stream[2].data["after"] is None and stream[2].data["before"]["id"] == 2
    assert stream[3].data["before"]["id"] == 3 and stream[3].data["after"]["id"] == 30
    assert all(e.extensions["pk"] == "id" for e in stream)
    assert stream[0].data["after"]["ok"] is True
    st = cdc.status()
    assert st["tables"]["main.items"]["c"] == 1 and st["tables"]["main.items"]["u"] == 2
    assert st["tables"]["main.items"]["r"] == 2 and st["backlog"] == 0
    assert platform.schema_registry.versions("cdc.app.main.items-value") == [1]

    sink = ReplicaSink(session, "warehouse.items")
    assert sink.write(evs) == 6
    assert ReplicaSink(session, "warehouse.items").write(evs) == 0  # de-duplicated by (seq, position)
    replica = session.sql("SELECT id, name, price FROM warehouse.items WHERE NOT _deleted ORDER BY id").to_pylist()
    with contextlib.closing(_db(platform)) as con:
        source = con.execute("SELECT id, name, price FROM items ORDER BY id").fetchall()
    assert [(r["id"], r["name"], r["price"]) for r in replica] == source


class _FailingBus:
    """The real bus, except that publishing fails (a broker that refuses the batch)."""

    def __init__(self, bus) -> None:
        self._bus = bus

    def __getattr__(self, name):
        return getattr(self._bus, name)

    def publish_many(self, topic, items):
        raise RuntimeError("broker refused the batch")


def test_changes_stay_until_the_bus_acknowledges(platform, items) -> None:
    cdc = SQLiteCDC(platform.store("app"), bus=platform.bus, tables=[items])
    cdc.run(idle_timeout=0.1)
    with contextlib.closing(_db(platform)) as con:
        con.execute("INSERT INTO items (id, name) VALUES (5, 'five')")
        con.execute("DELETE FROM items WHERE id = 1")
    failing = SQLiteCDC(platform.store("app"), bus=_FailingBus(platform.bus), tables=[items])
    with pytest.raises(RuntimeError):
        failing.run(idle_timeout=0.1)
    assert failing.status()["state"] == "failed" and _backlog(platform) == 2
    again = SQLiteCDC(platform.store("app"), bus=platform.bus, tables=[items])
    assert again.run(idle_timeout=0.1) == 2 and _backlog(platform) == 0
    ops = [e.data["op"] for e in _events(platform.bus, again.topic_of(items)) if e.type == CHANGE_TYPE]
    assert ops == ["r", "r", "c", "d"]


def test_add_column_rebuilds_triggers_and_registers_a_version(platform, items) -> None:
    registry = platform.schema_registry
    cdc = SQLiteCDC(platform.store("app"), bus=platform.bus, tables=[items], registry=registry)
    cdc.run(idle_timeout=0.1)
    with contextlib.closing(_db(platform)) as con:
        con.execute("ALTER TABLE items ADD COLUMN note TEXT")
    cdc.run(idle_timeout=0.2)  # notices the schema change, rebuilds the triggers
    with contextlib.closing(_db(platform)) as con:
        con.execute("INSERT INTO items (id, name, note) VALUES (7, 'seven', 'new column')")
        with pytest.raises(sqlite3.OperationalError):
            con.execute("ALTER TABLE items DROP COLUMN name")  # the capture triggers use it
    cdc.run(idle_timeout=0.1)
    assert registry.versions("cdc.app.main.items-value") == [1, 2]
    last = [e for e in _events(platform.bus, cdc.topic_of(items)) if e.type == CHANGE_TYPE][-1]
    assert last.data["after"]["note"] == "new column"
    assert cdc.status()["tables"]["main.items"]["schema_version"] == 2


def test_incompatible_sqlite_shape_halts_the_table(platform, session, items) -> None:
    session.write("app.other", [{"id": 1}], key="id")
    registry = platform.schema_registry
    registry.set_config("cdc.app.main.items-value", "FORWARD")
    alerts: list = []
    cdc = SQLiteCDC(platform.store("app"), bus=platform.bus, tables=[items, "other"], registry=registry,
                    on_alert=alerts.append)
    cdc.run(idle_timeout=0.1)
    with contextlib.closing(_db(platform)) as con:
        con.execute("ALTER TABLE items ADD COLUMN note TEXT")  # FORWARD: old readers reject it
        con.execute("INSERT INTO other VALUES (2)")
    cdc.run(idle_timeout=0.2)
    with contextlib.closing(_db(platform)) as con:
        con.execute("INSERT INTO items (id, name) VALUES (8, 'eight')")
        con.execute("INSERT INTO other VALUES (3)")
    cdc.run(idle_timeout=0.1)
    st = cdc.status()
    assert st["tables"]["main.items"]["state"] == "halted" and "FORWARD" in st["tables"]["main.items"]["error"]
    assert st["tables"]["main.other"]["state"] == "streaming" and st["tables"]["main.other"]["c"] == 2
    assert [a["table"] for a in alerts] == ["main.items"]
    assert st["tables"]["main.items"]["backlog"] == 1  # kept in the change table, not lost
