"""Page cursors are encrypted (AES-GCM), not only signed; bad cursors are typed errors.

Before, a cursor was base64 JSON plus a signature: anyone holding one read the sort-key values
of the last row handed out. Now nothing of the payload is readable; tampered, foreign, expired
and non-string cursors raise ``InvalidCursor`` (HTTP 4xx, never a 500).
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
from typing import Any

import pytest

from headwater import Config, InvalidCursor, Platform
from headwater.access.cursor import CursorCodec, CursorState

MARKER = "Zelda-Unique-Sort-Value"


@pytest.fixture
def paged(platform: Platform) -> tuple[Platform, str, str]:
    s = platform.session("alice")
    s.write("app.t", [{"id": i, "name": f"{MARKER}-{i:02d}"} for i in range(1, 11)], key="id")
    query = "SELECT id, name FROM app.t ORDER BY name"
    first = s.sql(query, page_size=3)
    assert first.next_cursor
    return platform, query, first.next_cursor


def test_cursor_reveals_nothing_of_the_last_row(paged) -> None:
    _, _, cursor = paged
    assert cursor.startswith("hwc1.")
    raw = base64.urlsafe_b64decode(cursor[5:] + "=" * (-len(cursor[5:]) % 4))
    for needle in (MARKER, f"{MARKER}-03", "alice"):
        assert needle not in cursor and needle.encode() not in raw
        assert base64.b64encode(needle.encode()).decode()[:12] not in cursor


def test_same_state_encrypts_differently_and_round_trips() -> None:
    codec = CursorCodec(b"k" * 32)
    last = (None, True, 3, 2.5, "x", dt.datetime(2025, 1, 2, 3, 4, 5, 6), dt.date(2025, 1, 2),
            dt.time(1, 2, 3), decimal.Decimal("1.25"), b"\x00\xff")
    state = CursorState("fp", "alice", last, 2, 10)
    a, b = codec.encode(state), codec.encode(state)
    assert a != b  # a fresh nonce each time
    assert codec.decode(a, fingerprint="fp", principal="alice") == state
    with pytest.raises(InvalidCursor, match="another principal"):
        codec.decode(a, fingerprint="fp", principal="bob")
    with pytest.raises(InvalidCursor, match="different query"):
        codec.decode(a, fingerprint="other", principal="alice")
    with pytest.raises(InvalidCursor, match="tampered or from another platform"):
        CursorCodec(b"j" * 32).decode(a, fingerprint="fp", principal="alice")


def test_expired_cursor() -> None:
    codec = CursorCodec(b"k" * 32, ttl_s=-1)
    token = codec.encode(CursorState("fp", "alice", (1,), 0, 10))
    with pytest.raises(InvalidCursor, match="expired"):
        codec.decode(token, fingerprint="fp", principal="alice")


@pytest.mark.parametrize("bad", [0, 12345, 1.5, True, b"hwc1.abc", ["hwc1."], {"k": [1]}, object()])
def test_non_string_cursor_is_invalid_cursor(paged, bad: Any) -> None:
    platform, query, _ = paged
    with pytest.raises(InvalidCursor, match="string"):
        platform.session("alice").sql(query, cursor=bad)
    with pytest.raises(InvalidCursor, match="string"):
        platform.session("alice").read("app.t", order_by="name", page_size=2, cursor=bad)


def test_cursor_is_bound_to_principal_query_and_platform(paged, tmp_path) -> None:
    platform, query, cursor = paged
    with pytest.raises(InvalidCursor, match="principal"):
        platform.session("bob").sql(query, cursor=cursor)
    with pytest.raises(InvalidCursor, match="different query"):
        platform.session("alice").sql("SELECT id, name FROM app.t ORDER BY name DESC", cursor=cursor)
    with Platform.open(Config.embedded(tmp_path / "other")) as other:
        other.session("alice").write("app.t", [{"id": 1, "name": "a"}], key="id")
        with pytest.raises(InvalidCursor, match="another platform"):
            other.session("alice").sql(query, cursor=cursor)


def test_http_cursor_errors_are_4xx(paged) -> None:
    import httpx

    from tests.service.conftest import serve

    platform, query, cursor = paged
    token = platform.create_api_key("alice").token
    with serve(platform) as server, httpx.Client(base_url=server.base_url, timeout=30) as c:
        h = {"X-API-Key": token}
        first = c.post("/v1/query", json={"sql": query, "page_size": 3}, headers=h).json()
        follow = c.post("/v1/query", json={"sql": query, "cursor": first["next_cursor"]}, headers=h)
        assert follow.status_code == 200 and follow.json()["rows"][0][1] == f"{MARKER}-04"
        for bad in (123, {"k": [1]}, ["x"], 1.5, True):
            r = c.post("/v1/query", json={"sql": query, "cursor": bad}, headers=h)
            assert r.status_code == 422, (bad, r.text)
            assert r.headers["content-type"].startswith("application/problem+json")
        for bad in ("garbage", cursor[:-4] + "AAAA", "hwc1." + "A" * 64, "é"):
            r = c.post("/v1/query", json={"sql": query, "cursor": bad}, headers=h)
            assert r.status_code == 400 and r.json()["code"] == "InvalidCursor", r.text
            rows = c.get("/v1/datasets/app.t/rows", params={"cursor": bad}, headers=h)
            assert rows.status_code == 400 and rows.json()["code"] == "InvalidCursor", rows.text
