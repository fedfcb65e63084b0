"""Kafka bus via confluent-kafka (``pip install 'headwater[kafka]'``).

Mapping:

* a topic is a Kafka topic ``<topic_prefix><name>`` (names with characters Kafka refuses get a
  hash suffix), created with the AdminClient; partitions are chosen by this package's CRC32
  key hash (:func:`~headwater.events.bus.base.partition_for`), the same on every backend,
  and the key is stored as the Kafka record key;
* publishing uses one idempotent producer (``enable.idempotence``, ``acks=all``) per bus and
  waits for every delivery report before returning (``publish_many`` sends the batch, then
  waits once), so a returned :class:`PublishResult` is on the in-sync replicas;
* a consumer group is a Kafka consumer group (``enable.auto.commit=false``); each
  :class:`KafkaConsumer` is one member, owning whole partitions (Kafka's model: members share
  *partitions*, so a message waits for the member that owns its partition);
* offsets are Kafka offsets per partition; the group's committed offset is the oldest message
  still in flight, committed synchronously on every ack (``ack_many``: one commit).

**Redelivery (nack, ack wait, backoff, max deliveries).** Kafka has no per-message nack. This
backend keeps delivered, unacked messages in the member's memory and hands them out again
when their ack wait, backoff step or nack delay has passed -- no seek, no re-publish -- while
the committed offset stays at the oldest unacked message. Messages behind it in the same
partition keep flowing, so a poison message never blocks its partition. The alternatives
were rejected: seeking back re-reads (and re-delivers) everything after the failed message;
a retry topic changes the message's topic/offset and makes ``committed()`` and ``lag()``
span two topics. When a member dies or leaves, Kafka gives its partitions to another member,
which starts at the committed offset: the unacked messages (and any acked ones above them)
are delivered again -- at-least-once.

Delivery counts survive that hand-over in the committed offset's *metadata* (JSON: the
highest offset handed out and the count of each in-flight message delivered more than once;
written on every fetch -- asynchronously -- and on every ack, synchronously). A member that picks up a partition counts every message
below that mark as delivered before, so ``max_deliveries`` holds even for a message that
crashes its consumer each time. Brokers that drop commit metadata (the ``tansu`` test broker
does) restart the count at 1 after a hand-over; see :attr:`KafkaBus.commit_metadata`.

``lag()`` is the high watermark minus the group's position: for partitions this member owns,
``high - handed out + in flight``; for the others, ``high - committed``.

Synchronous API; a member runs a background thread that polls Kafka (serving rebalances and
heartbeats even while the application is not fetching) into a bounded buffer. Every call on
the underlying consumer runs on that thread (confluent-kafka blocks a second thread that
calls the consumer while the first is polling): an ack's synchronous commit waits for the
thread's next turn (``consume`` blocks for at most 2 ms), a fetch's metadata commit is queued
without waiting.

Latency settings (override with ``consumer_config`` / ``producer_config``):
``fetch.wait.max.ms=10`` -- an empty fetch waits at most 10 ms on the broker; librdkafka's
default (500 ms) put ~140 ms at p50 on brokers that hold a fetch for the whole wait (tansu);
raise it for many idle consumers on a real cluster (it only bounds idle fetches there).
``linger.ms=2`` on the producer, which waits for the delivery reports of each
``publish_many`` batch anyway. On assignment a member hands librdkafka the start offsets it
has just read (committed, else the watermark of ``start``), so fetching begins at once
instead of after librdkafka's own offset look-ups (~100 ms of stalled partitions). confluent-kafka
is imported lazily; its exceptions are translated to :class:`BusUnavailable` /
:class:`EventBusError` and never leak.
"""

from __future__ import annotations

import hashlib
import json
import queue
import re
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from headwater.errors import InvalidInput, MissingDependency
from headwater.events.bus.base import (
    Capabilities,
    Message,
    PublishResult,
    SubscriptionOptions,
    TopicInfo,
    default_key,
    partition_for,
    split_batch,
)
from headwater.events.bus.errors import BusUnavailable, EventBusError, EventTooLarge, TopicNotFound
from headwater.events.envelope import MAX_EVENT_BYTES

