"""Issue 14 (events) through the SDK on the embedded platform: schema registration and
declassification grants, reserved topics, provenance, sealing, dead letters, the governed bus."""

from __future__ import annotations

import json
import uuid

import pytest

from headwater.errors import AccessDenied, InvalidInput
from headwater.events.acl import subject_topic
from headwater.events.consumer import EventConsumer
from headwater.events.envelope import Event
from headwater.events.provenance import Provenance
from headwater.events.registry import declassified
from headwater.subject_keys import is_sealed
from tests.events.fix_governance import CUSTOMERS, ORDER_SCHEMA, governed_platform, pipeline


@pytest.fixture
def gp(tmp_path):
    platform = governed_platform(tmp_path / "hw")
    yield platform
    platform.close()


def _schema(**changes):
    doc = json.loads(json.dumps(ORDER_SCHEMA))
    for path, value in changes.items():
        node = doc["properties"]
        *parents, leaf = path.split("__")
        for p in parents:
            node = node[p]
        if value is None:
            node.pop(leaf, None)
        else:
            node[leaf] = value
    return doc


# -- schema registry ------------------------------------------------------------------------------
def test_registering_needs_register_on_the_subjects_topic(gp) -> None:
    text = json.dumps(ORDER_SCHEMA)
    assert gp.register_schema("orders.placed-value", text, principal="bob") > 0
    for who, subject in (("bob", "payments-value"), ("mallory", "orders.placed-value"),
                         ("carol", "orders.placed-key")):
        with pytest.raises(AccessDenied):
            gp.register_schema(subject, text, principal=who)
    assert "payments-value" not in gp.schema_registry.subjects()
    # Subjects outside TopicNameStrategy are authorised as a topic of their own name.
    with pytest.raises(AccessDenied):
        gp.register_schema("com.example.Order", text, principal="bob")
    assert subject_topic("com.example.Order") == "com.example.Order"
    assert subject_topic("orders.placed-value") == subject_topic("orders.placed-key") == "orders.placed"
    assert gp.audit.query(actor="mallory", action="topic_register")[0].decision == "deny"


@pytest.mark.parametrize("change", [
    {"email__x-pii": None},  # the classification dropped
    {"email__x-pii": "none"},  # declared not personal
    {"note__x-pii": "internal"},  # another tag
    {"email": None},  # the field gone (open content would let it through unsealed)
])
def test_weakening_a_classification_needs_declassify(gp, change) -> None:
    gp.register_schema("orders.placed-value", json.dumps(ORDER_SCHEMA), principal="bob")
    weaker = json.dumps(_schema(**{k: v for k, v in change.items()}))
    with pytest.raises(AccessDenied) as err:
        gp.register_schema("orders.placed-value", weaker, principal="bob")
    assert "declassify" in str(err.value) and "weakens" in str(err.value)
    assert gp.schema_registry.versions("orders.placed-value") == [1]  # nothing stored
    assert gp.register_schema("orders.placed-value", weaker, principal="alice") > 0
    assert gp.schema_registry.versions("orders.placed-value") == [1, 2]
    record = gp.audit.query(actor="alice", action="schema_register", newest_first=True, limit=1)[0]
    assert record.extra["declassified"]


def test_annotations_count_as_classification_and_adding_pii_does_not(gp) -> None:
    gp.register_schema("orders.placed-value", json.dumps(ORDER_SCHEMA), principal="bob")
    stronger = _schema(amount={"type": "number", "x-pii": "financial"})
    assert gp.register_schema("orders.placed-value", json.dumps(stronger), principal="bob") > 0
    moved = dict(stronger, **{"x-erasure-subject": {"field": "order_id", "namespace": "shop.orders.id"}})
    with pytest.raises(AccessDenied):
        gp.register_schema("orders.placed-value", json.dumps(moved), principal="bob")
    assert declassified(ORDER_SCHEMA, "JSON", stronger, "JSON") == []


def test_cdc_subjects_are_the_connectors_only(gp) -> None:
    pipe = pipeline(gp)
    try:
        pipe.sync()
        subject = f"{pipe.topic_of('customers')}-value"
        current = gp.schema_registry.get_version(subject, "latest").schema
        stripped = current.replace('"x-pii":"email",', "").replace(',"x-pii":"email"', "")
        assert stripped != current
        with pytest.raises(AccessDenied) as err:
            gp.register_schema(subject, stripped, principal="alice")
        assert err.value.rule == "reserved-topic"
        with pytest.raises(AccessDenied):
            gp.register_schema("CDC.app.main.customers-value", stripped, principal="alice")
    finally:
        pipe.close()


