"""The policy document: YAML loading with line-precise validation, the model, and diffs."""

from __future__ import annotations

import fnmatch
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlglot
import yaml
from sqlglot import exp
from sqlglot.errors import SqlglotError

from headwater._yaml import compose, construct_scalar
from headwater.errors import PolicyError

__all__ = [
    "ACTIONS",
    "RESOURCE_ACTIONS",
    "MASKS",
    "ColumnRule",
    "Grant",
    "Policy",
    "PrincipalSpec",
    "Role",
    "RowFilter",
    "load_policy",
]

DIALECT = "duckdb"
ACTIONS = ("select", "insert", "update", "delete")
"""Row actions on datasets (what ``authorize_query``/``authorize_write`` check)."""
RESOURCE_ACTIONS: Mapping[str, tuple[str, ...]] = {
    "datasets": ACTIONS + ("erase",),
    "topics": ("publish", "consume", "register", "declassify", "admin"),
    "lineage": ("write",),
}
"""What a grant may allow, per kind of resource it names (``datasets:``, ``topics:`` or
``lineage:`` globs): ``erase`` a data subject from a dataset; ``publish``/``consume`` events,
``register`` schema versions for a topic's subjects, ``declassify`` (register a version that
drops an ``x-pii`` classification), ``admin`` (create/delete/configure topics, replay their
dead letters); ``write`` OpenLineage events whose job namespace matches the glob."""
MASKS = ("none", "last4", "email_domain", "year", "hash", "tokenise", "redact_pii", "redact", "null")
"""Built-in mask strategies, least restrictive first (a custom ``{sql: ...}`` ranks with last4)."""

_RANK = {"none": 0, "sql": 2, "last4": 2, "email_domain": 2, "year": 2, "hash": 3, "tokenise": 3,
         "redact_pii": 3,
         "redact": 4, "null": 5, "deny": 6}
JOIN_SAFE = frozenset({"none", "hash", "tokenise"})
"""Treatments whose masked value may be used in predicates, joins, grouping and ordering."""

_SCHEMA_VERSIONS = (1,)


def rank(treatment: str) -> int:
    """How much a treatment hides: 0 (``none``) to 6 (``deny``)."""
    return _RANK[treatment]


# -- model ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Grant:
    """Actions on the resources (datasets, topics or lineage namespaces) matching one of the globs."""

    datasets: tuple[str, ...]
    """The globs (dataset names, topic names or lineage namespaces, by ``kind``)."""
    actions: frozenset[str]
    rule: str
    line: int
    kind: str = "datasets"
    """``datasets``, ``topics`` or ``lineage`` (see :data:`RESOURCE_ACTIONS`)."""

    def allows(self, dataset: str, action: str, kind: str = "datasets") -> bool:
        """Whether this grant covers ``action`` on the resource ``dataset`` of ``kind``."""
        return kind == self.kind and action in self.actions and _match_any(dataset, self.datasets)


@dataclass(frozen=True, slots=True)
class ColumnRule:
    """Deny or mask the columns selected by tag and/or name."""

    treatment: str
    """``deny``, a name from :data:`MASKS`, or ``sql`` (custom expression in ``sql``)."""
    tag: str | None
    column: str | None
    datasets: tuple[str, ...]
    sql: str | None
    rule: str
    line: int

    def matches(self, dataset: str, column: str, tags: tuple[str, ...]) -> bool:
        """Whether the rule selects ``column`` of ``dataset`` (tags are the column's tags)."""
        if self.datasets and not _match_any(dataset, self.datasets):
            return False
        if self.tag is not None and not any(fnmatch.fnmatchcase(t.lower(), self.tag) for t in tags):
            return False
        if self.column is not None:
            target = f"{dataset}.{column}".lower() if self.column.count(".") >= 2 else column.lower()
            if not fnmatch.fnmatchcase(target, self.column):
                return False
        return True


