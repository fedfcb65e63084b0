"""Declarative routing: YAML rules that send events to topics, projecting or masking fields.

::

    routes:
      - name: big-eu-orders
        match:
          type: com.shop.order.*          # glob on the CloudEvents type
          source: /shop/*                 # glob on source; also: subject
          data:                           # payload fields by dotted path
            currency: EUR                 # equality
            amount: {gte: 100}            # eq ne gt gte lt lte in exists like
            customer.country: {in: [DE, FR]}
        to: [orders.big, audit.orders]    # one topic or a list
        project: [order_id, amount, customer.country]   # keep only these payload fields
        mask: true                        # mask every classified field (or a list of tags)
        stop: false                       # true: later rules are not tried for this event

Every matching rule routes (fan-out) unless a matching rule says ``stop: true``. Conditions in
one ``match`` are all required. A routed event keeps its id (it is the same occurrence, so
sinks de-duplicate across topics); when projection or masking changes the payload, its
``schemaid``/``dataschema`` are dropped (the payload no longer follows that schema) and
masking adds the ``masked`` classification tag.

*Classified fields* are those whose schema carries ``x-pii`` (found through the event's
``schemaid`` with a :class:`~headwater.events.producer.SchemaValidator`'s registry), plus
``classified`` paths listed on the rule. Masked values become ``"***"``.

:func:`router_consumer` runs a router as a consumer group (dead-letter stage ``route``).
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from headwater._yaml import safe_load
from headwater.events.bus.base import Bus
from headwater.events.bus.errors import RoutingError
from headwater.events.dlq import DeadLetterStore, Stage
from headwater.events.envelope import Event

__all__ = ["MASK", "Route", "Router", "RoutingError", "load_routes", "router_consumer"]

MASK = "***"
"""What a masked value becomes."""

_OPS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "exists", "like")
_MISSING = object()


@dataclass(frozen=True)
class Condition:
    """One payload condition: ``path`` ``op`` ``value``."""

    path: tuple[str, ...]
    op: str
    value: Any

    def test(self, data: Any) -> bool:
        got = _get(data, self.path)
        if self.op == "exists":
            return (got is not _MISSING) == bool(self.value)
        if got is _MISSING:
            return self.op == "ne"
        try:
            if self.op == "eq":
                return got == self.value
            if self.op == "ne":
                return got != self.value
            if self.op == "in":
                return got in self.value
            if self.op == "like":
                return isinstance(got, str) and fnmatch.fnmatchcase(got, self.value)
            if self.op == "gt":
                return got > self.value
            if self.op == "gte":
                return got >= self.value
            if self.op == "lt":
                return got < self.value
            return got <= self.value
        except TypeError:  # incomparable types: no match
            return False


@dataclass(frozen=True)
class Route:
    """One routing rule (see the module docstring for the YAML form)."""

    name: str
    to: tuple[str, ...]
    type: str | None = None
    source: str | None = None
    subject: str | None = None
    conditions: tuple[Condition, ...] = ()
    project: tuple[str, ...] | None = None
    mask: bool | tuple[str, ...] = False
    """True: every classified field; a tuple: fields classified with one of these tags."""
    classified: Mapping[str, str] = field(default_factory=dict)
    """Extra classified paths -> tag, for events without a schema."""
    stop: bool = False

    def matches(self, event: Event) -> bool:
        """Whether every condition of the rule holds for ``event``."""
        if self.type is not None and not fnmatch.fnmatchcase(event.type, self.type):
            return False
        if self.source is not None and not fnmatch.fnmatchcase(event.source, self.source):
            return False
        if self.subject is not None and (
            event.subject is None or not fnmatch.fnmatchcase(event.subject, self.subject)
        ):
            return False
        return all(c.test(event.data) for c in self.conditions)


def _get(data: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        if isinstance(data, Mapping) and part in data:
            data = data[part]
        else:
            return _MISSING
    return data


def load_routes(source: str | Path | Mapping[str, Any]) -> list[Route]:
    """Parse routing rules from YAML text, a YAML file path, or an already-loaded mapping.

    Raises :class:`RoutingError` naming the rule and the problem."""
    if isinstance(source, Path) or (isinstance(source, str) and "\n" not in source and source.endswith((".yaml", ".yml"))):
        try:
            source = Path(source).read_text()
        except OSError as err:
            raise RoutingError(f"cannot read routing rules: {err}") from None
    if isinstance(source, str):
        try:
            doc = safe_load(source)  # within the limits of headwater._yaml (aliases, depth, ints)
        except yaml.YAMLError as err:
            line = getattr(getattr(err, "problem_mark", None), "line", None)
            where = "" if line is None else f" at line {line + 1}"
            problem = getattr(err, "problem", None) or "cannot be parsed"
            raise RoutingError(
                f"routing rules are not valid YAML{where}: {problem}", line=None if line is None else line + 1
            ) from None
    else:
        doc = source
    if not isinstance(doc, Mapping) or not isinstance(doc.get("routes"), list):
        raise RoutingError("routing rules need a top-level 'routes:' list")
    names: set[str] = set()
    out = []
    for i, raw in enumerate(doc["routes"]):
        route = _parse_route(raw, i)
        if route.name in names:
            raise RoutingError(f"route {route.name!r} is defined twice", route=route.name)
        names.add(route.name)
        out.append(route)
    return out


def _parse_route(raw: Any, index: int) -> Route:
    label = f"route #{index + 1}"
    if not isinstance(raw, Mapping):
        raise RoutingError(f"{label} must be a mapping", route=label)
    unknown = set(raw) - {"name", "match", "to", "project", "mask", "classified", "stop"}
    if unknown:
        raise RoutingError(f"{label}: unknown key(s) {sorted(unknown)}", route=label)
    name = str(raw.get("name") or label)
    to = raw.get("to")
    topics = (to,) if isinstance(to, str) else tuple(to or ())
    if not topics or not all(isinstance(t, str) and t for t in topics):
        raise RoutingError(f"route {name!r}: 'to' must name one topic or a list of topics", route=name)
    match = raw.get("match") or {}
    if not isinstance(match, Mapping):
        raise RoutingError(f"route {name!r}: 'match' must be a mapping", route=name)
    bad = set(match) - {"type", "source", "subject", "data"}
    if bad:
        raise RoutingError(f"route {name!r}: cannot match on {sorted(bad)}", route=name)
    conditions = []
    data = match.get("data") or {}
    if not isinstance(data, Mapping):
        raise RoutingError(f"route {name!r}: 'match.data' must map field paths to conditions", route=name)
    for path, cond in data.items():
        parts = tuple(str(path).split("."))
        if isinstance(cond, Mapping):
            for op, value in cond.items():
                if op not in _OPS:
                    raise RoutingError(
                        f"route {name!r}: unknown operator {op!r} on {path!r}; use one of {', '.join(_OPS)}",
                        route=name,
                    )
                if op == "in" and not isinstance(value, list):
                    raise RoutingError(f"route {name!r}: 'in' on {path!r} needs a list", route=name)
                conditions.append(Condition(parts, op, value))
        else:
            conditions.append(Condition(parts, "eq", cond))
    project = raw.get("project")
    if project is not None and (not isinstance(project, list) or not all(isinstance(p, str) for p in project)):
        raise RoutingError(f"route {name!r}: 'project' must be a list of field paths", route=name)
    mask = raw.get("mask", False)
    if isinstance(mask, list):
        mask = tuple(str(m) for m in mask)
    elif not isinstance(mask, bool):
        raise RoutingError(f"route {name!r}: 'mask' is true, false or a list of tags", route=name)
    classified = raw.get("classified") or {}
    if isinstance(classified, list):
        classified = {str(p): "pii" for p in classified}
    for key in ("type", "source", "subject"):
        if match.get(key) is not None and not isinstance(match[key], str):
            raise RoutingError(f"route {name!r}: 'match.{key}' must be a string", route=name)
    return Route(
        name=name,
        to=topics,
        type=match.get("type"),
        source=match.get("source"),
        subject=match.get("subject"),
        conditions=tuple(conditions),
        project=tuple(project) if project is not None else None,
        mask=mask,
        classified=dict(classified),
        stop=bool(raw.get("stop", False)),
    )


class Router:
    """Applies routes to events. ``validator`` (a ``SchemaValidator``) finds classified
    fields through each event's ``schemaid``."""

    def __init__(self, routes: Sequence[Route] | str | Path | Mapping[str, Any], *, validator: Any = None) -> None:
        self.routes = list(routes) if isinstance(routes, list | tuple) else load_routes(routes)  # type: ignore[arg-type]
        self.validator = validator
        self._tags_by_schema: dict[int, dict[str, str]] = {}

    def __repr__(self) -> str:
        return f"Router(routes={[r.name for r in self.routes]})"

    def _classified(self, event: Event, route: Route) -> dict[str, str]:
        out = dict(route.classified)
        if event.schemaid is not None and self.validator is not None:
            tags = self._tags_by_schema.get(event.schemaid)
            if tags is None:
                from headwater.events.registry import classifications

                reg = self.validator.registry.get_by_id(event.schemaid)
                tags = classifications(json.loads(reg.schema), reg.schema_type)
                self._tags_by_schema[event.schemaid] = tags
            out.update(tags)
        return out

    def route(self, event: Event) -> list[tuple[str, Event]]:
        """``(topic, event)`` for every target of every matching rule (in rule order)."""
        out: list[tuple[str, Event]] = []
        for route in self.routes:
            if not route.matches(event):
                continue
            routed = self._transform(event, route)
            out.extend((topic, routed) for topic in route.to)
            if route.stop:
                break
        return out

    def _transform(self, event: Event, route: Route) -> Event:
        if route.project is None and not route.mask:
            return event
        if not isinstance(event.data, Mapping):
            raise RoutingError(
                f"route {route.name!r}: cannot project or mask a {type(event.data).__name__} payload",
                route=route.name,
            )
        data: Any = json.loads(json.dumps(event.data))  # deep copy of JSON data
        if route.project is not None:
            projected: dict[str, Any] = {}
            for path in route.project:
                parts = path.split(".")
                value = _get(data, tuple(parts))
                if value is _MISSING:
                    continue
                node = projected
                for part in parts[:-1]:
                    node = node.setdefault(part, {})
                node[parts[-1]] = value
            data = projected
        tags = list(event.classification)
        if route.mask:
            masked = False
            for path, tag in self._classified(event, route).items():
                if route.mask is not True and tag not in route.mask:  # type: ignore[operator]
                    continue
                if "[]" in path or "{}" in path:
                    masked |= _mask_nested(data, path)
                    continue
                parts = path.split(".")
                parent = _get(data, tuple(parts[:-1])) if len(parts) > 1 else data
                if isinstance(parent, dict) and parts[-1] in parent:
                    parent[parts[-1]] = MASK
                    masked = True
            if masked and "masked" not in tags:
                tags.append("masked")
        return event.with_(data=data, schemaid=None, dataschema=None, classification=tuple(tags))


