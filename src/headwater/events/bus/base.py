"""The ``Bus`` protocol every backend implements, and the value types it passes around.

The API is **synchronous**: every method blocks until the broker has answered. Backends with
an asyncio client (NATS) run their event loop in a private background thread and hand each
call to it; callers never see a coroutine.

Delivery is **at-least-once** on every backend: a message is redelivered until it is acked,
up to the subscription's ``max_deliveries``. A consumer that dies holding messages gets them
redelivered after ``ack_wait`` (or the ``backoff`` step for that delivery). A message that is
never acked does not block the messages behind it in its partition: they are delivered and
acked independently, while the group's committed offset (the point below which everything is
done) stays at the oldest unfinished message.

Backends differ; callers ask :attr:`Bus.capabilities` rather than catching
``NotImplementedError``.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from headwater.events.envelope import Event

__all__ = [
    "Bus",
    "Capabilities",
    "Consumer",
    "Message",
    "PublishResult",
    "SubscriptionOptions",
    "TopicInfo",
    "partition_for",
]


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do; callers branch on these instead of catching errors."""

    backend: str
    """``"embedded"``, ``"nats"`` or ``"kafka"``."""
    durable: bool = True
    """Published messages survive a restart of the broker (and of this process)."""
    partitions: bool = True
    """Topics have several partitions, chosen by key hash."""
    consumer_groups: bool = True
    """Several consumers can share one group's work."""
    nack_delay: bool = True
    """``nack(msg, delay=...)`` honours the delay."""
    redelivery_backoff: bool = True
    """Subscriptions accept a ``backoff`` schedule for unacked messages."""
    publish_dedup: bool = False
    """The broker drops a re-published event with an id it has seen (within a window)."""
    lag: bool = True
    """``Consumer.lag()`` reports how far the group is behind."""
    partition_offsets: bool = True
    """Offsets count per partition and ``committed()``/``lag()`` report each partition; when
    False, offsets are topic-wide sequence numbers and both report the topic under key 0."""
    max_event_bytes: int = 1024 * 1024
    """Largest serialised event accepted."""


@dataclass(frozen=True)
class TopicInfo:
    """A topic and its size."""

    name: str
    partitions: int
    messages: int | None = None
    """Messages currently stored (None when the backend cannot tell cheaply)."""


@dataclass(frozen=True)
class PublishResult:
    """Where a published event landed."""

    topic: str
    partition: int
    offset: int
    duplicate: bool = False
    """The broker recognised the event id and did not store it again."""


@dataclass(frozen=True)
class SubscriptionOptions:
    """How a consumer group is delivered to; fixed when the group is first created."""

    max_deliveries: int = 5
    """Deliveries of one message before the bus gives up on it (the consumer layer
    dead-letters on the last one, so nothing is dropped silently)."""
    ack_wait: float = 30.0
    """Seconds a delivered, unacked message stays invisible before it is redelivered."""
    backoff: tuple[float, ...] = ()
    """Per-delivery ack waits (delivery *n* uses ``backoff[n-1]``, the last one repeats);
    overrides ``ack_wait`` when set."""
    start: str = "earliest"
    """Where a new group starts: ``"earliest"`` or ``"latest"``."""

    def wait_for(self, delivery: int) -> float:
        """Seconds before delivery number ``delivery`` (1-based) is redelivered if unacked."""
        if self.backoff:
            return self.backoff[min(delivery, len(self.backoff)) - 1]
        return self.ack_wait


@dataclass(eq=False)
class Message:
    """One delivery of one event to a consumer group.

    ``value`` holds the serialised envelope; :meth:`event` parses it (raising
    :class:`~headwater.events.bus.errors.InvalidEvent` for a malformed one, which the
    consumer layer dead-letters with stage ``deserialise``).
    """

    topic: str
    partition: int
    offset: int
    value: bytes
    key: str | None = None
    delivery: int = 1
    """1 on first delivery, then 2, 3, ..."""
    handle: Any = field(default=None, repr=False)
    """Backend-private (the NATS message, the Kafka message ...)."""
    _event: Event | None = field(default=None, repr=False)

    def event(self) -> Event:
        """The parsed envelope (parsed once, then cached)."""
        if self._event is None:
            from headwater.events.envelope import Event

            self._event = Event.from_json(self.value)
        return self._event


