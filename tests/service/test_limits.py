"""Per-principal rate limit (429 + Retry-After), concurrency limit, request body limit (413)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from headwater import Platform
from headwater.service import ServiceConfig
from headwater.service.limits import LimitsMiddleware, TokenBuckets
from tests.service.conftest import open_platform, serve


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str], Platform]]:
    platform = open_platform(tmp_path_factory.mktemp("limits") / "hw")
    tokens = {who: platform.create_api_key(who).token for who in ("alice", "bob", "carol", "dora")}
    cfg = ServiceConfig(rate_per_s=0.2, rate_burst=3, max_body_bytes=2048)
    with serve(platform, cfg) as server:
        yield server.base_url, tokens, platform
    platform.close()


def test_rate_limit_is_per_principal_with_retry_after(limited: tuple[str, dict[str, str], Platform]) -> None:
    base, tokens, _ = limited
    with httpx.Client(base_url=base) as c:
        codes = [c.get("/v1/slo", headers={"X-API-Key": tokens["alice"]}).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        limited_r = c.get("/v1/slo", headers={"X-API-Key": tokens["alice"]})
        assert limited_r.status_code == 429
        assert int(limited_r.headers["retry-after"]) >= 1
        assert limited_r.headers["content-type"] == "application/problem+json"
        assert limited_r.json()["code"] == "RateLimited" and limited_r.json()["rule"] == "rate_limit"
        # bob has his own bucket; health routes are never limited
        assert c.get("/v1/slo", headers={"X-API-Key": tokens["bob"]}).status_code == 200
        assert c.get("/healthz").status_code == 200


def test_unauthenticated_requests_are_rate_limited_by_client(limited: tuple[str, dict[str, str], Platform]) -> None:
    base, tokens, _ = limited
    with httpx.Client(base_url=base) as c:
        codes = [c.get("/v1/slo", headers={"X-API-Key": f"hwk_guess{i:011d}.wrong"}).status_code for i in range(5)]
        assert codes[:3] == [401, 401, 401] and codes[3:] == [429, 429]
        assert c.get("/v1/slo", headers={"X-API-Key": tokens["dora"]}).status_code == 200  # keys unaffected


def test_body_limit_is_413(limited: tuple[str, dict[str, str], Platform]) -> None:
    base, tokens, _ = limited
    big = [{"id": i, "text": "x" * 100} for i in range(50)]
    with httpx.Client(base_url=base) as c:
        r = c.post("/v1/datasets/lake.big/rows", json=big, headers={"X-API-Key": tokens["bob"]})
        assert r.status_code == 413
        assert r.json()["code"] == "PayloadTooLarge"

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted while read
            for _ in range(10):
                yield b"[" + b" " * 500

        r = c.post("/v1/datasets/lake.big/rows", content=chunks(), headers={"X-API-Key": tokens["bob"]})
        assert r.status_code == 413
    assert "lake.big" not in [d.name for d in limited[2].catalog.list()]


def test_limits_on_schema_registry_paths_answer_confluent_style(
        limited: tuple[str, dict[str, str], Platform]) -> None:
    base, tokens, _ = limited
    auth = {"X-API-Key": tokens["carol"]}
    with httpx.Client(base_url=base) as c:
        too_big = c.post("/subjects/orders-value/versions", json={"schema": "x" * 5000}, headers=auth)
        assert too_big.status_code == 413
        assert too_big.json()["error_code"] == 413 and "message" in too_big.json()
        assert [c.get("/subjects", headers=auth).status_code for _ in range(3)] == [200, 200, 200]
        limited_r = c.get("/subjects", headers=auth)
    assert limited_r.status_code == 429 and int(limited_r.headers["retry-after"]) >= 1
    assert limited_r.json()["error_code"] == 429


def test_token_bucket_refills() -> None:
    buckets = TokenBuckets(rate=1000.0, burst=2)
    assert buckets.take("a") == 0 and buckets.take("a") == 0
    wait = buckets.take("a")
    assert 0 < wait <= 0.001
    assert buckets.take("b") == 0


def test_token_buckets_forget_idle_principals() -> None:
    buckets = TokenBuckets(rate=1e9, burst=1)
    buckets.max_entries = 100
    for i in range(1000):
        assert buckets.take(f"client-{i}") == 0
    assert len(buckets._buckets) <= 100


def test_concurrency_limit_per_principal(tmp_path: Path) -> None:
    """Two slow requests in flight for one principal: the third is 429; another principal passes."""
    platform = open_platform(tmp_path / "hw")
    tokens = {who: platform.create_api_key(who).token for who in ("alice", "bob")}
    release = asyncio.Event()
    entered = 0

    async def slow(request: object) -> PlainTextResponse:
        nonlocal entered
        entered += 1
        await release.wait()
        return PlainTextResponse("done")

    inner = Starlette(routes=[Route("/slow", slow)])
    inner.state.platform = platform
    inner.state.service_config = ServiceConfig(max_concurrent=2, rate_enabled=False)
    inner.add_middleware(LimitsMiddleware, config=inner.state.service_config)

    async def scenario() -> list[int]:
        transport = httpx.ASGITransport(app=inner)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            alice = {"X-API-Key": tokens["alice"]}
            first = [asyncio.create_task(c.get("/slow", headers=alice)) for _ in range(2)]
            while entered < 2:
                await asyncio.sleep(0.01)
            third = await c.get("/slow", headers=alice)
            other = asyncio.create_task(c.get("/slow", headers={"X-API-Key": tokens["bob"]}))
            while entered < 3:
                await asyncio.sleep(0.01)
            release.set()
            done = [(await t).status_code for t in first] + [(await other).status_code]
            after = (await c.get("/slow", headers=alice)).status_code
            assert third.json()["rule"] == "max_concurrent"
            return [third.status_code, *done, after]

    try:
        assert asyncio.run(scenario()) == [429, 200, 200, 200, 200]
    finally:
        platform.close()

