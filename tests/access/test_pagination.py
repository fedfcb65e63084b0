"""Keyset pagination: completeness, order, stability under inserts, NULLs, DESC, cursor safety.

Each test runs against every embedded store and against Postgres as the ``app`` store.
"""

from __future__ import annotations

import random
from collections import Counter

import pyarrow as pa
import pytest

from headwater import Config, InvalidCursor, InvalidInput, Platform
from headwater.access import cursor as cursor_module

TARGETS = [
    pytest.param(("embedded", "app"), id="sqlite"),
    pytest.param(("embedded", "warehouse"), id="duckdb"),
    pytest.param(("embedded", "lake"), id="parquet"),
    pytest.param(("postgres", "app"), id="postgres", marks=pytest.mark.postgres),
]

SCHEMA = pa.schema([("id", pa.int64()), ("g", pa.int64()), ("v", pa.string()), ("w", pa.int64())])


@pytest.fixture(params=TARGETS)
def target(request):
    """(platform, store name) for one backend."""
    kind, store = request.param
    platform = request.getfixturevalue("platform" if kind == "embedded" else "pg_platform")
    return platform, store


def py_order(rows, keys):
    """Rows sorted like the pager: each key ASC or DESC, NULLs last (stable)."""
    out = list(rows)
    for name, desc in reversed(keys):
        nonnull = sorted((r for r in out if r[name] is not None), key=lambda r: r[name], reverse=desc)
        out = nonnull + [r for r in out if r[name] is None]
    return out


def collect(first):
    """All rows of all pages, plus the page sizes seen."""
    rows, sizes = [], []
    for page in first:
        got = page.to_pylist()
        rows.extend(got)
        sizes.append(len(got))
    return rows, sizes


def make_rows(n, *, seed=3, null_every=5):
    rnd = random.Random(seed)
    return [
        {"id": i, "g": None if i % null_every == 0 else rnd.randint(0, 4),
         "v": rnd.choice(["a", "b", "c", None]), "w": rnd.randint(0, 1)}
        for i in range(1, n + 1)
    ]


def load(session, dataset, rows, **kw):
    session.write(dataset, pa.Table.from_pylist(rows, SCHEMA), **kw)


