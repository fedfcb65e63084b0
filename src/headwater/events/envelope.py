"""The event envelope: CloudEvents 1.0 attributes plus Headwater's extensions.

An :class:`Event` carries the CloudEvents 1.0 context attributes (``id``, ``source``,
``type``, ``specversion``, ``subject``, ``time``, ``datacontenttype``, ``dataschema``) and
three extension attributes, named per the CloudEvents naming rules (lower-case letters and
digits only):

* ``schemaid`` -- the registry's global schema id of ``data`` (an integer);
* ``traceparent`` / ``tracestate`` -- W3C Trace Context (the CloudEvents distributed tracing
  extension);
* ``classification`` -- classification tags of the payload (``"pii,email"``), comma-joined on
  the wire, a tuple in Python.

On the wire an event is a CloudEvents *structured mode* JSON document (UTF-8): attributes at
the top level, the payload under ``data`` (or ``data_base64`` for bytes). Other extension
attributes survive a round trip in :attr:`Event.extensions`.

:func:`Event.from_json` raises :class:`InvalidEvent` (the *deserialise* stage of a dead
letter) for anything that is not a valid CloudEvents 1.0 JSON event.
"""

from __future__ import annotations

import base64
import json
import os
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from headwater.events.bus.errors import EventTooLarge, InvalidEvent

__all__ = [
    "MAX_EVENT_BYTES",
    "SPECVERSION",
    "Event",
    "EventTooLarge",
    "InvalidEvent",
    "new_traceparent",
]

SPECVERSION = "1.0"
"""The CloudEvents version this envelope implements."""

MAX_EVENT_BYTES = 1024 * 1024
"""Default largest serialised event a bus accepts (1 MiB, NATS' default max payload)."""

_CORE = frozenset(
    (
        "id",
        "source",
        "type",
        "specversion",
        "subject",
        "time",
        "datacontenttype",
        "dataschema",
        "data",
        "data_base64",
        "schemaid",
        "traceparent",
        "tracestate",
        "classification",
    )
)
_STRING_ATTRS = ("subject", "dataschema", "datacontenttype", "traceparent", "tracestate")
_EXT_NAME = re.compile(r"^[a-z0-9]{1,20}$")
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_decode = json.JSONDecoder().decode


def _new_id() -> str:
    # 128 random bits, like uuid4 but without building a UUID object (hot path)
    return os.urandom(16).hex()


def _now() -> datetime:
    return datetime.now(UTC)


def new_traceparent() -> str:
    """A fresh W3C ``traceparent`` (version 00, sampled)."""
    return f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"


