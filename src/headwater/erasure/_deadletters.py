"""Dead letters that carry a data subject: find, delete, verify.

Dead letters keep the original message bytes (``hw_dead_letters`` in the metadata store). A
dead letter carries the subject when its JSON event has a field naming the subject's key with
the subject's value anywhere in its data (``customer_id: 123``, or ``after.id: 123`` in a
Debezium change event), or when its key or CloudEvents subject is the value. A generic field
name (``id``) or a bare key only counts when the event is about the subject's dataset: its
topic, type or source names the table (``cdc.app.public.customers``, ``customer.updated``),
so order 123 is not mistaken for customer 123. A dead letter also carries the subject when any
value in it is sealed under one of the subject's keys (``hwenc:v1:...``, see
:mod:`headwater.subject_keys`): the sealed payload names its key id, which erasure recomputes
from the subject (even once the key is shredded), so sealed payloads are found whether or not
the key field is in clear, JSON or not. Other messages that are not JSON cannot be searched;
they are counted and reported, never silently passed over.

Dead letters are deleted in both erasure modes: an anonymised copy of a failed event has no
use, and the record of the failure is in the audit log.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from headwater.events.dlq import dead_letters_table
from headwater.retention.holds import Subject

__all__ = ["DeadLetterMatch", "delete_dead_letters", "match_dead_letters"]

_TOKENS = re.compile(r"[^a-z0-9]+")
_SEALED = re.compile(rb"hwenc:v1:([A-Za-z0-9+/]+={0,2})")
_KEY_ID = slice(4, 20)
"""Where a sealed blob carries its key id (after the ``HWS1`` magic)."""
_BATCH = 500


@dataclass(slots=True)
class DeadLetterMatch:
    """Dead letters that carry the subject, and how many could not be searched."""

    ids: list[int]
    unparseable: int


def _singular(word: str) -> str:
    if word.endswith("ies") and len(word) > 3:
        return word[:-3] + "y"
    if word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def subject_fields(subject: Subject, derived: Iterable[str]) -> tuple[set[str], set[str]]:
    """(specific, generic) field names that carry the subject's key in event payloads."""
    table = subject.table.lower()
    col = subject.column.lower()
    specific = {f"{_singular(table)}_{col}", f"{table}_{col}", f"{_singular(table)}{col}"}
    specific |= {d.lower() for d in derived if d.lower() != col}
    generic = {col}
    if _singular(table) in col:
        specific.add(col)
        generic.discard(col)
    return specific, generic


def _about(table: str, *texts: str | None) -> bool:
    names = {table.lower(), _singular(table.lower())}
    return any(names & set(_TOKENS.split(t.lower())) for t in texts if t)


def _same(value: Any, wanted: str) -> bool:
    if isinstance(value, bool) or value is None:
        return False
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int | float | str):
        return str(value) == wanted
    return False


def _walk(node: Any, specific: set[str], generic: set[str], wanted: str, about: bool) -> bool:
    stack = [node]
    while stack:
        cur = stack.pop()
        if isinstance(cur, dict):
            for k, v in cur.items():
                name = str(k).lower()
                if (name in specific or (about and name in generic)) and _same(v, wanted):
                    return True
                if isinstance(v, dict | list):
                    stack.append(v)
        elif isinstance(cur, list):
            stack.extend(x for x in cur if isinstance(x, dict | list))
    return False


def _rows(engine: sa.Engine) -> Iterator[Any]:
    t = dead_letters_table
    last = 0
    while True:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(t.c.id, t.c.topic, t.c.event_type, t.c.event_source, t.c.event_subject,
                                          t.c.message_key, t.c.value)
                                .where(t.c.id > last).order_by(t.c.id).limit(_BATCH)).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].id


def _sealed_for(raw: bytes, key_ids: set[bytes]) -> bool:
    """Whether ``raw`` holds a value sealed under one of ``key_ids``."""
    for m in _SEALED.finditer(raw):
        try:
            blob = base64.b64decode(m.group(1), validate=True)
        except (binascii.Error, ValueError):
            continue
        if blob[_KEY_ID] in key_ids:
            return True
    return False


def match_dead_letters(engine: sa.Engine, subject: Subject, derived: Iterable[str] = (),
                       key_ids: Iterable[bytes] = ()) -> DeadLetterMatch:
    """Every dead letter (any status) that carries ``subject``; ``key_ids`` are the subject's
    key ids (:meth:`SubjectKeys.key_id`), matched in sealed values."""
    specific, generic = subject_fields(subject, derived)
    wanted = subject.value
    kids = set(key_ids)
    ids: list[int] = []
    unparseable = 0
    for r in _rows(engine):
        about = _about(subject.table, r.topic, r.event_type, r.event_source)
        if about and wanted in (r.message_key, r.event_subject):
            ids.append(r.id)
            continue
        raw = bytes(r.value)
        if kids and b"hwenc:v1:" in raw and _sealed_for(raw, kids):
            ids.append(r.id)
            continue
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            unparseable += 1
            continue
        data = doc.get("data") if isinstance(doc, dict) and "specversion" in doc else doc
        if isinstance(data, str):  # a JSON payload carried as text
            try:
                data = json.loads(data)
            except ValueError:
                data = None
        if data is not None and _walk(data, specific, generic, wanted, about):
            ids.append(r.id)
    return DeadLetterMatch(ids, unparseable)


def delete_dead_letters(engine: sa.Engine, ids: list[int]) -> int:
    """Delete dead letters by id in one transaction; returns how many went."""
    if not ids:
        return 0
    t = dead_letters_table
    n = 0
    with engine.begin() as conn:
        for i in range(0, len(ids), _BATCH):
            n += conn.execute(sa.delete(t).where(t.c.id.in_(ids[i:i + _BATCH]))).rowcount or 0
    return n
