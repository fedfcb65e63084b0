"""Opaque, signed keyset cursors.

A cursor is ``base64url(json payload) . base64url(HMAC-SHA256)``. The payload holds the query
fingerprint, the principal, the sort-key values of the last row handed out, how many rows with
exactly those values were already handed out (so duplicate keys never straddle a page boundary),
and an expiry. A cursor is refused when its signature does not verify (tampered), when it has
expired, or when it was issued for another query or principal (foreign); the message never
reveals the key values it holds.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any

from headwater.errors import InvalidCursor

__all__ = ["CursorCodec", "CursorState"]


@dataclass(frozen=True, slots=True)
class CursorState:
    """Where the next page starts."""

    fingerprint: str
    principal: str
    last: tuple[Any, ...]
    ties: int
    page_size: int


def _enc(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dt.datetime):
        return {"t": "ts", "v": value.isoformat()}
    if isinstance(value, dt.date):
        return {"t": "d", "v": value.isoformat()}
    if isinstance(value, dt.time):
        return {"t": "tm", "v": value.isoformat()}
    if isinstance(value, decimal.Decimal):
        return {"t": "dec", "v": str(value)}
    if isinstance(value, bytes):
        return {"t": "b", "v": base64.b64encode(value).decode()}
    raise InvalidCursor(f"cannot page on a value of type {type(value).__name__}")


def _dec(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    t, v = value.get("t"), value.get("v")
    if t == "ts":
        return dt.datetime.fromisoformat(v)
    if t == "d":
        return dt.date.fromisoformat(v)
    if t == "tm":
        return dt.time.fromisoformat(v)
    if t == "dec":
        return decimal.Decimal(v)
    if t == "b":
        return base64.b64decode(v)
    raise InvalidCursor("cursor is malformed")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class CursorCodec:
    """Signs and verifies cursors with one secret key."""

    def __init__(self, secret: bytes, *, ttl_s: int = 24 * 3600) -> None:
        if len(secret) < 16:
            raise ValueError("cursor secret must be at least 16 bytes")
        self._secret = secret
        self.ttl_s = ttl_s

    def __repr__(self) -> str:
        return f"CursorCodec(ttl_s={self.ttl_s})"

    def _sign(self, body: bytes) -> bytes:
        return hmac.new(self._secret, body, hashlib.sha256).digest()

    def encode(self, state: CursorState) -> str:
        """A signed token for ``state``."""
        payload = {
            "f": state.fingerprint,
            "p": state.principal,
            "k": [_enc(v) for v in state.last],
            "n": state.ties,
            "s": state.page_size,
            "e": int(time.time()) + self.ttl_s,
        }
        body = json.dumps(payload, separators=(",", ":")).encode()
        return f"{_b64(body)}.{_b64(self._sign(body))}"

    def decode(self, token: str, *, fingerprint: str, principal: str) -> CursorState:
        """Verify a token and return its state, or raise ``InvalidCursor``."""
        try:
            body_b64, sig_b64 = token.strip().split(".")
            body, sig = _unb64(body_b64), _unb64(sig_b64)
        except (ValueError, TypeError):
            raise InvalidCursor("page cursor is malformed; pass the next_cursor of a previous page") from None
        if not hmac.compare_digest(sig, self._sign(body)):
            raise InvalidCursor("page cursor signature does not verify (tampered or from another platform)")
        try:
            payload = json.loads(body)
        except ValueError:
            raise InvalidCursor("page cursor is malformed") from None
        if payload.get("e", 0) < time.time():
            raise InvalidCursor("page cursor has expired; run the query again from the first page")
        if payload.get("p") != principal:
            raise InvalidCursor("page cursor was issued to another principal")
        if payload.get("f") != fingerprint:
            raise InvalidCursor("page cursor belongs to a different query or parameters")
        return CursorState(
            fingerprint=payload["f"],
            principal=payload["p"],
            last=tuple(_dec(v) for v in payload["k"]),
            ties=int(payload["n"]),
            page_size=int(payload["s"]),
        )