@dataclass(frozen=True, slots=True)
class Event:
    """One event: CloudEvents 1.0 attributes, Headwater extensions and the payload.

    ``id`` defaults to a random UUID (hex) and ``time`` to now (UTC). Construction checks the
    attributes and raises :class:`InvalidEvent`; the payload is checked against its schema by
    the producer, not here.
    """

    type: str
    """Kind of occurrence, reverse-DNS by convention (``com.example.order.created``)."""
    source: str
    """URI-reference of the producer context (``/shop/orders``)."""
    data: Any = None
    """The payload: JSON-compatible values, or ``bytes`` (sent as ``data_base64``)."""
    id: str = field(default_factory=_new_id)
    """Unique per ``source``; consumers and sinks de-duplicate on it."""
    subject: str | None = None
    """What the event is about within the source (an order id); the default partition key."""
    time: datetime = field(default_factory=_now)
    """When the occurrence happened (timezone-aware)."""
    datacontenttype: str = "application/json"
    dataschema: str | None = None
    """URI of the payload's schema (``registry:<subject>/<version>`` for registry schemas)."""
    specversion: str = SPECVERSION
    schemaid: int | None = None
    """Global schema id of ``data`` in the schema registry."""
    traceparent: str | None = None
    """W3C trace context ``traceparent`` header value."""
    tracestate: str | None = None
    classification: tuple[str, ...] = ()
    """Classification tags of the payload (``("pii",)``)."""
    extensions: Mapping[str, Any] = field(default_factory=dict)
    """Other CloudEvents extension attributes (lower-case alphanumeric names)."""

    def __post_init__(self) -> None:
        for name in ("id", "source", "type"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise InvalidEvent(f"event attribute {name!r} must be a non-empty string", attribute=name)
        if self.specversion != SPECVERSION:
            raise InvalidEvent(
                f"specversion must be {SPECVERSION!r}, not {self.specversion!r}", attribute="specversion"
            )
        if not isinstance(self.time, datetime) or self.time.tzinfo is None:
            raise InvalidEvent("event time must be a timezone-aware datetime", attribute="time")
        if self.schemaid is not None and (
            not isinstance(self.schemaid, int) or isinstance(self.schemaid, bool)
        ):
            raise InvalidEvent("schemaid must be an integer", attribute="schemaid")
        if self.traceparent is not None:
            m = _TRACEPARENT.match(self.traceparent) if isinstance(self.traceparent, str) else None
            if m is None or m.group(1) == "0" * 32 or m.group(2) == "0" * 16:
                raise InvalidEvent(
                    "traceparent must be a W3C trace context value (00-<32 hex>-<16 hex>-<2 hex>)",
                    attribute="traceparent",
                )
        if isinstance(self.classification, str):
            object.__setattr__(self, "classification", _split_tags(self.classification))
        for name in self.extensions:
            if not isinstance(name, str) or not _EXT_NAME.match(name) or name in _CORE:
                raise InvalidEvent(
                    f"extension attribute name {name!r} must be 1-20 lower-case letters or digits "
                    "and not a core attribute",
                    attribute=name,
                )

    # -- conversions -------------------------------------------------------------------------
    def with_(self, **changes: Any) -> Event:
        """A copy with ``changes`` applied (the event is immutable)."""
        return replace(self, **changes)

    def _evolve(self, **changes: Any) -> Event:
        """A copy with already-checked ``changes``, skipping validation (hot paths)."""
        new = object.__new__(Event)
        setter = object.__setattr__
        for name in _FIELDS:
            setter(new, name, changes[name] if name in changes else getattr(self, name))
        return new

    def _with_trace(self, traceparent: str | None, tracestate: str | None) -> Event:
        """A copy carrying a new (already well-formed) trace context (publish spans)."""
        new = object.__new__(Event)
        setter = object.__setattr__
        for name in _UNTRACED:
            setter(new, name, getattr(self, name))
        setter(new, "traceparent", traceparent)
        setter(new, "tracestate", tracestate)
        return new

    def to_dict(self) -> dict[str, Any]:
        """The CloudEvents structured-mode JSON object (attributes plus ``data``)."""
        out: dict[str, Any] = {
            "specversion": self.specversion,
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "time": self.time.isoformat(),
            "datacontenttype": self.datacontenttype,
        }
        if self.subject is not None:
            out["subject"] = self.subject
        if self.dataschema is not None:
            out["dataschema"] = self.dataschema
        if self.schemaid is not None:
            out["schemaid"] = self.schemaid
        if self.traceparent is not None:
            out["traceparent"] = self.traceparent
        if self.tracestate is not None:
            out["tracestate"] = self.tracestate
        if self.classification:
            out["classification"] = ",".join(self.classification)
        if self.extensions:
            out.update(self.extensions)
        if isinstance(self.data, bytes | bytearray | memoryview):
            out["data_base64"] = base64.b64encode(bytes(self.data)).decode("ascii")
        elif self.data is not None:
            out["data"] = self.data
        return out

    def to_json(self, *, max_bytes: int | None = None) -> bytes:
        """UTF-8 JSON bytes; :class:`EventTooLarge` past ``max_bytes``, :class:`InvalidEvent`
        when the payload is not JSON-serialisable."""
        try:
            raw = _dumps(self.to_dict()).encode()
        except (TypeError, ValueError) as err:
            raise InvalidEvent(
                f"event {self.id}: payload is not JSON-serialisable ({err})", event_id=self.id
            ) from None
        if max_bytes is not None and len(raw) > max_bytes:
            raise EventTooLarge(
                f"event {self.id} is {len(raw)} bytes; the limit is {max_bytes}",
                event_id=self.id,
                size=len(raw),
                limit=max_bytes,
            )
        return raw

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Event:
        """Build from a structured-mode JSON object; :class:`InvalidEvent` if it is not one."""
        if not isinstance(doc, Mapping):
            raise InvalidEvent("an event must be a JSON object")
        try:
            specversion = doc["specversion"]
            event_id, source, etype = doc["id"], doc["source"], doc["type"]
        except KeyError as err:
            raise InvalidEvent(f"event lacks the required attribute {err.args[0]!r}") from None
        raw_time = doc.get("time")
        if raw_time is None:
            time = _now()
        else:
            try:
                time = datetime.fromisoformat(raw_time)
            except (TypeError, ValueError):
                raise InvalidEvent(f"event time {raw_time!r} is not RFC 3339", attribute="time") from None
            if time.tzinfo is None:
                raise InvalidEvent("event time must carry a UTC offset", attribute="time")
        if "data_base64" in doc:
            if "data" in doc:
                raise InvalidEvent("an event carries 'data' or 'data_base64', not both")
            try:
                data: Any = base64.b64decode(doc["data_base64"], validate=True)
            except (TypeError, ValueError):
                raise InvalidEvent("data_base64 is not valid base64") from None
        else:
            data = doc.get("data")
        tags = doc.get("classification")
        if tags is not None and not isinstance(tags, str | list | tuple):
            raise InvalidEvent("classification must be a comma-separated string")
        extra = doc.keys() - _CORE
        extensions = {k: doc[k] for k in extra} if extra else {}
        get = doc.get
        for name in _STRING_ATTRS:
            value = get(name)
            if value is not None and value.__class__ is not str and not isinstance(value, str):
                raise InvalidEvent(f"event attribute {name!r} must be a string", attribute=name)
        return cls(
            type=etype,
            source=source,
            data=data,
            id=event_id,
            subject=doc.get("subject"),
            time=time,
            datacontenttype=doc.get("datacontenttype") or "application/json",
            dataschema=doc.get("dataschema"),
            specversion=specversion,
            schemaid=doc.get("schemaid"),
            traceparent=doc.get("traceparent"),
            tracestate=doc.get("tracestate"),
            classification=_split_tags(tags) if isinstance(tags, str) else tuple(tags or ()),
            extensions=extensions,
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> Event:
        """Parse structured-mode JSON; :class:`InvalidEvent` for bad JSON or attributes."""
        try:
            doc = _decode(raw.decode() if isinstance(raw, bytes | bytearray) else raw)
        except (TypeError, ValueError) as err:
            raise InvalidEvent(f"event is not valid JSON: {err}") from None
        return cls.from_dict(doc)


def _split_tags(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


_FIELDS = tuple(Event.__dataclass_fields__)
_UNTRACED = tuple(f for f in _FIELDS if f not in ("traceparent", "tracestate"))
