"""From SQL text to an executable plan: parse, resolve, qualify, choose where it runs, page.

The SDK's SQL is DuckDB's dialect (the federation engine); datasets are named
``<store>.<table>``. A statement whose datasets all live in one SQL store is transpiled (sqlglot)
to that store's dialect and pushed down whole. A statement spanning stores is federated: it runs
in DuckDB (on the warehouse's own connection when the warehouse is DuckDB, so its tables are
scanned natively), with every other source fetched as an Arrow stream of only the columns the
query uses and only the rows that pass the WHERE conjuncts that can be evaluated at the source.

Plans are cached by (SQL text, catalog version, shape of the page request); parameters are bound
at execution time, so one plan serves every parameter value.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from collections import Counter, OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import OptimizeError, ParseError, SqlglotError
from sqlglot.optimizer.qualify import qualify
from sqlglot.schema import MappingSchema

from headwater.catalog import Catalog, Dataset
from headwater.errors import (
    AccessDenied,
    ColumnNotFound,
    InvalidInput,
    QueryParseError,
    QueryRejected,
)
from headwater.policy._governance import (
    MAX_DEPTH,
    check_text,
    check_tree,
    table_key,
    verify_rendered,
)
from headwater.policy._scopes import FETCH, GOVERNED, SCAN, VIEW, mark, mark_of, resolve, verify
from headwater.principal import Principal
from headwater.stores._sql import param
from headwater.telemetry.otel import policy_span

__all__ = ["DerivePlan", "FedSource", "PagePlan", "Plan", "Planner", "SortKey", "bind_params", "parse_derive"]

DIALECT = "duckdb"
_SCHEMA_CACHE = 256

@dataclass(frozen=True, slots=True)
class SortKey:
    """One component of a page's sort order, by output column name."""

    name: str
    desc: bool = False
    nullable: bool = True


@dataclass(frozen=True, slots=True)
class FedSource:
    """One scan of a dataset in a federated plan."""

    view: str
    dataset: Dataset
    how: str
    """``native`` (table of the engine's own DuckDB), ``lake`` (Arrow dataset, DuckDB pushes
    down itself) or ``fetch`` (pushed-down query against the source store)."""
    fetch_tree: exp.Expression | None = None
    materialize: bool = False
    pushed_filter: bool = False


@dataclass(frozen=True, slots=True)
class Plan:
    """A prepared statement: resolved, qualified and placed."""

    sql: str
    tree: exp.Expression
    """Resolved tree, table references replaced by physical names or federation views."""
    datasets: tuple[str, ...]
    columns: tuple[str, ...]
    store: str | None
    """The one store that runs it, or None when federated."""
    engine: str | None
    """For federated plans, the DuckDB store whose connection runs it (None: in-memory)."""
    sources: tuple[FedSource, ...]
    n_params: int
    param_names: tuple[str | None, ...]
    """Per marker index: the placeholder's name, or None for a positional ``?``."""
    fingerprint: str
    sort: tuple[SortKey, ...] = ()
    unique_sort: bool = False
    logical: exp.Expression | None = field(default=None, repr=False)
    rendered: dict[Any, tuple[str, tuple[int, ...]]] = field(default_factory=dict, repr=False, compare=False)
    """Rendered SQL per (store, tree role), filled on first execution."""
    decision: Any = field(default=None, repr=False, compare=False)
    """The policy engine's decision (masks, filters, limits), or None without a policy."""
    n_user_params: int = 0
    """Markers 0 .. n_user_params-1 take the caller's parameters; the policy's follow."""
    temporal: tuple[tuple[int, str], ...] = ()
    """Output columns that are an explicit ``CAST(... AS DATE|TIMESTAMP)``: (position, ``date``
    or ``timestamp``). SQLite answers them as text; the session gives them their type back."""


@dataclass(frozen=True, slots=True)
class PagePlan:
    """A plan wrapped for one keyset page shape."""

    plan: Plan
    tree: exp.Expression
    has_cursor: bool
    null_pattern: tuple[bool, ...]
    rendered: dict[Any, tuple[str, tuple[int, ...]]] = field(default_factory=dict, repr=False, compare=False)


def bind_params(plan: Plan, params: Sequence[Any] | Mapping[str, Any] | None) -> list[Any]:
    """Values for the caller's markers, from a list (``?``/``$1``) or a mapping (``:name``)."""
    names = plan.param_names[: plan.n_user_params]
    if not names:
        if params:
            raise InvalidInput(f"query has no placeholders but {len(params)} parameter(s) were given")
        return []
    if params is None:
        raise InvalidInput(f"query needs {len(names)} parameter(s); pass params=[...]")
    if isinstance(params, Mapping):
        out = []
        for n in names:
            if n is None or n.isdigit():
                raise InvalidInput("query uses positional placeholders; pass params as a list")
            if n not in params:
                raise InvalidInput(f"missing parameter {n!r}")
            out.append(params[n])
        return out
    params = list(params)
    out = []
    pos = 0
    for n in names:
        if n is None:
            if pos >= len(params):
                raise InvalidInput(f"query needs more than {len(params)} parameter(s)")
            out.append(params[pos])
            pos += 1
        elif n.isdigit():
            i = int(n) - 1
            if not 0 <= i < len(params):
                raise InvalidInput(f"parameter ${n} not given ({len(params)} given)")
            out.append(params[i])
        else:
            raise InvalidInput(f"query uses named placeholder :{n}; pass params as a mapping")
    positional = sum(1 for n in names if n is None)
    if positional and pos != len(params):
        raise InvalidInput(f"query has {positional} placeholder(s) but {len(params)} parameter(s) were given")
    return out


