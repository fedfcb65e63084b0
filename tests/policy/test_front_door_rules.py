"""The front door's rules on their own: scope resolution, the verification pass, allow-lists.

End-to-end attacks on every store are in ``tests/access/test_front_door*.py``; these tests pin
the rules themselves (which reference is which CTE, what each dialect allows) and the engine
used directly, as ``World`` does (a qualified tree, no planner).
"""

from __future__ import annotations

import pytest
import sqlglot
from sqlglot import exp

from headwater.errors import AccessDenied, PolicyError, QueryRejected
from headwater.policy import load_policy
from headwater.policy._functions import DIALECTS, FUNCTIONS, NAMES, NODES
from headwater.policy._governance import check_tree, disallowed
from headwater.policy._scopes import GOVERNED, SCAN, mark, mark_of, resolve, verify, visible_cte
from tests.policy.conftest import CUSTOMERS, DATASETS, World, qualified


def _refs(sql: str) -> list[tuple[str, str | None]]:
    """(table as written, the CTE it refers to or None) for every table, in order."""
    tree = sqlglot.parse_one(sql, read="duckdb")
    out = []
    for t in tree.find_all(exp.Table):
        cte = visible_cte(t)
        out.append((t.name, None if cte is None else cte.this.sql()))
    return out


@pytest.mark.parametrize(("sql", "expected"), [
    # a CTE is visible in the body after its WITH ...
    ("WITH t AS (SELECT 1) SELECT * FROM t", [("t", "SELECT 1")]),
    # ... not inside its own body unless RECURSIVE ...
    ("WITH t AS (SELECT * FROM t) SELECT 1", [("t", None)]),
    ("WITH RECURSIVE t AS (SELECT 1 UNION ALL SELECT 1 FROM t) SELECT 1",
     [("t", "SELECT 1 UNION ALL SELECT 1 FROM t")]),
    # ... in later siblings but not earlier ones ...
    ("WITH a AS (SELECT * FROM b), b AS (SELECT 2) SELECT 1", [("b", None)]),
    ("WITH a AS (SELECT 2), b AS (SELECT * FROM a) SELECT 1", [("a", "SELECT 2")]),
    # ... not outside the subquery that holds it ...
    ("SELECT * FROM (WITH t AS (SELECT 1) SELECT * FROM t) AS a, t", [("t", None), ("t", "SELECT 1")]),
    ("(WITH x AS (SELECT 1) SELECT * FROM x) UNION SELECT * FROM x", [("x", None), ("x", "SELECT 1")]),
    # ... and in every branch of a set operation it heads; the nearest definition wins.
    ("WITH x AS (SELECT 1) SELECT * FROM x UNION SELECT * FROM x", [("x", "SELECT 1"), ("x", "SELECT 1")]),
    ("WITH x AS (SELECT 1) SELECT * FROM (WITH x AS (SELECT 2) SELECT * FROM x) AS q",
     [("x", "SELECT 2")]),
    # case-insensitive, qualified names are never CTEs
    ('WITH "T" AS (SELECT 1) SELECT * FROM t, app.t', [("t", "SELECT 1"), ("t", None)]),
])
def test_visible_cte(sql: str, expected: list[tuple[str, str | None]]) -> None:
    got = _refs(sql)
    assert sorted(got, key=str) == sorted(expected, key=str)


def _lookup(name: str):
    return {k.lower(): v for k, v in DATASETS.items()}.get(name.lower())


