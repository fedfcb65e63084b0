"""The retention policy file: YAML with line-precise errors, validated by pydantic models.

::

    version: 1
    defaults:
      archive: lake              # archive deleted rows to this Parquet store unless a rule says otherwise
    rules:
      - dataset: app.orders      # a glob over catalog names
        by: ordered_at           # the timestamp column ages are measured on
        keep: 365d               # delete rows older than this ...
        archive: lake            # ... after copying them to lake:archive/app.orders/...
      - tag: "pii.*"             # columns carrying a matching catalog tag
        datasets: "app.*"
        by: created_at
        null_after: 30d          # or tokenise_after: 30d (the masking policy's token)
    platform:                    # the platform's own logs
      dead_letters: 30d
      lineage_events: 90d
      slo_buckets: 60d
      bus_log: 7d
      audit: 365d

Durations are ``<n>s|m|h|d|w`` (a bare number is days). Every error is a
:class:`~headwater.errors.PolicyError` whose message starts with ``<source>:<line>:``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from headwater._yaml import compose, construct_scalar
from headwater.errors import PolicyError

__all__ = [
    "PlatformLogs", "RetentionPolicy", "RetentionRule", "load_retention", "parse_duration", "read_retention_file",
]

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw]?)\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks", "": "days"}


def parse_duration(value: Any) -> dt.timedelta:
    """``"90d"`` -> ``timedelta(days=90)``; ``s``, ``m``, ``h``, ``d``, ``w``; a bare number is days."""
    if isinstance(value, dt.timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("a duration is <number><unit>, e.g. 90d, 12h, 2w")
    m = _DURATION.match(str(value))
    if m is None:
        raise ValueError(f"a duration is <number><unit>, e.g. 90d, 12h, 2w; got {value!r}")
    delta = dt.timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
    if delta <= dt.timedelta(0):
        raise ValueError("a duration must be positive")
    return delta


Duration = Annotated[dt.timedelta, BeforeValidator(parse_duration)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetentionRule(_Strict):
    """One rule: which datasets (and columns) it covers and what happens to old rows."""

    dataset: str | None = None
    """Glob over qualified catalog names (``app.orders``, ``warehouse.*``)."""
    datasets: str | None = None
    """Same as ``dataset`` (reads better next to ``tag``)."""
    tag: str | None = None
    """Glob over column tags (``pii.*``): the rule covers datasets with such a column."""
    columns: tuple[str, ...] = ()
    """Columns for ``null_after``/``tokenise_after`` (default: the columns ``tag`` matches)."""
    by: str | None = None
    """Timestamp or date column ages are measured on (default: the first one in the table)."""
    keep: Duration | None = None
    """Delete rows older than this."""
    null_after: Duration | None = None
    """Set the covered columns to NULL in rows older than this."""
    tokenise_after: Duration | None = None
    """Replace the covered columns by the masking policy's ``tokenise`` token in rows older than this."""
    archive: str | None = None
    """Parquet store to copy rows to before ``keep`` deletes them (``""``: no archive)."""

    @model_validator(mode="after")
    def _check(self) -> RetentionRule:
        if self.dataset is not None and self.datasets is not None:
            raise ValueError("give either dataset or datasets, not both")
        if self.dataset is None and self.datasets is None and self.tag is None:
            raise ValueError("a rule needs dataset (a glob over catalog names) or tag")
        if self.keep is None and self.null_after is None and self.tokenise_after is None:
            raise ValueError("a rule needs keep, null_after or tokenise_after")
        if self.null_after is not None and self.tokenise_after is not None:
            raise ValueError("null_after and tokenise_after exclude each other")
        if (self.null_after or self.tokenise_after) and not (self.columns or self.tag):
            raise ValueError("null_after/tokenise_after need columns or a tag to choose the columns")
        return self

    @property
    def pattern(self) -> str:
        """The dataset glob this rule covers (``*`` when only a tag is given)."""
        return self.dataset or self.datasets or "*"

    @property
    def column_action(self) -> tuple[str, dt.timedelta] | None:
        """``("null" | "tokenise", age)`` or None."""
        if self.null_after is not None:
            return "null", self.null_after
        if self.tokenise_after is not None:
            return "tokenise", self.tokenise_after
        return None


class PlatformLogs(_Strict):
    """Ages after which the platform's own records go (unset: kept)."""

    dead_letters: Duration | None = None
    lineage_events: Duration | None = None
    slo_buckets: Duration | None = None
    bus_log: Duration | None = None
    audit: Duration | None = None
    """Whole days; runs the audit log's own retention (a signed anchor keeps the chain verifiable)."""

    @field_validator("audit")
    @classmethod
    def _whole_days(cls, value: dt.timedelta | None) -> dt.timedelta | None:
        if value is not None and value.total_seconds() % 86400:
            raise ValueError("audit retention is a whole number of days (e.g. 365d)")
        return value


