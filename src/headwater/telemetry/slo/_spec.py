"""SLO specifications as code: the model and the YAML loader (in the style of Sloth).

A document holds the SLOs of one service::

    version: headwater/slo/v1          # optional
    service: headwater
    labels: {owner: data-platform}     # added to every exported rule
    window: 28d                        # default window of every SLO: 28d or 30d
    alerting:                          # defaults for every SLO (each key optional)
      min_events: auto                 # or an integer; see BurnRateRule.min_events
      burn_rates:                      # the SRE workbook's multi-window multi-burn-rate rules
        - {severity: page, long: 1h, short: 5m, factor: 14.4}
        - {severity: page, long: 6h, short: 30m, factor: 6}
        - {severity: ticket, long: 3d, short: 6h, factor: 1}
    slos:
      - name: query-latency
        objective: 99.5                # percent of good events
        description: Queries answer within 500 ms.
        sli:
          query_latency: {threshold_ms: 500}
        alerting:
          name: HeadwaterQueryLatency
          labels: {category: latency}
          annotations: {runbook: https://runbooks/query-latency}
          page_alert: {labels: {severity: critical}}
          ticket_alert: {labels: {severity: warning}}
      - name: orders-availability
        objective: 99.9
        sli:
          events:
            name: orders_api           # the series recorded with recorder.record("orders_api", ...)
            error_query: sum(rate(http_requests_total{code=~"5.."}[{{.window}}]))  # for export
            total_query: sum(rate(http_requests_total[{{.window}}]))

Built-in SLI kinds and the series their counts are kept under:

================  ==============================  ===============================================
kind              options                         good event
================  ==============================  ===============================================
query_latency     threshold_ms                    a query that took at most ``threshold_ms``
query_success     (none)                          a query that did not fail
pipeline_success  (none)                          a pipeline run that succeeded
event_freshness   threshold_ms                    an event delivered end to end within threshold
cdc_slot_lag      max_bytes                       a slot-lag sample of at most ``max_bytes``
events            name, error/good/total_query    whatever the caller records as good
================  ==============================  ===============================================

Any SLI may carry ``error_query``/``good_query`` and ``total_query`` (PromQL with Sloth's
``{{.window}}`` placeholder) to override what the Prometheus export measures.

Validation errors are :class:`~headwater.errors.ConfigError` whose message starts with
``<source>:<line>:`` and whose ``line`` and ``path`` attributes point at the offending node.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Iterable, Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any

import yaml

from headwater._yaml import compose_all, construct_scalar
from headwater.errors import ConfigError

__all__ = [
    "BUILTIN_SLI_KINDS",
    "DEFAULT_BURN_RATES",
    "SLI",
    "SLO",
    "AlertingSpec",
    "BurnRateRule",
    "format_duration",
    "load_slo_file",
    "load_slos",
    "parse_duration",
]

BUILTIN_SLI_KINDS: dict[str, str | None] = {
    "query_latency": "threshold_ms",
    "query_success": None,
    "pipeline_success": None,
    "event_freshness": "threshold_ms",
    "cdc_slot_lag": "max_bytes",
}
"""Built-in SLI kinds and the threshold option each takes (``None``: no threshold)."""

THRESHOLD_KINDS = frozenset(k for k, v in BUILTIN_SLI_KINDS.items() if v)
SEVERITIES = ("page", "ticket")
WINDOWS = {"28d": dt.timedelta(days=28), "30d": dt.timedelta(days=30)}

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> dt.timedelta:
    """A Prometheus-style duration (``5m``, ``1h``, ``3d``) as a timedelta."""
    m = _DURATION.match(str(text).strip())
    if not m or int(m.group(1)) <= 0:
        raise ValueError(f"not a duration like 5m, 1h or 3d: {text!r}")
    return dt.timedelta(seconds=int(m.group(1)) * _UNIT_S[m.group(2)])


def format_duration(delta: dt.timedelta) -> str:
    """The shortest Prometheus duration for ``delta`` (``3600s`` -> ``1h``)."""
    seconds = int(delta.total_seconds())
    for unit in ("d", "h", "m"):
        if seconds % _UNIT_S[unit] == 0:
            return f"{seconds // _UNIT_S[unit]}{unit}"
    return f"{seconds}s"


@dataclasses.dataclass(frozen=True)
class BurnRateRule:
    """One multi-window burn-rate condition of the SRE workbook.

    The condition holds when the error ratio over ``long`` *and* over ``short`` are both at or
    above ``factor`` times the error budget (``1 - objective``), and the long window saw at least
    ``min_events`` events. ``min_events=None`` means *auto*: the smallest count at which one bad
    event alone stays below the threshold, ``floor(1 / (factor * budget)) + 1``, so low traffic
    never pages on a single failure.
    """

    severity: str
    long: dt.timedelta
    short: dt.timedelta
    factor: float
    min_events: int | None = None

    @property
    def label(self) -> str:
        """``1h/5m@14.4x``: how alerts name the rule that triggered them."""
        return f"{format_duration(self.long)}/{format_duration(self.short)}@{self.factor:g}x"

    def threshold(self, objective: float) -> Fraction:
        """The error ratio at or above which this rule burns, exactly."""
        return Fraction(str(self.factor)) * error_budget(objective)

    def required_events(self, objective: float) -> int:
        """The minimum number of events the long window needs before this rule may fire."""
        if self.min_events is not None:
            return self.min_events
        threshold = self.threshold(objective)
        return int(1 / threshold) + 1 if threshold > 0 else 1


DEFAULT_BURN_RATES: tuple[BurnRateRule, ...] = (
    BurnRateRule("page", dt.timedelta(hours=1), dt.timedelta(minutes=5), 14.4),
    BurnRateRule("page", dt.timedelta(hours=6), dt.timedelta(minutes=30), 6.0),
    BurnRateRule("ticket", dt.timedelta(days=3), dt.timedelta(hours=6), 1.0),
)
"""The SRE workbook's defaults: page at 14.4x over 1h/5m and 6x over 6h/30m, ticket at 1x over
3d/6h."""


def error_budget(objective: float) -> Fraction:
    """``1 - objective/100`` as an exact fraction (99.9 -> 1/1000)."""
    return 1 - Fraction(str(objective)) / 100


@dataclasses.dataclass(frozen=True)
class SLI:
    """What an SLO measures: a kind, its threshold, and the series its counts live under."""

    kind: str
    """A built-in kind (``query_latency`` ...) or ``events``."""
    threshold: float | None = None
    """``threshold_ms`` or ``max_bytes`` for the threshold kinds."""
    name: str | None = None
    """For ``events``: the series name the caller records under."""
    error_query: str | None = None
    good_query: str | None = None
    total_query: str | None = None

    @property
    def series(self) -> str:
        """The key of this SLI's counters in the metadata store."""
        if self.kind == "events":
            return str(self.name)
        if self.kind in THRESHOLD_KINDS:
            return threshold_series(self.kind, float(self.threshold or 0))
        return self.kind


