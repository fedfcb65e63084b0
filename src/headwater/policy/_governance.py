"""Statement governance: what a query may contain regardless of grants.

Allow-lists (:mod:`headwater.policy._functions`): the statement is a query (``SELECT``, set
operations, ``VALUES``, ``WITH``); every syntax node, function class and function name is
listed for the dialect that runs it. The tree is checked as written (SDK dialect) and again
after transpilation to the store's dialect (:func:`verify_rendered`), because sqlglot may render
a known function as a store-native one. Bad input fails with a typed error: SQL longer than
:data:`MAX_SQL_CHARS`, nested deeper than :data:`MAX_DEPTH`, numeric literals longer than
:data:`MAX_NUMBER_CHARS`, positions and limits beyond 64-bit integers.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from headwater.errors import QueryRejected
from headwater.policy._functions import FUNCTIONS, NAMES, NODES
from headwater.policy._scopes import Resolution, resolve, visible_cte

__all__ = ["MAX_DEPTH", "MAX_NUMBER_CHARS", "MAX_SQL_CHARS", "check_expression", "check_statement", "check_text",
           "check_tree", "disallowed", "table_key", "verify_rendered"]

DIALECT = "duckdb"
MAX_SQL_CHARS = 1_000_000
"""Longest SQL text accepted (characters)."""
MAX_DEPTH = 200
"""Deepest syntax tree accepted (the policy rewrite and paging add a few levels; sqlglot's
generator and the stores' parsers recurse)."""
MAX_NUMBER_CHARS = 100
"""Longest numeric literal accepted."""
_INT64 = 2**63 - 1
_MARKER = re.compile(r"__hwparam(\d+)__", re.IGNORECASE)
_META = "sqlglot.meta"
_STATEMENTS = tuple(
    getattr(exp, n) for n in ("DML", "DDL", "Insert", "Update", "Delete", "Merge", "Create", "Drop", "Alter",
                              "Command", "Pragma", "Set", "Copy", "Attach", "Detach", "Use", "Transaction",
                              "Commit", "Rollback", "Install", "Load", "TruncateTable", "Describe", "Show",
                              "Grant", "Revoke", "Into", "Lock", "Analyze", "Export", "Summarize", "Execute")
    if hasattr(exp, n)
)
"""Nodes named as statements in messages (rule ``statement-kind``); anything not allowed is
rejected whether listed here or not."""


def check_text(sql: str) -> None:
    """Reject SQL text that is too long to be parsed safely."""
    if len(sql) > MAX_SQL_CHARS:
        raise QueryRejected(f"the query is {len(sql):,} characters long; at most {MAX_SQL_CHARS:,} are accepted",
                            rule="sql-size")


def disallowed(node: exp.Expression, dialect: str) -> str | None:
    """Why ``node`` may not appear in a query run in ``dialect`` (its SQL name), or None."""
    if isinstance(node, exp.Func):
        if isinstance(node, exp.Anonymous | exp.AnonymousAggFunc):
            name = str(node.name).lower()
            return None if name in NAMES[dialect] else name
        if type(node) in FUNCTIONS[dialect]:
            return None
        try:  # the name as the dialect writes it (VERSION(), not sqlglot's CURRENT_VERSION)
            written = node.sql(dialect=dialect).split("(", 1)[0].strip()
        except (SqlglotError, RecursionError, ValueError):
            written = ""
        return (written if written.replace("_", "").replace("$", "").isalnum() else node.sql_name()).lower()
    return None if type(node) in NODES else node.key.upper()


def check_tree(
    tree: exp.Expression, dialect: str = DIALECT, *, first_param: int | None = 0, what: str = "queries",
) -> None:
    """Reject what no role may run in ``dialect``.

    ``first_param``: markers ``__hwparam<i>__`` with ``i`` below it are the planner's
    placeholders; any other marker-like name is rejected (rule ``reserved-name``). None skips
    the marker checks (a tree the platform rendered itself). Raises :class:`QueryRejected` with
    rule ``statement-kind``, ``syntax-allow-list``, ``function-allow-list``, ``sql-depth``,
    ``sql-size`` or ``reserved-name``.
    """
    if not isinstance(tree, exp.Query):
        raise QueryRejected(f"{tree.key.upper()} statements are not allowed; queries are SELECT only",
                            rule="statement-kind", statement=tree.key.upper())
    _walk(tree, dialect, first_param, what)


def check_expression(tree: exp.Expression, dialect: str = DIALECT, *, what: str = "policies") -> None:
    """:func:`check_tree` for an expression (a row filter, a custom mask), not a statement."""
    _walk(tree, dialect, 0, what)


def _walk(tree: exp.Expression, dialect: str, first_param: int | None, what: str) -> None:
    # Runs on every cold plan (the query as written, the engine's input, the final tree): one
    # iterative pass with set look-ups on the common path.
    nodes, funcs = NODES, FUNCTIONS[dialect]
    names = (exp.Var, exp.Identifier, exp.Literal)
    stack: list[tuple[exp.Expression, int]] = [(tree, 1)]
    pop, push = stack.pop, stack.append
    while stack:
        node, depth = pop()
        cls = type(node)
        if cls not in nodes and cls not in funcs:
            _refuse(node, dialect, what)
        if depth > MAX_DEPTH:
            raise QueryRejected(f"the query is nested more than {MAX_DEPTH} levels deep", rule="sql-depth")
        if node.comments and any(_META in c for c in node.comments):
            raise QueryRejected("sqlglot.meta comments are not allowed", rule="reserved-name")
        if cls in names:
            if first_param is not None:
                _check_names(node, first_param)
            if cls is exp.Literal and not node.is_string:
                _check_number(node)
        for child in node.iter_expressions():
            push((child, depth + 1))


def _refuse(node: exp.Expression, dialect: str, what: str) -> None:
    """Raise for a node that is not allowed (anonymous functions: unless their name is)."""
    bad = disallowed(node, dialect)
    if bad is None:
        return
    if isinstance(node, exp.Func):
        raise QueryRejected(f"function {bad}() is not allowed in {what} on {dialect} "
                            "(rule function-allow-list)", rule="function-allow-list", function=bad)
    if isinstance(node, _STATEMENTS):
        raise QueryRejected(f"{bad} is not allowed inside a query", rule="statement-kind", statement=bad)
    raise QueryRejected(f"{bad} is not allowed in {what}", rule="syntax-allow-list", syntax=bad)


def _check_names(node: exp.Expression, first_param: int) -> None:
    if isinstance(node, exp.Var):
        m = _MARKER.fullmatch(node.name)
        if m and int(m.group(1)) < first_param:
            return
        if m or _MARKER.search(node.name):
            raise QueryRejected("reserved name __hwparam in query", rule="reserved-name")
    elif isinstance(node, exp.Identifier | exp.Literal):
        text = str(node.this)
        if "__" in text and _MARKER.search(text):
            raise QueryRejected("reserved name __hwparam in query", rule="reserved-name")


def _check_number(node: exp.Literal) -> None:
    text = str(node.this)
    if len(text) > MAX_NUMBER_CHARS:
        raise QueryRejected(f"numeric literal of {len(text)} characters; at most {MAX_NUMBER_CHARS} are accepted",
                            rule="sql-size")
    parent = node.parent
    if isinstance(parent, exp.Neg):
        parent = parent.parent
    # Positions (ORDER BY 2, GROUP BY 1) and row counts become machine integers downstream.
    if isinstance(parent, exp.Ordered | exp.Group | exp.Limit | exp.Offset | exp.Fetch) and node.is_int \
            and int(text) > _INT64:
        raise QueryRejected(f"{text[:30]} is out of range for a position or row count", rule="sql-size")


def check_statement(tree: exp.Expression, datasets: Mapping[str, Any], first_param: int) -> Resolution:
    """Check a qualified query (:func:`check_tree`) and resolve it against ``datasets``
    (logical name -> catalog entry): see :func:`headwater.policy._scopes.resolve`."""
    check_tree(tree, DIALECT, first_param=first_param)
    by_lower = {name.lower(): ds for name, ds in datasets.items()}
    return resolve(tree, lambda name: by_lower.get(name.lower()))


def verify_rendered(tree: exp.Expression, dialect: str, physical: Counter[tuple[str, ...]]) -> None:
    """Check the SQL a store will run: ``tree`` rendered in ``dialect`` and parsed back.

    Every node and function must be allowed in that dialect, and every table reference must be
    a visible CTE or one of the physical tables the plan placed (``physical``: (db, table) as
    rendered, with multiplicity). Raises :class:`QueryRejected`; the query is not run.
    """
    try:
        text = tree.sql(dialect=dialect)
        back = sqlglot.parse_one(text, read=dialect)
    except (SqlglotError, RecursionError, ValueError):
        raise QueryRejected(f"the query cannot be verified for {dialect}; it was not run",
                            rule="unrewritten-reference") from None
    check_tree(back, dialect, first_param=None)
    seen: Counter[tuple[str, ...]] = Counter()
    for t in back.find_all(exp.Table):
        if not t.args.get("db") and not t.args.get("catalog") and visible_cte(t) is not None:
            continue
        seen[table_key(t)] += 1
    if seen != physical:
        raise QueryRejected(f"the query rendered for {dialect} reads other tables than the plan placed; "
                            "it was not run", rule="unrewritten-reference")


def table_key(t: exp.Table) -> tuple[str, ...]:
    """A physical table's name parts as written (catalog, db, table), for comparing renderings."""
    return tuple(p.name if isinstance(p, exp.Identifier) else (p.sql() if p is not None else "")
                 for p in (t.args.get("catalog"), t.args.get("db"), t.this))
