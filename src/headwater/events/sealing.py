"""Crypto-shredding of events: PII fields sealed under their data subject's key at publish time.

Topics are append-only, so a subject's PII cannot be deleted from them. Instead every PII value
is sealed with :meth:`SubjectKeys.seal_text <headwater.subject_keys.SubjectKeys.seal_text>`
under the key of the subject the row or event is about, and erasure destroys that key
(``platform.subject_keys.shred(namespace, value)``): the sealed bytes stay on the bus but open to
nothing, while other subjects' values still open.

**Which fields.** For change events (CDC topics), the columns of the source dataset tagged
``pii`` or ``pii.*`` in the catalog, in both ``before`` and ``after``. For other events, the
fields classified with ``x-pii`` (any tag but ``none``) in the schema the producer validated
against and in the topic's latest schema.

**Which subject.** The dataset's *erasure subject*: the catalog property ``erasure_subject``
(``{column: customer_id, namespace: app.customers.id}``, or just a column name, whose namespace
is then ``<dataset>.<column>``), else its single-column primary key (``app.customers.id``).
A topic declares its dataset with the root schema keyword ``"x-dataset": "app.customers"``, or
its subject directly with ``"x-erasure-subject": {"field": "customer_id", "namespace":
"app.customers.id"}``. Without either, PII of a topic's events is sealed under namespace
``events.<topic>`` and the event's CloudEvents ``subject``. A row or event with no subject value
(NULL) seals under the value ``*`` of its namespace. A dataset with neither property nor
single-column key seals under namespace ``<dataset>`` and value ``*``: one key for the dataset.

**What is sealed.** ``seal_text(namespace, subject, json([topic, field, value]))``: the value
keeps its JSON type inside, and the plaintext names where it was sealed, so opening can refuse a
value copied somewhere else (a sealed value is no decryption oracle: a consumer opens values of
topics it may consume, at the field they were sealed for). When a key column of a change event is
itself PII, the message key and the CloudEvents ``subject`` are a keyed pseudonym (HMAC) instead.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from headwater.errors import InvalidInput
from headwater.subject_keys import SEALED_PREFIX, is_sealed

__all__ = [
    "NO_SUBJECT",
    "EventSeal",
    "RowSeal",
    "SealContext",
    "Sealer",
    "SubjectRule",
    "erasure_subject",
    "is_pii_tag",
    "is_sealed",
    "open_value",
    "walk_sealed",
]

NO_SUBJECT = "*"
"""The subject value of rows and events that carry none."""

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_TTL = 5.0


def is_pii_tag(tag: str | None) -> bool:
    """Whether a catalog tag (``pii``, ``pii.email``) or an ``x-pii`` value marks personal data
    (``x-pii: none`` declares a field not personal)."""
    if not tag:
        return False
    return tag.strip().lower() not in ("", "none", "pii.none")


def _catalog_pii(tag: str) -> bool:
    low = tag.lower()
    return (low == "pii" or low.startswith("pii.")) and low != "pii.none"


@dataclass(frozen=True)
class SubjectRule:
    """Where the subject of a row or event is: the ``field`` (a column, or a dotted payload path)
    holding its value, in ``namespace`` (``store.table.column``); no field means the event's
    CloudEvents ``subject`` (events) or no subject at all (rows: value ``*``)."""

    namespace: str
    field: str | None


def erasure_subject(dataset: Any) -> SubjectRule:
    """The erasure subject of a catalogued dataset (see the module docstring)."""
    prop = (dataset.properties or {}).get("erasure_subject")
    if isinstance(prop, str) and prop.strip():
        return SubjectRule(f"{dataset.name}.{prop.strip()}".lower(), prop.strip())
    if isinstance(prop, Mapping) and isinstance(prop.get("column"), str) and prop["column"].strip():
        column = prop["column"].strip()
        namespace = prop.get("namespace") if isinstance(prop.get("namespace"), str) else None
        return SubjectRule((namespace or f"{dataset.name}.{column}").strip().lower(), column)
    if len(dataset.primary_key) == 1:
        return SubjectRule(f"{dataset.name}.{dataset.primary_key[0]}".lower(), dataset.primary_key[0])
    return SubjectRule(dataset.name.lower(), None)


@dataclass(frozen=True)
class SealContext:
    """What an opened value says about where it was sealed."""

    topic: str
    field: str
    value: Any


def open_value(keys: Any, sealed: str) -> SealContext | None:
    """Open one sealed value: its context and value, or None once its subject was shredded.

    Raises :class:`~headwater.errors.InvalidInput` for damaged or foreign ciphertext, and for a
    value sealed by something other than this module (no context inside)."""
    text = keys.open_text(sealed)
    if text is None:
        return None
    try:
        topic, field, value = json.loads(text)
    except (ValueError, TypeError):
        raise InvalidInput("a sealed value carries no event context") from None
    if not isinstance(topic, str) or not isinstance(field, str):
        raise InvalidInput("a sealed value carries no event context")
    return SealContext(topic, field, value)


class RowSeal:
    """Seals the PII columns of one dataset's row images on one topic (change events)."""

    __slots__ = ("_keys", "_pseudo", "columns", "key_is_pii", "subject", "topic")

    def __init__(self, keys: Any, topic: str, columns: frozenset[str], subject: SubjectRule,
                 key_is_pii: bool, pseudonym_key: bytes) -> None:
        self._keys = keys
        self.topic = topic
        self.columns = columns
        """Column names whose values are sealed."""
        self.subject = subject
        self.key_is_pii = key_is_pii
        """A key column is PII: message keys and subjects become pseudonyms."""
        self._pseudo = pseudonym_key

    def __repr__(self) -> str:
        return f"RowSeal(topic={self.topic!r}, columns={sorted(self.columns)}, subject={self.subject.namespace!r})"

    def seal(self, row: dict[str, Any] | None) -> dict[str, Any] | None:
        """A copy of ``row`` with its PII columns sealed (None stays None; NULL stays NULL)."""
        if row is None:
            return None
        field = self.subject.field
        value = row.get(field) if field is not None else None
        subject = NO_SUBJECT if value is None else value
        seal = self._keys.seal_text
        out = dict(row)
        for c in self.columns:
            v = out.get(c)
            if v is not None and not is_sealed(v):
                out[c] = seal(self.subject.namespace, subject, _dumps([self.topic, c, v]))
        return out

    def key(self, key: str | None) -> str | None:
        """The message key (and CloudEvents subject) to publish: a pseudonym when a key column
        is PII."""
        if key is None or not self.key_is_pii:
            return key
        return "hwk_" + hmac.new(self._pseudo, f"{self.topic}\x00{key}".encode(), hashlib.sha256).hexdigest()[:32]


