"""Property: every generated statement is refused with a typed error, or runs with every table
reference governed, and never returns a value the reader may not see.

A seeded generator (``HEADWATER_PROPERTY_SEED`` overrides the seed; at least 500 statements per
run) builds nested CTEs with shadowing, self-references with and without ``RECURSIVE``, CTE
names equal to dataset and uncatalogued table names, subqueries in FROM, SELECT and WHERE,
lateral joins, unions (parenthesised or not), quoted file paths and globs, table functions,
case variants of every name. They run through the SDK on the embedded platform (SQLite app,
DuckDB warehouse, Parquet lake) under a policy with a denied column, masks and row filters.

For each statement: either a :class:`~headwater.errors.HeadwaterError` (no other exception is
allowed), or the statement ran, its result holds none of the secret markers (denied SSNs, raw
e-mails, filtered-out rows, uncatalogued tables, files on disk), and in the tree sent to the
store every table reference is a scan the policy engine produced, a federation view, or a
reference to a CTE that sqlglot's own scopes (an oracle independent of Headwater's resolution)
resolve to a CTE, with the canonical name the planner gives CTEs.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from sqlglot import exp
from sqlglot.optimizer.scope import Scope, traverse_scope

from headwater import Config, Platform
from headwater.errors import HeadwaterError
from headwater.policy._scopes import CTE_PREFIX, FETCH, GOVERNED, VIEW, mark_of

N_STATEMENTS = 600
SEED = int(os.environ.get("HEADWATER_PROPERTY_SEED", "1429"))
MARKERS = ("SECRET", "HIDDEN", "rawmail")
POLICY = """\
version: 1
roles:
  reader:
    grants: [{datasets: ["app.customers", "warehouse.orders", "lake.events"], actions: [select]}]
    columns:
      - {column: ssn, deny: true}
      - {column: email, mask: email_domain}
      - {column: "lake.events.payload", mask: redact}
    row_filters:
      - {datasets: app.customers, where: "country IN principal.countries"}
      - {datasets: warehouse.orders, where: "customer_id % 3 <> 0"}
principals:
  reader: {roles: [reader], attributes: {countries: [DE, FR]}}
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("prop")
    (root / "secret.csv").write_text("id,a\n1,FILE-SECRET\n")
    (root / "secret.json").write_text('{"id": 1, "a": "FILE-SECRET"}\n')
    platform = Platform.open(Config.embedded(root / "hw"))
    s = platform.session("setup")
    s.write("app.customers", pa.Table.from_pylist([
        {"id": i, "name": f"HIDDEN-{i}" if i % 3 == 0 else f"p{i}", "email": f"rawmail-{i}@example.com",
         "ssn": f"SSN-SECRET-{i}", "country": "XX" if i % 3 == 0 else "DE"} for i in range(1, 13)]), key="id")
    s.write("warehouse.orders", pa.Table.from_pylist([
        {"id": i, "customer_id": i % 12 + 1, "amount": i * 1.5,
         "tag": "HIDDEN-ORDER" if (i % 12 + 1) % 3 == 0 else "ok"} for i in range(1, 30)]), key="id")
    s.write("lake.events", pa.Table.from_pylist([
        {"id": i, "customer_id": i % 12 + 1, "payload": f"PAYLOAD-SECRET-{i}"} for i in range(1, 20)]))
    for store in ("app", "warehouse", "lake"):  # physically there, never catalogued
        platform.store(store).write("raw_secrets", pa.table({"id": [1], "a": [f"{store}-RAW-SECRET"]}))
    platform.store("app").write("_hw_changes", pa.table({"id": [1], "a": ["CHANGES-SECRET"]}))
    platform.apply_policy(POLICY, source="property", applied_by="test")
    yield platform, root
    platform.close()