if TYPE_CHECKING:
    from headwater.events.envelope import Event

__all__ = ["KafkaBus", "KafkaConsumer"]

_SAFE = re.compile(r"[^A-Za-z0-9._-]")
_BUFFER = 50_000
"""Messages a member prefetches before pausing its partitions (a resume after a pause
re-fetches from the broker, which costs a fetch wait: keep pauses rare)."""
_POLL_S = 0.002
"""How long the polling thread blocks in ``consume()`` before serving queued commands (an
ack's commit waits for it: half of this on average)."""
_META_ENTRIES = 100
"""Delivery counts kept in a commit's metadata (Kafka allows 4 KiB by default)."""


def _import_kafka() -> Any:
    try:
        import confluent_kafka
        import confluent_kafka.admin  # noqa: F401
    except ImportError:
        raise MissingDependency(
            "the Kafka bus needs confluent-kafka: pip install 'headwater[kafka]'",
            package="confluent-kafka",
        ) from None
    return confluent_kafka


def _token(name: str) -> str:
    safe = _SAFE.sub("_", name)
    if safe != name:
        safe += "_" + hashlib.sha1(name.encode()).hexdigest()[:8]
    return safe


def _translate(ck: Any, err: BaseException, what: str) -> EventBusError:
    if isinstance(err, EventBusError):
        return err
    kerr = err.args[0] if isinstance(err, ck.KafkaException) and err.args else None
    if isinstance(kerr, ck.KafkaError):
        transient = kerr.retriable() or kerr.code() in (
            ck.KafkaError._TRANSPORT,
            ck.KafkaError._ALL_BROKERS_DOWN,
            ck.KafkaError._TIMED_OUT,
            ck.KafkaError._MSG_TIMED_OUT,
            ck.KafkaError.REQUEST_TIMED_OUT,
        )
        if transient:
            return BusUnavailable(f"Kafka unavailable during {what}: {kerr.name()}")
        return EventBusError(f"Kafka error during {what}: {kerr.name()}: {kerr.str()}")
    return EventBusError(f"Kafka error during {what}: {type(err).__name__}: {err}")