# -- reserved topics and the governed bus ---------------------------------------------------------
def test_reserved_topics_hold_on_an_open_platform(tmp_path) -> None:
    platform = governed_platform(tmp_path / "open", policy=False)
    try:
        platform.bus.create_topic("cdc.app.main.customers")
        with pytest.raises(AccessDenied) as err:
            platform.producer(principal="anyone").send("cdc.app.main.customers", {}, type="x")
        assert err.value.rule == "reserved-topic"
        platform.register_schema("orders.placed-value", json.dumps(ORDER_SCHEMA), principal="anyone")
        platform.bus.create_topic("orders.placed")
        platform.producer(principal="anyone").send("orders.placed", {"order_id": 1, "customer_id": 1, "amount": 1.0},
                                                   type="order.placed")
    finally:
        platform.close()


def test_the_governed_bus_checks_admin_and_lists_granted_topics(gp) -> None:
    bus = gp.event_bus("olga")
    bus.create_topic("orders.refunds")
    with pytest.raises(AccessDenied):
        bus.create_topic("payments")
    gp.bus.create_topic("payments")
    assert [t.name for t in bus.topics()] == ["orders.refunds"]
    assert [t.name for t in gp.event_bus("mallory").topics()] == []
    with pytest.raises(AccessDenied):
        gp.event_bus("bob").delete_topic("orders.refunds")
    with pytest.raises(AccessDenied) as err:
        gp.consumer("orders.refunds", "hw-cdc-anything", principal="bob")
    assert err.value.rule == "system-group"
    bus.delete_topic("orders.refunds")
    assert "orders.refunds" not in [t.name for t in gp.bus.topics()]


def test_an_uncatalogued_cdc_topic_is_not_consumed_under_a_policy(gp) -> None:
    gp.bus.create_topic("cdc.app.main.secrets")
    with pytest.raises(AccessDenied) as err:
        gp.consumer("cdc.app.main.secrets", "g1", principal="alice")
    assert err.value.rule == "uncatalogued-source"


# -- provenance -----------------------------------------------------------------------------------
def test_provenance_signs_the_exact_bytes_for_one_topic() -> None:
    p = Provenance(b"k" * 32)
    raw = Event(type="t", source="/s", data={"a": 1}).to_json()
    signed = p.sign("cdc.app.main.t", raw)
    assert p.verify("cdc.app.main.t", signed)
    assert Event.from_json(signed).extensions["hwsig"]
    assert not p.verify("cdc.app.main.other", signed)  # copied to another topic
    assert not p.verify("cdc.app.main.t", signed.replace(b'"a":1', b'"a":2'))
    assert not p.verify("cdc.app.main.t", raw)
    assert not Provenance(b"x" * 32).verify("cdc.app.main.t", signed)
    assert not p.verify("cdc.app.main.t", signed[:-3] + b'x"}')
    with pytest.raises(InvalidInput):
        Provenance(b"short")


# -- sealing --------------------------------------------------------------------------------------
def _order(c: dict) -> dict:
    return {"order_id": c["id"], "customer_id": c["id"], "email": c["email"], "note": "vip", "amount": 1.5}


def test_pii_fields_are_sealed_under_the_declared_subject_and_opened_for_consumers(gp) -> None:
    gp.register_schema("orders.placed-value", json.dumps(ORDER_SCHEMA), principal="alice")
    gp.bus.create_topic("orders.placed")
    gp.producer(principal="bob").send("orders.placed", _order(CUSTOMERS[0]), type="order.placed")
    gp.producer().send("orders.placed", _order(CUSTOMERS[1]), type="order.placed")  # the platform's own
    raw = gp.bus.subscribe("orders.placed", "raw")
    stored = [m.event().data for m in raw.fetch(10, timeout=2)]
    raw.close()
    assert len(stored) == 2
    for data in stored:
        assert is_sealed(data["email"]) and is_sealed(data["note"]) and data["amount"] == 1.5
    ctx = gp.event_governance.sealer.open(stored[0]["email"])
    assert (ctx.topic, ctx.field, ctx.value) == ("orders.placed", "email", CUSTOMERS[0]["email"])
    consumer = gp.consumer("orders.placed", "g", principal="bob")
    opened = [m.event().data for m in consumer.fetch(10, timeout=2)]
    consumer.close()
    assert [d["email"] for d in opened] == [CUSTOMERS[0]["email"], CUSTOMERS[1]["email"]]
    # a schema id of another subject cannot be used to skip the classification
    gp.register_schema("orders.plain-value", json.dumps({"type": "object"}), principal="alice")
    plain_id = gp.schema_registry.get_version("orders.plain-value", "latest").id
    gp.producer(principal="bob").publish("orders.placed", Event(type="order.placed", source="/x",
                                                                 data=_order(CUSTOMERS[2]), schemaid=plain_id))
    raw = gp.bus.subscribe("orders.placed", "raw")
    last = raw.fetch(10, timeout=2)[-1].event()
    raw.close()
    assert is_sealed(last.data["email"]) and last.schemaid != plain_id


