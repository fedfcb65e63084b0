"""The CloudEvents envelope: attributes, extensions, JSON round trips and typed errors."""

from __future__ import annotations

import json
import pickle
from datetime import UTC, datetime, timedelta, timezone

import pytest

from headwater.errors import EventBusError, InvalidInput
from headwater.events.envelope import Event, EventTooLarge, InvalidEvent, new_traceparent


def test_defaults_and_round_trip():
    tp = new_traceparent()
    ev = Event(
        type="com.example.order.created",
        source="/shop/orders",
        subject="o-1",
        data={"order_id": 1, "email": "a@example.com"},
        dataschema="registry:orders-value/1",
        schemaid=7,
        traceparent=tp,
        tracestate="vendor=1",
        classification=("pii", "email"),
        extensions={"tenant": "acme"},
    )
    assert len(ev.id) == 32 and ev.specversion == "1.0"
    assert ev.time.tzinfo is not None
    doc = json.loads(ev.to_json())
    assert doc["specversion"] == "1.0" and doc["classification"] == "pii,email"
    assert doc["tenant"] == "acme" and doc["schemaid"] == 7 and doc["traceparent"] == tp
    back = Event.from_json(ev.to_json())
    assert back == ev


def test_bytes_payload_uses_data_base64():
    ev = Event(type="t", source="/s", data=b"\x00\x01binary", datacontenttype="application/octet-stream")
    doc = json.loads(ev.to_json())
    assert "data" not in doc and doc["data_base64"] == "AAFiaW5hcnk="
    assert Event.from_json(ev.to_json()).data == b"\x00\x01binary"


def test_time_keeps_offset():
    t = datetime(2024, 5, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    back = Event.from_json(Event(type="t", source="/s", time=t).to_json())
    assert back.time == t and back.time.utcoffset() == timedelta(hours=2)
    z = Event.from_json(b'{"specversion":"1.0","id":"1","source":"/s","type":"t","time":"2024-05-01T10:00:00Z"}')
    assert z.time == datetime(2024, 5, 1, 10, tzinfo=UTC)


@pytest.mark.parametrize(
    "raw, fragment",
    [
        (b"not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"specversion":"1.0","id":"1","source":"/s"}', "'type'"),
        (b'{"specversion":"0.3","id":"1","source":"/s","type":"t"}', "specversion"),
        (b'{"specversion":"1.0","id":"","source":"/s","type":"t"}', "'id'"),
        (b'{"specversion":"1.0","id":"1","source":"/s","type":"t","time":"yesterday"}', "RFC 3339"),
        (b'{"specversion":"1.0","id":"1","source":"/s","type":"t","time":"2024-01-01T00:00:00"}', "UTC offset"),
        (b'{"specversion":"1.0","id":"1","source":"/s","type":"t","traceparent":"xyz"}', "traceparent"),
        (b'{"specversion":"1.0","id":"1","source":"/s","type":"t","schemaid":"7"}', "schemaid"),
        (b'{"specversion":"1.0","id":"1","source":"/s","type":"t","subject":5}', "subject"),
        (b'{"specversion":"1.0","id":"1","source":"/s","type":"t","data":1,"data_base64":"AA=="}', "not both"),
        (b'{"specversion":"1.0","id":"1","source":"/s","type":"t","Bad-Ext":1}', "extension"),
    ],
)
def test_malformed_events_raise_invalid_event(raw, fragment):
    with pytest.raises(InvalidEvent) as info:
        Event.from_json(raw)
    assert fragment in str(info.value)
    assert isinstance(info.value, EventBusError) and isinstance(info.value, InvalidInput)


def test_zero_traceparent_rejected():
    with pytest.raises(InvalidEvent):
        Event(type="t", source="/s", traceparent="00-" + "0" * 32 + "-" + "1" * 16 + "-01")


def test_too_large_and_unserialisable():
    ev = Event(type="t", source="/s", data={"blob": "x" * 2000})
    with pytest.raises(EventTooLarge) as info:
        ev.to_json(max_bytes=1000)
    assert info.value.size > 1000 and info.value.limit == 1000
    with pytest.raises(InvalidEvent, match="not JSON-serialisable"):
        Event(type="t", source="/s", data={"x": object()}).to_json()


def test_errors_pickle():
    err = EventTooLarge("too big", size=5, limit=1)
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is EventTooLarge and back.size == 5
