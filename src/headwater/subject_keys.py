"""Per-subject encryption keys for crypto-shredding append-only logs.

Event topics are append-only: a data subject's PII cannot be deleted from them record by record.
Instead, PII fields are sealed (AES-256-GCM) under a key of their own data subject, and erasure
destroys that key (:meth:`SubjectKeys.shred`): every sealed value of the subject becomes noise,
while other subjects' values still open.

A subject is named by its *namespace*, the qualified ``<store>.<table>.<column>`` that identifies
subjects (``app.customers.id``), and its value (``42``). Neither is stored in clear: the key row
is found by ``HMAC(platform secret, namespace NUL value)``, and the key itself is stored wrapped
(AES-GCM) under a key derived from the platform secret.

Sealed text looks like ``hwenc:v1:<base64>``; the payload carries the key id, so
:meth:`SubjectKeys.open` needs nothing else. A shredded (or never-created) key opens to ``None``.

Shredding leaves a *tombstone* for ``tombstone_ttl_s`` (default 7 days): values sealed for the
subject meanwhile (a CDC delete whose before-image is published after the erasure shredded the
key) are sealed under a throwaway key and open to ``None`` too. After that window the subject
may get a new key.

Keys are cached per process for ``cache_ttl_s`` (default 30 s): a process that did not shred a
key may still open the subject's values for at most that long after another process shredded
it. The process that shreds drops its cache entry at once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import threading
import time
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from headwater.errors import InvalidInput

__all__ = ["SEALED_PREFIX", "SubjectKeys", "is_sealed", "subject_keys_table"]

SEALED_PREFIX = "hwenc:v1:"
_MAGIC = b"HWS1"
_KEY_ID_LEN = 16
_KCV_LEN = 8
_NONCE_LEN = 12
_HEAD = len(b"HWS1") + _KEY_ID_LEN + _KCV_LEN

subject_keys_table = sa.Table(
    "hw_subject_keys",
    sa.MetaData(),
    sa.Column("key_id", sa.String(32), primary_key=True),
    sa.Column("wrapped", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)


def is_sealed(value: Any) -> bool:
    """Whether ``value`` is text sealed by :meth:`SubjectKeys.seal_text`."""
    return isinstance(value, str) and value.startswith(SEALED_PREFIX)


def _aesgcm(key: bytes) -> Any:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(key)


class SubjectKeys:
    """Create, use and destroy per-subject keys kept in the metadata database."""

    def __init__(self, engine: sa.Engine, *, master_key: bytes, cache_ttl_s: float = 30.0,
                 tombstone_ttl_s: float = 7 * 86_400.0) -> None:
        if len(master_key) < 32:
            raise InvalidInput("the subject-key master key must be at least 32 bytes")
        self._engine = engine
        self.__master = bytes(master_key[:32])
        self.__id_key = hmac.new(bytes(master_key), b"headwater.subject-id", hashlib.sha256).digest()
        self._ttl = cache_ttl_s
        self._tombstone_ttl = tombstone_ttl_s
        self._cache: dict[bytes, tuple[float, bytes]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SubjectKeys(cached={len(self._cache)})"

    # -- identities ------------------------------------------------------------------------
    def key_id(self, namespace: str, value: Any) -> bytes:
        """The opaque id of subject ``value`` in ``namespace`` (``store.table.column``)."""
        if value is None:
            raise InvalidInput("a data subject needs a value (got NULL)")
        text = f"{namespace.strip().lower()}\x00{_canonical(value)}".encode()
        return hmac.new(self.__id_key, text, hashlib.sha256).digest()[:_KEY_ID_LEN]

    # -- sealing ---------------------------------------------------------------------------
    def seal(self, namespace: str, value: Any, plaintext: bytes) -> bytes:
        """``plaintext`` encrypted under the subject's key (created on first use)."""
        kid = self.key_id(namespace, value)
        key = self._key(kid, create=True)
        assert key is not None
        nonce = os.urandom(_NONCE_LEN)
        head = _MAGIC + kid + _kcv(key)
        return head + nonce + _aesgcm(key).encrypt(nonce, plaintext, head)

    def open(self, blob: bytes) -> bytes | None:
        """The plaintext of a sealed blob, or None when its subject's key was shredded."""
        if len(blob) < _HEAD + _NONCE_LEN + 16 or not blob.startswith(_MAGIC):
            raise InvalidInput("not a sealed value")
        kid = blob[len(_MAGIC):len(_MAGIC) + _KEY_ID_LEN]
        key = self._key(kid, create=False)
        if key is None or not hmac.compare_digest(_kcv(key), blob[_HEAD - _KCV_LEN:_HEAD]):
            return None  # shredded (a later key of the same subject is another key)
        from cryptography.exceptions import InvalidTag

        try:
            return _aesgcm(key).decrypt(blob[_HEAD:_HEAD + _NONCE_LEN], blob[_HEAD + _NONCE_LEN:], blob[:_HEAD])
        except InvalidTag:
            raise InvalidInput("sealed value is damaged or was sealed by another platform") from None

    def seal_text(self, namespace: str, value: Any, text: str) -> str:
        """``text`` sealed as ``hwenc:v1:<base64>`` (safe inside JSON)."""
        return SEALED_PREFIX + base64.b64encode(self.seal(namespace, value, text.encode())).decode()

    def open_text(self, sealed: str) -> str | None:
        """The text of :meth:`seal_text`'s output, or None when the subject was shredded."""
        if not is_sealed(sealed):
            raise InvalidInput("not a sealed value")
        try:
            blob = base64.b64decode(sealed[len(SEALED_PREFIX):], validate=True)
        except ValueError:
            raise InvalidInput("sealed value is not valid base64") from None
        out = self.open(blob)
        return None if out is None else out.decode()

    # -- erasure ---------------------------------------------------------------------------
    def shred(self, namespace: str, value: Any) -> bool:
        """Destroy the subject's key; True when a key existed. Idempotent."""
        kid = self.key_id(namespace, value)
        with self._lock:
            self._cache.pop(kid, None)
        t = subject_keys_table
        now = datetime.now(UTC)
        with self._engine.begin() as conn:
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql("PRAGMA secure_delete=ON")
            n = conn.execute(sa.update(t).where((t.c.key_id == kid.hex()) & (sa.func.length(t.c.wrapped) > 0))
                             .values(wrapped=b"", created_at=now)).rowcount
            if not n:
                exists = conn.execute(sa.select(t.c.key_id).where(t.c.key_id == kid.hex())).first()
                if exists is None:
                    conn.execute(sa.insert(t).values(key_id=kid.hex(), wrapped=b"", created_at=now))
                else:
                    conn.execute(sa.update(t).where(t.c.key_id == kid.hex()).values(created_at=now))
        if n and self._engine.dialect.name == "sqlite":
            # The deleted page is zeroed in the database file; the WAL still holds the old page
            # until a checkpoint copies it back and truncates the log.
            with self._engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        return bool(n)

    def exists(self, namespace: str, value: Any) -> bool:
        """Whether the subject has a live key."""
        return isinstance(self._load(self.key_id(namespace, value)), bytes)

    # -- storage ---------------------------------------------------------------------------
    def _key(self, kid: bytes, *, create: bool) -> bytes | None:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(kid)
            if hit is not None and now - hit[0] < self._ttl:
                return hit[1]
        loaded = self._load(kid)
        if loaded is _TOMBSTONE:
            # Erased: seal under a key nobody keeps, so the value opens to None like the rest.
            return os.urandom(32) if create else None
        key = loaded if isinstance(loaded, bytes) else None
        if key is None and create:
            key = self._create(kid)
        if key is not None:
            with self._lock:
                if len(self._cache) > 100_000:
                    self._cache.clear()
                self._cache[kid] = (now, key)
        return key

    def _load(self, kid: bytes) -> bytes | object | None:
        """The subject's key, :data:`_TOMBSTONE` while it is erased, or None."""
        t = subject_keys_table
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(t.c.wrapped, t.c.created_at).where(t.c.key_id == kid.hex())).first()
        if row is None:
            return None
        wrapped = bytes(row[0])
        if not wrapped:
            at = row[1] if row[1].tzinfo is not None else row[1].replace(tzinfo=UTC)
            if (datetime.now(UTC) - at).total_seconds() < self._tombstone_ttl:
                return _TOMBSTONE
            with self._engine.begin() as conn:  # the window passed: the subject may start afresh
                conn.execute(sa.delete(t).where((t.c.key_id == kid.hex()) & (sa.func.length(t.c.wrapped) == 0)))
            return None
        from cryptography.exceptions import InvalidTag

        try:
            return _aesgcm(self.__master).decrypt(wrapped[:_NONCE_LEN], wrapped[_NONCE_LEN:], b"hwkey" + kid)
        except InvalidTag:
            raise InvalidInput("a subject key cannot be unwrapped: the platform secret is not the one "
                               "that created it") from None

    def _create(self, kid: bytes) -> bytes:
        key = os.urandom(32)
        nonce = os.urandom(_NONCE_LEN)
        wrapped = nonce + _aesgcm(self.__master).encrypt(nonce, key, b"hwkey" + kid)
        try:
            with self._engine.begin() as conn:
                conn.execute(sa.insert(subject_keys_table).values(
                    key_id=kid.hex(), wrapped=wrapped, created_at=datetime.now(UTC)))
            return key
        except sa.exc.IntegrityError:
            # A concurrent sealer created it first: use theirs.
            existing = self._load(kid)
            if existing is None:  # created and its tombstone expired in between
                return self._create(kid)
            if existing is _TOMBSTONE:  # created and shredded in between
                return os.urandom(32)
            return existing  # type: ignore[return-value]


_TOMBSTONE = object()
"""What :meth:`SubjectKeys._load` answers for a subject erased within the tombstone window."""


def _kcv(key: bytes) -> bytes:
    """A key check value: tells a shredded subject's old key from its new one."""
    return hashlib.sha256(b"headwater.kcv" + key).digest()[:_KCV_LEN]


def _canonical(value: Any) -> str:
    """Subject values compare as text: ``42`` and ``"42"`` are one subject."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()
