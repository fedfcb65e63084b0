"""Change events built on the connectors' hot path, with their JSON encoded once.

A connector builds thousands of events a second from values it produced itself (constant
``type``/``source``, deterministic ids, an aware commit time, fixed extension names), so the
envelope's checks in ``Event.__post_init__`` cannot fail for them and are skipped. The
connector also knows the shape of ``data`` (the Debezium envelope), so it writes its JSON from a
per-table template, encoding only the row images: :class:`ChangeEvent` carries that text and
hands it to the bus instead of encoding the whole envelope again. ``data`` holds the same
document as a dict, so anything that reads or copies the event (telemetry stamping a
``traceparent`` makes a plain :class:`~headwater.events.envelope.Event`) sees the same values.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from headwater.events.envelope import Event

__all__ = ["ChangeEvent", "encode", "event_json", "ext_json", "make_event", "quote"]

_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
quote: Any = getattr(json.encoder, "c_encode_basestring", None) or json.encoder.py_encode_basestring
"""JSON string literal of a ``str`` (the C encoder's, as ``ensure_ascii=False`` uses)."""
_c_make_encoder = getattr(json.encoder, "c_make_encoder", None)


def _build_encode() -> Any:
    if _c_make_encoder is None:  # pragma: no cover - CPython always has the C encoder
        return _ENCODER.encode
    # The C encoder built once (JSONEncoder.encode builds one per call); no cycle check: the
    # values are fresh trees of JSON types.
    c_encode = _c_make_encoder(None, _ENCODER.default, quote, None, ":", ",", False, False, True)

    def encode(value: Any) -> str:
        if value.__class__ is str:
            return quote(value)  # type: ignore[no-any-return]
        return "".join(c_encode(value, 0))

    return encode


encode = _build_encode()
"""Compact JSON text of a value (the envelope's own encoder settings)."""

_DEFAULTS = tuple(
    (f.name, f.default) for f in dataclasses.fields(Event)
    if f.default is not dataclasses.MISSING and f.name not in ("type", "source", "data", "subject")
)


class ChangeEvent(Event):
    """An :class:`~headwater.events.envelope.Event` that carries its own JSON encoding."""

    __slots__ = ("_raw",)

    def to_json(self, *, max_bytes: int | None = None) -> bytes:
        """The pre-built encoding (the generic one when there is none or it is too large, so
        the usual errors are raised)."""
        raw: bytes | None = getattr(self, "_raw", None)
        if raw is None or (max_bytes is not None and len(raw) > max_bytes):
            return Event.to_json(self, max_bytes=max_bytes)
        return raw

    def _with_trace(self, traceparent: str | None, tracestate: str | None) -> Event:
        """A copy carrying the trace context, its encoding spliced rather than rebuilt (the
        pre-encoded envelope never holds trace attributes, so they are appended)."""
        new = Event._with_trace(self, traceparent, tracestate)
        raw: bytes | None = getattr(self, "_raw", None)
        if raw is None or not raw.endswith(b"}") or self.traceparent is not None:
            return new
        extra = b""
        if traceparent is not None:
            extra += b',"traceparent":' + encode(traceparent).encode()
        if tracestate is not None:
            extra += b',"tracestate":' + encode(tracestate).encode()
        fast = object.__new__(ChangeEvent)
        for f in dataclasses.fields(Event):
            object.__setattr__(fast, f.name, getattr(new, f.name))
        object.__setattr__(fast, "_raw", raw[:-1] + extra + b"}")
        return fast


def make_event(
    type_: str, source: str, data: Any, event_id: str, subject: str | None, time: datetime,
    extensions: Mapping[str, str], raw: bytes,
) -> ChangeEvent:
    """A :class:`ChangeEvent` from trusted values and their encoding ``raw`` (see
    :func:`event_json`)."""
    ev = object.__new__(ChangeEvent)
    put = object.__setattr__
    for name, value in _DEFAULTS:
        put(ev, name, value)
    put(ev, "type", type_)
    put(ev, "source", source)
    put(ev, "data", data)
    put(ev, "id", event_id)
    put(ev, "subject", subject)
    put(ev, "time", time)
    put(ev, "classification", ())
    put(ev, "extensions", extensions)
    put(ev, "_raw", raw)
    return ev


def ext_json(extensions: Mapping[str, str]) -> str:
    """The extension attributes as JSON members (``,"pk":"id"``), to splice into an envelope."""
    return "".join(f',"{k}":{encode(v)}' for k, v in extensions.items())


def event_json(type_: str, source: str, event_id: str, subject: str | None, time_iso: str,
               extensions: Mapping[str, str], data_json: str) -> bytes:
    """The CloudEvents structured-mode JSON that ``Event.to_json`` would write for these values
    (``data_json`` is the payload already encoded)."""
    subj = "" if subject is None else f',"subject":{quote(subject)}'
    return (f'{{"specversion":"1.0","id":{quote(event_id)},"source":{quote(source)},"type":{quote(type_)},'
            f'"time":"{time_iso}","datacontenttype":"application/json"{subj}{ext_json(extensions)},'
            f'"data":{data_json}}}').encode()