class Planner:
    """Prepares SQL against the catalog and the platform's stores; caches plans."""

    def __init__(
        self, catalog: Catalog, stores: Mapping[str, Any], *, cache_size: int = 1024,
        policy: Any = None,
    ) -> None:
        self.catalog = catalog
        self.stores = stores
        self._policy = policy or (lambda: None)
        """Callable returning the current PolicyEngine, or None (no policy applied: open)."""
        self._cache: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._schemas: OrderedDict[frozenset[Any], tuple[tuple[Dataset, ...], MappingSchema]] = OrderedDict()
        """``qualify``'s schema per set of (catalog entry, hidden columns), see :meth:`_schema`."""
        self._physical: dict[tuple[str, str], tuple[Any, exp.Table]] = {}
        """Physical table node per (store, table): ``table_expr`` parses the name each time."""

    def _schema(self, seen: Sequence[tuple[Dataset, frozenset[str]]]) -> MappingSchema:
        """The schema ``qualify`` resolves against: each dataset's columns but its hidden ones.

        Built once per set of (catalog entry, hidden columns) and reused: a sqlglot schema
        normalises every name and parses every type when built, and memoises its look-ups.
        Catalog entries are immutable and kept alive by the cache entry, so the ids in the key
        cannot be reused by a later snapshot's entries while it is cached.
        """
        key = frozenset((id(ds), hidden) for ds, hidden in seen)
        with self._lock:
            hit = self._schemas.get(key)
            if hit is not None:  # the entry keeps its datasets alive, so their ids are theirs
                self._schemas.move_to_end(key)
                return hit[1]
        mapping: dict[str, dict[str, dict[str, str]]] = {}
        for ds, hidden in seen:
            mapping.setdefault(ds.store, {})[ds.table] = {
                c.name: _sql_type(c.type) for c in ds.columns if c.name.lower() not in hidden
            }
        schema = MappingSchema(mapping, dialect=DIALECT)
        with self._lock:
            self._schemas[key] = (tuple(ds for ds, _ in seen), schema)
            if len(self._schemas) > _SCHEMA_CACHE:
                self._schemas.popitem(last=False)
        return schema

    def _table_expr(self, store_name: str, table: str) -> exp.Table:
        """``store.table_expr(table)``, remembered (a store's physical naming does not change).

        The node is shared: callers copy its parts (see :func:`_replace_table`).
        """
        store = self.stores[store_name]
        key = (store_name, table)
        hit = self._physical.get(key)
        if hit is None or hit[0] is not store:
            hit = (store, store.table_expr(table))
            if len(self._physical) >= 4 * self._cache_size:
                self._physical.clear()
            self._physical[key] = hit
        return hit[1]

    # -- cache -------------------------------------------------------------------------
    def _cached(self, key: tuple[Any, ...], build: Any) -> Any:
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        value = build()
        with self._lock:
            self._cache[key] = value
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return value

    def prepare(
        self, sql: str, *, order_by: Sequence[str] | None = None, principal: Principal | None = None
    ) -> Plan:
        """A plan for ``sql`` as ``principal`` sees it.

        Cached per (SQL, catalog version, the policy's cache key for the principal): attribute
        values are parameters, so principals with the same roles share one decision.
        """
        engine = self._policy()
        who = engine.cache_key(principal) if engine is not None and principal is not None else None
        key = ("plan", sql, tuple(order_by or ()), self.catalog.version, who)
        return self._cached(key, lambda: self._prepare(sql, order_by, engine, principal))

    def page(self, plan: Plan, *, has_cursor: bool, null_pattern: tuple[bool, ...]) -> PagePlan:
        """The plan wrapped for a keyset page (cached per shape, on the plan: a plan is one
        principal's policy decision, so its page plans must not be shared by SQL text)."""
        key = ("page", has_cursor, null_pattern)
        hit = plan.rendered.get(key)
        if hit is None:
            hit = plan.rendered.setdefault(key, self._page(plan, has_cursor, null_pattern))  # type: ignore[arg-type]
        return hit  # type: ignore[return-value]

    # -- preparation -------------------------------------------------------------------
    def _prepare(
        self, sql: str, order_by: Sequence[str] | None, engine: Any = None, principal: Principal | None = None
    ) -> Plan:
        try:
            return self._prepare_tree(sql, order_by, engine, principal)
        except RecursionError:
            # Backstop for inputs deep enough to exhaust Python's stack in a sqlglot pass that
            # the depth cap (MAX_DEPTH) did not foresee: a typed error, never a traceback.
            raise QueryRejected("the query is nested too deeply to be analysed", rule="sql-depth") from None

    def _prepare_tree(
        self, sql: str, order_by: Sequence[str] | None, engine: Any, principal: Principal | None
    ) -> Plan:
        tree = parse_one(sql)
        original = _unnamed_outputs(tree, sql)
        names = _markers(tree)
        check_tree(tree, DIALECT, first_param=len(names))
        datasets = self._resolve(tree)
        if engine is not None and principal is None:
            raise AccessDenied("a principal is required when a policy is applied", rule="default-deny")
        seen: list[tuple[Dataset, frozenset[str]]] = []
        for ds in datasets.values():
            # Columns the principal may not read are not there for it: `*` skips them and a
            # named reference fails to resolve (the policy engine names the rule).
            rules = engine.hidden_columns(ds, principal) if engine is not None else {}
            hidden = frozenset(c.lower() for c in rules)
            seen.append((ds, hidden))
            if hidden:
                _check_hidden(tree, ds, hidden, rules, principal)
        try:
            tree = qualify(
                tree, schema=self._schema(seen), dialect=DIALECT, quote_identifiers=False,
                validate_qualify_columns=True, expand_stars=True,
            )
        except OptimizeError as err:
            msg = str(err)
            raise ColumnNotFound(_column_message(msg, datasets), datasets=sorted(datasets)) from None
        except SqlglotError as err:
            raise InvalidInput(f"cannot resolve the query against {', '.join(sorted(datasets))}: {err}") from None
        _engine_names(tree, original)
        columns = tuple(tree.named_selects) if isinstance(tree, exp.Query) else ()
        decision = None
        n_user = len(names)
        if engine is not None:
            with policy_span("select", principal.name, sorted(datasets)):
                decision = engine.authorize_query(tree, datasets, principal, first_param=n_user)
            # The decision's tree is a rewritten copy: the qualified tree stays as it is and is
            # the logical plan (no second copy).
            logical = tree
            tree = decision.tree
            names = names + [f"\x00policy{i}" for i in range(len(decision.params))]
        else:
            logical = tree.copy()
        # the page order over what the principal sees (masked keys are no keys)
        sort, unique = _sort_keys(logical, datasets, order_by, decision)
        occurrences = _scans(tree, datasets, governed=decision is not None)
        stores = {ds.store for _, ds in occurrences}
        fingerprint = hashlib.sha256(
            f"{sql}\x00{','.join(order_by or ())}".encode()
        ).hexdigest()[:32]
        extra = {"decision": decision, "n_user_params": n_user, "temporal": _temporal_outputs(logical)}
        single = len(stores) == 1 and _portable(decision, self.stores[next(iter(stores))])
        if single:
            (store_name,) = stores
            physical: Counter[tuple[str, ...]] = Counter()
            for node, ds in occurrences:
                _replace_table(node, self._table_expr(store_name, ds.table))
                physical[table_key(node)] += 1
            plan = Plan(sql, tree, tuple(sorted(datasets)), columns, store_name, None, (),
                        len(names), tuple(names), fingerprint, sort, unique, logical, **extra)
            self._verify(plan, physical)
            return plan
        if not stores:
            # No dataset at all (SELECT 1): run in DuckDB.
            plan = Plan(sql, tree, (), columns, None, None, (), len(names), tuple(names),
                        fingerprint, sort, unique, logical, **extra)
            self._verify(plan)
            return plan
        plan = self._federate(sql, tree, occurrences, datasets, columns, names, fingerprint, sort, unique, logical)
        plan = dataclasses.replace(plan, **extra)
        self._verify(plan)
        return plan

    def _verify(self, plan: Plan, physical: Counter[tuple[str, ...]] | None = None) -> None:
        """The final pass over every tree that goes to a store (see :func:`verify`): table
        references governed, syntax and functions allowed in the dialect that runs them, and
        for a single SQL store the SQL it will run parsed back in its dialect and checked again."""
        governed = plan.decision is not None
        verify(plan.tree, governed=governed)
        check_tree(plan.tree, DIALECT, first_param=None)
        if plan.store is not None and physical is not None:
            dialect = self.stores[plan.store].capabilities.dialect
            if dialect != DIALECT:
                verify_rendered(plan.tree, dialect, physical)
        for src in plan.sources:
            if src.fetch_tree is None:
                continue
            verify(src.fetch_tree, governed=governed)
            dialect = self.stores[src.dataset.store].capabilities.dialect
            if dialect != DIALECT:
                verify_rendered(src.fetch_tree, dialect, Counter(
                    table_key(t) for t in src.fetch_tree.find_all(exp.Table)))
            else:
                check_tree(src.fetch_tree, dialect, first_param=None)

    def _resolve(self, tree: exp.Expression) -> dict[str, Dataset]:
        """Resolve every table reference by scope (:func:`resolve`): visible CTEs get canonical
        names, datasets their logical ``<store>.<table>`` name; anything else is rejected."""
        resolution = resolve(tree, self.catalog.get, rename=True, hint=self._hint)
        for ds in resolution.datasets.values():
            if ds.store not in self.stores:
                raise QueryRejected(f"store {ds.store!r} of {ds.name} is not configured", rule="catalog-only")
        return resolution.datasets

    def _hint(self, name: str) -> str:
        close = [d.name for d in self.catalog.list() if d.table.lower() == name.lower()]
        return f"; did you mean {', '.join(close)}?" if close else ""

    def _federate(self, sql, tree, occurrences, datasets, columns, names, fingerprint, sort, unique, logical) -> Plan:  # type: ignore[no-untyped-def]
        duck = [ds.store for _, ds in occurrences if self.stores[ds.store].kind == "duckdb"]
        engine = duck[0] if duck else None
        root_selects = _root_selects(tree)
        sources = []
        for i, (node, ds) in enumerate(occurrences):
            store = self.stores[ds.store]
            alias = node.alias_or_name
            view = f"hw_src_{i}"
            if ds.store == engine:
                _replace_table(node, self._table_expr(ds.store, ds.table))
                sources.append(FedSource(view, ds, "native"))
                continue
            # Raw columns leave the source only for a scan the policy engine governs (masked and
            # filtered in DuckDB) or, without a policy, for a resolved dataset.
            if store.kind == "parquet":
                sources.append(FedSource(view, ds, "lake"))
            else:
                select = node.find_ancestor(exp.Select)
                cols = _columns_of(tree, alias, ds)
                predicate = _pushable(select, alias) if select is not None else None
                physical = store.table_expr(ds.table).copy()
                mark(physical, FETCH)
                fetch = exp.select(*[exp.column(c) for c in cols] or [exp.Star()]).from_(physical, copy=False)
                if predicate is not None:
                    fetch = fetch.where(predicate)
                materialize = select is None or not _streamable(select, root_selects)
                sources.append(FedSource(view, ds, "fetch", fetch, materialize, predicate is not None))
            _replace_table(node, exp.Table(this=exp.to_identifier(view)))
            mark(node, VIEW)
        return Plan(sql, tree, tuple(sorted(datasets)), columns, None, engine, tuple(sources),
                    len(names), tuple(names), fingerprint, sort, unique, logical)

    # -- pages -------------------------------------------------------------------------
    def _page(self, plan: Plan, has_cursor: bool, null_pattern: tuple[bool, ...]) -> PagePlan:
        inner = plan.tree.copy()
        if isinstance(inner, exp.Query) and not inner.args.get("limit") and not inner.args.get("offset"):
            inner.set("order", None)
        sub = exp.Subquery(this=inner, alias=exp.TableAlias(this=exp.to_identifier("hw_page")))
        keys = plan.sort
        col = {k.name: exp.column(exp.to_identifier(k.name), table="hw_page") for k in keys}
        outer = exp.select(*[exp.column(exp.to_identifier(c), table="hw_page") for c in plan.columns]).from_(sub)
        n = plan.n_params
        if has_cursor:
            # markers n .. n+len(keys)-1 carry the last row's key values
            vals = {k.name: param(n + i) for i, k in enumerate(keys)}
            pred = _after(keys, col, vals, null_pattern, inclusive=not plan.unique_sort)
            first = keys[0]
            if not null_pattern[0]:
                # Redundant range on the leading key lets stores use indexes and zone maps.
                lead = exp.LTE if first.desc else exp.GTE
                rng = lead(this=col[first.name].copy(), expression=vals[first.name].copy())
                if first.nullable:
                    rng = exp.or_(rng, exp.Is(this=col[first.name].copy(), expression=exp.Null()))
                pred = exp.and_(exp.paren(rng), exp.paren(pred))
            outer = outer.where(pred)
        order = [
            exp.Ordered(this=col[k.name].copy(), desc=k.desc, nulls_first=False) for k in keys
        ]
        outer = outer.order_by(*order)
        limit_marker = param(n + (len(keys) if has_cursor else 0))
        outer.set("limit", exp.Limit(expression=limit_marker))
        verify(outer, governed=plan.decision is not None)
        return PagePlan(plan, outer, has_cursor, null_pattern)