@dataclass(frozen=True, slots=True)
class RowFilter:
    """A predicate over the dataset's own columns and ``principal.<attribute>`` values."""

    datasets: tuple[str, ...]
    where: str
    tree: exp.Expression = field(compare=False, repr=False)
    attributes: tuple[str, ...]
    rule: str
    line: int


@dataclass(frozen=True, slots=True)
class Role:
    """A role as written (see :class:`headwater.policy.PolicyEngine` for the effective view)."""

    name: str
    inherits: tuple[str, ...] = ()
    grants: tuple[Grant, ...] = ()
    columns: tuple[ColumnRule, ...] = ()
    row_filters: tuple[RowFilter, ...] = ()
    max_rows: int | None = None
    timeout_s: float | None = None
    max_concurrent: int | None = None
    line: int = 0


@dataclass(frozen=True, slots=True)
class PrincipalSpec:
    """A principal named in the policy file."""

    name: str
    roles: tuple[str, ...]
    attributes: Mapping[str, Any]
    kind: str = "user"
    line: int = 0


@dataclass(frozen=True, slots=True)
class Policy:
    """A validated policy document; build it with :func:`load_policy`."""

    roles: Mapping[str, Role]
    principals: Mapping[str, PrincipalSpec]
    defaults: tuple[ColumnRule, ...] = ()
    masked_predicates: str = "deny"
    """``deny`` (default) or ``allow``: may masked columns drive predicates, joins, grouping?"""
    schema_version: int = 1
    source: str = "<policy>"
    canonical: str = field(default="", repr=False)

    @property
    def version(self) -> str:
        """Content hash of the normalised document: changes whenever the policy's meaning does."""
        return hashlib.sha256(self.canonical.encode()).hexdigest()[:16]

    def principal(self, name: str) -> PrincipalSpec | None:
        """The principal called ``name`` in the file, if any."""
        return self.principals.get(name)

    def diff(self, other: Policy) -> list[str]:
        """Human-readable changes from ``self`` (old) to ``other`` (new); empty when equal."""
        old, new = json.loads(self.canonical), json.loads(other.canonical)
        out: list[str] = []
        for section, noun in (("roles", "role"), ("principals", "principal")):
            a, b = old.get(section, {}), new.get(section, {})
            for name in sorted(set(a) | set(b)):
                if name not in b:
                    out.append(f"- {noun} {name} removed")
                elif name not in a:
                    out.append(f"+ {noun} {name} added: {_brief(b[name])}")
                else:
                    for key in sorted(set(a[name]) | set(b[name])):
                        va, vb = a[name].get(key), b[name].get(key)
                        if va != vb:
                            out.extend(_list_diff(f"{noun} {name}: {key}", va, vb))
        for key in sorted((set(old) | set(new)) - {"roles", "principals"}):
            if old.get(key) != new.get(key):
                out.extend(_list_diff(key, old.get(key), new.get(key)))
        return out


