"""A governed platform for event-side tests: customers with PII tags, a policy with topic grants,
and helpers that read every byte a bus stores for a topic.

Roles of :data:`POLICY`:

* ``alice`` (admin): every dataset and every topic action;
* ``bob`` (analyst): reads app/warehouse with email masked and ssn denied; consumes ``orders.*``
  and ``cdc.app.*``; publishes and registers ``orders.*`` (no ``declassify``, no ``admin``);
* ``carol`` (support_eu): reads ``app.customers`` rows of her countries; consumes ``cdc.app.*``;
* ``olga`` (ops): ``admin`` on ``orders.*`` only (topics, dead letters, subject settings);
* ``cdc`` (service): writes the replicas of the CDC pipeline;
* anyone else (``mallory``): nothing.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

from headwater import Config, Platform

POLICY = """\
version: 1
roles:
  admin:
    grants:
      - {datasets: "*", actions: [select, insert, update, delete]}
      - {topics: "*", actions: [publish, consume, register, declassify, admin]}
  analyst:
    grants:
      - {datasets: ["app.*", "warehouse.*"], actions: [select]}
      - {topics: ["orders.*", "cdc.app.*"], actions: [consume]}
      - {topics: "orders.*", actions: [publish, register]}
    columns:
      - {tag: pii.email, mask: email_domain}
      - {tag: pii.ssn, deny: true}
  support_eu:
    grants:
      - {datasets: app.customers, actions: [select]}
      - {topics: "cdc.app.*", actions: [consume]}
    row_filters:
      - {datasets: app.customers, where: "country IN principal.countries"}
  ops:
    grants:
      - {topics: "orders.*", actions: [admin]}
  writer:
    grants:
      - {datasets: ["warehouse.*"], actions: [select, insert, update, delete]}
principals:
  alice: {roles: [admin]}
  bob: {roles: [analyst]}
  carol: {roles: [support_eu], attributes: {countries: [DE, FR]}}
  olga: {roles: [ops]}
  cdc: {roles: [writer], kind: service}
"""

CUSTOMERS = [
    {"id": i, "name": f"Person Number{i:03d}", "email": f"person{i:03d}@mail{i:03d}.example",
     "ssn": f"987-65-{4300 + i}", "country": ["DE", "US", "FR"][i % 3]}
    for i in range(1, 7)
]
TAGS = {"email": "pii.email", "ssn": "pii.ssn", "name": "pii.name"}
PII_COLUMNS = ("name", "email", "ssn")

ORDER_SCHEMA = {
    "type": "object",
    "x-erasure-subject": {"field": "customer_id", "namespace": "app.customers.id"},
    "properties": {
        "order_id": {"type": "integer"},
        "customer_id": {"type": "integer"},
        "email": {"type": "string", "x-pii": "email"},
        "note": {"type": "string", "x-pii": "free-text"},
        "amount": {"type": "number"},
    },
    "required": ["order_id", "customer_id", "amount"],
}


def governed_platform(directory: Path, bus_url: str | None = None, *, policy: bool = True) -> Platform:
    """An embedded platform (its bus at ``bus_url`` when given) with tagged customers and
    :data:`POLICY` applied (unless ``policy=False``)."""
    overrides: dict[str, Any] = {"platform_dir": str(directory)}
    if bus_url:
        overrides["events"] = {"bus": bus_url}
    platform = Platform.open(Config.load(None, overrides=overrides))
    platform.session("setup").write("app.customers", CUSTOMERS, key="id")
    for column, tag in TAGS.items():
        platform.catalog.set_tags("app.customers", column, [tag])
    if policy:
        platform.apply_policy(POLICY, source="test", applied_by="test")
    return platform


def pipeline(platform: Platform) -> Any:
    """A CDC pipeline app.customers -> warehouse.customers writing as ``cdc``."""
    from headwater.cdc import CDCPipeline

    return CDCPipeline(platform, tables=["customers"], name=f"t_{uuid.uuid4().hex[:10]}", principal="cdc")


def source_sql(platform: Platform, *statements: str) -> None:
    """Write to the SQLite source as an application would (captured by the triggers)."""
    with contextlib.closing(sqlite3.connect(platform.store("app").path, isolation_level=None)) as con:
        con.execute("BEGIN")
        for s in statements:
            con.execute(s)
        con.execute("COMMIT")


def replica(platform: Platform) -> list[dict[str, Any]]:
    """The live rows of warehouse.customers, as the admin sees them."""
    return platform.session("alice").sql(
        "SELECT id, name, email, ssn, country FROM warehouse.customers WHERE NOT _deleted ORDER BY id").to_pylist()


def values_of(row: dict[str, Any]) -> list[bytes]:
    """The PII values of a customer as they would appear in stored bytes (raw and JSON-escaped)."""
    out = []
    for c in PII_COLUMNS:
        v = str(row[c])
        out += [v.encode(), json.dumps(v).encode()[1:-1]]
    return out


# -- every byte a bus stores ------------------------------------------------------------------
def embedded_bytes(platform: Platform) -> bytes:
    """The embedded log's SQLite file with its WAL and shared memory file."""
    path = Path(platform.dir) / "events.db"
    return b"".join(p.read_bytes() for p in (path, path.with_name("events.db-wal"), path.with_name("events.db-shm"))
                    if p.exists())


NATS_STORE_DIR = Path("/var/lib/nats-server")


def nats_bytes(bus: Any, topic: str, marker: bytes) -> bytes:
    """The stream's files under the NATS server's store directory when readable and flushed
    (holding ``marker``), else every stored message read back through the raw client."""
    stream = bus._stream(topic)
    deadline = time.monotonic() + 15
    if NATS_STORE_DIR.is_dir():
        while time.monotonic() < deadline:
            files = [p for d in NATS_STORE_DIR.rglob(stream) if d.is_dir() for p in d.rglob("*") if p.is_file()]
            data = b"".join(p.read_bytes() for p in files)
            if marker in data:
                return data
            time.sleep(0.25)
    return nats_raw_messages(bus, topic)


def nats_raw_messages(bus: Any, topic: str) -> bytes:
    """Every message of the topic's stream, read by sequence with nats-py's JetStream API."""
    async def read() -> bytes:
        js = bus._nc.jetstream()
        info = await js.stream_info(bus._stream(topic))
        out = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            with contextlib.suppress(Exception):
                msg = await js.get_msg(bus._stream(topic), seq)
                out.append((msg.data or b"") + str(msg.headers or {}).encode())
        return b"".join(out)

    return bus._run(read())


def kafka_bytes(bootstrap: str, kafka_topic: str) -> bytes:
    """Every record (keys and values) of a Kafka topic, read from the beginning of each partition
    with a raw confluent-kafka consumer until nothing more arrives for 3 s (not by watermark:
    the tansu test broker reports stale ones)."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"scan-{uuid.uuid4().hex}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest", "log_level": 3})
    try:
        meta = c.list_topics(kafka_topic, timeout=10)
        c.assign([TopicPartition(kafka_topic, p, 0) for p in meta.topics[kafka_topic].partitions])
        out = []
        idle_since = time.monotonic()
        deadline = idle_since + 60
        while time.monotonic() - idle_since < 3 and time.monotonic() < deadline:
            got = [m for m in c.consume(500, timeout=0.5) if not m.error()]
            if got:
                idle_since = time.monotonic()
            out += [(m.key() or b"") + (m.value() or b"") for m in got]
        return b"".join(out)
    finally:
        c.close()