class EventSeal:
    """Seals the PII paths of one topic's event payloads."""

    __slots__ = ("_keys", "paths", "subject", "topic")

    def __init__(self, keys: Any, topic: str, paths: tuple[str, ...], subject: SubjectRule) -> None:
        self._keys = keys
        self.topic = topic
        self.paths = paths
        """Field paths (``email``, ``customer.email``, ``items[].email``) whose values are sealed."""
        self.subject = subject

    def __repr__(self) -> str:
        return f"EventSeal(topic={self.topic!r}, paths={list(self.paths)}, subject={self.subject.namespace!r})"

    def seal(self, data: Any, event_subject: str | None) -> Any:
        """A copy of ``data`` with every value at a PII path sealed."""
        if not self.paths or data is None:
            return data
        if self.subject.field is not None:
            value = _get(data, self.subject.field.split("."))
        else:
            value = event_subject
        subject = NO_SUBJECT if value is None or value is _MISSING else value
        ns = self.subject.namespace
        seal = self._keys.seal_text
        topic = self.topic
        for path in self.paths:

            def one(v: Any, p: str = path) -> Any:
                if v is None or is_sealed(v):
                    return v
                return seal(ns, subject, _dumps([topic, p, v]))

            data = _transform(data, _parse(path), one)
        return data


