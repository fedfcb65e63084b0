"""Per-principal limits: a token-bucket rate limit, a concurrency limit, a request body limit,
a throttle on failed authentication, and limits on the shape of JSON bodies.

One ASGI middleware applies them before routing, in this order:

1. **Body size** (413).
2. **Authentication throttle.** Verifying an API key costs a slow (scrypt) hash, so guessing
   must be throttled *before* hashing: failed attempts consume a token bucket per client address
   and one per key id (``auth_failure_burst`` tokens, refilled at ``auth_failures_per_s``). A
   credential that would be hashed (a well-formed API key not in the verification cache) first
   reserves a token from both buckets, and is refused with 429 and ``Retry-After`` when either is
   empty, without hashing; a success gives the tokens back. So a failed key costs at most one
   hash, and once the buckets are empty repeated failures cost none. Keys in the verification
   cache and JWTs (no slow hash) are never held up by it; their failures still consume the
   address bucket.
3. **Authentication, once.** The principal, or the failure, is left in ``request.state`` for the
   route's dependency, which does not verify again.
4. **Rate limit** per principal (requests without valid credentials: per client address) and
   **concurrency** per principal (429).
5. **JSON shape.** A JSON body nested deeper than ``max_json_depth`` or holding an integer
   outside 64 bits is refused with 400 before any route parses it (deep nesting exhausts
   recursion in parsers, huge integers overflow every store and cost quadratic time to convert).

The buckets and in-flight counters live in this replica: they bound what one replica accepts
from a principal and need no sharing (N replicas accept at most N times the rate).
"""

from __future__ import annotations

import math
import re
import threading
import time
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from headwater.errors import AuthenticationError, InvalidInput, QueryRejected
from headwater.service.config import ServiceConfig

__all__ = ["AuthThrottle", "ConcurrencyLimiter", "LimitsMiddleware", "PayloadTooLarge", "RateLimited", "TokenBuckets",
           "install", "json_shape_problem"]

UNLIMITED_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/redoc",
                             "/docs/oauth2-redirect"})


class RateLimited(QueryRejected):
    """The principal sent more requests than its rate limit allows (``retry_after_s``)."""


class PayloadTooLarge(InvalidInput):
    """The request body is larger than the service accepts (``limit``)."""


class TokenBuckets:
    """One token bucket per principal: ``burst`` tokens, refilled at ``rate`` per second."""

    max_entries = 10_000
    """Buckets kept before full ones (idle long enough to refill) are forgotten."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def _prune(self, now: float) -> None:
        full_after = self.burst / self.rate
        self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < full_after}

    def take(self, who: str) -> float:
        """Take a token; returns 0 on success, else the seconds until one is available."""
        now = time.monotonic()
        with self._lock:
            if len(self._buckets) >= self.max_entries:
                self._prune(now)
            tokens, last = self._buckets.get(who, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[who] = (tokens - 1.0, now)
                return 0.0
            self._buckets[who] = (tokens, now)
            return (1.0 - tokens) / self.rate


class AuthThrottle:
    """Failed authentications per client address and per API key id (see the module docstring).

    Both are token buckets of ``burst`` tokens refilled at ``rate`` per second; a credential that
    would cost a slow hash reserves a token from each first (and gets them back on success).
    """

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def _level(self, key: str, now: float) -> float:
        tokens, last = self._buckets.get(key, (float(self.burst), now))
        return min(float(self.burst), tokens + (now - last) * self.rate)

    def reserve(self, keys: list[str]) -> float:
        """Take a token from every bucket in ``keys``, all or none: 0 on success, else the seconds
        until each has one again."""
        now = time.monotonic()
        with self._lock:
            if len(self._buckets) >= TokenBuckets.max_entries:
                full_after = self.burst / self.rate
                self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < full_after}
            levels = {k: self._level(k, now) for k in keys}
            short = [lvl for lvl in levels.values() if lvl < 1.0]
            if short:
                return (1.0 - min(short)) / self.rate
            for k, lvl in levels.items():
                self._buckets[k] = (lvl - 1.0, now)
            return 0.0

    def charge(self, keys: list[str]) -> None:
        """A failure that reserved nothing (a JWT, a malformed credential): take what is there."""
        now = time.monotonic()
        with self._lock:
            for k in keys:
                self._buckets[k] = (max(0.0, self._level(k, now) - 1.0), now)

    def refund(self, keys: list[str]) -> None:
        """Give reserved tokens back (the credential was good)."""
        now = time.monotonic()
        with self._lock:
            for k in keys:
                self._buckets[k] = (min(float(self.burst), self._level(k, now) + 1.0), now)


class ConcurrencyLimiter:
    """Counts each principal's requests in flight against a limit."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self._inflight: dict[str, int] = {}
        self._lock = threading.Lock()

    def enter(self, who: str) -> bool:
        """Take a slot; False when the principal is at its limit."""
        if self.limit is None:
            return True
        with self._lock:
            n = self._inflight.get(who, 0)
            if n >= self.limit:
                return False
            self._inflight[who] = n + 1
            return True

    def leave(self, who: str) -> None:
        """Give a slot back."""
        if self.limit is None:
            return
        with self._lock:
            n = self._inflight.get(who, 1) - 1
            if n <= 0:
                self._inflight.pop(who, None)
            else:
                self._inflight[who] = n


