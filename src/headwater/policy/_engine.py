"""The policy engine: effective roles, query authorisation by rewriting, write checks."""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlglot import exp
from sqlglot.optimizer.scope import Scope, traverse_scope

from headwater.catalog import CatalogColumn, Dataset
from headwater.errors import AccessDenied, InvalidInput, PolicyError
from headwater.policy._governance import check_statement
from headwater.policy._masks import mask_expression, null_of
from headwater.policy._model import (
    ACTIONS,
    JOIN_SAFE,
    RESOURCE_ACTIONS,
    ColumnRule,
    Grant,
    Policy,
    RowFilter,
    rank,
)
from headwater.policy._scopes import GOVERNED, mark, verify
from headwater.principal import Principal
from headwater.stores._sql import param

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["Decision", "PolicyEngine"]

DIALECT = "duckdb"
_PREDICATE_CLAUSES = {"where", "joins", "group", "having", "qualify", "order", "window", "connect",
                      "prewhere", "distinct", "match"}


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of authorising one query for one principal."""

    tree: exp.Expression = field(repr=False)
    """A rewritten copy of the query: every base scan is a masking, filtering subquery."""
    params: list[Any] = field(repr=False)  # type: ignore[misc]
    """Values for markers ``param(first_param + i)``; may hold derived keys, so never logged."""
    masks: list[tuple[str, str, str]]
    """(dataset, column, strategy) for every column scanned with a mask."""
    filters: list[tuple[str, str]]
    """(dataset, predicate SQL with markers) for every filtered dataset."""
    rules: list[str]
    """Rule ids that shaped the decision (grants, column rules, row filters)."""
    roles: tuple[str, ...]
    max_rows: int | None
    timeout_s: float | None
    max_concurrent: int | None
    policy_version: str
    first_param: int
    param_specs: tuple[tuple[Any, ...], ...] = field(repr=False)
    """Where each parameter value comes from, so a cached decision can be rebound."""


@dataclass(slots=True)
class _Effective:
    name: str
    grants: tuple[Grant, ...]
    levels: tuple[tuple[ColumnRule, ...], ...]
    filters: tuple[RowFilter, ...]
    max_rows: int | None
    timeout_s: float | None
    max_concurrent: int | None

    def grant(self, dataset: str, action: str, kind: str = "datasets") -> Grant | None:
        return next((g for g in self.grants if g.allows(dataset, action, kind)), None)

    def treatment(self, ds: Dataset, col: CatalogColumn) -> ColumnRule | None:
        for level in self.levels:
            hits = [r for r in level if r.matches(ds.name, col.name, col.tags)]
            if hits:
                return max(hits, key=lambda r: rank(r.treatment))  # first of the most restrictive
        return None

    def filters_for(self, dataset: str) -> list[RowFilter]:
        low = dataset.lower()
        return [f for f in self.filters if any(fnmatch.fnmatchcase(low, p) for p in f.datasets)]


@dataclass(slots=True)
class _Branch:
    role: _Effective
    filters: list[RowFilter]
    treatment: str
    rule: ColumnRule | None


@dataclass(slots=True)
class _ColView:
    column: CatalogColumn
    branches: list[_Branch]

    @property
    def hidden(self) -> bool:
        return all(b.treatment == "deny" for b in self.branches)

    @property
    def tainted(self) -> bool:
        """Masked such that the masked value may not drive predicates, joins or grouping."""
        return any(b.treatment not in JOIN_SAFE and b.treatment != "deny" for b in self.branches)

    def deny_rule(self) -> str:
        return next((b.rule.rule for b in self.branches if b.rule is not None), "default-deny")


@dataclass(slots=True)
class _View:
    dataset: Dataset
    readers: list[tuple[_Effective, list[RowFilter]]]
    columns: dict[str, _ColView]
    rules: list[str]
    any_hidden: bool = False
    """Some column is denied to every reading role."""
    any_tainted: bool = False
    """Some column is masked (not join-safe) for a reading role."""


class _Binder:
    """Allocates parameter markers; one set per attribute or key, reused wherever it appears."""

    def __init__(self, engine: PolicyEngine, first: int, attrs: Mapping[str, Any], who: str) -> None:
        self.engine = engine
        self.first = first
        self.attrs = attrs
        self.who = who
        self.specs: list[tuple[Any, ...]] = []
        self.values: list[Any] = []
        self.index: dict[tuple[Any, ...], list[int]] = {}

    def _new(self, spec: tuple[Any, ...], value: Any) -> int:
        self.specs.append(spec)
        self.values.append(value)
        return self.first + len(self.values) - 1

    def _attr(self, name: str, rule: str) -> Any:
        if name not in self.attrs:
            raise AccessDenied(
                f"principal {self.who} has no attribute {name!r} required by rule {rule}",
                rule=rule, principal=self.who,
            )
        return self.attrs[name]

    def scalar(self, name: str, rule: str) -> exp.Expression:
        key = ("attr", name)
        if key not in self.index:
            self.index[key] = [self._new(key, self._attr(name, rule))]
        return param(self.index[key][0])

    def items(self, name: str, rule: str) -> list[exp.Expression]:
        key = ("list", name)
        if key not in self.index:
            value = self._attr(name, rule)
            values = list(value) if isinstance(value, list | tuple | set | frozenset) else [value]
            self.index[key] = [self._new(("item", name, i), v) for i, v in enumerate(values)]
        return [param(i) for i in self.index[key]]

    def key(self, name: str) -> exp.Expression:
        spec = ("key", name)
        if spec not in self.index:
            self.index[spec] = [self._new(spec, self.engine._derived_key(name))]
        return param(self.index[spec][0])


def mask_key(hmac_key: bytes, name: str) -> str:
    """The hex key a mask strategy (``hash_in``, ``hash_out``, ``token``) derives from ``hmac_key``."""
    return hmac.new(hmac_key, f"headwater.mask.{name}".encode(), hashlib.sha256).hexdigest()


class PolicyEngine:
    """Authorises queries and writes for principals under one :class:`Policy`.

    ``hmac_key`` keys the ``hash`` and ``tokenise`` masks; derived keys are bound as query
    parameters and never appear in SQL text, reprs or errors.
    """

    def __init__(self, policy: Policy, *, hmac_key: bytes) -> None:
        if not isinstance(hmac_key, bytes | bytearray) or len(hmac_key) < 16:
            raise InvalidInput("hmac_key must be at least 16 random bytes")
        self.policy = policy
        self.__key = bytes(hmac_key)
        self._effective: dict[str, _Effective] = {}
        self._views: dict[tuple[int, tuple[str, ...], str], _View] = {}
        """Granted views by (catalog entry, roles, action); entries hold their dataset, so an id
        reused by a later catalog snapshot's entry is told apart (see :meth:`_view`)."""

    def __repr__(self) -> str:
        return f"PolicyEngine(policy={self.policy.version!r})"

    def _derived_key(self, name: str) -> str:
        return mask_key(self.__key, name)

    # -- principals and roles -------------------------------------------------------------
    def resolve(self, principal: Principal | str) -> tuple[tuple[str, ...], dict[str, Any]]:
        """The principal's known roles and attributes.

        A principal that carries roles (from a token or a trusted caller) uses them; otherwise
        the roles of the same-named principal in the policy file. Attributes: the file's,
        overridden by the principal's own; ``principal.name`` is always available.
        """
        principal = Principal.of(principal)
        spec = self.policy.principals.get(principal.name)
        roles = principal.roles or (spec.roles if spec else ())
        attrs: dict[str, Any] = {}
        if spec is not None:
            attrs.update(spec.attributes)
        attrs.update(principal.attributes)
        # The authenticated name, never an attribute (a token claim or a file entry) called
        # ``name``: row filters on ``principal.name`` must see who is asking.
        attrs["name"] = principal.name
        known = tuple(r for r in dict.fromkeys(roles) if r in self.policy.roles)
        return known, attrs

    def effective(self, role: str) -> _Effective:
        """A role with its ancestors folded in (see the package docstring for the rules)."""
        hit = self._effective.get(role)
        if hit is not None:
            return hit
        roles = self.policy.roles
        order: list[str] = []
        levels: list[tuple[ColumnRule, ...]] = []
        frontier = [role]
        seen: set[str] = set()
        while frontier:
            level = [r for r in dict.fromkeys(frontier) if r not in seen]
            seen.update(level)
            order.extend(level)
            levels.append(tuple(c for r in level for c in roles[r].columns))
            frontier = [p for r in level for p in roles[r].inherits]
        levels.append(self.policy.defaults)

        def first(attr: str) -> Any:
            return next((getattr(roles[r], attr) for r in order if getattr(roles[r], attr) is not None), None)

        eff = _Effective(
            role,
            tuple(g for r in order for g in roles[r].grants),
            tuple(lv for lv in levels if lv),
            tuple(f for r in order for f in roles[r].row_filters),
            first("max_rows"), first("timeout_s"), first("max_concurrent"),
        )
        self._effective[role] = eff
        return eff

    def cache_key(self, principal: Principal | str) -> tuple[Any, ...]:
        """Key for caching decisions: policy version, roles and the shape of list attributes.

        Attribute values are parameters and stay out of the key; list lengths are in it because
        ``x IN principal.list`` expands to one marker per element (portable to every store).
        """
        roles, attrs = self.resolve(principal)
        shape = []
        for r in roles:
            for f in self.effective(r).filters:
                for a in f.attributes:
                    v = attrs.get(a, _MISSING)
                    shape.append((a, "missing" if v is _MISSING else
                                  len(v) if isinstance(v, list | tuple | set | frozenset) else "scalar"))
        return (self.policy.version, roles, tuple(sorted(set(shape), key=str)))

    # -- resources other than rows: topics, lineage namespaces, erasure ----------------------
    def allowed(self, principal: Principal | str, kind: str, name: str, action: str) -> str | None:
        """The rule of the grant that allows ``action`` on resource ``name`` of ``kind``
        (``datasets``, ``topics``, ``lineage``), or None (default deny)."""
        if kind not in RESOURCE_ACTIONS or action not in RESOURCE_ACTIONS[kind]:
            raise InvalidInput(f"unknown {kind} action {action!r}")
        roles, _ = self.resolve(principal)
        for r in roles:
            g = self.effective(r).grant(name, action, kind)
            if g is not None:
                return g.rule
        return None

    def authorize(self, principal: Principal | str, kind: str, name: str, action: str) -> str:
        """Allow ``action`` on resource ``name`` of ``kind`` or raise :class:`AccessDenied`;
        returns the allowing grant's rule."""
        rule = self.allowed(principal, kind, name, action)
        if rule is None:
            who = Principal.of(principal).name
            noun = {"datasets": "dataset", "topics": "topic", "lineage": "lineage namespace"}.get(kind, kind)
            raise AccessDenied(f"{who} may not {action} {noun} {name}: no role grants it (rule default-deny)",
                               rule="default-deny", principal=who, action=action, **{noun.split()[-1]: name})
        return rule

    # -- views ----------------------------------------------------------------------------
    def _view(self, ds: Dataset, roles: Sequence[str], action: str, who: str) -> _View:
        """What ``roles`` may see of ``ds`` for ``action`` (cached per catalog entry and roles:
        the engine is one policy version, a catalog entry is immutable); raises when no role
        grants it."""
        key = (id(ds), tuple(roles), action)
        hit = self._views.get(key)
        if hit is not None and hit.dataset is ds:
            return hit
        view = self._build_view(ds, roles, action, who)
        if len(self._views) >= _VIEW_CACHE:
            self._views.clear()
        self._views[key] = view
        return view

    def _build_view(self, ds: Dataset, roles: Sequence[str], action: str, who: str) -> _View:
        readers = []
        rules = []
        for r in roles:
            eff = self.effective(r)
            g = eff.grant(ds.name, action)
            if g is not None:
                fl = eff.filters_for(ds.name)
                readers.append((eff, fl))
                rules.append(g.rule)
                rules.extend(f.rule for f in fl)
        if not readers:
            raise AccessDenied(
                f"{who} may not {action} {ds.name}: no role grants it (rule default-deny)",
                rule="default-deny", dataset=ds.name, action=action, principal=who,
            )
        columns = {}
        for c in ds.columns:
            branches = []
            for eff, fl in readers:
                rule = eff.treatment(ds, c)
                branches.append(_Branch(eff, fl, rule.treatment if rule else "none", rule))
                if rule is not None:
                    rules.append(rule.rule)
            branches.sort(key=lambda b: rank(b.treatment))
            columns[c.name.lower()] = _ColView(c, branches)
        return _View(ds, readers, columns, list(dict.fromkeys(rules)),
                     any(cv.hidden for cv in columns.values()), any(cv.tainted for cv in columns.values()))

    # -- queries --------------------------------------------------------------------------
    def authorize_query(
        self,
        tree: exp.Expression,
        datasets: Mapping[str, Dataset],
        principal: Principal | str,
        *,
        first_param: int = 0,
    ) -> Decision:
        """Authorise a qualified query and return it rewritten, or raise.

        ``tree`` is qualified (columns ``alias.column``, stars expanded) with tables as
        ``exp.Table(db=<store>, this=<table>)`` logical names; ``datasets`` maps logical names
        to catalog entries. New markers start at ``param(first_param)``. Raises
        :class:`AccessDenied` (naming the rule) or :class:`QueryRejected`.
        """
        principal = Principal.of(principal)
        who = principal.name
        roles, attrs = self.resolve(principal)
        # The checks and the rewrite work on one copy, so the scans the resolution found are
        # the very nodes that get replaced.
        out = tree.copy()
        resolution = check_statement(out, datasets, first_param)
        views: dict[str, _View] = {}
        for _, ds in resolution.scans:
            if ds.name.lower() not in views:
                views[ds.name.lower()] = self._view(ds, roles, "select", who)
        if _references_matter(views.values(), self.policy.masked_predicates == "deny"):
            self._check_references(out, views, who)

        binder = _Binder(self, first_param, attrs, who)
        filters: dict[str, str] = {}
        masks: dict[tuple[str, str, str], None] = {}
        for table, ds in resolution.scans:
            view = views[ds.name.lower()]
            if _transparent(view):
                mark(table, GOVERNED)  # nothing to mask or filter: the scan stays a plain table scan
                continue
            sub, where = self._scan(table, view, binder, masks)
            if where is not None:
                filters.setdefault(view.dataset.name, where.sql(DIALECT))
            table.replace(sub)
        verify(out, governed=True)
        rules = list(dict.fromkeys(r for v in views.values() for r in v.rules))
        effs = [self.effective(r) for r in roles]
        return Decision(
            tree=out, params=list(binder.values), masks=list(masks), filters=list(filters.items()),
            rules=rules, roles=roles,
            max_rows=_most(e.max_rows for e in effs), timeout_s=_most(e.timeout_s for e in effs),
            max_concurrent=_most(e.max_concurrent for e in effs),
            policy_version=self.policy.version, first_param=first_param,
            param_specs=tuple(binder.specs),
        )

    def params_for(self, decision: Decision, principal: Principal | str) -> list[Any]:
        """Parameter values for reusing a cached ``decision`` for another principal.

        The principal must have the same :meth:`cache_key` as the one the decision was made for.
        """
        principal = Principal.of(principal)
        _, attrs = self.resolve(principal)
        out = []
        for spec in decision.param_specs:
            if spec[0] == "key":
                out.append(self._derived_key(spec[1]))
                continue
            if spec[1] not in attrs:
                raise AccessDenied(f"principal {principal.name} has no attribute {spec[1]!r}",
                                   rule="attributes", principal=principal.name)
            value = attrs[spec[1]]
            if spec[0] == "attr":
                out.append(value)
            else:
                values = list(value) if isinstance(value, list | tuple | set | frozenset) else [value]
                if spec[2] >= len(values):
                    raise InvalidInput("decision was cached for a different attribute shape; use cache_key()")
                out.append(values[spec[2]])
        return out

    def _scan(self, table: exp.Table, view: _View, binder: _Binder,
              masks: dict[tuple[str, str, str], None]) -> tuple[exp.Subquery, exp.Expression | None]:
        alias = table.alias_or_name
        old_alias = table.args.get("alias")
        keep_positions = bool(old_alias is not None and old_alias.columns)
        base = exp.Table(this=table.this.copy(), db=table.args["db"].copy(),
                         alias=exp.TableAlias(this=exp.to_identifier(alias)))
        if table.args.get("sample") is not None:
            base.set("sample", table.args["sample"].copy())  # TABLESAMPLE reads the raw table
        mark(base, GOVERNED)
        role_pred: dict[str, exp.Expression | None] = {}

        def pred(eff: _Effective, fl: list[RowFilter]) -> exp.Expression | None:
            if eff.name not in role_pred:
                parts = [self._render_filter(f, view.dataset, alias, binder) for f in fl]
                role_pred[eff.name] = exp.and_(*[exp.paren(p, copy=False) for p in parts], copy=False) \
                    if parts else None
            p = role_pred[eff.name]
            return p.copy() if p is not None else None

        projections = []
        for c in view.dataset.columns:
            cv = view.columns[c.name.lower()]
            raw = exp.column(exp.to_identifier(c.name), table=exp.to_identifier(alias))
            if cv.hidden:
                if keep_positions:
                    projections.append(exp.alias_(null_of(c), c.name, copy=False))
                continue
            for b in cv.branches:
                if b.treatment not in ("none", "deny"):
                    masks[(view.dataset.name, c.name, b.treatment)] = None

            def expr_of(b: _Branch, col: exp.Expression = raw, cat: CatalogColumn = c) -> exp.Expression:
                return mask_expression(b.treatment, col, cat, binder.key, b.rule.sql if b.rule else None)

            first = cv.branches[0]
            if first.treatment == "none" and len(cv.branches) == 1:
                projections.append(exp.alias_(raw, c.name, copy=False))  # unmasked: the column itself
                continue
            same = all((b.treatment, b.rule.sql if b.rule else None) ==
                       (first.treatment, first.rule.sql if first.rule else None) for b in cv.branches)
            if same or not first.filters:
                value = expr_of(first)
            else:
                ifs = []
                default = null_of(c)
                for b in cv.branches:
                    p = pred(b.role, b.filters)
                    if p is None:
                        default = expr_of(b)
                        break
                    ifs.append(exp.If(this=p, true=expr_of(b)))
                value = exp.Case(ifs=ifs, default=default)
            projections.append(exp.alias_(value, c.name, copy=False))
        # Built in place (the builders' default copies every node again).
        inner = exp.Select(expressions=projections, from_=exp.From(this=base))
        where = None
        if all(fl for _, fl in view.readers):
            ors = [pred(eff, fl) for eff, fl in view.readers]
            where = exp.or_(*[exp.paren(p, copy=False) for p in ors if p is not None], copy=False) \
                if len(ors) > 1 else ors[0]
            inner.set("where", exp.Where(this=where))
        new_alias = old_alias.copy() if old_alias is not None else exp.TableAlias(this=exp.to_identifier(alias))
        return exp.Subquery(this=inner, alias=new_alias), where

    def _render_filter(self, f: RowFilter, ds: Dataset, alias: str | None, binder: _Binder) -> exp.Expression:
        tree = f.tree.copy()
        names = {c.name.lower() for c in ds.columns}

        def swap(node: exp.Expression) -> exp.Expression:
            if isinstance(node, exp.In):
                items = node.args.get("expressions") or []
                field_ = node.args.get("field")
                src = field_ if field_ is not None else (items[0] if len(items) == 1 else None)
                if isinstance(src, exp.Column) and src.table.lower() == "principal":
                    values = binder.items(src.name, f.rule)
                    if not values:
                        return exp.false()
                    this = node.this.transform(swap)
                    return exp.In(this=this, expressions=values)
            if isinstance(node, exp.Column):
                if node.table.lower() == "principal":
                    return binder.scalar(node.name, f.rule)
                if node.name.lower() not in names:
                    raise PolicyError(
                        f"rule {f.rule} (line {f.line}) references {node.name!r}, "
                        f"which is not a column of {ds.name}",
                        rule=f.rule, line=f.line, dataset=ds.name,
                    )
                return exp.column(exp.to_identifier(node.name), table=exp.to_identifier(alias) if alias else None)
            return node

        return tree.transform(swap, copy=False)  # ``tree`` is already this call's own copy

    def _check_references(self, tree: exp.Expression, views: Mapping[str, _View], who: str) -> None:
        scopes = traverse_scope(tree)
        by_expr = {id(s.expression): s for s in scopes}
        tainted: dict[int, set[str]] = {}
        deny_predicates = self.policy.masked_predicates == "deny"

        def source(scope: Scope | None, name: str) -> Any:
            while scope is not None:
                src = scope.sources.get(name)
                if src is not None:
                    return src
                scope = scope.parent
            return None

        def column_tainted(scope: Scope, col: exp.Column) -> bool:
            if not col.table:
                select = scope.expression
                if isinstance(select, exp.Select) and col.name.lower() in outputs(scope) and \
                        col.name.lower() in {s.alias_or_name.lower() for s in select.selects}:
                    return True
                return False
            src = source(scope, col.table)
            if isinstance(src, exp.Table):
                if not src.db:
                    return False
                view = views.get(f"{src.db}.{src.name}".lower())
                cv = view.columns.get(col.name.lower()) if view else None
                if cv is None:
                    return False
                if cv.hidden:
                    raise AccessDenied(
                        f"column {view.dataset.name}.{cv.column.name} is denied to {who} "
                        f"by rule {cv.deny_rule()}",
                        rule=cv.deny_rule(), dataset=view.dataset.name, column=cv.column.name,
                    )
                return cv.tainted
            if isinstance(src, Scope):
                return col.name.lower() in outputs(src)
            return False

        def expr_tainted(scope: Scope, node: exp.Expression) -> bool:
            for n in node.walk(prune=lambda x: isinstance(x, exp.Query) and x is not node):
                if isinstance(n, exp.Column) and column_tainted(scope, n):
                    return True
                if isinstance(n, exp.Query) and n is not node:
                    inner = by_expr.get(id(n))
                    if inner is not None and outputs(inner):
                        return True
            return False

        def outputs(scope: Scope) -> set[str]:
            key = id(scope)
            if key in tainted:
                return tainted[key]
            tainted[key] = set()  # guards recursion (recursive CTEs)
            node = scope.expression
            result: set[str] = set()
            if isinstance(node, exp.SetOperation):
                names = [s.alias_or_name.lower() for s in node.selects]
                for branch in getattr(scope, "set_operation_scopes", None) or getattr(scope, "union_scopes", []):
                    bsel = branch.expression.selects if isinstance(branch.expression, exp.Query) else []
                    bt = outputs(branch)
                    for i, s in enumerate(bsel):
                        if s.alias_or_name.lower() in bt and i < len(names):
                            result.add(names[i])
            elif isinstance(node, exp.Select):
                for s in node.selects:
                    if expr_tainted(scope, s):
                        result.add(s.alias_or_name.lower())
            tainted[key] = result
            return result

        for scope in scopes:
            select = scope.expression
            for col in scope.columns:
                bad = column_tainted(scope, col)  # raises on denied columns
                if bad and deny_predicates and isinstance(select, exp.Select):
                    clause = _clause(col, select)
                    if clause in _PREDICATE_CLAUSES:
                        raise _masked_use(col, clause, views, scope, source, who)
            if deny_predicates and isinstance(select, exp.Select):
                for sub in scope.subquery_scopes:
                    if outputs(sub) and _clause(sub.expression, select) in _PREDICATE_CLAUSES:
                        raise AccessDenied(
                            f"a subquery over masked columns may not drive {_clause(sub.expression, select)} "
                            "(rule settings.masked_predicates)",
                            rule="settings.masked_predicates", principal=who,
                        )
                for clause in ("group", "order"):
                    node = select.args.get(clause)
                    if node is None:
                        continue
                    refs = []
                    for lit in node.find_all(exp.Literal):
                        if lit.is_int and lit.parent is not None and isinstance(lit.parent, exp.Group | exp.Ordered):
                            refs.append(int(lit.this) - 1)
                    # ORDER BY <output alias> is not among scope.columns: resolve it here.
                    names = [s.alias_or_name.lower() for s in select.selects]
                    for col in node.find_all(exp.Column):
                        if not col.table and col.name.lower() in names:
                            refs.append(names.index(col.name.lower()))
                    for i in refs:
                        if 0 <= i < len(select.selects) and \
                                select.selects[i].alias_or_name.lower() in outputs(scope):
                            raise AccessDenied(
                                f"masked column {select.selects[i].alias_or_name} may not be used in "
                                f"{clause} by {who} (rule settings.masked_predicates)",
                                rule="settings.masked_predicates", principal=who,
                            )

    # -- writes ---------------------------------------------------------------------------
    def authorize_write(
        self,
        dataset: Dataset,
        principal: Principal | str,
        action: str,
        columns: Sequence[str],
        rows: pa.Table | Callable[[], pa.Table] | None = None,
    ) -> None:
        """Allow a write or raise :class:`AccessDenied`.

        The principal needs a role that grants ``action`` on the dataset, reads every written
        column unmasked, and (when ``rows`` are given) whose row filter every row satisfies.
        For update and delete pass the affected rows as they are (pre-image), and for insert
        and update the new rows; :meth:`row_filter` gives the predicate to AND into a
        ``DELETE``/``UPDATE`` statement's WHERE. ``rows`` may be a callable returning them:
        it is called only when a row filter applies (reading a pre-image costs a query), and
        whatever it raises propagates (a lookup that fails denies; it never means "no rows").
        """
        principal = Principal.of(principal)
        who = principal.name
        if action not in ACTIONS or action == "select":
            raise InvalidInput(f"write action must be insert, update or delete, not {action!r}")
        roles, attrs = self.resolve(principal)
        writers = [r for r in roles if self.effective(r).grant(dataset.name, action)]
        if not writers:
            raise AccessDenied(f"{who} may not {action} {dataset.name}: no role grants it (rule default-deny)",
                               rule="default-deny", dataset=dataset.name, action=action, principal=who)
        qualified: list[tuple[_Effective, list[RowFilter]]] = []
        reason: tuple[str, str] | None = None
        for r in writers:
            eff = self.effective(r)
            if eff.grant(dataset.name, "select") is None:
                reason = reason or (f"role {r} may {action} but not select {dataset.name}", "default-deny")
                continue
            ok = True
            for name in columns:
                col = dataset.column(name)
                rule = eff.treatment(dataset, col)
                if rule is not None and rule.treatment != "none":
                    reason = reason or (f"column {dataset.name}.{col.name} is masked or denied for {who} "
                                        f"by rule {rule.rule}; only principals who read it unmasked may "
                                        "write it", rule.rule)
                    ok = False
                    break
            if ok:
                qualified.append((eff, eff.filters_for(dataset.name)))
        if not qualified:
            msg, rule = reason or ("no qualifying role", "default-deny")
            raise AccessDenied(f"{who} may not {action} {dataset.name}: {msg}", rule=rule,
                               dataset=dataset.name, action=action, principal=who)
        if rows is None or any(not fl for _, fl in qualified):
            return
        if callable(rows):
            rows = rows()
        if rows.num_rows == 0:
            return
        self._check_rows(dataset, rows, qualified, attrs, who, action)

    def _check_rows(self, dataset: Dataset, rows: pa.Table, qualified: list[tuple[_Effective, list[RowFilter]]],
                    attrs: Mapping[str, Any], who: str, action: str) -> None:
        import duckdb
        import pyarrow as pa

        from headwater.stores._sql import split_params

        binder = _Binder(self, 0, attrs, who)
        ors = []
        for _, fl in qualified:
            parts = [exp.paren(self._render_filter(f, dataset, "hw_rows", binder)) for f in fl]
            ors.append(exp.paren(exp.and_(*parts)))
        pred = exp.or_(*ors) if len(ors) > 1 else ors[0]
        # DuckDB binds names case-insensitively and renames a second spelling: with two columns
        # that differ only in case the check would read one while the store writes the other.
        given: dict[str, str] = {}
        for name in list(rows.column_names) + [c.name for c in dataset.columns]:
            if given.setdefault(name.casefold(), name) != name and name in rows.column_names:
                raise AccessDenied(f"{who} may not {action} {dataset.name}: the rows have columns that differ "
                                   "only in case, so they cannot be checked against the row filter",
                                   rule=qualified[0][1][0].rule, dataset=dataset.name, principal=who)
        data = rows
        present = {c.casefold() for c in rows.column_names}
        for c in dataset.columns:
            if c.name.casefold() not in present:
                present.add(c.name.casefold())
                data = data.append_column(c.name, pa.nulls(data.num_rows, pa.string()))
        sql = exp.select(exp.func("count", exp.Star())).from_(exp.to_table("hw_rows").as_("hw_rows")).where(
            exp.not_(exp.func("coalesce", exp.paren(pred), exp.false()))
        ).sql(DIALECT)
        text, values = split_params(sql, binder.values, lambda n: "?")
        con = duckdb.connect()
        try:
            con.register("hw_rows", data)
            outside = con.execute(text, values).fetchone()[0]
        except duckdb.Error:
            raise AccessDenied(f"{who} may not {action} {dataset.name}: the rows cannot be checked "
                               "against the row filter", rule=qualified[0][1][0].rule,
                               dataset=dataset.name, principal=who) from None
        finally:
            con.close()
        if outside:
            rules = ", ".join(f.rule for _, fl in qualified for f in fl)
            raise AccessDenied(
                f"{who} may not {action} {outside} row(s) of {dataset.name} outside its row filter "
                f"(rule {rules})", rule=qualified[0][1][0].rule, dataset=dataset.name,
                action=action, principal=who, rows=int(outside),
            )

    def row_filter(self, dataset: Dataset, principal: Principal | str, action: str = "select", *,
                   alias: str | None = None, first_param: int = 0) -> tuple[exp.Expression | None, list[Any]]:
        """The principal's row predicate for ``action`` on ``dataset`` (None: every row).

        Columns are qualified with ``alias`` when given; markers start at ``first_param``.
        """
        principal = Principal.of(principal)
        roles, attrs = self.resolve(principal)
        view = self._view(dataset, roles, action, principal.name)
        if any(not fl for _, fl in view.readers):
            return None, []
        binder = _Binder(self, first_param, attrs, principal.name)
        ors = []
        for _, fl in view.readers:
            parts = [exp.paren(self._render_filter(f, dataset, alias, binder)) for f in fl]
            ors.append(exp.paren(exp.and_(*parts)))
        return (exp.or_(*ors) if len(ors) > 1 else ors[0]), list(binder.values)

    def hidden_columns(self, dataset: Dataset, principal: Principal | str) -> dict[str, str]:
        """Columns denied to the principal on ``dataset`` -> the rule denying each.

        Leave them out of the schema given to ``qualify`` so ``*`` expands to what the principal
        may read; explicit references then fail to resolve.
        """
        principal = Principal.of(principal)
        roles, _ = self.resolve(principal)
        view = self._view(dataset, roles, "select", principal.name)
        return {cv.column.name: cv.deny_rule() for cv in view.columns.values() if cv.hidden}