class KafkaBus:
    """A bus on the Kafka cluster at ``bootstrap`` (``"127.0.0.1:9092"``, comma-separated).

    ``topic_prefix`` namespaces topics and group ids (tests use a random one);
    ``replication`` applies to topics this bus creates; ``timeout`` bounds each request
    (seconds). ``producer_config`` / ``consumer_config`` are extra librdkafka settings.
    """

    capabilities: Capabilities

    def __init__(
        self,
        bootstrap: str,
        *,
        topic_prefix: str = "",
        replication: int = 1,
        timeout: float = 10.0,
        max_event_bytes: int = MAX_EVENT_BYTES,
        producer_config: dict[str, Any] | None = None,
        consumer_config: dict[str, Any] | None = None,
    ) -> None:
        self._ck = ck = _import_kafka()
        self.bootstrap = bootstrap
        self.prefix = topic_prefix
        self.replication = replication
        self.timeout = timeout
        self.commit_metadata = True
        """Delivery counts travel in commit metadata (see the module doc)."""
        self.capabilities = Capabilities(
            backend="kafka",
            durable=True,
            partitions=True,
            consumer_groups=True,
            nack_delay=True,
            redelivery_backoff=True,
            publish_dedup=False,  # idempotence drops producer *retries*, not re-published events
            lag=True,
            partition_offsets=True,
            max_event_bytes=max_event_bytes,
        )
        base = {"bootstrap.servers": bootstrap, "log_level": 3}
        self._consumer_config = {**base, **(consumer_config or {})}
        self._admin = ck.admin.AdminClient(base)
        self._producer = ck.Producer(
            {
                **base,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 2,
                "message.max.bytes": max_event_bytes + 64 * 1024,
                "message.timeout.ms": int(timeout * 1000 * 3),
                **(producer_config or {}),
            }
        )
        self._meta: Any = None  # a consumer used for watermarks and group offsets
        self._meta_lock = threading.Lock()
        self._partitions: dict[str, int] = {}
        self._consumers: weakref.WeakSet[KafkaConsumer] = weakref.WeakSet()
        self._closed = False

    def __repr__(self) -> str:
        return f"KafkaBus(bootstrap={self.bootstrap!r}, topic_prefix={self.prefix!r})"

    def _name(self, topic: str) -> str:
        return self.prefix + _token(topic)

    def _check(self) -> None:
        if self._closed:
            raise EventBusError("the bus is closed")

    def _metadata(self) -> Any:
        # Always the full listing: asking for one topic auto-creates it on some brokers
        # (tansu does, whatever the request's allow_auto_topic_creation says).
        self._check()
        try:
            return self._admin.list_topics(timeout=self.timeout)
        except Exception as err:  # noqa: BLE001 - translated at the boundary
            raise _translate(self._ck, err, "metadata") from None

    # -- topics ------------------------------------------------------------------------------
    def create_topic(self, name: str, partitions: int = 1) -> TopicInfo:
        """Create the topic (an existing one is kept, partition count included)."""
        if not isinstance(name, str) or not name:
            raise InvalidInput("topic name must be a non-empty string")
        if not isinstance(partitions, int) or not 1 <= partitions <= 1024:
            raise InvalidInput("partitions must be an integer from 1 to 1024")
        ck = self._ck
        real = self._name(name)
        self._check()
        futures = self._admin.create_topics(
            [ck.admin.NewTopic(real, partitions, self.replication)], request_timeout=self.timeout
        )
        try:
            futures[real].result(self.timeout)
        except ck.KafkaException as err:
            if err.args[0].code() != ck.KafkaError.TOPIC_ALREADY_EXISTS:
                raise _translate(ck, err, "create_topic") from None
        except Exception as err:  # noqa: BLE001
            raise _translate(ck, err, "create_topic") from None
        deadline = time.monotonic() + self.timeout
        while True:  # metadata catches up with the creation
            info = self._metadata().topics.get(real)
            if info is not None and info.error is None and info.partitions:
                n = len(info.partitions)
                break
            if time.monotonic() > deadline:
                raise BusUnavailable(f"topic {name!r} did not appear in the metadata in time")
            time.sleep(0.05)
        self._partitions[name] = n
        return TopicInfo(name, n)

    def topics(self) -> list[TopicInfo]:
        """Topics under this bus's prefix (internal ``__`` topics excluded)."""
        out = []
        for real, info in self._metadata().topics.items():
            if real.startswith("__") or not real.startswith(self.prefix) or info.error is not None:
                continue
            out.append(TopicInfo(real[len(self.prefix) :], len(info.partitions)))
        return sorted(out, key=lambda t: t.name)

    def delete_topic(self, name: str) -> None:
        """Delete the topic (its groups' committed offsets go with it on Kafka >= 2.x)."""
        ck = self._ck
        real = self._name(name)
        info = self._metadata().topics.get(real)
        if info is None or info.error is not None:
            raise TopicNotFound(f"no topic named {name!r}", topic=name)
        futures = self._admin.delete_topics([real], request_timeout=self.timeout)
        try:
            futures[real].result(self.timeout)
        except ck.KafkaException as err:
            if err.args[0].code() == ck.KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise TopicNotFound(f"no topic named {name!r}", topic=name) from None
            raise _translate(ck, err, "delete_topic") from None
        self._partitions.pop(name, None)

    def _partition_count(self, topic: str) -> int:
        n = self._partitions.get(topic)
        if n is None:
            real = self._name(topic)
            info = self._metadata().topics.get(real)
            if info is None or info.error is not None or not info.partitions:
                raise TopicNotFound(
                    f"no topic named {topic!r}; create it with create_topic()", topic=topic
                )
            n = self._partitions[topic] = len(info.partitions)
        return n

    # -- publish -----------------------------------------------------------------------------
    def publish(self, topic: str, event: Event, key: str | None = None) -> PublishResult:
        """Publish one event and wait for its delivery report (acks=all)."""
        return self.publish_many(topic, [(event, default_key(event, key))])[0]

    def publish_many(
        self, topic: str, events: Iterable[Event | tuple[Event, str | None]]
    ) -> list[PublishResult]:
        """Send a batch, then wait once for every delivery report.

        Not atomic: on an error some events may be stored (re-publishing is at-least-once;
        consumers and sinks de-duplicate by event id)."""
        limit = self.capabilities.max_event_bytes
        encoded = [(key, ev.to_json(max_bytes=limit), None) for ev, key in split_batch(events)]
        return self._send(topic, encoded)

    def publish_raw(
        self, topic: str, value: bytes, key: str | None = None, *, msg_id: str | None = None
    ) -> PublishResult:
        """Publish bytes as they are; ``msg_id`` travels as header ``hw-msg-id`` (Kafka has
        no broker de-duplication of re-published messages)."""
        limit = self.capabilities.max_event_bytes
        if len(value) > limit:
            raise EventTooLarge(
                f"message is {len(value)} bytes; the limit is {limit}", size=len(value), limit=limit
            )
        return self._send(topic, [(key, value, msg_id)])[0]

    def _send(
        self, topic: str, encoded: list[tuple[str | None, bytes, str | None]]
    ) -> list[PublishResult]:
        if not encoded:
            return []
        self._check()
        ck = self._ck
        n = self._partition_count(topic)
        real = self._name(topic)
        results: list[Any] = [None] * len(encoded)
        errors: list[Any] = []

        def report(i: int) -> Any:
            def cb(err: Any, msg: Any) -> None:
                if err is not None:
                    errors.append(err)
                else:
                    results[i] = PublishResult(topic, msg.partition(), msg.offset())

            return cb

        try:
            for i, (key, raw, msg_id) in enumerate(encoded):
                part = partition_for(key, n, i)
                while True:
                    try:
                        self._producer.produce(
                            real,
                            value=raw,
                            key=key.encode() if key is not None else None,
                            partition=part,
                            headers={"hw-msg-id": msg_id.encode()} if msg_id else None,
                            on_delivery=report(i),
                        )
                        break
                    except BufferError:  # local queue full: serve reports, then retry
                        self._producer.poll(0.05)
            deadline = time.monotonic() + self.timeout * 3
            while any(r is None for r in results) and not errors:
                if time.monotonic() > deadline:
                    raise BusUnavailable("Kafka did not acknowledge the publish in time")
                self._producer.flush(0.1)
        except EventBusError:
            raise
        except Exception as err:  # noqa: BLE001 - translated at the boundary
            raise _translate(ck, err, "publish") from None
        if errors:
            raise _translate(ck, ck.KafkaException(errors[0]), "publish")
        return results

    # -- groups ------------------------------------------------------------------------------
    def _meta_consumer(self) -> Any:
        with self._meta_lock:
            if self._meta is None:
                self._meta = self._ck.Consumer(
                    {**self._consumer_config, "group.id": f"hw-meta-{uuid.uuid4().hex[:8]}",
                     "enable.auto.commit": False}
                )
            return self._meta

    def _watermarks(self, topic: str, n: int) -> dict[int, tuple[int, int]]:
        c = self._meta_consumer()
        real = self._name(topic)
        tp = self._ck.TopicPartition
        try:
            return {p: c.get_watermark_offsets(tp(real, p), timeout=self.timeout, cached=False)
                    for p in range(n)}
        except Exception as err:  # noqa: BLE001
            raise _translate(self._ck, err, "watermarks") from None

    def _group_committed(self, consumer: Any, topic: str, n: int) -> dict[int, tuple[int, str | None]]:
        """Partition -> (committed offset or -1, metadata) for the consumer's group."""
        tp = self._ck.TopicPartition
        real = self._name(topic)
        try:
            got = consumer.committed([tp(real, p) for p in range(n)], timeout=self.timeout)
        except Exception as err:  # noqa: BLE001
            raise _translate(self._ck, err, "committed offsets") from None
        return {t.partition: (t.offset if t.offset >= 0 else -1, getattr(t, "metadata", None)) for t in got}

    def subscribe(
        self, topic: str, group: str, *, options: SubscriptionOptions | None = None
    ) -> KafkaConsumer:
        """Join consumer ``group`` and wait (up to ``3 * timeout``) for a partition assignment.

        ``options`` live in this member only (Kafka keeps no per-group settings); a new group
        with ``start="latest"`` has the current end offsets committed first, so events
        published after ``subscribe`` returns are delivered."""
        if not isinstance(group, str) or not group:
            raise InvalidInput("group name must be a non-empty string")
        opts = options or SubscriptionOptions()
        if opts.max_deliveries < 1 or opts.ack_wait <= 0:
            raise InvalidInput("max_deliveries must be >= 1 and ack_wait > 0")
        if opts.start not in ("earliest", "latest"):
            raise InvalidInput("start must be 'earliest' or 'latest'")
        n = self._partition_count(topic)
        self._check()
        ck = self._ck
        conf = {
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 500,
            "max.poll.interval.ms": 300_000,
            # a fetch with nothing new waits at most this long on the broker: brokers that hold
            # it for the whole wait (tansu) add up to this much to end-to-end latency
            "fetch.wait.max.ms": 10,
            **self._consumer_config,
            "group.id": self.prefix + group,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": opts.start,
        }
        try:
            raw = ck.Consumer(conf)
        except Exception as err:  # noqa: BLE001
            raise _translate(ck, err, "subscribe") from None
        try:
            if opts.start == "latest":
                committed = self._group_committed(raw, topic, n)
                missing = [p for p, (off, _) in committed.items() if off < 0]
                if missing:
                    marks = self._watermarks(topic, n)
                    raw.commit(
                        offsets=[ck.TopicPartition(self._name(topic), p, marks[p][1]) for p in missing],
                        asynchronous=False,
                    )
            consumer = KafkaConsumer(self, raw, topic, group, n, opts)
        except BaseException as err:
            raw.close()
            if isinstance(err, Exception) and not isinstance(err, EventBusError):
                raise _translate(ck, err, "subscribe") from None
            raise
        self._consumers.add(consumer)
        consumer._wait_assigned(self.timeout * 3)
        return consumer

    def close(self) -> None:
        """Close this bus's consumers, flush the producer and close the clients."""
        if self._closed:
            return
        for consumer in list(self._consumers):
            consumer.close()
        self._closed = True
        try:
            self._producer.flush(self.timeout)
        except Exception:  # noqa: BLE001, S110 - closing anyway
            pass
        with self._meta_lock:
            if self._meta is not None:
                try:
                    self._meta.close()
                except Exception:  # noqa: BLE001, S110
                    pass
                self._meta = None

    def __enter__(self) -> KafkaBus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class _Part:
    """What a member knows about one partition it owns."""

    epoch: int
    handed: int
    """Next offset never yet handed to the application."""
    seen_before: int = 0
    """Offsets below this were handed out by an earlier owner (from commit metadata)."""
    prior: dict[int, int] = field(default_factory=dict)
    """Offset -> deliveries by earlier owners (from commit metadata)."""
    inflight: dict[int, list[Any]] = field(default_factory=dict)
    """Offset -> [Message, deliveries, visible_at]."""
    dirty: bool = False

    def committed(self) -> int:
        return min(self.inflight) if self.inflight else self.handed


