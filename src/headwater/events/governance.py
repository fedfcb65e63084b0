"""The governed doors to the event side: one object the SDK, CLI and HTTP service all go through.

:class:`EventGovernance` (``platform.event_governance``) hands out, for a principal,

* producers (:class:`~headwater.events.governed.GovernedProducer`): ``publish`` on the topic,
  never a reserved (CDC) topic; every payload validated against the topic's own schema and its
  PII fields sealed (:mod:`headwater.events.sealing`);
* consumers (:class:`~headwater.events.governed.GovernedConsumer`): ``consume`` on the topic;
  sealed values opened, then the dataset's column rules and row filters applied when the topic
  is derived from a dataset (:meth:`EventGovernance.dataset_of`);
* a whole governed bus (:class:`~headwater.events.governed.GovernedBus`) for code written against
  the ``Bus`` protocol (consumers, routers, sinks run as a principal); topics are created and
  deleted with ``admin``, raw publishing is refused;
* schema registration (:meth:`EventGovernance.register_schema`): ``register`` on the subject's
  topic, and ``declassify`` too for a version that weakens a classification;
* dead letters (:class:`GovernedDeadLetters`): ``admin`` on each letter's topic to list, show,
  replay or discard it; values are shown as stored (sealed PII stays sealed).

The raw bus (``platform.bus``) and the unchecked producer (``platform.producer()`` without a
principal, which still seals) are for the platform's own components. Change data capture
connectors publish through :attr:`EventGovernance.provenance`'s signing bus, and the pipeline
applies only what verifies (:mod:`headwater.events.provenance`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

from headwater.errors import AccessDenied, InvalidInput, NotFound
from headwater.events.acl import CDC_PREFIX, TopicACL, subject_topic
from headwater.principal import Principal

__all__ = ["EventGovernance", "GovernedDeadLetters"]

_TTL = 5.0


class EventGovernance:
    """Topic ACLs, sealing, provenance and the governed producers, consumers and registry calls
    of one platform (see the module docstring)."""

    def __init__(self, platform: Any, *, provenance_key: bytes, pseudonym_key: bytes) -> None:
        from headwater.events.provenance import Provenance

        self.platform = platform
        self.acl = TopicACL(platform, reserved_prefixes=platform.config.events.reserved_prefixes)
        self.provenance = Provenance(provenance_key)
        """Signs what the CDC connectors publish; the pipeline verifies it."""
        self._pseudonym_key = pseudonym_key
        self._sealer: Any = None
        self._validator: Any = None
        self._datasets: dict[str, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"EventGovernance({self.acl!r})"

    # -- shared machinery ----------------------------------------------------------------------
    @property
    def sealer(self) -> Any:
        """The platform's :class:`~headwater.events.sealing.Sealer`."""
        if self._sealer is None:
            from headwater.events.sealing import Sealer

            self._sealer = Sealer(self.platform.subject_keys, self.platform.catalog,
                                  pseudonym_key=self._pseudonym_key)
        return self._sealer

    @property
    def validator(self) -> Any:
        """One :class:`~headwater.events.producer.SchemaValidator` shared by every producer."""
        if self._validator is None:
            from headwater.events.producer import SchemaValidator

            self._validator = SchemaValidator(self.platform.schema_registry)
        return self._validator

    def reserved(self, topic: str) -> bool:
        """Whether ``topic`` is written by the platform's connectors only."""
        return self.acl.reserved(topic)

    def dataset_of(self, topic: str) -> Any:
        """The catalogued dataset a topic is derived from, or None.

        ``cdc.<store>.<schema>.<table>`` is ``<store>.<table>``; any other topic whose latest
        value schema declares ``"x-dataset": "<store>.<table>"`` is that dataset (routing
        targets declare it this way). Cached for a few seconds.
        """
        now = time.monotonic()
        hit = self._datasets.get(topic)
        if hit is not None and now - hit[0] < _TTL:
            return hit[1]
        name: str | None = None
        parts = topic.split(".")
        if topic.casefold().startswith(CDC_PREFIX) and len(parts) >= 4:
            name = f"{parts[1]}.{parts[-1]}"
        else:
            try:
                compiled = self.validator.for_subject(f"{topic}-value")
            except NotFound:
                compiled = None
            declared = compiled.notes.get("x-dataset") if compiled is not None else None
            if isinstance(declared, str):
                name = declared
        ds = self.platform.catalog.find(name) if name else None
        with self._lock:
            if len(self._datasets) > 10_000:
                self._datasets.clear()
            self._datasets[topic] = (now, ds)
        return ds

    def internal_producer(self, source: str = "/headwater") -> Any:
        """An unchecked producer for the platform's own components (validates and seals)."""
        from headwater.events.producer import Producer

        return Producer(self.platform.bus, validator=self.validator, source=source, sealer=self.sealer)

    # -- doors for principals ------------------------------------------------------------------
    def producer(self, principal: Principal | str, source: str | None = None) -> Any:
        """A producer that publishes as ``principal`` (see :class:`GovernedProducer`)."""
        from headwater.events.governed import GovernedProducer

        who = Principal.of(principal)
        return GovernedProducer(self, who, source or f"/headwater/{who.name}")

    def consumer(self, principal: Principal | str, topic: str, group: str, *, options: Any = None) -> Any:
        """A consumer of ``topic`` in ``group`` for ``principal`` (see :class:`GovernedConsumer`)."""
        from headwater.events.governed import GovernedConsumer

        return GovernedConsumer(self, Principal.of(principal), topic, group, options=options)

    def bus(self, principal: Principal | str) -> Any:
        """The bus as ``principal`` may use it (see :class:`GovernedBus`)."""
        from headwater.events.governed import GovernedBus

        return GovernedBus(self, Principal.of(principal))

    def dead_letters(self, principal: Principal | str) -> GovernedDeadLetters:
        """The dead letters of the topics ``principal`` administers."""
        return GovernedDeadLetters(self, Principal.of(principal))

    def topics(self, principal: Principal | str) -> list[Any]:
        """Topics on which ``principal`` may do anything."""
        from headwater.policy import RESOURCE_ACTIONS

        actions = RESOURCE_ACTIONS["topics"]
        return [t for t in self.platform.bus.topics()
                if any(self.acl.allowed(principal, t.name, a) for a in actions)]

    def create_topic(self, principal: Principal | str, name: str, partitions: int = 1) -> Any:
        """Create a topic (``admin`` on it; audited)."""
        self.acl.check(principal, name, "admin")
        info = self.platform.bus.create_topic(name, partitions)
        self.acl.allow(principal, name, "admin", operation="create", partitions=partitions)
        return info

    def delete_topic(self, principal: Principal | str, name: str) -> None:
        """Delete a topic with its messages (``admin`` on it; audited)."""
        self.acl.check(principal, name, "admin")
        self.platform.bus.delete_topic(name)
        self.acl.allow(principal, name, "admin", operation="delete")

    # -- schema registry -----------------------------------------------------------------------
    def register_schema(self, principal: Principal | str, subject: str, schema: Any, schema_type: Any = "JSON",
                        *, references: Sequence[Any] | None = None) -> Any:
        """Register a schema version as ``principal``: ``register`` on the subject's topic (never
        a reserved topic), plus ``declassify`` when the version drops or weakens an ``x-pii``
        classification, a field that had one, or the ``x-dataset``/``x-erasure-subject``
        annotations of the subject's latest version. Checked inside the registration's
        transaction; audited. Returns the :class:`~headwater.events.registry.RegistrationResult`."""
        from headwater.audit import AuditEvent

        if not isinstance(subject, str) or not subject.strip():
            raise InvalidInput("subject must be a non-empty string")
        who = Principal.of(principal)
        topic = subject_topic(subject)
        self.acl.check_write(who, topic, "register")
        declassified: list[str] = []

        def declassify(weakened: list[str]) -> None:
            try:
                self.acl.check_write(who, topic, "declassify")
            except AccessDenied as err:
                raise AccessDenied(f"{err}; the new version of {subject} weakens the classification of "
                                   f"{', '.join(weakened)}", **err.context) from None
            declassified.extend(weakened)

        result = self.platform.schema_registry.register_detailed(
            subject, schema, schema_type, references=references, on_declassify=declassify)
        stype = getattr(schema_type, "value", schema_type)
        self.platform.record(AuditEvent(
            actor=who.name, action="schema_register", reason=f"{subject} -> id {result.id}",
            extra={"subject": subject, "schema_id": result.id, "schema_type": str(stype).upper(),
                   "version": result.version, "declassified": declassified}))
        return result

    def check_subject(self, principal: Principal | str, subject: str, action: str = "admin") -> None:
        """Allow a change to ``subject`` itself (delete, compatibility level) as ``action`` on its
        topic, or raise :class:`AccessDenied` (audited)."""
        self.acl.check(principal, subject_topic(subject), action)

    # -- dead letters --------------------------------------------------------------------------
    def replay(self, principal: Principal | str, **options: Any) -> Any:
        """:meth:`GovernedDeadLetters.replay` for ``principal``."""
        return self.dead_letters(principal).replay(**options)


