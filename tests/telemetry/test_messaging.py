"""Messaging semantic conventions: publish/process spans, trace context in events, metrics."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode

from headwater.events.bus import connect
from headwater.events.envelope import Event, new_traceparent
from headwater.telemetry import messaging


@pytest.fixture
def bus(tmp_path):
    b = connect(f"embedded:{tmp_path / 'events.db'}")
    b.create_topic("orders")
    yield b
    b.close()


def _tp(span) -> str:
    return messaging.traceparent_of(span.get_span_context())


def test_publish_span_attributes_and_stamped_traceparent(bus, spans, metric_points) -> None:
    ev = Event(type="t.created", source="/t", data={"a": 1})
    messaging.publish(bus, "orders", ev, key="k")
    (span,) = spans.get_finished_spans()
    assert span.name == "publish orders"
    assert span.kind == SpanKind.PRODUCER
    a = span.attributes
    assert a["messaging.system"] == "headwater"
    assert a["messaging.destination.name"] == "orders"
    assert a["messaging.operation.name"] == "publish"
    assert a["messaging.operation.type"] == "send"
    assert a["messaging.message.id"] == ev.id
    assert "messaging.batch.message_count" not in a
    assert ev.traceparent is None  # events are immutable: the sent copy is stamped
    (msg,) = bus.subscribe("orders", "g").fetch(10, timeout=1)
    assert msg.event().traceparent == _tp(span)
    sent = [p for p in metric_points("messaging.client.sent.messages")
            if p.attributes.get("messaging.destination.name") == "orders"]
    assert sent and sum(p.value for p in sent) >= 1


def test_batch_publish_counts_and_one_context(bus, spans) -> None:
    items = [(Event(type="t", source="/t", data={"i": i}), str(i)) for i in range(3)]
    messaging.publish_many(bus, "orders", items)
    (span,) = spans.get_finished_spans()
    assert span.attributes["messaging.batch.message_count"] == 3
    assert "messaging.message.id" not in span.attributes
    got = bus.subscribe("orders", "g").fetch(10, timeout=1)
    assert {m.event().traceparent for m in got} == {_tp(span)}
    assert [m.key for m in got] == ["0", "1", "2"]


def test_existing_traceparent_is_the_parent_and_other_traces_are_links(bus, spans) -> None:
    first, other = new_traceparent(), new_traceparent()
    items = [(Event(type="t", source="/t", traceparent=first), None),
             (Event(type="t", source="/t", traceparent=other), None)]
    messaging.publish_many(bus, "orders", items)
    (span,) = spans.get_finished_spans()
    assert f"{span.context.trace_id:032x}" == first[3:35]
    assert f"{span.parent.span_id:016x}" == first[36:52]
    assert [f"{link.context.trace_id:032x}" for link in span.links] == [other[3:35]]


def test_current_span_wins_over_the_event_context(bus, spans) -> None:
    with trace.get_tracer("test").start_as_current_span("caller") as caller:
        messaging.publish(bus, "orders", Event(type="t", source="/t", traceparent=new_traceparent()))
    publish = next(s for s in spans.get_finished_spans() if s.name == "publish orders")
    assert publish.parent.span_id == caller.get_span_context().span_id
    assert len(publish.links) == 1  # the event's own (different) trace is linked


def test_process_span_is_child_of_producer_context(spans, metric_points) -> None:
    tp = new_traceparent()
    ev = Event(type="t", source="/t", traceparent=tp)
    with messaging.processing("kafka", "orders", "g1", ev) as span:
        inner = trace.get_tracer("test").start_span("inner")
        inner.end()
    assert span is not None
    proc = next(s for s in spans.get_finished_spans() if s.name == "process orders")
    assert proc.kind == SpanKind.CONSUMER
    assert f"{proc.context.trace_id:032x}" == tp[3:35]
    assert f"{proc.parent.span_id:016x}" == tp[36:52]
    assert proc.parent.is_remote
    a = proc.attributes
    assert a["messaging.system"] == "kafka"
    assert a["messaging.consumer.group.name"] == "g1"
    assert a["messaging.operation.type"] == "process"
    assert a["messaging.message.id"] == ev.id
    child = next(s for s in spans.get_finished_spans() if s.name == "inner")
    assert child.parent.span_id == proc.context.span_id  # the process span is current
    durations = [p for p in metric_points("messaging.process.duration")
                 if p.attributes.get("messaging.consumer.group.name") == "g1"]
    assert durations and durations[0].count >= 1


def test_batch_process_links_other_contexts(spans) -> None:
    tps = [new_traceparent() for _ in range(3)]
    batch = [Event(type="t", source="/t", traceparent=tp) for tp in tps]
    with messaging.processing("nats", "orders", "g", batch):
        pass
    (proc,) = spans.get_finished_spans()
    assert proc.attributes["messaging.batch.message_count"] == 3
    assert f"{proc.context.trace_id:032x}" == tps[0][3:35]
    assert sorted(f"{link.context.span_id:016x}" for link in proc.links) == sorted(t[36:52] for t in tps[1:])


def test_failures_carry_error_type_but_no_message(spans) -> None:
    with pytest.raises(ValueError), messaging.processing("headwater", "orders", "g", Event(type="t", source="/t")):
        raise ValueError("secret@example.com is not allowed")
    (proc,) = spans.get_finished_spans()
    assert proc.status.status_code == StatusCode.ERROR
    assert proc.attributes["error.type"] == "ValueError"
    assert "secret" not in str(proc.status.description) and not proc.events


def test_messaging_system_names() -> None:
    class Caps:
        backend = "nats"

    class Bus:
        capabilities = Caps()

    assert messaging.messaging_system(Bus()) == "nats"
    assert messaging.messaging_system(object()) == "headwater"


def test_owned_events_are_stamped_in_place_others_copied(spans) -> None:
    class Cached(Event):
        __slots__ = ()

    mine = Event(type="t", source="/t")
    theirs = Cached(type="t", source="/t")
    with messaging.publishing("headwater", "orders", [(mine, None), (theirs, None)], owned=True) as sent:
        (a, _), (b, _) = sent
    assert a is mine and mine.traceparent is not None  # built for this send: stamped in place
    assert b is not theirs and theirs.traceparent is None and b.traceparent == mine.traceparent
    shared = Event(type="t", source="/t")
    with messaging.publishing("headwater", "orders", [shared]) as sent:
        assert sent[0] is not shared and shared.traceparent is None
