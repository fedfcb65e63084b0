"""Postgres CDC end to end: snapshot + streaming into the embedded bus, envelopes, ordering,
TOAST, transactions, heartbeats, lost slots, and a replica that converges to the source."""

from __future__ import annotations

import threading
import time

import pytest

from headwater.cdc import PostgresCDC, ReplicaSink, SlotLost
from headwater.cdc.postgres import CHANGE_TYPE, SNAPSHOT_TYPE
from headwater.events.bus import connect
from tests.cdc.fix_cdc import sql

pytestmark = pytest.mark.postgres

BIG = "(SELECT string_agg(md5(random()::text || g::text), '') FROM generate_series(1, 1000) g)"
"""~32 kB of incompressible text: stored out of line (TOAST)."""


def _start(cdc: PostgresCDC, **kw) -> threading.Thread:
    t = threading.Thread(target=cdc.run, kwargs=kw, daemon=True)
    t.start()
    return t


def _wait(pred, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _events(bus, topic: str) -> list:
    consumer = bus.subscribe(topic, "check")
    out = []
    while True:
        msgs = consumer.fetch(1000, timeout=0.5)
        if not msgs:
            return out
        out.extend((m.key, m.event()) for m in msgs)
        consumer.ack_many(msgs)


def _snapshot_done(dsn: str, slot: str) -> bool:
    rows = sql(dsn, "SELECT snapshot_done FROM public.headwater_cdc_state WHERE slot = %s", (slot,))
    return bool(rows and rows[0][0])


def test_envelopes_ordering_toast_and_replica(cdc_dsn, names, tmp_path, session) -> None:
    t = names.table
    sql(cdc_dsn, f'CREATE TABLE public."{t}" (id int PRIMARY KEY, name text, body text, amount numeric(10,2), '
                 "tags text[], at timestamptz)")
    sql(cdc_dsn, f"INSERT INTO public.\"{t}\" VALUES (1, 'one', NULL, 1.50, '{{a,b}}', '2024-01-01T00:00:00Z'), "
                 "(2, 'two', NULL, 2.00, NULL, NULL)")
    bus = connect(f"embedded:{tmp_path / 'events.db'}")
    cdc = PostgresCDC(cdc_dsn, slot=names.slot, publication=names.publication, tables=[t], bus=bus,
                      heartbeat_interval=0.5)
    thread = _start(cdc)
    try:
        _wait(lambda: cdc.status()["state"] == "streaming", what="streaming")
        # a multi-row transaction
        sql(cdc_dsn, f"BEGIN; INSERT INTO public.\"{t}\" (id, name, body) VALUES (3, 'three', {BIG}); "
                     f"INSERT INTO public.\"{t}\" (id, name) VALUES (4, 'four'); "
                     f"UPDATE public.\"{t}\" SET name = 'uno' WHERE id = 1; COMMIT")
        # the large value is unchanged: the server does not send it
        sql(cdc_dsn, f"UPDATE public.\"{t}\" SET name = 'drei' WHERE id = 3")
        sql(cdc_dsn, f"UPDATE public.\"{t}\" SET body = 'small now' WHERE id = 3")
        sql(cdc_dsn, f"DELETE FROM public.\"{t}\" WHERE id = 2")
        sql(cdc_dsn, f"UPDATE public.\"{t}\" SET id = 40 WHERE id = 4")
        _wait(lambda: cdc.status()["events"] >= 3 + 7, what="all events")
    finally:
        cdc.stop()
        thread.join(10)
    topic = f"cdc.app.public.{t}"
    evs = _events(bus, topic)
    kinds = [(e.type, e.data.get("op")) for _, e in evs]
    assert kinds == [(CHANGE_TYPE, "r"), (CHANGE_TYPE, "r"), (SNAPSHOT_TYPE, None)] + [
        (CHANGE_TYPE, op) for op in ("c", "c", "u", "u", "u", "d", "u")]
    snap = [e for _, e in evs[:2]]
    assert {e.data["after"]["id"] for e in snap} == {1, 2}
    one = next(e for e in snap if e.data["after"]["id"] == 1).data
    assert one["after"] == {"id": 1, "name": "one", "body": None, "amount": "1.50", "tags": ["a", "b"],
                            "at": "2024-01-01T00:00:00+00:00"}
    assert one["source"]["snapshot"] == "true" and one["before"] is None
    stream = [(k, e) for k, e in evs[3:]]
    # the multi-row transaction: one txId and LSN, positions 0..2, boundaries marked
    tx = [e.data for _, e in stream[:3]]
    assert len({d["source"]["txId"] for d in tx}) == 1 and len({d["source"]["lsn"] for d in tx}) == 1
    assert [d["source"]["pos"] for d in tx] == [0, 1, 2]
    assert [(d["transaction"]["total_order"], d["transaction"]["event_count"]) for d in tx] == [(1, 3), (2, 3), (3, 3)]
    lsns = [e.data["source"]["lsn"] for _, e in stream]
    assert lsns == sorted(lsns) and len(set(lsns)) == 5
    assert [k for k, _ in stream] == ["3", "4", "1", "3", "3", "2", "40"]
    assert all(e.subject == k for k, e in stream)
    assert stream[0][1].data["after"]["body"] and len(stream[0][1].data["after"]["body"]) == 32000
    # unchanged TOAST: omitted and listed, never a placeholder
    drei = stream[3][1]
    assert drei.data["after"]["name"] == "drei" and "body" not in drei.data["after"]
    assert drei.extensions["unchanged"] == "body" and drei.extensions["pk"] == "id"
    assert stream[4][1].data["after"]["body"] == "small now" and "unchanged" not in stream[4][1].extensions
    assert stream[5][1].data["before"] == {"id": 2} and stream[5][1].data["after"] is None
    assert stream[6][1].data["before"] == {"id": 4} and stream[6][1].data["after"]["id"] == 40
    src = stream[0][1].data["source"]
    assert {k: src[k] for k in ("db", "schema", "table", "snapshot")} == {
        "db": "test", "schema": "public", "table": t, "snapshot": "false"}
    assert src["ts_ms"] > 0 and src["txId"] > 0
    st = cdc.status()
    assert st["tables"][f"public.{t}"]["c"] == 2 and st["tables"][f"public.{t}"]["r"] == 2
    assert st["tables"][f"public.{t}"]["u"] == 4 and st["tables"][f"public.{t}"]["d"] == 1

    # into the warehouse replica, converging to the source (applied twice: de-duplicated)
    sink = ReplicaSink(session, f"warehouse.{t}")
    assert sink.write([e for _, e in evs]) == 9
    again = ReplicaSink(session, f"warehouse.{t}")
    assert again.write([e for _, e in evs]) == 0 and again.skipped == 9
    source = sql(cdc_dsn, f'SELECT id, name, body FROM public."{t}" ORDER BY id')
    replica = session.sql(f"SELECT id, name, body FROM warehouse.{t} WHERE NOT _deleted ORDER BY id").to_pylist()
    assert [(r["id"], r["name"], r["body"]) for r in replica] == source
    bus.close()


def test_idle_slot_heartbeat_advances_confirmed_lsn(cdc_dsn, names, tmp_path) -> None:
    t = names.table
    sql(cdc_dsn, f'CREATE TABLE public."{t}" (id int PRIMARY KEY)')
    sql(cdc_dsn, f'CREATE TABLE public."{t}_other" (id serial PRIMARY KEY, pad text)')
    bus = connect(f"embedded:{tmp_path / 'events.db'}")
    cdc = PostgresCDC(cdc_dsn, slot=names.slot, publication=names.publication, tables=[t], bus=bus,
                      heartbeat_interval=0.2)
    thread = _start(cdc)
    try:
        _wait(lambda: cdc.status()["state"] == "streaming", what="streaming")
        first = cdc.confirmed_lsn()
        # WAL grows from a table nobody captures: the slot must not retain it
        for _ in range(5):
            sql(cdc_dsn, f"INSERT INTO public.\"{t}_other\" (pad) SELECT repeat('x', 200) FROM generate_series(1, 2000)")
            time.sleep(0.1)
        _wait(lambda: cdc.confirmed_lsn() > first, what="confirmed_flush_lsn to advance")
        _wait(lambda: (cdc.lag_bytes() or 0) < 64 * 1024, what="lag to shrink", timeout=10)
        assert cdc.status()["events"] == 1  # just the snapshot marker: no change was published
    finally:
        cdc.stop()
        thread.join(10)
        bus.close()


def test_lost_slot_fails_loudly_with_the_fix(cdc_dsn, names, tmp_path) -> None:
    from tests.cdc.fix_cdc import drop_slot

    t = names.table
    sql(cdc_dsn, f'CREATE TABLE public."{t}" (id int PRIMARY KEY)')
    bus = connect(f"embedded:{tmp_path / 'events.db'}")
    cdc = PostgresCDC(cdc_dsn, slot=names.slot, publication=names.publication, tables=[t], bus=bus)
    cdc.run(idle_timeout=0.2)
    drop_slot(cdc_dsn, names.slot)  # someone dropped it: changes since are gone
    with pytest.raises(SlotLost, match="reset=True") as info:
        cdc.run(idle_timeout=0.2)
    assert info.value.fix == "reset" and cdc.status()["state"] == "failed"
    sql(cdc_dsn, f'INSERT INTO public."{t}" VALUES (7)')
    fresh = PostgresCDC(cdc_dsn, slot=names.slot, publication=names.publication, tables=[t], bus=bus, reset=True)
    fresh.run(idle_timeout=0.3)
    assert fresh.status()["tables"][f"public.{t}"]["r"] == 1
    bus.close()
