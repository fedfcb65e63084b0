"""Fixtures for the policy tests: the demo policy, a catalog, and DuckDB with matching tables.

``run(sql, who)`` goes the way the planner will: parse, qualify against the catalog (logical
names), authorise and rewrite, then execute the rewritten logical tree in an in-memory DuckDB
whose schemas are named like the stores (``app.customers``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import duckdb
import pytest
import sqlglot
from sqlglot.optimizer.qualify import qualify

from headwater.catalog import CatalogColumn, Dataset
from headwater.policy import PolicyEngine, load_policy
from headwater.stores._sql import split_params

POLICY = """\
version: 1
roles:
  admin:
    grants: [{datasets: "*", actions: [select, insert, update, delete]}]
  analyst:
    grants: [{datasets: ["app.*", "warehouse.*", "lake.*"], actions: [select]}]
    max_rows: 10000
    timeout_s: 30
    columns:
      - {tag: "pii.email", mask: email_domain}
      - {column: "app.customers.ssn", deny: true}
      - {tag: "pii.phone", mask: last4}
      - {tag: "pii.id", mask: hash}
      - {tag: "pii.dob", mask: year}
  support_eu:
    inherits: [analyst]
    grants: [{datasets: "app.customers", actions: [insert, update]}]
    columns: [{tag: "pii.ssn", mask: last4}, {tag: "pii.email", mask: none}]
    row_filters:
      - {datasets: "app.customers", where: "country IN principal.countries"}
principals:
  alice: {roles: [admin]}
  bob: {roles: [analyst]}
  carol: {roles: [support_eu], attributes: {countries: [DE, FR, IT, ES, NL, IE, PL]}}
"""

KEY = b"0123456789abcdef0123456789abcdef"

CUSTOMERS = [
    (1, "Ada Lovelace", "ada@example.com", "+44 207 555 0101", "123-45-6789", "GB", dt.date(1815, 12, 10), "C-1"),
    (2, "Lukas Schmidt", "lukas@corp.example.net", "+49 30 555 0202", "234-56-7890", "DE", dt.date(1990, 3, 4), "C-2"),
    (3, "Chiara Rossi", "chiara@example.io", "+39 06 555 0303", "345-67-8901", "IT", dt.date(1985, 7, 1), "C-3"),
    (4, "Grace Hopper", "grace@example.com", "+1 212 555 0404", "456-78-9012", "US", dt.date(1906, 12, 9), "C-4"),
    (5, "Pierre Dubois", "pierre@mail.example.org", "+33 1 555 0505", "567-89-0123", "FR", dt.date(1970, 1, 2), "C-5"),
    (6, "Yuki Tanaka", "yuki@example.io", "+81 3 555 0606", "678-90-1234", "JP", dt.date(2000, 2, 29), "C-6"),
]
ORDERS = [(10, 1, 20.0), (11, 2, 35.5), (12, 2, 12.0), (13, 3, 99.0), (14, 4, 5.0), (15, 6, 42.0)]

CUSTOMERS_DS = Dataset(
    name="app.customers", store="app", table="customers", kind="table", location="app",
    columns=(
        CatalogColumn("id", "int64", False),
        CatalogColumn("name", "string"),
        CatalogColumn("email", "string", tags=("pii.email",)),
        CatalogColumn("phone", "string", tags=("pii.phone",)),
        CatalogColumn("ssn", "string", tags=("pii.ssn",)),
        CatalogColumn("country", "string"),
        CatalogColumn("birthday", "date32[day]", tags=("pii.dob",)),
        CatalogColumn("external_id", "string", tags=("pii.id",)),
    ),
    primary_key=("id",),
)
ORDERS_DS = Dataset(
    name="app.orders", store="app", table="orders", kind="table", location="app",
    columns=(CatalogColumn("id", "int64"), CatalogColumn("customer_id", "int64"),
             CatalogColumn("amount", "double")),
)
SECRET_DS = Dataset(
    name="hr.salaries", store="hr", table="salaries", kind="table", location="hr",
    columns=(CatalogColumn("id", "int64"), CatalogColumn("salary", "double")),
)
DATASETS = {d.name: d for d in (CUSTOMERS_DS, ORDERS_DS, SECRET_DS)}
EU = {"DE", "FR", "IT", "ES", "NL", "IE", "PL"}


def schema_for(datasets: dict[str, Dataset]) -> dict[str, dict[str, dict[str, str]]]:
    from headwater.policy._masks import sql_type

    out: dict[str, dict[str, dict[str, str]]] = {}
    for ds in datasets.values():
        out.setdefault(ds.store, {})[ds.table] = {c.name: sql_type(c.type).sql("duckdb") for c in ds.columns}
    return out


def qualified(sql: str, datasets: dict[str, Dataset] = DATASETS):
    """Parse and qualify like the planner (logical names, stars expanded)."""
    tree = sqlglot.parse_one(sql, read="duckdb")
    return qualify(tree, schema=schema_for(datasets), dialect="duckdb", quote_identifiers=False,
                   validate_qualify_columns=True, expand_stars=True)


class World:
    """The demo policy, an engine and a DuckDB connection holding the demo tables."""

    def __init__(self, policy_text: str = POLICY) -> None:
        self.policy = load_policy(policy_text, source="policies.yaml")
        self.engine = PolicyEngine(self.policy, hmac_key=KEY)
        self.con = duckdb.connect()
        self.con.execute("CREATE SCHEMA app; CREATE SCHEMA hr")
        self.con.execute(
            "CREATE TABLE app.customers (id BIGINT, name VARCHAR, email VARCHAR, phone VARCHAR, "
            "ssn VARCHAR, country VARCHAR, birthday DATE, external_id VARCHAR)"
        )
        self.con.executemany("INSERT INTO app.customers VALUES (?, ?, ?, ?, ?, ?, ?, ?)", CUSTOMERS)
        self.con.execute("CREATE TABLE app.orders (id BIGINT, customer_id BIGINT, amount DOUBLE)")
        self.con.executemany("INSERT INTO app.orders VALUES (?, ?, ?)", ORDERS)
        self.con.execute("CREATE TABLE hr.salaries (id BIGINT, salary DOUBLE)")
        self.con.execute("INSERT INTO hr.salaries VALUES (1, 100000)")

    def decide(self, sql: str, who: Any, params: tuple[Any, ...] = ()):
        return self.engine.authorize_query(qualified(sql), DATASETS, who, first_param=len(params))

    def run(self, sql: str, who: Any, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        tree = qualified(sql)
        # User placeholders would already be markers 0..n-1; the tests pass none or literal values.
        decision = self.engine.authorize_query(tree, DATASETS, who, first_param=len(params))
        text, values = split_params(decision.tree.sql("duckdb"), [*params, *decision.params], lambda n: "?")
        return self.con.execute(text, values).fetchall()

    def raw(self, sql: str) -> list[tuple[Any, ...]]:
        return self.con.execute(sql).fetchall()


@pytest.fixture(scope="module")
def world() -> World:
    return World()
