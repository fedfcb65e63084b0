"""Producers validate every payload against its registered schema before anything is sent.

:class:`SchemaValidator` turns registry schemas into compiled validators (JSON Schema via
``jsonschema``, Avro via ``fastavro``), cached by global schema id (ids never change meaning)
and by subject for ``latest`` lookups (refreshed after ``latest_ttl`` seconds).

:class:`Producer` stamps events with ``schemaid`` and ``dataschema``, validates the whole
batch, and only then publishes. A violation raises :class:`EventValidationError` (a
:class:`~headwater.errors.SchemaError`) listing each error, and **nothing of the batch is
sent**. Unknown subjects or schema ids raise the registry's ``SubjectNotFound`` /
``SchemaNotFound``.

By default the schema subject of a topic is ``<topic>-value`` (Confluent's TopicNameStrategy).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from headwater.events.bus.base import Bus, PublishResult
from headwater.events.bus.errors import EventValidationError
from headwater.events.envelope import Event
from headwater.events.registry import (
    SchemaRegistry,
    SchemaType,
    annotations,
    classifications,
    pii_paths,
)
from headwater.telemetry.messaging import messaging_system, publishing

__all__ = ["EventValidationError", "Producer", "SchemaValidator", "topic_subject"]

_MAX_ERRORS = 10


def topic_subject(topic: str) -> str:
    """The default schema subject of a topic's payloads: ``<topic>-value``."""
    return f"{topic}-value"


class _Compiled:
    __slots__ = ("_sealed_check", "_sealed_factory", "check", "id", "notes", "pii", "subject", "tags", "version")

    def __init__(
        self,
        schema_id: int,
        check: Callable[[Any], list[str]],
        tags: tuple[str, ...],
        subject: str | None = None,
        version: int | None = None,
        *,
        pii: frozenset[str] = frozenset(),
        notes: Mapping[str, Any] | None = None,
        sealed: Callable[[], Callable[[Any], list[str]]] | None = None,
    ) -> None:
        self.id = schema_id
        self.check = check
        self.tags = tags
        self.subject = subject
        self.version = version
        self.pii = pii
        """Paths of the fields classified as personal data (sealed at publish time)."""
        self.notes = notes or {}
        """Root annotations (``x-dataset``, ``x-erasure-subject``)."""
        self._sealed_factory = sealed
        self._sealed_check: Callable[[Any], list[str]] | None = None

    def with_subject(self, subject: str, version: int) -> _Compiled:
        """The same compiled schema, known as ``subject`` version ``version``."""
        out = _Compiled(self.id, self.check, self.tags, subject, version, pii=self.pii, notes=self.notes,
                        sealed=self._sealed_factory)
        out._sealed_check = self._sealed_check
        return out

    def check_sealed(self, datum: Any) -> list[str]:
        """:attr:`check` for the payload as the bus holds it: a PII field may be a sealed string
        (``hwenc:v1:...``) instead of a value of its type."""
        if not self.pii or self._sealed_factory is None:
            return self.check(datum)
        if self._sealed_check is None:
            self._sealed_check = self._sealed_factory()
        return self._sealed_check(datum)


