"""Column lineage of one SQL statement, derived with sqlglot.

The statement is parsed in the SDK dialect, qualified against the schema of the datasets it
reads (``qualify`` with ``*`` expanded), then walked scope by scope (CTEs, derived tables, set
operations, subqueries). Every output column gets the input fields it is computed from, each
with OpenLineage ``columnLineage`` 1-2-0 transformations:

* ``DIRECT``: ``IDENTITY`` (the value itself), ``TRANSFORMATION`` (a function of it),
  ``AGGREGATION`` (an aggregate over it, window aggregates included);
* ``INDIRECT``: ``JOIN``, ``FILTER`` (WHERE/HAVING/QUALIFY, and every input of a subquery
  used there), ``GROUP_BY``, ``SORT`` (these four affect every output row, so they are reported
  once for the whole dataset), ``WINDOW`` (PARTITION BY / ORDER BY of the window that computes
  the column) and ``CONDITIONAL`` (the condition of a CASE/IF that computes the column): these
  two are reported per field.

Transformations compose through CTEs and derived tables: an identity of a transformation is a
transformation, anything of an aggregation is an aggregation, and an input used indirectly
stays indirect. What the walk cannot follow (an unresolvable column, a table function, a
statement kind it does not know) is recorded in :attr:`LineageResult.gaps`; the rest of the
lineage is still returned.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.optimizer.qualify import qualify
from sqlglot.optimizer.scope import Scope, build_scope

from headwater.errors import InvalidInput, QueryParseError
from headwater.lineage._sql import strip_literals

__all__ = [
    "ColumnLineage",
    "InputField",
    "LineageResult",
    "SchemaLike",
    "Transformation",
    "column_lineage",
]

DIRECT = "DIRECT"
INDIRECT = "INDIRECT"

SchemaLike = Mapping[str, Mapping[str, str]] | Callable[[str], Any]
"""Columns (name -> SQL type) by dataset ``<store>.<table>``, or a function of the dataset name
returning them, or the catalog ``Dataset`` (whose name is then the canonical spelling), or None
when the dataset is unknown."""


@dataclass(frozen=True, slots=True, order=True)
class Transformation:
    """One way an input field influences an output (the facet's ``transformations[]`` item)."""

    type: str
    """``DIRECT`` or ``INDIRECT``."""
    subtype: str
    """``IDENTITY``/``TRANSFORMATION``/``AGGREGATION`` or ``JOIN``/``FILTER``/``GROUP_BY``/
    ``SORT``/``WINDOW``/``CONDITIONAL``."""
    masking: bool = False
    """True when the output no longer reveals the input (a hash of it)."""

    def to_json(self) -> dict[str, Any]:
        """The facet's JSON form."""
        out: dict[str, Any] = {"type": self.type, "subtype": self.subtype}
        if self.masking:
            out["masking"] = True
        return out


IDENTITY = Transformation(DIRECT, "IDENTITY")
TRANSFORM = Transformation(DIRECT, "TRANSFORMATION")
AGGREGATE = Transformation(DIRECT, "AGGREGATION")


def _indirect(subtype: str) -> Transformation:
    return Transformation(INDIRECT, subtype)


JOIN, FILTER, GROUP_BY, SORT, WINDOW, CONDITIONAL = (
    _indirect(s) for s in ("JOIN", "FILTER", "GROUP_BY", "SORT", "WINDOW", "CONDITIONAL")
)

_DIRECT_RANK = {"IDENTITY": 0, "TRANSFORMATION": 1, "AGGREGATION": 2}
_MASKING_FUNCTIONS = {"md5", "sha1", "sha256", "sha512", "hash", "md5_number", "sha2", "sha"}


def _compose(outer: Transformation, inner: Transformation) -> Transformation:
    """``outer`` applied to a column that is ``inner`` of its input."""
    if outer.type == INDIRECT:
        return outer
    if inner.type == INDIRECT:
        return inner
    sub = max(outer.subtype, inner.subtype, key=_DIRECT_RANK.__getitem__)
    return Transformation(DIRECT, sub, outer.masking or inner.masking)


def _direct(mode: Transformation) -> Transformation:
    """The mode for an operand of a function: an identity stops being one."""
    return TRANSFORM if mode == IDENTITY else mode


@dataclass(frozen=True, slots=True)
class InputField:
    """An input field and how it reaches the output."""

    dataset: str
    """Logical name ``<store>.<table>``."""
    field: str
    transformations: tuple[Transformation, ...]

    def to_json(self, namespace: str, name: str) -> dict[str, Any]:
        """The facet's ``InputField`` JSON, with the dataset's OpenLineage identity."""
        return {
            "namespace": namespace,
            "name": name,
            "field": self.field,
            "transformations": [t.to_json() for t in self.transformations],
        }


@dataclass(frozen=True, slots=True)
class ColumnLineage:
    """The inputs of one output column."""

    name: str
    inputs: tuple[InputField, ...]

    def subtypes(self, dataset: str, field: str) -> set[str]:
        """Transformation subtypes from ``dataset.field`` (empty when it is not an input)."""
        return {
            t.subtype for f in self.inputs if f.dataset == dataset and f.field == field
            for t in f.transformations
        }


@dataclass(slots=True)
class LineageResult:
    """Column lineage of one statement."""

    sql: str
    statement: str
    """``INSERT``, ``CREATE TABLE AS``, ``SELECT`` or the kind that was not understood."""
    target: str | None
    """The dataset written (``<store>.<table>``), when there is one."""
    columns: dict[str, ColumnLineage] = field(default_factory=dict)
    """Output columns in order."""
    dataset: tuple[InputField, ...] = ()
    """Inputs that affect the whole output (INDIRECT JOIN/FILTER/GROUP_BY/SORT)."""
    inputs: tuple[str, ...] = ()
    """Datasets read, sorted."""
    gaps: list[str] = field(default_factory=list)
    """What could not be followed; empty when the lineage is complete."""
    dialect: str = "duckdb"

    @property
    def complete(self) -> bool:
        """No gaps."""
        return not self.gaps

    def column(self, name: str) -> ColumnLineage:
        """One output column's lineage (case-insensitive)."""
        low = name.lower()
        for n, c in self.columns.items():
            if n.lower() == low:
                return c
        raise KeyError(f"{name!r} is not an output column; outputs are {', '.join(self.columns)}")

    def dataset_subtypes(self, dataset: str, field: str) -> set[str]:
        """Dataset-level (INDIRECT) subtypes from ``dataset.field``."""
        return {
            t.subtype for f in self.dataset if f.dataset == dataset and f.field == field
            for t in f.transformations
        }

    def input_fields(self) -> dict[str, set[str]]:
        """Every input field used anywhere, by dataset."""
        out: dict[str, set[str]] = {}
        for f in (*self.dataset, *(i for c in self.columns.values() for i in c.inputs)):
            out.setdefault(f.dataset, set()).add(f.field)
        return out


# -- extraction ------------------------------------------------------------------------
Refs = dict[tuple[str, str], set[Transformation]]


@dataclass(slots=True)
class _ScopeLineage:
    names: list[str]
    columns: list[Refs]
    indirect: Refs


def _merge(into: Refs, refs: Refs, mode: Transformation | None = None) -> None:
    for key, ts in refs.items():
        dst = into.setdefault(key, set())
        if mode is None:
            dst |= ts
        else:
            dst.update(_compose(mode, t) for t in ts)


class _Walker:
    def __init__(self, datasets: Mapping[str, str], fields: Mapping[str, Mapping[str, str]],
                 gaps: list[str]) -> None:
        self.datasets = datasets  # lower-case logical name -> catalogue spelling
        self.fields = fields  # catalogue dataset -> lower-case field -> catalogue spelling
        self.gaps = gaps
        self.read: set[str] = set()
        self._memo: dict[int, _ScopeLineage] = {}
        self._children: dict[int, Scope] = {}

    def gap(self, msg: str) -> None:
        if msg not in self.gaps:
            self.gaps.append(msg)

    # scopes ------------------------------------------------------------------------------
    def analyse(self, scope: Scope) -> _ScopeLineage:
        key = id(scope.expression)
        got = self._memo.get(key)
        if got is not None:
            return got
        for child in (*scope.subquery_scopes, *scope.set_operation_scopes, *scope.derived_table_scopes,
                      *scope.cte_scopes):
            self._children[id(child.expression)] = child
        node = scope.expression
        if isinstance(node, exp.SetOperation):
            out = self._set_operation(scope, node)
        elif isinstance(node, exp.Select):
            out = self._select(scope, node)
        else:
            self.gap(f"cannot follow {node.key.upper()} ({_shown(node)[:80]})")
            out = _ScopeLineage([], [], {})
        self._memo[key] = out
        return out

    def _set_operation(self, scope: Scope, node: exp.SetOperation) -> _ScopeLineage:
        left, right = (self.analyse(s) for s in scope.set_operation_scopes[:2])
        if len(left.columns) != len(right.columns):
            self.gap(f"{node.key.upper()} branches have {len(left.columns)} and {len(right.columns)} columns")
        indirect: Refs = {}
        _merge(indirect, left.indirect)
        _merge(indirect, right.indirect)
        columns = [dict((k, set(v)) for k, v in c.items()) for c in left.columns]
        if isinstance(node, exp.Except):
            # Rows of the right branch only remove rows: every input there filters.
            for c in right.columns:
                _merge(indirect, c, FILTER)
        else:
            for i, c in enumerate(right.columns[: len(columns)]):
                _merge(columns[i], c)
        out = _ScopeLineage(list(left.names), columns, indirect)
        order = node.args.get("order")
        if order is not None:
            for col in order.find_all(exp.Column):
                refs = self._output_ref(out, col)
                if refs is None:
                    self.gap(f"ORDER BY {_shown(col)} of a set operation names no output column")
                else:
                    _merge(out.indirect, refs, SORT)
        return out

    def _select(self, scope: Scope, node: exp.Select) -> _ScopeLineage:
        indirect: Refs = {}
        for name, source in scope.selected_sources.items():
            src = source[1]
            if isinstance(src, Scope):
                _merge(indirect, self.analyse(src).indirect)
            elif isinstance(src, exp.Table):
                self._dataset_of(src, name)
            else:
                self.gap(f"source {name!r} ({_shown(src)[:60]}) is not a dataset; "
                         "columns read from it have no lineage")
        names: list[str] = []
        columns: list[Refs] = []
        for proj in node.expressions:
            refs: Refs = {}
            if isinstance(proj, exp.Star) or (isinstance(proj, exp.Column) and proj.is_star):
                self.gap(f"cannot expand {_shown(proj)}: a source has no known schema")
                continue
            inner = proj.unalias()
            self._collect(scope, inner, IDENTITY if isinstance(inner, exp.Column) else TRANSFORM, refs)
            names.append(proj.alias_or_name)
            columns.append(refs)
        out = _ScopeLineage(names, columns, indirect)
        for join in node.args.get("joins") or ():
            for key in ("on", "using"):
                if join.args.get(key) is not None:
                    self._collect(scope, join.args[key], JOIN, indirect)
        where = node.args.get("where")
        if where is not None:
            # Comma joins put their join conditions in WHERE: a comparison between columns of
            # two different sources of this scope is a join, anything else a filter.
            for conj in where.this.flatten() if isinstance(where.this, exp.And) else [where.this]:
                self._collect(scope, conj, JOIN if _is_join_predicate(conj) else FILTER, indirect)
        for key, mode in (("having", FILTER), ("qualify", FILTER), ("group", GROUP_BY)):
            clause = node.args.get(key)
            if clause is not None:
                self._collect(scope, clause, mode, indirect)
        order = node.args.get("order")
        if order is not None:
            self._collect(scope, order, SORT, indirect, outputs=out)
        return out

    # expressions -------------------------------------------------------------------------
    def _collect(self, scope: Scope, node: exp.Expression, mode: Transformation, acc: Refs,
                 outputs: _ScopeLineage | None = None) -> None:
        if isinstance(node, exp.Column):
            refs = self._resolve(scope, node, outputs)
            if refs:
                _merge(acc, refs, mode)
            return
        if isinstance(node, exp.Query) and id(node) in self._children:
            child = self.analyse(self._children[id(node)])
            sub_mode = _direct(mode)
            if not isinstance(node.parent, exp.Exists) and not (
                isinstance(node.parent, exp.Subquery) and isinstance(node.parent.parent, exp.Exists)
            ):
                for c in child.columns:
                    _merge(acc, c, sub_mode)
            # What filters, joins or groups inside a subquery shapes the value it yields.
            _merge(acc, child.indirect, mode if mode.type == INDIRECT else None)
            return
        if isinstance(node, exp.Window):
            self._collect(scope, node.this, mode, acc, outputs)
            wmode = mode if mode.type == INDIRECT else WINDOW
            for part in node.args.get("partition_by") or ():
                self._collect(scope, part, wmode, acc, outputs)
            if node.args.get("order") is not None:
                self._collect(scope, node.args["order"], wmode, acc, outputs)
            return
        if isinstance(node, exp.AggFunc) and not isinstance(node, _VALUE_FUNCTIONS):
            amode = mode if mode.type == INDIRECT else _compose(AGGREGATE, mode)
            for child in node.iter_expressions():
                self._collect(scope, child, amode, acc, outputs)
            return
        if isinstance(node, exp.Case):
            vmode = _direct(mode)
            cmode = mode if mode.type == INDIRECT else CONDITIONAL
            if node.this is not None:
                self._collect(scope, node.this, cmode, acc, outputs)
            for branch in node.args.get("ifs") or ():
                self._collect(scope, branch.this, cmode, acc, outputs)
                self._collect(scope, branch.args["true"], vmode, acc, outputs)
            if node.args.get("default") is not None:
                self._collect(scope, node.args["default"], vmode, acc, outputs)
            return
        if isinstance(node, exp.If):
            vmode = _direct(mode)
            self._collect(scope, node.this, mode if mode.type == INDIRECT else CONDITIONAL, acc, outputs)
            for key in ("true", "false"):
                if node.args.get(key) is not None:
                    self._collect(scope, node.args[key], vmode, acc, outputs)
            return
        if isinstance(node, exp.Func) and _is_masking(node) and mode.type == DIRECT:
            mode = Transformation(DIRECT, _direct(mode).subtype, True)
        elif not isinstance(node, (exp.Paren, exp.Alias, exp.Ordered, exp.Order, exp.Group,
                                   exp.Where, exp.Having, exp.Qualify, exp.Subquery)):
            mode = _direct(mode)
        for child in node.iter_expressions():
            self._collect(scope, child, mode, acc, outputs)

    def _resolve(self, scope: Scope, col: exp.Column, outputs: _ScopeLineage | None) -> Refs | None:
        if col.is_star:
            self.gap(f"cannot expand {_shown(col)}: a source has no known schema")
            return None
        table = col.table
        if not table:
            if outputs is not None:
                refs = self._output_ref(outputs, col)
                if refs is not None:
                    return refs
            sources = [s for s in scope.selected_sources.values()]
            if len(sources) == 1 and isinstance(sources[0][1], exp.Table):
                table = next(iter(scope.selected_sources))
                self.gap(f"column {col.name!r} was assumed to come from {self._name(sources[0][1])} "
                         "(its schema is unknown)")
            else:
                self.gap(f"column {_shown(col)!r} could not be resolved to a source")
                return None
        s: Scope | None = scope
        while s is not None:
            src = s.sources.get(table)
            if src is not None:
                if isinstance(src, exp.Table):
                    ds = self._dataset_of(src, table)
                    if ds is None:
                        return None
                    return {(ds, self._field(ds, col.name)): {IDENTITY}}
                if isinstance(src, Scope):
                    child = self.analyse(src)
                    low = col.name.lower()
                    for n, refs in zip(child.names, child.columns, strict=False):
                        if n.lower() == low:
                            return refs
                    self.gap(f"column {col.name!r} is not an output of {table!r}")
                    return None
                break
            s = s.parent
        self.gap(f"column {_shown(col)!r} comes from {table!r}, which is not a dataset "
                 "or a query Headwater can follow")
        return None

    @staticmethod
    def _output_ref(out: _ScopeLineage, col: exp.Column) -> Refs | None:
        if col.table:
            return None
        low = col.name.lower()
        for n, refs in zip(out.names, out.columns, strict=False):
            if n.lower() == low:
                return refs
        return None

    def _name(self, table: exp.Table) -> str:
        parts = [p for p in (table.catalog, table.db, table.name) if p]
        return ".".join(parts)

    def _dataset_of(self, table: exp.Table, alias: str) -> str | None:
        if not isinstance(table.this, exp.Identifier):
            self.gap(f"source {alias!r} ({_shown(table)[:60]}) is a table function, "
                     "not a dataset; columns read from it have no lineage")
            return None
        name = self._name(table)
        ds = self.datasets.get(name.lower())
        if ds is None:
            ds = name
            self.gap(f"dataset {name} has no known schema; its columns are taken by name")
        self.read.add(ds)
        return ds

    def _field(self, dataset: str, name: str) -> str:
        return self.fields.get(dataset, {}).get(name.lower(), name)


# Window functions sqlglot files under AggFunc that pick one row's value rather than combine rows.
_VALUE_FUNCTIONS = tuple(
    getattr(exp, n) for n in ("Lag", "Lead", "FirstValue", "LastValue", "NthValue", "AnyValue")
    if hasattr(exp, n)
)

_COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.NullSafeEQ)