def threshold_series(kind: str, threshold: float) -> str:
    """``query_latency:500ms``: the series of a threshold kind at one threshold."""
    unit = "b" if BUILTIN_SLI_KINDS[kind] == "max_bytes" else "ms"
    return f"{kind}:{threshold:g}{unit}"


@dataclasses.dataclass(frozen=True)
class AlertingSpec:
    """Alert naming, labels and annotations (Sloth's ``alerting`` block) and burn-rate rules."""

    name: str | None = None
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    annotations: Mapping[str, str] = dataclasses.field(default_factory=dict)
    page_labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    page_annotations: Mapping[str, str] = dataclasses.field(default_factory=dict)
    ticket_labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    ticket_annotations: Mapping[str, str] = dataclasses.field(default_factory=dict)
    disabled: frozenset[str] = frozenset()
    """Severities switched off (``page_alert: {disable: true}``)."""
    burn_rates: tuple[BurnRateRule, ...] = DEFAULT_BURN_RATES

    def rules(self, severity: str) -> tuple[BurnRateRule, ...]:
        """The enabled burn-rate rules of one severity."""
        if severity in self.disabled:
            return ()
        return tuple(r for r in self.burn_rates if r.severity == severity)

    def labels_for(self, severity: str) -> dict[str, str]:
        """Common labels plus the severity's own."""
        extra = self.page_labels if severity == "page" else self.ticket_labels
        return {**self.labels, **extra}

    def annotations_for(self, severity: str) -> dict[str, str]:
        """Common annotations plus the severity's own."""
        extra = self.page_annotations if severity == "page" else self.ticket_annotations
        return {**self.annotations, **extra}


