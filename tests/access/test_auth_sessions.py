"""Sessions from credentials: API keys and JWTs map to principals the policy then governs."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import jwt
import pytest

from headwater import AuthenticationError, Config, InvalidInput, Platform
from headwater.demo import DEMO_POLICY, DEMO_TAGS

SECRET = "s" * 40


@pytest.fixture()
def secured(tmp_path: Path) -> Platform:
    cfg = Config.load(None, overrides={
        "platform_dir": str(tmp_path / "hw"),
        "auth": {"jwt": {"issuer": "https://idp.example", "audience": "headwater", "hs256_secret": SECRET,
                         "claims": {"roles": "roles", "attributes": {"countries": "countries"}}}},
    })
    platform = Platform.open(cfg)
    platform.session("setup").write("app.customers", [
        {"id": 1, "email": "a@example.com", "phone": "+1 555 0101", "ssn": "123-45-6789", "name": "A", "country": "US"},
        {"id": 2, "email": "b@example.com", "phone": "+49 30 1234", "ssn": "987-65-4321", "name": "B", "country": "DE"},
    ], key="id")
    for column, tag in DEMO_TAGS.items():
        platform.catalog.set_tags("app.customers", column, [tag])
    platform.policies.apply(DEMO_POLICY, source="demo", applied_by="test")
    yield platform
    platform.close()


def _jwt(**claims: object) -> str:
    now = dt.datetime.now(dt.UTC)
    body = {"iss": "https://idp.example", "aud": "headwater", "iat": now, "exp": now + dt.timedelta(minutes=5)}
    body.update(claims)
    return jwt.encode(body, SECRET, algorithm="HS256")


def test_api_key_session_is_governed_as_its_principal(secured: Platform) -> None:
    key = secured.api_keys.create("carol")
    rows = secured.session(token=key.token).sql("SELECT id, ssn FROM app.customers").to_pylist()
    assert rows == [{"id": 2, "ssn": "****4321"}]
    secured.api_keys.revoke(key.key_id)
    with pytest.raises(AuthenticationError, match="invalid credentials"):
        secured.session(token=key.token)


def test_jwt_roles_and_attributes_come_from_claims(secured: Platform) -> None:
    token = _jwt(sub="dora", roles=["support_eu"], countries=["US"])
    rows = secured.session(token=token).sql("SELECT id, email FROM app.customers").to_pylist()
    assert rows == [{"id": 1, "email": "a@example.com"}]


@pytest.mark.parametrize("claims", [
    {"sub": "dora", "iss": "https://evil.example"},
    {"sub": "dora", "aud": "someone-else"},
    {"sub": "dora", "exp": dt.datetime(2020, 1, 1, tzinfo=dt.UTC)},
])
def test_bad_jwts_are_refused_without_saying_why(secured: Platform, claims: dict[str, object]) -> None:
    with pytest.raises(AuthenticationError) as info:
        secured.session(token=_jwt(**claims))
    assert str(info.value) == "invalid credentials"


def test_token_or_principal_not_both(secured: Platform) -> None:
    with pytest.raises(InvalidInput):
        secured.session("alice", token="x")