class Sealer:
    """Builds :class:`RowSeal`/:class:`EventSeal` plans from the catalog and registry schemas
    (cached briefly: tags and properties changed in the catalog apply within seconds)."""

    def __init__(self, keys: Any, catalog: Any, *, pseudonym_key: bytes) -> None:
        self.keys = keys
        self.catalog = catalog
        self._pseudo = pseudonym_key
        self._rows: dict[str, tuple[Any, RowSeal | None]] = {}
        self._events: dict[tuple[str, Any], tuple[float, EventSeal]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return "Sealer()"

    def for_rows(self, topic: str, dataset_name: str) -> RowSeal | None:
        """The plan for change events of ``dataset_name`` on ``topic`` (None: nothing to seal)."""
        ds = self.catalog.find(dataset_name)
        hit = self._rows.get(topic)
        if hit is not None and hit[0] is ds:
            return hit[1]
        plan = None
        if ds is not None:
            pii = frozenset(c.name for c in ds.columns if any(_catalog_pii(t) for t in c.tags))
            if pii:
                plan = RowSeal(self.keys, topic, pii, erasure_subject(ds),
                               any(k in pii for k in ds.primary_key), self._pseudo)
        with self._lock:
            self._rows[topic] = (ds, plan)
        return plan

    def for_event(self, topic: str, paths: frozenset[str], annotations: Mapping[str, Any]) -> EventSeal:
        """The plan for events of ``topic`` whose schemas classify ``paths`` as PII and carry
        the root ``annotations`` (``x-dataset``, ``x-erasure-subject``)."""
        key = (topic, paths, _freeze(annotations))
        now = time.monotonic()
        hit = self._events.get(key)
        if hit is not None and now - hit[0] < _TTL:
            return hit[1]
        plan = EventSeal(self.keys, topic, tuple(sorted(paths)), self._subject(topic, annotations))
        with self._lock:
            if len(self._events) > 10_000:
                self._events.clear()
            self._events[key] = (now, plan)
        return plan

    def _subject(self, topic: str, annotations: Mapping[str, Any]) -> SubjectRule:
        declared = annotations.get("x-erasure-subject")
        if isinstance(declared, Mapping) and isinstance(declared.get("field"), str) \
                and isinstance(declared.get("namespace"), str):
            return SubjectRule(declared["namespace"].strip().lower(), declared["field"])
        dataset = annotations.get("x-dataset")
        if isinstance(dataset, str):
            ds = self.catalog.find(dataset)
            if ds is not None:
                return erasure_subject(ds)
        return SubjectRule(f"events.{topic}".lower(), None)

    def open(self, sealed: str) -> SealContext | None:
        """:func:`open_value` with this sealer's keys."""
        return open_value(self.keys, sealed)


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value


# -- payload paths ----------------------------------------------------------------------------
_MISSING = object()


def _parse(path: str) -> list[tuple[str, tuple[str, ...]]]:
    """``items[].email`` -> ``[("items", ("[]",)), ("email", ())]``."""
    out = []
    for segment in path.split("."):
        ops: list[str] = []
        while segment.endswith(("[]", "{}")):
            ops.insert(0, segment[-2:])
            segment = segment[:-2]
        out.append((segment, tuple(ops)))
    return out


def _get(data: Any, parts: list[str]) -> Any:
    for part in parts:
        if isinstance(data, Mapping) and part in data:
            data = data[part]
        else:
            return _MISSING
    return data


def _transform(node: Any, parts: list[tuple[str, tuple[str, ...]]], fn: Callable[[Any], Any]) -> Any:
    """A copy of ``node`` with ``fn`` applied at the path (containers copied on the way only)."""
    if not parts:
        return fn(node)
    (name, ops), rest = parts[0], parts[1:]
    if name:
        if not isinstance(node, Mapping) or name not in node:
            return node
        out = dict(node)
        out[name] = _through(node[name], ops, rest, fn)
        return out
    return _through(node, ops, rest, fn)


def _through(node: Any, ops: tuple[str, ...], rest: list[Any], fn: Callable[[Any], Any]) -> Any:
    if not ops:
        return _transform(node, rest, fn)
    op, more = ops[0], ops[1:]
    if op == "[]" and isinstance(node, list):
        return [_through(v, more, rest, fn) for v in node]
    if op == "{}" and isinstance(node, Mapping):
        return {k: _through(v, more, rest, fn) for k, v in node.items()}
    return node


def walk_sealed(node: Any, fn: Callable[[str], Any]) -> Any:
    """A copy of ``node`` with ``fn`` applied to every sealed string anywhere inside."""
    if isinstance(node, str):
        return fn(node) if node.startswith(SEALED_PREFIX) else node
    if isinstance(node, Mapping):
        return {k: walk_sealed(v, fn) for k, v in node.items()}
    if isinstance(node, list):
        return [walk_sealed(v, fn) for v in node]
    return node
