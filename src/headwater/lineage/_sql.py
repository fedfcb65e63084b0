"""SQL in lineage without literals: what an SQL facet, an extraction error or a stored event may
hold.

Lineage is read by everyone who may see the datasets it names, so the SQL it records keeps the
statement's shape and drops its values (``WHERE ssn = '123-45-6789'`` becomes ``WHERE ssn = ?``).
:func:`scrub_sql` parses with sqlglot (in the facet's dialect when sqlglot knows it), replaces
every literal (strings of every kind, numbers, booleans, hex/bit/byte/raw/national strings) by a
placeholder and drops comments; the result is re-tokenised and must hold no literal token. What
does not parse (or still holds a literal) is rebuilt from sqlglot's tokens with literal tokens
replaced; what cannot even be tokenised goes through a lexical pass that removes quoted text
(backslash escapes and unterminated quotes included), dollar-quoted text and numbers. No path
returns a literal of the input.

:func:`scrub_event` applies this to an OpenLineage event in place: the job's ``sql`` facet, the
``extractionError`` run facet (tasks are SQL; messages quote SQL fragments) and the
``errorMessage`` run facet (messages and stack traces can quote values: quoted text goes and
PII spans are redacted).
"""

from __future__ import annotations

import re
from collections.abc import MutableMapping
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.tokens import TokenType

__all__ = ["scrub_event", "scrub_sql", "scrub_text", "sql_dialect", "strip_literals"]

_LITERALS = (exp.Literal, exp.Boolean, exp.BitString, exp.ByteString, exp.HexString, exp.National,
             exp.RawString, exp.UnicodeString)
_LITERAL_TOKENS = frozenset({
    TokenType.STRING, TokenType.NUMBER, TokenType.BIT_STRING, TokenType.HEX_STRING, TokenType.BYTE_STRING,
    TokenType.NATIONAL_RAW_STRING, TokenType.NATIONAL_STRING, TokenType.RAW_STRING, TokenType.HEREDOC_STRING,
    TokenType.UNICODE_STRING,
})
_DIALECT_ALIASES = {"postgresql": "postgres", "mssql": "tsql", "sqlserver": "tsql", "sparksql": "spark",
                    "ansi": "", "generic": "", "default": ""}
# Quoted text ('..' with '' or \' escapes, E'..', unterminated runs to the end), dollar quotes
# ($$..$$, $tag$..$tag$) and numbers: the last resort for text no tokenizer accepts.
_LEXICAL = re.compile(
    r"""'(?:[^'\\]|\\.|'')*(?:'|$)"""
    r"""|\$([A-Za-z_]\w*)?\$.*?(?:\$\1\$|$)"""
    r"""|(?<![\w$.])[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?""",
    re.DOTALL,
)
_QUOTED = re.compile(r"""'(?:[^'\\]|\\.|'')*(?:'|$)|"(?:[^"\\]|\\.|"")*(?:"|$)""", re.DOTALL)
_MAX_SQL = 1_000_000
"""Longer SQL is not parsed (a facet is not a place for megabytes of SQL); it is cut first."""


def sql_dialect(name: Any) -> str | None:
    """The sqlglot dialect for an OpenLineage ``dialect`` (None: sqlglot's default)."""
    if not isinstance(name, str) or not name.strip():
        return None
    key = name.strip().lower()
    key = _DIALECT_ALIASES.get(key, key)
    if not key:
        return None
    try:
        sqlglot.Dialect.get_or_raise(key)
    except (ValueError, KeyError):
        return None
    return key


def _strip(node: exp.Expression) -> exp.Expression:
    node.comments = None
    if isinstance(node, _LITERALS):
        return exp.Placeholder()
    if isinstance(node, exp.Neg) and isinstance(node.this, _LITERALS):
        return exp.Placeholder()
    return node


def strip_literals(tree: exp.Expression) -> exp.Expression:
    """A copy of ``tree`` with literals replaced by placeholders and comments removed."""
    return tree.transform(_strip, copy=True)


def _clean(text: str, dialect: str | None) -> bool:
    """Whether ``text`` tokenises with no literal token and no comment."""
    try:
        tokens = sqlglot.tokenize(text, read=dialect)
    except Exception:  # noqa: BLE001 - any tokenizer failure means "not provably clean"
        return False
    return not any(t.token_type in _LITERAL_TOKENS or t.comments for t in tokens)


def _from_tokens(text: str, dialect: str | None) -> str | None:
    try:
        tokens = sqlglot.tokenize(text, read=dialect)
    except Exception:  # noqa: BLE001 - the lexical pass takes over
        return None
    out = []
    for t in tokens:
        if t.token_type in _LITERAL_TOKENS:
            out.append("?")
        elif t.token_type is TokenType.IDENTIFIER:
            out.append('"' + t.text.replace('"', '""') + '"')
        else:
            out.append(t.text)
    return " ".join(out)


def scrub_sql(sql: str, dialect: str | None = None) -> str:
    """``sql`` with every literal replaced by a placeholder and comments removed.

    ``dialect`` is a sqlglot dialect name or an OpenLineage one (see :func:`sql_dialect`).
    """
    if not isinstance(sql, str):
        return ""
    d = sql_dialect(dialect)
    text = sql[:_MAX_SQL]
    if _clean(text, d):
        return text  # nothing to remove: the statement as written
    try:
        trees = [t for t in sqlglot.parse(text, read=d) if t is not None]
        out = "; ".join(strip_literals(t).sql(dialect=d) for t in trees)
        if _clean(out, d):
            return out
    except Exception:  # noqa: BLE001 - sqlglot raises several kinds; the token pass takes over
        pass
    rebuilt = _from_tokens(text, d)
    if rebuilt is not None and _clean(rebuilt, d):
        return rebuilt
    return " ".join(_LEXICAL.sub("?", text).split())


def scrub_text(text: Any) -> str:
    """A message that may quote SQL or values: quoted text becomes ``?`` and PII spans are
    redacted (``<SSN>``, ``<EMAIL>`` ...)."""
    if not isinstance(text, str):
        return ""
    out = _QUOTED.sub("?", text[:_MAX_SQL])
    if any(ch.isdigit() for ch in out) or "@" in out:
        from headwater.pii import redact_pii

        out = redact_pii(out) or ""
    return out


def scrub_event(event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Remove literals from the SQL an OpenLineage event carries (in place; returns it)."""
    job = event.get("job")
    facets = job.get("facets") if isinstance(job, MutableMapping) else None
    if isinstance(facets, MutableMapping):
        sql = facets.get("sql")
        if isinstance(sql, MutableMapping) and "query" in sql:
            sql["query"] = scrub_sql(sql["query"], sql.get("dialect"))
            dialect = sql.get("dialect")
        else:
            dialect = None
    else:
        dialect = None
    run = event.get("run")
    run_facets = run.get("facets") if isinstance(run, MutableMapping) else None
    if not isinstance(run_facets, MutableMapping):
        return event
    extraction = run_facets.get("extractionError")
    if isinstance(extraction, MutableMapping):
        for err in extraction.get("errors") or ():
            if not isinstance(err, MutableMapping):
                continue
            if "task" in err:
                err["task"] = scrub_sql(err["task"], dialect)
            if "errorMessage" in err:
                err["errorMessage"] = scrub_text(err["errorMessage"])
            if "stackTrace" in err:
                err["stackTrace"] = scrub_text(err["stackTrace"])
    error = run_facets.get("errorMessage")
    if isinstance(error, MutableMapping):
        for key in ("message", "stackTrace"):
            if key in error:
                error[key] = scrub_text(error[key])
    return event