class LimitsMiddleware:
    """Applies the limits in the order of the module docstring."""

    def __init__(self, app: ASGIApp, config: ServiceConfig) -> None:
        self.app = app
        self.config = config
        self.buckets = TokenBuckets(config.rate_per_s, config.rate_burst)
        self.concurrency = ConcurrencyLimiter(config.max_concurrent)
        self.auth_failures = AuthThrottle(config.auth_failures_per_s, config.auth_failure_burst)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNLIMITED_PATHS:
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        limit = self.config.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._reject(scope, receive, send, PayloadTooLarge(
                f"request body of {declared} bytes exceeds the limit of {limit} bytes", limit=limit))
            return
        buffered = await self._buffered(receive, limit)
        if buffered is None:
            await self._reject(scope, _empty_receive, send, PayloadTooLarge(
                f"request body exceeds the limit of {limit} bytes", limit=limit))
            return
        receive, body = buffered
        client = (scope.get("client") or ("unknown", 0))[0]
        who, refusal = await self._authenticate(scope, client)
        if refusal is not None:
            await self._reject(scope, receive, send, refusal)
            return
        if self.config.rate_enabled:
            # Requests without valid credentials share one bucket per client address, so guessing
            # keys is rate limited too (the route then answers 401).
            bucket = who if who is not None else f"\x00client:{client}"
            wait = self.buckets.take(bucket)
            if wait > 0:
                subject = who if who is not None else f"unauthenticated client {client}"
                await self._reject(scope, receive, send, RateLimited(
                    f"{subject} exceeded its rate limit of {self.config.rate_per_s:g} requests/s "
                    f"(burst {self.config.rate_burst})", rule="rate_limit", retry_after_s=math.ceil(wait)))
                return
        content_type = request.headers.get("content-type", "")
        if len(body) > _INLINE_CHECK_BYTES:  # linear, but not on the event loop for big bodies
            from starlette.concurrency import run_in_threadpool

            shape = await run_in_threadpool(json_shape_problem, content_type, body, self.config.max_json_depth)
        else:
            shape = json_shape_problem(content_type, body, self.config.max_json_depth)
        if shape is not None:
            await self._reject(scope, receive, send, shape)
            return
        if who is None:
            await self.app(scope, receive, send)
            return
        if not self.concurrency.enter(who):
            await self._reject(scope, receive, send, RateLimited(
                f"{who} already has {self.config.max_concurrent} requests in flight, its limit",
                rule="max_concurrent", retry_after_s=1))
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.concurrency.leave(who)

    async def _authenticate(self, scope: Scope, client: str) -> tuple[str | None, Any]:
        """Verify the request's credential once: (principal name or None, a refusal or None)."""
        from starlette.concurrency import run_in_threadpool

        from headwater.service import deps

        request = Request(scope)
        try:
            cred = deps.credentials(request)
        except AuthenticationError:
            cred = ""  # malformed: fails below without a hash
        if cred is None:
            return None, None
        key_id = deps.key_id(cred) if cred else None
        keys = [f"addr:{client}"] + ([f"key:{key_id}"] if key_id else [])
        throttled = self.config.rate_enabled
        reserved = False
        if throttled and key_id is not None and not deps.platform_of(request).authenticator.is_cached(cred):
            wait = self.auth_failures.reserve(keys)
            if wait > 0:
                return None, RateLimited(
                    f"too many failed authentications from {client} or for key {key_id}; try again later",
                    rule="auth_rate_limit", retry_after_s=max(1, math.ceil(wait)))
            reserved = True
        try:
            who = await run_in_threadpool(deps.principal, request)
        except AuthenticationError:
            if throttled and not reserved:
                self.auth_failures.charge(keys)
            return None, None  # the route answers 401 without verifying again
        if reserved:
            self.auth_failures.refund(keys)
        return who.name, None

    async def _buffered(self, receive: Receive, limit: int) -> tuple[Receive, bytes] | None:
        """Read the whole body (at most ``limit`` bytes) so the route never sees a larger one."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return _replay([message]), b""
            body = message.get("body", b"")
            size += len(body)
            if size > limit:
                return None
            chunks.append(body)
            if not message.get("more_body", False):
                break
        whole = b"".join(chunks)
        return _replay([{"type": "http.request", "body": whole, "more_body": False}], receive), whole

    async def _reject(self, scope: Scope, receive: Receive, send: Send, err: Any) -> None:
        """Answer with the error: Confluent-style on the schema registry's paths, else a problem."""
        from headwater.service import registry_api
        from headwater.service.problems import headwater_error_response

        request = Request(scope)
        if registry_api.is_registry_path(scope["path"]):
            response = registry_api.error_response(request, err)
        else:
            response = headwater_error_response(request, err)
        await response(scope, receive, send)


