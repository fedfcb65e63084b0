"""The connectors' pre-encoded change events say exactly what the generic envelope encoding says."""

from __future__ import annotations

import json
import time

import pytest

from headwater.cdc import PostgresCDC
from headwater.cdc._events import ChangeEvent
from headwater.events.bus import connect
from headwater.events.envelope import Event
from tests.cdc.fix_cdc import sql


class _RecordingBus:
    """The real bus, keeping every event object it was asked to publish."""

    def __init__(self, bus) -> None:
        self._bus = bus
        self.published: list = []

    def __getattr__(self, name):
        return getattr(self._bus, name)

    def publish_many(self, topic, items):
        self.published.extend(ev for ev, _ in items)
        return self._bus.publish_many(topic, items)


@pytest.mark.postgres
def test_stream_events_encode_like_the_envelope(cdc_dsn, names, tmp_path) -> None:
    t = names.table
    sql(cdc_dsn, f'CREATE TABLE public."{t}" (id int PRIMARY KEY, s text, n numeric(8,3), tags text[], '
                 "doc jsonb, at timestamptz, b bytea, f float8, ok boolean)")
    bus = _RecordingBus(connect(f"embedded:{tmp_path / 'events.db'}"))
    cdc = PostgresCDC(cdc_dsn, slot=names.slot, publication=names.publication, tables=[t], bus=bus,
                      snapshot=False)
    cdc.run(idle_timeout=0.1)
    sql(cdc_dsn, f"""INSERT INTO public."{t}" VALUES
        (1, 'quote " and \\ and é ☃ and newline' || chr(10), 12.345, '{{a,"b c"}}', '{{"k": [1, null, "x"]}}',
         '2024-02-29 12:34:56.789+00', '\\x00ff', 'NaN', true),
        (2, NULL, NULL, NULL, NULL, NULL, NULL, -1.5e-7, false)""")
    sql(cdc_dsn, f"UPDATE public.\"{t}\" SET s = 'x' WHERE id = 2")
    sql(cdc_dsn, f'DELETE FROM public."{t}" WHERE id = 1')
    deadline = time.monotonic() + 20
    fast: list = []
    while len(fast) < 4 and time.monotonic() < deadline:  # a loaded machine may need more rounds
        cdc.run(idle_timeout=0.3)
        fast = [e for e in bus.published if isinstance(e, ChangeEvent)]
    assert len(fast) == 4
    for ev in fast:
        assert json.loads(ev.to_json()) == json.loads(Event.to_json(ev))
        back = Event.from_json(ev.to_json())
        assert back.data == ev.data and back.subject == ev.subject and back.extensions == ev.extensions
        assert back.id == ev.id and back.time == ev.time
    cdc.drop()
    bus.close()


def test_trace_stamp_keeps_the_fast_encoding() -> None:
    from headwater.cdc._events import make_event

    base = Event(type="io.headwater.cdc.change", source="/s", data={"op": "c", "after": {"id": 1}},
                 subject="1", extensions={"pk": "id"})
    ev = make_event(base.type, base.source, base.data, base.id, base.subject, base.time, base.extensions,
                    Event.to_json(base))
    tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    stamped = ev._with_trace(tp, "k=v")
    assert isinstance(stamped, ChangeEvent)
    assert json.loads(stamped.to_json()) == json.loads(Event.to_json(stamped))
    assert Event.from_json(stamped.to_json()).traceparent == tp
    assert ev.traceparent is None  # the original is untouched