def _mask_nested(data: Any, path: str) -> bool:
    """Mask a path through arrays (``a[].b``) or maps (``a{}.b``)."""
    head, _, rest = path.partition(".")
    if head.endswith("[]") or head.endswith("{}"):
        container = _get(data, (head[:-2],)) if head[:-2] else data
        items = container if isinstance(container, list) else list(container.values()) if isinstance(container, dict) else []
        hit = False
        for item in items:
            if rest:
                if "[]" in rest or "{}" in rest:
                    hit |= _mask_nested(item, rest)
                elif isinstance(item, dict):
                    parts = rest.split(".")
                    parent = _get(item, tuple(parts[:-1])) if len(parts) > 1 else item
                    if isinstance(parent, dict) and parts[-1] in parent:
                        parent[parts[-1]] = MASK
                        hit = True
        return hit
    nxt = data.get(head) if isinstance(data, dict) else None
    return _mask_nested(nxt, rest) if nxt is not None and rest else False


def router_consumer(
    bus: Bus,
    topic: str,
    group: str,
    router: Router,
    *,
    dead_letters: DeadLetterStore,
    publish: Callable[[str, Event], Any] | None = None,
    **options: Any,
) -> Any:
    """An :class:`~headwater.events.consumer.EventConsumer` that routes ``topic``'s events
    (dead-letter stage ``route``). ``publish(topic, event)`` defaults to ``bus.publish`` in a
    ``publish <topic>`` span; unmatched events are simply acked. Each event is handled inside
    its ``process <topic>`` span, so a re-publish continues the event's trace."""
    from headwater.events.consumer import EventConsumer
    from headwater.telemetry import messaging

    send = publish or (lambda t, e: messaging.publish(bus, t, e))

    def handle(event: Event) -> None:
        for target, routed in router.route(event):
            send(target, routed)

    return EventConsumer(bus, topic, group, handle, dead_letters=dead_letters, stage=Stage.ROUTE, **options)
