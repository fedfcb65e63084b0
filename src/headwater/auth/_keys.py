"""API keys: created once, stored as slow hashes, verified with a short in-process cache.

A key has a public id (``hwk_`` + 12 characters of ``[a-z0-9]``, about 62 bits, unique by
primary key) and a secret (``secrets.token_urlsafe(32)``: 256 random bits, 43 characters of
``[A-Za-z0-9_-]``). The caller sees the secret once, in :class:`CreatedKey`, either as the token
``<key_id>.<secret>`` (bearer) or as the pair (HTTP Basic: user = key id, password = secret).

Hashing: ``hashlib.scrypt`` with a fresh 16-byte salt per key, ``N = 2**15, r = 8, p = 1``,
32-byte output (about 32 MiB and ~0.1-0.2 s per hash on a current core, the interactive-login
setting of the scrypt paper and the OWASP minimum). The stored string names its parameters,
``scrypt$ln=15,r=8,p=1$<salt b64>$<hash b64>``, so they can be raised later without
invalidating existing keys. The comparison is :func:`hmac.compare_digest`; an unknown key id is
hashed against a dummy hash so it takes as long as a known one.

Cache: a successful verification is remembered for ``cache_ttl_s`` (default 30 s) under the
SHA-256 of the token, so the slow hash is paid once per key per TTL, not per request. Entries
never outlive the key's ``expires_at``. The cache is shared by every :class:`ApiKeys` on the
same SQLAlchemy engine (one per :class:`~headwater.metadata.MetadataStore`) and
:meth:`ApiKeys.revoke` drops the key's entries at once, so revocation is immediate in the process
that revokes. **Another process** (another worker, another host) keeps accepting a key it
verified shortly before for up to ``cache_ttl_s`` after the revocation; set ``cache_ttl_s=0`` to
disable the cache where that window matters more than the hash cost.

``last_used_at`` is written on every slow (uncached) verification, so it is accurate to
``cache_ttl_s``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import secrets
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import sqlalchemy as sa

from headwater.auth._tables import api_keys_table
from headwater.errors import AuthenticationError, InvalidInput, NotFound

if TYPE_CHECKING:
    from headwater.metadata import MetadataStore
    from headwater.principal import Principal

__all__ = [
    "DEFAULT_SCRYPT",
    "INVALID_CREDENTIALS",
    "KEY_PREFIX",
    "ApiKeyInfo",
    "ApiKeys",
    "CreatedKey",
    "ScryptParams",
    "key_id_of",
]

log = logging.getLogger("headwater.auth")

KEY_PREFIX = "hwk_"
"""Every API key id and token starts with this."""

INVALID_CREDENTIALS = "invalid credentials"
"""The one message of every authentication failure, whatever went wrong."""

_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
_ID_LENGTH = 12
_KEY_ID_RE = re.compile(r"hwk_[a-z0-9]{12}")
_SECRET_RE = re.compile(r"[A-Za-z0-9_-]{43}")
_MAX_PRINCIPAL = 255


def _now() -> datetime:
    return datetime.now(UTC)


def _utc(value: datetime | None) -> datetime | None:
    # SQLite hands DateTime(timezone=True) back naive; everything written here is UTC.
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def _fail() -> AuthenticationError:
    return AuthenticationError(INVALID_CREDENTIALS)


# -- hashing ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScryptParams:
    """Cost of the scrypt hash of new keys (existing hashes carry their own)."""

    ln: int = 15
    """log2 of N, the CPU/memory cost; memory is about ``128 * r * 2**ln`` bytes."""
    r: int = 8
    """Block size."""
    p: int = 1
    """Parallelism."""

    def __post_init__(self) -> None:
        if not (1 <= self.ln <= 22 and 1 <= self.r <= 32 and 1 <= self.p <= 16):
            raise InvalidInput("scrypt parameters out of range (1<=ln<=22, 1<=r<=32, 1<=p<=16)")

    def derive(self, secret: bytes, salt: bytes) -> bytes:
        """The 32-byte scrypt digest of ``secret`` under ``salt``."""
        maxmem = 128 * self.r * (2**self.ln) * 2 + 1024 * 1024
        return hashlib.scrypt(
            secret, salt=salt, n=2**self.ln, r=self.r, p=self.p, maxmem=maxmem, dklen=32
        )

    def encode(self, secret: str) -> str:
        """A storable hash of ``secret`` with a fresh random salt."""
        salt = secrets.token_bytes(16)
        digest = self.derive(secret.encode(), salt)
        return f"scrypt$ln={self.ln},r={self.r},p={self.p}${_b64(salt)}${_b64(digest)}"


DEFAULT_SCRYPT = ScryptParams()
"""``N = 2**15, r = 8, p = 1``."""

_HASH_RE = re.compile(r"scrypt\$ln=(\d+),r=(\d+),p=(\d+)\$([A-Za-z0-9_-]+)\$([A-Za-z0-9_-]+)")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _check(secret: str, encoded: str) -> bool:
    """Whether ``secret`` matches the stored hash, compared in constant time."""
    match = _HASH_RE.fullmatch(encoded)
    if match is None:
        return False
    try:
        params = ScryptParams(int(match[1]), int(match[2]), int(match[3]))
        salt, expected = _unb64(match[4]), _unb64(match[5])
    except (InvalidInput, ValueError):
        return False
    return hmac.compare_digest(params.derive(secret.encode(), salt), expected)


_DUMMY_HASHES: dict[ScryptParams, str] = {}


def _dummy_hash(params: ScryptParams) -> str:
    # Hashed against for unknown key ids, so they cost the same time as known ones.
    if params not in _DUMMY_HASHES:
        _DUMMY_HASHES[params] = params.encode(secrets.token_urlsafe(32))
    return _DUMMY_HASHES[params]


def key_id_of(token_or_id: object, secret: object = None) -> str | None:
    """The key id of an API key credential well-formed enough to be hashed (a token
    ``<key_id>.<secret>`` or an id and a secret), else None: malformed ones fail without a hash,
    so only these need rate limiting before verification."""
    if not isinstance(token_or_id, str) or (secret is not None and not isinstance(secret, str)):
        return None
    if secret is None:
        key_id, _, secret = token_or_id.partition(".")
    else:
        key_id = token_or_id
    if _KEY_ID_RE.fullmatch(key_id) and _SECRET_RE.fullmatch(secret):  # type: ignore[arg-type]
        return key_id
    return None


# -- cache --------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Entry:
    key_id: str
    principal: str
    valid_until: datetime


class _VerifyCache:
    """SHA-256(token) -> principal for recent successful verifications; bounded, thread-safe."""

    MAX_ENTRIES = 10_000

    def __init__(self) -> None:
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._revoked: set[str] = set()
        """Key ids revoked in this process: a verification that raced the revocation (read the
        row before it, finished after it) must not cache the key again."""
        self._lock = threading.Lock()

    def get(self, digest: str, now: datetime) -> _Entry | None:
        with self._lock:
            entry = self._entries.get(digest)
            if entry is None:
                return None
            if now >= entry.valid_until:
                del self._entries[digest]
                return None
            return entry

    def put(self, digest: str, entry: _Entry) -> None:
        with self._lock:
            if entry.key_id in self._revoked:
                return
            self._entries[digest] = entry
            self._entries.move_to_end(digest)
            while len(self._entries) > self.MAX_ENTRIES:
                self._entries.popitem(last=False)

    def drop_key(self, key_id: str) -> None:
        with self._lock:
            self._revoked.add(key_id)
            for digest in [d for d, e in self._entries.items() if e.key_id == key_id]:
                del self._entries[digest]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_CACHES: weakref.WeakKeyDictionary[sa.Engine, _VerifyCache] = weakref.WeakKeyDictionary()
_CACHES_LOCK = threading.Lock()


def _cache_for(engine: sa.Engine) -> _VerifyCache:
    with _CACHES_LOCK:
        cache = _CACHES.get(engine)
        if cache is None:
            cache = _CACHES[engine] = _VerifyCache()
        return cache


# -- public records -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CreatedKey:
    """A new API key. ``secret`` and ``token`` exist only here: show them once, then drop them.

    Neither appears in ``repr`` or ``str``.
    """

    key_id: str
    secret: str = field(repr=False)
    token: str = field(repr=False)
    """``f"{key_id}.{secret}"``, for ``Authorization: Bearer``."""
    principal: str = ""
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ApiKeyInfo:
    """What :meth:`ApiKeys.list` tells about a key: never its secret or hash."""

    key_id: str
    principal: str
    description: str | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    def is_active(self, now: datetime | None = None) -> bool:
        """Not revoked and not expired at ``now`` (default: the current time)."""
        now = now or _now()
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)


# -- the store ----------------------------------------------------------------------------------


class ApiKeys:
    """API keys in the metadata database (table ``hw_api_keys``, migration ``0003_auth``).

    ``clock`` returns the current time as an aware UTC datetime (tests pass a controllable
    one); ``cache_ttl_s`` bounds how long a verified key is trusted without the database (0
    disables the cache); ``scrypt`` is the cost of hashes of new keys.
    """

    def __init__(
        self,
        meta: MetadataStore,
        *,
        clock: Callable[[], datetime] = _now,
        cache_ttl_s: float = 30.0,
        scrypt: ScryptParams = DEFAULT_SCRYPT,
    ) -> None:
        if cache_ttl_s < 0:
            raise InvalidInput("cache_ttl_s must be >= 0")
        self._meta = meta
        self._clock = clock
        self._ttl = timedelta(seconds=cache_ttl_s)
        self._scrypt = scrypt
        self._cache = _cache_for(meta.engine)
        # Computed now, so that the first unknown key id costs one hash like every other.
        _dummy_hash(scrypt)

    def __repr__(self) -> str:
        return f"ApiKeys(meta={self._meta!r}, cache_ttl_s={self._ttl.total_seconds():g})"

    def _now(self) -> datetime:
        now = self._clock()
        return now if now.tzinfo is not None else now.replace(tzinfo=UTC)

    def create(
        self,
        principal: Principal | str,
        *,
        expires_in: timedelta | None = None,
        description: str | None = None,
    ) -> CreatedKey:
        """Create a key for ``principal``; the returned secret is never retrievable again."""
        name = principal if isinstance(principal, str) else principal.name
        if not name or not isinstance(name, str) or len(name) > _MAX_PRINCIPAL:
            raise InvalidInput(
                f"an API key needs a principal name of 1 to {_MAX_PRINCIPAL} characters"
            )
        if expires_in is not None and expires_in <= timedelta(0):
            raise InvalidInput("expires_in must be a positive duration")
        now = self._now()
        expires_at = now + expires_in if expires_in is not None else None
        secret = secrets.token_urlsafe(32)
        secret_hash = self._scrypt.encode(secret)
        for _ in range(5):
            key_id = KEY_PREFIX + "".join(secrets.choice(_ID_ALPHABET) for _ in range(_ID_LENGTH))
            try:
                with self._meta.begin() as conn:
                    conn.execute(
                        api_keys_table.insert().values(
                            key_id=key_id,
                            principal=name,
                            secret_hash=secret_hash,
                            description=description,
                            created_at=now,
                            expires_at=expires_at,
                        )
                    )
            except sa.exc.IntegrityError:  # pragma: no cover - a 62-bit id collision
                continue
            log.info("created API key %s for principal %r", key_id, name)
            return CreatedKey(
                key_id=key_id,
                secret=secret,
                token=f"{key_id}.{secret}",
                principal=name,
                expires_at=expires_at,
            )
        raise RuntimeError("could not allocate a unique API key id")  # pragma: no cover

    def list(self, principal: str | None = None) -> list[ApiKeyInfo]:
        """Every key (of ``principal`` when given), oldest first, revoked and expired included."""
        t = api_keys_table
        query = sa.select(
            t.c.key_id,
            t.c.principal,
            t.c.description,
            t.c.created_at,
            t.c.expires_at,
            t.c.revoked_at,
            t.c.last_used_at,
        ).order_by(t.c.created_at, t.c.key_id)
        if principal is not None:
            query = query.where(t.c.principal == principal)
        with self._meta.connect() as conn:
            rows = conn.execute(query).all()
        return [
            ApiKeyInfo(
                key_id=r.key_id,
                principal=r.principal,
                description=r.description,
                created_at=_utc(r.created_at),  # type: ignore[arg-type]
                expires_at=_utc(r.expires_at),
                revoked_at=_utc(r.revoked_at),
                last_used_at=_utc(r.last_used_at),
            )
            for r in rows
        ]

    def revoke(self, key_id: str) -> None:
        """Revoke a key for good (idempotent); raises :class:`~headwater.errors.NotFound` for an
        unknown id. Effective at once in this process; see the module docstring for others."""
        t = api_keys_table
        now = self._now()
        with self._meta.begin() as conn:
            found = conn.execute(sa.select(t.c.key_id).where(t.c.key_id == key_id)).first()
            if found is None:
                raise NotFound(f"no API key with id {key_id!r}", key_id=key_id)
            conn.execute(
                t.update()
                .where(t.c.key_id == key_id, t.c.revoked_at.is_(None))
                .values(revoked_at=now)
            )
        self._cache.drop_key(key_id)
        log.info("revoked API key %s", key_id)

    def verify(self, token_or_id: str, secret: str | None = None) -> str:
        """The principal name a key belongs to.

        Takes a token ``<key_id>.<secret>``, or the id and the secret separately (HTTP Basic).
        Unknown ids, wrong secrets, revoked and expired keys and malformed input all raise
        :class:`~headwater.errors.AuthenticationError` with the same message.
        """
        if not isinstance(token_or_id, str) or (secret is not None and not isinstance(secret, str)):
            raise _fail()
        if secret is None:
            key_id, dot, secret = token_or_id.partition(".")
            if not dot:
                raise _fail()
        else:
            key_id = token_or_id
        if not (_KEY_ID_RE.fullmatch(key_id) and _SECRET_RE.fullmatch(secret)):
            raise _fail()
        now = self._now()
        digest = hashlib.sha256(f"{key_id}.{secret}".encode()).hexdigest()
        if self._ttl:
            hit = self._cache.get(digest, now)
            if hit is not None:
                return hit.principal

        t = api_keys_table
        with self._meta.connect() as conn:
            row = conn.execute(
                sa.select(t.c.principal, t.c.secret_hash, t.c.expires_at, t.c.revoked_at).where(
                    t.c.key_id == key_id
                )
            ).first()
        if row is None:
            _check(secret, _dummy_hash(self._scrypt))
            log.debug("API key verification failed for %s: unknown id", key_id)
            raise _fail()
        # Hash first, whatever the row says, so revoked and expired keys take the same time.
        matches = _check(secret, row.secret_hash)
        expires_at = _utc(row.expires_at)
        usable = row.revoked_at is None and (expires_at is None or now < expires_at)
        if not (matches and usable):
            reason = "wrong secret" if not matches else "revoked or expired"
            log.debug("API key verification failed for %s: %s", key_id, reason)
            raise _fail()

        with self._meta.begin() as conn:
            conn.execute(t.update().where(t.c.key_id == key_id).values(last_used_at=now))
        if self._ttl:
            valid_until = now + self._ttl
            if expires_at is not None:
                valid_until = min(valid_until, expires_at)
            self._cache.put(digest, _Entry(key_id, row.principal, valid_until))
        return row.principal

    def is_cached(self, token_or_id: str, secret: str | None = None) -> bool:
        """Whether :meth:`verify` would answer this credential from the cache (no slow hash)."""
        key_id = key_id_of(token_or_id, secret)
        if key_id is None or not self._ttl:
            return False
        if secret is None:
            secret = token_or_id.partition(".")[2]
        digest = hashlib.sha256(f"{key_id}.{secret}".encode()).hexdigest()
        return self._cache.get(digest, self._now()) is not None

    def clear_cache(self) -> None:
        """Forget every cached verification on this database (in this process)."""
        self._cache.clear()
