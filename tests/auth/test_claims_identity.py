"""Issue 14, identity: only configured claims make the principal (SDK, through ``Platform``).

A row filter keyed on ``principal.name`` and one on a mapped attribute; tokens carry a display
name, extra attributes and roles that the configuration does not map.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest

from headwater import AccessDenied, AuthenticationError, Config, Platform

SECRET = "k" * 40
ISS, AUD = "https://idp.example", "headwater"
POLICY = """\
version: 1
roles:
  owner:
    grants:
      - {datasets: "app.notes", actions: [select]}
    row_filters:
      - {datasets: "app.notes", where: "owner = principal.name"}
  regional:
    grants:
      - {datasets: "app.notes", actions: [select]}
    row_filters:
      - {datasets: "app.notes", where: "region = principal.region"}
principals:
  erin: {roles: [owner]}
  frank: {roles: [regional], attributes: {region: EU}}
"""
NOTES = [{"id": 1, "owner": "erin", "region": "EU", "body": "erin's"},
         {"id": 2, "owner": "alice", "region": "US", "body": "alice's"}]


def _platform(tmp_path: Path, claims: dict[str, Any] | None) -> Platform:
    section: dict[str, Any] = {"issuer": ISS, "audience": AUD, "hs256_secret": SECRET}
    if claims is not None:
        section["claims"] = claims
    platform = Platform.open(Config.load(None, overrides={"platform_dir": str(tmp_path / "hw"),
                                                          "auth": {"jwt": section}}))
    platform.session("setup").write("app.notes", NOTES, key="id")
    platform.apply_policy(POLICY, source="test", applied_by="test")
    return platform


@pytest.fixture
def default_claims(tmp_path: Path) -> Iterator[Platform]:
    platform = _platform(tmp_path, None)
    yield platform
    platform.close()


def token(**claims: Any) -> str:
    now = dt.datetime.now(dt.UTC)
    return jwt.encode({"iss": ISS, "aud": AUD, "iat": now, "exp": now + dt.timedelta(minutes=5), **claims},
                      SECRET, algorithm="HS256")


def ids(platform: Platform, tok: str) -> list[int]:
    return [r["id"] for r in platform.session(token=tok).sql("SELECT id FROM app.notes ORDER BY id").to_pylist()]


def test_display_name_claim_does_not_become_principal_name(default_claims: Platform) -> None:
    # The attack: a token for erin whose display name is "alice" read alice's rows.
    assert ids(default_claims, token(sub="erin", name="alice")) == [1]
    session = default_claims.session(token=token(sub="erin", name="alice", principal="alice"))
    assert session.principal.name == "erin" and session.principal.attributes == {}


def test_unmapped_roles_and_attributes_are_ignored(default_claims: Platform) -> None:
    # frank's region comes from the policy file; a token's region claim is not mapped.
    assert ids(default_claims, token(sub="frank", region="US")) == [1]
    # Roles in a token are not read unless mapped: a stranger claiming "owner" gets nothing.
    with pytest.raises(AccessDenied):
        ids(default_claims, token(sub="mallory", roles=["owner", "regional"]))


def test_mapped_claims_are_read(tmp_path: Path) -> None:
    platform = _platform(tmp_path, {"name": "email", "roles": "groups", "attributes": {"region": "rgn"}})
    try:
        tok = token(sub="ignored", email="grace@example.com", groups=["regional"], rgn="US", region="EU")
        assert ids(platform, tok) == [2]
        with pytest.raises(AuthenticationError):  # the mapped name claim is missing
            platform.session(token=token(sub="grace", groups=["regional"]))
        with pytest.raises(AuthenticationError):  # ... or not a string
            platform.session(token=token(email=["grace"], groups=["regional"]))
    finally:
        platform.close()