# -- helpers ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DerivePlan:
    """``INSERT INTO <dataset> [(cols)] SELECT ...`` or ``CREATE [OR REPLACE] TABLE <dataset> AS SELECT``."""

    kind: str
    """``insert`` or ``create``."""
    target: str
    """Logical name of the dataset written."""
    columns: tuple[str, ...]
    """Target column names for an INSERT column list (empty: by the query's output names)."""
    query: str
    """The SELECT, as SDK SQL (its placeholders unchanged)."""
    replace: bool = False
    if_not_exists: bool = False


def parse_derive(sql: str) -> DerivePlan | None:
    """The write part of a deriving statement, or None when ``sql`` is a plain query."""
    check_text(sql)
    try:
        tree = sqlglot.parse_one(sql, read=DIALECT)
    except (SqlglotError, RecursionError):
        return None  # parse_one reports the error with its position
    if isinstance(tree, exp.Insert) and isinstance(tree.expression, exp.Query):
        target = tree.this
        cols: tuple[str, ...] = ()
        if isinstance(target, exp.Schema):
            cols = tuple(c.name for c in target.expressions)
            target = target.this
        if tree.args.get("where") or tree.args.get("conflict") or tree.args.get("returning"):
            raise QueryRejected("INSERT ... SELECT takes no ON CONFLICT or RETURNING; use session.write",
                                rule="statement-kind")
        return DerivePlan("insert", _target_name(target), cols, tree.expression.sql(dialect=DIALECT))
    if isinstance(tree, exp.Create) and str(tree.args.get("kind", "")).upper() == "TABLE" \
            and isinstance(tree.expression, exp.Query):
        return DerivePlan("create", _target_name(tree.this), (), tree.expression.sql(dialect=DIALECT),
                          replace=bool(tree.args.get("replace")), if_not_exists=bool(tree.args.get("exists")))
    return None


