"""Governed access end to end on real platforms: the demo policy on every store.

The same data sits in ``app`` (SQLite, or Postgres), ``warehouse`` (DuckDB) and ``lake``
(Parquet); the policy's matrix of principals x datasets x operations must hold on each, through
single-store push-down and through federation.
"""

from __future__ import annotations

import threading

import pyarrow as pa
import pytest

from headwater import AccessDenied, Platform, QueryRejected
from headwater.demo import DEMO_POLICY, DEMO_TAGS

EU = {"DE", "FR", "IT", "ES", "NL", "IE", "PL"}
ROWS = [
    {"id": i, "name": f"Person {i}", "email": f"p{i}@example.com", "phone": f"+49 30 {1000 + i}",
     "ssn": f"{100 + i:03d}-45-{6000 + i}", "country": ["DE", "US", "FR", "JP", "IT"][i % 5]}
    for i in range(1, 41)
]
STORES = ["app", "warehouse", "lake"]

POLICY = DEMO_POLICY.replace(
    '      - {datasets: ["app.customers", "app.orders"], actions: [select]}',
    '      - {datasets: ["app.customers", "app.orders", "warehouse.customers", "lake.customers"], '
    'actions: [select, insert, update]}',
).replace(
    "      - {datasets: app.customers, where: \"country IN principal.countries\"}",
    "      - {datasets: [app.customers, warehouse.customers, lake.customers], "
    "where: \"country IN principal.countries\"}",
) + """  hasher: {roles: [hasher]}
  capped: {roles: [capped]}
"""
POLICY = POLICY.replace("principals:\n", """  hasher:
    grants:
      - {datasets: "*", actions: [select]}
    columns:
      - {tag: pii.email, mask: hash}
  capped:
    grants:
      - {datasets: "*", actions: [select]}
    max_rows: 10
    max_concurrent: 1
principals:
""")


@pytest.fixture(params=["embedded", pytest.param("postgres", marks=pytest.mark.postgres)])
def governed(request) -> Platform:
    platform: Platform = request.getfixturevalue("platform" if request.param == "embedded" else "pg_platform")
    admin = platform.session("setup")
    for store in STORES:
        admin.write(f"{store}.customers", pa.Table.from_pylist(ROWS), key="id")
        for column, tag in DEMO_TAGS.items():
            platform.catalog.set_tags(f"{store}.customers", column, [tag])
    platform.policies.apply(POLICY, source="test-policy.yaml", applied_by="test")
    return platform


@pytest.mark.parametrize("store", STORES)
def test_alice_sees_everything(governed: Platform, store: str) -> None:
    rows = governed.session("alice").sql(f"SELECT * FROM {store}.customers ORDER BY id").to_pylist()
    assert rows == ROWS


@pytest.mark.parametrize("store", STORES)
def test_bob_masked_and_denied(governed: Platform, store: str) -> None:
    bob = governed.session("bob")
    rows = bob.sql(f"SELECT * FROM {store}.customers ORDER BY id").to_pylist()
    assert len(rows) == len(ROWS)
    assert all("ssn" not in r for r in rows)
    assert [r["email"] for r in rows] == ["***@example.com"] * len(ROWS)
    assert all(r["phone"] == "****" + src["phone"][-4:] for r, src in zip(rows, ROWS, strict=True))
    with pytest.raises(AccessDenied, match="rule"):
        bob.sql(f"SELECT ssn FROM {store}.customers").to_arrow()


@pytest.mark.parametrize("store", STORES)
def test_carol_row_filter_and_ssn_last4(governed: Platform, store: str) -> None:
    rows = governed.session("carol").sql(f"SELECT id, email, ssn, country FROM {store}.customers").to_pylist()
    expected = [r for r in ROWS if r["country"] in EU]
    assert sorted(r["id"] for r in rows) == [r["id"] for r in expected]
    by_id = {r["id"]: r for r in ROWS}
    assert all(r["ssn"] == "****" + by_id[r["id"]]["ssn"][-4:] for r in rows)
    assert all(r["email"] == by_id[r["id"]]["email"] for r in rows)


@pytest.mark.parametrize(
    "attack",
    [
        "SELECT count(*) AS n FROM {t} WHERE country = 'US'",
        "WITH c AS (SELECT * FROM {t}) SELECT count(*) AS n FROM c WHERE country = 'US'",
        "SELECT count(*) AS n FROM (SELECT country FROM {t} UNION ALL SELECT country FROM {t}) x WHERE country = 'US'",
        "SELECT count(*) AS n FROM {t} a JOIN {t} b ON a.id = b.id WHERE b.country = 'US'",
        "SELECT count(*) AS n FROM {t} /* comment */ WHERE \"COUNTRY\" = 'US'",
        "SELECT count(*) AS n FROM (SELECT *, row_number() OVER () AS r FROM {t}) WHERE country = 'US'",
    ],
)
@pytest.mark.parametrize("store", STORES)
def test_row_filter_cannot_be_bypassed(governed: Platform, store: str, attack: str) -> None:
    got = governed.session("carol").sql(attack.format(t=f"{store}.customers")).to_pylist()
    assert got == [{"n": 0}]