@dataclasses.dataclass(frozen=True)
class SLO:
    """One service level objective."""

    service: str
    name: str
    objective: float
    """Percent of good events, ``0 < objective < 100`` (``99.9``)."""
    sli: SLI
    window: dt.timedelta = WINDOWS["28d"]
    description: str = ""
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    alerting: AlertingSpec = dataclasses.field(default_factory=AlertingSpec)
    line: int = 0
    """Line of the SLO in its document (0 when built in code)."""

    @property
    def id(self) -> str:
        """``<service>-<name>``: the SLO's identity in the store and in exported rules."""
        return f"{self.service}-{self.name}"

    @property
    def budget(self) -> Fraction:
        """The error budget as a ratio of events (``1 - objective/100``)."""
        return error_budget(self.objective)

    @property
    def window_label(self) -> str:
        """``28d`` or ``30d``."""
        return format_duration(self.window)

    def severities(self) -> tuple[str, ...]:
        """The severities with at least one enabled rule."""
        return tuple(s for s in SEVERITIES if self.alerting.rules(s))


# -- loading -------------------------------------------------------------------------------
class _Doc:
    """Plain values plus the line of every node, keyed by path."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.lines: dict[tuple[Any, ...], int] = {}

    def error(self, path: tuple[Any, ...], message: str) -> ConfigError:
        line = self.line(path)
        where = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in path).replace(".[", "[")
        return ConfigError(
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
            key = str(construct_scalar(knode)) if isinstance(knode, yaml.ScalarNode) else None
            doc.lines[path + (key,)] = knode.start_mark.line + 1
            if key is None:
                raise doc.error(path + (key,), "keys must be plain names")
            if key in out:
                raise doc.error(path + (key,), "duplicate key")
            out[key] = _to_py(vnode, path + (key,), doc)
            doc.lines[path + (key,)] = knode.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_to_py(v, path + (i,), doc) for i, v in enumerate(node.value)]
    return construct_scalar(node)


def load_slo_file(path: str | Path) -> list[SLO]:
    """Load the SLOs of one YAML file (see :func:`load_slos`)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"cannot read SLO file {p}: {err.strerror}", source=str(p)) from None
    return load_slos(text, source=str(p))


def load_slos(text: str, *, source: str = "<slos>") -> list[SLO]:
    """Parse and validate an SLO document (several ``---`` documents are allowed).

    Raises :class:`~headwater.errors.ConfigError` naming the source and line on failure.
    """
    try:
        nodes = compose_all(text)  # within the limits of headwater._yaml
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark else 1
        raise ConfigError(f"{source}:{line}: not valid YAML: {err.problem or err.context}",
                          line=line, source=source, path="") from None
    except yaml.YAMLError:
        raise ConfigError(f"{source}:1: not valid YAML", line=1, source=source, path="") from None
    nodes = [n for n in nodes if n is not None]
    if not nodes:
        raise ConfigError(f"{source}:1: empty SLO document", line=1, source=source, path="")
    slos: list[SLO] = []
    for node in nodes:
        doc = _Doc(source)
        try:
            data = _to_py(node, (), doc)
        except yaml.MarkedYAMLError as err:
            line = err.problem_mark.line + 1 if err.problem_mark else 1
            raise ConfigError(f"{source}:{line}: not valid YAML: {err.problem}", line=line, source=source,
                              path="") from None
        slos.extend(_build(data, doc))
    seen: dict[str, int] = {}
    for slo in slos:
        if slo.id in seen:
            raise ConfigError(f"{source}:{slo.line}: SLO {slo.id!r} is defined twice (first on line {seen[slo.id]})",
                              line=slo.line, source=source, path=slo.id)
        seen[slo.id] = slo.line
    return slos


