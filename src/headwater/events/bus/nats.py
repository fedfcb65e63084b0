"""NATS JetStream bus (``pip install nats-py``).

Mapping:

* a topic is a stream ``HW_<topic>`` on subjects ``hw.<topic>.<partition>``; the partition
  count is kept in the stream's description;
* a consumer group is a durable pull consumer (explicit acks, ``AckWait``, ``MaxDeliver``,
  ``BackOff``) filtering ``hw.<topic>.*``;
* every publish carries ``Nats-Msg-Id: <event id>``, so JetStream drops a re-published event
  within the stream's duplicate window (``duplicate_window``, default 2 minutes);
* offsets are stream sequence numbers (increasing across the whole topic, not per
  partition); ``committed()`` and ``lag()`` are reported for the whole topic under
  partition 0 (``capabilities.partition_offsets`` is False).

nats-py is asyncio; this module runs its event loop in a private daemon thread and exposes the
synchronous :class:`~headwater.events.bus.base.Bus` API. Each call waits for the loop with a
timeout; connection loss and timeouts raise :class:`BusUnavailable` (transient) and nats-py's
exceptions never leak. The client reconnects on its own after a server restart.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import threading
from collections.abc import Coroutine, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

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
from headwater.events.bus.errors import BusUnavailable, EventBusError, TopicNotFound
from headwater.events.envelope import MAX_EVENT_BYTES

if TYPE_CHECKING:
    from headwater.events.envelope import Event

__all__ = ["NatsBus", "NatsConsumer"]

T = TypeVar("T")
_SAFE = re.compile(r"[^A-Za-z0-9_-]")
_DESC = "headwater topic partitions="


def _import_nats() -> Any:
    try:
        import nats
        import nats.errors
        import nats.js.api
        import nats.js.errors
    except ImportError:
        raise MissingDependency(
            "the NATS bus needs nats-py: pip install nats-py", package="nats-py"
        ) from None
    return nats


def _token(name: str) -> str:
    """A stream/consumer-safe token for ``name`` (a hash suffix keeps mangled names unique)."""
    safe = _SAFE.sub("_", name)
    if safe != name:
        safe += "_" + hashlib.sha1(name.encode()).hexdigest()[:8]
    return safe


class NatsBus:
    """A bus on a NATS JetStream server at ``url`` (``nats://127.0.0.1:4222``).

    ``timeout`` bounds each request (seconds); ``replicas`` and ``storage`` (``"file"`` or
    ``"memory"``) apply to streams this bus creates; ``subject_prefix`` namespaces subjects and
    stream names (tests use a random one).
    """

    def __init__(
        self,
        url: str = "nats://127.0.0.1:4222",
        *,
        timeout: float = 10.0,
        connect_timeout: float = 3.0,
        storage: str = "file",
        replicas: int = 1,
        duplicate_window: float = 120.0,
        subject_prefix: str = "hw",
        max_event_bytes: int = MAX_EVENT_BYTES,
    ) -> None:
        self._nats = _import_nats()
        if storage not in ("file", "memory"):
            raise InvalidInput("storage must be 'file' or 'memory'")
        self.url = url
        self.timeout = timeout
        self.storage = storage
        self.replicas = replicas
        self.duplicate_window = duplicate_window
        self.prefix = _token(subject_prefix)
        self.capabilities = Capabilities(
            backend="nats",
            publish_dedup=True,
            partition_offsets=False,
            max_event_bytes=max_event_bytes,
        )
        self._partitions: dict[str, int] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="headwater-nats", daemon=True
        )
        self._thread.start()
        self._closed = False
        try:
            self._nc = self._run(self._connect(connect_timeout), timeout=connect_timeout + 5)
        except BaseException:
            self._stop_loop()
            raise
        self._js = self._nc.jetstream(timeout=timeout)

    def __repr__(self) -> str:
        host = self.url.split("@")[-1]  # never show credentials
        return f"NatsBus(url={host!r})"

    # -- plumbing ----------------------------------------------------------------------------
    async def _connect(self, connect_timeout: float) -> Any:
        try:
            return await self._nats.connect(
                self.url,
                connect_timeout=connect_timeout,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
                allow_reconnect=True,
            )
        except Exception as err:  # noqa: BLE001 - translated at the boundary
            raise BusUnavailable(
                f"cannot connect to NATS at {self.url.split('@')[-1]}: {type(err).__name__}"
            ) from None

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        if self._closed:
            coro.close()
            raise EventBusError("the bus is closed")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout=timeout or self.timeout * 3)
        except TimeoutError:
            future.cancel()
            raise BusUnavailable("NATS did not answer in time") from None
        except (EventBusError, InvalidInput):
            raise
        except Exception as err:  # noqa: BLE001 - translated at the boundary
            raise _translate(self._nats, err) from None

    def _stream(self, topic: str) -> str:
        return f"{self.prefix.upper()}_{_token(topic)}"

    def _subject(self, topic: str, part: int | str) -> str:
        return f"{self.prefix}.{_token(topic)}.{part}"

    # -- topics ------------------------------------------------------------------------------
    def create_topic(self, name: str, partitions: int = 1) -> TopicInfo:
        """Create the topic's stream (an existing stream is kept, partition count included)."""
        if not isinstance(name, str) or not name:
            raise InvalidInput("topic name must be a non-empty string")
        if not isinstance(partitions, int) or not 1 <= partitions <= 1024:
            raise InvalidInput("partitions must be an integer from 1 to 1024")
        api = self._nats.js.api

        async def go() -> int:
            stream = self._stream(name)
            try:
                info = await self._js.stream_info(stream)
                return _parts(info.config.description)
            except self._nats.js.errors.NotFoundError:
                pass
            await self._js.add_stream(
                api.StreamConfig(
                    name=stream,
                    subjects=[self._subject(name, "*")],
                    description=f"{_DESC}{partitions}",
                    storage=api.StorageType.FILE if self.storage == "file" else api.StorageType.MEMORY,
                    num_replicas=self.replicas,
                    duplicate_window=self.duplicate_window,
                    max_msg_size=self.capabilities.max_event_bytes,
                )
            )
            return partitions

        n = self._run(go())
        self._partitions[name] = n
        return TopicInfo(name, n)

    def topics(self) -> list[TopicInfo]:
        """Streams this bus's prefix owns, as topics (names as the stream's subjects give them)."""

        async def go() -> list[TopicInfo]:
            out = []
            for info in await self._js.streams_info():
                cfg = info.config
                if not (cfg.name or "").startswith(self.prefix.upper() + "_"):
                    continue
                if not (cfg.description or "").startswith(_DESC):
                    continue
                subject = (cfg.subjects or [""])[0]
                topic = subject[len(self.prefix) + 1 : -2]
                out.append(TopicInfo(topic, _parts(cfg.description), info.state.messages))
            return sorted(out, key=lambda t: t.name)

        return self._run(go())

    def delete_topic(self, name: str) -> None:
        """Delete the topic's stream and its consumers."""

        async def go() -> None:
            try:
                await self._js.delete_stream(self._stream(name))
            except self._nats.js.errors.NotFoundError:
                raise TopicNotFound(f"no topic named {name!r}", topic=name) from None

        self._run(go())
        self._partitions.pop(name, None)

    def _partition_count(self, topic: str) -> int:
        n = self._partitions.get(topic)
        if n is None:

            async def go() -> int:
                try:
                    info = await self._js.stream_info(self._stream(topic))
                except self._nats.js.errors.NotFoundError:
                    raise TopicNotFound(
                        f"no topic named {topic!r}; create it with create_topic()", topic=topic
                    ) from None
                return _parts(info.config.description)

            n = self._partitions[topic] = self._run(go())
        return n

    # -- publish -----------------------------------------------------------------------------
    def publish(self, topic: str, event: Event, key: str | None = None) -> PublishResult:
        """Publish one event and wait for JetStream's ack."""
        return self.publish_many(topic, [(event, default_key(event, key))])[0]

    def publish_many(
        self, topic: str, events: Iterable[Event | tuple[Event, str | None]]
    ) -> list[PublishResult]:
        """Publish a batch pipelined (async publishes, then every ack awaited).

        Not atomic: on an error some events may be stored; re-publishing the batch is safe
        within the duplicate window (``Nats-Msg-Id``)."""
        limit = self.capabilities.max_event_bytes
        encoded = [
            (ev.id, key, ev.to_json(max_bytes=limit), key == ev.subject or key == ev.id)
            for ev, key in split_batch(events)
        ]
        return self._publish_encoded(topic, encoded)

    def publish_raw(
        self, topic: str, value: bytes, key: str | None = None, *, msg_id: str | None = None
    ) -> PublishResult:
        """Publish bytes as they are (replays, tests of malformed input), de-duplicated by
        ``msg_id`` when given."""
        if len(value) > self.capabilities.max_event_bytes:
            from headwater.events.bus.errors import EventTooLarge

            raise EventTooLarge(
                f"message is {len(value)} bytes; the limit is {self.capabilities.max_event_bytes}",
                size=len(value),
                limit=self.capabilities.max_event_bytes,
            )
        return self._publish_encoded(topic, [(msg_id, key, value, False)])[0]

    def _publish_encoded(
        self, topic: str, encoded: list[tuple[str | None, str | None, bytes, bool]]
    ) -> list[PublishResult]:
        # A key that is the event's own subject or id (the default) is not sent: the
        # consumer side derives it from the event (Message.key is None then).
        if not encoded:
            return []
        n = self._partition_count(topic)

        subjects = [self._subject(topic, p) for p in range(n)]

        async def go() -> list[PublishResult]:
            futures = []
            parts = []
            for i, (msg_id, key, raw, implied) in enumerate(encoded):
                part = partition_for(key, n, i)
                parts.append(part)
                headers = {"Nats-Msg-Id": msg_id} if msg_id else None
                if key is not None and not implied:
                    headers = {**(headers or {}), "Hw-Key": key}
                futures.append(
                    await self._js.publish_async(subjects[part], raw, headers=headers)
                )
            acks = await asyncio.wait_for(asyncio.gather(*futures), timeout=self.timeout)
            return [
                PublishResult(topic, part, ack.seq, bool(ack.duplicate))
                for part, ack in zip(parts, acks, strict=True)
            ]

        return self._run(go())

    # -- consume -----------------------------------------------------------------------------
    def subscribe(
        self, topic: str, group: str, *, options: SubscriptionOptions | None = None
    ) -> NatsConsumer:
        """Bind to (creating or updating) the durable pull consumer ``group`` on the topic."""
        if not isinstance(group, str) or not group:
            raise InvalidInput("group name must be a non-empty string")
        opts = options or SubscriptionOptions()
        if opts.max_deliveries < 1 or opts.ack_wait <= 0:
            raise InvalidInput("max_deliveries must be >= 1 and ack_wait > 0")
        self._partition_count(topic)
        api = self._nats.js.api
        stream = self._stream(topic)
        durable = _token(group)
        backoff = list(opts.backoff) if opts.backoff else None
        if backoff and len(backoff) >= opts.max_deliveries:
            backoff = backoff[: max(opts.max_deliveries - 1, 1)]
            if len(backoff) >= opts.max_deliveries:
                backoff = None
        config = api.ConsumerConfig(
            durable_name=durable,
            name=durable,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=opts.ack_wait if not backoff else max(backoff),
            max_deliver=opts.max_deliveries,
            backoff=backoff,
            deliver_policy=api.DeliverPolicy.ALL if opts.start == "earliest" else api.DeliverPolicy.NEW,
            filter_subject=self._subject(topic, "*"),
            max_ack_pending=100_000,
        )

        async def go() -> Any:
            try:
                await self._js.consumer_info(stream, durable)
                if options is not None:
                    await self._js.add_consumer(stream, config=config)  # update in place
            except self._nats.js.errors.NotFoundError:
                await self._js.add_consumer(stream, config=config)
            return await self._js.pull_subscribe_bind(durable=durable, stream=stream)

        sub = self._run(go())
        return NatsConsumer(self, sub, topic, group, opts)

    def close(self) -> None:
        """Drain the connection and stop the loop thread."""
        if self._closed:
            return
        try:
            self._run(self._nc.close(), timeout=5)
        except EventBusError:
            pass
        self._closed = True
        self._stop_loop()

    def _stop_loop(self) -> None:
        self._closed = True
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def __enter__(self) -> NatsBus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class NatsConsumer:
    """A member of a consumer group: a pull subscription on the group's durable consumer."""

    def __init__(
        self, bus: NatsBus, sub: Any, topic: str, group: str, options: SubscriptionOptions
    ) -> None:
        self.bus = bus
        self.topic = topic
        self.group = group
        self.options = options
        self._sub = sub
        self._closed = False

    def __repr__(self) -> str:
        return f"NatsConsumer(topic={self.topic!r}, group={self.group!r})"

    def fetch(self, max_messages: int = 100, timeout: float = 1.0) -> list[Message]:
        """Up to ``max_messages`` deliveries; waits up to ``timeout`` s for the first."""
        if self._closed:
            raise EventBusError("the consumer is closed")
        nats = self.bus._nats
        timeout = max(timeout, 0.05)

        async def go() -> list[Any]:
            # nats-py's fetch can outlive its own timeout (seen with batch=1 after expired
            # pull requests); bound it, and treat the overrun as "nothing arrived".
            try:
                return await asyncio.wait_for(
                    self._sub.fetch(max(1, int(max_messages)), timeout=timeout),
                    timeout=timeout + 1.0,
                )
            except (TimeoutError, nats.errors.TimeoutError):
                return []

        msgs = self.bus._run(go(), timeout=timeout + self.bus.timeout)
        out = []
        for m in msgs:
            md = m.metadata
            part = m.subject.rsplit(".", 1)[-1]
            out.append(
                Message(
                    self.topic,
                    int(part) if part.isdigit() else 0,
                    md.sequence.stream,
                    m.data,
                    (m.headers or {}).get("Hw-Key"),
                    md.num_delivered,
                    m,
                )
            )
        return out

    def ack(self, message: Message) -> None:
        """Ack one message; the server has applied it when this returns."""
        self.ack_many([message])

    def ack_many(self, messages: Sequence[Message]) -> None:
        """Ack a batch; the last ack is a double ack, so the batch is settled on return.

        JetStream processes a consumer's acks in order, so waiting for the server's reply to
        the last one means every earlier ack has been applied too (a plain flush only proves
        the server received them, and ``consumer_info`` could still count them as pending).
        """
        # a message acked already (earlier, or twice in this batch) is skipped: acking is
        # idempotent on every backend, while nats-py refuses a second ack of one delivery
        handles: list[Any] = []
        seen: set[int] = set()
        for m in messages:
            h = m.handle
            if id(h) not in seen and not getattr(h, "_ackd", False):
                seen.add(id(h))
                handles.append(h)
        if not handles:
            return

        async def go() -> None:
            for h in handles[:-1]:
                await h.ack()
            await handles[-1].ack_sync(timeout=self.bus.timeout)

        self.bus._run(go())

    def nack(self, message: Message, delay: float = 0.0) -> None:
        """Negative-ack: JetStream redelivers after ``delay`` seconds."""
        self.bus._run(message.handle.nak(delay=delay if delay > 0 else None))

    def _info(self) -> Any:
        return self.bus._run(self._sub.consumer_info())

    def committed(self) -> dict[int, int]:
        """``{0: ack floor + 1}`` (stream sequence; the whole topic, see the module doc)."""
        info = self._info()
        return {0: info.ack_floor.stream_seq + 1}

    def lag(self) -> dict[int, int]:
        """``{0: pending + delivered-but-unacked}`` for the whole topic."""
        info = self._info()
        return {0: (info.num_pending or 0) + (info.num_ack_pending or 0)}

    def close(self) -> None:
        """Stop pulling; the durable consumer (the group's position) stays on the server."""
        if self._closed:
            return
        self._closed = True
        try:
            self.bus._run(self._sub.unsubscribe(), timeout=5)
        except EventBusError:
            pass

    def __enter__(self) -> NatsConsumer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _parts(description: str | None) -> int:
    if description and description.startswith(_DESC):
        try:
            return int(description[len(_DESC) :])
        except ValueError:
            pass
    return 1


def _translate(nats: Any, err: BaseException) -> EventBusError:
    if isinstance(err, nats.errors.TimeoutError | asyncio.TimeoutError):
        return BusUnavailable("NATS request timed out")
    if isinstance(
        err,
        nats.errors.ConnectionClosedError
        | nats.errors.NoServersError
        | nats.errors.ConnectionReconnectingError
        | nats.errors.StaleConnectionError
        | nats.errors.OutboundBufferLimitError
        | nats.errors.NoRespondersError
        | nats.js.errors.NoStreamResponseError
        | nats.js.errors.ServiceUnavailableError
        | nats.js.errors.ServerError,
    ):
        return BusUnavailable(f"NATS unavailable: {type(err).__name__}")
    if isinstance(err, nats.js.errors.APIError):
        return EventBusError(f"NATS JetStream error: {err.description or type(err).__name__}")
    return EventBusError(f"NATS error: {type(err).__name__}: {err}")