# -- completeness and order ----------------------------------------------------------------
@pytest.mark.parametrize("page_size", [1, 7, 50, 57, 1000])
def test_read_pages_cover_every_row_once_in_order(target, page_size):
    platform, store = target
    session = platform.session("alice")
    rows = make_rows(57)
    load(session, f"{store}.t", rows, key="id")
    first = session.read(f"{store}.t", order_by="id", page_size=page_size)
    got, sizes = collect(first)
    assert [r["id"] for r in got] == list(range(1, 58))
    assert got == rows
    assert all(s == page_size for s in sizes[:-1])
    assert len(sizes) == max(1, -(-57 // page_size))
    assert first.plan.unique_sort is True


def test_last_page_has_no_cursor(target):
    platform, store = target
    session = platform.session("alice")
    load(session, f"{store}.t", make_rows(6), key="id")
    page = session.read(f"{store}.t", order_by="id", page_size=3)
    assert page.next_cursor is not None
    last = page.next_page()
    assert last.num_rows == 3
    assert last.next_cursor is None
    assert last.next_page() is None


def test_empty_result_is_one_empty_page(target):
    platform, store = target
    session = platform.session("alice")
    load(session, f"{store}.t", make_rows(6), key="id")
    page = session.sql(f"SELECT id FROM {store}.t WHERE id > 100 ORDER BY id", page_size=5)
    assert page.num_rows == 0
    assert page.next_cursor is None
    assert page.columns == ["id"]


def test_sql_non_unique_order_with_many_duplicates(target):
    platform, store = target
    session = platform.session("alice")
    # 300 rows but only 3 x 2 distinct (g, w) values: every page boundary falls inside a run of
    # identical rows
    rows = [{"id": i, "g": i % 3, "v": "x", "w": i % 2} for i in range(300)]
    load(session, f"{store}.t", rows, key="id")
    for page_size in (1, 4, 49, 50, 51, 299, 300, 301):
        first = session.sql(f"SELECT g, w FROM {store}.t ORDER BY g", page_size=page_size)
        assert first.plan.unique_sort is False
        got, sizes = collect(first)
        assert len(got) == 300, page_size
        assert Counter((r["g"], r["w"]) for r in got) == Counter((r["g"], r["w"]) for r in rows)
        assert got == py_order([{"g": r["g"], "w": r["w"]} for r in rows], [("g", False), ("w", False)])
        assert all(s == page_size for s in sizes[:-1])


def test_sql_group_by_pagination(target):
    platform, store = target
    session = platform.session("alice")
    rows = make_rows(80)
    load(session, f"{store}.t", rows, key="id")
    got, _ = collect(session.sql(
        f"SELECT g, count(*) AS n FROM {store}.t GROUP BY g ORDER BY n DESC", page_size=2))
    counts = Counter(r["g"] for r in rows)
    assert Counter({r["g"]: r["n"] for r in got}) == counts
    assert [r["n"] for r in got] == sorted(counts.values(), reverse=True)


@pytest.mark.parametrize("keys", [
    [("g", False)], [("g", True)], [("v", True), ("g", False)], [("g", True), ("v", True)],
    [("v", False), ("w", True)],
])
def test_desc_and_nulls_in_sort_keys_read(target, keys):
    platform, store = target
    session = platform.session("alice")
    rows = make_rows(45, null_every=4)
    load(session, f"{store}.t", rows, key="id")
    order_by = [f"{n} desc" if d else n for n, d in keys]
    got, _ = collect(session.read(f"{store}.t", order_by=order_by, page_size=4))
    assert got == py_order(rows, [*keys, ("id", False)])


@pytest.mark.parametrize("order", ["g DESC, v", "v DESC, g DESC", "g, v DESC"])
def test_desc_and_nulls_in_sort_keys_sql(target, order):
    platform, store = target
    session = platform.session("alice")
    rows = make_rows(45, null_every=3)
    load(session, f"{store}.t", rows, key="id")
    got, _ = collect(session.sql(f"SELECT g, v, w FROM {store}.t ORDER BY {order}", page_size=4))
    keys = [(part.split()[0], part.strip().upper().endswith("DESC")) for part in order.split(",")]
    projected = [{"g": r["g"], "v": r["v"], "w": r["w"]} for r in rows]
    expected = py_order(projected, keys + [(c, False) for c in ("g", "v", "w") if c not in dict(keys)])
    assert got == expected


def test_order_by_argument(target):
    platform, store = target
    session = platform.session("alice")
    rows = make_rows(30)
    load(session, f"{store}.t", rows, key="id")
    got, _ = collect(session.sql(f"SELECT id, g FROM {store}.t", order_by=["g desc"], page_size=4))
    assert got == py_order([{"id": r["id"], "g": r["g"]} for r in rows], [("g", True), ("id", False)])
    with pytest.raises(InvalidInput):
        session.sql(f"SELECT id FROM {store}.t", order_by=["g"], page_size=4)


def test_paging_needs_order_on_result_columns(target):
    platform, store = target
    session = platform.session("alice")
    load(session, f"{store}.t", make_rows(5), key="id")
    with pytest.raises(InvalidInput, match="ORDER BY"):
        session.sql(f"SELECT id FROM {store}.t ORDER BY g + 1", page_size=2)


# -- stability under concurrent inserts ----------------------------------------------------
def test_read_stable_under_inserts_between_pages(target):
    platform, store = target
    session = platform.session("alice")
    rows = [{"id": i * 10, "g": i % 4, "v": "o", "w": 0} for i in range(1, 41)]
    load(session, f"{store}.t", rows, key="id")
    original_pages = [p.to_pylist() for p in session.read(f"{store}.t", order_by="id", page_size=6)]

    page = session.read(f"{store}.t", order_by="id", page_size=6)
    seen = page.to_pylist()
    # rows before the cursor position (ids below the last id handed out) ...
    load(session, f"{store}.t", [{"id": i, "g": 0, "v": "new", "w": 0} for i in (1, 5, 15, 35)])
    page = page.next_page()
    assert page.to_pylist() == original_pages[1]  # ... do not shift later pages
    seen += page.to_pylist()
    # and rows ahead of the cursor are simply seen when their page comes
    load(session, f"{store}.t", [{"id": i, "g": 0, "v": "new", "w": 0} for i in (7, 401, 402)])
    while page.next_cursor:
        page = page.next_page()
        seen += page.to_pylist()
    ids = [r["id"] for r in seen]
    assert len(ids) == len(set(ids))
    originals = [r["id"] for r in seen if r["v"] == "o"]
    assert originals == [r["id"] for r in rows]  # none skipped, none duplicated, in order
    assert {r["id"] for r in seen if r["v"] == "new"} == {401, 402}
    assert ids == sorted(ids)


def test_sql_non_unique_stable_under_inserts_between_pages(target):
    platform, store = target
    session = platform.session("alice")
    rows = [{"id": i, "g": i % 5, "v": "o", "w": i % 2} for i in range(100)]
    load(session, f"{store}.t", rows, key="id")
    query = f"SELECT g, v, w FROM {store}.t ORDER BY g"
    page = session.sql(query, page_size=13)
    seen = page.to_pylist()
    next_id = 1000
    while page.next_cursor:
        last = seen[-1]
        # insert rows that sort before the cursor position: a smaller g, and the same g with a
        # smaller tie-breaker v ('n' < 'o')
        new = [{"id": next_id, "g": 0, "v": "n", "w": 0},
               {"id": next_id + 1, "g": last["g"], "v": "n", "w": last["w"]}]
        next_id += 2
        load(session, f"{store}.t", new)
        page = page.next_page()
        seen += page.to_pylist()
    originals = [r for r in seen if r["v"] == "o"]
    assert Counter((r["g"], r["w"]) for r in originals) == Counter((r["g"], r["w"]) for r in rows)
    assert len(originals) == 100
    # new rows only ever appear where the order puts them after the position already handed out
    keys = [(r["g"], r["v"], r["w"]) for r in seen]
    assert keys == sorted(keys)


# -- cursor safety -------------------------------------------------------------------------
@pytest.fixture
def paged(platform):
    session = platform.session("alice")
    load(session, "app.t", make_rows(20), key="id")
    query = "SELECT id, g FROM app.t WHERE id > ? ORDER BY id"
    first = session.sql(query, [0], page_size=5)
    assert first.next_cursor
    return platform, session, query, first.next_cursor


def _flip(token: str, index: int) -> str:
    ch = token[index]
    return token[:index] + ("A" if ch != "A" else "B") + token[index + 1:]


def test_valid_cursor_continues(paged):
    _, session, query, cursor = paged
    page = session.sql(query, [0], cursor=cursor)
    assert [r["id"] for r in page.to_pylist()] == [6, 7, 8, 9, 10]  # page_size from the cursor
    page = session.sql(query, [0], cursor=cursor, page_size=2)
    assert [r["id"] for r in page.to_pylist()] == [6, 7]


@pytest.mark.parametrize("where", ["prefix", "nonce", "ciphertext_start", "ciphertext_middle", "tag"])
def test_tampered_cursor(paged, where):
    _, session, query, cursor = paged
    body = cursor.split(".", 1)[1]
    offset = len(cursor) - len(body)
    index = {
        "prefix": 0, "nonce": offset + 3, "ciphertext_start": offset + 17,
        "ciphertext_middle": offset + len(body) // 2, "tag": len(cursor) - 6,
    }[where]
    with pytest.raises(InvalidCursor):
        session.sql(query, [0], cursor=_flip(cursor, index))


def test_every_single_char_flip_is_rejected(paged):
    _, session, query, cursor = paged
    for i in range(len(cursor) - 1):  # the last char may only carry base64 padding bits
        with pytest.raises(InvalidCursor):
            session.sql(query, [0], cursor=_flip(cursor, i))


@pytest.mark.parametrize("bad", ["", "garbage", "a.b.c", "....", "!!!.###", "eyJ9.", ".abc", "hwc1.", "hwc1.AAAA",
                                 "hwc1.é", "hwc1." + "A" * 9000])
def test_malformed_cursor(paged, bad):
    _, session, query, _ = paged
    with pytest.raises(InvalidCursor):
        session.sql(query, [0], cursor=bad or " ")


def test_cursor_of_another_principal(paged):
    platform, _, query, cursor = paged
    with pytest.raises(InvalidCursor, match="principal"):
        platform.session("bob").sql(query, [0], cursor=cursor)


def test_cursor_of_another_query(paged):
    _, session, _, cursor = paged
    with pytest.raises(InvalidCursor):
        session.sql("SELECT id, g FROM app.t WHERE id >= ? ORDER BY id", [0], cursor=cursor)
    with pytest.raises(InvalidCursor):
        session.read("app.t", order_by="id", cursor=cursor)


def test_cursor_with_other_params(paged):
    _, session, query, cursor = paged
    with pytest.raises(InvalidCursor):
        session.sql(query, [1], cursor=cursor)


def test_cursor_from_another_platform(paged, tmp_path):
    _, _, query, cursor = paged
    other = Platform.open(Config.embedded(tmp_path / "other"))
    try:
        s = other.session("alice")
        load(s, "app.t", make_rows(20), key="id")
        with pytest.raises(InvalidCursor, match="another platform"):
            s.sql(query, [0], cursor=cursor)
    finally:
        other.close()


def test_expired_cursor(paged, monkeypatch):
    platform, session, query, cursor = paged

    class Later:
        @staticmethod
        def time():
            import time

            return time.time() + platform.config.security.cursor_ttl_s + 5

    monkeypatch.setattr(cursor_module, "time", Later)
    with pytest.raises(InvalidCursor, match="expired"):
        session.sql(query, [0], cursor=cursor)


def test_configured_ttl(tmp_path, monkeypatch):
    cfg = Config.embedded(tmp_path / "hw")
    cfg.security.cursor_ttl_s = 30
    with Platform.open(cfg) as platform:
        session = platform.session("alice")
        load(session, "app.t", make_rows(10), key="id")
        first = session.read("app.t", order_by="id", page_size=3)
        import time as real_time

        now = real_time.time()

        class At:
            t = now + 20

            @classmethod
            def time(cls):
                return cls.t

        monkeypatch.setattr(cursor_module, "time", At)
        assert first.next_page().num_rows == 3  # within ttl
        At.t = now + 40
        with pytest.raises(InvalidCursor, match="expired"):
            first.next_page()


def test_cursor_message_does_not_reveal_key_values(platform):
    session = platform.session("alice")
    session.write("app.secrets", [{"code": "TOPSECRET-1"}, {"code": "TOPSECRET-2"}], key="code")
    first = session.read("app.secrets", order_by="code", page_size=1)
    with pytest.raises(InvalidCursor) as info:
        platform.session("bob").read("app.secrets", order_by="code", cursor=first.next_cursor)
    assert "TOPSECRET" not in str(info.value)
    assert "TOPSECRET" not in first.next_cursor  # opaque to a casual reader


# -- page size bounds ----------------------------------------------------------------------
@pytest.mark.parametrize("size", [0, -1, 100_001])
def test_page_size_out_of_bounds(platform, size):
    session = platform.session("alice")
    load(session, "app.t", make_rows(5), key="id")
    with pytest.raises(InvalidInput, match="page_size"):
        session.read("app.t", order_by="id", page_size=size)


def test_page_size_bounds_follow_config(platform):
    session = platform.session("alice")
    load(session, "app.t", make_rows(12), key="id")
    assert session.read("app.t", order_by="id", page_size=100_000).num_rows == 12
    platform.config.query.max_page_size = 5
    assert session.read("app.t", order_by="id", page_size=5).num_rows == 5
    with pytest.raises(InvalidInput):
        session.read("app.t", order_by="id", page_size=6)


def test_default_page_size_applies_with_cursor_only_paging(platform):
    session = platform.session("alice")
    load(session, "app.t", make_rows(12), key="id")
    platform.config.query.default_page_size = 4
    first = session.read("app.t", order_by="id", page_size=4)
    nxt = session.read("app.t", order_by="id", cursor=first.next_cursor)
    assert [r["id"] for r in nxt.to_pylist()] == [5, 6, 7, 8]


# -- typed sort keys -----------------------------------------------------------------------
@pytest.mark.parametrize("column", ["ts", "day", "f", "b", "tz"])
@pytest.mark.parametrize("desc", [False, True])
def test_typed_sort_keys_round_trip_through_cursor(target, column, desc):
    import datetime as dt

    platform, store = target
    session = platform.session("alice")
    rnd = random.Random(11)
    base = dt.datetime(2024, 1, 1, 12, 0, 0)
    rows = [
        {"id": i,
         "ts": None if i % 7 == 0 else base + dt.timedelta(seconds=rnd.randint(0, 5) * 1.5),
         "day": dt.date(2024, 1, 1 + rnd.randint(0, 3)),
         "f": rnd.choice([0.1, 0.2, None, 1e-9]),
         "b": rnd.choice([True, False, None]),
         "tz": dt.datetime(2024, 1, 1, tzinfo=dt.UTC) + dt.timedelta(hours=rnd.randint(0, 3))}
        for i in range(40)
    ]
    session.write(f"{store}.typed", rows, key="id")
    got, _ = collect(session.read(f"{store}.typed", order_by=[f"{column} desc" if desc else column],
                                  page_size=3))
    assert [r["id"] for r in got] == [r["id"] for r in py_order(rows, [(column, desc), ("id", False)])]