def _target_name(table: exp.Expression) -> str:
    if not isinstance(table, exp.Table) or not table.db or table.args.get("catalog"):
        raise QueryRejected("write targets are named <store>.<table>", rule="catalog-only")
    return f"{table.db}.{table.name}"


def parse_one(sql: str) -> exp.Expression:
    """Parse exactly one query in the SDK dialect, or raise a typed error.

    Queries are ``SELECT``, set operations, ``VALUES`` (as ``SELECT * FROM (VALUES ...)``, columns
    ``col0``, ``col1`` ... as DuckDB names them) and ``WITH``; anything else is
    :class:`QueryRejected` (rule ``statement-kind``). Text longer than ``MAX_SQL_CHARS`` and input
    nested too deeply for the parser are rejected, never a traceback.
    """
    if not isinstance(sql, str):
        raise InvalidInput(f"a query is text, not {type(sql).__name__}")
    if not sql or not sql.strip():
        raise QueryParseError("empty query")
    check_text(sql)
    try:
        statements = [s for s in sqlglot.parse(sql, read=DIALECT) if s is not None]
    except ParseError as err:
        first = err.errors[0] if err.errors else {}
        where = f" at line {first.get('line')}, column {first.get('col')}" if first.get("line") else ""
        desc = first.get("description") or str(err).splitlines()[0]
        raise QueryParseError(f"SQL does not parse{where}: {desc}", line=first.get("line"),
                              column=first.get("col")) from None
    except SqlglotError as err:  # TokenError: unterminated strings, stray characters
        raise QueryParseError(f"SQL does not parse: {str(err).splitlines()[0][:200]}") from None
    except RecursionError:
        raise QueryRejected(f"the query is nested too deeply (at most {MAX_DEPTH} levels)", rule="sql-depth") from None
    if len(statements) != 1:
        raise QueryRejected(f"one statement per call ({len(statements)} given)", rule="single-statement")
    tree = statements[0]
    if isinstance(tree, exp.Values) and not tree.alias:
        width = len(tree.expressions[0].expressions) if tree.expressions and isinstance(
            tree.expressions[0], exp.Tuple) else 1
        alias = exp.TableAlias(this=exp.to_identifier("hw_values"),
                               columns=[exp.to_identifier(f"col{i}") for i in range(width)])
        tree = exp.select(exp.Star()).from_(exp.Subquery(this=tree, alias=alias), copy=False)
    if not isinstance(tree, exp.Query):
        kind = tree.key.upper()
        raise QueryRejected(
            f"{kind} statements are not accepted by sql(); derive data with INSERT INTO ... SELECT or "
            "CREATE TABLE ... AS SELECT, or change it with session.write()",
            rule="statement-kind",
            statement=kind,
        )
    return tree