def _keys(doc: _Doc, path: tuple[Any, ...], data: Any, allowed: Iterable[str], what: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise doc.error(path, f"{what} must be a mapping")
    allowed = tuple(allowed)
    for key in data:
        if key not in allowed:
            raise doc.error(path + (key,), f"unknown key (expected one of: {', '.join(allowed)})")
    return data


def _name(doc: _Doc, path: tuple[Any, ...], value: Any, what: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise doc.error(path, f"{what} must be a name of letters, digits, '_', '-' or '.', got {value!r}")
    return value


def _str_map(doc: _Doc, path: tuple[Any, ...], value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise doc.error(path, "must be a mapping of names to strings")
    out: dict[str, str] = {}
    for k, v in value.items():
        if isinstance(v, dict | list) or v is None:
            raise doc.error(path + (k,), "must be a string")
        out[k] = v if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else str(v)
    return out


def _window(doc: _Doc, path: tuple[Any, ...], value: Any) -> dt.timedelta:
    if value not in WINDOWS:
        raise doc.error(path, f"window must be 28d or 30d, got {value!r}")
    return WINDOWS[value]


def _duration(doc: _Doc, path: tuple[Any, ...], value: Any) -> dt.timedelta:
    try:
        d = parse_duration(value)
    except ValueError as err:
        raise doc.error(path, str(err)) from None
    if d.total_seconds() % 60:
        raise doc.error(path, "burn-rate windows are whole minutes")
    return d


def _min_events(doc: _Doc, path: tuple[Any, ...], value: Any) -> int | None:
    if value is None or value == "auto":
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise doc.error(path, f"min_events must be 'auto' or a positive integer, got {value!r}")
    return value


_INHERIT = "inherit"


def _burn_rates(doc: _Doc, path: tuple[Any, ...], value: Any) -> tuple[_RawRule, ...]:
    if not isinstance(value, list) or not value:
        raise doc.error(path, "burn_rates must be a non-empty list")
    rules = []
    for i, item in enumerate(value):
        p = path + (i,)
        item = _keys(doc, p, item, ("severity", "long", "short", "factor", "budget_consumed", "min_events"), "a burn-rate rule")
        for req in ("severity", "long", "short"):
            if req not in item:
                raise doc.error(p, f"missing {req}")
        if item["severity"] not in SEVERITIES:
            raise doc.error(p + ("severity",), f"severity must be page or ticket, got {item['severity']!r}")
        long, short = _duration(doc, p + ("long",), item["long"]), _duration(doc, p + ("short",), item["short"])
        if short >= long:
            raise doc.error(p + ("short",), "the short window must be shorter than the long one")
        has_factor, has_budget = "factor" in item, "budget_consumed" in item
        if has_factor == has_budget:
            raise doc.error(p, "give exactly one of factor or budget_consumed")
        key = "factor" if has_factor else "budget_consumed"
        number = item[key]
        if isinstance(number, bool) or not isinstance(number, int | float) or number <= 0:
            raise doc.error(p + (key,), f"{key} must be a positive number, got {number!r}")
        own_min = _min_events(doc, p + ("min_events",), item["min_events"]) if "min_events" in item else _INHERIT
        rules.append(_RawRule(item["severity"], long, short, float(number), has_budget, own_min))
    return tuple(rules)


@dataclasses.dataclass(frozen=True)
class _RawRule:
    """A rule whose factor may still be a share of the budget (needs the SLO's window)."""

    severity: str
    long: dt.timedelta
    short: dt.timedelta
    number: float
    is_budget_percent: bool
    min_events: int | None | str

    def resolve(self, window: dt.timedelta, min_events: int | None) -> BurnRateRule:
        factor = self.number
        if self.is_budget_percent:
            # Sloth's form: spend ``budget_consumed`` percent of the budget within ``long``.
            factor = round(self.number / 100 * (window / self.long), 6)
        own = min_events if self.min_events == _INHERIT else self.min_events
        return BurnRateRule(self.severity, self.long, self.short, factor, own)  # type: ignore[arg-type]


_DEFAULT_RAW = tuple(_RawRule(r.severity, r.long, r.short, r.factor, False, _INHERIT) for r in DEFAULT_BURN_RATES)


def _alerting(doc: _Doc, path: tuple[Any, ...], data: Any, defaults: dict[str, Any]) -> dict[str, Any]:
    data = _keys(doc, path, data or {}, ("name", "labels", "annotations", "page_alert", "ticket_alert",
                                         "min_events", "burn_rates"), "alerting")
    out = dict(defaults)
    if "name" in data:
        out["name"] = _name(doc, path + ("name",), data["name"], "alerting.name")
    for key in ("labels", "annotations"):
        if key in data:
            out[key] = {**out.get(key, {}), **_str_map(doc, path + (key,), data[key])}
    disabled = set(out.get("disabled", ()))
    for sev in SEVERITIES:
        block = f"{sev}_alert"
        if block in data:
            b = _keys(doc, path + (block,), data[block] or {}, ("labels", "annotations", "disable"), block)
            out[f"{sev}_labels"] = _str_map(doc, path + (block, "labels"), b.get("labels"))
            out[f"{sev}_annotations"] = _str_map(doc, path + (block, "annotations"), b.get("annotations"))
            if b.get("disable") is True:
                disabled.add(sev)
            elif b.get("disable") not in (None, False):
                raise doc.error(path + (block, "disable"), "disable must be true or false")
    out["disabled"] = frozenset(disabled)
    if "min_events" in data:
        out["min_events"] = _min_events(doc, path + ("min_events",), data["min_events"])
    if "burn_rates" in data:
        out["burn_rates"] = _burn_rates(doc, path + ("burn_rates",), data["burn_rates"])
    return out


def _sli(doc: _Doc, path: tuple[Any, ...], data: Any, slo_name: str) -> SLI:
    kinds = (*BUILTIN_SLI_KINDS, "events")
    if not isinstance(data, dict):
        raise doc.error(path, f"sli must be a mapping with one of: {', '.join(kinds)}")
    kind_keys = [k for k in data if k in kinds]
    for k in data:
        if k not in kinds:
            raise doc.error(path + (k,), f"unknown SLI kind (expected one of: {', '.join(kinds)})")
    if len(kind_keys) != 1:
        raise doc.error(path, f"sli must name exactly one kind ({', '.join(kinds)})")
    kind = kind_keys[0]
    p = path + (kind,)
    option = BUILTIN_SLI_KINDS.get(kind)
    queries = ("error_query", "good_query", "total_query")
    allowed = ("name", *queries) if kind == "events" else ((option,) if option else ()) + queries
    body = _keys(doc, p, data[kind] or {}, allowed, f"sli.{kind}")
    for q in queries:
        if q in body and not isinstance(body[q], str):
            raise doc.error(p + (q,), "must be a PromQL string")
    if "error_query" in body and "good_query" in body:
        raise doc.error(p + ("good_query",), "give error_query or good_query, not both")
    if ("error_query" in body or "good_query" in body) != ("total_query" in body):
        raise doc.error(p, "error_query/good_query and total_query go together")
    threshold = None
    if option:
        if option not in body:
            raise doc.error(p, f"{kind} needs {option}")
        threshold = body[option]
        if isinstance(threshold, bool) or not isinstance(threshold, int | float) or threshold <= 0:
            raise doc.error(p + (option,), f"{option} must be a positive number, got {threshold!r}")
        threshold = float(threshold)
    name = None
    if kind == "events":
        name = _name(doc, p + ("name",), body.get("name", slo_name), "sli.events.name")
        if name in BUILTIN_SLI_KINDS:
            raise doc.error(p + ("name",), f"{name!r} is a built-in SLI kind; use `{name}:` instead of events")
    return SLI(kind, threshold, name, body.get("error_query"), body.get("good_query"), body.get("total_query"))


def _build(data: Any, doc: _Doc) -> list[SLO]:
    top = _keys(doc, (), data, ("version", "service", "labels", "window", "alerting", "slos"), "an SLO document")
    if "version" in top and top["version"] not in ("headwater/slo/v1", "prometheus/v1"):
        raise doc.error(("version",), f"unknown version {top['version']!r} (expected headwater/slo/v1)")
    if "service" not in top:
        raise doc.error((), "missing service")
    service = _name(doc, ("service",), top["service"], "service")
    labels = _str_map(doc, ("labels",), top.get("labels"))
    window = _window(doc, ("window",), top["window"]) if "window" in top else WINDOWS["28d"]
    defaults = _alerting(doc, ("alerting",), top.get("alerting"), {})
    if "name" in defaults:
        raise doc.error(("alerting", "name"), "alert names are per SLO")
    items = top.get("slos")
    if not isinstance(items, list) or not items:
        raise doc.error(("slos",), "slos must be a non-empty list")
    out = []
    for i, item in enumerate(items):
        p = ("slos", i)
        item = _keys(doc, p, item, ("name", "objective", "description", "sli", "window", "labels", "alerting"), "an SLO")
        for req in ("name", "objective", "sli"):
            if req not in item:
                raise doc.error(p, f"missing {req}")
        name = _name(doc, p + ("name",), item["name"], "name")
        objective = item["objective"]
        if isinstance(objective, bool) or not isinstance(objective, int | float) or not 0 < objective < 100:
            raise doc.error(p + ("objective",), f"objective must be a percentage between 0 and 100 (exclusive), got {objective!r}")
        description = item.get("description") or ""
        if not isinstance(description, str):
            raise doc.error(p + ("description",), "description must be a string")
        slo_window = _window(doc, p + ("window",), item["window"]) if "window" in item else window
        al = _alerting(doc, p + ("alerting",), item.get("alerting"), defaults)
        min_events = al.pop("min_events", None)
        raw_rules = al.pop("burn_rates", _DEFAULT_RAW)
        rules = tuple(r.resolve(slo_window, min_events) for r in raw_rules)
        for r in rules:
            if r.long > slo_window:
                raise doc.error(p + ("alerting",), f"burn-rate window {format_duration(r.long)} is longer than the SLO window")
        out.append(SLO(
            service=service, name=name, objective=float(objective),
            sli=_sli(doc, p + ("sli",), item["sli"], name), window=slo_window, description=description,
            labels={**labels, **_str_map(doc, p + ("labels",), item.get("labels"))},
            alerting=AlertingSpec(burn_rates=rules, **al), line=doc.line(p),
        ))
    return out
