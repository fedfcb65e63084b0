"""Statement normalisation for the audit log: literals become ``?``, placeholders stay."""

from __future__ import annotations

import re

import sqlglot
from sqlglot import exp

__all__ = ["lexical", "normalise_sql"]

# Fallback for text sqlglot cannot parse: strings, dollar-quoted strings and numbers go.
_FALLBACK = re.compile(
    r"""'(?:[^']|'')*'?"""  # 'single-quoted' (an unterminated one runs to the end)
    r"""|\$\$.*?(?:\$\$|$)"""  # $$dollar quoted$$
    r"""|(?<![\w$.])[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?![\w.])""",
    re.DOTALL,
)


def lexical(sql: str) -> str:
    """``sql`` with quoted strings and numbers replaced by ``?`` without parsing it (for text
    that does not parse, or that a parser cannot take: too deep, too long)."""
    return " ".join(_FALLBACK.sub("?", sql).split())


def _strip(node: exp.Expression) -> exp.Expression:
    if isinstance(node, exp.Literal | exp.Boolean):
        return exp.Placeholder()
    if isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal):
        return exp.Placeholder()
    return node


def normalise_sql(sql: str | exp.Expression, *, dialect: str | None = None) -> str:
    """``sql`` with every literal (strings, numbers, booleans) replaced by ``?``.

    Placeholders (``?``, ``$1``, ``:name``, ``%(name)s``) and ``NULL`` are kept; identifiers
    are unchanged. Pass an already parsed sqlglot expression to skip parsing (it is not
    modified). Text that does not parse is still stripped of quoted strings and numbers by a
    lexical fallback, so a literal never reaches the audit log.
    """
    if isinstance(sql, exp.Expression):
        trees = [sql.copy()]
    else:
        try:
            trees = [t for t in sqlglot.parse(sql, read=dialect) if t is not None]
            return "; ".join(t.transform(_strip, copy=False).sql(dialect=dialect) for t in trees)
        except (sqlglot.errors.SqlglotError, RecursionError, ValueError):
            # does not parse, or too deep to parse (nested parentheses): strip it lexically
            return lexical(sql)
    try:
        return "; ".join(t.transform(_strip, copy=False).sql(dialect=dialect) for t in trees)
    except RecursionError:
        return "<statement nested too deeply to render>"