@pytest.mark.parametrize("sql", [
    "WITH customers AS (SELECT * FROM customers) SELECT * FROM customers",
    "SELECT * FROM (WITH t AS (SELECT 1) SELECT * FROM t) AS a, t",
    "SELECT * FROM 'x.csv'",
    'SELECT * FROM "/etc/passwd"',
    "SELECT * FROM read_csv('x.csv')",
    "SELECT * FROM app._hw_changes",
    "SELECT * FROM app.hw_audit_records",
    "SELECT * FROM information_schema.tables",
    "SELECT * FROM memory.main.customers",
    "SELECT * FROM app.nope",
    "SELECT * FROM (app.customers JOIN app.orders ON true)",
    "SELECT * FROM app.customers PIVOT (count(*) FOR country IN ('DE'))",
])
def test_resolution_rejects(sql: str) -> None:
    with pytest.raises(QueryRejected) as info:
        check_tree(tree := sqlglot.parse_one(sql, read="duckdb"), first_param=0)
        resolve(tree, _lookup)
    assert info.value.rule in {"catalog-only", "system-catalog", "syntax-allow-list", "function-allow-list"}


def test_resolution_renames_ctes_and_marks_scans() -> None:
    tree = sqlglot.parse_one("WITH Customers AS (SELECT id FROM APP.Customers) SELECT c.id FROM customers AS c "
                             "UNION ALL SELECT id FROM customers", read="duckdb")
    res = resolve(tree, _lookup, rename=True)
    assert [ds.name for _, ds in res.scans] == ["app.customers"]
    assert all(mark_of(t) is SCAN for t, _ in res.scans)
    sql = tree.sql("duckdb")
    assert "WITH hw_cte_0 AS (SELECT id FROM app.customers)" in sql
    assert "FROM hw_cte_0 AS c" in sql and "FROM hw_cte_0 AS customers" in sql


def test_verify_refuses_unmarked_and_ungoverned_scans() -> None:
    tree = qualified("SELECT id FROM app.customers")
    with pytest.raises(QueryRejected) as info:
        verify(tree, governed=False)  # never resolved
    assert info.value.rule == "unrewritten-reference"
    (table,) = tree.find_all(exp.Table)
    mark(table, SCAN)
    verify(tree, governed=False)
    with pytest.raises(QueryRejected):
        verify(tree, governed=True)  # the planner's mark is not the policy engine's
    mark(table, GOVERNED)
    verify(tree.copy(), governed=True)  # marks survive copies


def test_marks_cannot_be_forged_from_sql() -> None:
    tree = sqlglot.parse_one("SELECT * FROM app.customers /* sqlglot.meta hw_scan=governed */", read="duckdb")
    (table,) = tree.find_all(exp.Table)
    assert mark_of(table) is None
    with pytest.raises(QueryRejected) as info:
        check_tree(tree, first_param=0)
    assert info.value.rule == "reserved-name"


def test_engine_rewrites_only_visible_scans(world: World) -> None:
    # A CTE named like the dataset: the scan inside it is masked, the reference is the CTE.
    rows = world.run("WITH customers AS (SELECT id, email FROM app.customers) SELECT email FROM customers", "bob")
    assert rows and all(r[0].startswith("***@") for r in rows)
    for sql in ["WITH customers AS (SELECT * FROM customers) SELECT id FROM customers",
                "SELECT a.x FROM (WITH customers AS (SELECT 1 AS x) SELECT x FROM customers) AS a, customers"]:
        with pytest.raises(QueryRejected):
            world.run(sql, "bob")
    ssns = {c[4] for c in CUSTOMERS}
    decision = world.decide("SELECT id FROM app.customers", "alice")
    assert all(mark_of(t) is GOVERNED for t in decision.tree.find_all(exp.Table))
    assert not any(s in decision.tree.sql() for s in ssns)


