"""Name resolution by SQL scope, and the marks that prove a table reference was governed.

Every ``exp.Table`` of a query is exactly one of:

* a reference to a CTE that is *visible there* by SQL scoping rules: defined in the same or an
  enclosing ``WITH``, before the reference when the reference is inside a sibling CTE's body;
  a CTE's own name inside its body only under ``WITH RECURSIVE``;
* a catalogued dataset named ``<store>.<table>``;
* anything else (a bare name that is no visible CTE, a table function, a quoted file path, a
  three-part name, a system catalog, Headwater's own ``hw_*``/``_hw_*`` tables): rejected.

:func:`resolve` is the one resolution, used by the planner and by the policy engine. Visibility
is decided on the tree's structure and must agree with sqlglot's scopes
(:func:`sqlglot.optimizer.scope.traverse_scope`); where they disagree the query is rejected. With
``rename=True`` (the planner) every CTE and each reference to it get one canonical name
(``hw_cte_<n>``), so that no store can resolve a reference differently (case folding, quoting,
implicit recursion in SQLite, CTEs hoisted by a dialect) and no CTE can shadow a physical table.

Marks: the planner marks the dataset scans it resolved (:data:`SCAN`), the policy engine the
scans it produced or approved (:data:`GOVERNED`), federation its views (:data:`VIEW`).
:func:`verify` checks the tree that goes to a store: every table reference is marked or a
visible CTE, and under a policy every dataset scan is the engine's. Marks are sentinel objects in
node metadata; SQL comments (``/* sqlglot.meta k=v */``) can only set strings and booleans, so a
query cannot forge one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.optimizer.scope import Scope, traverse_scope

from headwater.errors import QueryRejected

__all__ = [
    "FETCH", "GOVERNED", "SCAN", "VIEW", "Mark", "Resolution", "mark", "mark_of", "resolve",
    "verify", "visible_cte",
]

DIALECT = "duckdb"
_KEY = "hw_scan"
CTE_PREFIX = "hw_cte_"
_SYSTEM_SCHEMAS = frozenset({"information_schema", "pg_catalog", "pg_toast", "sqlite_master", "sqlite_schema",
                             "sqlite_temp_master", "sqlite_temp_schema", "account_usage"})
_RESERVED_TABLES = ("hw_", "_hw_", "sqlite_", "duckdb_", "pg_", "information_schema")
"""Table names no dataset may have: Headwater's own tables (``hw_*``, the CDC change table
``_hw_changes``) and the stores' system catalogs."""
_TABLE_OPTIONS = frozenset({"this", "db", "alias", "sample"})
"""Parts a dataset scan may carry. Others (parenthesised joins, pivots, hints, time travel,
partitions) would be dropped by the policy's rewrite, so they are rejected instead."""


class Mark:
    """A sentinel kept in a table node's metadata; copies of the tree keep the same object."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<table mark {self.name}>"

    def __copy__(self) -> Mark:
        return self

    def __deepcopy__(self, memo: Any) -> Mark:
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (_MARKS.__getitem__, (self.name,))


SCAN = Mark("scan")
"""A catalogued dataset resolved by the planner (enough when no policy is applied)."""
GOVERNED = Mark("governed")
"""A dataset scan produced or approved by the policy engine (inside its masking subquery)."""
VIEW = Mark("view")
"""A federation view (``hw_src_<i>``) registered by the session from a governed source."""
FETCH = Mark("fetch")
"""The physical table of a federation fetch (raw columns into DuckDB, masked there)."""
_MARKS = {m.name: m for m in (SCAN, GOVERNED, VIEW, FETCH)}


def mark(table: exp.Table, value: Mark) -> None:
    """Mark ``table`` (see the module docstring)."""
    table.meta[_KEY] = value


def mark_of(table: exp.Expression) -> Mark | None:
    """The table's mark, or None (user-set metadata is never a :class:`Mark`)."""
    meta = table._meta  # noqa: SLF001 - reading without creating the dict
    value = meta.get(_KEY) if meta else None
    return value if isinstance(value, Mark) else None


