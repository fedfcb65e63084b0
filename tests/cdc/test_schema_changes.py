"""Schema changes in Postgres CDC: a compatible ALTER registers a new row-schema version and
streaming continues; an incompatible one halts only that table, visibly, without losing it."""

from __future__ import annotations

import threading
import time

import pytest

from headwater.cdc import PostgresCDC
from headwater.cdc.base import CHANGE_TYPE
from headwater.cdc.pgoutput import parse_lsn
from headwater.events.bus import connect
from tests.cdc.fix_cdc import sql

pytestmark = pytest.mark.postgres


def _wait(pred, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _changes(bus, topic: str, group: str) -> list:
    consumer = bus.subscribe(topic, group)
    out = []
    while True:
        msgs = consumer.fetch(1000, timeout=0.3)
        if not msgs:
            consumer.close()
            return [e for e in out if e.type == CHANGE_TYPE]
        out.extend(m.event() for m in msgs)
        consumer.ack_many(msgs)


def _connector(dsn, names, bus, registry, alerts, tables) -> PostgresCDC:
    return PostgresCDC(dsn, slot=names.slot, publication=names.publication, tables=tables, bus=bus,
                       heartbeat_interval=0.3, registry=registry, on_alert=alerts.append)


def _start(cdc: PostgresCDC) -> threading.Thread:
    t = threading.Thread(target=cdc.run, daemon=True)
    t.start()
    _wait(lambda: cdc.status()["state"] == "streaming", what="streaming")
    return t


def test_add_column_registers_a_new_version_and_continues(cdc_dsn, names, tmp_path, platform) -> None:
    t = names.table
    sql(cdc_dsn, f'CREATE TABLE public."{t}" (id int PRIMARY KEY, v int)')
    sql(cdc_dsn, f'INSERT INTO public."{t}" VALUES (1, 10)')
    registry = platform.schema_registry
    bus = connect(f"embedded:{tmp_path / 'events.db'}")
    alerts: list = []
    cdc = _connector(cdc_dsn, names, bus, registry, alerts, [t])
    subject = f"cdc.app.public.{t}-value"
    thread = _start(cdc)
    try:
        assert registry.versions(subject) == [1]
        sql(cdc_dsn, f'ALTER TABLE public."{t}" ADD COLUMN note text')
        sql(cdc_dsn, f"INSERT INTO public.\"{t}\" VALUES (2, 20, 'hello')")
        sql(cdc_dsn, f"UPDATE public.\"{t}\" SET note = 'again' WHERE id = 1")
        _wait(lambda: cdc.status()["events"] >= 4, what="the changes after ALTER")
    finally:
        cdc.stop()
        thread.join(10)
    assert registry.versions(subject) == [1, 2]
    latest = registry.get_version(subject, 2)
    assert '"note"' in latest.schema and '"additionalProperties":false' in latest.schema
    st = cdc.status()
    assert st["tables"][f"public.{t}"]["state"] == "streaming" and st["halted"] == {}
    assert st["tables"][f"public.{t}"]["schema_version"] == 2 and alerts == []
    evs = _changes(bus, f"cdc.app.public.{t}", "check")
    assert [e.data["after"] for e in evs] == [
        {"id": 1, "v": 10}, {"id": 2, "v": 20, "note": "hello"}, {"id": 1, "v": 10, "note": "again"}]
    bus.close()


@pytest.mark.parametrize(("change", "mode"), [
    ("ALTER COLUMN v TYPE text", "BACKWARD"),
    ("DROP COLUMN v", "FULL"),
])
def test_incompatible_change_halts_only_that_table(cdc_dsn, names, tmp_path, platform, change, mode) -> None:
    t, other = names.table, f"{names.table}_other"
    sql(cdc_dsn, f'CREATE TABLE public."{t}" (id int PRIMARY KEY, v int)')
    sql(cdc_dsn, f'CREATE TABLE public."{other}" (id int PRIMARY KEY)')
    registry = platform.schema_registry
    subject = f"cdc.app.public.{t}-value"
    registry.set_config(subject, mode)
    bus = connect(f"embedded:{tmp_path / 'events.db'}")
    alerts: list = []
    status_file = tmp_path / "status.json"
    cdc = _connector(cdc_dsn, names, bus, registry, alerts, [t, other])
    cdc.status_file = str(status_file)
    thread = _start(cdc)
    try:
        sql(cdc_dsn, f'INSERT INTO public."{t}" VALUES (1, 1)')
        _wait(lambda: cdc.status()["events"] >= 3, what="the first change")  # 2 snapshot markers + 1
        _wait(lambda: (cdc.confirmed_lsn() or 0) >= parse_lsn(sql(cdc_dsn, "SELECT pg_current_wal_lsn()::text")[0][0]),
              what="the idle slot to be confirmed")
        sql(cdc_dsn, f'ALTER TABLE public."{t}" {change}')
        # The first change after the ALTER, with the WAL position before its commit record:
        # heartbeats written in between may be confirmed, this transaction may not.
        before_commit = parse_lsn(sql(cdc_dsn, f'WITH ins AS (INSERT INTO public."{t}" (id) VALUES (2) RETURNING id) '
                                               "SELECT pg_current_wal_insert_lsn()::text FROM ins")[0][0])
        sql(cdc_dsn, f'INSERT INTO public."{other}" VALUES (1), (2)')
        sql(cdc_dsn, f'DELETE FROM public."{t}" WHERE id = 1')
        sql(cdc_dsn, f'INSERT INTO public."{other}" VALUES (3)')
        _wait(lambda: cdc.status()["tables"].get(f"public.{other}", {}).get("c", 0) == 3, what="the other table")
        time.sleep(1.0)  # heartbeats and keepalives come and go: the position must stay held
        st = cdc.status()
        confirmed = cdc.confirmed_lsn()
    finally:
        cdc.stop()
        thread.join(10)
    assert st["state"] == "streaming"
    assert st["tables"][f"public.{t}"]["state"] == "halted"
    assert "IncompatibleSchema" in st["tables"][f"public.{t}"]["error"] and mode in st["tables"][f"public.{t}"]["error"]
    assert st["tables"][f"public.{t}"]["skipped"] == 2 and st["tables"][f"public.{other}"]["state"] == "streaming"
    assert [a["table"] for a in alerts] == [f"public.{t}"] and alerts[0]["kind"] == "schema_incompatible"
    assert confirmed is not None and confirmed <= before_commit  # the halted transaction is not confirmed
    from headwater.cdc.base import read_status_file

    assert f"public.{t}" in read_status_file(status_file)["halted"]
    assert registry.versions(subject) == [1]
    assert [e.data["after"]["id"] for e in _changes(bus, f"cdc.app.public.{t}", "a")] == [1]
    assert [e.data["after"]["id"] for e in _changes(bus, f"cdc.app.public.{other}", "a")] == [1, 2, 3]

    # Nothing was lost: once the subject's rule allows the new shape, a restart publishes them.
    registry.set_config(subject, "NONE")
    resumed = _connector(cdc_dsn, names, bus, registry, alerts, [t, other])
    resumed.run(idle_timeout=1.0)
    assert resumed.status()["halted"] == {} and registry.versions(subject) == [1, 2]
    evs = _changes(bus, f"cdc.app.public.{t}", "a")
    assert [(e.data["op"], (e.data["after"] or e.data["before"])["id"]) for e in evs] == [("c", 2), ("d", 1)]
    assert len(alerts) == 1
    bus.close()
