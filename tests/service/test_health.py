"""``/readyz`` reports each dependency and answers 503 when one is unreachable."""

from __future__ import annotations

from pathlib import Path

import httpx

from headwater import Config, Platform
from headwater.config import PostgresConfig
from tests.fix_services import free_port
from tests.service.conftest import serve


def test_readyz_is_503_when_a_store_is_unreachable(tmp_path: Path) -> None:
    cfg = Config.embedded(tmp_path / "hw")
    cfg.stores["down"] = PostgresConfig(dsn=f"host=127.0.0.1 port={free_port()} dbname=x user=x password=hunter2",
                                        connect_timeout_s=2)
    with Platform.open(cfg) as platform, serve(platform) as server:
        ready = httpx.get(f"{server.base_url}/readyz", timeout=30)
        live = httpx.get(f"{server.base_url}/healthz", timeout=30)
    assert live.status_code == 200
    assert ready.status_code == 503
    checks = ready.json()["checks"]
    assert checks["metadata"] == "ok" and checks["store:app"] == "ok"
    assert checks["store:down"].startswith("unavailable")
    assert "hunter2" not in ready.text


def test_an_unreachable_store_is_a_503_problem_without_internals(tmp_path: Path) -> None:
    import pyarrow as pa

    from headwater.stores.base import ColumnInfo, TableInfo

    cfg = Config.embedded(tmp_path / "hw")
    cfg.stores["down"] = PostgresConfig(dsn=f"host=127.0.0.1 port={free_port()} dbname=x user=x password=hunter2",
                                        connect_timeout_s=2)
    with Platform.open(cfg) as platform:
        platform.catalog.register("down", TableInfo("t", (ColumnInfo("id", pa.int64()),), "postgres://x/t"),
                                  kind="postgres")
        token = platform.create_api_key("ops").token
        with serve(platform) as server:
            r = httpx.post(f"{server.base_url}/v1/query", json={"sql": "SELECT id FROM down.t"},
                           headers={"X-API-Key": token}, timeout=30)
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    problem = r.json()
    assert problem["code"] == "StoreUnavailable"
    assert problem["detail"] == "a store, the metadata store or the event bus is unavailable; retry later"
    assert "hunter2" not in r.text and "127.0.0.1" not in r.text and str(tmp_path) not in r.text
