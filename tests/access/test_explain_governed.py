"""Explain is governed, audited and free of keys, policy parameters and hidden counts.

The attack (issue 14): the stores' EXPLAIN output showed the bound values, so the derived keys
of the ``hash``/``tokenise`` masks (from which pseudonyms of guessed values can be recomputed)
and the principal's row-filter attribute values were printed, row estimates came from the
unfiltered table (a count of the rows the filter hides), and explain was not audited nor
authorised like the query. Checked through the SDK on every store (SQLite, DuckDB, Parquet
local; Postgres, Snowflake via fakesnow, Parquet on S3 via moto), then once through the CLI and
once through HTTP.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from headwater import AccessDenied, Config, Platform
from headwater.access._explain import plan_shape
from headwater.cli import app

N = 1237  # a row count no plan needs to mention
SECRETS = ("SECRETDE", "SECRETFR")
PROBE = "zz-probe-value"
ROWS = [{"id": i, "name": f"P{i}", "email": f"p{i}@x.com", "phone": f"+49 30 {1000 + i}",
         "country": ["SECRETDE", "US", "SECRETFR"][i % 3]} for i in range(1, N + 1)]
POLICY = """
version: 1
roles:
  admin:
    grants: [{datasets: "*", actions: [select, insert, update, delete]}]
  hasher:
    grants: [{datasets: "*", actions: [select]}]
    columns:
      - {tag: pii.email, mask: hash}
      - {tag: pii.phone, mask: tokenise}
    row_filters:
      - {datasets: "*.customers", where: "country IN principal.countries"}
  filtered:
    grants: [{datasets: "*", actions: [select]}]
    columns:
      - {tag: pii.phone, mask: last4}
    row_filters:
      - {datasets: "*.customers", where: "country IN principal.countries"}
  app_only:
    grants: [{datasets: "app.*", actions: [select]}]
principals:
  alice: {roles: [admin]}
  hal: {roles: [hasher], attributes: {countries: [SECRETDE, SECRETFR]}}
  fil: {roles: [filtered], attributes: {countries: [SECRETDE, SECRETFR]}}
  nemo: {roles: [app_only]}
