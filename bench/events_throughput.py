"""Event bus throughput: publish-and-consume with schema validation and acks.

* **embedded** -- the SQLite log: a producer (JSON Schema validation, ``publish_many`` batches
  of 1,000) in this process while a consumer process (``fetch`` 1,000, parse every envelope,
  ``ack_many``) drains the topic; events/s = events / wall time from the first publish to the
  last ack. Goal: >= 20,000 events/s.
* **nats** -- the same events through :class:`NatsBus` (producer with validation, durable
  pull consumer, explicit acks) against raw nats-py moving the same events in the same run:
  the same CloudEvents JSON built with ``json.dumps`` and the same ``Nats-Msg-Id`` header,
  ``publish_async`` in batches of 1,000 with every ack awaited, a durable pull consumer
  ``fetch`` + ``ack`` + flush per batch, ``json.loads`` of each message; no schema
  validation. Raw and Headwater alternate. Ratio = Headwater events/s / raw events/s; goal
  >= 0.7.

NATS comes from ``HEADWATER_BENCH_NATS_URL`` (default ``nats://127.0.0.1:4222``); the NATS
part is skipped when it does not answer.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import multiprocessing as mp
import os
import socket
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as c  # noqa: E402

NATS_URL = os.environ.get("HEADWATER_BENCH_NATS_URL", "nats://127.0.0.1:4222")
N_EMBEDDED = c.sized(100_000, 20_000)
N_NATS = c.sized(20_000, 5_000)
BATCH = 1000
REPEATS = c.sized(3, 1)
SCHEMA = {
    "type": "object",
    "properties": {
        "order_id": {"type": "integer"},
        "customer": {"type": "string"},
        "amount": {"type": "number", "minimum": 0},
        "currency": {"type": "string", "enum": ["EUR", "USD", "GBP"]},
    },
    "required": ["order_id", "amount", "currency"],
}


def _payloads(n: int) -> list[dict]:
    return [
        {"order_id": i, "customer": f"c{i % 997}", "amount": round(i * 0.37, 2), "currency": "EUR"}
        for i in range(n)
    ]


def _registry(tmpdir: str):
    import sqlalchemy as sa

    from headwater.events.registry import SchemaRegistry

    engine = sa.create_engine(f"sqlite:///{tmpdir}/registry.db")
    reg = SchemaRegistry(engine, create_tables=True)
    reg.register("orders-value", SCHEMA)
    return reg


def _events(payloads: list[dict]):
    from headwater.events.envelope import Event

    return [Event(type="order.created", source="/bench", subject=f"o{p['order_id']}", data=p) for p in payloads]


# -- embedded ----------------------------------------------------------------------------
def _embedded_consumer(path: str, n: int, ready, done) -> None:
    from headwater.events.bus.embedded import EmbeddedBus

    bus = EmbeddedBus(path)
    consumer = bus.subscribe("orders", "bench")
    ready.set()
    got = 0
    while got < n:
        msgs = consumer.fetch(BATCH, timeout=1.0)
        for m in msgs:
            m.event()
        consumer.ack_many(msgs)
        got += len(msgs)
    done.put(time.perf_counter())
    consumer.close()
    bus.close()


def run_embedded(n: int) -> dict:
    from headwater.events.bus.embedded import EmbeddedBus
    from headwater.events.producer import Producer

    results = []
    for _ in range(REPEATS):
        with tempfile.TemporaryDirectory() as tmp:
            path = f"{tmp}/events.db"
            bus = EmbeddedBus(path)
            bus.create_topic("orders", 4)
            producer = Producer(bus, _registry(tmp), source="/bench")
            payloads = _payloads(n)
            ctx = mp.get_context("spawn")
            ready, done = ctx.Event(), ctx.Queue()
            proc = ctx.Process(target=_embedded_consumer, args=(path, n, ready, done))
            proc.start()
            ready.wait(60)
            t0 = time.perf_counter()
            for i in range(0, n, BATCH):
                producer.publish_many("orders", _events(payloads[i : i + BATCH]))
            t_pub = time.perf_counter() - t0
            t_end = done.get(timeout=600)
            proc.join(30)
            wall = t_end - t0
            results.append({"wall_s": round(wall, 4), "publish_s": round(t_pub, 4), "events_per_s": round(n / wall)})
            bus.close()
    best = max(r["events_per_s"] for r in results)
    med = c.median([r["events_per_s"] for r in results])
    return {"events": n, "runs": results, "median_events_per_s": round(med), "best_events_per_s": best}


# -- nats ---------------------------------------------------------------------------------
def nats_reason() -> str | None:
    try:
        import nats  # noqa: F401
    except ImportError:
        return "nats-py is not installed (pip install nats-py)"
    u = urlparse(NATS_URL)
    try:
        with socket.create_connection((u.hostname or "127.0.0.1", u.port or 4222), timeout=2):
            return None
    except OSError as err:
        return f"NATS at {NATS_URL} is unreachable ({err})"


def _raw_nats_round(payloads: list[dict]) -> float:
    """Raw nats-py: the same events published (acks awaited per batch) and consumed."""
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig

    async def go() -> float:
        nc = await nats.connect(NATS_URL)
        js = nc.jetstream()
        stream = f"RAW_{uuid.uuid4().hex[:8]}"
        subj = stream.lower()
        await js.add_stream(name=stream, subjects=[f"{subj}.*"], storage="memory")
        t0 = time.perf_counter()
        for i in range(0, len(payloads), BATCH):
            futs = []
            for j in range(i, min(i + BATCH, len(payloads))):
                # the same CloudEvents JSON, with the same de-duplication header
                event_id = os.urandom(16).hex()
                doc = {"specversion": "1.0", "id": event_id, "source": "/bench",
                       "type": "order.created", "time": dt.datetime.now(dt.UTC).isoformat(),
                       "datacontenttype": "application/json", "subject": f"o{j}",
                       "data": payloads[j]}
                body = json.dumps(doc, separators=(",", ":")).encode()
                futs.append(await js.publish_async(f"{subj}.{j % 4}", body, headers={"Nats-Msg-Id": event_id}))
            await asyncio.gather(*futs)
        sub = await js.pull_subscribe(
            f"{subj}.*", durable="raw", stream=stream,
            config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, max_ack_pending=100_000),
        )
        got = 0
        while got < len(payloads):
            msgs = await sub.fetch(BATCH, timeout=2)
            for m in msgs:
                json.loads(m.data)
                await m.ack()
            await nc.flush()
            got += len(msgs)
        elapsed = time.perf_counter() - t0
        await js.delete_stream(stream)
        await nc.close()
        return elapsed

    return asyncio.run(go())


def _hw_nats_round(payloads: list[dict], registry) -> float:
    from headwater.events.bus.nats import NatsBus
    from headwater.events.producer import Producer

    bus = NatsBus(NATS_URL, subject_prefix=f"b{uuid.uuid4().hex[:8]}", storage="memory")
    try:
        bus.create_topic("orders", 4)
        producer = Producer(bus, registry, source="/bench")
        t0 = time.perf_counter()
        events = _events(payloads)  # building the events is timed, as on the raw side
        for i in range(0, len(events), BATCH):
            producer.publish_many("orders", events[i : i + BATCH])
        consumer = bus.subscribe("orders", "bench")
        got = 0
        while got < len(events):
            msgs = consumer.fetch(BATCH, timeout=2)
            for m in msgs:
                m.event()
            consumer.ack_many(msgs)
            got += len(msgs)
        elapsed = time.perf_counter() - t0
        consumer.close()
        return elapsed
    finally:
        for t in bus.topics():
            bus.delete_topic(t.name)
        bus.close()


def run_nats(n: int) -> tuple[dict | None, dict | None, float | None, str | None]:
    reason = nats_reason()
    if reason:
        return None, None, None, reason
    payloads = _payloads(n)
    with tempfile.TemporaryDirectory() as tmp:
        registry = _registry(tmp)
        raw_t, hw_t = c.measure_pair(
            lambda: _raw_nats_round(payloads), lambda: _hw_nats_round(payloads, registry),
            warmup=1, repeats=REPEATS,
        )
    raw_eps, hw_eps = n / c.median(raw_t), n / c.median(hw_t)
    raw = {**c.summary(raw_t), "events_per_s": round(raw_eps)}
    hw = {**c.summary(hw_t), "events_per_s": round(hw_eps)}
    return raw, hw, hw_eps / raw_eps, None


def run() -> dict:
    print(f"  embedded: {N_EMBEDDED:,} events, publish_many/fetch/ack_many batches of {BATCH}", flush=True)
    embedded = run_embedded(N_EMBEDDED)
    eps = embedded["median_events_per_s"]
    print(f"  embedded: {eps:,} events/s (median of {REPEATS}; goal >= 20,000)", flush=True)
    print(f"  nats: {N_NATS:,} events, Headwater vs raw nats-py", flush=True)
    raw, hw, ratio, skipped = run_nats(N_NATS)
    if skipped:
        print(f"  nats: SKIP ({skipped})")
    else:
        print(
            f"  nats: raw {raw['events_per_s']:,}/s, Headwater {hw['events_per_s']:,}/s, "
            f"ratio {ratio:.2f} (goal >= 0.7)",
            flush=True,
        )
    passed = eps >= 20_000 and (ratio is None or ratio >= 0.7)
    return c.write_result(
        "events_throughput",
        parameters={"events_embedded": N_EMBEDDED, "events_nats": N_NATS, "batch": BATCH,
                    "repeats": REPEATS, "partitions": 4, "validation": "JSON Schema",
                    "nats_url": NATS_URL},
        raw=raw,
        headwater=hw,
        ratio=ratio,
        goal={"embedded_events_per_s": 20_000, "nats_ratio_min": 0.7},
        passed=passed,
        extra={"embedded": embedded, "nats_skipped": skipped,
               "ratio_definition": "Headwater events/s / raw nats-py events/s (publish+consume+ack)"},
    )


if __name__ == "__main__":
    doc = run()
    print(c.verdict(doc["passed"]))