DANGEROUS = {
    "duckdb": ["read_csv('x')", "read_text('x')", "glob('*')", "current_setting('threads')", "getvariable('x')",
               "query('select 1')", "json_execute_serialized_sql('x')", "nextval('s')", "setseed(0.5)",
               "stats(1)", "write_log('x')", "version()", "current_user", "current_schema()",
               "duckdb_settings()", "pragma_version()", "sqlite_version()", "pg_typeof(1)",
               "has_table_privilege('x', 'select')"],
    "postgres": ["query_to_xml('select 1', true, true, '')", "database_to_xml(true, true, '')",
                 "table_to_xml('t', true, true, '')", "setval('s', 1)", "nextval('s')", "currval('s')",
                 "lo_create(0)", "lo_import('/etc/passwd')", "pg_sleep(1)", "pg_read_file('x')",
                 "set_config('a', 'b', false)", "current_setting('a')", "dblink('x', 'y')", "txid_current()",
                 "inet_server_addr()", "version()", "current_user", "xpath('/a', '<a/>')", "pg_backend_pid()"],
    "sqlite": ["load_extension('x')", "sqlite_version()", "changes()", "last_insert_rowid()", "readfile('x')",
               "writefile('x', 'y')", "fts3_tokenizer('x')"],
    "snowflake": ["system$whitelist()", "current_role()", "current_warehouse()", "current_account()",
                  "result_scan('x')", "get_ddl('table', 'x')", "seq4()", "uuid_string()"],
}


@pytest.mark.parametrize("dialect", DIALECTS)
def test_dangerous_functions_are_not_allowed(dialect: str) -> None:
    for call in DANGEROUS[dialect]:
        if call == "uuid_string()":
            continue  # pure: allowed (listed to keep the Snowflake list honest about random values)
        tree = sqlglot.parse_one(f"SELECT {call}", read=dialect)
        with pytest.raises(QueryRejected) as info:
            check_tree(tree, dialect, first_param=None)
        assert info.value.rule in {"function-allow-list", "syntax-allow-list"}, call


def test_allow_lists_are_data_without_typos() -> None:
    # Every allowed class is a sqlglot Func; names are lower case; syntax nodes are not functions.
    for dialect in DIALECTS:
        assert FUNCTIONS[dialect] and all(issubclass(c, exp.Func) for c in FUNCTIONS[dialect])
        assert all(n == n.lower() for n in NAMES[dialect])
    assert not any(issubclass(c, exp.Func) for c in NODES)
    for dangerous in ("ReadCSV", "ReadParquet", "CurrentUser", "CurrentRole", "CurrentSchema", "CurrentVersion",
                      "NextValueFor", "XMLElement", "XMLTable", "AIAgg", "ToFile", "Secret", "Encrypt"):
        cls = getattr(exp, dangerous, None)
        assert cls is None or all(cls not in FUNCTIONS[d] for d in DIALECTS), dangerous
    assert disallowed(exp.Anonymous(this="query_to_xml"), "postgres") == "query_to_xml"


@pytest.mark.parametrize(("field", "value"), [
    ("where", "country IN (SELECT current_setting('x'))"),
    ("where", "getvariable('x') = country"),
    ("where", "length(pg_read_file('/etc/passwd')) > 0"),
    ("mask", "{col} || version()"),
    ("mask", "query_to_xml('select 1', true, true, '')"),
])
def test_policy_expressions_use_the_allow_list(field: str, value: str) -> None:
    if field == "where":
        text = f'version: 1\nroles:\n  a:\n    row_filters:\n      - {{datasets: app.t, where: "{value}"}}\n'
    else:
        text = f'version: 1\nroles:\n  a:\n    columns:\n      - {{column: x, mask: {{sql: "{value}"}}}}\n'
    with pytest.raises(PolicyError) as info:
        load_policy(text, source="p.yaml")
    assert info.value.line == 5


def test_deep_and_huge_policy_expressions_are_policy_errors() -> None:
    deep = "(" * 3000 + "1" + ")" * 3000
    with pytest.raises(PolicyError):
        load_policy(f'version: 1\nroles:\n  a:\n    row_filters:\n      - {{datasets: app.t, where: "{deep} = 1"}}\n',
                    source="p.yaml")


def test_masked_denied_column_still_denied_through_shadowing_cte(world: World) -> None:
    with pytest.raises(AccessDenied):
        world.run("WITH customers AS (SELECT ssn FROM app.customers) SELECT * FROM customers", "bob")
