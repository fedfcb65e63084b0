"""Consumers: run a handler over a topic with retries, then dead-letter; never loop forever.

:class:`EventConsumer` fetches batches from a bus consumer group and, for each message:

1. **deserialise** -- a message that is not a valid envelope is dead-lettered at once;
2. **validate** -- with a :class:`~headwater.events.producer.SchemaValidator`, a payload that
   breaks the schema named by its ``schemaid`` (or names an unknown id) is dead-lettered at
   once (retrying cannot fix it);
3. **handle** -- the handler runs; when it raises, the message is nacked with exponential
   backoff and full jitter (``RetryPolicy``) and retried on redelivery, up to
   ``max_attempts``; then it is dead-lettered with the last error. Errors that are
   :class:`~headwater.errors.InvalidInput` (bad data, not bad luck) skip the retries.

Dead letters are written before the message is acked, and the store keeps one row per (group,
event), so a crash in between only updates the same row on redelivery.

**Poison messages never loop forever.** A message whose handler kills the whole process
cannot be nacked; the bus redelivers it after the ack wait. Such unexplained redeliveries
(``delivery > 1`` but not nacked by this consumer) are *suspects*: each is handled alone and
acked at once, and after a suspect (and at start-up) the consumer fetches one message at a
time until a first delivery shows up, so a crash charges as few innocent messages as
possible. A message delivered more than ``max_attempts + crash_allowance`` times is
dead-lettered (``DeliveryLimitExceeded``) *without* running the handler again; the bus
subscription allows one delivery more than that, so nothing is dropped silently. And since
acks are per message, a poison message never blocks the messages behind it in its
partition.

Handlers take one :class:`~headwater.events.envelope.Event`, or -- with ``batch=True`` -- a
list of events (sinks use this for throughput); a failing batch is bisected -- each half is
tried again as a batch, down to a few events handled one by one -- so only the bad ones are
retried and dead-lettered, and one bad event costs about ``2 * log2(n)`` handler calls.

Synchronous: :meth:`EventConsumer.run` blocks the calling thread.

Telemetry (:mod:`headwater.telemetry.messaging`): each handler call runs inside a
``process <topic>`` consumer span -- a child of the event's ``traceparent``, or for a batch
handler of the first event's, linking the others -- so whatever the handler writes or
publishes joins the producer's trace. A one-event handler gets one span per *run* of
consecutive events sharing a producer context (a publish batch: same trace, same parent),
so a CDC batch of thousands of changes costs one span, not thousands; events from different
publishes get their own spans. Fetched messages are counted by
``messaging.client.consumed.messages``.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from headwater.errors import InvalidInput, NotFound
from headwater.events.bus.base import Bus, Consumer, Message, SubscriptionOptions
from headwater.events.bus.errors import InvalidEvent
from headwater.events.dlq import DeadLetterStore, Stage
from headwater.events.envelope import Event
from headwater.telemetry.messaging import (
    consumed,
    mark_failed,
    messaging_system,
    processing,
    telemetry_enabled,
)

__all__ = ["ConsumerStats", "EventConsumer", "RetryPolicy"]

logger = logging.getLogger("headwater")

Handler = Callable[[Event], Any]
BatchHandler = Callable[[list[Event]], Any]


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter: attempt *n* waits a random time in
    ``[0, min(max_delay, base * factor**(n-1))]`` (AWS' "full jitter")."""

    max_attempts: int = 5
    """Handler attempts before the message is dead-lettered."""
    base: float = 0.2
    factor: float = 2.0
    max_delay: float = 30.0
    jitter: bool = True

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        cap = min(self.max_delay, self.base * self.factor ** max(attempt - 1, 0))
        if not self.jitter:
            return cap
        return (rng or random).uniform(0, cap)


