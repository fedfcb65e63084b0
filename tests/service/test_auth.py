"""The authorisation matrix over HTTP: credential kinds x routes, admin-only routes."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import httpx
import pytest

from headwater import Config, Platform
from tests.service.conftest import Served, make_jwt, serve

# (method, path, json body, admin only)
ROUTES: list[tuple[str, str, Any, bool]] = [
    ("POST", "/v1/query", {"sql": "SELECT id FROM app.customers ORDER BY id", "page_size": 2}, False),
    ("GET", "/v1/datasets/warehouse.orders/rows?page_size=2", None, False),
    ("GET", "/v1/catalog", None, False),
    ("GET", "/v1/catalog/app.customers", None, False),
    ("GET", "/v1/lineage/app.customers/upstream", None, False),
    ("GET", "/v1/lineage/events?limit=1", None, False),
    ("GET", "/v1/slo", None, False),
    ("GET", "/v1/policies/current", None, True),
    ("GET", "/v1/policies/history", None, True),
    ("POST", "/v1/policies/validate", {"document": "version: 1\nroles: {}\n"}, True),
    ("POST", "/v1/policies/diff", {"document": "version: 1\nroles: {}\n"}, True),
    # Dead letters are governed per topic (`admin` on it), not by the admin role: a principal
    # administering no topic gets an empty list and replays nothing (tests/service/test_events_governance.py).
    ("GET", "/v1/dead-letters", None, False),
    ("POST", "/v1/dead-letters/replay", {"dry_run": True}, False),
    ("GET", "/v1/audit?limit=2", None, True),
    ("GET", "/v1/audit/verify", None, True),
]
IDS = [f"{m} {p.split('?')[0]}" for m, p, _, _ in ROUTES]


def _basic(key_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key_id}:{secret}".encode()).decode()}


def _credentials(served: Served, kind: str) -> dict[str, str]:
    return {
        "none": {},
        "bad key": {"X-API-Key": "hwk_0000000000000000.not-the-secret-at-all-000000000000000000"},
        "garbage bearer": {"Authorization": "Bearer nonsense"},
        "bad basic": {"Authorization": "Basic !!!notbase64"},
        "wrong basic secret": _basic(served.key_ids["alice"], "x" * 43),
        "revoked key": {"X-API-Key": served.tokens["revoked"]},
        "revoked basic": _basic(served.key_ids["revoked"], served.secrets["revoked"]),
        "expired jwt": {"Authorization": "Bearer " + make_jwt("alice", expired=True, roles=["admin"])},
        "unknown scheme": {"Authorization": "Digest abc"},
    }[kind]


BAD = ["none", "bad key", "garbage bearer", "bad basic", "wrong basic secret", "revoked key", "revoked basic",
       "expired jwt", "unknown scheme"]


@pytest.mark.parametrize("kind", BAD)
@pytest.mark.parametrize(("method", "path", "body", "admin"), ROUTES, ids=IDS)
def test_bad_or_missing_credentials_are_401(served: Served, kind: str, method: str, path: str, body: Any,
                                            admin: bool) -> None:
    with served.client() as c:
        r = c.request(method, path, json=body, headers=_credentials(served, kind))
    assert r.status_code == 401, r.text
    assert "Bearer" in r.headers["www-authenticate"] and "Basic" in r.headers["www-authenticate"]
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "AuthenticationError"
    assert r.json()["detail"] in {"missing credentials", "invalid credentials"}


GOOD = ["x-api-key", "bearer key", "basic", "bearer jwt"]


def _good(served: Served, kind: str, who: str) -> dict[str, str]:
    if kind == "x-api-key":
        return {"X-API-Key": served.tokens[who]}
    if kind == "bearer key":
        return {"Authorization": f"Bearer {served.tokens[who]}"}
    if kind == "basic":
        return _basic(served.key_ids[who], served.secrets[who])
    roles = {"alice": ["admin"], "bob": ["analyst"]}[who]
    return {"Authorization": "Bearer " + make_jwt(who, roles=roles)}


@pytest.mark.parametrize("kind", GOOD)
@pytest.mark.parametrize(("method", "path", "body", "admin"), ROUTES, ids=IDS)
def test_admin_passes_every_route_with_each_credential_kind(served: Served, kind: str, method: str, path: str,
                                                            body: Any, admin: bool) -> None:
    with served.client() as c:
        r = c.request(method, path, json=body, headers=_good(served, kind, "alice"))
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("kind", GOOD)
@pytest.mark.parametrize(("method", "path", "body", "admin"), ROUTES, ids=IDS)
def test_non_admin_is_403_on_admin_routes_only(served: Served, kind: str, method: str, path: str, body: Any,
                                               admin: bool) -> None:
    with served.client() as c:
        r = c.request(method, path, json=body, headers=_good(served, kind, "bob"))
    if admin:
        assert r.status_code == 403, r.text
        assert r.json()["code"] == "AccessDenied" and r.json()["rule"] == "admin"
        denial = served.platform.audit.query(actor="bob", action="deny", newest_first=True, limit=1)
        assert denial and denial[0].extra["path"] == path.split("?")[0]
    else:
        assert r.status_code == 200, r.text


def test_principal_outside_the_policy_is_denied_data(served: Served) -> None:
    with served.client() as c:
        r = c.post("/v1/query", json={"sql": "SELECT id FROM app.customers"}, headers=served.key("dave"))
        apply = c.post("/v1/policies", json={"document": "version: 1\nroles: {}\n"}, headers=served.key("dave"))
    assert r.status_code == 403 and r.json()["code"] == "AccessDenied"
    assert apply.status_code == 403


def test_jwt_claims_govern_rows(served: Served) -> None:
    token = make_jwt("erin", roles=["support_eu"], countries=["BR"])
    with served.client() as c:
        rows = c.post("/v1/query", json={"sql": "SELECT country FROM app.customers"},
                      headers={"Authorization": f"Bearer {token}"}).json()["rows"]
    assert rows and {r[0] for r in rows} == {"BR"}


def test_health_routes_need_no_credentials_even_bad_ones(served: Served) -> None:
    with served.client() as c:
        for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
            assert c.get(path, headers={"X-API-Key": "bad"}).status_code == 200



def test_open_platform_lets_any_principal_use_admin_routes_but_still_needs_credentials(tmp_path: Path) -> None:
    with Platform.open(Config.embedded(tmp_path / "hw")) as platform, serve(platform) as server, \
            httpx.Client(base_url=server.base_url, timeout=30) as c:
        token = platform.create_api_key("anyone").token
        assert c.get("/v1/audit/verify", headers={"X-API-Key": token}).status_code == 200
        assert c.get("/v1/audit/verify").status_code == 401
        assert c.get("/v1/policies/current", headers={"X-API-Key": token}).json()["code"] == "NotFound"