_MISSING = object()
_VIEW_CACHE = 4096


def _references_matter(views: Iterable[_View], deny_predicates: bool) -> bool:
    """Whether :meth:`PolicyEngine._check_references` can refuse anything for these views.

    It refuses references to denied columns and, when masked predicates are denied, masked
    values driving predicates, joins, grouping or order. With no denied column, and no masked
    one or masked predicates allowed, every reference passes and the scope walk is skipped.
    """
    return any(v.any_hidden or (deny_predicates and v.any_tainted) for v in views)


def _transparent(view: _View) -> bool:
    """A reader sees every row and every column unmasked, so no rewrite is needed."""
    if not any(not fl for _, fl in view.readers):
        return False
    return all(b.treatment == "none" for cv in view.columns.values() for b in cv.branches)


def _most(values: Any) -> Any:
    vals = [v for v in values if v is not None]
    return max(vals) if vals else None


def _clause(node: exp.Expression, select: exp.Select) -> str | None:
    child, parent = node, node.parent
    in_window = False
    while parent is not None and parent is not select:
        if isinstance(parent, exp.Window) and child.arg_key in ("partition_by", "order"):
            in_window = True
        child, parent = parent, parent.parent
    if parent is None:
        return None
    key = child.arg_key
    if key == "expressions":
        return "window" if in_window else "select"
    return key


def _masked_use(col: exp.Column, clause: str, views: Mapping[str, _View], scope: Scope, source: Any,
                who: str) -> AccessDenied:
    label = {"joins": "a join condition", "group": "GROUP BY", "order": "ORDER BY", "where": "WHERE",
             "having": "HAVING", "qualify": "QUALIFY", "window": "a window's PARTITION/ORDER BY"}.get(clause, clause)
    return AccessDenied(
        f"masked column {col.name} may not be used in {label} by {who}; only its masked value may be "
        "selected (rule settings.masked_predicates)",
        rule="settings.masked_predicates", column=col.name, clause=clause, principal=who,
    )
