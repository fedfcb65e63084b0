"""Opaque, encrypted keyset cursors (AES-256-GCM).

A cursor is ``hwc1.`` followed by base64url(nonce || ciphertext || tag): the payload (query
fingerprint, principal, the sort-key values of the last row handed out, how many rows with
exactly those values were already handed out, the page size and an expiry) is encrypted and
authenticated with AES-GCM under a key derived from the platform's cursor secret, so nobody can
read the key values of the last row from a token (they may be values of rows or columns the
holder is about to be refused, or masked values' sort position) nor change them.

A cursor is refused with :class:`~headwater.errors.InvalidCursor` when it is not a string, is
malformed or too long, does not decrypt (tampered, or from another platform), has expired, or
was issued for another query or principal (foreign); the message never reveals what it holds.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import decimal
import hashlib
import hmac
import json
import os
import time
from dataclasses import dataclass
from typing import Any

from headwater.errors import InvalidCursor

__all__ = ["MAX_CURSOR_CHARS", "CursorCodec", "CursorState"]

MAX_CURSOR_CHARS = 8192
"""Longer tokens are refused before any work (the service caps request fields at this too)."""

_PREFIX = "hwc1."
_AAD = b"headwater-cursor/v1"
_NONCE = 12


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
    if not isinstance(v, str):
        raise InvalidCursor("page cursor is malformed")
    try:
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
    except (ValueError, ArithmeticError):
        raise InvalidCursor("page cursor is malformed") from None
    raise InvalidCursor("page cursor is malformed")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class CursorCodec:
    """Encrypts and decrypts cursors with one key (derived from ``secret``)."""

    def __init__(self, secret: bytes, *, ttl_s: int = 24 * 3600) -> None:
        if len(secret) < 16:
            raise ValueError("cursor secret must be at least 16 bytes")
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        # A key of its own for the AEAD (the secret may serve other purposes elsewhere).
        self._aead = AESGCM(hmac.new(bytes(secret), b"headwater.cursor.aes-gcm", hashlib.sha256).digest())
        self.ttl_s = ttl_s

    def __repr__(self) -> str:
        return f"CursorCodec(ttl_s={self.ttl_s})"

    def encode(self, state: CursorState) -> str:
        """An encrypted token for ``state``."""
        payload = {
            "f": state.fingerprint,
            "p": state.principal,
            "k": [_enc(v) for v in state.last],
            "n": state.ties,
            "s": state.page_size,
            "e": int(time.time()) + self.ttl_s,
        }
        body = json.dumps(payload, separators=(",", ":")).encode()
        nonce = os.urandom(_NONCE)
        return _PREFIX + _b64(nonce + self._aead.encrypt(nonce, body, _AAD))

    def decode(self, token: Any, *, fingerprint: str, principal: str) -> CursorState:
        """Decrypt a token and return its state, or raise ``InvalidCursor``."""
        from cryptography.exceptions import InvalidTag

        if not isinstance(token, str):
            raise InvalidCursor("page cursor must be a string: the next_cursor of a previous page")
        token = token.strip()
        if len(token) > MAX_CURSOR_CHARS or not token.startswith(_PREFIX):
            raise InvalidCursor("page cursor is malformed; pass the next_cursor of a previous page")
        try:
            raw = _unb64(token[len(_PREFIX):])
        except (ValueError, binascii.Error):
            raise InvalidCursor("page cursor is malformed; pass the next_cursor of a previous page") from None
        if len(raw) < _NONCE + 16:
            raise InvalidCursor("page cursor is malformed; pass the next_cursor of a previous page")
        try:
            body = self._aead.decrypt(raw[:_NONCE], raw[_NONCE:], _AAD)
        except InvalidTag:
            raise InvalidCursor("page cursor does not verify (tampered or from another platform)") from None
        try:
            payload = json.loads(body)
            expires, owner, query = payload["e"], payload["p"], payload["f"]
            keys, ties, size = payload["k"], payload["n"], payload["s"]
        except (ValueError, TypeError, KeyError):
            raise InvalidCursor("page cursor is malformed") from None
        if not (isinstance(expires, int) and isinstance(keys, list) and isinstance(ties, int)
                and isinstance(size, int) and ties >= 0 and size >= 1):
            raise InvalidCursor("page cursor is malformed")
        if expires < time.time():
            raise InvalidCursor("page cursor has expired; run the query again from the first page")
        if owner != principal:
            raise InvalidCursor("page cursor was issued to another principal")
        if query != fingerprint:
            raise InvalidCursor("page cursor belongs to a different query or parameters")
        return CursorState(fingerprint=query, principal=owner, last=tuple(_dec(v) for v in keys),
                           ties=ties, page_size=size)
