"""Per-principal limits: a token-bucket rate limit, a concurrency limit, a request body limit.

One ASGI middleware applies them before routing. A request with valid credentials is
authenticated once here (the principal is left in ``request.state`` for the route's
dependency); one without, or with bad ones, is rate limited by client address and goes on to the
route, which answers 401.

The buckets and in-flight counters live in this replica: they bound what one replica accepts
from a principal and need no sharing (N replicas accept at most N times the rate).
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from headwater.errors import AuthenticationError, InvalidInput, QueryRejected
from headwater.service.config import ServiceConfig

__all__ = ["ConcurrencyLimiter", "LimitsMiddleware", "PayloadTooLarge", "RateLimited", "TokenBuckets", "install"]

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
    """Applies the body size limit, then the principal's rate and concurrency limits."""

    def __init__(self, app: ASGIApp, config: ServiceConfig) -> None:
        self.app = app
        self.config = config
        self.buckets = TokenBuckets(config.rate_per_s, config.rate_burst)
        self.concurrency = ConcurrencyLimiter(config.max_concurrent)

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
        receive = await self._buffered(receive, limit)
        if receive is None:
            await self._reject(scope, _empty_receive, send, PayloadTooLarge(
                f"request body exceeds the limit of {limit} bytes", limit=limit))
            return
        who = await self._principal(scope)
        if self.config.rate_enabled:
            # Requests without valid credentials share one bucket per client address, so guessing
            # keys is rate limited too (the route then answers 401).
            client = scope.get("client") or ("unknown", 0)
            bucket = who if who is not None else f"\x00client:{client[0]}"
            wait = self.buckets.take(bucket)
            if wait > 0:
                subject = who if who is not None else f"unauthenticated client {client[0]}"
                await self._reject(scope, receive, send, RateLimited(
                    f"{subject} exceeded its rate limit of {self.config.rate_per_s:g} requests/s "
                    f"(burst {self.config.rate_burst})", rule="rate_limit", retry_after_s=math.ceil(wait)))
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

    async def _buffered(self, receive: Receive, limit: int) -> Receive | None:
        """Read the whole body (at most ``limit`` bytes) so the route never sees a larger one."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return _replay([message])
            body = message.get("body", b"")
            size += len(body)
            if size > limit:
                return None
            chunks.append(body)
            if not message.get("more_body", False):
                break
        return _replay([{"type": "http.request", "body": b"".join(chunks), "more_body": False}], receive)

    async def _principal(self, scope: Scope) -> str | None:
        from starlette.concurrency import run_in_threadpool

        from headwater.service import deps

        request = Request(scope)
        try:
            if deps.credentials(request) is None:
                return None
            who = await run_in_threadpool(deps.principal, request)
        except AuthenticationError:
            return None
        return who.name

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