def _scans(
    tree: exp.Expression, datasets: Mapping[str, Dataset], *, governed: bool
) -> list[tuple[exp.Table, Dataset]]:
    """The dataset scans of a resolved tree, by their marks: the policy engine's (under a
    policy) or the resolution's (without one); logical names, as ``qualify`` normalised them."""
    by_lower = {name.lower(): ds for name, ds in datasets.items()}
    out = []
    for t in tree.find_all(exp.Table):
        m = mark_of(t)
        if m is GOVERNED or (m is SCAN and not governed):
            ds = by_lower.get(_logical(t).lower())
            if ds is None:
                raise QueryRejected(f"internal check: scan {_logical(t)} is not a dataset of the query; "
                                    "the query was not run", rule="unrewritten-reference")
            out.append((t, ds))
    return out


def _markers(tree: exp.Expression) -> list[str | None]:
    names: list[str | None] = []
    index_of: dict[str, int] = {}
    for node in list(tree.find_all(exp.Placeholder, exp.Parameter, bfs=False)):
        if isinstance(node, exp.Parameter):
            name = node.name
        else:
            name = node.name if node.name not in ("", "?") else None
        if name is not None and name in index_of:
            idx = index_of[name]
        else:
            idx = len(names)
            names.append(name)
            if name is not None:
                index_of[name] = idx
        node.replace(param(idx))
    return names


_NAME_KEY = "hw_engine_name"
_MAX_NAME = 63
"""Longest engine-given output name kept (Postgres truncates longer identifiers)."""
_NAMER: list[Any] = []
"""The in-memory DuckDB connection asked for output names (made on first use)."""
_NAMER_LOCK = threading.Lock()
_TEMPLATE: list[str] = []


def _leftmost_select(tree: exp.Expression) -> exp.Select | None:
    """The select that names a query's output columns (the left branch of set operations)."""
    node: exp.Expression | None = tree
    while isinstance(node, exp.SetOperation):
        node = node.this
    while isinstance(node, exp.Subquery):
        node = node.this
    return node if isinstance(node, exp.Select) else None


def _unnamed_outputs(tree: exp.Expression, sql: str) -> int:
    """Tag the outermost select's unaliased expressions with the name DuckDB would give them.

    DuckDB (the SDK dialect's engine) names an unaliased expression by its own rendering of it
    (``sum(l_quantity)``, ``count_star()``, ``(a + b)``), where ``qualify`` would alias it
    ``_col_<i>``; :func:`_engine_names` restores the tagged names after qualification. A
    one-argument aggregate of a plain column (the common case) is named from the text as
    written (:func:`_simple_name`); anything else by DuckDB's own parser
    (:func:`_duckdb_names`). Returns the number of expressions tagged.
    """
    select = _leftmost_select(tree)
    if select is None:
        return 0
    items = select.expressions
    pending = [i for i, node in enumerate(items)
               if not isinstance(node, exp.Alias | exp.Column | exp.Star | exp.Placeholder | exp.Parameter)
               and not node.is_star and not (isinstance(node, exp.Subquery) and node.alias)]
    names: dict[int, str | None] = {i: _simple_name(items[i], sql) for i in pending}
    rest = [i for i in pending if names[i] is None]
    if rest:
        names.update(_duckdb_names(sql, [items[i] for i in rest], rest, len(items)))
    tagged = 0
    for i, name in names.items():
        if name and len(name) <= _MAX_NAME:
            items[i].meta[_NAME_KEY] = name
            tagged += 1
    return tagged


# Aggregates DuckDB renders as ``name(arg)`` (none is a DuckDB keyword, which it would quote).
_SIMPLE_AGGREGATES = frozenset({
    "sum", "avg", "min", "max", "count", "median", "mean", "stddev", "stddev_samp", "stddev_pop",
    "variance", "var_samp", "var_pop", "product", "any_value", "bool_and", "bool_or", "bit_and",
    "bit_or", "approx_count_distinct", "list", "array_agg", "entropy", "kurtosis", "skewness",
})


def _simple_name(node: exp.Expression, sql: str) -> str | None:
    """DuckDB's name for ``agg(column)`` / ``count(*)``, from the text as written, else None.

    DuckDB renders a function call as its name as written, in lower case, and its arguments;
    an unquoted, unqualified column as written; ``count(*)`` as ``count_star()``.
    """
    if not isinstance(node, exp.AggFunc) or node.comments:
        return None
    start, end = node.meta_get("start"), node.meta_get("end")
    if start is None or end is None:
        return None
    written = sql[start:end + 1].lower()
    if written not in _SIMPLE_AGGREGATES:
        return None
    args = [v for k, v in node.args.items() if k != "big_int" and v is not None and v is not False and v != []]
    if len(args) != 1 or args[0] is not node.this:
        return None
    arg = node.this
    if isinstance(arg, exp.Star) and written == "count" and not arg.args:
        return "count_star()"
    if isinstance(arg, exp.Column) and not arg.table and isinstance(arg.this, exp.Identifier) \
            and not arg.this.quoted and arg.name.isidentifier():
        return f"{written}({arg.name})"
    return None


def _duckdb(query: str, params: list[Any]) -> Any:
    """One value from DuckDB's parser functions, on an in-memory connection kept for this."""
    import duckdb

    with _NAMER_LOCK:
        if not _NAMER:
            _NAMER.append(duckdb.connect())
        row = _NAMER[0].execute(query, params).fetchone()
    return row[0] if row else None