def partition_for(key: str | None, partitions: int, fallback: int = 0) -> int:
    """The partition of ``key``: a stable CRC32 hash modulo ``partitions``.

    ``None`` keys go to ``fallback % partitions`` (callers pass a round-robin counter).
    """
    if partitions <= 1:
        return 0
    if key is None:
        return fallback % partitions
    return zlib.crc32(key.encode()) % partitions


@runtime_checkable
class Consumer(Protocol):
    """A member of a consumer group on one topic. Synchronous, not thread-safe: use one
    consumer per thread (several consumers of one group share its work)."""

    topic: str
    group: str

    def fetch(self, max_messages: int = 100, timeout: float = 1.0) -> list[Message]:
        """Up to ``max_messages`` deliveries, waiting at most ``timeout`` seconds for the
        first; an empty list when nothing is ready. Each must be acked or nacked."""
        ...

    def ack(self, message: Message) -> None:
        """Mark ``message`` done for this group; it is never delivered to the group again."""
        ...

    def ack_many(self, messages: Sequence[Message]) -> None:
        """Ack several messages in one round trip where the backend allows it."""
        ...

    def nack(self, message: Message, delay: float = 0.0) -> None:
        """Give ``message`` back for redelivery after ``delay`` seconds."""
        ...

    def committed(self) -> dict[int, int]:
        """Partition -> committed offset: every message below it is acked (or given up)."""
        ...

    def lag(self) -> dict[int, int]:
        """Partition -> messages published but not yet acked by this group."""
        ...

    def close(self) -> None:
        """Leave the group; unacked messages are redelivered to other members after
        their ack wait."""
        ...


@runtime_checkable
class Bus(Protocol):
    """A message bus: topics with partitions, publish, and consumer groups.

    Synchronous API (see the module docstring); safe to share between threads.
    """

    capabilities: Capabilities

    def create_topic(self, name: str, partitions: int = 1) -> TopicInfo:
        """Create ``name`` with ``partitions`` partitions; an existing topic is returned
        as is (its partition count is never changed)."""
        ...

    def topics(self) -> list[TopicInfo]:
        """Every topic, by name."""
        ...

    def delete_topic(self, name: str) -> None:
        """Remove a topic, its messages and its groups' positions."""
        ...

    def publish(self, topic: str, event: Event, key: str | None = None) -> PublishResult:
        """Append ``event`` to ``topic`` in the partition of ``key`` (default: the event's
        subject, else its id). Raises :class:`TopicNotFound` for an unknown topic and
        :class:`EventTooLarge` past ``capabilities.max_event_bytes``."""
        ...

    def publish_many(
        self, topic: str, events: Iterable[Event | tuple[Event, str | None]]
    ) -> list[PublishResult]:
        """Publish a batch (events, or ``(event, key)`` pairs) in one round trip where the
        backend allows; all-or-nothing on the embedded log."""
        ...

    def publish_raw(
        self, topic: str, value: bytes, key: str | None = None, *, msg_id: str | None = None
    ) -> PublishResult:
        """Publish bytes as they are, valid envelope or not (dead-letter replays keep the
        original bytes). ``msg_id`` is the broker de-duplication id where supported."""
        ...

    def subscribe(
        self,
        topic: str,
        group: str,
        *,
        options: SubscriptionOptions | None = None,
    ) -> Consumer:
        """Join consumer ``group`` on ``topic`` (created on first use with ``options``)."""
        ...

    def close(self) -> None:
        """Release connections and background threads."""
        ...


def default_key(event: Event, key: str | None) -> str:
    """The partition key: ``key``, else the event's subject, else its id."""
    if key is not None:
        return key
    return event.subject if event.subject is not None else event.id


def split_batch(
    events: Iterable[Event | tuple[Event, str | None]],
) -> list[tuple[Event, str]]:
    """Normalise a ``publish_many`` argument to ``(event, key)`` pairs."""
    out = []
    for item in events:
        if isinstance(item, tuple):
            ev, key = item
        else:
            ev, key = item, None
        out.append((ev, default_key(ev, key)))
    return out
