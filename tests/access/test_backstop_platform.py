"""The stores' backstop through the platform: governed reads, federation (SQLite x DuckDB x
Parquet) and paging work under it, and a plan whose SQL was tampered with (a miss in the SQL
front door, simulated by swapping the planned tree) is refused by the store, typed
``QueryRejected(rule="store-backstop")``, on every store and through the CLI.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
import sqlglot

from headwater import Config, Platform, QueryRejected
from headwater.config import PostgresConfig
from headwater.stores.base import BACKSTOP_RULE

POLICY = """\
version: 1
roles:
  admin:
    grants:
      - {datasets: "*", actions: [select, insert, update, delete]}
  analyst:
    grants:
      - {datasets: ["app.*", "warehouse.*", "lake.*"], actions: [select]}
    columns:
      - {tag: pii.ssn, deny: true}
      - {tag: geo.country, deny: true}
    row_filters:
      - {datasets: app.customers, where: "country IN principal.countries"}
principals:
  alice: {roles: [admin]}
  bob: {roles: [analyst], attributes: {countries: [DE]}}
"""
CUSTOMERS = pa.table({
    "id": list(range(1, 21)),
    "name": [f"c{i}" for i in range(1, 21)],
    "ssn": [f"{i:03d}-00-0000" for i in range(1, 21)],
    "country": ["DE", "US"] * 10,
})
ORDERS = pa.table({"order_id": list(range(1, 41)), "customer_id": [i % 20 + 1 for i in range(40)],
                   "amount": [float(i) for i in range(40)]})
EVENTS = pa.table({"customer_id": [1, 2, 3, 4], "kind": ["view", "buy", "view", "buy"]})


def _seed(platform: Platform) -> None:
    admin = platform.session("setup")
    admin.write("app.customers", CUSTOMERS, key="id")
    admin.write("warehouse.orders", ORDERS, key="order_id")
    admin.write("lake.events", EVENTS)
    platform.catalog.set_tags("app.customers", "ssn", ["pii.ssn"])
    platform.catalog.set_tags("app.customers", "country", ["geo.country"])
    platform.policies.apply(POLICY, source="backstop.yaml", applied_by="test")


@pytest.fixture
def governed(platform: Platform) -> Platform:
    _seed(platform)
    # things that exist in the stores but not in the catalog
    with sqlite3.connect(Path(platform.config.platform_dir) / "app.db") as con:
        con.execute("CREATE TABLE _hw_changes (seq INTEGER PRIMARY KEY, row TEXT)")
        con.execute("INSERT INTO _hw_changes (row) VALUES ('{\"ssn\": \"001-00-0000\"}')")
    (Path(platform.config.platform_dir) / "secret.csv").write_text("ssn\n001-00-0000\n")
    return platform


def test_governed_reads_work_under_the_backstop(governed: Platform) -> None:
    bob = governed.session("bob")
    rows = bob.sql("SELECT * FROM app.customers ORDER BY id").to_pylist()
    # the row filter reads `country`, hidden from bob: the scope allows the policy's own reads
    assert [r["id"] for r in rows] == list(range(1, 21, 2))
    assert set(rows[0]) == {"id", "name"}
    alice = governed.session("alice")
    assert alice.sql("SELECT count(*) AS n FROM app.customers").to_pylist() == [{"n": 20}]


@pytest.mark.parametrize("who", ["alice", "bob"])
def test_federation_and_paging_work(governed: Platform, who: str) -> None:
    s = governed.session(who)
    q = ("SELECT c.id, o.order_id, e.kind FROM app.customers c JOIN warehouse.orders o ON o.customer_id = c.id "
         "LEFT JOIN lake.events e ON e.customer_id = c.id ORDER BY o.order_id")
    whole = s.sql(q).to_pylist()
    assert whole and all(r["id"] % 2 == (1 if who == "bob" else r["id"] % 2) for r in whole)
    pages = [p.to_pylist() for p in s.sql(q, page_size=7)]
    assert [r for p in pages for r in p] == whole and len(pages) > 1
    lake_only = s.sql("SELECT kind, count(*) AS n FROM lake.events GROUP BY kind ORDER BY kind").to_pylist()
    assert lake_only == [{"kind": "buy", "n": 2}, {"kind": "view", "n": 2}]


def _tampered(platform: Platform, who: str, planned: str, raw: str, dialect: str):  # noqa: ANN202
    """A real plan for ``planned`` whose tree is swapped for ``raw`` (the front door missed)."""
    session = platform.session(who)
    plan, values = session._plan(planned, None)
    bad = dataclasses.replace(plan, tree=sqlglot.parse_one(raw, read=dialect), rendered={})
    return session, bad, values


@pytest.mark.parametrize(("planned", "raw", "dialect"), [
    ("SELECT id, name FROM app.customers", "SELECT ssn FROM customers", "sqlite"),
    ("SELECT id, name FROM app.customers", "SELECT * FROM _hw_changes", "sqlite"),
    ("SELECT id, name FROM app.customers", "SELECT name FROM sqlite_master", "sqlite"),
    ("SELECT order_id FROM warehouse.orders", "SELECT * FROM read_csv('{dir}/secret.csv')", "duckdb"),
    ("SELECT order_id FROM warehouse.orders", "SELECT * FROM '{dir}/secret.csv'", "duckdb"),
    ("SELECT kind FROM lake.events", "SELECT * FROM archive", "duckdb"),
    ("SELECT kind FROM lake.events", "SELECT * FROM read_parquet('{dir}/lake/events/*.parquet')", "duckdb"),
])
@pytest.mark.parametrize("who", ["alice", "bob"])
def test_a_missed_rewrite_cannot_leak(governed: Platform, who: str, planned: str, raw: str, dialect: str) -> None:
    if who == "alice" and raw == "SELECT ssn FROM customers":
        pytest.skip("alice may read ssn: nothing to refuse")
    raw = raw.format(dir=governed.config.platform_dir)
    session, bad, values = _tampered(governed, who, planned, raw, dialect)
    with pytest.raises(QueryRejected) as info:
        session._execute(bad.store, bad, bad.tree, values, None).read_all()
    assert info.value.context["rule"] == BACKSTOP_RULE


def test_a_missed_rewrite_in_federation_cannot_leak(governed: Platform) -> None:
    session = governed.session("bob")
    plan, values = session._plan(
        "SELECT c.name, o.amount FROM app.customers c JOIN warehouse.orders o ON o.customer_id = c.id", None)
    assert plan.store is None and plan.engine == "warehouse"
    for raw in (f"SELECT * FROM read_csv('{governed.config.platform_dir}/secret.csv')",
                "SELECT 1 AS x; DELETE FROM orders", "DELETE FROM orders"):
        bad = dataclasses.replace(plan, tree=sqlglot.parse_one(raw.split(";")[0], read="duckdb"), rendered={})
        if ";" in raw:  # a second statement, as a rendered template would carry it
            bad.rendered["federation"] = (raw, ())
        with pytest.raises(QueryRejected):
            session._federate(bad, bad.tree, values, None, 1024, bad.rendered).read_all()
    assert governed.session("alice").sql("SELECT count(*) AS n FROM warehouse.orders").to_pylist() == [{"n": 40}]


# -- Postgres ---------------------------------------------------------------------------------
@pytest.fixture
def pg_governed(tmp_path, pg_schema) -> Iterator[tuple[Platform, str, str]]:  # noqa: ANN001
    dsn, schema = pg_schema
    role = f"hw_reader_{uuid.uuid4().hex[:10]}"
    cfg = Config.embedded(tmp_path / "hw")
    cfg.stores["app"] = PostgresConfig(dsn=dsn, schema=schema, reader_role=role)
    platform = Platform.open(cfg)
    try:
        _seed(platform)
        import psycopg

        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'CREATE TABLE "{schema}".payroll (id int, salary int)')
            conn.execute(f'INSERT INTO "{schema}".payroll VALUES (1, 100)')
        yield platform, schema, role
    finally:
        platform.close()
        import psycopg

        with psycopg.connect(dsn, autocommit=True) as conn:
            with contextlib.suppress(Exception):
                conn.execute(f'DROP OWNED BY "{role}"')
            with contextlib.suppress(Exception):
                conn.execute(f'DROP ROLE IF EXISTS "{role}"')


@pytest.mark.postgres
def test_postgres_platform_reads_as_the_reader_role(pg_governed) -> None:  # noqa: ANN001
    platform, schema, role = pg_governed
    bob = platform.session("bob")
    assert [r["id"] for r in bob.sql("SELECT id FROM app.customers ORDER BY id").to_pylist()] == list(range(1, 21, 2))
    pages = list(bob.sql("SELECT id, name FROM app.customers ORDER BY id", page_size=4))
    assert sum(p.num_rows for p in pages) == 10
    session, bad, values = _tampered(platform, "alice", "SELECT id FROM app.customers",
                                     f'SELECT * FROM "{schema}".payroll', "postgres")
    with pytest.raises(QueryRejected):
        session._execute(bad.store, bad, bad.tree, values, None).read_all()
    # payroll enters the catalog: granted at the next read; leaves it: revoked at the next read
    platform.sync_catalog(["app"])
    assert platform.session("alice").sql("SELECT salary FROM app.payroll").to_pylist() == [{"salary": 100}]
    platform.catalog.remove("app.payroll")
    with pytest.raises(QueryRejected):
        session._execute(bad.store, bad, bad.tree, values, None).read_all()


@pytest.mark.postgres
def test_cli_prints_and_applies_the_grant_script(pg_governed, tmp_path) -> None:  # noqa: ANN001
    from typer.testing import CliRunner

    from headwater.cli import app

    platform, schema, role = pg_governed
    path = tmp_path / "headwater.yaml"
    path.write_text(platform.config.to_yaml_with_secrets())
    runner = CliRunner()
    out = runner.invoke(app, ["stores", "grants", "app", "--config", str(path)], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    assert f'GRANT SELECT ON TABLE "{schema}"."customers" TO "{role}";' in out.output
    assert "payroll" not in out.output
    applied = runner.invoke(app, ["stores", "grants", "app", "--apply", "--config", str(path)], catch_exceptions=False)
    assert applied.exit_code == 0 and "applied" in applied.output
    bad = runner.invoke(app, ["stores", "grants", "warehouse", "--config", str(path)])
    assert bad.exit_code == 1 and "Traceback" not in bad.output
