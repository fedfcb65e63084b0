"""Event buses: one :class:`Bus` protocol, three backends.

* ``embedded`` -- :class:`~headwater.events.bus.embedded.EmbeddedBus`, a durable log in a
  SQLite file in the platform folder (the default; no server);
* ``nats`` -- :class:`~headwater.events.bus.nats.NatsBus`, NATS JetStream (``pip install
  nats-py``);
* ``kafka`` -- :class:`~headwater.events.bus.kafka.KafkaBus`, Kafka via confluent-kafka
  (``pip install 'headwater[kafka]'``).

:func:`connect` opens one from a URL. Backends are imported when first used, so a missing
driver only matters to those who use it. Every API here is synchronous (see
:mod:`headwater.events.bus.base`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import (
    Bus,
    Capabilities,
    Consumer,
    Message,
    PublishResult,
    SubscriptionOptions,
    TopicInfo,
    partition_for,
)
from .errors import (
    BusUnavailable,
    DeadLetterNotFound,
    EventTooLarge,
    EventValidationError,
    InvalidEvent,
    ReplayRefused,
    RoutingError,
    TopicNotFound,
)

if TYPE_CHECKING:
    from .embedded import EmbeddedBus
    from .kafka import KafkaBus
    from .nats import NatsBus

__all__ = [
    "Bus",
    "BusUnavailable",
    "Capabilities",
    "Consumer",
    "DeadLetterNotFound",
    "EmbeddedBus",
    "EventTooLarge",
    "EventValidationError",
    "InvalidEvent",
    "KafkaBus",
    "Message",
    "NatsBus",
    "PublishResult",
    "ReplayRefused",
    "RoutingError",
    "SubscriptionOptions",
    "TopicInfo",
    "TopicNotFound",
    "connect",
    "partition_for",
]

_LAZY = {"EmbeddedBus": ".embedded", "KafkaBus": ".kafka", "NatsBus": ".nats"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def connect(url: str, **options: Any) -> Bus:
    """Open a bus from a URL.

    * ``embedded:///abs/path/events.db`` or ``embedded:relative/path.db`` -- the embedded log;
    * ``nats://host:port`` -- NATS JetStream (``options`` go to :class:`NatsBus`);
    * ``kafka://host:port[,host:port...]`` -- Kafka (``options`` go to :class:`KafkaBus`).

    A query string sets the namespace of a shared broker from configuration:
    ``nats://host:4222?prefix=team1&storage=memory`` (``subject_prefix``, ``storage``),
    ``kafka://host:9092?prefix=team1.`` (``topic_prefix``). A platform's default bus is
    ``embedded:<platform_dir>/events.db``.
    """
    scheme, sep, rest = url.partition(":")
    if not sep:
        from headwater.errors import ConfigError

        raise ConfigError(f"bus URL {url!r} needs a scheme (embedded:, nats://, kafka://)")
    if "?" in rest and scheme in ("nats", "tls", "kafka"):
        from urllib.parse import parse_qsl

        from headwater.errors import ConfigError

        rest, _, query = rest.partition("?")
        url = f"{scheme}:{rest}"
        names = {"prefix": "topic_prefix" if scheme == "kafka" else "subject_prefix", "storage": "storage"}
        for key, value in parse_qsl(query, keep_blank_values=True):
            if key not in names or (key == "storage" and scheme == "kafka"):
                raise ConfigError(f"bus URL option {key!r} is not known for {scheme}; use "
                                  f"{', '.join(k for k in names if scheme != 'kafka' or k == 'prefix')}")
            options.setdefault(names[key], value)
    if scheme == "embedded":
        from .embedded import EmbeddedBus

        path = rest[2:] if rest.startswith("//") else rest
        return EmbeddedBus(path, **options)
    if scheme in ("nats", "tls"):
        from .nats import NatsBus

        return NatsBus(url, **options)
    if scheme == "kafka":
        from .kafka import KafkaBus

        bootstrap = rest[2:] if rest.startswith("//") else rest
        return KafkaBus(bootstrap.rstrip("/"), **options)
    from headwater.errors import ConfigError

    raise ConfigError(f"unknown bus scheme {scheme!r}; use embedded:, nats:// or kafka://")
