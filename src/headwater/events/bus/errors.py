"""Event platform errors, all inside Headwater's one hierarchy (:mod:`headwater.errors`).

::

    EventBusError
    ├── BusUnavailable (Transient)          broker unreachable, connection dropped, timeout
    ├── TopicNotFound (NotFound)            ``topic``
    ├── InvalidEvent (InvalidInput)         an envelope that does not parse or validate
    │   ├── EventTooLarge                   ``size``, ``limit``
    │   └── EventValidationError (SchemaError)
    │                                       the payload violates its registered schema;
    │                                       ``subject``, ``schema_id``, ``errors``
    ├── RoutingError (InvalidInput)         routing rules that do not load or apply
    ├── DeadLetterNotFound (NotFound)       ``dead_letter_id``
    └── ReplayRefused                       the replay loop guard said no; ``replay_count``

Driver exceptions (nats-py, confluent-kafka, sqlite3) are translated at the backend boundary
and never leak. These live beside the bus because the event package's own modules are built
in parallel; they are re-exported by :mod:`headwater.events.envelope` and friends.
"""

from __future__ import annotations

from headwater.errors import (
    EventBusError,
    InvalidInput,
    NotFound,
    SchemaError,
    Transient,
)

__all__ = [
    "BusUnavailable",
    "DeadLetterNotFound",
    "EventBusError",
    "EventTooLarge",
    "EventValidationError",
    "InvalidEvent",
    "ReplayRefused",
    "RoutingError",
    "TopicNotFound",
]


class BusUnavailable(EventBusError, Transient):
    """The broker cannot be reached or did not answer in time; retrying may succeed."""


class TopicNotFound(EventBusError, NotFound):
    """No topic named ``topic`` exists on this bus."""


class InvalidEvent(EventBusError, InvalidInput):
    """An event envelope does not parse or breaks the CloudEvents 1.0 rules."""


class EventTooLarge(InvalidEvent):
    """The serialised event is larger than the bus accepts (``size`` > ``limit`` bytes)."""


class EventValidationError(InvalidEvent, SchemaError):
    """The payload does not validate against its registered schema; nothing was published.

    ``errors`` lists each violation (path and message)."""


class RoutingError(EventBusError, InvalidInput):
    """Routing rules do not validate (``line`` when known) or cannot be applied."""


class DeadLetterNotFound(EventBusError, NotFound):
    """No dead letter has id ``dead_letter_id``."""


class ReplayRefused(EventBusError):
    """A dead letter was replayed ``replay_count`` times already (the loop guard's limit)."""
