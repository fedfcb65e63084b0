"""One trace from a change to its warehouse row: publish -> process -> route publish -> process
-> the sink's database span, checked with the SDK's in-memory exporter.

Embedded bus path: a producer publishes, a router re-publishes, a sink writes to the warehouse.
CDC path: a Postgres change captured by :class:`~headwater.cdc.PostgresCDC` goes the same way.
"""

from __future__ import annotations

import threading
import time

import pytest

from headwater.events.envelope import Event
from headwater.events.routing import Router, router_consumer
from headwater.events.sink import DatasetSink, sink_consumer
from tests.cdc.fix_cdc import cdc_dsn, names, sql  # noqa: F401 - fixtures
from tests.events.bus.conftest import nats_url  # noqa: F401 - fixture

ORDER_SCHEMA = '{"type": "object", "properties": {"id": {"type": "integer"}, "amount": {"type": "number"}}}'


def _by_name(spans, name: str):
    found = [s for s in spans.get_finished_spans() if s.name == name]
    assert len(found) == 1, (name, [s.name for s in spans.get_finished_spans()])
    return found[0]


def _assert_chain(chain) -> None:
    """Every span has the previous one as parent, all in one trace."""
    assert len({s.context.trace_id for s in chain}) == 1, [s.name for s in chain]
    for parent, child in zip(chain, chain[1:], strict=False):
        assert child.parent is not None, child.name
        assert child.parent.span_id == parent.context.span_id, (parent.name, child.name)


def _route_and_sink(platform, source_topic: str, routed_topic: str, dataset: str, routes: str, to_row,
                    bus=None) -> None:
    bus = bus or platform.bus
    bus.create_topic(routed_topic)
    dlq = platform.dead_letters
    with router_consumer(bus, source_topic, "router", Router(routes), dead_letters=dlq) as router:
        stats = router.run(max_messages=1, idle_timeout=2, poll_timeout=0.2)
        assert stats.handled == 1
    sink = DatasetSink(platform.session("alice"), dataset, key="id", to_row=to_row, metadata=False)
    with sink_consumer(bus, routed_topic, "sink", sink, dead_letters=dlq) as consumer:
        stats = consumer.run(max_messages=1, idle_timeout=2, poll_timeout=0.2)
        assert stats.handled == 1


def test_embedded_bus_publish_route_sink_is_one_trace(platform, spans) -> None:
    platform.register_schema("orders-value", ORDER_SCHEMA)
    platform.bus.create_topic("orders")
    platform.producer("/shop").publish("orders", Event(type="order.created", source="/shop",
                                                       data={"id": 7, "amount": 120.5}))
    routes = "routes:\n  - name: big\n    match: {data: {amount: {gte: 100}}}\n    to: orders.big\n"
    _route_and_sink(platform, "orders", "orders.big", "warehouse.big_orders", routes, lambda e: e.data)

    chain = [_by_name(spans, n) for n in ("publish orders", "process orders", "publish orders.big",
                                          "process orders.big", "UPSERT warehouse.big_orders")]
    _assert_chain(chain)
    assert chain[0].parent is None  # the producer started the trace
    assert chain[-1].attributes["db.system.name"] == "duckdb"
    assert chain[1].attributes["messaging.consumer.group.name"] == "router"
    assert chain[3].attributes["messaging.consumer.group.name"] == "sink"
    rows = platform.session("alice").sql("SELECT id, amount FROM warehouse.big_orders").to_pylist()
    assert rows == [{"id": 7, "amount": 120.5}]


