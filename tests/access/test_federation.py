"""Federated joins across app, warehouse and lake, checked against a computation in Python.

Every test runs on the embedded platform and again with ``app`` on Postgres (a fresh schema).
"""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest

from tests.access._seed import load_seed


@pytest.fixture
def fed(any_platform):
    seed = load_seed(any_platform)
    return any_platform.session("alice"), seed


def test_three_way_join_with_aggregation(fed):
    session, seed = fed
    got = session.sql(
        "SELECT c.country, count(DISTINCT c.id) AS customers, count(*) AS n, sum(o.amount) AS total "
        "FROM app.customers c "
        "JOIN warehouse.orders o ON o.customer_id = c.id "
        "JOIN lake.events e ON e.customer_id = c.id "
        "WHERE o.status = 'paid' AND e.kind <> 'view' AND c.country IS NOT NULL "
        "GROUP BY c.country ORDER BY c.country"
    ).to_pylist()

    acc: dict[str, dict] = defaultdict(lambda: {"ids": set(), "n": 0, "total": 0.0})
    for c in seed.customers:
        if c["country"] is None:
            continue
        for o in seed.orders:
            if o["customer_id"] != c["id"] or o["status"] != "paid":
                continue
            for e in seed.events:
                if e["customer_id"] == c["id"] and e["kind"] != "view":
                    a = acc[c["country"]]
                    a["ids"].add(c["id"])
                    a["n"] += 1
                    a["total"] += o["amount"]
    assert [r["country"] for r in got] == sorted(acc)
    for r in got:
        a = acc[r["country"]]
        assert r["customers"] == len(a["ids"])
        assert r["n"] == a["n"]
        assert r["total"] == pytest.approx(a["total"])


def test_three_way_join_rows(fed):
    session, seed = fed
    got = session.sql(
        "SELECT c.name, o.order_id, e.seq FROM app.customers c "
        "JOIN warehouse.orders o ON o.customer_id = c.id "
        "JOIN lake.events e ON e.customer_id = c.id "
        "WHERE c.id BETWEEN ? AND ? ORDER BY c.name, o.order_id, e.seq",
        [3, 12],
    ).to_pylist()
    expected = sorted(
        (c["name"], o["order_id"], e["seq"])
        for c in seed.customers if 3 <= c["id"] <= 12
        for o in seed.orders if o["customer_id"] == c["id"]
        for e in seed.events if e["customer_id"] == c["id"]
    )
    assert [(r["name"], r["order_id"], r["seq"]) for r in got] == expected
    assert len(expected) > 10


@pytest.mark.parametrize("query_params", [
    ("SELECT c.id, e.kind FROM app.customers c JOIN lake.events e ON e.customer_id = c.id "
     "WHERE c.country = :country", {"country": "DE"}),
    ("SELECT c.id, e.kind FROM lake.events e JOIN app.customers c ON e.customer_id = c.id "
     "WHERE c.country = $1", ["DE"]),
])
def test_app_lake_join_with_params(fed, query_params):
    session, seed = fed
    query, params = query_params
    got = Counter((r["id"], r["kind"]) for r in session.sql(query, params).to_pylist())
    expected = Counter(
        (c["id"], e["kind"]) for c in seed.customers if c["country"] == "DE"
        for e in seed.events if e["customer_id"] == c["id"]
    )
    assert got == expected


def test_warehouse_lake_join(fed):
    session, seed = fed
    got = session.sql(
        "SELECT o.status, count(*) AS n FROM warehouse.orders o JOIN lake.events e "
        "ON e.customer_id = o.customer_id WHERE e.kind = 'buy' GROUP BY o.status ORDER BY o.status"
    ).to_pylist()
    expected = Counter(
        o["status"] for o in seed.orders for e in seed.events
        if e["customer_id"] == o["customer_id"] and e["kind"] == "buy"
    )
    assert got == [{"status": s, "n": n} for s, n in sorted(expected.items())]


def test_left_join_keeps_unmatched_rows(fed):
    session, seed = fed
    got = session.sql(
        "SELECT o.order_id, c.name FROM warehouse.orders o LEFT JOIN app.customers c "
        "ON c.id = o.customer_id WHERE c.country = 'US' OR c.country IS NULL ORDER BY o.order_id"
    ).to_pylist()
    by_id = {c["id"]: c for c in seed.customers}
    expected = []
    for o in seed.orders:
        c = by_id.get(o["customer_id"])
        if c is None or c["country"] in ("US", None):
            expected.append({"order_id": o["order_id"], "name": c["name"] if c else None})
    assert got == expected
    assert any(r["name"] is None for r in got)  # orders without a customer survive


def test_customers_without_orders(fed):
    session, seed = fed
    got = session.sql(
        "SELECT c.id FROM app.customers c WHERE NOT EXISTS "
        "(SELECT 1 FROM warehouse.orders o WHERE o.customer_id = c.id) ORDER BY c.id"
    ).to_pylist()
    with_orders = {o["customer_id"] for o in seed.orders}
    assert [r["id"] for r in got] == [c["id"] for c in seed.customers if c["id"] not in with_orders]


def test_union_across_stores(fed):
    session, seed = fed
    got = session.sql(
        "SELECT id AS cid FROM app.customers WHERE id <= 3 "
        "UNION SELECT customer_id AS cid FROM warehouse.orders WHERE order_id <= 3 "
        "UNION SELECT customer_id AS cid FROM lake.events WHERE seq < 3 ORDER BY cid NULLS LAST"
    ).to_pylist()
    expected = {c["id"] for c in seed.customers if c["id"] <= 3}
    expected |= {o["customer_id"] for o in seed.orders if o["order_id"] <= 3}
    expected |= {e["customer_id"] for e in seed.events if e["seq"] < 3}
    assert [r["cid"] for r in got] == sorted(expected, key=lambda v: (v is None, v or 0))


def test_federated_pagination(fed):
    session, seed = fed
    query = ("SELECT c.country, o.status, o.amount FROM app.customers c "
             "JOIN warehouse.orders o ON o.customer_id = c.id ORDER BY c.country, o.status")
    rows = []
    pages = 0
    for page in session.sql(query, page_size=7):
        assert page.num_rows <= 7
        rows.extend(page.to_pylist())
        pages += 1
    by_id = {c["id"]: c for c in seed.customers}
    expected = [
        {"country": by_id[o["customer_id"]]["country"], "status": o["status"], "amount": o["amount"]}
        for o in seed.orders if o["customer_id"] in by_id
    ]
    assert len(rows) == len(expected)
    assert Counter(map(_key, rows)) == Counter(map(_key, expected))
    order = [(r["country"] is None, r["country"] or "", r["status"]) for r in rows]
    assert order == sorted(order)
    assert pages == -(-len(expected) // 7)


def test_read_pagination_on_app(fed):
    session, seed = fed
    ids = []
    for page in session.read("app.customers", columns=["id", "name"], order_by="id", page_size=6):
        ids.extend(r["id"] for r in page.to_pylist())
    assert ids == [c["id"] for c in seed.customers]


def test_sql_pagination_non_unique_on_app(fed):
    session, seed = fed
    rows = []
    for page in session.sql("SELECT country FROM app.customers ORDER BY country DESC", page_size=3):
        rows.extend(r["country"] for r in page.to_pylist())
    nonnull = sorted((c["country"] for c in seed.customers if c["country"] is not None), reverse=True)
    assert rows == nonnull + [None] * sum(c["country"] is None for c in seed.customers)


def _key(r):
    return (r["country"], r["status"], r["amount"])
