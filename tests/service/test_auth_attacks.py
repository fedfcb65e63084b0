"""Issue 14 through HTTP: the cost of a failed key, identity from configured claims, write attacks
and bad input, each answered with a problem (4xx), never a 500."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from headwater import Platform
from headwater.auth import ScryptParams
from headwater.service import ServiceConfig
from tests.service.conftest import JWT_SECRET, Served, make_jwt, open_platform, serve


@pytest.fixture
def hashes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts scrypt derivations (the slow hash) made anywhere in this process."""
    count = [0]
    real = ScryptParams.derive

    def counting(self: ScryptParams, secret: bytes, salt: bytes) -> bytes:
        count[0] += 1
        return real(self, secret, salt)

    monkeypatch.setattr(ScryptParams, "derive", counting)
    return count


@pytest.fixture
def throttled(tmp_path: Path) -> Iterator[tuple[str, Platform]]:
    """A server whose failed-authentication buckets hold 3 tokens and barely refill."""
    platform = open_platform(tmp_path / "hw")
    cfg = ServiceConfig(rate_per_s=1000, rate_burst=1000, auth_failure_burst=3, auth_failures_per_s=0.001)
    with serve(platform, cfg) as server:
        yield server.base_url, platform
    platform.close()


def _client(base: str, address: str = "127.0.0.1") -> httpx.Client:
    return httpx.Client(base_url=base, timeout=30, transport=httpx.HTTPTransport(local_address=address))


def test_a_failed_key_costs_one_hash_and_repeated_failures_none(throttled, hashes) -> None:
    base, platform = throttled
    good = platform.create_api_key("alice")
    wrong = f"{good.key_id}.{'x' * 43}"
    with _client(base) as c:
        hashes[0] = 0
        assert c.get("/v1/slo", headers={"X-API-Key": good.token}).status_code == 200
        assert hashes[0] == 1  # verified once for the whole request (middleware, then route)
        assert c.get("/v1/slo", headers={"X-API-Key": good.token}).status_code == 200
        assert hashes[0] == 1  # then from the verification cache
        for _ in range(3):
            hashes[0] = 0
            r = c.get("/v1/slo", headers={"X-API-Key": wrong})
            assert r.status_code == 401 and hashes[0] == 1  # one hash per failure, not two
        hashes[0] = 0
        for token in (wrong, f"hwk_{'z' * 12}.{'y' * 43}"):  # same key again; another key, same address
            r = c.get("/v1/slo", headers={"X-API-Key": token})
            assert r.status_code == 429, r.text
            assert int(r.headers["retry-after"]) >= 1
            assert r.headers["content-type"] == "application/problem+json"
            assert r.json()["code"] == "RateLimited" and r.json()["rule"] == "auth_rate_limit"
        r = c.get("/v1/slo", auth=(good.key_id, "w" * 43))  # Basic, same key id
        assert r.status_code == 429
        assert hashes[0] == 0  # refused before any hash
        # A key verified recently is answered from the cache: never held up.
        assert c.get("/v1/slo", headers={"X-API-Key": good.token}).status_code == 200


def test_failures_are_counted_per_key_id_across_addresses(throttled, hashes) -> None:
    base, platform = throttled
    target = platform.create_api_key("bob")
    other = platform.create_api_key("carol")
    with _client(base, "127.0.0.1") as first:
        for _ in range(3):
            assert first.get("/v1/slo", headers={"X-API-Key": f"{target.key_id}.{'a' * 43}"}).status_code == 401
    with _client(base, "127.0.0.2") as second:
        hashes[0] = 0
        r = second.get("/v1/slo", headers={"X-API-Key": f"{target.key_id}.{'b' * 43}"})
        assert r.status_code == 429 and hashes[0] == 0  # this key id is exhausted everywhere
        assert second.get("/v1/slo", headers={"X-API-Key": other.token}).status_code == 200
        assert second.get("/v1/slo", headers={"X-API-Key": target.token}).status_code == 429


def test_bad_jwts_drain_the_address_but_valid_jwts_pass(throttled, hashes) -> None:
    base, platform = throttled
    with _client(base, "127.0.0.3") as c:
        for _ in range(4):
            assert c.get("/v1/slo", headers={"Authorization": "Bearer a.b.c"}).status_code == 401
        assert c.get("/v1/slo", headers={"Authorization": f"Bearer {make_jwt('erin')}"}).status_code == 200
        key = platform.create_api_key("dora")
        assert c.get("/v1/slo", headers={"X-API-Key": key.token}).status_code == 429  # would hash


# -- identity and uncatalogued tables ---------------------------------------------------------------
OWNER_POLICY = """\
version: 1
roles:
  owner:
    grants:
      - {datasets: ["app.notes", "app.side*"], actions: [select, insert, update, delete]}
    row_filters:
      - {datasets: ["app.notes", "app.side*"], where: "owner = principal.name"}
principals:
  erin: {roles: [owner]}
"""


