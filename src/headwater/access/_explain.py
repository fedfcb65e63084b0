"""The shape of a store's plan: operator names only, from its own EXPLAIN text.

Under a policy, a store's EXPLAIN output is not safe to show: the store plans with the bound
parameter values, so filters print the principal's attribute values and the derived keys of
the ``hash``/``tokenise`` masks (from which pseudonyms can be recomputed for guessed values),
and cardinality estimates come from the raw table's statistics (a count of rows the row filter
hides). So a governed explain keeps only what this module lets through, per store: the names
of the plan's operators (``SEQ_SCAN``, ``Hash Join``, ``SCAN customers`` ...), matched against
an allow-list pattern; everything else (expressions, literals, estimates, costs, sizes) is
dropped, and an operator name that does not match is shown as ``?``.
"""

from __future__ import annotations

import re

__all__ = ["plan_shape"]

_WORD = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_DUCK_OP = re.compile(r"^[A-Z][A-Z0-9_]*( [A-Z0-9_]+)*$")
# Postgres node: "Seq Scan", "Index Only Scan using pk on t x", "Hash Left Join", "Subquery Scan on hw_page"
_PG_NODE = re.compile(r"^[A-Z][A-Za-z]*( [A-Za-z]+)*?( using [\w$]+)?( on [\w$.\"]+( [\w$\"]+)?)?$")
# SQLite EXPLAIN QUERY PLAN step (values are never printed there, constraints are "?")
_SQLITE_STEP = re.compile(r"^[A-Z][A-Z-]*( [\w$.\"-]+)*$")


def plan_shape(kind: str, text: str) -> list[str]:
    """Operator lines of ``text`` (the store's EXPLAIN output), indented by depth."""
    if kind in ("duckdb", "parquet"):
        return _duckdb(text)
    if kind == "postgres":
        return _postgres(text)
    if kind == "sqlite":
        return _sqlite(text)
    if kind == "snowflake":
        return _snowflake(text)
    return []


def _duckdb(text: str) -> list[str]:
    """DuckDB draws boxes; the line under each box's top border holds the operator names of
    that row of the tree, one per box."""
    lines = text.splitlines()
    out: list[str] = []
    depth = 0
    for i, line in enumerate(lines[:-1]):
        if "┌" not in line:
            continue
        cells = [c.strip() for c in lines[i + 1].split("│")]
        names = [c if _DUCK_OP.match(c) else "?" for c in cells if c]
        if names:
            out.append("  " * depth + "  |  ".join(names))
            depth += 1
    return out


def _postgres(text: str) -> list[str]:
    out: list[str] = []
    for n, line in enumerate(text.splitlines()):
        stripped = line.lstrip()
        nested = stripped.startswith("->")
        if n > 0 and not nested:
            continue  # a detail line: "Filter: ...", "Sort Key: ...", "Hash Cond: ..."
        body = stripped[2:] if nested else stripped
        body = re.sub(r"\s+\(cost=.*$", "", body).strip()
        indent = ((len(line) - len(stripped)) // 6 + 1) if nested else 0
        out.append("  " * indent + (body if _PG_NODE.match(body) else "?"))
    return out


def _sqlite(text: str) -> list[str]:
    out: list[str] = []
    for line in text.splitlines():
        step = re.sub(r"\s*\(.*$", "", line.strip())
        if step:
            out.append(step if _SQLITE_STEP.match(step) else "?")
    return out


def _snowflake(text: str) -> list[str]:
    """``EXPLAIN USING TEXT``: operation lines are ``<step>  ->Name  <details>``."""
    out: list[str] = []
    for line in text.splitlines():
        m = re.match(r"^\s*\d+:\d+(\s+)->(\S+)", line)
        if m:
            name = m.group(2)
            out.append("  " * (len(m.group(1)) // 5) + (name if _WORD.match(name) else "?"))
    return out
