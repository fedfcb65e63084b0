"""Topic access control: names, reserved topics and the one check the event side calls.

Grants come from the policy (``{topics: "orders.*", actions: [publish, consume, register,
declassify, admin]}``) and are checked with :meth:`Platform.authorize(principal, "topics",
topic, action) <headwater.platform.Platform.authorize>`; with no policy applied the platform is
open, as everywhere else.

* **Reserved topics.** Topics under a CDC prefix (``cdc.`` and every prefix in
  ``events.reserved_prefixes``) are written by the platform's connectors only: a principal's
  publish or schema registration there is refused whatever its grants (rule
  ``reserved-topic``), even on an open platform. Names compare case-insensitively so
  ``CDC.app...`` is reserved too.
* **System groups.** Consumer groups named ``hw-*`` / ``hw_*`` belong to the platform's own
  pipelines; a principal may not join them (it would take their messages away).
* **Registry subjects.** A subject ``<topic>-value`` or ``<topic>-key`` (Confluent's
  TopicNameStrategy) belongs to ``<topic>``; any other subject (RecordNameStrategy
  ``com.example.Order``, TopicRecordNameStrategy ``orders-com.example.Order``) is authorised as
  a topic of the subject's own name, so grant its name (or a glob over it) in ``topics:``.

Denials raise :class:`~headwater.errors.AccessDenied` naming the rule and are audited
(action ``topic_<action>``, decision ``deny``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from headwater.errors import AccessDenied, InvalidInput
from headwater.principal import Principal

__all__ = [
    "CDC_PREFIX",
    "SYSTEM_GROUP_PREFIXES",
    "TopicACL",
    "subject_topic",
]

CDC_PREFIX = "cdc."
"""Topics of the platform's change data capture connectors (``cdc.<store>.<schema>.<table>``)."""
SYSTEM_GROUP_PREFIXES = ("hw-", "hw_")
"""Consumer groups of the platform's own pipelines."""


def subject_topic(subject: str) -> str:
    """The topic a registry subject is authorised as (see the module docstring)."""
    for suffix in ("-value", "-key"):
        if subject.endswith(suffix) and len(subject) > len(suffix):
            return subject[: -len(suffix)]
    return subject


class TopicACL:
    """Checks topic actions for principals against the platform's policy (audited denials).

    ``reserved_prefixes`` adds connector prefixes to ``cdc.``.
    """

    def __init__(self, platform: Any, *, reserved_prefixes: Iterable[str] = ()) -> None:
        self.platform = platform
        prefixes = {CDC_PREFIX}
        for p in reserved_prefixes:
            if not isinstance(p, str) or not p.strip():
                raise InvalidInput("a reserved topic prefix must be a non-empty string")
            p = p.strip().casefold()
            prefixes.add(p if p.endswith(".") else p + ".")
        self.reserved_prefixes = tuple(sorted(prefixes))

    def __repr__(self) -> str:
        return f"TopicACL(reserved={list(self.reserved_prefixes)})"

    def reserved(self, topic: str) -> bool:
        """Whether ``topic`` is written by the platform's connectors only."""
        low = topic.casefold()
        return any(low.startswith(p) or low == p[:-1] for p in self.reserved_prefixes)

    def allowed(self, principal: Principal | str, topic: str, action: str) -> bool:
        """Whether ``principal`` may ``action`` on ``topic`` (no audit; for filtering lists)."""
        engine = self.platform.policy_engine()
        return engine is None or engine.allowed(principal, "topics", topic, action) is not None

    def check(self, principal: Principal | str, topic: str, action: str) -> str | None:
        """Allow ``action`` on ``topic`` or raise :class:`AccessDenied` (audited); returns the
        allowing rule (None on an open platform)."""
        if not isinstance(topic, str) or not topic:
            raise InvalidInput("a topic name must be a non-empty string")
        try:
            return self.platform.authorize(principal, "topics", topic, action)
        except AccessDenied as err:
            self.deny(principal, topic, action, err)
            raise

    def check_write(self, principal: Principal | str, topic: str, action: str) -> str | None:
        """:meth:`check` for actions that write a topic's content or schema (``publish``,
        ``register``, ``declassify``): reserved topics refuse them for every principal."""
        if self.reserved(topic):
            who = Principal.of(principal).name
            err = AccessDenied(
                f"{who} may not {action} topic {topic}: it is reserved for the platform's change "
                "data capture connectors (rule reserved-topic)",
                rule="reserved-topic", principal=who, action=action, topic=topic)
            self.deny(principal, topic, action, err)
            raise err
        return self.check(principal, topic, action)

    def check_group(self, principal: Principal | str, group: str) -> None:
        """Refuse consumer groups that belong to the platform's own pipelines."""
        if not isinstance(group, str) or not group.strip():
            raise InvalidInput("a consumer group name must be a non-empty string")
        if group.casefold().startswith(SYSTEM_GROUP_PREFIXES):
            who = Principal.of(principal).name
            err = AccessDenied(
                f"{who} may not join consumer group {group}: groups named hw-* belong to the "
                "platform's own pipelines (rule system-group)",
                rule="system-group", principal=who, group=group)
            self.deny(principal, group, "consume", err)
            raise err

    def deny(self, principal: Principal | str, topic: str, action: str, err: AccessDenied) -> None:
        """Record a denial in the audit log."""
        from headwater.audit import AuditEvent

        self.platform.record(AuditEvent(
            actor=Principal.of(principal).name, action=f"topic_{action}", decision="deny",
            reason=str(err), extra={"topic": topic, "rule": err.context.get("rule")}))

    def allow(self, principal: Principal | str, topic: str, action: str, **extra: Any) -> None:
        """Record an allowed topic action (subscriptions, registrations, admin actions)."""
        from headwater.audit import AuditEvent

        self.platform.record(AuditEvent(actor=Principal.of(principal).name, action=f"topic_{action}",
                                        reason=topic, extra={"topic": topic, **extra}))