def test_a_sealed_value_is_no_decryption_oracle(gp) -> None:
    """bob cannot consume payments; copying its sealed value into a topic he may consume does
    not make it open for him."""
    gp.register_schema("payments-value", json.dumps(ORDER_SCHEMA), principal="alice")
    gp.bus.create_topic("payments")
    gp.producer(principal="alice").send("payments", _order(CUSTOMERS[0]), type="paid")
    raw = gp.bus.subscribe("payments", "raw")
    sealed = raw.fetch(1, timeout=2)[0].event().data["email"]
    raw.close()
    gp.register_schema("orders.copy-value", json.dumps({"type": "object"}), principal="alice")
    gp.bus.create_topic("orders.copy")
    gp.producer(principal="bob").send("orders.copy", {"stolen": sealed}, type="copy")
    consumer = gp.consumer("orders.copy", "g", principal="bob")
    got = consumer.fetch(1, timeout=2)[0].event().data
    consumer.close()
    assert got["stolen"] == sealed
    admin = gp.consumer("orders.copy", "g2", principal="alice")  # may consume payments: opens
    assert admin.fetch(1, timeout=2)[0].event().data["stolen"] == CUSTOMERS[0]["email"]
    admin.close()


def test_validating_consumers_accept_the_sealed_form(gp) -> None:
    avro = {"type": "record", "name": "Order", "fields": [
        {"name": "order_id", "type": "long"}, {"name": "email", "type": "string", "x-pii": "email"},
        {"name": "age", "type": "int", "x-pii": "age"}]}
    gp.register_schema("orders.avro-value", json.dumps(avro), "AVRO", principal="alice")
    gp.register_schema("orders.placed-value", json.dumps(ORDER_SCHEMA), principal="alice")
    for t in ("orders.avro", "orders.placed"):
        gp.bus.create_topic(t)
    gp.producer(principal="bob").send("orders.avro", {"order_id": 1, "email": "a@b.example", "age": 41}, type="o")
    gp.producer(principal="bob").send("orders.placed", _order(CUSTOMERS[0]), type="o")
    for topic in ("orders.avro", "orders.placed"):
        seen = []
        consumer = EventConsumer(gp.bus, topic, f"v-{uuid.uuid4().hex[:6]}", seen.append,
                                 dead_letters=gp.dead_letters, validator=gp.event_governance.validator)
        stats = consumer.run(max_messages=1, idle_timeout=3)
        consumer.close()
        assert stats.handled == 1 and stats.dead_lettered == 0, topic
        assert is_sealed(seen[0].data["email"])


# -- dead letters ---------------------------------------------------------------------------------
def test_dead_letters_need_admin_on_their_topic(gp) -> None:
    for topic in ("orders.placed", "cdc.app.main.customers"):
        gp.bus.create_topic(topic)
        event = Event(type="x", source="/s", data={"n": topic})
        gp.dead_letters.add(event.to_json(), stage="handle", error=("ValueError", "boom"), attempts=1,
                            consumer_group="g", topic=topic, partition=0, offset=0, event=event)
    olga = gp.event_governance.dead_letters("olga")
    mine = olga.list()
    assert [d.reason.topic for d in mine] == ["orders.placed"]
    assert olga.get(mine[0].id).id == mine[0].id
    other = gp.dead_letters.list(topic="cdc.app.main.customers")[0]
    with pytest.raises(AccessDenied):
        olga.get(other.id)
    with pytest.raises(AccessDenied):
        olga.list(topic="cdc.app.main.customers")
    with pytest.raises(AccessDenied):
        gp.event_governance.dead_letters("bob").get(mine[0].id)
    with pytest.raises(AccessDenied) as err:  # moved into a reserved topic: refused
        gp.replay_dead_letters(principal="alice", to_topic="cdc.app.main.customers", ids=[mine[0].id])
    assert err.value.rule == "reserved-topic"
    report = gp.replay_dead_letters(principal="olga")
    assert [o.topic for o in report.outcomes] == ["orders.placed"]
    assert gp.dead_letters.get(other.id).status == "dead"


def test_dataset_sinks_write_opened_values_of_their_topic(gp) -> None:
    from headwater.events.sink import DatasetSink, sink_consumer

    gp.register_schema("orders.placed-value", json.dumps(ORDER_SCHEMA), principal="alice")
    gp.bus.create_topic("orders.placed")
    producer = gp.producer(principal="bob")
    for c in CUSTOMERS[:3]:
        producer.send("orders.placed", _order(c), type="order.placed")
    gp.subject_keys.shred("app.customers.id", 1)
    sink = DatasetSink(gp.session("alice"), "warehouse.orders_sink", key="order_id")
    consumer = sink_consumer(gp.bus, "orders.placed", "sink", sink, dead_letters=gp.dead_letters)
    assert consumer.run(max_messages=3, idle_timeout=3).handled == 3
    consumer.close()
    rows = gp.session("alice").sql("SELECT order_id, email FROM warehouse.orders_sink ORDER BY order_id").to_pylist()
    assert rows == [{"order_id": 1, "email": None}, {"order_id": 2, "email": CUSTOMERS[1]["email"]},
                    {"order_id": 3, "email": CUSTOMERS[2]["email"]}]