class Defaults(_Strict):
    """Settings every rule inherits."""

    archive: str | None = None
    by: str | None = None


class RetentionPolicy(_Strict):
    """A whole retention file."""

    version: Literal[1] = 1
    defaults: Defaults = Field(default_factory=Defaults)
    rules: tuple[RetentionRule, ...] = ()
    platform: PlatformLogs = Field(default_factory=PlatformLogs)
    source: str = "<retention>"
    lines: Mapping[str, int] = Field(default_factory=dict, exclude=True, repr=False)
    """Line of each rule (``rules[3]`` -> 17), for messages."""

    def rule_line(self, index: int) -> int:
        """The line where rule ``index`` starts."""
        return self.lines.get(f"rules[{index}]", 1)


# -- loading ---------------------------------------------------------------------------


def _to_py(node: yaml.Node, path: tuple[Any, ...], lines: dict[tuple[Any, ...], int], source: str) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for knode, vnode in node.value:
            if not isinstance(knode, yaml.ScalarNode):
                raise _error(source, knode.start_mark.line + 1, "", "keys must be plain names")
            key = str(construct_scalar(knode))
            if key in out:
                raise _error(source, knode.start_mark.line + 1, _where(path), f"duplicate key {key!r}")
            lines[path + (key,)] = knode.start_mark.line + 1
            out[key] = _to_py(vnode, path + (key,), lines, source)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_to_py(v, path + (i,), lines, source) for i, v in enumerate(node.value)]
    return construct_scalar(node)


def _where(path: tuple[Any, ...]) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _error(source: str, line: int, where: str, message: str) -> PolicyError:
    return PolicyError(f"{source}:{line}: {where + ': ' if where else ''}{message}",
                       line=line, source=source, path=where)


def _line(lines: Mapping[tuple[Any, ...], int], path: tuple[Any, ...]) -> int:
    while path and path not in lines:
        path = path[:-1]
    return lines.get(path, 1)


def load_retention(text: str, *, source: str = "<retention>") -> RetentionPolicy:
    """Parse and validate a retention document; :class:`PolicyError` names the line on failure."""
    try:
        node = compose(text)  # within the limits of headwater._yaml
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark else 1
        raise _error(source, line, "", f"not valid YAML: {err.problem or err.context}") from None
    except yaml.YAMLError:
        raise _error(source, 1, "", "not valid YAML") from None
    if node is None:
        raise _error(source, 1, "", "empty retention document (start with `version: 1`)")
    lines: dict[tuple[Any, ...], int] = {}
    try:
        data = _to_py(node, (), lines, source)
    except yaml.MarkedYAMLError as err:
        line = err.problem_mark.line + 1 if err.problem_mark else 1
        raise _error(source, line, "", f"not valid YAML: {err.problem}") from None
    if not isinstance(data, dict):
        raise _error(source, 1, "", "a retention document is a mapping with version, rules, platform")
    for key in ("source", "lines"):
        if key in data:
            raise _error(source, _line(lines, (key,)), key, "unknown key")
    rule_lines = {f"rules[{i}]": _line(lines, ("rules", i)) for i in range(len(data.get("rules") or []))
                  if isinstance(data.get("rules"), list)}
    try:
        return RetentionPolicy.model_validate({**data, "source": source, "lines": rule_lines})
    except pydantic.ValidationError as err:
        first = err.errors()[0]
        loc = tuple(first["loc"])
        # a model-level check names the model, not a field: point at the rule itself
        loc = tuple(p for p in loc if not (isinstance(p, str) and p.startswith("function-")))
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            message = f"unknown key (allowed: {_allowed(loc)})"
        elif first["type"] == "missing":
            message = "required"
        raise _error(source, _line(lines, loc), _where(loc), message) from None


def _allowed(loc: tuple[Any, ...]) -> str:
    model: type[BaseModel] = RetentionPolicy
    if loc[:1] == ("rules",):
        model = RetentionRule
    elif loc[:1] == ("platform",):
        model = PlatformLogs
    elif loc[:1] == ("defaults",):
        model = Defaults
    return ", ".join(n for n in model.model_fields if n not in ("source", "lines"))


def read_retention_file(path: str | Path) -> RetentionPolicy:
    """Load a retention file from disk (``PolicyError`` when missing or invalid)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PolicyError(f"{p}: no retention file (write one, or pass --file)", source=str(p), line=0) from None
    except (OSError, UnicodeDecodeError) as err:
        raise PolicyError(f"{p}: cannot read: {type(err).__name__}", source=str(p), line=0) from None
    return load_retention(text, source=str(p))