@dataclass(slots=True)
class Resolution:
    """The outcome of :func:`resolve`."""

    datasets: dict[str, Any] = field(default_factory=dict)
    """Catalog entries by logical name."""
    scans: list[tuple[exp.Table, Any]] = field(default_factory=list)
    """Every dataset scan with its catalog entry (nodes of the resolved tree)."""
    ctes: list[exp.Table] = field(default_factory=list)
    """Every reference to a visible CTE."""


def visible_cte(table: exp.Table) -> exp.CTE | None:
    """The CTE a bare table name refers to at its place in the tree, or None.

    Walks up from the reference; at each node that carries a ``WITH``: from that node's body
    every CTE of the clause is visible; from inside the body of the clause's k-th CTE, the CTEs
    before it, and itself only when the clause is ``RECURSIVE``. The nearest match wins.
    Names compare case-insensitively (the SDK dialect's rule; the planner then gives every CTE
    one canonical name, so stores that fold or quote differently agree).
    """
    if table.args.get("db") or table.args.get("catalog") or not isinstance(table.this, exp.Identifier):
        return None
    name = table.name.lower()
    below: exp.Expression | None = None
    child: exp.Expression = table
    node = table.parent
    while node is not None:
        with_ = node.args.get("with_")
        if isinstance(with_, exp.With):
            ctes = list(with_.expressions)
            if child is with_:
                # Inside the body of ``below`` (one of this clause's CTEs).
                k = next((i for i, c in enumerate(ctes) if c is below), None)
                if k is None:
                    return None  # a WITH part that is no CTE body: nothing is visible
                visible = ctes[: k + 1] if with_.args.get("recursive") else ctes[:k]
            else:
                visible = ctes
            for cte in reversed(visible):
                if cte.alias_or_name.lower() == name:
                    return cte
        below, child, node = child, node, node.parent
    return None


def _scope_views(tree: exp.Expression) -> tuple[set[int], set[int]]:
    """Ids of tables sqlglot's scopes treat as CTE references, and as tables."""
    try:
        scopes = traverse_scope(tree)
    except (SqlglotError, RecursionError):
        raise QueryRejected("the query's table scopes cannot be resolved", rule="catalog-only") from None
    ctes: set[int] = set()
    tables: set[int] = set()
    for scope in scopes:
        for table in scope.tables:
            src = scope.sources.get(table.alias_or_name)
            if isinstance(src, Scope):
                ctes.add(id(table))
            else:
                tables.add(id(table))
    return ctes, tables