_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_INNERMOST = re.compile(rb"\[\]|\{\}")
_DIGIT_RUN = re.compile(rb"\d{19}")
_LONG_NUMBER = re.compile(rb"(?<![\w.+-])-?\d{19,}(?![\d.eE])")
_INT64 = (-(2**63), 2**63 - 1)
_INLINE_CHECK_BYTES = 64 * 1024
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def json_shape_problem(content_type: str, body: bytes, max_depth: int) -> InvalidInput | None:
    """An :class:`InvalidInput` when a JSON body nests deeper than ``max_depth`` or holds an
    integer outside 64 bits, else None (not JSON, or fine; invalid JSON is the route's to refuse).

    Runs at C speed without parsing: strings are blanked, then innermost bracket pairs are
    removed level by level (at most ``max_depth`` passes); numbers are found by pattern.
    """
    media = content_type.split(";")[0].strip().lower()
    if not body or not (media == "application/json" or media.endswith("+json")):
        return None
    # Cheap tests first: most bodies have too few brackets to nest deeply and no long digit run.
    deep = body.count(b"[") + body.count(b"{") > max_depth
    if not deep and _DIGIT_RUN.search(body) is None:
        return None
    text = _JSON_STRING.sub(b'""', body)  # brackets and digits inside strings do not count
    if _LONG_NUMBER.search(text):
        for m in _LONG_NUMBER.finditer(text):
            value = int(m.group()) if len(m.group()) <= 40 else None
            if value is None or not _INT64[0] <= value <= _INT64[1]:
                return InvalidInput("the request body holds an integer outside the 64-bit range; send "
                                    "large numbers as strings", limit="int64")
    brackets = text.translate(None, _NOT_BRACKETS)
    if len(brackets) > 2 * max_depth:
        for _ in range(max_depth):
            shorter = _INNERMOST.sub(b"", brackets)  # one level: only pairs innermost now
            if not shorter or shorter == brackets:
                break
            brackets = shorter
        else:
            if brackets:
                return InvalidInput(f"the request body nests deeper than {max_depth} levels", limit=max_depth)
    return None


def _replay(messages: list[Message], then: Receive | None = None) -> Receive:
    pending = list(messages)

    async def receive() -> Message:
        if pending:
            return pending.pop(0)
        if then is not None:
            return await then()
        return {"type": "http.disconnect"}

    return receive


async def _empty_receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


def install(app: Any, config: ServiceConfig) -> None:
    """Add the limits middleware to ``app``."""
    app.add_middleware(LimitsMiddleware, config=config)