class GovernedDeadLetters:
    """The dead-letter store as one principal may use it: ``admin`` on a letter's topic to see,
    replay or discard it. Letters keep the bytes the bus held (sealed PII stays sealed)."""

    def __init__(self, governance: EventGovernance, principal: Principal) -> None:
        self.gov = governance
        self.principal = principal
        self.store = governance.platform.dead_letters

    def __repr__(self) -> str:
        return f"GovernedDeadLetters(principal={self.principal.name!r})"

    def _mine(self, letters: list[Any]) -> list[Any]:
        ok: dict[str, bool] = {}
        out = []
        for dl in letters:
            topic = dl.reason.topic
            if topic not in ok:
                ok[topic] = self.gov.acl.allowed(self.principal, topic, "admin")
            if ok[topic]:
                out.append(dl)
        return out

    def list(self, *, limit: int | None = 100, **filters: Any) -> list[Any]:
        """Dead letters matching ``filters`` (as :meth:`DeadLetterStore.list`) on topics the
        principal administers; naming a topic it does not administer is denied (audited)."""
        if filters.get("topic") is not None:
            self.gov.acl.check(self.principal, filters["topic"], "admin")
            return self.store.list(limit=limit, **filters)
        if self.gov.platform.policy_engine() is None:
            return self.store.list(limit=limit, **filters)
        # Filtered after reading, a page at a time, until ``limit`` letters of allowed topics.
        out: list[Any] = []
        after: int | None = None
        page_size = 500
        while True:
            page = self.store.list(limit=page_size, after_id=after, **filters)
            out.extend(self._mine(page))
            if len(page) < page_size or (limit is not None and len(out) >= limit):
                break
            after = page[-1].id
        return out[:limit] if limit is not None else out

    def get(self, dead_letter_id: int) -> Any:
        """One dead letter (``admin`` on its topic)."""
        dl = self.store.get(dead_letter_id)
        self.gov.acl.check(self.principal, dl.reason.topic, "admin")
        return dl

    def discard(self, dead_letter_id: int) -> None:
        """Give up on a dead letter (``admin`` on its topic; audited)."""
        dl = self.get(dead_letter_id)
        self.store.discard(dl.id)
        self.gov.acl.allow(self.principal, dl.reason.topic, "admin", operation="discard", dead_letter=dl.id)

    def replay(self, *, to_topic: str | None = None, limit: int | None = None, actor: str | None = None,
               **options: Any) -> Any:
        """Re-publish dead letters bytes-intact (:meth:`DeadLetterStore.replay`): only letters of
        topics the principal administers; ``to_topic`` needs ``publish`` there and is never a
        reserved topic (a letter goes back to its own CDC topic only, where the pipeline verifies
        it again). Audited as ``replay``."""
        from headwater.audit import AuditEvent

        filter_keys = ("status", "topic", "consumer_group", "stage", "error_class", "event_type", "since",
                       "until", "ids")
        filters = {k: options.pop(k) for k in filter_keys if k in options}
        if to_topic is not None:
            self.gov.acl.check_write(self.principal, to_topic, "publish")
        letters = self.list(limit=limit, **filters)
        report = self.store.replay(self.gov.platform.bus, to_topic=to_topic, ids=[d.id for d in letters] or [-1],
                                   status=filters.get("status", "dead"), **options)
        self.gov.platform.record(AuditEvent(
            actor=actor or self.principal.name, action="replay", rows=report.replayed,
            reason=f"{report.replayed} replayed, {report.refused} refused",
            extra={"dry_run": bool(options.get("dry_run")), "to_topic": to_topic,
                   "filters": {k: str(v) for k, v in filters.items()},
                   "topics": sorted({d.reason.topic for d in letters})}))
        return report
