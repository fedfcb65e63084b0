"""The cold decision path: what it reuses between plans, and that reuse never weakens a decision
(its speed is measured by bench/governed_tpch.py, not here).

A cold ``planner.prepare`` (plan cache cleared) parses, qualifies and authorises the query. It
reuses only what depends on the catalog and the policy, not on the query: the sqlglot schema
per set of (catalog entry, hidden columns), the policy engine's view of a dataset per roles,
and physical table names. Catalog entries are immutable, so a catalog change (new tags, new
columns) gives new entries and nothing stale is served.
"""

from __future__ import annotations

import pyarrow as pa
import pytest

from headwater import AccessDenied
from headwater.principal import Principal

POLICY = """version: 1
settings:
  masked_predicates: {predicates}
roles:
  reader:
    grants:
      - {{datasets: "*", actions: [select]}}
    columns:
      - {{tag: pii.email, mask: redact}}
      - {{column: app.customers.email, mask: redact}}
      - {{column: app.customers.name, deny: true}}
    row_filters:
      - {{datasets: warehouse.orders, where: "status IN principal.statuses"}}
principals:
  ann: {{roles: [reader], attributes: {{statuses: [shipped, paid]}}}}
"""

JOIN = (
    "SELECT c.country, o.status, count(*) AS n, sum(o.amount) AS total "
    "FROM warehouse.orders AS o JOIN app.customers AS c ON c.id = o.customer_id "
    "JOIN (SELECT customer_id, max(amount) AS top FROM warehouse.orders GROUP BY customer_id) AS m "
    "ON m.customer_id = o.customer_id "
    "WHERE o.amount > 1 AND c.country IN (SELECT country FROM app.customers WHERE id < 30) "
    "GROUP BY c.country, o.status ORDER BY n DESC, c.country, o.status"
)


@pytest.fixture
def governed(platform, seeded):
    platform.policies.apply(POLICY.format(predicates="deny"), source="test", applied_by="test")
    return platform


def _cold(platform, sql: str, who: Principal):
    platform.planner._cache.clear()
    return platform.planner.prepare(sql, principal=who)


def test_cold_plans_are_the_same_plan(governed):
    who = Principal.of("ann")
    first = _cold(governed, JOIN, who)
    again = _cold(governed, JOIN, who)
    assert again is not first
    assert again.tree.sql(dialect="duckdb") == first.tree.sql(dialect="duckdb")
    assert again.logical.sql(dialect="duckdb") == first.logical.sql(dialect="duckdb")
    assert again.decision.params == first.decision.params == ["shipped", "paid"]
    assert again.decision.filters == first.decision.filters
    assert again.columns == first.columns == ("country", "status", "n", "total")
    # the logical plan is the query before the policy: no filter in it
    assert "__hwparam" not in first.logical.sql(dialect="duckdb")
    assert "__hwparam" in first.tree.sql(dialect="duckdb")


def test_schema_and_views_are_reused_between_cold_plans(governed):
    who = Principal.of("ann")
    planner = governed.planner
    engine = planner._policy()
    _cold(governed, JOIN, who)
    schemas = dict(planner._schemas)
    views = dict(engine._views)
    assert schemas and views
    _cold(governed, JOIN, who)
    assert {k: v[1] for k, v in planner._schemas.items()} == {k: v[1] for k, v in schemas.items()}
    assert all(engine._views[k] is v for k, v in views.items())
    # another principal with other hidden columns gets another schema
    governed.policies.apply(POLICY.format(predicates="deny").replace(
        "      - {column: app.customers.name, deny: true}\n", ""), source="test", applied_by="test")
    plan = _cold(governed, "SELECT name FROM app.customers ORDER BY id LIMIT 1", who)
    assert plan.columns == ("name",)


def test_denied_and_masked_references_are_still_refused(governed):
    s = governed.session("ann")
    with pytest.raises(AccessDenied) as err:
        s.sql("SELECT name FROM app.customers")
    assert err.value.rule is not None
    with pytest.raises(AccessDenied):
        s.sql("SELECT id FROM app.customers WHERE email LIKE '%example.com'")
    # still refused when the plan cache is cold
    governed.planner._cache.clear()
    with pytest.raises(AccessDenied):
        s.sql("SELECT id FROM app.customers WHERE email LIKE '%example.com'")


def test_reference_walk_runs_only_when_it_can_refuse(platform, seeded, monkeypatch):
    calls = []
    platform.policies.apply(POLICY.format(predicates="allow").replace(
        "      - {column: app.customers.name, deny: true}\n", ""), source="test", applied_by="test")
    engine = platform.planner._policy()
    real = engine._check_references
    monkeypatch.setattr(engine, "_check_references", lambda *a, **k: (calls.append(a), real(*a, **k))[1])
    s = platform.session("ann")
    # masks only, masked predicates allowed: nothing to refuse, no walk; the mask still applies
    rows = s.sql("SELECT id, email FROM app.customers WHERE email IS NOT NULL ORDER BY id LIMIT 3").to_pylist()
    assert calls == []
    assert rows and all(r["email"] == "****" for r in rows)
    # a denied column makes the walk necessary again
    platform.policies.apply(POLICY.format(predicates="allow"), source="test", applied_by="test")
    engine = platform.planner._policy()
    real = engine._check_references
    monkeypatch.setattr(engine, "_check_references", lambda *a, **k: (calls.append(a), real(*a, **k))[1])
    with pytest.raises(AccessDenied):
        platform.session("ann").sql("SELECT c.name FROM app.customers AS c")
    platform.session("ann").sql("SELECT id FROM app.customers ORDER BY id LIMIT 1").to_pylist()
    assert len(calls) >= 1


def test_catalog_changes_are_seen_by_cold_plans(platform, seeded):
    platform.session("setup").write(
        "warehouse.contacts", pa.Table.from_pylist([{"id": 1, "mail": "a@example.com"}]), key="id")
    platform.policies.apply(POLICY.format(predicates="deny"), source="test", applied_by="test")
    s = platform.session("ann")
    assert s.sql("SELECT mail FROM warehouse.contacts").to_pylist() == [{"mail": "a@example.com"}]
    # a new tag is a new catalog entry: the cached view and schema of the old one do not apply
    platform.catalog.set_tags("warehouse.contacts", "mail", ["pii.email"])
    assert s.sql("SELECT mail FROM warehouse.contacts").to_pylist() == [{"mail": "****"}]
