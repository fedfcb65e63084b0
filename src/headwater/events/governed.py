"""Producers, consumers and a bus for one principal (obtained from
:class:`~headwater.events.governance.EventGovernance`).

:class:`GovernedConsumer` returns the same :class:`~headwater.events.bus.base.Message` objects
the bus delivered -- ``value`` still the bytes the bus holds (so dead letters keep the sealed
form) -- whose :meth:`~headwater.events.bus.base.Message.event` is the governed event and whose
``original`` attribute is the event as stored. Governing a fetched batch:

0. on a reserved (CDC) topic, a message the connector did not sign is acknowledged and not
   returned (the pipeline dead-letters such messages; no consumer takes them for changes);
1. sealed values are opened: a value opens where it was sealed (same topic, and for rows the
   same column); a value sealed on another topic opens only when the principal may consume that
   topic and, for a dataset-derived one, sees that column unmasked on every row; otherwise it
   stays sealed. A shredded subject's values become None;
2. when the topic is derived from a dataset (:meth:`EventGovernance.dataset_of`), each row
   image -- ``before``/``after`` of a change event, else the payload object -- goes through the
   dataset's column rules and row filters for the principal (:class:`~headwater.events._rows.
   RowRules`); an event none of whose images is visible is acknowledged and not returned (the
   principal may not see it; it is done for the group).

Images are governed as a whole batch (one DuckDB evaluation per fetch).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from headwater.errors import AccessDenied, InvalidInput
from headwater.events.bus.base import Message, PublishResult, SubscriptionOptions, TopicInfo
from headwater.events.bus.errors import InvalidEvent
from headwater.events.envelope import Event
from headwater.events.producer import Producer
from headwater.principal import Principal

__all__ = ["GovernedBus", "GovernedConsumer", "GovernedProducer"]

log = logging.getLogger("headwater")

_CHANGE_TYPE = "io.headwater.cdc.change"  # headwater.cdc.base.CHANGE_TYPE (no import of cdc here)


class GovernedProducer(Producer):
    """A producer publishing as one principal: ``publish`` on each topic (audited once per topic,
    denials every time), never a reserved topic; payloads validated against the topic's own
    subject (``strict``) and their PII fields sealed."""

    def __init__(self, governance: Any, principal: Principal, source: str) -> None:
        super().__init__(governance.platform.bus, validator=governance.validator, source=source,
                         sealer=governance.sealer, strict=True)
        self.gov = governance
        self.principal = principal
        self._granted: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"GovernedProducer(principal={self.principal.name!r}, source={self.source!r})"

    def authorize(self, topic: str) -> None:
        """Allow publishing to ``topic`` or raise :class:`AccessDenied` (audited)."""
        engine = self.gov.platform.policy_engine()
        if self._granted.get(topic, False) is engine and engine is not None:
            return
        self.gov.acl.check_write(self.principal, topic, "publish")
        if topic not in self._granted:
            self.gov.acl.allow(self.principal, topic, "publish")
        self._granted[topic] = engine

    def prepare(self, topic: str, event: Event, *, version: int | str = "latest") -> Event:
        """Authorise, then stamp, validate and seal (see :meth:`Producer.prepare`)."""
        self.authorize(topic)
        return super().prepare(topic, event, version=version)


class GovernedConsumer:
    """A member of ``group`` on ``topic`` consuming as one principal (see the module docstring).

    Joining needs ``consume`` on the topic (and ``select`` on its dataset when it has one); a CDC
    topic whose dataset is not catalogued is refused once a policy is applied (its column rules
    cannot be known). Groups named ``hw-*`` are the platform's own.
    """

    def __init__(self, governance: Any, principal: Principal, topic: str, group: str, *,
                 options: SubscriptionOptions | None = None) -> None:
        self.gov = governance
        self.principal = principal
        self.topic = topic
        self.group = group
        acl = governance.acl
        acl.check_group(principal, group)
        acl.check(principal, topic, "consume")
        platform = governance.platform
        engine = platform.policy_engine()
        self.dataset = governance.dataset_of(topic)
        self.rules: Any = None
        if engine is not None:
            if self.dataset is None and governance.reserved(topic):
                err = AccessDenied(f"{principal.name} may not consume {topic}: it carries rows of a dataset "
                                   "that is not catalogued, so its column rules are unknown (rule "
                                   "uncatalogued-source)", rule="uncatalogued-source", topic=topic,
                                   principal=principal.name)
                acl.deny(principal, topic, "consume", err)
                raise err
            if self.dataset is not None:
                from headwater.events._rows import RowRules

                try:
                    self.rules = RowRules(engine, self.dataset, principal)
                except AccessDenied as err:
                    acl.deny(principal, topic, "consume", err)
                    raise
        self._foreign: dict[str, Any] = {}
        self.consumer = platform.bus.subscribe(topic, group, options=options)
        acl.allow(principal, topic, "consume", group=group,
                  dataset=self.dataset.name if self.dataset is not None else None)

    def __repr__(self) -> str:
        return f"GovernedConsumer(topic={self.topic!r}, group={self.group!r}, principal={self.principal.name!r})"

    # -- the Consumer protocol -------------------------------------------------------------------
    def fetch(self, max_messages: int = 100, timeout: float = 1.0) -> list[Message]:
        """Up to ``max_messages`` governed deliveries (events the principal may not see are
        acknowledged and left out, so a call may return fewer, even none)."""
        messages = self.consumer.fetch(max_messages, timeout)
        if not messages:
            return messages
        shown, hidden = self._govern(messages)
        if hidden:
            self.consumer.ack_many(hidden)
        return shown

    def ack(self, message: Message) -> None:
        """Mark ``message`` done for the group."""
        self.consumer.ack(message)

    def ack_many(self, messages: Sequence[Message]) -> None:
        """Ack several messages."""
        self.consumer.ack_many(messages)

    def nack(self, message: Message, delay: float = 0.0) -> None:
        """Give ``message`` back for redelivery after ``delay`` seconds."""
        self.consumer.nack(message, delay)

    def committed(self) -> dict[int, int]:
        """Partition -> committed offset."""
        return self.consumer.committed()  # type: ignore[no-any-return]

    def lag(self) -> dict[int, int]:
        """Partition -> messages not yet acked by the group."""
        return self.consumer.lag()  # type: ignore[no-any-return]

    def close(self) -> None:
        """Leave the group (and release the column-rule evaluator)."""
        try:
            self.consumer.close()
        finally:
            if self.rules is not None:
                self.rules.close()

    def __enter__(self) -> GovernedConsumer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- governing ---------------------------------------------------------------------------
    def _open(self, value: str, field: str | None) -> Any:
        """The value behind a sealed string as this principal may see it (see the module doc)."""
        try:
            ctx = self.gov.sealer.open(value)
        except InvalidInput:
            return value  # not sealed by the platform (or damaged): shown as it is
        if ctx is None:
            return None  # the subject was shredded
        if ctx.topic == self.topic and (field is None or ctx.field == field):
            return ctx.value
        return ctx.value if self._may_open_foreign(ctx.topic, ctx.field) else value

    def _may_open_foreign(self, topic: str, field: str) -> bool:
        key = f"{topic}\x00{field}"
        hit = self._foreign.get(key)
        if hit is None:
            hit = False
            engine = self.gov.platform.policy_engine()
            if engine is None:
                hit = True
            elif self.gov.acl.allowed(self.principal, topic, "consume"):
                ds = self.gov.dataset_of(topic)
                if ds is None:
                    hit = not self.gov.reserved(topic)
                else:
                    from headwater.events._rows import RowRules

                    try:
                        rules = RowRules(engine, ds, self.principal)
                        hit = rules.column_clear(field)
                        rules.close()
                    except AccessDenied:
                        hit = False
            self._foreign[key] = hit
        return hit

    def _open_row(self, row: Any) -> Any:
        if not isinstance(row, Mapping):
            return row
        from headwater.events.sealing import is_sealed

        if not any(is_sealed(v) for v in row.values()):
            return row
        return {k: self._open(v, k) if is_sealed(v) else v for k, v in row.items()}

    def _govern(self, messages: list[Message]) -> tuple[list[Message], list[Message]]:
        from headwater.events.sealing import walk_sealed

        shown: list[Message] = []
        hidden: list[Message] = []
        rows: list[tuple[Message, Event, str]] = []  # (message, event, kind: change | row)
        images: list[Any] = []
        verify = self.gov.provenance.verify if self.gov.reserved(self.topic) else None
        for m in messages:
            if verify is not None and not verify(m.topic, m.value):
                # Not written by the platform's connector: no consumer is shown it as a change.
                log.warning("%s@%s:%s is not signed by the connector; not shown to %s", m.topic, m.partition,
                            m.offset, self.principal.name)
                hidden.append(m)
                continue
            try:
                ev = m.event()
            except InvalidEvent:
                shown.append(m)  # consumers dead-letter it at the deserialise stage
                continue
            m.original = ev  # type: ignore[attr-defined]
            data = ev.data
            if self.dataset is not None and isinstance(data, Mapping):
                if ev.type == _CHANGE_TYPE and ("before" in data or "after" in data):
                    rows.append((m, ev, "change"))
                    images.append(self._open_row(data.get("before")))
                    images.append(self._open_row(data.get("after")))
                    continue
                if ev.type != _CHANGE_TYPE and not self.gov.reserved(self.topic):
                    rows.append((m, ev, "row"))
                    images.append(self._open_row(data))
                    continue
            opened = walk_sealed(data, lambda v: self._open(v, None))
            m._event = ev if opened is data else ev._evolve(data=opened)
            shown.append(m)
        if rows:
            governed = self.rules.apply(images) if self.rules is not None else images
            i = 0
            for m, ev, kind in rows:
                if kind == "change":
                    before, after = governed[i], governed[i + 1]
                    i += 2
                    data = ev.data
                    visible = (before is not None or after is not None
                               or (data.get("before") is None and data.get("after") is None))
                    new = {**data, "before": before, "after": after}
                else:
                    new = governed[i]
                    i += 1
                    visible = new is not None
                if not visible:
                    hidden.append(m)
                    continue
                m._event = ev._evolve(data=new)
                shown.append(m)
            order = {id(m): i for i, m in enumerate(messages)}
            shown.sort(key=lambda m: order[id(m)])
        return shown, hidden


class GovernedBus:
    """The bus as one principal may use it (the :class:`~headwater.events.bus.base.Bus`
    protocol): ``create_topic``/``delete_topic`` need ``admin``; ``topics`` lists those the
    principal has any grant on; ``publish``/``publish_many`` go through a
    :class:`GovernedProducer` (validated against the topic's schema, PII sealed);
    ``publish_raw`` is refused; ``subscribe`` returns a :class:`GovernedConsumer`."""

    def __init__(self, governance: Any, principal: Principal) -> None:
        self.gov = governance
        self.principal = principal
        self.capabilities = governance.platform.bus.capabilities
        self._producer = GovernedProducer(governance, principal, f"/headwater/{principal.name}")

    def __repr__(self) -> str:
        return f"GovernedBus(principal={self.principal.name!r})"

    def create_topic(self, name: str, partitions: int = 1) -> TopicInfo:
        """Create ``name`` (``admin``)."""
        return self.gov.create_topic(self.principal, name, partitions)  # type: ignore[no-any-return]

    def topics(self) -> list[TopicInfo]:
        """Topics the principal has any grant on."""
        return self.gov.topics(self.principal)  # type: ignore[no-any-return]

    def delete_topic(self, name: str) -> None:
        """Delete ``name`` (``admin``)."""
        self.gov.delete_topic(self.principal, name)

    def publish(self, topic: str, event: Event, key: str | None = None) -> PublishResult:
        """Validate, seal and publish one event (``publish``)."""
        return self._producer.publish(topic, event, key=key)

    def publish_many(self, topic: str, events: Iterable[Event | tuple[Event, str | None]]) -> list[PublishResult]:
        """Validate and seal the whole batch, then publish it (``publish``)."""
        return self._producer.publish_many(topic, events)

    def publish_raw(self, topic: str, value: bytes, key: str | None = None, *, msg_id: str | None = None) -> Any:
        """Refused: bytes that are not validated and sealed are the platform's business only."""
        err = AccessDenied(f"{self.principal.name} may not publish raw bytes to {topic}: principals publish "
                           "validated events (rule raw-publish)", rule="raw-publish", topic=topic,
                           principal=self.principal.name)
        self.gov.acl.deny(self.principal, topic, "publish", err)
        raise err

    def subscribe(self, topic: str, group: str, *, options: SubscriptionOptions | None = None) -> GovernedConsumer:
        """Join ``group`` on ``topic`` (``consume``)."""
        return GovernedConsumer(self.gov, self.principal, topic, group, options=options)

    def close(self) -> None:
        """Nothing to release: the platform owns the bus."""
