"""Two replicas, each with its own local folder, sharing only Postgres (metadata and the ``app``
store) and the configured secret: a client may alternate between them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from headwater import Config, Platform
from headwater.config import PostgresConfig
from headwater.demo import DEMO_POLICY
from tests.fix_services import pg_fresh_schema, pg_schema_url
from tests.service.conftest import serve


@pytest.fixture
def replicas(tmp_path: Path, pg_dsn: str) -> Iterator[tuple[Platform, Platform]]:
    with pg_fresh_schema(pg_dsn) as schema:
        for url in pg_schema_url("hw_svc_meta"):
            def config(name: str, url: str = url) -> Config:
                return Config(platform_dir=str(tmp_path / name), stores={"app": PostgresConfig(dsn=pg_dsn, schema=schema)},
                              metadata={"url": url}, security={"cursor_secret": "c" * 64})
            first = Platform.open(config("replica-a"))
            first.session("setup").write("app.orders", [{"order_id": i, "amount": i * 2.0} for i in range(1, 301)],
                                         key="order_id")
            first.apply_policy(DEMO_POLICY, source="demo", applied_by="test")
            second = Platform.open(config("replica-b"))
            try:
                yield first, second
            finally:
                second.close()
                first.close()


def test_pages_continue_on_another_replica(replicas: tuple[Platform, Platform]) -> None:
    first, second = replicas
    headers = {"X-API-Key": first.create_api_key("alice").token}
    sql = {"sql": "SELECT order_id, amount FROM app.orders ORDER BY order_id", "page_size": 70}
    with serve(first) as a, serve(second) as b:
        ids: list[int] = []
        body = dict(sql)
        urls = [a.base_url, b.base_url]
        pages = 0
        while True:
            page = httpx.post(f"{urls[pages % 2]}/v1/query", json=body, headers=headers, timeout=30)
            assert page.status_code == 200, page.text
            ids.extend(r[0] for r in page.json()["rows"])
            pages += 1
            if not page.json()["next_cursor"]:
                break
            body = {**sql, "cursor": page.json()["next_cursor"]}
        audit = httpx.get(f"{b.base_url}/v1/audit", params={"actor": "alice", "action": "query"}, headers=headers)
        verify = httpx.get(f"{a.base_url}/v1/audit/verify", headers=headers)
    assert ids == list(range(1, 301)) and pages == 5
    assert len(audit.json()) == 5                     # both replicas' queries in the one audit log
    assert verify.json()["ok"] is True