def test_identity_and_uncatalogued_tables_through_http(served: Served) -> None:
    from headwater.demo import DEMO_POLICY

    platform = served.platform
    setup = platform.session("alice")  # the demo policy's admin
    setup.write("app.notes", [{"id": 1, "owner": "erin"}, {"id": 2, "owner": "alice"}], key="id", mode="overwrite")
    platform.store("app").write("sidecar", setup.sql("SELECT 7 AS id, 'alice' AS owner").to_arrow())
    platform.apply_policy(OWNER_POLICY, source="test", applied_by="test")
    try:
        # A display-name claim "alice" does not make erin alice in a row filter.
        bearer = {"Authorization": f"Bearer {make_jwt('erin', name='alice', roles=['owner'])}"}
        with served.client() as c:
            r = c.post("/v1/query", json={"sql": "SELECT id, owner FROM app.notes ORDER BY id"}, headers=bearer)
            assert r.status_code == 200, r.text
            assert r.json()["rows"] == [[1, "erin"]]
            # A table the catalog does not know is governed as the existing table it is.
            r = c.post("/v1/datasets/app.sidecar/rows", json=[{"id": 8, "owner": "erin"}],
                       params={"mode": "overwrite"}, headers=bearer)
            assert r.status_code == 403 and r.json()["code"] == "AccessDenied", r.text
    finally:
        platform.apply_policy(DEMO_POLICY, source="demo", applied_by="test")
    assert setup.sql("SELECT id, owner FROM app.sidecar").to_pylist() == [{"id": 7, "owner": "alice"}]


# -- writes through HTTP --------------------------------------------------------------------------
def test_write_attacks_through_http(served: Served) -> None:
    alice = served.key("alice")
    with served.client() as c:
        assert c.post("/v1/datasets/app.scores/rows", json=[{"id": 1, "team": "x", "score": 10}],
                      params={"mode": "overwrite"}, headers=alice).status_code == 200
        # columns that differ only in case
        r = c.post("/v1/datasets/app.scores/rows", json=[{"id": 2, "team": "y", "TEAM": "z"}], headers=alice)
        assert r.status_code == 422 and r.json()["code"] == "WriteError"
        # a partial upsert keeps the stored value of the column it leaves out
        r = c.post("/v1/datasets/app.scores/rows", json=[{"id": 1, "team": "renamed"}],
                   params={"mode": "upsert", "key": "id"}, headers=alice)
        assert r.status_code == 200, r.text
        rows = c.post("/v1/query", json={"sql": "SELECT id, team, score FROM app.scores"}, headers=alice).json()
        assert rows["rows"] == [[1, "renamed", 10]]


# -- bad input ------------------------------------------------------------------------------------
DEEP = "[" * 5000 + "]" * 5000


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/query", '{"sql": "SELECT id FROM app.customers WHERE id = ?", "params": [' + "9" * 100 + "]}"),
    ("/v1/query", '{"sql": "SELECT id FROM app.customers", "params": ' + DEEP + "}"),
    ("/v1/query", '{"sql": "SELECT 1", "page_size": ' + "9" * 5000 + "}"),
    ("/v1/datasets/app.bad_input/rows", '[{"id": 2, "v": ' + DEEP + "}]"),
    ("/v1/datasets/app.bad_input/rows", '[{"id": ' + "9" * 30 + "}]"),
    ("/v1/datasets/app.bad_input/rows", '[{"id": 2, "v": ' + "[" * 100 + "1" + "]" * 100 + "}]"),
])
def test_huge_integers_and_deep_nesting_are_400(served: Served, path: str, body: str) -> None:
    with served.client() as c:
        r = c.post(path, content=body, headers={**served.key("alice"), "content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "InvalidInput"


def test_large_numbers_inside_strings_and_64_bit_integers_are_fine(served: Served) -> None:
    rows = [{"id": 2**63 - 1, "note": "9" * 40 + " [[[[[[ " * 50, "n": -(2**63)}]
    with served.client() as c:
        r = c.post("/v1/datasets/app.fine_input/rows", content=json.dumps(rows),
                   headers={**served.key("alice"), "content-type": "application/json"})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("cursor", [5, ["x"], {"a": 1}, True, 1.5])
def test_non_string_cursors_are_4xx(served: Served, cursor: Any) -> None:
    with served.client() as c:
        r = c.post("/v1/query", json={"sql": "SELECT id FROM app.customers ORDER BY id", "page_size": 2,
                                      "cursor": cursor}, headers=served.key("alice"))
    assert 400 <= r.status_code < 500 and r.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("name", ["app.t%E2%80%8B", "app.t%20", "app.%D0%B0pp", "app.t%E2%80%AEx"])
def test_confusable_dataset_names_are_400(served: Served, name: str) -> None:
    with served.client() as c:
        r = c.post(f"/v1/datasets/{name}/rows", json=[{"id": 1}], headers=served.key("alice"))
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "InvalidInput"


def test_malformed_basic_credentials_are_401_not_500(served: Served) -> None:
    with served.client() as c:
        for header in ("Basic !!!", "Basic " + "QQ==" * 5, "Bearer " + "x" * 20000, "Digest abc"):
            r = c.get("/v1/slo", headers={"Authorization": header})
            assert r.status_code == 401, (header[:20], r.status_code)


def test_jwt_secret_is_never_in_a_problem(served: Served) -> None:
    with served.client() as c:
        r = c.get("/v1/slo", headers={"Authorization": "Bearer " + make_jwt("x", expired=True)})
    assert r.status_code == 401 and JWT_SECRET not in r.text