def _is_join_predicate(node: exp.Expression) -> bool:
    if not isinstance(node, _COMPARISONS) or node.find(exp.Query) is not None:
        return False
    left = {c.table for c in node.left.find_all(exp.Column)}
    right = {c.table for c in node.right.find_all(exp.Column)}
    return bool(left) and bool(right) and "" not in left | right and not left & right


def _is_masking(node: exp.Func) -> bool:
    if isinstance(node, (exp.MD5, exp.SHA, exp.SHA2)):
        return True
    name = node.name if isinstance(node, exp.Anonymous) else node.sql_name()
    return name.lower() in _MASKING_FUNCTIONS


# -- entry point -----------------------------------------------------------------------
def _table_names(tree: exp.Expression) -> list[str]:
    ctes = {c.alias_or_name.lower() for c in tree.find_all(exp.CTE)}
    names = []
    for t in tree.find_all(exp.Table):
        if not isinstance(t.this, exp.Identifier):
            continue
        if not t.db and t.name.lower() in ctes:
            continue
        names.append(".".join(p for p in (t.catalog, t.db, t.name) if p))
    return names


def _schema_for(names: Iterable[str], schema: SchemaLike) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    if callable(schema):
        for n in dict.fromkeys(names):
            got = schema(n)
            if got is None:
                continue
            if hasattr(got, "columns") and hasattr(got, "name"):
                # A catalog Dataset: its name is the canonical spelling.
                out[got.name] = {c.name: c.type for c in got.columns}
            else:
                out[n] = dict(got)
        return out
    by_lower = {k.lower(): k for k in schema}
    for n in dict.fromkeys(names):
        key = by_lower.get(n.lower())
        if key is not None:
            out[key] = dict(schema[key])
    return out


