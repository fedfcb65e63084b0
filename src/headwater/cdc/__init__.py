"""Change data capture: the transactional store's changes as events on the bus.

* :mod:`headwater.cdc.pgoutput` -- a decoder for PostgreSQL's ``pgoutput`` protocol (v1);
* :class:`PostgresCDC` -- publication and slot management, a snapshot consistent with the
  slot, then streaming, publishing Debezium-style change events (inside CloudEvents) to
  ``cdc.<store>.<schema>.<table>`` and confirming the slot only after they are durable;
* :class:`ReplicaSink` -- applies change events to a replica dataset through a session,
  de-duplicating by (LSN, position in transaction) so the replica converges to the source.

psycopg2 (``pip install psycopg2-binary``) is needed for the replication protocol; it is
imported when a connector is first built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from headwater.cdc.errors import (
    CDCError,
    CDCUnavailable,
    DecodeError,
    ReplicationNotConfigured,
    SlotLost,
)

if TYPE_CHECKING:
    from headwater.cdc.postgres import PostgresCDC
    from headwater.cdc.sink import ReplicaSink

__all__ = [
    "CDCError",
    "CDCUnavailable",
    "DecodeError",
    "PostgresCDC",
    "ReplicaSink",
    "ReplicationNotConfigured",
    "SlotLost",
]

_LAZY = {"PostgresCDC": "headwater.cdc.postgres", "ReplicaSink": "headwater.cdc.sink"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
