"""Row-image schemas of captured tables in the schema registry, and halting on incompatible change.

Every captured table has one subject per topic (Confluent's *TopicNameStrategy*:
``<topic>-value``) holding a JSON Schema of its row image (the ``before``/``after`` object of
its change events)::

    {"type": "object", "title": "<schema>.<table>",
     "properties": {"id": {"type": ["integer", "null"]}, "name": {"type": ["string", "null"]}},
     "required": ["id"],            # the key columns
     "additionalProperties": false}

The content model is closed, so under the subject's compatibility rule (the registry's, by
default ``BACKWARD``) adding a column is compatible, while changing a column's JSON type or
dropping a column is not; ``FORWARD``/``FULL`` also refuse an added column.

:class:`SchemaTracker` is what the connectors call whenever they learn a table's shape (the
initial snapshot, each pgoutput ``Relation`` message, a SQLite schema change). A new shape
registers a new version; an incompatible one **halts that table**: the tracker records the
error, calls ``on_alert`` and returns False, and the connector publishes nothing more of the
table and confirms no position past its first unpublished change.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["HaltedTable", "SchemaTracker", "json_type_of_pg", "json_type_of_sqlite", "row_schema"]

log = logging.getLogger("headwater.cdc")

_PG_JSON_TYPES: dict[int, Any] = {
    16: "boolean", 20: "integer", 21: "integer", 23: "integer", 26: "integer",
    700: "number", 701: "number", 114: None, 3802: None,
    1000: "array", 1005: "array", 1007: "array", 1016: "array", 1009: "array", 1015: "array",
    1014: "array", 2951: "array", 1231: "array", 1021: "array", 1022: "array", 1115: "array",
    1185: "array", 1182: "array", 199: "array", 3807: "array",
}


def json_type_of_pg(type_oid: int) -> str | None:
    """The JSON type a Postgres column's values take in change events (None: any JSON value).

    Numeric, dates, times and text are strings (numeric keeps its exact text)."""
    return _PG_JSON_TYPES.get(type_oid, "string")


def json_type_of_sqlite(decl: str) -> str | None:
    """The JSON type of a SQLite column (by declared type affinity) in change events."""
    d = (decl or "").upper()
    if "BOOL" in d:
        return "boolean"
    if "INT" in d:
        return "integer"
    if any(s in d for s in ("CHAR", "CLOB", "TEXT", "DATE", "TIME", "BLOB")):
        return "string"
    if any(s in d for s in ("REAL", "FLOA", "DOUB", "NUMERIC", "DECIMAL")):
        return "number"
    return None  # no declared type: any value


def row_schema(
    table: str,
    columns: Sequence[tuple[str, str | None]],
    key: Sequence[str] = (),
    classification: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The closed JSON Schema of a row image: ``columns`` are (name, JSON type or None)."""
    props: dict[str, Any] = {}
    for name, jtype in columns:
        prop: dict[str, Any] = {} if jtype is None else {"type": [jtype, "null"]}
        tag = (classification or {}).get(name)
        if tag:
            prop["x-pii"] = tag
        props[name] = prop
    schema: dict[str, Any] = {"type": "object", "title": table, "properties": props,
                              "additionalProperties": False}
    if key:
        schema["required"] = list(key)
    return schema


@dataclass
class HaltedTable:
    """A table the connector stopped because its new shape is incompatible."""

    table: str
    subject: str
    error: str
    since: float = field(default_factory=time.time)
    """Unix time of the halt."""

    def to_dict(self) -> dict[str, Any]:
        """JSON form for status documents and alert hooks."""
        return {"table": self.table, "subject": self.subject, "error": self.error, "since": self.since}


class SchemaTracker:
    """Registers each captured table's row schema and decides whether its changes may flow.

    ``registry`` is a :class:`~headwater.events.registry.SchemaRegistry` (None: shapes are
    tracked, nothing is registered and nothing halts). ``on_alert(info)`` is called once per
    halt with ``{"kind": "schema_incompatible", "table", "subject", "error", "since"}``.
    ``classify(table)`` may return ``{column: pii tag}`` to label fields with ``x-pii``.
    """

    def __init__(
        self,
        registry: Any = None,
        *,
        on_alert: Callable[[dict[str, Any]], None] | None = None,
        classify: Callable[[str], Mapping[str, str]] | None = None,
    ) -> None:
        self.registry = registry
        self.on_alert = on_alert
        self.classify = classify
        self.halted: dict[str, HaltedTable] = {}
        """Tables halted by an incompatible shape, by ``schema.table``."""
        self.versions: dict[str, int] = {}
        """Registered version of each table's current shape (when a registry is set)."""
        self._shapes: dict[str, tuple[Any, ...]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SchemaTracker(tables={len(self._shapes)}, halted={sorted(self.halted)})"

    @staticmethod
    def subject_for(topic: str) -> str:
        """The registry subject of a topic's row schema (``<topic>-value``)."""
        return f"{topic}-value"

    def is_halted(self, table: str) -> bool:
        """Whether ``table`` (``schema.table``) is halted."""
        return table in self.halted

    def observe(self, table: str, topic: str, columns: Sequence[tuple[str, str | None]],
                key: Sequence[str] = ()) -> bool:
        """Record the shape of ``table``; False when the table is (now) halted.

        The same shape as last time is a dictionary lookup. A new one is registered under
        ``<topic>-value``; an incompatible one halts the table (see the module docstring).
        """
        shape = (tuple(columns), tuple(key))
        with self._lock:
            if table in self.halted:
                return False
            if self._shapes.get(table) == shape:
                return True
        if self.registry is None:
            with self._lock:
                self._shapes[table] = shape
            return True
        from headwater.events.registry.errors import IncompatibleSchema, UnclassifiedPII

        subject = self.subject_for(topic)
        tags = self.classify(table) if self.classify is not None else None
        schema = row_schema(table, columns, key, tags)
        try:
            result = self.registry.register_detailed(subject, schema, "JSON")
        except (IncompatibleSchema, UnclassifiedPII) as err:
            halt = HaltedTable(table, subject, f"{type(err).__name__}: {err}")
            with self._lock:
                self.halted[table] = halt
            log.error("CDC halted %s: its new shape is not accepted by %s: %s", table, subject, err)
            if self.on_alert is not None:
                try:
                    self.on_alert({"kind": "schema_incompatible", **halt.to_dict()})
                except Exception:  # noqa: BLE001 - an alert hook must not stop the other tables
                    log.exception("CDC alert hook failed for %s", table)
            return False
        with self._lock:
            self._shapes[table] = shape
            self.versions[table] = result.version
        if result.created and result.version > 1:
            log.info("CDC: %s changed shape; registered %s version %d", table, subject, result.version)
        return True

    def resume(self, table: str) -> None:
        """Forget a halt (after the subject's rule was changed or consumers were migrated); the
        next shape of the table is checked again."""
        with self._lock:
            self.halted.pop(table, None)
            self._shapes.pop(table, None)