def _sqlglot_schema(found: Mapping[str, Mapping[str, str]]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for name, cols in found.items():
        parts = name.split(".")
        node = nested
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        # qualify() only needs the names; types are reported from the caller's schema.
        node[parts[-1]] = {c: "UNKNOWN" for c in cols}
    depth = {len(n.split(".")) for n in found}
    if len(depth) > 1:
        raise InvalidInput("schema names mix 2- and 3-part dataset names; name datasets as <store>.<table>")
    return nested


def _parse(sql: str, dialect: str) -> exp.Expression:
    if not sql or not sql.strip():
        raise QueryParseError("empty statement")
    try:
        statements = [s for s in sqlglot.parse(sql, read=dialect) if s is not None]
    except SqlglotError as err:
        raise QueryParseError(f"SQL does not parse: {str(err).splitlines()[0]}") from None
    if len(statements) != 1:
        raise InvalidInput(f"column lineage takes one statement ({len(statements)} given)")
    return statements[0]


def column_lineage(
    sql: str,
    *,
    schema: SchemaLike,
    dialect: str = "duckdb",
    target: str | None = None,
) -> LineageResult:
    """Column lineage of ``INSERT INTO t SELECT``, ``CREATE TABLE t AS SELECT`` or a query.

    ``schema`` gives the columns of the datasets read (and of the target, to name the columns
    of an ``INSERT`` without a column list). ``target`` names the dataset a plain query's result
    is written to (an SDK write of a query result); for INSERT/CTAS it defaults to the table the
    statement writes. Raises ``QueryParseError`` only when the SQL does not parse; anything else
    it cannot follow is reported in ``gaps``.
    """
    tree = _parse(sql, dialect)
    gaps: list[str] = []
    statement = tree.key.upper()
    query: exp.Expression | None
    target_cols: list[str] | None = None
    if isinstance(tree, exp.Insert):
        statement = "INSERT"
        query = tree.expression
        dest = tree.this
        if isinstance(dest, exp.Schema):
            target_cols = [c.name for c in dest.expressions]
            dest = dest.this
        target = target or _table_name(dest)
        if tree.args.get("with_") is not None and isinstance(query, exp.Query):
            query.set("with_", tree.args["with_"])
        if tree.args.get("by_name"):
            target_cols = None
    elif isinstance(tree, exp.Create) and isinstance(tree.expression, exp.Query):
        statement = "CREATE TABLE AS" if tree.kind in (None, "TABLE") else f"CREATE {tree.kind} AS"
        query = tree.expression
        dest = tree.this
        if isinstance(dest, exp.Schema):
            target_cols = [c.name for c in dest.expressions]
            dest = dest.this
        target = target or _table_name(dest)
    elif isinstance(tree, exp.Query):
        statement = "SELECT"
        query = tree
    else:
        query = None
    result = LineageResult(sql=sql, statement=statement, target=target, gaps=gaps, dialect=dialect)
    if query is None or not isinstance(query, exp.Query):
        what = "VALUES" if isinstance(query, exp.Values) else statement
        if what != "VALUES":
            gaps.append(f"{what} statements are not followed; no column lineage was derived")
        return result
    names = _table_names(query)
    found = _schema_for(names + ([target] if target else []), schema)
    target_schema = None
    if target is not None:
        key = next((k for k in found if k.lower() == target.lower()), None)
        if key is not None:
            target_schema = found[key]
            result.target = key
            if key.lower() not in {n.lower() for n in names}:
                del found[key]
    try:
        qualified = qualify(
            query, schema=_sqlglot_schema(found), dialect=dialect, quote_identifiers=False,
            validate_qualify_columns=False, expand_stars=True, identify=False,
        )
        root = build_scope(qualified)
    except SqlglotError as err:
        gaps.append(f"cannot resolve the statement against its schema: {str(err).splitlines()[0]}")
        return result
    if root is None:
        gaps.append("the statement has no query to follow")
        return result
    walker = _Walker(
        {k.lower(): k for k in found},
        {k: {c.lower(): c for c in cols} for k, cols in found.items()},
        gaps,
    )
    top = walker.analyse(root)
    out_names = list(top.names)
    if target_cols is None and statement == "INSERT" and target_schema:
        target_cols = list(target_schema)
    if target_cols is not None:
        if len(target_cols) != len(out_names):
            gaps.append(f"{len(out_names)} columns are written into {len(target_cols)} target columns")
        out_names = target_cols[: len(out_names)] + out_names[len(target_cols):]
    result.columns = {
        name: ColumnLineage(name, _fields(refs)) for name, refs in zip(out_names, top.columns, strict=False)
    }
    result.dataset = _fields(top.indirect)
    result.inputs = tuple(sorted(walker.read))
    return result


def _fields(refs: Refs) -> tuple[InputField, ...]:
    return tuple(
        InputField(ds, f, tuple(sorted(ts))) for (ds, f), ts in sorted(refs.items())
    )


def _table_name(node: exp.Expression) -> str | None:
    if isinstance(node, exp.Table):
        return ".".join(p for p in (node.catalog, node.db, node.name) if p)
    return None


def _shown(node: exp.Expression) -> str:
    """``node`` as SQL for a gap message, without its literals (gaps reach lineage facets)."""
    return strip_literals(node).sql(dialect="duckdb")