@dataclass
class ConsumerStats:
    """Counters of one :meth:`EventConsumer.run` or :meth:`EventConsumer.poll`."""

    handled: int = 0
    """Messages whose handler succeeded (and were acked)."""
    retried: int = 0
    """Failed attempts that were nacked for a retry."""
    dead_lettered: int = 0
    by_stage: dict[str, int] = field(default_factory=dict)

    def add(self, other: ConsumerStats) -> None:
        self.handled += other.handled
        self.retried += other.retried
        self.dead_lettered += other.dead_lettered
        for k, v in other.by_stage.items():
            self.by_stage[k] = self.by_stage.get(k, 0) + v


_TERMINAL = (InvalidInput,)
"""Errors retrying cannot fix (bad data); they go straight to the dead-letter store."""
_ONE_BY_ONE = 4
"""A failing sub-batch this small is handled event by event, not split again."""


class EventConsumer:
    """Runs ``handler`` for consumer ``group`` on ``topic``, with retries and dead letters.

    ``stage`` names what the handler does in dead-letter reasons (``handle``; sinks use
    ``sink``, routers ``route``). ``ack_wait`` is how long a fetched message may be held
    before the bus redelivers it (set it above the slowest handler call). ``slo``: an
    :class:`~headwater.telemetry.slo.SLORecorder` (``platform.slo_recorder``) that receives the
    end-to-end freshness of every handled event (now minus the event's ``time``) toward the
    ``event_freshness`` SLI.
    """

    def __init__(
        self,
        bus: Bus,
        topic: str,
        group: str,
        handler: Handler | BatchHandler,
        *,
        dead_letters: DeadLetterStore,
        retry: RetryPolicy | None = None,
        validator: Any = None,
        batch: bool = False,
        batch_size: int = 500,
        ack_wait: float = 30.0,
        stage: Stage | str = Stage.HANDLE,
        terminal: tuple[type[BaseException], ...] = _TERMINAL,
        crash_allowance: int = 2,
        seed: int | None = None,
        slo: Any = None,
    ) -> None:
        self.bus = bus
        self.slo = slo
        self.topic = topic
        self.group = group
        self.handler = handler
        self.dead_letters = dead_letters
        self.retry = retry or RetryPolicy()
        self.validator = validator
        self.batch = batch
        self.batch_size = batch_size
        self.stage = Stage(stage)
        self.terminal = terminal
        self._rng = random.Random(seed)
        self.crash_allowance = crash_allowance
        self.delivery_limit = self.retry.max_attempts + crash_allowance
        """Deliveries after which a message is dead-lettered without running the handler."""
        self._first_failure: dict[tuple[int, int], datetime] = {}
        self._nacked: set[tuple[int, int]] = set()
        self._careful = True
        self._stop = threading.Event()
        self._system = messaging_system(bus)
        self.consumer: Consumer = bus.subscribe(
            topic,
            group,
            options=SubscriptionOptions(
                max_deliveries=self.delivery_limit + 1, ack_wait=ack_wait
            ),
        )

    def __repr__(self) -> str:
        return f"EventConsumer(topic={self.topic!r}, group={self.group!r})"

    # -- control -----------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask :meth:`run` to return after the current batch (thread-safe)."""
        self._stop.set()

    def close(self) -> None:
        """Leave the group."""
        self.consumer.close()

    def __enter__(self) -> EventConsumer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def lag(self) -> int:
        """Messages of the topic the group has not finished yet."""
        return sum(self.consumer.lag().values())

    def run(
        self,
        *,
        max_messages: int | None = None,
        idle_timeout: float | None = None,
        poll_timeout: float = 0.5,
    ) -> ConsumerStats:
        """Consume until :meth:`stop`, ``max_messages`` finished (handled or dead-lettered),
        or nothing arrived for ``idle_timeout`` seconds."""
        stats = ConsumerStats()
        idle_since = time.monotonic()
        while not self._stop.is_set():
            if max_messages is not None and stats.handled + stats.dead_lettered >= max_messages:
                break
            got = self.poll(timeout=poll_timeout)
            stats.add(got)
            if got.handled or got.dead_lettered or got.retried:
                idle_since = time.monotonic()
            elif idle_timeout is not None and time.monotonic() - idle_since >= idle_timeout:
                break
        return stats

    # -- one batch ---------------------------------------------------------------------------
    def poll(self, *, timeout: float = 0.5) -> ConsumerStats:
        """Fetch one batch and process it completely (every message acked or nacked)."""
        stats = ConsumerStats()
        messages = self.consumer.fetch(1 if self._careful else self.batch_size, timeout=timeout)
        if not messages:
            return stats
        consumed(self._system, self.topic, self.group, len(messages))
        suspects = [
            m for m in messages
            if m.delivery > 1 and (m.partition, m.offset) not in self._nacked
        ]
        self._careful = bool(suspects)
        if suspects:
            ids = {id(m) for m in suspects}
            self._process([m for m in messages if id(m) not in ids], stats)
            for m in suspects:  # alone, acked at once: a crash now charges only this one
                self._process([m], stats)
        else:
            self._process(messages, stats)
        return stats

    def _process(self, messages: list[Message], stats: ConsumerStats) -> None:
        if not messages:
            return
        for m in messages:
            self._nacked.discard((m.partition, m.offset))
        done: list[Message] = []
        ready: list[tuple[Message, Event]] = []
        traced = telemetry_enabled()  # once per batch: off, the handler is called bare
        for msg in messages:
            if msg.delivery > self.delivery_limit:
                self._dead(
                    msg, None, self.stage,
                    ("DeliveryLimitExceeded",
                     f"delivered {msg.delivery} times without an ack (the consumer crashed or "
                     "timed out while handling it); not retried"),
                    attempts=msg.delivery - 1, stats=stats,
                )
                done.append(msg)
                continue
            try:
                event = msg.event()
            except InvalidEvent as err:
                self._dead(msg, None, Stage.DESERIALISE, err, attempts=1, stats=stats)
                done.append(msg)
                continue
            if self.validator is not None:
                try:
                    # the event as the bus holds it (a governed consumer's is opened and masked)
                    self.validator.validate(getattr(msg, "original", event))
                except (InvalidInput, NotFound) as err:
                    self._dead(msg, event, Stage.VALIDATE, err, attempts=1, stats=stats)
                    done.append(msg)
                    continue
            ready.append((msg, event))
        if ready:
            if self.batch:
                self._handle_batch(ready, stats, done, traced)
            elif not traced:
                for msg, event in ready:
                    if self._handle_one(msg, event, stats, self.handler):  # type: ignore[arg-type]
                        done.append(msg)
            else:
                # One process span per run of events sharing a producer context (a publish
                # batch): every handler call still runs under its own event's trace.
                for run in _same_context_runs(ready):
                    target = run[0][1] if len(run) == 1 else [e for _, e in run]
                    with processing(self._system, self.topic, self.group, target) as span:
                        for msg, event in run:
                            if self._handle_one(msg, event, stats, self.handler, span=span):  # type: ignore[arg-type]
                                done.append(msg)
        self.consumer.ack_many(done)

    def _handle_batch(
        self, ready: list[tuple[Message, Event]], stats: ConsumerStats, done: list[Message], traced: bool
    ) -> None:
        """Hand ``ready`` to the batch handler; when it fails, bisect: each half is tried as a
        batch again, down to :data:`_ONE_BY_ONE` events, which are handled (retried or
        dead-lettered) one by one. One bad event in a batch of ``n`` costs about
        ``2 * log2(n)`` handler calls instead of ``n``."""
        events = [e for _, e in ready]
        try:
            if traced:
                with processing(self._system, self.topic, self.group, events):
                    self.handler(events)  # type: ignore[arg-type]
            else:
                self.handler(events)  # type: ignore[arg-type]
        except Exception:  # noqa: BLE001 - isolate the bad events (below, outside this handler)
            logger.debug("batch handler failed on %d events; isolating the bad ones", len(ready),
                         exc_info=True)
        else:
            stats.handled += len(ready)
            done.extend(m for m, _ in ready)
            if self.slo is not None:
                for e in events:
                    self._fresh(e)
            return
        if len(ready) > _ONE_BY_ONE:
            half = len(ready) // 2
            self._handle_batch(ready[:half], stats, done, traced)
            self._handle_batch(ready[half:], stats, done, traced)
            return
        for msg, event in ready:
            if self._handle_one(msg, event, stats, lambda e: self.handler([e]), traced):  # type: ignore[list-item]
                done.append(msg)

    def _fresh(self, event: Event) -> None:
        """One handled event toward ``event_freshness``: milliseconds since it happened."""
        self.slo.record_event_delivery(max(0.0, (datetime.now(UTC) - event.time).total_seconds() * 1000))

    def _handle_one(
        self, msg: Message, event: Event, stats: ConsumerStats, call: Callable[[Event], Any],
        traced: bool = False, span: Any = None,
    ) -> bool:
        """Run the handler (in its own process span when ``traced``; ``span``: the enclosing
        one, marked when the call fails); True when the message is finished (handled or
        dead-lettered)."""
        try:
            if traced:
                with processing(self._system, self.topic, self.group, event):
                    call(event)
            else:
                call(event)
        except Exception as err:  # noqa: BLE001 - every handler error is retried or dead-lettered
            if span is not None:
                mark_failed(span, err)
            pos = (msg.partition, msg.offset)
            self._first_failure.setdefault(pos, datetime.now(UTC))
            if isinstance(err, self.terminal) or msg.delivery >= self.retry.max_attempts:
                self._dead(msg, event, self.stage, err, attempts=msg.delivery, stats=stats)
                return True
            stats.retried += 1
            self._nacked.add(pos)
            self.consumer.nack(msg, delay=self.retry.delay(msg.delivery, self._rng))
            return False
        self._first_failure.pop((msg.partition, msg.offset), None)
        stats.handled += 1
        if self.slo is not None:
            self._fresh(event)
        return True

    def _dead(
        self,
        msg: Message,
        event: Event | None,
        stage: Stage,
        error: BaseException | tuple[str, str],
        *,
        attempts: int,
        stats: ConsumerStats,
    ) -> None:
        first = self._first_failure.pop((msg.partition, msg.offset), None)
        self.dead_letters.add(
            msg.value,
            stage=stage,
            error=error,
            attempts=attempts,
            consumer_group=self.group,
            topic=msg.topic,
            partition=msg.partition,
            offset=msg.offset,
            key=msg.key,
            event=event,
            first_failure_at=first,
        )
        stats.dead_lettered += 1
        stats.by_stage[stage.value] = stats.by_stage.get(stage.value, 0) + 1


def _same_context_runs(ready: list[tuple[Message, Event]]) -> list[list[tuple[Message, Event]]]:
    """``ready`` cut into runs of consecutive events with the same ``traceparent`` (events
    without one each run alone: they start their own traces)."""
    runs: list[list[tuple[Message, Event]]] = []
    last: tuple[str | None, str | None] | None = None
    for item in ready:
        ev = item[1]
        key = (ev.traceparent, ev.tracestate) if ev.traceparent else None
        if key is not None and key == last:
            runs[-1].append(item)
        else:
            runs.append([item])
        last = key
    return runs


def handle_all(consumers: Sequence[EventConsumer], **run_options: Any) -> list[ConsumerStats]:
    """Run several consumers, one thread each, until all return (see :meth:`EventConsumer.run`)."""
    results: list[ConsumerStats | None] = [None] * len(consumers)

    def go(i: int) -> None:
        results[i] = consumers[i].run(**run_options)

    threads = [threading.Thread(target=go, args=(i,), daemon=True) for i in range(len(consumers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [r or ConsumerStats() for r in results]
