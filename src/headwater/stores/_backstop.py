"""The read scope of a plan: what the stores' backstop lets one principal read.

The planner resolved the datasets and the policy engine decided which of their columns the
principal may see; the scope is built from those (never from the SQL the store will run, which is
what the backstop distrusts): per store, each planned dataset's physical table with its
catalogued columns minus the hidden ones, plus the columns the policy's own row filters read (a
filter may test a column the principal may not see; the rewrite reads it inside the filtering
scan). See ``docs/store-security.md``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import sqlglot
from sqlglot import exp

from headwater.stores.base import ReadScope

if TYPE_CHECKING:
    from headwater.principal import Principal

__all__ = ["scope_for"]

_MARKER = re.compile(r"__hwparam\d+__", re.I)


def scope_for(platform: Any, plan: Any, store: str, principal: Principal) -> ReadScope:
    """The scope of ``plan``'s reads in ``store`` (or on the federation engine, when ``store``
    is the plan's DuckDB engine: its native tables plus the views the session registers)."""
    engine = platform.policy_engine()
    decision = plan.decision
    filter_columns: dict[str, set[str]] = {}
    for dataset, predicate in (decision.filters if decision is not None else ()):
        filter_columns.setdefault(dataset.lower(), set()).update(_columns(predicate))
    tables: dict[str, frozenset[str]] = {}
    for name in plan.datasets:
        ds = platform.catalog.find(name)
        if ds is None or ds.store != store:
            continue  # left the catalog since planning: not readable
        hidden = {c.lower() for c in engine.hidden_columns(ds, principal)} if engine is not None else set()
        cols = {c.name.lower() for c in ds.columns if c.name.lower() not in hidden}
        cols |= filter_columns.get(ds.name.lower(), set())
        tables[ds.table.lower()] = frozenset(cols)
    views = frozenset(src.view.lower() for src in plan.sources) if plan.engine == store or store == "" else frozenset()
    return ReadScope(tables=tables, views=views)


def _columns(predicate: str) -> set[str]:
    """Column names a policy filter predicate (DuckDB SQL with parameter markers) reads."""
    try:
        tree = sqlglot.parse_one(predicate, read="duckdb")
    except sqlglot.errors.SqlglotError:
        return set()
    return {c.name.lower() for c in tree.find_all(exp.Column) if not _MARKER.fullmatch(c.name)}
