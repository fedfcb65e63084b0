"""Issue 14 (events) on every bus: topic ACLs, forged CDC events, governed consumers, crypto-shredding.

Each test runs on the embedded log, NATS JetStream (file storage, so the server's store
directory can be scanned) and Kafka (tansu), through the SDK.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from headwater.cdc.base import CHANGE_TYPE, SNAPSHOT_TYPE
from headwater.errors import AccessDenied
from headwater.events.envelope import Event
from tests.events.bus.conftest import BACKENDS
from tests.events.fix_governance import (
    CUSTOMERS,
    ORDER_SCHEMA,
    embedded_bytes,
    governed_platform,
    kafka_bytes,
    nats_bytes,
    pipeline,
    replica,
    source_sql,
    values_of,
)


@pytest.fixture(params=BACKENDS)
def gov(request, tmp_path) -> Iterator[tuple[Any, str]]:
    """A governed platform whose bus is each backend in turn (its own namespace on a server)."""
    kind = request.param
    url = None
    if kind == "nats":
        url = f"{request.getfixturevalue('nats_url')}?prefix=g{uuid.uuid4().hex[:10]}&storage=file"
    elif kind == "kafka":
        url = f"kafka://{request.getfixturevalue('kafka_bootstrap')}?prefix=g{uuid.uuid4().hex[:10]}."
    platform = governed_platform(tmp_path / "hw", url)
    try:
        yield platform, kind
    finally:
        if kind != "embedded":
            for t in platform.bus.topics():
                with contextlib.suppress(Exception):
                    platform.bus.delete_topic(t.name)
        platform.close()


def _fetch_all(consumer: Any, want: int, rounds: int = 20) -> list[Any]:
    got: list[Any] = []
    for _ in range(rounds):
        batch = consumer.fetch(500, timeout=1.0)
        consumer.ack_many(batch)
        got += batch
        if len(got) >= want:
            break
    return got


def _changes(platform: Any, topic: str, who: str, want: int) -> list[dict[str, Any]]:
    """The governed ``after`` images of change events, as ``who`` consumes them."""
    consumer = platform.consumer(topic, f"g-{who}-{uuid.uuid4().hex[:6]}", principal=who)
    try:
        msgs = _fetch_all(consumer, want)
    finally:
        consumer.close()
    return [m.event().data["after"] for m in msgs if m.event().type == CHANGE_TYPE and m.event().data.get("after")]


def test_principals_publish_only_where_granted(gov) -> None:
    platform, _ = gov
    platform.register_schema("orders.placed-value", json.dumps(ORDER_SCHEMA), principal="alice")
    platform.register_schema("payments-value", json.dumps(ORDER_SCHEMA), principal="alice")
    for t in ("orders.placed", "payments"):
        platform.event_governance.create_topic("alice", t)
    order = {"order_id": 1, "customer_id": 1, "amount": 5.0}
    assert platform.producer(principal="bob").send("orders.placed", order, type="order.placed").topic == "orders.placed"
    for who, topic in (("bob", "payments"), ("mallory", "orders.placed"), ("carol", "orders.placed")):
        with pytest.raises(AccessDenied) as err:
            platform.producer(principal=who).send(topic, order, type="order.placed")
        assert err.value.rule == "default-deny"
    denied = platform.audit.query(actor="mallory", action="topic_publish")
    assert denied and denied[0].decision == "deny" and denied[0].extra["topic"] == "orders.placed"
    with pytest.raises(AccessDenied) as err:
        platform.event_bus("bob").publish_raw("orders.placed", b'{"not": "validated"}')
    assert err.value.rule == "raw-publish"


def test_forged_change_events_are_dead_lettered_never_applied(gov) -> None:
    platform, _ = gov
    pipe = pipeline(platform)
    try:
        assert pipe.sync()["applied"] == {"customers": len(CUSTOMERS)}
        applied = replica(platform)
        topic = pipe.topic_of("customers")
        # Through the governed door, no principal may write a CDC topic, whatever its grants.
        change = {"before": None, "after": {"id": 99, "name": "Eve", "email": "eve@evil.example", "ssn": None,
                                            "country": "DE"},
                  "source": {"lsn": 10**12, "pos": 0}, "op": "c", "ts_ms": 0}
        for who in ("alice", "bob"):
            with pytest.raises(AccessDenied) as err:
                platform.producer(principal=who).send(topic, change, type=CHANGE_TYPE, extensions={"pk": "id"})
            assert err.value.rule == "reserved-topic"
        # With raw bus access: an insert, a tombstone, a snapshot marker that would tombstone
        # every row, and a genuine event with its values changed (its signature kept).
        raw = platform.bus.subscribe(topic, f"scan-{uuid.uuid4().hex[:6]}")
        genuine = next(m.value for m in _fetch_all(raw, 1) if b'"op":"r"' in m.value)
        raw.close()
        tampered = genuine.replace(b'"country":"US"', b'"country":"XX"')
        assert tampered != genuine
        source = "/headwater/cdc/app"
        platform.bus.publish(topic, Event(type=CHANGE_TYPE, source=source, data=change, extensions={"pk": "id"}))
        platform.bus.publish(topic, Event(type=CHANGE_TYPE, source=source, extensions={"pk": "id"}, data={
            "before": {"id": 1}, "after": None, "source": {"lsn": 10**12, "pos": 1}, "op": "d", "ts_ms": 0}))
        platform.bus.publish(topic, Event(type=SNAPSHOT_TYPE, source=source, data={
            "snapshot": "completed", "lsn": 10**12, "rows": 0, "source": {"lsn": 10**12}}))
        platform.bus.publish_raw(topic, tampered)
        assert pipe.sync()["applied"] == {"customers": 0}
        assert replica(platform) == applied
        letters = platform.dead_letters.list(consumer_group=pipe.group)
        assert len(letters) == 4
        assert {(d.reason.stage.value, d.reason.error_class) for d in letters} == {("validate", "UnverifiedProducer")}
        assert len(platform.audit.query(action="cdc_reject")) == 4
        # Replaying them (bytes intact) changes nothing: they fail verification again.
        report = platform.replay_dead_letters(principal="alice", consumer_group=pipe.group)
        assert report.replayed == 4
        pipe.sync()
        assert replica(platform) == applied
        assert all(d.replay_count == 1 for d in platform.dead_letters.list(consumer_group=pipe.group))
        # The connector's own changes still flow.
        source_sql(platform, "UPDATE customers SET country = 'NL' WHERE id = 2")
        pipe.sync()
        assert next(r for r in replica(platform) if r["id"] == 2)["country"] == "NL"
    finally:
        pipe.close()


def test_consumers_of_a_cdc_topic_see_the_dataset_column_rules(gov) -> None:
    platform, _ = gov
    pipe = pipeline(platform)
    try:
        pipe.sync()
        topic = pipe.topic_of("customers")
        n = len(CUSTOMERS) + 1  # the rows and the end-of-snapshot marker
        admin = {r["id"]: r for r in _changes(platform, topic, "alice", n)}
        assert admin == {c["id"]: c for c in CUSTOMERS}
        bob = {r["id"]: r for r in _changes(platform, topic, "bob", n)}
        assert set(bob) == set(admin)
        for c in CUSTOMERS:
            assert bob[c["id"]]["email"] == "***@" + c["email"].split("@")[1]
            assert "ssn" not in bob[c["id"]] and bob[c["id"]]["name"] == c["name"]
        carol = _changes(platform, topic, "carol", n)
        assert sorted(r["id"] for r in carol) == sorted(c["id"] for c in CUSTOMERS if c["country"] in ("DE", "FR"))
        with pytest.raises(AccessDenied):
            platform.consumer(topic, "g-mallory", principal="mallory")
        with pytest.raises(AccessDenied) as err:
            platform.consumer(topic, pipe.group, principal="alice")  # the pipeline's own group
        assert err.value.rule == "system-group"
    finally:
        pipe.close()


def _stored(platform: Any, kind: str, topic: str, marker: bytes) -> bytes:
    bus = platform.bus
    if kind == "embedded":
        return embedded_bytes(platform)
    if kind == "nats":
        return nats_bytes(bus, topic, marker)
    return kafka_bytes(bus.bootstrap, bus._name(topic))


def test_shredding_a_subject_leaves_none_of_its_pii_in_any_topic(gov) -> None:
    platform, kind = gov
    pipe = pipeline(platform)
    try:
        pipe.sync()
        source_sql(platform, "UPDATE customers SET email = 'person001@moved.example' WHERE id = 1")
        pipe.sync()
        cdc_topic = pipe.topic_of("customers")
        # An application topic whose schema classifies fields and names the data subject.
        platform.register_schema("orders.placed-value", json.dumps(ORDER_SCHEMA), principal="alice")
        platform.event_governance.create_topic("alice", "orders.placed")
        producer = platform.producer(principal="bob")
        for c in CUSTOMERS:
            producer.send("orders.placed", {"order_id": c["id"], "customer_id": c["id"], "email": c["email"],
                                            "note": f"call {c['name']}", "amount": 9.5}, type="order.placed")
        # A dead letter of such an event keeps the sealed form.
        raw = platform.bus.subscribe("orders.placed", f"scan-{uuid.uuid4().hex[:6]}")
        msg = _fetch_all(raw, 1)[0]
        raw.close()
        letter = platform.dead_letters.add(msg.value, stage="handle", error=("ValueError", "boom"), attempts=1,
                                           consumer_group="g", topic="orders.placed", partition=msg.partition,
                                           offset=msg.offset)
        # Before: the subject's values are on the bus, sealed, and open for an allowed consumer.
        before = {r["id"]: r for r in _changes(platform, cdc_topic, "alice", 8)}
        assert before[1]["email"] == "person001@moved.example"

        assert platform.subject_keys.shred("app.customers.id", 1)

        secrets_ = [v for c in CUSTOMERS for v in values_of(c)] + [b"person001@moved.example"]
        for topic in (cdc_topic, "orders.placed"):
            stored = _stored(platform, kind, topic, b"hwenc:v1:")
            assert b"hwenc:v1:" in stored, f"{topic}: nothing sealed was read back"
            leaked = [v for v in secrets_ if v in stored]
            assert not leaked, f"{topic} stores {leaked[:3]}"
        assert b"hwenc:v1:" in letter.value and not [v for v in secrets_ if v in letter.value]
        # After: the subject's fields open to NULL; other subjects' still open.
        after = _changes(platform, cdc_topic, "alice", 8)
        assert all(r["email"] is None and r["name"] is None and r["ssn"] is None for r in after if r["id"] == 1)
        others = {r["id"]: r for r in after if r["id"] != 1}
        assert {i: (r["email"], r["ssn"]) for i, r in others.items()} == {
            c["id"]: (c["email"], c["ssn"]) for c in CUSTOMERS[1:]}
        consumer = platform.consumer("orders.placed", "g-orders", principal="alice")
        orders = {m.event().data["customer_id"]: m.event().data for m in _fetch_all(consumer, len(CUSTOMERS))}
        consumer.close()
        assert orders[1]["email"] is None and orders[1]["note"] is None
        assert orders[2]["email"] == CUSTOMERS[1]["email"] and orders[2]["note"] == f"call {CUSTOMERS[1]['name']}"
    finally:
        pipe.close()