def _duckdb_names(
    sql: str, nodes: Sequence[exp.Expression], positions: Sequence[int], n_items: int
) -> dict[int, str | None]:
    """DuckDB's names for the select items at ``positions`` (its rendering of each).

    DuckDB parses the statement as written; each item is rendered on its own (a ``SELECT``
    of only that item). Statements DuckDB's parser does not take (``:name`` placeholders) are
    rendered by sqlglot first, item by item.
    """
    import json

    import duckdb

    out: dict[int, str | None] = dict.fromkeys(positions)
    try:
        doc = json.loads(_duckdb("SELECT json_serialize_sql(?)", [sql]))
        items: list[Any] | None = None
        if not doc.get("error") and len(doc.get("statements") or ()) == 1:
            node = doc["statements"][0].get("node") or {}
            while node.get("type") == "SET_OPERATION_NODE":
                node = node.get("left") or (node.get("children") or [{}])[0]
            if node.get("type") == "SELECT_NODE" and len(node.get("select_list") or ()) == n_items:
                items = node["select_list"]
        template = _select_template()
        for pos, expr in zip(positions, nodes, strict=True):
            if items is not None:
                item = dict(items[pos], alias="")
                template["statements"][0]["node"]["select_list"] = [item]
                text = _duckdb("SELECT json_deserialize_sql(?::JSON)", [json.dumps(template)])
            else:
                text = _duckdb("SELECT json_deserialize_sql(json_serialize_sql(?))",
                               [f"SELECT {expr.sql(dialect=DIALECT)}"])
            if isinstance(text, str) and text.startswith("SELECT ") and len(text) > len("SELECT "):
                out[pos] = text[len("SELECT "):]
    except (duckdb.Error, ValueError, KeyError, TypeError, IndexError, AttributeError):
        pass  # no engine name: the output keeps qualify's ``_col_<i>``
    return out


def _select_template() -> dict[str, Any]:
    """DuckDB's serialised ``SELECT 1`` (a select of one item and no FROM), a fresh copy."""
    import json

    if not _TEMPLATE:
        _TEMPLATE.append(_duckdb("SELECT json_serialize_sql(?)", ["SELECT 1"]))
    return json.loads(_TEMPLATE[0])


def _engine_names(tree: exp.Expression, tagged: int) -> None:
    """Give the outermost select's unaliased expressions their engine name, not the one
    ``qualify`` made up (``_col_<i>``, or the inner column's name for ``CAST(x AS T)``).

    Only where the name is unique among the outputs (case-insensitive): pages select and sort
    by output name, which must be unambiguous.
    """
    if not tagged:
        return
    select = _leftmost_select(tree)
    if select is None:
        return
    taken: dict[str, int] = {}
    renamed: dict[str, exp.Identifier] = {}
    for sel in select.expressions:
        key = sel.alias_or_name.lower()
        taken[key] = taken.get(key, 0) + 1
    for sel in select.expressions:
        if isinstance(sel, exp.Alias):
            inner = sel.this
        elif isinstance(sel, exp.Subquery):
            inner = sel
        else:
            continue
        name = inner.meta.get(_NAME_KEY) if inner.meta else None
        if not name or name.lower() in taken:
            continue
        taken[name.lower()] = 1
        ident = exp.to_identifier(name, quoted=True)
        renamed[sel.alias_or_name] = ident
        if isinstance(sel, exp.Alias):
            sel.set("alias", ident)
        else:
            sel.set("alias", exp.TableAlias(this=ident))
    # qualify points ORDER BY (and DISTINCT ON) items equal to an output at its alias.
    for node in {id(select): select, id(tree): tree}.values():
        for clause in ("order", "distinct"):
            part = node.args.get(clause)
            if not isinstance(part, exp.Expression):
                continue
            for col in part.find_all(exp.Column):
                if not col.table and col.name in renamed:
                    col.set("this", renamed[col.name].copy())


def _logical(t: exp.Table) -> str:
    return f"{t.db}.{t.name}"


def _replace_table(node: exp.Table, new: exp.Table) -> None:
    alias = node.args.get("alias")
    for key in ("this", "db", "catalog"):
        node.set(key, new.args.get(key).copy() if new.args.get(key) is not None else None)
    if alias is not None:
        node.set("alias", alias)


def _sql_type(arrow_type: str) -> str:
    t = arrow_type.lower()
    if t.startswith(("int", "uint")):
        return "BIGINT"
    if t in ("double", "float", "halffloat"):
        return "DOUBLE"
    if t.startswith("decimal"):
        return "DECIMAL"
    if t == "bool":
        return "BOOLEAN"
    if t.startswith("timestamp"):
        return "TIMESTAMP"
    if t.startswith("date"):
        return "DATE"
    if "binary" in t:
        return "BLOB"
    return "VARCHAR"


def _column_message(msg: str, datasets: Mapping[str, Dataset]) -> str:
    names = ", ".join(sorted(datasets))
    if "could not be resolved" in msg or "Unknown column" in msg:
        return f"{msg.rstrip('.')} in {names}"
    return f"cannot resolve columns against {names}: {msg}"


def _root_selects(tree: exp.Expression) -> set[int]:
    """Selects whose sources are scanned once: the root, or branches of a root set operation."""
    out: set[int] = set()
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, exp.Select) and not node.args.get("with_"):
            out.add(id(node))
        elif isinstance(node, exp.SetOperation):
            stack.extend([node.this, node.expression])
    return out


def _streamable(select: exp.Select, roots: set[int]) -> bool:
    """Scanned once: a root select, or a subquery (the policy's masking scan) in its FROM/JOIN."""
    node: exp.Expression | None = select
    while node is not None:
        if id(node) in roots:
            return True
        parent = node.parent
        if not isinstance(parent, exp.Subquery) or not isinstance(parent.parent, exp.From | exp.Join):
            return False
        node = parent.parent.parent
    return False