"""
STORES = ("app", "warehouse", "lake")


def _load(platform: Platform) -> Platform:
    setup = platform.session("setup")
    for store in STORES:
        setup.write(f"{store}.customers", pa.Table.from_pylist(ROWS), key="id")
        platform.catalog.set_tags(f"{store}.customers", "email", ["pii.email"])
        platform.catalog.set_tags(f"{store}.customers", "phone", ["pii.phone"])
    platform.apply_policy(POLICY, source="explain-test.yaml", applied_by="test")
    return platform


@pytest.fixture(scope="module")
def embedded(tmp_path_factory) -> Iterator[Platform]:
    platform = _load(Platform.open(Config.embedded(tmp_path_factory.mktemp("explain") / "hw")))
    yield platform
    platform.close()


@pytest.fixture(scope="module")
def production(tmp_path_factory, pg_dsn, s3_endpoint, snowflake_conn_args) -> Iterator[Platform]:
    """Postgres app, Snowflake (fakesnow) warehouse, Parquet on S3 (moto) lake."""
    schema = f"hw_explain_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sf = {k: v for k, v in snowflake_conn_args.items()
          if k in {"account", "user", "password", "database", "host", "port", "protocol"}}
    cfg = Config.load(None, overrides={
        "platform_dir": str(tmp_path_factory.mktemp("explain-prod")),
        "stores": {
            "app": {"kind": "postgres", "dsn": pg_dsn, "schema": schema},
            "warehouse": {"kind": "snowflake", **sf, "schema": f"HW_EXPLAIN_{uuid.uuid4().hex[:8].upper()}"},
            "lake": {"kind": "parquet", "root": f"s3://{s3_endpoint['bucket']}/explain-{uuid.uuid4().hex[:8]}",
                     "s3": {"endpoint_url": s3_endpoint["endpoint_url"], "region": s3_endpoint["region"],
                            "access_key_id": s3_endpoint["access_key_id"],
                            "secret_access_key": s3_endpoint["secret_access_key"]}},
        },
    })
    platform = _load(Platform.open(cfg))
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'ANALYZE "{schema}".customers')  # real statistics: estimates to leak
    yield platform
    platform.close()
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(params=["embedded", pytest.param("production", marks=[pytest.mark.postgres, pytest.mark.s3,
                                                                       pytest.mark.snowflake])])
def governed(request) -> Platform:
    return request.getfixturevalue(request.param)


def mask_keys(platform: Platform) -> list[str]:
    engine = platform.policy_engine()
    return [engine._derived_key(name) for name in ("hash_in", "hash_out", "token")]


def assert_clean(platform: Platform, text: str) -> None:
    """No derived key, no attribute value, no parameter value, no row count or estimate."""
    for key in mask_keys(platform):
        assert key not in text and key[:16] not in text
    for value in (*SECRETS, PROBE):
        assert value not in text
    assert str(N) not in text
    low = text.lower()
    assert "rows=" not in low and "cost=" not in low and "~" not in text and "estimated" not in low
    if "-- plan (operator names only" in text:
        shape = text.split("-- plan (operator names only", 1)[1].split("\n", 1)[1].split("\n-- governed", 1)[0]
        assert not re.search(r"\d", shape), shape  # operator names only: no numbers of any kind
        assert "'" not in shape


QUERIES = [
    # a masked column compared with a parameter: the key is in the filter the store plans
    "SELECT id, email, phone FROM {s}.customers WHERE email = ?",
    "SELECT count(*) AS n FROM {s}.customers WHERE email <> ?",
    "SELECT country, count(*) AS n FROM {s}.customers WHERE name <> ? GROUP BY country",
]


@pytest.mark.parametrize("store", STORES)
@pytest.mark.parametrize("who", ["hal", "fil"])
@pytest.mark.parametrize("query", QUERIES)
def test_governed_explain_shows_no_keys_values_or_counts(governed: Platform, store: str, who: str,
                                                         query: str) -> None:
    sql = query.format(s=store)
    text = governed.session(who).explain(sql, [PROBE])
    assert text.startswith(("-- runs on", "-- federated in DuckDB"))
    assert_clean(governed, text)
    assert f"governed by policy {governed.policy_engine().policy.version[:12]}" in text


@pytest.mark.parametrize("who", ["hal", "fil"])
def test_federated_explain_is_clean(governed: Platform, who: str) -> None:
    text = governed.session(who).explain(
        "SELECT a.id, w.email FROM app.customers a JOIN warehouse.customers w ON w.id = a.id "
        "JOIN lake.customers l ON l.id = a.id WHERE a.email <> ?", [PROBE])
    assert text.startswith("-- federated in DuckDB")
    assert "__hwparam" not in text
    assert_clean(governed, text)


def test_store_plans_are_shown_as_operator_names(embedded: Platform) -> None:
    text = embedded.session("fil").explain("SELECT id, phone FROM warehouse.customers WHERE name <> ?", [PROBE])
    assert "-- plan (operator names only" in text and "SEQ_SCAN" in text
    text = embedded.session("fil").explain("SELECT id, phone FROM app.customers WHERE name <> ?", [PROBE])
    assert "SCAN" in text  # SQLite's plan steps


def test_postgres_plan_shape(production: Platform) -> None:
    text = production.session("fil").explain("SELECT id, phone FROM app.customers WHERE name <> ?", [PROBE])
    assert text.startswith("-- runs on app (postgres)")
    assert "Seq Scan on customers" in text
    assert_clean(production, text)


def test_open_or_unrestricted_explain_keeps_the_store_plan(embedded: Platform) -> None:
    """Nothing is hidden from a principal the policy neither masks nor filters: the store's
    whole plan (with its estimates) is theirs to see."""
    text = embedded.session("alice").explain("SELECT id FROM warehouse.customers WHERE id > ?", [3])
    assert "-- plan (operator names only" not in text and "SEQ_SCAN" in text and "rows" in text


def test_denied_query_cannot_be_explained_and_is_audited(governed: Platform) -> None:
    nemo = governed.session("nemo")
    with pytest.raises(AccessDenied):
        nemo.explain("SELECT id FROM warehouse.customers WHERE name = ?", [PROBE])
    (denial,) = governed.audit.query(actor="nemo", action="deny", newest_first=True, limit=1)
    assert denial.decision == "deny" and denial.extra["attempted"] == "explain"
    assert PROBE not in repr(denial)


def test_explain_is_audited_without_values(governed: Platform) -> None:
    governed.session("hal").explain("SELECT id, email FROM app.customers WHERE email = ?", [PROBE])
    (rec,) = governed.audit.query(actor="hal", action="explain", newest_first=True, limit=1)
    assert rec.decision == "allow" and rec.datasets == ("app.customers",)
    assert rec.masks.get("app.customers.email") == "hash"
    assert rec.statement and "?" in rec.statement
    text = repr(rec)
    assert PROBE not in text and not any(s in text for s in SECRETS)
    assert not any(k in text for k in mask_keys(governed))


def test_explain_failure_is_audited(embedded: Platform) -> None:
    with pytest.raises(Exception):  # noqa: B017 - any error class: what matters is its record
        embedded.session("hal").explain("SELECT nope FROM app.customers WHERE email = ?", [PROBE])
    (rec,) = embedded.audit.query(actor="hal", action="explain", newest_first=True, limit=1)
    assert rec.decision == "error" and rec.extra["error"] == "ColumnNotFound" and rec.extra["stage"] == "plan"


# -- the shape parsers on each store's real output format -----------------------------------
def test_shape_parsers_keep_only_operator_names() -> None:
    postgres = """Sort  (cost=55.11..56.66 rows=618 width=28)
  Sort Key: id
  ->  Hash Join  (cost=1.00..26.46 rows=618 width=28)
        Hash Cond: ((c.x ->> 'k'::text) = 'SECRETDE'::text)
        ->  Seq Scan on customers c  (cost=0.00..26.46 rows=1237 width=28)
              Filter: (country = ANY ('{SECRETDE,SECRETFR}'::text[]))
        ->  Hash  (cost=1.00..1.00 rows=1 width=4)
              ->  Index Scan using customers_pkey on customers  (cost=0.28..8.29 rows=1 width=4)
                    Index Cond: (id = 5)"""
    assert plan_shape("postgres", postgres) == [
        "Sort", "  Hash Join", "    Seq Scan on customers c", "    Hash",
        "      Index Scan using customers_pkey on customers"]
    snowflake = """GlobalStats:
    partitionsTotal=12
    partitionsAssigned=1
    bytesAssigned=1237
