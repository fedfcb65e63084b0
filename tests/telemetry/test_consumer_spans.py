"""EventConsumer process spans: one per run of events sharing a producer context, each handler
call under its own event's trace; failures marked; consumed messages counted."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from opentelemetry import trace
from opentelemetry.trace import StatusCode

from headwater.events.bus import connect
from headwater.events.consumer import EventConsumer, RetryPolicy
from headwater.events.dlq import DeadLetterStore
from headwater.events.envelope import Event
from headwater.telemetry import messaging


@pytest.fixture
def bus(tmp_path):
    b = connect(f"embedded:{tmp_path / 'events.db'}")
    b.create_topic("in")
    yield b
    b.close()


@pytest.fixture
def dlq(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'meta.db'}")
    store = DeadLetterStore(engine, create_tables=True)
    yield store
    engine.dispose()


def test_runs_of_one_publish_share_a_span_and_others_get_their_own(bus, dlq, spans, metric_points) -> None:
    messaging.publish_many(bus, "in", [(Event(type="t", source="/t", data={"i": i}), None) for i in range(3)])
    single = Event(type="t", source="/t", data={"i": 3})
    single_id = single.id
    messaging.publish(bus, "in", single)
    seen: list[tuple[int, int]] = []

    def handle(event: Event) -> None:  # records which trace each call ran in
        ctx = trace.get_current_span().get_span_context()
        seen.append((event.data["i"], ctx.trace_id))
        assert f"{ctx.trace_id:032x}" == event.traceparent[3:35]

    consumer = EventConsumer(bus, "in", "g", handle, dead_letters=dlq)
    assert consumer.run(max_messages=4, idle_timeout=2, poll_timeout=0.2).handled == 4
    consumer.close()
    publishes = [s for s in spans.get_finished_spans() if s.name == "publish in"]
    processes = [s for s in spans.get_finished_spans() if s.name == "process in"]
    assert len(publishes) == 2
    batch_pub = next(p for p in publishes if "messaging.batch.message_count" in p.attributes)
    single_pub = next(p for p in publishes if "messaging.message.id" in p.attributes)
    # the consumer starts careful (one message), then fetches the rest: [0], [1, 2], [3]
    counts = sorted(s.attributes.get("messaging.batch.message_count", 1) for s in processes)
    assert counts == [1, 1, 2]
    for proc in processes:
        expected = single_pub if proc.attributes.get("messaging.message.id") == single_id else batch_pub
        assert proc.parent.span_id == expected.context.span_id
    assert [i for i, _ in seen] == [0, 1, 2, 3]
    consumed = [p for p in metric_points("messaging.client.consumed.messages")
                if p.attributes.get("messaging.consumer.group.name") == "g"]
    assert consumed and sum(p.value for p in consumed) >= 4


def test_a_failing_call_marks_its_process_span(bus, dlq, spans) -> None:
    messaging.publish(bus, "in", Event(type="t", source="/t", data={"bad": True}))

    def handle(event: Event) -> None:
        raise ValueError("value zqv-secret rejected")

    consumer = EventConsumer(bus, "in", "g", handle, dead_letters=dlq, retry=RetryPolicy(max_attempts=1))
    assert consumer.run(max_messages=1, idle_timeout=2, poll_timeout=0.2).dead_lettered == 1
    consumer.close()
    (proc,) = [s for s in spans.get_finished_spans() if s.name == "process in"]
    assert proc.status.status_code == StatusCode.ERROR
    assert proc.attributes["error.type"] == "ValueError"
    assert "zqv" not in str(proc.status.description) and not proc.events