@pytest.mark.parametrize(
    "attack",
    [
        "SELECT count(*) FROM {t} WHERE email LIKE 'p1%'",
        "SELECT email, count(*) FROM {t} GROUP BY email",
        "SELECT a.id FROM {t} a JOIN {t} b ON a.email = b.email",
        "SELECT id FROM {t} ORDER BY phone",
        "SELECT * FROM {t} WHERE ssn IS NOT NULL",
        "SELECT length(ssn) FROM {t}",
    ],
)
@pytest.mark.parametrize("store", ["app", "lake"])
def test_masked_columns_leak_nothing(governed: Platform, store: str, attack: str) -> None:
    with pytest.raises(AccessDenied):
        governed.session("bob").sql(attack.format(t=f"{store}.customers")).to_arrow()


def test_federated_join_is_governed(governed: Platform) -> None:
    rows = governed.session("carol").sql(
        "SELECT a.id, w.ssn FROM app.customers a JOIN lake.customers w ON w.id = a.id ORDER BY a.id"
    ).to_pylist()
    assert [r["id"] for r in rows] == [r["id"] for r in ROWS if r["country"] in EU]
    assert all(r["ssn"].startswith("****") for r in rows)


@pytest.mark.parametrize("store", STORES)
def test_hash_mask_is_stable_for_joins(governed: Platform, store: str) -> None:
    s = governed.session("hasher")
    a = s.sql(f"SELECT id, email FROM {store}.customers ORDER BY id").to_pylist()
    b = s.sql("SELECT id, email FROM warehouse.customers ORDER BY id").to_pylist()
    assert a == b
    assert all(r["email"] != src["email"] and len(r["email"]) >= 32 for r, src in zip(a, ROWS, strict=True))
    joined = s.sql(f"SELECT count(*) AS n FROM {store}.customers x JOIN warehouse.customers y ON x.email = y.email")
    assert joined.to_pylist() == [{"n": len(ROWS)}]


def test_pagination_under_a_row_filter(governed: Platform) -> None:
    seen = []
    for page in governed.session("carol").read("app.customers", columns=["id", "country"], page_size=4):
        seen.extend(page.to_pylist())
    assert [r["id"] for r in seen] == [r["id"] for r in ROWS if r["country"] in EU]


def test_row_cap_and_concurrency(governed: Platform) -> None:
    capped = governed.session("capped")
    assert capped.sql("SELECT id FROM app.customers ORDER BY id LIMIT 10").num_rows == 10
    with pytest.raises(QueryRejected, match="row cap"):
        capped.sql("SELECT id FROM app.customers").to_arrow()
    with pytest.raises(QueryRejected, match="row cap"):
        capped.sql("SELECT id FROM app.customers", page_size=50)
    assert [p.num_rows for p in capped.sql("SELECT id FROM app.customers", page_size=10)] == [10, 10, 10, 10]
    streaming = capped.sql("SELECT id FROM app.customers ORDER BY id LIMIT 5")  # holds its slot until read
    with pytest.raises(QueryRejected, match="max_concurrent"):
        capped.sql("SELECT 1 AS x FROM app.customers LIMIT 1")
    streaming.to_arrow()
    assert capped.sql("SELECT 1 AS x FROM app.customers LIMIT 1").num_rows == 1
    errors: list[Exception] = []

    def other() -> None:
        try:
            governed.session("alice").sql("SELECT count(*) FROM app.customers").to_arrow()
        except Exception as err:  # noqa: BLE001
            errors.append(err)

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert errors == []  # limits are per principal


@pytest.mark.parametrize("store", STORES)
def test_writes_are_governed(governed: Platform, store: str) -> None:
    carol = governed.session("carol")
    ds = f"{store}.customers"
    with pytest.raises(AccessDenied, match="unmasked"):  # ssn is masked for her: she may not write it
        carol.write(ds, [{"id": 1000, "ssn": "x", "country": "DE"}], key="id")
    carol.write(ds, [{"id": 1000, "name": "N", "email": "n@example.com", "phone": "1", "country": "DE"}], key="id")
    with pytest.raises(AccessDenied):  # outside her row filter
        carol.write(ds, [{"id": 1001, "name": "U", "email": "u@example.com", "phone": "1",
                          "country": "US"}], key="id")
    with pytest.raises(AccessDenied):  # id 6 is a US customer: she may not overwrite it
        carol.write(ds, [{"id": 6, "name": "moved", "email": "m@example.com", "phone": "1",
                          "country": "DE"}], mode="upsert", key="id")
    with pytest.raises(AccessDenied):  # no delete grant
        carol.write(ds, [{"id": 1, "country": "DE"}], mode="overwrite")
    with pytest.raises(AccessDenied):  # bob may only read
        governed.session("bob").write(ds, [{"id": 2000, "country": "DE"}])
    with pytest.raises(AccessDenied):  # creating a dataset needs an insert grant on its name
        carol.write(f"{store}.new_table", [{"id": 1}])
    count = governed.session("alice").sql(f"SELECT count(*) AS n FROM {ds}").to_pylist()[0]["n"]
    assert count == len(ROWS) + 1
