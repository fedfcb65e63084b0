"""Issue 14 (events) through HTTP: publish and consume routes, dead letters and the Confluent
registry API, governed by topic grants (RFC 9457 problems; Confluent 40301 on registry paths)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.events.fix_governance import CUSTOMERS, ORDER_SCHEMA, governed_platform, pipeline
from tests.service.conftest import serve


@dataclass
class Gov:
    platform: object
    url: str
    topic: str
    keys: dict[str, tuple[str, str]] = field(default_factory=dict)

    def client(self, who: str) -> httpx.Client:
        key_id, secret = self.keys[who]
        return httpx.Client(base_url=self.url, timeout=30, auth=(key_id, secret))


@pytest.fixture(scope="module")
def gov(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gov]:
    platform = governed_platform(Path(tmp_path_factory.mktemp("evgov")) / "hw")
    pipe = pipeline(platform)
    pipe.sync()
    out = Gov(platform, "", pipe.topic_of("customers"))
    pipe.close()
    for who in ("alice", "bob", "carol", "olga", "mallory"):
        key = platform.create_api_key(who)
        out.keys[who] = (key.key_id, key.secret)
    with serve(platform) as server:
        out.url = server.base_url
        yield out
    platform.close()


def test_publish_needs_a_grant_and_never_reaches_a_cdc_topic(gov: Gov) -> None:
    gov.platform.register_schema("orders.placed-value", json.dumps(ORDER_SCHEMA), principal="alice")
    gov.platform.bus.create_topic("orders.placed")
    body = {"type": "order.placed", "data": {"order_id": 1, "customer_id": 2, "email": CUSTOMERS[1]["email"],
                                             "amount": 3.0}}
    with gov.client("bob") as bob, gov.client("alice") as alice, gov.client("mallory") as mallory:
        ok = bob.post("/v1/events/orders.placed", json=body)
        denied = mallory.post("/v1/events/orders.placed", json=body)
        reserved = alice.post(f"/v1/events/{gov.topic}", json={"type": "io.headwater.cdc.change", "data": {
            "before": None, "after": {"id": 99}, "op": "c", "source": {"lsn": 10**12, "pos": 0}}})
    assert ok.status_code == 201, ok.text
    assert denied.status_code == 403 and denied.json()["code"] == "AccessDenied"
    assert reserved.status_code == 403 and "reserved" in reserved.json()["detail"]
    raw = gov.platform.bus.subscribe("orders.placed", "raw-http")
    stored = raw.fetch(10, timeout=2)[0].value
    raw.close()
    assert CUSTOMERS[1]["email"].encode() not in stored and b"hwenc:v1:" in stored


def test_consume_applies_the_dataset_column_rules(gov: Gov) -> None:
    def consume(who: str, **params: object) -> httpx.Response:
        with gov.client(who) as c:
            return c.get(f"/v1/events/{gov.topic}", params={"max": 100, "timeout": 2, **params})

    alice, bob, carol = (consume(w, group=f"h-{w}") for w in ("alice", "bob", "carol"))
    assert alice.status_code == bob.status_code == carol.status_code == 200, bob.text

    def rows(resp: httpx.Response) -> dict[int, dict]:
        return {e["data"]["after"]["id"]: e["data"]["after"] for e in resp.json()["events"]
                if e["type"] == "io.headwater.cdc.change"}

    assert rows(alice) == {c["id"]: c for c in CUSTOMERS}
    assert all(r["email"].startswith("***@") and "ssn" not in r for r in rows(bob).values())
    assert set(rows(carol)) == {c["id"] for c in CUSTOMERS if c["country"] in ("DE", "FR")}
    mallory = consume("mallory")
    system = consume("alice", group="hw-cdc-steal")
    assert mallory.status_code == 403 and mallory.json()["code"] == "AccessDenied"
    assert system.status_code == 403
    assert "Traceback" not in mallory.text


def test_dead_letters_need_admin_on_their_topic(gov: Gov) -> None:
    raw = gov.platform.bus.subscribe(gov.topic, "raw-dl")
    msg = next(m for m in raw.fetch(20, timeout=2) if b'"op":"r"' in m.value)
    raw.close()
    letter = gov.platform.dead_letters.add(msg.value, stage="sink", error=("WriteError", "x"), attempts=1,
                                           consumer_group="g", topic=gov.topic, partition=0, offset=msg.offset)
    with gov.client("bob") as bob, gov.client("alice") as alice, gov.client("olga") as olga:
        assert bob.get(f"/v1/dead-letters/{letter.id}").status_code == 403
        assert letter.id not in [d["id"] for d in olga.get("/v1/dead-letters").json()]
        shown = alice.get(f"/v1/dead-letters/{letter.id}")
        moved = alice.post("/v1/dead-letters/replay", json={"ids": [letter.id], "to_topic": "cdc.app.main.other"})
    assert shown.status_code == 200 and "hwenc:v1:" in shown.json()["value"]
    assert not any(c["ssn"] in shown.text or c["email"] in shown.text for c in CUSTOMERS)
    assert moved.status_code == 403


def test_registry_api_registration_and_declassification_need_grants(gov: Gov) -> None:
    body = {"schema": json.dumps(ORDER_SCHEMA), "schemaType": "JSON"}
    weaker = json.loads(json.dumps(ORDER_SCHEMA))
    weaker["properties"]["email"]["x-pii"] = "none"
    weak_body = {"schema": json.dumps(weaker), "schemaType": "JSON"}
    cdc_subject = f"{gov.topic}-value"
    with gov.client("bob") as bob, gov.client("alice") as alice, gov.client("olga") as olga:
        assert bob.post("/subjects/orders.refunds-value/versions", json=body).status_code == 200
        for client, path, payload in [
            (bob, "/subjects/orders.refunds-value/versions", weak_body),  # declassify
            (bob, "/subjects/payments-value/versions", body),  # no register grant
            (alice, f"/subjects/{cdc_subject}/versions", body),  # reserved
            (bob, "/subjects/orders.refunds-value", None),  # delete: admin on the topic
        ]:
            resp = client.request("DELETE" if payload is None else "POST", path, json=payload)
            assert (resp.status_code, resp.json()["error_code"]) == (403, 40301), path
            assert resp.headers["content-type"].startswith("application/vnd.schemaregistry.v1+json")
        assert alice.post("/subjects/orders.refunds-value/versions", json=weak_body).status_code == 200
        assert olga.put("/config/orders.refunds-value", json={"compatibility": "NONE"}).status_code == 200
        assert olga.delete("/subjects/orders.refunds-value").json() == [1, 2]
        assert olga.put("/config", json={"compatibility": "NONE"}).status_code == 403  # global: admin role
    denied = gov.platform.audit.query(actor="bob", action="schema_register")
    assert any(r.decision == "deny" for r in denied)