Operations:
1:0     ->Result  CUSTOMERS.ID, SHA2(('75667a5b7962f8ca' || CUSTOMERS.EMAIL), 256)
1:1          ->Filter  CUSTOMERS.COUNTRY IN 'SECRETDE', 'SECRETFR'
1:2               ->TableScan  DB.PUBLIC.CUSTOMERS  ID, EMAIL, COUNTRY  {partitionsTotal=12, bytesAssigned=1237}"""
    assert plan_shape("snowflake", snowflake) == ["  Result", "    Filter", "      TableScan"]
    duck = """┌───────────────────────────┐
│         PROJECTION        │
│    ────────────────────   │
│             id            │
│          ~1237 rows       │
└─────────────┬─────────────┘
┌─────────────┴─────────────┐
│           FILTER          │
│    ────────────────────   │
│  (country = 'SECRETDE')   │
└─────────────┬─────────────┘
┌─────────────┴─────────────┐
│         SEQ_SCAN          │
└───────────────────────────┘"""
    assert plan_shape("duckdb", duck) == ["PROJECTION", "  FILTER", "    SEQ_SCAN"]
    assert plan_shape("sqlite", "SEARCH customers USING INDEX ix (country=?)\nSCAN t") == [
        "SEARCH customers USING INDEX ix", "SCAN t"]
    # anything that is not an operator name comes out as "?"
    assert plan_shape("duckdb", "┌──┐\n│ 'SECRETDE' │\n└──┘") == ["?"]


# -- once through the CLI and once through HTTP ----------------------------------------------
def test_cli_explain(embedded: Platform) -> None:
    cfg = Path(embedded.dir) / "headwater.yaml"
    cfg.write_text(embedded.config.to_yaml_with_secrets())
    env = {"HEADWATER_CONFIG": str(cfg)}
    out = CliRunner().invoke(app, ["explain", "--as", "hal", "-p", PROBE,
                                   "SELECT id, email FROM lake.customers WHERE email = ?"], env=env)
    assert out.exit_code == 0, out.output
    assert out.stdout.startswith("-- runs on lake (parquet)") and "ARROW_SCAN" in out.stdout
    assert_clean(embedded, out.stdout)
    denied = CliRunner().invoke(app, ["explain", "--as", "nemo", "SELECT id FROM lake.customers"], env=env)
    assert denied.exit_code == 1 and "AccessDenied" in denied.stderr and "Traceback" not in denied.output


def test_http_explain(embedded: Platform) -> None:
    from tests.service.conftest import serve

    tokens = {who: embedded.create_api_key(who).token for who in ("hal", "nemo")}
    with serve(embedded) as server, _client(server.base_url) as c:
        ok = c.post("/v1/explain", json={"sql": "SELECT id, email FROM lake.customers WHERE email = ?",
                                         "params": [PROBE]}, headers={"X-API-Key": tokens["hal"]})
        assert ok.status_code == 200, ok.text
        assert_clean(embedded, ok.json()["plan"])
        denied = c.post("/v1/explain", json={"sql": "SELECT id FROM lake.customers"},
                        headers={"X-API-Key": tokens["nemo"]})
        assert denied.status_code == 403 and denied.json()["code"] == "AccessDenied"
        bad = c.post("/v1/explain", json={"sql": "SELECT id FROM lake.customers WHERE (id = 1"}, headers={"X-API-Key": tokens["hal"]})
        assert bad.status_code == 400 and bad.headers["content-type"].startswith("application/problem+json")


def _client(base_url: str) -> Any:
    import httpx

    return httpx.Client(base_url=base_url, timeout=30)