def resolve(
    tree: exp.Expression,
    lookup: Callable[[str], Any],
    *,
    rename: bool = False,
    hint: Callable[[str], str] | None = None,
) -> Resolution:
    """Resolve every table reference of ``tree`` or raise :class:`QueryRejected` (rule
    ``catalog-only`` or ``system-catalog``).

    ``lookup("<store>.<table>")`` returns the catalog entry (or None, or raises
    ``DatasetNotFound``). Dataset scans are set to the entry's logical name (``db`` = store,
    ``this`` = table) and marked :data:`SCAN`. ``hint(name)`` adds a suggestion to the message
    for a bare name. With ``rename`` CTEs get canonical names (see the module docstring).
    """
    out = Resolution()
    tables = list(tree.find_all(exp.Table))
    bare = [t for t in tables if not t.args.get("db") and not t.args.get("catalog")
            and isinstance(t.this, exp.Identifier)]
    # Bare names and CTE names compare case-insensitively in the SDK dialect; lower-casing them
    # first lets sqlglot's (case-sensitive) scopes agree with that.
    for t in bare:
        t.set("this", exp.to_identifier(t.name.lower(), quoted=t.this.quoted))
    for cte in tree.find_all(exp.CTE):
        alias = cte.args.get("alias")
        if isinstance(alias, exp.TableAlias) and isinstance(alias.this, exp.Identifier):
            alias.set("this", exp.to_identifier(alias.name.lower(), quoted=alias.this.quoted))
    by_cte: dict[int, list[exp.Table]] = {}
    refs: dict[int, exp.CTE] = {}
    for t in bare:
        cte = visible_cte(t)
        if cte is not None:
            refs[id(t)] = cte
    if refs:
        scope_ctes, _ = _scope_views(tree)
        for t in bare:
            if (id(t) in refs) != (id(t) in scope_ctes):
                raise QueryRejected(
                    f"{t.name[:60]!r} cannot be resolved unambiguously to a CTE or a dataset; "
                    "name datasets as <store>.<table> and give CTEs names of their own",
                    rule="catalog-only")
    for t in tables:
        if not isinstance(t.this, exp.Identifier):
            raise QueryRejected(
                f"{t.this.sql(dialect=DIALECT)[:60]} is not a catalogued dataset; table functions are not "
                "allowed, query datasets by their <store>.<table> name", rule="catalog-only")
        if t.args.get("catalog"):
            raise QueryRejected(f"{t.sql(dialect=DIALECT)[:80]} has three name parts; name datasets as "
                                "<store>.<table>", rule="catalog-only")
        db = t.args.get("db")
        if db is None:
            cte = refs.get(id(t))
            if cte is None:
                raise QueryRejected(_bare_message(t.name, hint), rule="catalog-only", table=t.name[:200])
            by_cte.setdefault(id(cte), []).append(t)
            out.ctes.append(t)
            continue
        low_db, low_name = t.db.lower(), t.name.lower()
        if low_db in _SYSTEM_SCHEMAS or low_name.startswith(_RESERVED_TABLES):
            raise QueryRejected(f"{t.db}.{t.name} is not available to queries: system catalogs and "
                                "Headwater's own tables are not datasets", rule="system-catalog")
        ds = lookup(f"{t.db}.{t.name}")
        if ds is None:
            raise QueryRejected(f"{t.db}.{t.name} is not a catalogued dataset", rule="catalog-only",
                                dataset=f"{t.db}.{t.name}")
        if ds.table.lower().startswith(_RESERVED_TABLES):
            raise QueryRejected(f"{ds.name} is not available to queries: Headwater's own tables are "
                                "not datasets", rule="system-catalog")
        extra = [k for k, v in t.args.items() if v and k not in _TABLE_OPTIONS]
        if extra:
            raise QueryRejected(f"{', '.join(sorted(extra))} on a dataset scan ({ds.name}) is not supported; "
                                "write the query without it", rule="syntax-allow-list")
        t.set("db", exp.to_identifier(ds.store))
        t.set("this", exp.to_identifier(ds.table))
        mark(t, SCAN)
        out.datasets[ds.name] = ds
        out.scans.append((t, ds))
    if rename:
        _rename(tree, by_cte)
    return out


def _bare_message(name: str, hint: Callable[[str], str] | None) -> str:
    if any(ch in name for ch in "./\\:*?"):
        return (f"{name[:60]!r} looks like a file or URL, not a catalogued dataset; query datasets by "
                "their <store>.<table> name")
    more = hint(name) if hint is not None else ""
    return (f"{name[:60]!r} is neither a catalogued dataset nor a CTE visible here; name datasets as "
            f"<store>.<table>{more}")


def _rename(tree: exp.Expression, by_cte: Mapping[int, list[exp.Table]]) -> None:
    """Give every CTE and the references to it one canonical name; references keep their alias
    (the CTE's name as written, when they had none), so qualified columns still resolve."""
    for i, cte in enumerate(tree.find_all(exp.CTE)):
        canonical = f"{CTE_PREFIX}{i}"
        alias = cte.args.get("alias")
        if not isinstance(alias, exp.TableAlias):
            continue
        for ref in by_cte.get(id(cte), ()):
            if ref.args.get("alias") is None:
                ref.set("alias", exp.TableAlias(this=exp.to_identifier(ref.name)))
            ref.set("this", exp.to_identifier(canonical))
        alias.set("this", exp.to_identifier(canonical))


def verify(tree: exp.Expression, *, governed: bool) -> None:
    """The last check before a tree goes to a store: every table reference is a marked scan or
    view, or a visible CTE; under a policy (``governed``) every dataset scan is the policy
    engine's. Anything else is an internal invariant violation: :class:`QueryRejected`
    (rule ``unrewritten-reference``), the query never runs."""
    for t in tree.find_all(exp.Table):
        m = mark_of(t)
        if m is GOVERNED or m is VIEW or m is FETCH or (m is SCAN and not governed):
            continue
        if m is None and visible_cte(t) is not None:
            continue
        raise QueryRejected(
            f"table reference {t.sql(dialect=DIALECT)[:80]} was not rewritten by the policy engine; "
            "the query was not run", rule="unrewritten-reference")