class SchemaValidator:
    """Validates payloads against registry schemas (thread-safe, cached)."""

    def __init__(self, registry: SchemaRegistry, *, latest_ttl: float = 5.0) -> None:
        self.registry = registry
        self.latest_ttl = latest_ttl
        self._by_id: dict[int, _Compiled] = {}
        self._latest: dict[str, tuple[float, _Compiled]] = {}
        self._lock = threading.Lock()

    def for_id(self, schema_id: int) -> _Compiled:
        """The compiled schema with global id ``schema_id``."""
        compiled = self._by_id.get(schema_id)
        if compiled is None:
            reg = self.registry.get_by_id(schema_id)
            refs = self._refs(reg.references)
            compiled = _compile(schema_id, reg.schema, reg.schema_type, refs)
            with self._lock:
                self._by_id[schema_id] = compiled
        return compiled

    def for_subject(self, subject: str, version: int | str = "latest") -> _Compiled:
        """The compiled schema of ``subject`` at ``version`` (``latest`` is cached briefly)."""
        now = time.monotonic()
        if version == "latest":
            hit = self._latest.get(subject)
            if hit is not None and now - hit[0] < self.latest_ttl:
                return hit[1]
        sv = self.registry.get_version(subject, version)  # type: ignore[arg-type]
        compiled = self.for_id(sv.id).with_subject(subject, sv.version)
        if version == "latest":
            with self._lock:
                self._latest[subject] = (now, compiled)
        return compiled

    def _refs(self, references: Iterable[Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for ref in references:
            sv = self.registry.get_version(ref.subject, ref.version)
            out[ref.name] = json.loads(sv.schema)
            inner = self.registry.get_by_id(sv.id)
            out.update(self._refs(inner.references))
        return out

    def validate(self, event: Event) -> None:
        """Check ``event.data`` against the schema named by ``event.schemaid``.

        Raises :class:`EventValidationError`; an event without ``schemaid`` passes (nothing
        to check against). PII fields may hold sealed values (consumers see events as the bus
        holds them; see :mod:`headwater.events.sealing`)."""
        if event.schemaid is None:
            return
        compiled = self.for_id(event.schemaid)
        errors = compiled.check_sealed(event.data)
        if errors:
            raise _violation(event, compiled, errors)


def _violation(event: Event, compiled: _Compiled, errors: list[str]) -> EventValidationError:
    return EventValidationError(
        f"event {event.id} ({event.type}) does not match schema id {compiled.id}"
        + (f" ({compiled.subject} v{compiled.version})" if compiled.subject else "")
        + ": "
        + "; ".join(errors[:_MAX_ERRORS]),
        event_id=event.id,
        subject=compiled.subject,
        schema_id=compiled.id,
        errors=tuple(errors[:_MAX_ERRORS]),
    )


def _compile(
    schema_id: int, text: str, stype: SchemaType, refs: Mapping[str, Any], *, sealed_form: bool = False
) -> _Compiled:
    schema = json.loads(text)
    tags = tuple(sorted(set(classifications(schema, stype).values())))
    pii = frozenset(pii_paths(schema, stype))
    notes = annotations(schema, stype)
    if sealed_form:
        schema = _sealed_schema(schema, stype)

    def sealed() -> Callable[[Any], list[str]]:
        return _compile(schema_id, text, stype, refs, sealed_form=True).check

    extra: dict[str, Any] = {"pii": pii, "notes": notes, "sealed": sealed if pii else None}
    if stype is SchemaType.AVRO:
        import fastavro
        from fastavro.validation import ValidationError, validate

        named: dict[str, Any] = {}
        for ref in refs.values():
            fastavro.parse_schema(ref, named_schemas=named)
        parsed = fastavro.parse_schema(schema, named_schemas=named)

        def check_avro(datum: Any) -> list[str]:
            try:
                validate(datum, parsed, raise_errors=True)
            except ValidationError as err:
                return [str(e) for e in err.errors] or [str(err)]
            except (TypeError, ValueError, AttributeError) as err:
                return [f"{type(err).__name__}: {err}"]
            return []

        return _Compiled(schema_id, check_avro, tags, **extra)

    import jsonschema
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    registry: Registry = Registry()
    for name, ref_schema in refs.items():
        resource = Resource.from_contents(ref_schema, default_specification=DRAFT202012)
        registry = registry.with_resource(name, resource)
    validator = cls(schema, registry=registry, format_checker=cls.FORMAT_CHECKER)

    fast = _fast_validator(schema) if not refs else None

    def check_json(datum: Any) -> list[str]:
        if fast is not None:
            if fast(datum):
                return []
        elif validator.is_valid(datum):  # no error objects built
            return []
        # jsonschema is the authority: it lists the errors (none: the fast check was stricter)
        return [
            f"{'/'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
            for e in sorted(validator.iter_errors(datum), key=lambda e: list(map(str, e.path)))
        ]

    return _Compiled(schema_id, check_json, tags, **extra)


_SEALED_JSON = {"type": "string", "pattern": "^hwenc:v1:"}


def _sealed_schema(schema: Any, stype: SchemaType) -> Any:
    """``schema`` with every PII field also accepting a sealed string (the form on the bus)."""
    from headwater.events.registry.classify import _resolve_json, _tag
    from headwater.events.sealing import is_pii_tag

    root = schema

    def json_node(node: Any) -> Any:
        if isinstance(node, list):
            return [json_node(v) for v in node]
        if not isinstance(node, dict):
            return node
        out = {}
        for k, v in node.items():
            if k == "properties" and isinstance(v, dict):
                props = {}
                for name, sub in v.items():
                    new = json_node(sub)
                    tag = _tag(sub) or _tag(_resolve_json(root, sub))
                    props[name] = {"anyOf": [new, _SEALED_JSON]} if is_pii_tag(tag) else new
                out[k] = props
            else:
                out[k] = json_node(v)
        return out

    def avro_node(node: Any) -> Any:
        if isinstance(node, list):
            return [avro_node(v) for v in node]
        if not isinstance(node, dict):
            return node
        out = {k: avro_node(v) for k, v in node.items() if k != "fields"}
        if isinstance(node.get("fields"), list):
            fields = []
            for f in node["fields"]:
                f = avro_node(f) if isinstance(f, dict) else f
                if isinstance(f, dict) and is_pii_tag(f.get("x-pii") if isinstance(f.get("x-pii"), str) else None):
                    t = f.get("type")
                    branches = list(t) if isinstance(t, list) else [t]
                    if "string" not in branches:
                        f = {**f, "type": branches + ["string"]}
                fields.append(f)
            out["fields"] = fields
        return out

    return json_node(schema) if stype is SchemaType.JSON else avro_node(schema)

_NOT_DRAFT7 = frozenset(
    (
        "prefixItems", "unevaluatedProperties", "unevaluatedItems", "dependentRequired",
        "dependentSchemas", "$dynamicRef", "$dynamicAnchor", "$recursiveRef", "$anchor",
        "minContains", "maxContains", "$ref",
    )
)
_DRAFT7_URIS = ("http://json-schema.org/draft-04", "http://json-schema.org/draft-06", "http://json-schema.org/draft-07")


def _draft7_safe(node: Any) -> bool:
    """Whether ``node`` means the same under draft 7 as under 2020-12 (no keywords whose
    meaning changed, no references)."""
    if isinstance(node, dict):
        if _NOT_DRAFT7.intersection(node) or isinstance(node.get("items"), list):
            return False
        return all(_draft7_safe(v) for v in node.values())
    if isinstance(node, list):
        return all(_draft7_safe(v) for v in node)
    return True


def _fast_validator(schema: Any) -> Callable[[Any], bool] | None:
    """A compiled ``fastjsonschema`` validity check (~10x faster than ``jsonschema``), or None.

    Optional speed-up (``pip install fastjsonschema``): used only for schemas that mean the
    same under draft 7 (what it implements) as under the declared draft. It only answers
    valid/invalid; errors are always reported by ``jsonschema``, which stays the authority.
    """
    declared = schema.get("$schema", "") if isinstance(schema, dict) else ""
    if declared and not declared.startswith(_DRAFT7_URIS):
        return None
    if not _draft7_safe(schema):
        return None
    try:
        import fastjsonschema
    except ImportError:
        return None
    try:
        compiled = fastjsonschema.compile(schema)
    except Exception:  # noqa: BLE001 - anything it cannot compile falls back to jsonschema
        return None

    def is_valid(datum: Any) -> bool:
        try:
            compiled(datum)
        except fastjsonschema.JsonSchemaException:
            return False
        except Exception:  # noqa: BLE001 - let jsonschema decide
            return False
        return True

    return is_valid


class Producer:
    """Publishes events whose payloads passed their registered schema.

    ``source`` is the CloudEvents source of events built by :meth:`send`. ``subject_for``
    maps a topic to its schema subject (default ``<topic>-value``). ``validator`` may be
    shared between producers to share the cache.

    ``sealer`` (a :class:`~headwater.events.sealing.Sealer`, the platform's producers pass one)
    seals the PII fields of every validated payload -- those classified in its schema and in the
    topic's latest schema -- before anything is sent. ``strict`` validates every event against
    the topic's own subject: a ``schemaid`` that is not a version of it is ignored (the payload is
    validated, classified and sealed as the topic's latest schema says), so a producer cannot
    pick a schema without classifications.
    """

    def __init__(
        self,
        bus: Bus,
        registry: SchemaRegistry | None = None,
        *,
        source: str = "/headwater",
        subject_for: Callable[[str], str] = topic_subject,
        validator: SchemaValidator | None = None,
        sealer: Any = None,
        strict: bool = False,
    ) -> None:
        if validator is None and registry is None:
            raise TypeError("pass a SchemaRegistry or a SchemaValidator")
        self.bus = bus
        self.source = source
        self.subject_for = subject_for
        self.validator = validator or SchemaValidator(registry)  # type: ignore[arg-type]
        self.sealer = sealer
        self.strict = strict
        self._system = messaging_system(bus)
        self._members: dict[tuple[str, int], bool] = {}

    def __repr__(self) -> str:
        return f"Producer(bus={self.bus!r}, source={self.source!r})"

    def prepare(self, topic: str, event: Event, *, version: int | str = "latest") -> Event:
        """Stamp ``schemaid``/``dataschema``/``classification``, validate and (with a sealer)
        seal the PII fields; returns the stamped event or raises :class:`EventValidationError`."""
        if event.schemaid is not None and not (self.strict and not self._member(topic, event.schemaid)):
            compiled = self.validator.for_id(event.schemaid)
        else:
            if event.schemaid is not None:  # strict: not a version of this topic's subject
                event = event._evolve(schemaid=None, dataschema=None)
            compiled = self.validator.for_subject(self.subject_for(topic), version)
        errors = compiled.check(event.data)
        if errors:
            raise _violation(event, compiled, errors)
        if self.sealer is not None:
            sealed = self._seal(topic, event, compiled)
            if sealed is not event:
                event = sealed
        if event.schemaid == compiled.id and (event.dataschema or not compiled.subject):
            return event
        return event._evolve(  # checked values only: skip the constructor's validation
            schemaid=compiled.id,
            dataschema=event.dataschema
            or (f"registry:{compiled.subject}/{compiled.version}" if compiled.subject else None),
            classification=event.classification or compiled.tags,
        )

    def _member(self, topic: str, schema_id: int) -> bool:
        """Whether ``schema_id`` is a version of ``topic``'s subject (cached)."""
        subject = self.subject_for(topic)
        hit = self._members.get((subject, schema_id))
        if hit is None:
            hit = any(s == subject for s, _ in self.validator.registry.subject_versions_by_id(schema_id))
            self._members[(subject, schema_id)] = hit
        return hit

    def _seal(self, topic: str, event: Event, compiled: _Compiled) -> Event:
        """``event`` with the PII fields of its schema and of the topic's latest schema sealed."""
        from headwater.errors import NotFound

        paths, notes = compiled.pii, compiled.notes
        if compiled.subject is None or compiled.version is None:
            try:
                latest = self.validator.for_subject(self.subject_for(topic))
            except NotFound:
                latest = None
            if latest is not None and latest.id != compiled.id:
                paths, notes = paths | latest.pii, {**notes, **latest.notes}
        if not paths:
            return event
        data = self.sealer.for_event(topic, paths, notes).seal(event.data, event.subject)
        return event._evolve(data=data)

    def publish(self, topic: str, event: Event, *, key: str | None = None) -> PublishResult:
        """Validate, then publish one event (in a ``publish <topic>`` span when tracing is on,
        the sent event carrying its ``traceparent``)."""
        prepared = self.prepare(topic, event)
        # prepare() returns a fresh copy unless the event was already stamped: then it is the
        # caller's object, and the trace context goes on a copy.
        with publishing(self._system, topic, (prepared,), owned=prepared is not event) as sent:
            return self.bus.publish(topic, sent[0], key)

    def publish_many(
        self, topic: str, events: Iterable[Event | tuple[Event, str | None]]
    ) -> list[PublishResult]:
        """Validate the whole batch, then publish it (one ``publish <topic>`` span); one bad
        event sends nothing."""
        stamped: list[tuple[Event, str | None]] = []
        fresh = True
        for item in events:
            ev, key = item if isinstance(item, tuple) else (item, None)
            prepared = self.prepare(topic, ev)
            fresh = fresh and prepared is not ev
            stamped.append((prepared, key))
        with publishing(self._system, topic, stamped, owned=fresh) as sent:
            return self.bus.publish_many(topic, sent)  # type: ignore[arg-type]

    def send(
        self,
        topic: str,
        data: Any,
        *,
        type: str,
        subject: str | None = None,
        key: str | None = None,
        **attributes: Any,
    ) -> PublishResult:
        """Build an event from ``data`` (source: this producer's), validate and publish."""
        event = Event(type=type, source=self.source, data=data, subject=subject, **attributes)
        return self.publish(topic, event, key=key)
