"""A real uvicorn server on a loopback port, in a thread, over an embedded platform in tmp.

The platform has the demo's policy applied (alice admin, bob analyst with masked email and
phone and no ssn, carol support_eu seeing EU customers only), tagged customers, API keys for
each principal, a revoked key and JWT verification configured.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import uvicorn

from headwater import Config, Platform
from headwater.demo import DEMO_POLICY, DEMO_TAGS
from headwater.service import ServiceConfig, create_app
from tests.fix_services import free_port

JWT_SECRET = "j" * 40
ISSUER = "https://idp.example"
AUDIENCE = "headwater"

CUSTOMERS = [
    {"id": i, "email": f"user{i}@example.com", "phone": f"+1 555 01{i:02d}", "ssn": f"123-45-{6700 + i}",
     "name": f"Customer {i}", "country": ["US", "DE", "FR", "BR", "IT"][i % 5]}
    for i in range(1, 26)
]


@dataclass
class Served:
    """A running server and what the tests need to call it."""

    platform: Platform
    base_url: str
    tokens: dict[str, str] = field(default_factory=dict)
    key_ids: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)

    def client(self, **kwargs: Any) -> httpx.Client:
        """An httpx client on the server."""
        return httpx.Client(base_url=self.base_url, timeout=30, **kwargs)

    def key(self, who: str) -> dict[str, str]:
        """X-API-Key headers for a principal."""
        return {"X-API-Key": self.tokens[who]}


def make_jwt(sub: str, *, expired: bool = False, **claims: Any) -> str:
    """A HS256 JWT the served platform accepts (unless ``expired``)."""
    now = dt.datetime.now(dt.UTC)
    exp = now - dt.timedelta(minutes=10) if expired else now + dt.timedelta(minutes=5)
    body: dict[str, Any] = {"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "iat": now - dt.timedelta(minutes=20),
                            "exp": exp}
    body.update(claims)
    return jwt.encode(body, JWT_SECRET, algorithm="HS256")


def open_platform(directory: Path) -> Platform:
    """An embedded platform with JWT auth, customer data, tags and the demo policy."""
    cfg = Config.load(None, overrides={
        "platform_dir": str(directory),
        "auth": {"jwt": {"issuer": ISSUER, "audience": AUDIENCE, "hs256_secret": JWT_SECRET,
                         "claims": {"roles": "roles", "attributes": {"countries": "countries"}}}},
    })
    platform = Platform.open(cfg)
    setup = platform.session("setup")
    setup.write("app.customers", CUSTOMERS, key="id")
    setup.write("warehouse.orders", [{"order_id": i, "customer_id": 1 + i % 25, "amount": i * 1.5}
                                     for i in range(1, 301)])
    for column, tag in DEMO_TAGS.items():
        platform.catalog.set_tags("app.customers", column, [tag])
    platform.apply_policy(DEMO_POLICY, source="demo", applied_by="test")
    return platform


class ServerThread:
    """uvicorn serving an app on 127.0.0.1 in a background thread."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def serve(platform: Platform, config: ServiceConfig | None = None) -> ServerThread:
    """A server thread for ``create_app(platform)`` (enter it to start)."""
    return ServerThread(create_app(platform, config=config or ServiceConfig(rate_enabled=False)))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The shared server (no rate limit; other limits at their defaults)."""
    platform = open_platform(tmp_path_factory.mktemp("svc") / "hw")
    out = Served(platform=platform, base_url="")
    for who in ("alice", "bob", "carol", "dave", "revoked"):
        key = platform.create_api_key(who if who != "revoked" else "alice")
        out.tokens[who], out.key_ids[who], out.secrets[who] = key.token, key.key_id, key.secret
    platform.revoke_api_key(out.key_ids["revoked"])
    with serve(platform) as server:
        out.base_url = server.base_url
        yield out
    platform.close()