def _brief(value: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={json.dumps(v, sort_keys=True)}" for k, v in sorted(value.items()) if v not in (None, [], {}))


def _list_diff(label: str, a: Any, b: Any) -> list[str]:
    if isinstance(a, list) and isinstance(b, list):
        sa = [json.dumps(x, sort_keys=True) for x in a]
        sb = [json.dumps(x, sort_keys=True) for x in b]
        lines = [f"- {label}: {x}" for x in sa if x not in sb]
        lines += [f"+ {label}: {x}" for x in sb if x not in sa]
        return lines or [f"~ {label}: reordered"]
    return [f"~ {label}: {json.dumps(a, sort_keys=True)} -> {json.dumps(b, sort_keys=True)}"]


def _match_any(name: str, patterns: tuple[str, ...]) -> bool:
    low = name.lower()
    return any(fnmatch.fnmatchcase(low, p) for p in patterns)


# -- loading -------------------------------------------------------------------------------
class _Doc:
    """Plain values plus the line of every node, keyed by path."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.lines: dict[tuple[Any, ...], int] = {}

    def error(self, path: tuple[Any, ...], message: str) -> PolicyError:
        line = self.line(path)
        where = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in path).replace(".[", "[")
        return PolicyError(
            f"{self.source}:{line}: {where + ': ' if where else ''}{message}",
            line=line, source=self.source, path=where,
        )

    def line(self, path: tuple[Any, ...]) -> int:
        while path and path not in self.lines:
            path = path[:-1]
        return self.lines.get(path, 1)




def _to_py(node: yaml.Node, path: tuple[Any, ...], doc: _Doc) -> Any:
    doc.lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for knode, vnode in node.value:
            if not isinstance(knode, yaml.ScalarNode):
                doc.lines[path + ("?",)] = knode.start_mark.line + 1
                raise doc.error(path + ("?",), "keys must be plain names")
            key = str(construct_scalar(knode))
            if key in out:
                doc.lines[path + (key,)] = knode.start_mark.line + 1
                raise doc.error(path + (key,), "duplicate key")
            out[key] = _to_py(vnode, path + (key,), doc)
            doc.lines[path + (key,)] = knode.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_to_py(v, path + (i,), doc) for i, v in enumerate(node.value)]
    return construct_scalar(node)


def load_policy(text: str, *, source: str = "<policy>") -> Policy:
    """Parse and validate a policy document; :class:`PolicyError` names the line on failure."""
    doc = _Doc(source)
    try:
        node = compose(text)  # refuses recursive aliases, alias bombs, deep nesting, huge ints
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark else 1
        raise PolicyError(f"{source}:{line}: not valid YAML: {err.problem or err.context}",
                          line=line, source=source) from None
    except yaml.YAMLError:
        raise PolicyError(f"{source}:1: not valid YAML", line=1, source=source) from None
    if node is None:
        raise PolicyError(f"{source}:1: empty policy document", line=1, source=source)
    try:
        data = _to_py(node, (), doc)
    except yaml.MarkedYAMLError as err:
        line = err.problem_mark.line + 1 if err.problem_mark else 1
        raise PolicyError(f"{source}:{line}: not valid YAML: {err.problem}", line=line, source=source) from None
    return _build(data, doc)


def _expect(doc: _Doc, path: tuple[Any, ...], value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise doc.error(path, f"expected {what}, got {type(value).__name__}")
    return value


def _keys(doc: _Doc, path: tuple[Any, ...], value: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    for key in value:
        if key not in allowed:
            raise doc.error(path + (key,), f"unknown key {key!r}; expected one of {', '.join(allowed)}")


def _globs(doc: _Doc, path: tuple[Any, ...], value: Any) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise doc.error(path, "expected a dataset glob or a non-empty list of globs")
    out = []
    for i, g in enumerate(items):
        p = path if isinstance(value, str) else path + (i,)
        if not isinstance(g, str) or not g.strip():
            raise doc.error(p, "dataset globs are non-empty strings like 'app.*'")
        if g != "*" and "." not in g:
            raise doc.error(p, f"dataset glob {g!r} must name <store>.<table> (e.g. 'app.*' or '*')")
        out.append(g.strip().lower())
    return tuple(out)


def _names(doc: _Doc, path: tuple[Any, ...], value: Any, kind: str) -> tuple[str, ...]:
    """Topic or lineage-namespace globs: non-empty strings, matched case-insensitively."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise doc.error(path, f"expected a {kind} glob or a non-empty list of globs")
    out = []
    for i, g in enumerate(items):
        p = path if isinstance(value, str) else path + (i,)
        if not isinstance(g, str) or not g.strip():
            raise doc.error(p, f"{kind} globs are non-empty strings like 'orders.*'")
        out.append(g.strip().lower())
    return tuple(out)


def _build(data: Any, doc: _Doc) -> Policy:
    _expect(doc, (), data, dict, "a mapping with version, roles and principals")
    _keys(doc, (), data, ("version", "settings", "defaults", "roles", "principals"))
    version = data.get("version")
    if version not in _SCHEMA_VERSIONS:
        raise doc.error(("version",), f"version must be one of {list(_SCHEMA_VERSIONS)}, got {version!r}")
    settings = data.get("settings") or {}
    _expect(doc, ("settings",), settings, dict, "a mapping")
    _keys(doc, ("settings",), settings, ("masked_predicates",))
    masked_predicates = settings.get("masked_predicates", "deny")
    if masked_predicates not in ("deny", "allow"):
        raise doc.error(("settings", "masked_predicates"), "must be 'deny' or 'allow'")
    defaults = data.get("defaults") or {}
    _expect(doc, ("defaults",), defaults, dict, "a mapping")
    _keys(doc, ("defaults",), defaults, ("columns",))
    default_cols = _columns(doc, ("defaults", "columns"), defaults.get("columns") or [], "defaults")

    roles_raw = data.get("roles") or {}
    _expect(doc, ("roles",), roles_raw, dict, "a mapping of role name to role")
    roles: dict[str, Role] = {}
    for name, body in roles_raw.items():
        roles[name] = _role(doc, name, body)
    for name, role in roles.items():
        for i, parent in enumerate(role.inherits):
            if parent not in roles:
                raise doc.error(("roles", name, "inherits", i), f"unknown role {parent!r}")
    _check_cycles(doc, roles)

    principals_raw = data.get("principals") or {}
    _expect(doc, ("principals",), principals_raw, dict, "a mapping of principal name to principal")
    principals: dict[str, PrincipalSpec] = {}
    for name, body in principals_raw.items():
        path = ("principals", name)
        body = body or {}
        _expect(doc, path, body, dict, "a mapping")
        _keys(doc, path, body, ("roles", "attributes", "kind"))
        rl = body.get("roles") or []
        _expect(doc, path + ("roles",), rl, list, "a list of role names")
        for i, r in enumerate(rl):
            if r not in roles:
                raise doc.error(path + ("roles", i), f"unknown role {r!r}")
        attrs = body.get("attributes") or {}
        _expect(doc, path + ("attributes",), attrs, dict, "a mapping")
        kind = body.get("kind", "user")
        if kind not in ("user", "service"):
            raise doc.error(path + ("kind",), "kind is 'user' or 'service'")
        principals[str(name)] = PrincipalSpec(str(name), tuple(rl), dict(attrs), kind, doc.line(path))

    canonical = json.dumps(_canonical(data), sort_keys=True, default=str)
    return Policy(roles, principals, default_cols, masked_predicates, version, doc.source, canonical)


def _canonical(data: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(data)
    out.setdefault("settings", {})
    out["settings"] = {"masked_predicates": "deny", **(out["settings"] or {})}
    out["roles"] = {k: {kk: vv for kk, vv in (v or {}).items()} for k, v in (data.get("roles") or {}).items()}
    out["principals"] = {k: dict(v or {}) for k, v in (data.get("principals") or {}).items()}
    return out


def _role(doc: _Doc, name: Any, body: Any) -> Role:
    path = ("roles", name)
    if not isinstance(name, str) or not name:
        raise doc.error(path, "role names are non-empty strings")
    body = body or {}
    _expect(doc, path, body, dict, "a mapping")
    _keys(doc, path, body, ("inherits", "grants", "columns", "row_filters", "max_rows", "timeout_s",
                            "max_concurrent", "description"))
    inherits = body.get("inherits") or []
    if isinstance(inherits, str):
        inherits = [inherits]
    _expect(doc, path + ("inherits",), inherits, list, "a list of role names")
    grants = []
    graw = body.get("grants") or []
    _expect(doc, path + ("grants",), graw, list, "a list of grants")
    for i, g in enumerate(graw):
        gp = path + ("grants", i)
        _expect(doc, gp, g, dict, "a mapping with datasets (or topics, or lineage) and actions")
        _keys(doc, gp, g, ("datasets", "topics", "lineage", "actions"))
        kinds = [k for k in RESOURCE_ACTIONS if k in g]
        if len(kinds) != 1:
            raise doc.error(gp, "a grant names exactly one of datasets, topics or lineage")
        (kind,) = kinds
        allowed = RESOURCE_ACTIONS[kind]
        if "actions" not in g and kind != "datasets":
            raise doc.error(gp, f"a {kind} grant needs actions (one or more of {', '.join(allowed)})")
        acts = g.get("actions", ["select"])
        if isinstance(acts, str):
            acts = [acts]
        _expect(doc, gp + ("actions",), acts, list, "a list of actions")
        if not acts:
            raise doc.error(gp + ("actions",), "a grant needs at least one action")
        for j, a in enumerate(acts):
            if a not in allowed:
                raise doc.error(gp + ("actions", j),
                                f"unknown action {a!r} for {kind}; expected one of {', '.join(allowed)}")
        globs = (_globs(doc, gp + ("datasets",), g["datasets"]) if kind == "datasets"
                 else _names(doc, gp + (kind,), g[kind], kind))
        grants.append(Grant(globs, frozenset(acts), f"roles.{name}.grants[{i}]", doc.line(gp), kind))
    columns = _columns(doc, path + ("columns",), body.get("columns") or [], f"roles.{name}")
    filters = []
    fraw = body.get("row_filters") or []
    _expect(doc, path + ("row_filters",), fraw, list, "a list of row filters")
    for i, f in enumerate(fraw):
        fp = path + ("row_filters", i)
        _expect(doc, fp, f, dict, "a mapping with datasets and where")
        _keys(doc, fp, f, ("datasets", "where"))
        if "datasets" not in f or "where" not in f:
            raise doc.error(fp, "a row filter needs datasets and where")
        where = f["where"]
        _expect(doc, fp + ("where",), where, str, "a SQL predicate")
        tree, attrs = _parse_filter(doc, fp + ("where",), where)
        filters.append(RowFilter(_globs(doc, fp + ("datasets",), f["datasets"]), where, tree, attrs,
                                 f"roles.{name}.row_filters[{i}]", doc.line(fp)))
    limits: dict[str, Any] = {}
    for key, typ in (("max_rows", int), ("timeout_s", (int, float)), ("max_concurrent", int)):
        if body.get(key) is not None:
            v = body[key]
            if not isinstance(v, typ) or isinstance(v, bool) or v <= 0:
                raise doc.error(path + (key,), f"{key} must be a positive number")
            limits[key] = v
    return Role(name, tuple(inherits), tuple(grants), columns, tuple(filters), line=doc.line(path), **limits)


def _columns(doc: _Doc, path: tuple[Any, ...], raw: Any, prefix: str) -> tuple[ColumnRule, ...]:
    _expect(doc, path, raw, list, "a list of column rules")
    out = []
    for i, c in enumerate(raw):
        cp = path + (i,)
        _expect(doc, cp, c, dict, "a mapping with tag or column, and mask or deny")
        _keys(doc, cp, c, ("tag", "column", "datasets", "mask", "deny"))
        if "tag" not in c and "column" not in c:
            raise doc.error(cp, "a column rule needs tag or column")
        for key in ("tag", "column"):
            if key in c and (not isinstance(c[key], str) or not c[key]):
                raise doc.error(cp + (key,), f"{key} is a non-empty string (globs allowed)")
        if ("mask" in c) == bool(c.get("deny")):
            raise doc.error(cp, "a column rule needs exactly one of mask: <strategy> or deny: true")
        if "deny" in c and c["deny"] is not True:
            raise doc.error(cp + ("deny",), "deny must be true (omit the rule to allow)")
        sql = None
        if c.get("deny"):
            treatment = "deny"
        else:
            m = c["mask"]
            if isinstance(m, dict):
                _keys(doc, cp + ("mask",), m, ("sql",))
                sql = m.get("sql")
                if not isinstance(sql, str) or "{col}" not in sql:
                    raise doc.error(cp + ("mask", "sql"), "a custom mask is SQL with a {col} placeholder")
                _check_custom(doc, cp + ("mask", "sql"), sql)
                treatment = "sql"
            elif m in MASKS:
                treatment = m
            else:
                raise doc.error(cp + ("mask",), f"unknown mask {m!r}; expected one of {', '.join(MASKS)} or {{sql: ...}}")
        datasets = _globs(doc, cp + ("datasets",), c["datasets"]) if "datasets" in c else ()
        out.append(ColumnRule(treatment, c.get("tag", None) and c["tag"].lower(),
                              c.get("column", None) and c["column"].lower(), datasets, sql,
                              f"{prefix}.columns[{i}]", doc.line(cp)))
    return tuple(out)


_FORBIDDEN_NODES = (exp.Query, exp.Subquery, exp.Table, exp.Placeholder, exp.Parameter, exp.Star)


def _check_custom(doc: _Doc, path: tuple[Any, ...], sql: str) -> exp.Expression:
    try:
        tree = sqlglot.parse_one(sql.replace("{col}", "hw_col"), read=DIALECT)
    except (SqlglotError, RecursionError):
        raise doc.error(path, "custom mask does not parse as a DuckDB SQL expression") from None
    bad = tree.find(*_FORBIDDEN_NODES)
    if bad is not None:
        raise doc.error(path, "custom masks may not contain subqueries, tables or placeholders")
    for col in tree.find_all(exp.Column):
        if col.table or col.name != "hw_col":
            raise doc.error(path, f"custom masks may only reference {{col}}, not {col.sql(DIALECT)}")
    _check_functions(doc, path, tree)
    return tree


def _check_functions(doc: _Doc, path: tuple[Any, ...], tree: exp.Expression) -> None:
    """The query allow-lists (syntax and functions, SDK dialect) hold for policy expressions too;
    the planner checks the rendered query again in each store's dialect."""
    from headwater.errors import QueryRejected
    from headwater.policy._governance import check_expression

    try:
        check_expression(tree, DIALECT, what="policies")
    except QueryRejected as err:
        raise doc.error(path, err.message) from None


def _parse_filter(doc: _Doc, path: tuple[Any, ...], where: str) -> tuple[exp.Expression, tuple[str, ...]]:
    try:
        tree = sqlglot.parse_one(where, read=DIALECT)
    except (SqlglotError, RecursionError):
        raise doc.error(path, "row filter does not parse as a DuckDB SQL predicate") from None
    if tree.find(*_FORBIDDEN_NODES) is not None:
        raise doc.error(path, "row filters may use the dataset's own columns and principal.<attribute> "
                              "only (no subqueries, tables or placeholders)")
    _check_functions(doc, path, tree)
    attrs = []
    for col in tree.find_all(exp.Column):
        if col.args.get("db") or col.args.get("catalog"):
            raise doc.error(path, f"{col.sql(DIALECT)}: use bare column names or principal.<attribute>")
        if col.table:
            if col.table.lower() != "principal":
                raise doc.error(path, f"{col.sql(DIALECT)}: use bare column names or principal.<attribute>")
            attrs.append(col.name)
    return tree, tuple(dict.fromkeys(attrs))


def _check_cycles(doc: _Doc, roles: Mapping[str, Role]) -> None:
    state: dict[str, int] = {}

    def visit(name: str, chain: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = chain[chain.index(name):] + [name]
            raise doc.error(("roles", name, "inherits"), f"role inheritance cycle: {' -> '.join(cycle)}")
        state[name] = 1
        for parent in roles[name].inherits:
            visit(parent, chain + [name])
        state[name] = 2

    for name in roles:
        visit(name, [])
