"""Mask strategies as sqlglot expressions (DuckDB dialect, transpiled per store by the planner)."""

from __future__ import annotations

from collections.abc import Callable

import sqlglot
from sqlglot import exp

from headwater.catalog import CatalogColumn

__all__ = ["PORTABLE", "REDACT_PII_FUNCTION", "mask_expression", "null_of", "sql_type"]

PORTABLE = {
    "duckdb": frozenset({"none", "null", "redact", "last4", "email_domain", "year", "hash", "tokenise", "sql",
                         "redact_pii"}),
    "snowflake": frozenset({"none", "null", "redact", "last4", "email_domain", "year", "hash", "tokenise", "sql"}),
    "postgres": frozenset({"none", "null", "redact", "last4", "email_domain", "year"}),
    "sqlite": frozenset({"none", "null", "redact", "last4", "email_domain"}),
}
"""Strategies whose expression runs natively in each store dialect. A scan whose masks are not
all portable to its store must be evaluated in DuckDB (federated): SQLite has no SHA-256 nor
EXTRACT, and sqlglot renders ``sha256(text)`` for Postgres, which only hashes ``bytea``.
``redact_pii`` is a vectorised Python function registered on every DuckDB connection
(:func:`headwater.stores.duckdb.new_connection`), so it runs wherever DuckDB evaluates."""

KeyParam = Callable[[str], exp.Expression]

REDACT_PII_FUNCTION = "hw_redact_pii"
"""The DuckDB function behind the ``redact_pii`` mask (:func:`headwater.pii.redact_pii`)."""


def sql_type(arrow_type: str) -> exp.DataType:
    """The SQL type for an Arrow type name, so ``null`` keeps the column's type."""
    t = arrow_type.lower()
    if t.startswith(("int", "uint")):
        name = "BIGINT"
    elif t in ("double", "float", "halffloat", "float64", "float32"):
        name = "DOUBLE"
    elif t.startswith("decimal"):
        name = "DECIMAL"
    elif t in ("bool", "boolean"):
        name = "BOOLEAN"
    elif t.startswith("timestamp"):
        name = "TIMESTAMP"
    elif t.startswith("date"):
        name = "DATE"
    elif "binary" in t:
        name = "BLOB"
    else:
        name = "VARCHAR"
    return _built(name)


_BUILT: dict[str, exp.DataType] = {}


def _built(name: str) -> exp.DataType:
    """``exp.DataType.build(name)``, parsed once per name (a fresh copy each call)."""
    built = _BUILT.get(name)
    if built is None:
        built = _BUILT.setdefault(name, exp.DataType.build(name))
    return built.copy()


def null_of(column: CatalogColumn) -> exp.Expression:
    """A NULL of the column's type."""
    return exp.Cast(this=exp.Null(), to=sql_type(column.type))


def _is_text(column: CatalogColumn) -> bool:
    t = column.type.lower()
    return t in ("string", "large_string", "utf8", "large_utf8", "string_view") or t.startswith("str")


def _text(col: exp.Expression) -> exp.Expression:
    return exp.Cast(this=col.copy(), to=_built("VARCHAR"))


def _case_not_null(col: exp.Expression, then: exp.Expression) -> exp.Expression:
    return exp.Case(ifs=[exp.If(this=exp.Is(this=col.copy(), expression=exp.Null()), true=exp.Null())],
                    default=then)


def mask_expression(
    treatment: str,
    col: exp.Expression,
    column: CatalogColumn,
    key: KeyParam,
    sql: str | None = None,
) -> exp.Expression:
    """The expression that replaces ``col`` (a raw base column) under ``treatment``.

    ``key(name)`` returns the parameter marker carrying a derived key; keys are never inlined.
    """
    if treatment == "none":
        return col.copy()
    if treatment in ("null", "deny"):
        return null_of(column)
    if treatment == "redact":
        if not _is_text(column):
            return null_of(column)
        return _case_not_null(col, exp.Literal.string("****"))
    if treatment == "redact_pii":
        if not _is_text(column):
            return null_of(column)
        return exp.Anonymous(this=REDACT_PII_FUNCTION, expressions=[col.copy()])
    if treatment == "last4":
        v = _text(col)
        length = exp.Length(this=v.copy())
        tail = exp.Substring(this=v.copy(), start=exp.Sub(this=length.copy(), expression=exp.Literal.number(3)))
        return exp.Case(
            ifs=[
                exp.If(this=exp.Is(this=col.copy(), expression=exp.Null()), true=exp.Null()),
                exp.If(this=exp.LTE(this=length, expression=exp.Literal.number(4)),
                       true=exp.Literal.string("****")),
            ],
            default=exp.DPipe(this=exp.Literal.string("****"), expression=tail, safe=True),
        )
    if treatment == "email_domain":
        v = _text(col)
        at = exp.StrPosition(this=v.copy(), substr=exp.Literal.string("@"))
        domain = exp.Substring(this=v.copy(), start=exp.Add(this=at.copy(), expression=exp.Literal.number(1)))
        return exp.Case(
            ifs=[
                exp.If(this=exp.Is(this=col.copy(), expression=exp.Null()), true=exp.Null()),
                exp.If(this=exp.GT(this=at, expression=exp.Literal.number(0)),
                       true=exp.DPipe(this=exp.Literal.string("***@"), expression=domain, safe=True)),
            ],
            default=exp.Literal.string("****"),
        )
    if treatment == "year":
        t = column.type.lower()
        src = col.copy() if t.startswith(("date", "timestamp")) else exp.Cast(
            this=col.copy(), to=_built("DATE"))
        return exp.Extract(this=exp.var("YEAR"), expression=src)
    if treatment == "hash":
        # Nested keyed SHA-256: sha256(k_out || sha256(k_in || v)) over hex text. The outer input
        # has a fixed-length prefix and a fixed-length digest, so length extension does not
        # apply; without the key nobody can hash guesses to match masked values.
        inner = exp.SHA2(this=exp.DPipe(this=key("hash_in"), expression=_text(col), safe=True),
                         length=exp.Literal.number(256))
        return exp.SHA2(this=exp.DPipe(this=key("hash_out"), expression=inner, safe=True),
                        length=exp.Literal.number(256))
    if treatment == "tokenise":
        digest = exp.SHA2(this=exp.DPipe(this=key("token"), expression=_text(col), safe=True),
                          length=exp.Literal.number(256))
        token = exp.Left(this=digest, expression=exp.Literal.number(24))
        return exp.DPipe(this=exp.Literal.string("tok_"), expression=token, safe=True)
    if treatment == "sql":
        assert sql is not None
        tree = sqlglot.parse_one(sql.replace("{col}", "hw_col"), read="duckdb")

        def swap(node: exp.Expression) -> exp.Expression:
            if isinstance(node, exp.Column) and node.name == "hw_col" and not node.table:
                return col.copy()
            return node

        return exp.paren(tree.transform(swap), copy=False)
    raise ValueError(f"unknown mask treatment {treatment!r}")