_TEMPORAL = {exp.DataType.Type.DATE: "date", exp.DataType.Type.TIMESTAMP: "timestamp",
             exp.DataType.Type.TIMESTAMPNTZ: "timestamp", exp.DataType.Type.DATETIME: "timestamp"}


def _temporal_outputs(tree: exp.Expression) -> tuple[tuple[int, str], ...]:
    """Positions of output columns that cast to DATE or TIMESTAMP (see ``Plan.temporal``)."""
    if not isinstance(tree, exp.Select):
        return ()
    out = []
    for i, node in enumerate(tree.selects):
        inner = node.this if isinstance(node, exp.Alias) else node
        if isinstance(inner, exp.Cast) and isinstance(inner.to, exp.DataType):
            kind = _TEMPORAL.get(inner.to.this)
            if kind is not None:
                out.append((i, kind))
    return tuple(out)


def _portable(decision: Any, store: Any) -> bool:
    """Whether every mask of the decision runs natively in the store's dialect."""
    if decision is None or not decision.masks:
        return True
    from headwater.policy import PORTABLE

    dialect = store.capabilities.dialect
    native = PORTABLE.get(dialect)
    if native is None:
        return True
    return all(strategy in native for _, _, strategy in decision.masks)


def _check_hidden(
    tree: exp.Expression, ds: Dataset, hidden: frozenset[str], rules: Mapping[str, str], principal: Any
) -> None:
    """A denied column named explicitly gets AccessDenied with the rule, not 'not found'."""
    aliases = {ds.table.lower(), ds.name.lower()}
    for t in tree.find_all(exp.Table):
        if f"{t.db}.{t.name}".lower() == ds.name.lower():
            aliases.add(t.alias_or_name.lower())
    for col in tree.find_all(exp.Column):
        if col.name.lower() in hidden and (not col.table or col.table.lower() in aliases):
            rule = next((r for c, r in rules.items() if c.lower() == col.name.lower()), "deny")
            raise AccessDenied(
                f"{principal.name} may not read {ds.name}.{col.name} (rule {rule})",
                rule=rule, dataset=ds.name, column=col.name,
            )


def _columns_of(tree: exp.Expression, alias: str, ds: Dataset) -> list[str]:
    wanted = set()
    for c in tree.find_all(exp.Column):
        if c.table == alias:
            wanted.add(c.name.lower())
    return [c.name for c in ds.columns if c.name.lower() in wanted]


_SAFE_NODES = (
    exp.Column, exp.Literal, exp.Boolean, exp.Null, exp.Var, exp.Identifier, exp.Paren,
    exp.And, exp.Or, exp.Not, exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Is,
    exp.In, exp.Between, exp.Like, exp.Neg, exp.Tuple,
)


def _pushable(select: exp.Select, alias: str) -> exp.Expression | None:
    """Conjuncts of ``select``'s WHERE that only read ``alias`` with source-safe operators.

    Nothing is pushed into a table on the null-supplying side of an outer join.
    """
    where = select.args.get("where")
    if where is None or _null_supplying(select, alias):
        return None
    parts = []
    for conj in where.this.flatten() if isinstance(where.this, exp.And) else [where.this]:
        cols = list(conj.find_all(exp.Column))
        if not cols or any(c.table != alias for c in cols):
            continue
        if not all(isinstance(n, _SAFE_NODES) for n in conj.walk()):
            continue
        if conj.find(exp.Var) and not any(n.name.startswith("__hwparam") for n in conj.find_all(exp.Var)):
            continue
        part = conj.copy()
        for c in part.find_all(exp.Column):
            c.set("table", None)
        parts.append(part)
    if not parts:
        return None
    return exp.and_(*parts) if len(parts) > 1 else parts[0]


def _null_supplying(select: exp.Select, alias: str) -> bool:
    joins = select.args.get("joins") or []
    from_alias = select.args["from_"].this.alias_or_name if select.args.get("from_") else None
    for j in joins:
        side = (j.side or "").upper()
        kind = (j.kind or "").upper()
        if kind in {"SEMI", "ANTI"}:
            continue
        if side == "FULL":
            return True
        if side == "LEFT" and j.this.alias_or_name == alias:
            return True
        if side == "RIGHT" and j.this.alias_or_name != alias:
            return True
    del from_alias
    return False


