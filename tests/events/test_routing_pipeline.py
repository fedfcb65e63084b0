"""Routing rules: loading, matching, fan-out, projection, masking, and a routing consumer."""

from __future__ import annotations

import pytest

from headwater.events.bus import EmbeddedBus, RoutingError
from headwater.events.dlq import DeadLetterStore, Stage
from headwater.events.envelope import Event
from headwater.events.producer import Producer, SchemaValidator
from headwater.events.routing import MASK, Router, load_routes, router_consumer

RULES = """
routes:
  - name: big-eu
    match:
      type: order.*
      source: /shop/*
      data:
        currency: EUR
        amount: {gte: 100}
    to: [orders.big, audit]
    project: [order_id, amount, customer.email]
    mask: true
  - name: everything
    match: {type: "order.*"}
    to: orders.all
  - name: vip
    match:
      subject: "vip-*"
      data: {customer.tier: {in: [gold, platinum]}}
    to: vip
    stop: true
  - name: never-after-vip
    match: {subject: "vip-*"}
    to: nowhere
"""

SCHEMA = {
    "type": "object",
    "properties": {
        "order_id": {"type": "integer"},
        "amount": {"type": "number"},
        "currency": {"type": "string"},
        "customer": {
            "type": "object",
            "properties": {
                "email": {"type": "string", "x-pii": "email"},
                "tier": {"type": "string", "x-pii": "none"},
            },
        },
    },
}


def order(amount, currency="EUR", subject="o1", tier="basic", type="order.created"):
    return Event(
        type=type, source="/shop/web", subject=subject,
        data={"order_id": 1, "amount": amount, "currency": currency,
              "customer": {"email": "a@example.com", "tier": tier}},
    )


def test_fan_out_project_and_mask(platform):
    registry = platform.meta.schema_registry()
    schema_id = registry.register("orders-value", SCHEMA)
    router = Router(RULES, validator=SchemaValidator(registry))
    ev = order(150).with_(schemaid=schema_id)
    routed = router.route(ev)
    assert [t for t, _ in routed] == ["orders.big", "audit", "orders.all"]
    big = routed[0][1]
    assert big.data == {"order_id": 1, "amount": 150, "customer": {"email": MASK}}
    assert big.id == ev.id and big.schemaid is None and "masked" in big.classification
    assert routed[2][1] is ev  # untouched copy keeps its schema id
    assert [t for t, _ in router.route(order(50))] == ["orders.all"]
    assert [t for t, _ in router.route(order(500, currency="USD"))] == ["orders.all"]
    assert router.route(order(500, type="payment.done")) == []


def test_stop_and_payload_operators():
    router = Router(RULES)
    vip = order(10, subject="vip-7", tier="gold")
    assert [t for t, _ in router.route(vip)] == ["orders.all", "vip"]
    plain = order(10, subject="vip-8", tier="basic")
    assert [t for t, _ in router.route(plain)] == ["orders.all", "nowhere"]


def test_mask_by_tag_and_extra_classified_paths():
    router = Router(load_routes({"routes": [
        {"name": "m", "match": {}, "to": "t", "mask": ["email"],
         "classified": {"customer.email": "email", "currency": "internal"}},
    ]}))
    [(_, out)] = router.route(order(1))
    assert out.data["customer"]["email"] == MASK and out.data["currency"] == "EUR"


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("routes: [", "not valid YAML"),
        ("rules: []", "top-level 'routes:'"),
        ("routes: [{name: a}]", "'to'"),
        ("routes: [{name: a, to: t, match: {data: {x: {between: 1}}}}]", "unknown operator"),
        ("routes: [{name: a, to: t, match: {colour: red}}]", "cannot match on"),
        ("routes: [{name: a, to: t}, {name: a, to: u}]", "defined twice"),
        ("routes: [{name: a, to: t, mask: maybe}]", "'mask'"),
        ("routes: [{name: a, to: t, extra: 1}]", "unknown key"),
    ],
)
def test_bad_rules(text, fragment):
    with pytest.raises(RoutingError) as info:
        load_routes(text)
    assert fragment in str(info.value)


def test_router_consumer_routes_and_dead_letters(tmp_path, platform):
    bus = EmbeddedBus(tmp_path / "events.db")
    for t in ("orders", "orders.big", "audit", "orders.all"):
        bus.create_topic(t)
    registry = platform.meta.schema_registry()
    registry.register("orders-value", SCHEMA)
    Producer(bus, registry).publish_many("orders", [order(150), order(20)])
    bus.publish("orders", Event(type="order.created", source="/shop/web", data=[1, 2]))  # cannot be projected
    dlq = DeadLetterStore.for_platform(platform)
    rules = load_routes(RULES)[:1] + load_routes(
        "routes: [{name: all, match: {type: 'order.*'}, to: orders.all, project: [order_id]}]"
    )
    c = router_consumer(bus, "orders", "router", Router(rules, validator=SchemaValidator(registry)),
                        dead_letters=dlq)
    stats = c.run(max_messages=3, idle_timeout=3)
    assert stats.handled == 2 and stats.dead_lettered == 1
    [dl] = dlq.list()
    assert dl.reason.stage is Stage.ROUTE and dl.reason.error_class == "RoutingError"
    counts = {t.name: t.messages for t in bus.topics()}
    assert counts == {"orders": 3, "orders.big": 1, "audit": 1, "orders.all": 2}
    c.close()
    bus.close()