def test_trace_context_crosses_nats(platform, spans, nats_url) -> None:  # noqa: F811
    import uuid

    from headwater.events.bus.nats import NatsBus
    from headwater.events.producer import Producer

    bus = NatsBus(nats_url, subject_prefix=f"t{uuid.uuid4().hex[:10]}", storage="memory")
    try:
        platform.register_schema("orders-value", ORDER_SCHEMA)
        bus.create_topic("orders")
        Producer(bus, platform.schema_registry, source="/shop").publish(
            "orders", Event(type="order.created", source="/shop", data={"id": 3, "amount": 500.0}))
        routes = "routes:\n  - name: all\n    match: {type: order.*}\n    to: orders.routed\n"
        _route_and_sink(platform, "orders", "orders.routed", "warehouse.nats_orders", routes, lambda e: e.data,
                        bus=bus)
    finally:
        for topic in bus.topics():
            bus.delete_topic(topic.name)
        bus.close()
    chain = [_by_name(spans, n) for n in ("publish orders", "process orders", "publish orders.routed",
                                          "process orders.routed", "UPSERT warehouse.nats_orders")]
    _assert_chain(chain)
    assert {s.attributes["messaging.system"] for s in chain[:4]} == {"nats"}


def test_sqlite_change_to_warehouse_row_is_one_trace(platform, spans) -> None:
    import contextlib
    import sqlite3

    from headwater.cdc.sqlite import SQLiteCDC

    session = platform.session("alice")
    session.write("app.items", [{"id": 1, "price": 1.5}], key="id")
    cdc = SQLiteCDC(platform.store("app"), bus=platform.bus, tables=["items"], snapshot=False)
    cdc.run(idle_timeout=0.1)  # installs the capture triggers
    with contextlib.closing(sqlite3.connect(platform.store("app").path, isolation_level=None)) as con:
        con.execute("INSERT INTO items (id, price) VALUES (2, 250.0)")
    spans.clear()
    assert cdc.run(idle_timeout=0.1) == 1
    topic = cdc.topic_of("items")
    routes = "routes:\n  - name: changes\n    match: {type: io.headwater.cdc.change}\n    to: changes.items\n"
    _route_and_sink(platform, topic, "changes.items", "warehouse.items", routes,
                    lambda e: {"id": e.data["after"]["id"], "price": e.data["after"]["price"]})
    chain = [_by_name(spans, n) for n in (f"publish {topic}", f"process {topic}", "publish changes.items",
                                          "process changes.items", "UPSERT warehouse.items")]
    _assert_chain(chain)
    assert chain[0].parent is None
    assert session.sql("SELECT id, price FROM warehouse.items").to_pylist() == [{"id": 2, "price": 250.0}]


@pytest.mark.postgres
def test_postgres_change_to_warehouse_row_is_one_trace(platform, spans, cdc_dsn, names) -> None:  # noqa: F811
    from headwater.cdc import PostgresCDC

    t = names.table
    sql(cdc_dsn, f'CREATE TABLE public."{t}" (id int PRIMARY KEY, amount numeric(10,2))')
    bus = platform.bus
    cdc = PostgresCDC(cdc_dsn, slot=names.slot, publication=names.publication, tables=[t], bus=bus,
                      snapshot=False, heartbeat_interval=0.5)
    thread = threading.Thread(target=cdc.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while cdc.status()["state"] != "streaming":
            assert time.monotonic() < deadline, "CDC did not start streaming"
            time.sleep(0.05)
        sql(cdc_dsn, f'INSERT INTO public."{t}" VALUES (1, 250.00)')
        while cdc.status()["events"] < 1:
            assert time.monotonic() < deadline + 20, "the change was not published"
            time.sleep(0.05)
    finally:
        cdc.stop()
        thread.join(10)
    topic = f"cdc.app.public.{t}"
    routes = (f"routes:\n  - name: changes\n    match: {{type: io.headwater.cdc.change}}\n"
              f"    to: changes.{t}\n")
    _route_and_sink(platform, topic, f"changes.{t}", f"warehouse.{t}", routes,
                    lambda e: {"id": e.data["after"]["id"], "amount": float(e.data["after"]["amount"])})

    chain = [_by_name(spans, n) for n in (f"publish {topic}", f"process {topic}", f"publish changes.{t}",
                                          f"process changes.{t}", f"UPSERT warehouse.{t}")]
    _assert_chain(chain)
    assert chain[0].parent is None and chain[0].attributes["messaging.system"] == "headwater"
    rows = platform.session("alice").sql(f"SELECT id, amount FROM warehouse.{t}").to_pylist()
    assert rows == [{"id": 1, "amount": 250.0}]
