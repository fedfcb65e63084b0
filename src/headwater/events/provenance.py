"""Provenance of events the platform's own connectors publish: an HMAC over the envelope.

Change events drive writes that run with the pipeline's privileges, so a pipeline applies only
events its connector wrote. The connector publishes through :meth:`Provenance.signing_bus`:
every envelope leaves with one last member ``"hwsig"``, ``base64url(HMAC-SHA256(key, topic NUL
envelope-without-hwsig))`` (43 characters). :meth:`Provenance.verify` checks the exact suffix
of the stored bytes, so there is nothing to canonicalise: bytes are verified as the bus holds
them, a dead letter replayed bytes-intact still verifies, and an event copied to another topic
does not (the topic is under the MAC).

The key is derived from the platform secret (``platform.provenance``); anyone who can publish
to the bus without it -- a principal with raw bus credentials, a replay of forged bytes --
produces events that fail :meth:`verify` and are dead-lettered by the pipeline, never applied.
The MAC does not hide anything: it is a signature, not encryption (PII is sealed separately,
see :mod:`headwater.events.sealing`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable
from typing import Any

from headwater.errors import InvalidInput
from headwater.events.bus.base import PublishResult, split_batch
from headwater.events.bus.errors import EventTooLarge
from headwater.events.envelope import Event

__all__ = ["SIGNATURE_ATTRIBUTE", "Provenance", "SigningBus"]

SIGNATURE_ATTRIBUTE = "hwsig"
"""The CloudEvents extension attribute carrying the MAC (always the envelope's last member)."""

_HEAD = b',"hwsig":"'
_SIG_LEN = 43  # base64url of 32 bytes, unpadded
_TAIL = b'"}'
_SUFFIX = len(_HEAD) + _SIG_LEN + len(_TAIL)


class Provenance:
    """Signs and verifies envelopes for one identity (``headwater-cdc``) under one key."""

    def __init__(self, key: bytes, *, identity: str = "headwater-cdc") -> None:
        if not isinstance(key, bytes | bytearray) or len(key) < 32:
            raise InvalidInput("a provenance key must be at least 32 random bytes")
        self.__key = bytes(key)
        self.identity = identity
        """The system identity that signs (shown in dead-letter reasons and audit)."""

    def __repr__(self) -> str:
        return f"Provenance(identity={self.identity!r})"

    def _mac(self, topic: str, body: bytes) -> bytes:
        digest = hmac.new(self.__key, topic.encode() + b"\x00" + body, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest)[:_SIG_LEN]

    def sign(self, topic: str, raw: bytes) -> bytes:
        """``raw`` (a JSON object's bytes) with ``"hwsig"`` appended as its last member."""
        if not raw.endswith(b"}"):
            raise InvalidInput("only a JSON object envelope can be signed")
        return raw[:-1] + _HEAD + self._mac(topic, raw) + _TAIL

    def verify(self, topic: str, value: bytes) -> bool:
        """Whether ``value`` was signed by this identity for ``topic`` (constant time)."""
        if len(value) <= _SUFFIX or value[-_SUFFIX:-_SUFFIX + len(_HEAD)] != _HEAD or not value.endswith(_TAIL):
            return False
        body = value[:-_SUFFIX] + b"}"
        return hmac.compare_digest(self._mac(topic, body), value[-_SIG_LEN - len(_TAIL):-len(_TAIL)])

    def signing_bus(self, bus: Any) -> SigningBus:
        """``bus`` with every published envelope signed (what connectors publish through)."""
        return SigningBus(bus, self)


class _Signed(Event):
    """An event whose serialised form is fixed (the signed bytes)."""

    __slots__ = ("_raw",)

    def to_json(self, *, max_bytes: int | None = None) -> bytes:
        raw: bytes = self._raw  # type: ignore[attr-defined]
        if max_bytes is not None and len(raw) > max_bytes:
            raise EventTooLarge(f"event {self.id} is {len(raw)} bytes; the limit is {max_bytes}",
                                event_id=self.id, size=len(raw), limit=max_bytes)
        return raw


_FIELDS = tuple(Event.__dataclass_fields__)


def _signed(event: Event, raw: bytes) -> Event:
    out = object.__new__(_Signed)
    put = object.__setattr__
    for name in _FIELDS:
        put(out, name, getattr(event, name))
    put(out, "_raw", raw)
    return out


class SigningBus:
    """A bus whose ``publish``/``publish_many`` sign every envelope (see :class:`Provenance`).

    Everything else is the wrapped bus's. ``publish_raw`` is refused: raw bytes are not an
    envelope this identity wrote.
    """

    def __init__(self, bus: Any, provenance: Provenance) -> None:
        self.bus = bus
        self.provenance = provenance
        self.capabilities = bus.capabilities

    def __repr__(self) -> str:
        return f"SigningBus({self.bus!r}, identity={self.provenance.identity!r})"

    def __getattr__(self, name: str) -> Any:
        return getattr(self.bus, name)

    def publish(self, topic: str, event: Event, key: str | None = None) -> PublishResult:
        """Sign and publish one event."""
        return self.publish_many(topic, [(event, key)])[0]

    def publish_many(self, topic: str, events: Iterable[Event | tuple[Event, str | None]]) -> list[PublishResult]:
        """Sign and publish a batch (the wrapped bus's semantics otherwise)."""
        limit = self.capabilities.max_event_bytes
        sign = self.provenance.sign
        batch = [(_signed(ev, sign(topic, ev.to_json(max_bytes=limit))), key) for ev, key in split_batch(events)]
        return self.bus.publish_many(topic, batch)  # type: ignore[no-any-return]

    def publish_raw(self, topic: str, value: bytes, key: str | None = None, *, msg_id: str | None = None) -> Any:
        """Refused: a connector publishes envelopes only."""
        raise InvalidInput("a signing bus publishes envelopes only (publish/publish_many)")
