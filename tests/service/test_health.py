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