class Gen:
    """Random statements over datasets, CTE names, uncatalogued tables and files."""

    CTE_NAMES = ["customers", "orders", "events", "raw_secrets", "_hw_changes", "t", "u", "secret"]
    BARE = ["customers", "orders", "events", "raw_secrets", "_hw_changes", "hw_audit_records", "t", "u"]
    DATASETS = ["app.customers", "warehouse.orders", "lake.events"]

    def __init__(self, rng: random.Random, root: Path) -> None:
        self.r = rng
        self.root = root

    def case(self, name: str) -> str:
        """A spelling of ``name``: as is, upper, mixed, or quoted."""
        c = self.r.random()
        if c < 0.55:
            return name
        if c < 0.7:
            return name.upper()
        if c < 0.85:
            return "".join(ch.upper() if self.r.random() < 0.5 else ch for ch in name)
        return ".".join(f'"{p}"' for p in name.split("."))

    def source(self, depth: int) -> str:
        c = self.r.random()
        if c < 0.3:
            return self.case(self.r.choice(self.DATASETS))
        if c < 0.6:
            return self.case(self.r.choice(self.BARE))
        if c < 0.7:
            return self.r.choice([
                f"'{self.root / 'secret.csv'}'", f'"{self.root / "secret.csv"}"', f"'{self.root}/*.csv'",
                f"'{self.root / 'secret.json'}'", "'secret.csv'", "'data/*.parquet'", '"/etc/passwd"'])
        if c < 0.75:
            return self.r.choice([f"read_csv('{self.root / 'secret.csv'}')", "range(3)",
                                  f"glob('{self.root}/*')", "app.customers_missing", "memory.main.raw_secrets"])
        if depth > 0:
            return f"({self.query(depth - 1)})"
        return self.case(self.r.choice(self.DATASETS))

    def select_list(self) -> str:
        return self.r.choice(["*", "*", "count(*) AS n", "1 AS one", "id", "a.*"])

    def simple(self, depth: int) -> str:
        shape = self.r.random()
        src = f"{self.source(depth)} AS a"
        if shape < 0.35:
            return f"SELECT {self.select_list()} FROM {src}"
        if shape < 0.5:
            return f"SELECT * FROM {src} JOIN {self.source(depth)} AS b ON true"
        if shape < 0.62:
            return f"SELECT * FROM {src}, LATERAL ({self.query(max(depth - 1, 0))}) AS l"
        if shape < 0.72:
            return f"SELECT (SELECT count(*) FROM {self.source(depth)}) AS c FROM {src}"
        if shape < 0.82:
            return f"SELECT * FROM {src} WHERE EXISTS ({self.query(max(depth - 1, 0))})"
        if shape < 0.9:
            return f"SELECT * FROM {src} WHERE a.id IN (SELECT id FROM {self.source(depth)})"
        return f"SELECT * FROM {src} UNION ALL {self.query(max(depth - 1, 0))}"

    def with_(self, depth: int) -> str:
        recursive = self.r.random() < 0.25
        names = self.r.sample(self.CTE_NAMES, self.r.randint(1, 3))
        parts = []
        for n in names:
            if recursive and self.r.random() < 0.5:
                body = f"SELECT 1 AS id UNION ALL SELECT id + 1 FROM {self.case(n)} WHERE id < 3"
            else:
                body = self.query(max(depth - 1, 0))
            parts.append(f"{self.case(n)} AS ({body})")
        head = "WITH RECURSIVE " if recursive else "WITH "
        return head + ", ".join(parts) + " " + self.simple(depth)

    def query(self, depth: int = 2) -> str:
        c = self.r.random()
        if depth > 0 and c < 0.45:
            return self.with_(depth)
        if depth > 0 and c < 0.55:
            return f"({self.with_(depth - 1)}) UNION ALL {self.simple(depth - 1)}"
        return self.simple(depth)


def _cte_refs_by_oracle(tree: exp.Expression) -> set[int]:
    """Ids of tables sqlglot's scopes resolve to a CTE."""
    out = set()
    for scope in traverse_scope(tree):
        for t in scope.tables:
            if isinstance(scope.sources.get(t.alias_or_name), Scope):
                out.add(id(t))
    return out


def _check_tree(tree: exp.Expression, allowed: tuple[Any, ...], physical: set[str], stmt: str) -> None:
    ctes = None
    for t in tree.find_all(exp.Table):
        m = mark_of(t)
        if m in allowed:
            if m is GOVERNED or m is FETCH:
                assert t.name.lower().strip('"') in physical, (stmt, t.sql())
            continue
        if ctes is None:
            ctes = _cte_refs_by_oracle(tree)
        assert id(t) in ctes and t.name.startswith(CTE_PREFIX), (stmt, t.sql(), m)


def test_generated_statements_are_refused_or_governed(world: Any) -> None:
    platform, root = world
    rng = random.Random(SEED)
    gen = Gen(rng, root)
    reader = platform.session("reader")
    physical = {"customers", "orders", "events"}
    outcome: Counter[str] = Counter()
    failures = []
    statements = [gen.query(rng.randint(0, 3)) for _ in range(N_STATEMENTS)]
    assert len(statements) >= 500
    for stmt in statements:
        try:
            rows = reader.sql(stmt).to_arrow()
        except HeadwaterError as err:
            outcome[type(err).__name__] += 1
            if any(m in str(err) for m in MARKERS):
                failures.append((stmt, f"secret in error: {err}"))
            continue
        except Exception as err:  # noqa: BLE001 - the property: no other exception
            failures.append((stmt, f"{type(err).__name__}: {err}"))
            continue
        outcome["ran"] += 1
        values = [str(v) for col in rows.columns for v in col.to_pylist()]
        leaked = [v for v in values if any(m in v for m in MARKERS)]
        if leaked:
            failures.append((stmt, f"leaked {leaked[:3]}"))
            continue
        plan = platform.planner.prepare(stmt, principal=reader.principal)
        try:
            _check_tree(plan.tree, (GOVERNED, VIEW), physical, stmt)
            for src in plan.sources:
                if src.fetch_tree is not None:
                    _check_tree(src.fetch_tree, (FETCH,), physical, stmt)
        except AssertionError as err:
            failures.append((stmt, f"ungoverned table reference {err}"))
    print(f"seed {SEED}: {dict(outcome)}")
    assert not failures, failures[:5]
    # The generator must exercise both sides of the property.
    assert outcome["ran"] >= 50 and sum(outcome.values()) - outcome["ran"] >= 50, dict(outcome)