def _sort_keys(
    tree: exp.Expression, datasets: Mapping[str, Dataset], order_by: Sequence[str] | None,
    decision: Any = None,
) -> tuple[tuple[SortKey, ...], bool]:
    """Page order: the query's ORDER BY (or ``order_by``), then tie-breakers.

    Unique when the query selects from one dataset directly (no joins, derived tables, grouping)
    and the keys include its primary key as the principal sees it, unaltered; otherwise every
    output column is appended so ties are identical rows.

    ``decision`` is the policy's (None without one). Pages compare the values the principal
    sees, so a primary key column the policy masks or rewrites is no key: ``null``/``redact``
    make every row equal, ``last4``/``year`` many, a role's ``CASE`` mixes raw values with NULLs
    or masked ones, and even keyed pseudonyms (``hash``, ``tokenise``) are unique only with high
    probability. Paging then falls back to the order over every output column with ties
    counted, which is total over what the principal sees and needs no uniqueness (the property
    test shows no row dropped or repeated). Such columns may also turn NULL, so they are never
    taken as non-null either.
    """
    if not isinstance(tree, exp.Query):
        return (), False
    outputs = list(tree.named_selects)
    lower = {o.lower(): o for o in outputs}
    masked = _altered_columns(decision)
    nonnull = _nonnull_outputs(tree, datasets, masked)
    keys: list[SortKey] = []
    if order_by:
        for item in order_by:
            desc = item.strip().lower().endswith(" desc")
            name = item.strip().rsplit(" ", 1)[0] if item.strip().lower().endswith((" desc", " asc")) else item.strip()
            if name.lower() not in lower:
                raise InvalidInput(f"order_by column {name!r} is not in the result ({', '.join(outputs)})")
            real = lower[name.lower()]
            keys.append(SortKey(real, desc, real not in nonnull))
    else:
        for o in tree.args.get("order").expressions if tree.args.get("order") else []:
            target = o.this
            name = None
            if isinstance(target, exp.Column) and target.name.lower() in lower:
                name = lower[target.name.lower()]
            else:
                for sel in tree.selects:
                    if sel.unalias() == target or (isinstance(sel, exp.Alias) and sel.this == target):
                        name = sel.alias_or_name
                        break
            if name is None:
                keys.append(SortKey("\x00unpageable", bool(o.args.get("desc"))))
                continue
            keys.append(SortKey(name, bool(o.args.get("desc")), name not in nonnull))
    unique = False
    if isinstance(tree, exp.Select) and len(datasets) == 1 and not tree.args.get("joins") \
            and not tree.args.get("group") and not tree.args.get("distinct") \
            and not tree.find(exp.Unnest, exp.Explode) and not tree.find(exp.AggFunc):
        (ds,) = datasets.values()
        pk_out = _pk_outputs(tree, ds, masked)
        if pk_out:
            have = {k.name for k in keys}
            keys.extend(SortKey(p, False, False) for p in pk_out if p not in have)
            unique = True
    if not unique:
        have = {k.name for k in keys}
        keys.extend(SortKey(o, False, o not in nonnull) for o in outputs if o not in have)
    return tuple(keys), unique


def _pk_outputs(tree: exp.Select, ds: Dataset, masked: set[tuple[str, str]] | frozenset[tuple[str, str]] = frozenset(),
                ) -> list[str] | None:
    """Output names of the dataset's primary key columns, when the query selects from the
    dataset's own scan and every key column is selected as itself, unaltered by the policy
    (see :func:`_sort_keys`); else None.

    A key read through a derived table, a CTE or a set operation may have been computed or
    repeated there (``SELECT id FROM (SELECT 1 AS id FROM t)``), so it is no key.
    """
    if not ds.primary_key:
        return None
    if any((ds.name.lower(), p.lower()) in masked for p in ds.primary_key):
        return None
    source = tree.args.get("from_")
    scan = source.this if source is not None else None
    if not isinstance(scan, exp.Table) or f"{scan.db}.{scan.name}".lower() != ds.name.lower():
        return None
    alias = scan.alias_or_name.lower()
    keys = {p.lower() for p in ds.primary_key}
    found = {}
    for sel in tree.selects:
        inner = sel.unalias()
        if isinstance(inner, exp.Column) and inner.name.lower() in keys and inner.table.lower() in ("", alias):
            found.setdefault(inner.name.lower(), sel.alias_or_name)
    if len(found) != len(ds.primary_key):
        return None
    return [found[p.lower()] for p in ds.primary_key]


def _altered_columns(decision: Any) -> set[tuple[str, str]]:
    """(dataset, column), lower case, of every column the policy decision does not pass through
    as it is: the masked ones, and any a scan's rewrite projects as an expression (a per-role
    ``CASE`` that is NULL on some rows for a column denied to one role)."""
    if decision is None:
        return set()
    out = {(d.lower(), c.lower()) for d, c, _ in decision.masks}
    for select in decision.tree.find_all(exp.Select):
        source = select.args.get("from_")
        scan = source.this if source is not None else None
        if not isinstance(scan, exp.Table) or not scan.db or select.args.get("joins"):
            continue
        name = f"{scan.db}.{scan.name}".lower()
        for sel in select.selects:
            inner = sel.unalias()
            if not (isinstance(inner, exp.Column) and inner.name.lower() == sel.alias_or_name.lower()):
                out.add((name, sel.alias_or_name.lower()))
    return out


def _nonnull_outputs(tree: exp.Expression, datasets: Mapping[str, Dataset],
                     masked: set[tuple[str, str]] | frozenset[tuple[str, str]] = frozenset()) -> set[str]:
    if not isinstance(tree, exp.Select) or tree.args.get("joins"):
        return set()
    if len(datasets) != 1:
        return set()
    (ds,) = datasets.values()
    out = set()
    for sel in tree.selects:
        inner = sel.unalias()
        if isinstance(inner, exp.Column) and (ds.name.lower(), inner.name.lower()) not in masked:
            try:
                if not ds.column(inner.name).nullable:
                    out.add(sel.alias_or_name)
            except Exception:  # noqa: BLE001
                continue
    return out


def _after(
    keys: Sequence[SortKey],
    col: Mapping[str, exp.Expression],
    vals: Mapping[str, exp.Expression],
    nulls: Sequence[bool],
    *,
    inclusive: bool,
) -> exp.Expression:
    """Rows strictly after (or at, when ``inclusive``) the last row in (key, NULLS LAST) order."""

    def eq(i: int) -> exp.Expression:
        k = keys[i]
        if nulls[i]:
            return exp.Is(this=col[k.name].copy(), expression=exp.Null())
        return exp.EQ(this=col[k.name].copy(), expression=vals[k.name].copy())

    def gt(i: int) -> exp.Expression:
        k = keys[i]
        if nulls[i]:
            return exp.false()
        cmp = (exp.LT if k.desc else exp.GT)(this=col[k.name].copy(), expression=vals[k.name].copy())
        if k.nullable:
            return exp.paren(exp.or_(cmp, exp.Is(this=col[k.name].copy(), expression=exp.Null())))
        return cmp

    def rec(i: int) -> exp.Expression:
        if i == len(keys) - 1:
            return exp.or_(gt(i), eq(i)) if inclusive else gt(i)
        return exp.or_(gt(i), exp.and_(eq(i), exp.paren(rec(i + 1))))

    return rec(0)