class KafkaConsumer:
    """One member of a Kafka consumer group (see :class:`KafkaBus` for the redelivery model)."""

    def __init__(
        self, bus: KafkaBus, raw: Any, topic: str, group: str, partitions: int,
        options: SubscriptionOptions,
    ) -> None:
        self.bus = bus
        self.topic = topic
        self.group = group
        self.options = options
        self._raw = raw
        self._real = bus._name(topic)
        self._n = partitions
        self._cond = threading.Condition()
        self._parts: dict[int, _Part] = {}
        self._ready: deque[Any] = deque()
        self._epoch = 0
        self._next_due = float("inf")
        """No in-flight message becomes visible again before this (monotonic) time."""
        self._assigned_once = threading.Event()
        self._paused = False
        self._stop = False
        self._closed = False
        self._error: BaseException | None = None
        self._cmds: queue.SimpleQueue[tuple[Any, list[Any], threading.Event]] = queue.SimpleQueue()
        raw.subscribe([self._real], on_assign=self._on_assign, on_revoke=self._on_revoke,
                      on_lost=self._on_revoke)
        self._thread = threading.Thread(target=self._loop, name=f"hw-kafka-{group}", daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        return f"KafkaConsumer(topic={self.topic!r}, group={self.group!r})"

    # -- background thread -------------------------------------------------------------------
    def _call(self, fn: Any, *, wait: bool = True) -> Any:
        """Run ``fn(raw)`` on the polling thread and return its result: confluent-kafka's
        consumer hangs when another thread commits while it is in ``consume()``.

        ``wait=False`` queues ``fn`` and returns None at once (commands run in order, so it
        still runs before any later command); its errors are dropped."""
        if threading.current_thread() is self._thread:
            return fn(self._raw)
        if self._stop:
            raise EventBusError("the consumer is closed")
        box: list[Any] = []
        done = threading.Event()
        self._cmds.put((fn, box, done))
        if not wait:
            return None
        if not done.wait(self.bus.timeout * 3):
            raise BusUnavailable("the Kafka consumer thread did not answer in time")
        ok, value = box[0]
        if ok:
            return value
        raise value

    def _run_cmds(self) -> None:
        while True:
            try:
                fn, box, done = self._cmds.get_nowait()
            except queue.Empty:
                return
            try:
                box.append((True, fn(self._raw)))
            except BaseException as err:  # noqa: BLE001 - handed to the caller
                box.append((False, err))
            done.set()

    def _on_assign(self, raw: Any, partitions: list[Any]) -> None:
        try:
            committed = self.bus._group_committed(raw, self.topic, self._n)
            marks = None
            with self._cond:
                self._epoch += 1
                for tp in partitions:
                    off, meta = committed.get(tp.partition, (-1, None))
                    if off < 0:
                        if marks is None:
                            marks = self.bus._watermarks(self.topic, self._n)
                        low, high = marks[tp.partition]
                        off = low if self.options.start == "earliest" else high
                    part = _Part(self._epoch, off)
                    if meta:
                        try:
                            doc = json.loads(meta)
                            part.seen_before = int(doc.get("f", 0))
                            part.prior = {int(k): int(v) for k, v in doc.get("d", {}).items()}
                        except (ValueError, TypeError, AttributeError):
                            pass
                    self._parts[tp.partition] = part
                    tp.offset = off
            # start fetching at the positions just read: left to itself librdkafka asks the
            # broker for them again (and resolves unset ones), ~100 ms before the first fetch
            raw.assign(partitions)
        except BaseException as err:  # noqa: BLE001 - reported by fetch
            self._error = err
        self._assigned_once.set()

    def _on_revoke(self, raw: Any, partitions: list[Any]) -> None:
        with self._cond:
            for tp in partitions:
                self._parts.pop(tp.partition, None)
            gone = {tp.partition for tp in partitions}
            self._ready = deque(m for m in self._ready if m.partition() not in gone)

    def _loop(self) -> None:
        ck = self.bus._ck
        while not self._stop:
            self._run_cmds()
            try:
                with self._cond:
                    full = len(self._ready) >= _BUFFER
                if full != self._paused:
                    assignment = self._raw.assignment()
                    if assignment:
                        (self._raw.pause if full else self._raw.resume)(assignment)
                    self._paused = full
                msgs = self._raw.consume(num_messages=500, timeout=_POLL_S)
            except Exception as err:  # noqa: BLE001
                if self._stop:
                    return
                self._error = err
                time.sleep(0.1)
                continue
            if not msgs:
                continue
            good = [m for m in msgs if m.error() is None]
            if len(good) != len(msgs):
                for m in msgs:
                    err = m.error()
                    if err is not None and err.code() != ck.KafkaError._PARTITION_EOF:
                        self._error = ck.KafkaException(err)
            if good:
                # stale messages (revoked partition, offset already handed out) are skipped
                # by _take, which checks each one against the partition's current state
                with self._cond:
                    self._ready.extend(good)
                    self._cond.notify_all()

    def _wait_assigned(self, timeout: float) -> None:
        self._assigned_once.wait(timeout)

    # -- the Consumer protocol ---------------------------------------------------------------
    def fetch(self, max_messages: int = 100, timeout: float = 1.0) -> list[Message]:
        """Up to ``max_messages`` deliveries (due redeliveries first); waits up to ``timeout``."""
        if self._closed:
            raise EventBusError("the consumer is closed")
        limit = max(1, int(max_messages))
        deadline = time.monotonic() + max(timeout, 0.0)
        with self._cond:
            while True:
                out, wake = self._take(limit)
                remaining = deadline - time.monotonic()
                if out or remaining <= 0:
                    break
                self._cond.wait(min(remaining, wake, 0.05))
            commits = self._dirty_offsets()
        if self._error is not None and not out:
            err, self._error = self._error, None
            raise _translate(self.bus._ck, err, "fetch")
        # the delivery counts go out asynchronously and this call does not wait for the
        # polling thread to send them (they are queued before any later ack's commit, so
        # they reach the coordinator first): a crash within that round trip loses one count
        self._commit(commits, wait=False)
        return out

    def _take(self, limit: int) -> tuple[list[Message], float]:
        """Due redeliveries, then new messages (caller holds the lock)."""
        now = time.monotonic()
        opts = self.options
        out: list[Message] = []
        wake = 1.0
        if self._next_due <= now:  # a lower bound of every in-flight visible_at
            next_due = float("inf")
            for pnum, part in self._parts.items():
                for off, entry in sorted(part.inflight.items()):
                    if len(out) >= limit:
                        next_due = now  # not all scanned: look again next time
                        break
                    msg, deliveries, visible_at = entry
                    if visible_at > now:
                        next_due = min(next_due, visible_at)
                        continue
                    if deliveries >= opts.max_deliveries:  # given up: the last was final
                        del part.inflight[off]
                        part.dirty = True
                        continue
                    deliveries += 1
                    entry[1], entry[2] = deliveries, now + opts.wait_for(deliveries)
                    next_due = min(next_due, entry[2])
                    again = Message(self.topic, pnum, off, msg.value, msg.key, deliveries, msg.handle)
                    entry[0] = again
                    part.dirty = True
                    out.append(again)
            self._next_due = next_due
        wake = min(wake, max(self._next_due - now, 0.0))
        ready, parts, topic = self._ready, self._parts, self.topic
        first_visible = now + opts.wait_for(1)
        while ready and len(out) < limit:
            raw = ready.popleft()
            pnum = raw.partition()
            part = parts.get(pnum)
            off = raw.offset()
            if part is None or off < part.handed:
                continue  # revoked meanwhile, or handed out already
            part.handed = off + 1
            part.dirty = True
            if off < part.seen_before:
                deliveries = part.prior.pop(off, 1) + 1
                if deliveries > opts.max_deliveries:
                    continue  # delivered max times by an earlier owner: given up
                visible_at = now + opts.wait_for(deliveries)
            else:
                deliveries, visible_at = 1, first_visible
            key = raw.key()
            msg = Message(
                topic, pnum, off, raw.value() or b"",
                key.decode("utf-8", "replace") if key is not None else None, deliveries,
                (part.epoch, raw),
            )
            part.inflight[off] = [msg, deliveries, visible_at]
            if visible_at < self._next_due:
                self._next_due = visible_at
            out.append(msg)
        return out, wake

    def _dirty_offsets(self) -> list[Any]:
        """Commit entries for partitions whose state changed (caller holds the lock)."""
        tp = self.bus._ck.TopicPartition
        out = []
        for pnum, part in self._parts.items():
            if not part.dirty:
                continue
            part.dirty = False
            counts = {str(o): e[1] for o, e in part.inflight.items() if e[1] > 1}
            if len(counts) > _META_ENTRIES:
                counts = dict(sorted(counts.items(), key=lambda kv: -kv[1])[:_META_ENTRIES])
            meta = json.dumps({"f": part.handed, "d": counts}, separators=(",", ":"))
            if self.bus.commit_metadata:
                out.append(tp(self._real, pnum, part.committed(), metadata=meta))
            else:
                out.append(tp(self._real, pnum, part.committed()))
        return out

    def _commit(self, offsets: list[Any], *, wait: bool = True) -> None:
        if not offsets:
            return
        ck = self.bus._ck
        if not wait:
            try:
                self._call(lambda raw: raw.commit(offsets=offsets, asynchronous=True), wait=False)
            except EventBusError:
                pass  # closed meanwhile: the next owner starts at the last synchronous commit
            return
        try:
            self._call(lambda raw: raw.commit(offsets=offsets, asynchronous=False))
        except ck.KafkaException as err:
            code = err.args[0].code() if err.args else None
            if code in (
                ck.KafkaError.REBALANCE_IN_PROGRESS,
                ck.KafkaError.ILLEGAL_GENERATION,
                ck.KafkaError.UNKNOWN_MEMBER_ID,
                ck.KafkaError._NO_OFFSET,
            ):
                return  # the partition moved: its new owner redelivers (at-least-once)
            raise _translate(ck, err, "commit") from None
        except Exception as err:  # noqa: BLE001
            raise _translate(ck, err, "commit") from None

    def ack(self, message: Message) -> None:
        """Ack one message (one synchronous offset commit)."""
        self.ack_many([message])

    def ack_many(self, messages: Sequence[Message]) -> None:
        """Ack a batch with one synchronous commit of the partitions it touched. Acks for
        partitions this member no longer owns are ignored (the new owner redelivers)."""
        if not messages:
            return
        with self._cond:
            for m in messages:
                part = self._parts.get(m.partition)
                if part is None or not isinstance(m.handle, tuple) or m.handle[0] != part.epoch:
                    continue
                if part.inflight.pop(m.offset, None) is not None:
                    part.dirty = True
            commits = self._dirty_offsets()
        self._commit(commits)

    def nack(self, message: Message, delay: float = 0.0) -> None:
        """Hand the message out again after ``delay`` seconds (kept in this member's memory;
        see the module doc)."""
        with self._cond:
            part = self._parts.get(message.partition)
            if part is None:
                return
            entry = part.inflight.get(message.offset)
            if entry is not None:
                entry[2] = time.monotonic() + max(delay, 0.0)
                self._next_due = min(self._next_due, entry[2])
                self._cond.notify_all()

    def committed(self) -> dict[int, int]:
        """Partition -> committed offset (this member's view for its partitions, the
        group's committed offset -- or the start position -- for the others)."""
        with self._cond:
            mine = {p: part.committed() for p, part in self._parts.items()}
        if len(mine) == self._n:
            return dict(sorted(mine.items()))
        others = self._call(lambda raw: self.bus._group_committed(raw, self.topic, self._n))
        marks = None
        out = {}
        for p in range(self._n):
            if p in mine:
                out[p] = mine[p]
                continue
            off = others.get(p, (-1, None))[0]
            if off < 0:
                marks = marks or self.bus._watermarks(self.topic, self._n)
                off = marks[p][0] if self.options.start == "earliest" else marks[p][1]
            out[p] = off
        return out

    def lag(self) -> dict[int, int]:
        """Partition -> messages published but not acked by the group."""
        marks = self.bus._watermarks(self.topic, self._n)
        with self._cond:
            mine = {p: (part.handed, len(part.inflight)) for p, part in self._parts.items()}
        committed = None
        out = {}
        for p in range(self._n):
            high = marks[p][1]
            if p in mine:
                handed, inflight = mine[p]
                out[p] = max(high - handed, 0) + inflight
            else:
                committed = committed or self.committed()
                out[p] = max(high - committed[p], 0)
        return out

    def close(self) -> None:
        """Leave the group: its partitions go to the other members, which start at the
        committed offsets (unacked messages are redelivered)."""
        if self._closed:
            return
        self._closed = True
        self._stop = True
        self._thread.join(timeout=10)
        while True:
            try:
                _, box, done = self._cmds.get_nowait()
            except queue.Empty:
                break
            box.append((False, EventBusError("the consumer is closed")))
            done.set()
        try:
            self._raw.close()
        except Exception:  # noqa: BLE001, S110 - leaving anyway
            pass

    def __enter__(self) -> KafkaConsumer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
