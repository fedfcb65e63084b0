"""Messaging spans and metrics (OpenTelemetry semantic conventions) and W3C trace context
carried inside events, so a CDC change, its routing and its sink write form **one trace**.

Publishing -- :func:`publishing` (or the one-liners :func:`publish` / :func:`publish_many`)
wraps a send of one event or a batch to one destination:

* a ``PRODUCER`` span named ``publish <destination>`` with ``messaging.system`` (``nats``,
  ``kafka`` or ``headwater`` for the embedded bus), ``messaging.destination.name``,
  ``messaging.operation.name`` (``publish``), ``messaging.operation.type`` (``send``) and
  ``messaging.message.id`` (one event) or ``messaging.batch.message_count`` (a batch);
* its parent is the current span when there is one (a router re-publishing inside its process
  span); otherwise the ``traceparent`` the first event already carries (so a re-publish
  continues that trace); other traces found on the batch become **links**;
* every event is stamped with the publish span's ``traceparent``/``tracestate`` (copies: events
  are immutable) -- the publish span is the events' creation context;
* ``messaging.client.sent.messages`` counts the events (with ``error.type`` on failure).

Processing -- :func:`processing` wraps the handling of one received event or a batch:

* a ``CONSUMER`` span named ``process <destination>`` with ``messaging.operation.type``
  ``process`` and ``messaging.consumer.group.name``; for one event it is a **child** of the
  event's ``traceparent`` (the producer's context); for a batch its parent is the first event's
  context and the other events' contexts are links (one handler call -- one database write --
  can have only one parent). :class:`~headwater.events.consumer.EventConsumer` opens one span
  per run of consecutive events that share a ``traceparent`` (one publish), so each handler
  call still runs under its own event's trace;
* ``messaging.process.duration`` (seconds) measures the handler; :func:`consumed` feeds
  ``messaging.client.consumed.messages``.

Spans entered with these helpers are current, so a database span opened by the handler (a
sink's ``session.write``) is their child.

**Cost when telemetry is off.** With no OpenTelemetry SDK installed (the default: nothing is
exported unless configured), :func:`publishing` and :func:`processing` return a shared no-op
context manager after two provider checks: no span, no copy of any event, no parsing.
**Events get or change a traceparent only when a real span exists** (an SDK tracer provider is
installed); otherwise an event keeps whatever ``traceparent`` it carried, untouched. Span
contexts that are valid but not sampled are still propagated (flags ``00``), so downstream
parent-based samplers agree.

Exception messages are never recorded on these spans (they can quote payload values):
failures carry ``error.type`` (the exception class) and an ERROR status only.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)

from headwater.telemetry.otel import metrics_on, tracing_on

if TYPE_CHECKING:
    from headwater.events.envelope import Event

__all__ = [
    "SYSTEMS",
    "consumed",
    "context_of",
    "mark_failed",
    "messaging_system",
    "processing",
    "publish",
    "publish_many",
    "publishing",
    "telemetry_enabled",
    "traceparent_of",
]

_SCOPE = "headwater"
_tracer = trace.get_tracer(_SCOPE)
_meter = metrics.get_meter(_SCOPE)
_sent = _meter.create_counter(
    "messaging.client.sent.messages", unit="{message}",
    description="Number of messages a producer attempted to send to the broker.",
)
_consumed = _meter.create_counter(
    "messaging.client.consumed.messages", unit="{message}",
    description="Number of messages that were delivered to the application.",
)
_process_duration = _meter.create_histogram(
    "messaging.process.duration", unit="s",
    description="Duration of processing operation.",
    explicit_bucket_boundaries_advisory=[0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10],
)

SYSTEMS = {"embedded": "headwater", "nats": "nats", "kafka": "kafka"}
"""``messaging.system`` of each bus backend (``Capabilities.backend``)."""

_MAX_LINKS = 128
_NOOP: contextlib.nullcontext[Any] = contextlib.nullcontext()

T = TypeVar("T")


# -- switches ----------------------------------------------------------------------------------
def telemetry_enabled() -> bool:
    """Whether an OpenTelemetry SDK tracer or meter provider is installed in this process."""
    return _tracing() or _metering()


_tracing = tracing_on
_metering = metrics_on


def messaging_system(bus: Any) -> str:
    """``messaging.system`` for ``bus``: ``nats``, ``kafka`` or ``headwater`` (embedded)."""
    backend = getattr(getattr(bus, "capabilities", None), "backend", None)
    return SYSTEMS.get(backend, backend or "headwater")  # type: ignore[arg-type]


# -- W3C trace context -------------------------------------------------------------------------
def context_of(event: Event) -> SpanContext | None:
    """The remote span context in ``event``'s ``traceparent`` (None when it has none).

    The envelope has already checked the format (``00-<32 hex>-<16 hex>-<2 hex>``)."""
    tp = event.traceparent
    if not tp:
        return None
    return _parse(tp, event.tracestate)


def _parse(tp: str, ts: str | None) -> SpanContext:
    return SpanContext(
        int(tp[3:35], 16), int(tp[36:52], 16), is_remote=True,
        trace_flags=TraceFlags(int(tp[53:55], 16) & 0xFF),
        trace_state=TraceState.from_header([ts]) if ts else None,
    )


def traceparent_of(ctx: SpanContext) -> str:
    """The W3C ``traceparent`` value of a span context."""
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def _distinct_contexts(items: Sequence[Any]) -> list[SpanContext]:
    """The distinct trace contexts of events (or ``(event, key)`` pairs), in order."""
    seen: dict[str, str | None] = {}
    for it in items:
        ev = it[0] if it.__class__ is tuple else it
        tp = ev.traceparent
        if tp and tp not in seen:
            seen[tp] = ev.tracestate
            if len(seen) > _MAX_LINKS:
                break
    return [_parse(tp, ts) for tp, ts in seen.items()]


def _parent_and_links(contexts: list[SpanContext], *, prefer_current: bool) -> tuple[Any, list[Link]]:
    """(parent context or None for the current one, links to the other traces)."""
    current = trace.get_current_span().get_span_context()
    if prefer_current and current.is_valid:
        return None, [Link(c) for c in contexts if c.trace_id != current.trace_id]
    if not contexts:
        return None, []
    parent = trace.set_span_in_context(NonRecordingSpan(contexts[0]))
    return parent, [Link(c) for c in contexts[1:]]


def _event_of(item: Any) -> Event:
    return item[0] if isinstance(item, tuple) else item


def _fail(span: Any, attrs: dict[str, Any], err: BaseException) -> None:
    kind = type(err).__qualname__
    attrs["error.type"] = kind
    if span is not None:
        span.set_attribute("error.type", kind)
        span.set_status(Status(StatusCode.ERROR, kind))


# -- publish -----------------------------------------------------------------------------------
def publishing(
    system: str, destination: str, items: Sequence[T], *, owned: bool = False,
) -> contextlib.AbstractContextManager[Sequence[T]]:
    """A publish span around sending ``items`` (events, or ``(event, key)`` pairs) to
    ``destination``; yields the items to actually send, stamped with the span's trace context
    (the same items, unchanged, when no SDK is installed).

    ``owned=True`` says the caller built these event objects for this send and shares them
    with no one: they are stamped in place instead of copied (the CDC connectors and the
    producer, whose validated events are fresh copies)."""
    if not (_tracing() or _metering()):
        return contextlib.nullcontext(items)
    return _publishing(system, destination, items, owned)


@contextlib.contextmanager
def _publishing(system: str, destination: str, items: Sequence[T], owned: bool) -> Iterator[Sequence[T]]:
    n = len(items)
    attrs: dict[str, Any] = {
        "messaging.system": system, "messaging.destination.name": destination,
        "messaging.operation.name": "publish", "messaging.operation.type": "send",
    }
    if not _tracing():
        try:
            yield items
        except BaseException as err:
            _fail(None, attrs, err)
            raise
        finally:
            _sent.add(n, attrs)
        return
    first = _event_of(items[0]) if n else None
    parent, links = _parent_and_links(_distinct_contexts(items), prefer_current=True)
    span_attrs = dict(attrs)
    if n == 1:
        span_attrs["messaging.message.id"] = first.id  # type: ignore[union-attr]
    else:
        span_attrs["messaging.batch.message_count"] = n
    span = _tracer.start_span(f"publish {destination}", context=parent, kind=SpanKind.PRODUCER,
                              attributes=span_attrs, links=links, record_exception=False,
                              set_status_on_exception=False)
    token = otel_context.attach(trace.set_span_in_context(span))
    try:
        sc = span.get_span_context()
        stamped: Sequence[T] = items
        if sc.is_valid:
            tp = traceparent_of(sc)
            ts = (sc.trace_state.to_header() or None) if sc.trace_state else None
            stamped = _stamp_all(items, tp, ts, owned)
        yield stamped
    except BaseException as err:
        _fail(span, attrs, err)
        raise
    finally:
        otel_context.detach(token)
        span.end()
        _sent.add(n, attrs)


_set = object.__setattr__


def _stamp_all(items: Sequence[Any], tp: str, ts: str | None, owned: bool) -> Sequence[Any]:
    """The items carrying ``tp``/``ts``. Owned plain :class:`Event` objects are stamped in place
    (invisible: nobody else holds them; ~10x cheaper than a copy); anything else -- including
    subclasses that cache their encoding -- gets a copy from its ``_with_trace``."""
    from headwater.events.envelope import Event

    out: list[Any] | None = None
    for i, it in enumerate(items):
        ev = it[0] if it.__class__ is tuple else it
        if owned and ev.__class__ is Event:
            _set(ev, "traceparent", tp)
            _set(ev, "tracestate", ts)
            if out is not None:
                out.append(it)
            continue
        if out is None:
            out = list(items[:i])
        out.append(_stamp(it, tp, ts))
    return items if out is None else out


def _stamp(item: Any, tp: str, ts: str | None) -> Any:
    if item.__class__ is tuple:
        ev, key = item
        return (ev._with_trace(tp, ts), key)
    return item._with_trace(tp, ts)


def publish(bus: Any, topic: str, event: Event, key: str | None = None) -> Any:
    """``bus.publish(topic, event, key)`` inside a publish span (the event is stamped)."""
    with publishing(messaging_system(bus), topic, (event,)) as stamped:
        return bus.publish(topic, stamped[0], key)


def publish_many(bus: Any, topic: str, items: Sequence[Any], *, owned: bool = False) -> Any:
    """``bus.publish_many(topic, items)`` (``(event, key)`` pairs) inside one publish span
    (``owned``: see :func:`publishing`)."""
    with publishing(messaging_system(bus), topic, items, owned=owned) as stamped:
        return bus.publish_many(topic, stamped)


# -- process -----------------------------------------------------------------------------------
def processing(
    system: str, destination: str, group: str | None, events: Event | Sequence[Event],
) -> contextlib.AbstractContextManager[Any]:
    """A process span (child of the event's producer context; for a batch, the first event's,
    linking the others) and a ``messaging.process.duration`` measurement around handling
    ``events``; yields the span (None when no SDK tracer is installed)."""
    if not (_tracing() or _metering()):
        return _NOOP
    return _Process(system, destination, group, events)


_attrs_cache: dict[tuple[str, str, str | None], dict[str, Any]] = {}
_last_parent: tuple[str | None, str | None, Any] = (None, None, None)


def _parent_of(event: Event) -> Any:
    """The context whose current span is ``event``'s producer (None: no ``traceparent``).

    Events of one publish batch share their ``traceparent``, so the last one is remembered
    (one tuple, replaced whole: safe across consumer threads)."""
    global _last_parent
    tp = event.traceparent
    if not tp:
        return None
    ts = event.tracestate
    last = _last_parent
    if last[0] == tp and last[1] == ts:
        return last[2]
    ctx = trace.set_span_in_context(NonRecordingSpan(_parse(tp, ts)))
    _last_parent = (tp, ts, ctx)
    return ctx


class _Process:
    """The context manager :func:`processing` returns (a class: cheaper than a generator, it
    runs once per event)."""

    __slots__ = ("attrs", "events", "span", "start", "token")

    def __init__(self, system: str, destination: str, group: str | None, events: Event | Sequence[Event]) -> None:
        key = (system, destination, group)
        attrs = _attrs_cache.get(key)
        if attrs is None:
            attrs = {"messaging.system": system, "messaging.destination.name": destination,
                     "messaging.operation.name": "process", "messaging.operation.type": "process"}
            if group:
                attrs["messaging.consumer.group.name"] = group
            if len(_attrs_cache) > 1024:
                _attrs_cache.clear()
            _attrs_cache[key] = attrs
        self.attrs = attrs
        self.events = events
        self.span: Any = None
        self.token: Any = None

    def __enter__(self) -> Any:
        if _tracing():
            events = self.events
            links: list[Link] = []
            if isinstance(events, list | tuple):
                parent, links = _parent_and_links(_distinct_contexts(events), prefer_current=False)
                extra: dict[str, Any] = ({"messaging.message.id": events[0].id} if len(events) == 1
                                         else {"messaging.batch.message_count": len(events)})
            else:
                parent = _parent_of(events)
                extra = {"messaging.message.id": events.id}
            span = self.span = _tracer.start_span(
                f"process {self.attrs['messaging.destination.name']}", context=parent, kind=SpanKind.CONSUMER,
                attributes={**self.attrs, **extra}, links=links, record_exception=False,
                set_status_on_exception=False)
            self.token = otel_context.attach(trace.set_span_in_context(span))
        self.start = time.perf_counter()
        return self.span

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        elapsed = time.perf_counter() - self.start
        attrs = self.attrs
        if exc_type is not None:
            attrs = {**attrs, "error.type": exc_type.__qualname__}
        if self.token is not None:
            otel_context.detach(self.token)
            if exc_type is not None:
                self.span.set_attribute("error.type", exc_type.__qualname__)
                self.span.set_status(Status(StatusCode.ERROR, exc_type.__qualname__))
            self.span.end()
        _process_duration.record(elapsed, attrs)


def mark_failed(span: Any, err: BaseException) -> None:
    """Mark ``span`` (a process span covering several handler calls) as failed by ``err``
    (its type only: ``error.type`` and an ERROR status)."""
    if span is not None and span.is_recording():
        kind = type(err).__qualname__
        span.set_attribute("error.type", kind)
        span.set_status(Status(StatusCode.ERROR, kind))


def consumed(system: str, destination: str, group: str | None, count: int) -> None:
    """Count ``count`` messages delivered to the application (``messaging.client.consumed.messages``)."""
    if count and _metering():
        attrs = {"messaging.system": system, "messaging.destination.name": destination,
                 "messaging.operation.name": "receive"}
        if group:
            attrs["messaging.consumer.group.name"] = group
        _consumed.add(count, attrs)
