"""Change data capture errors, inside Headwater's one hierarchy (:mod:`headwater.errors`).

::

    CDCError (HeadwaterError)
    ├── CDCUnavailable (Transient)          the source cannot be reached / connection dropped
    ├── ReplicationNotConfigured (ConfigError)
    │                                       wal_level, slots or privileges do not allow CDC
    ├── SlotLost                            the slot is gone or invalidated; ``slot``, ``fix``
    └── DecodeError                         a pgoutput message that does not decode

psycopg2 exceptions are translated at the connector boundary and never leak.
"""

from __future__ import annotations

from headwater.errors import ConfigError, HeadwaterError, Transient

__all__ = ["CDCError", "CDCUnavailable", "DecodeError", "ReplicationNotConfigured", "SlotLost"]


class CDCError(HeadwaterError):
    """A change data capture failure."""


class CDCUnavailable(CDCError, Transient):
    """The source database cannot be reached or dropped the replication connection."""


class ReplicationNotConfigured(CDCError, ConfigError):
    """The server is not set up for logical replication (``wal_level``, slots, privileges)."""


class SlotLost(CDCError):
    """The replication slot was dropped or invalidated (``max_slot_wal_keep_size``), so changes
    since the last confirmed position are gone. ``fix`` says what to do: restart with
    ``reset=True`` to drop it and take a fresh snapshot."""


class DecodeError(CDCError):
    """A pgoutput message is truncated, unknown, or refers to an unknown relation."""
