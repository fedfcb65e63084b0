"""Sinks: a topic into a dataset, effectively once.

:class:`DatasetSink` turns a batch of events into rows and writes them with
``session.write(dataset, rows, mode="upsert", key=...)`` -- one atomic write per batch, into
any store (warehouse, Postgres, lake). Effectively-once comes from two things:

* **de-duplication by event id** -- every row carries ``_event_id`` (and ``_event_time``,
  ``_event_type``); within a batch the same event id is written once;
* **upsert by key** -- the key defaults to ``_event_id``, so a redelivered or replayed event
  (at-least-once delivery) overwrites its own row instead of adding one. With a business key
  (``key="order_id"``) the latest event per key wins within a batch (by event time, then
  arrival), and across batches later writes win.

So after any crash and redelivery, each event is in the dataset exactly once.

**Sealed PII** (:mod:`headwater.events.sealing`) is written opened: values sealed for the
sink's ``topic`` (set by :func:`sink_consumer`) are opened with the platform's subject keys (a
shredded subject's become NULL); a value sealed for another topic is written as it is, so a sink
cannot turn a copied ciphertext into plaintext.

:func:`sink_consumer` wires a sink to a topic as an
:class:`~headwater.events.consumer.EventConsumer` (batch handler, stage ``sink``): a batch
that fails to write is bisected down to the events that fail (halves retried as batches, the
last few one by one), and the events that still fail are dead-lettered with stage ``sink``.

Tracing: the consumer runs each batch inside its ``process <topic>`` span (parent: the first
event's ``traceparent``; the other events' contexts are links), so the ``session.write`` database
span of the batch is a child of it -- the write joins the trace of the change that caused it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC
from typing import Any

from headwater.errors import WriteError
from headwater.events.bus.base import Bus
from headwater.events.dlq import DeadLetterStore, Stage
from headwater.events.envelope import Event

__all__ = ["DatasetSink", "sink_consumer"]

EVENT_ID = "_event_id"
EVENT_TIME = "_event_time"
EVENT_TYPE = "_event_type"


def _default_row(event: Event) -> dict[str, Any]:
    if not isinstance(event.data, Mapping):
        raise WriteError(
            f"event {event.id}: a sink needs an object payload to turn into a row, not "
            f"{type(event.data).__name__}",
            event_id=event.id,
        )
    return dict(event.data)


class DatasetSink:
    """Writes events into ``dataset`` (``<store>.<table>``) through ``session``.

    ``key`` is the upsert key (default ``_event_id``); ``to_row`` maps an event to a row
    (default: its payload object); ``metadata`` adds ``_event_id``, ``_event_time`` and
    ``_event_type`` columns (``_event_id`` is always added when it is the key).
    """

    def __init__(
        self,
        session: Any,
        dataset: str,
        *,
        key: str | Sequence[str] | None = None,
        to_row: Callable[[Event], Mapping[str, Any]] = _default_row,
        metadata: bool = True,
    ) -> None:
        self.session = session
        self.dataset = dataset
        self.key = [key] if isinstance(key, str) else list(key or [EVENT_ID])
        self.to_row = to_row
        self.metadata = metadata or EVENT_ID in self.key
        self.topic: str | None = None
        """The topic the sink consumes: values sealed for it are written opened."""

    def __repr__(self) -> str:
        return f"DatasetSink(dataset={self.dataset!r}, key={self.key!r})"

    def rows(self, events: Sequence[Event]) -> list[dict[str, Any]]:
        """The rows ``events`` become, de-duplicated by event id and by key."""
        seen: set[str] = set()
        by_key: dict[tuple[Any, ...], tuple[tuple[Any, int], dict[str, Any]]] = {}
        for i, event in enumerate(events):
            if event.id in seen:
                continue
            seen.add(event.id)
            row = dict(self.to_row(event))
            if self.topic is not None:
                row = self._opened(row)
            if self.metadata:
                row[EVENT_ID] = event.id
                row[EVENT_TIME] = event.time.astimezone(UTC)
                row[EVENT_TYPE] = event.type
            try:
                k = tuple(row[c] for c in self.key)
            except KeyError as err:
                raise WriteError(
                    f"event {event.id}: row for {self.dataset} lacks key column {err.args[0]!r}",
                    event_id=event.id,
                ) from None
            order = (event.time, i)
            prev = by_key.get(k)
            if prev is None or order >= prev[0]:
                by_key[k] = (order, row)
        return [row for _, row in by_key.values()]

    def _opened(self, row: dict[str, Any]) -> dict[str, Any]:
        from headwater.events.sealing import is_sealed

        if not any(is_sealed(v) for v in row.values()):
            return row
        platform = getattr(self.session, "platform", None)
        if platform is None:
            return row
        from headwater.errors import InvalidInput

        sealer = platform.event_governance.sealer
        out = {}
        for k, v in row.items():
            if is_sealed(v):
                try:
                    ctx = sealer.open(v)
                except InvalidInput:
                    ctx = False
                if ctx is None:
                    v = None  # the subject was shredded
                elif ctx and ctx.topic == self.topic:
                    v = ctx.value
            out[k] = v
        return out

    def write(self, events: Sequence[Event]) -> int:
        """Upsert the batch in one atomic write; returns the rows written."""
        rows = self.rows(events)
        if not rows:
            return 0
        self.session.write(self.dataset, rows, mode="upsert", key=self.key)
        return len(rows)

    __call__ = write


def sink_consumer(
    bus: Bus,
    topic: str,
    group: str,
    sink: DatasetSink,
    *,
    dead_letters: DeadLetterStore,
    **options: Any,
) -> Any:
    """An :class:`~headwater.events.consumer.EventConsumer` that feeds ``sink`` in batches."""
    from headwater.events.consumer import EventConsumer

    if sink.topic is None:
        sink.topic = topic
    return EventConsumer(
        bus, topic, group, sink.write, dead_letters=dead_letters, batch=True,
        stage=Stage.SINK, **options,
    )
