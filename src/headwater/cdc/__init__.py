"""Change data capture: the transactional store's changes as events on the bus.

* :mod:`headwater.cdc.pgoutput` -- a decoder for PostgreSQL's ``pgoutput`` protocol (v1);
* :class:`PostgresCDC` -- publication and slot management, a snapshot consistent with the
  slot, then streaming, publishing Debezium-style change events (inside CloudEvents) to
  ``cdc.<store>.<schema>.<table>`` and confirming the slot only after they are durable;
* :class:`SQLiteCDC` -- the same for the embedded SQLite store: triggers append to
  ``_hw_changes``, drained in commit order and deleted only after the bus acknowledged them;
* :class:`Connector` -- the small protocol both connectors implement (run/stop/status/drop);
* :class:`SchemaTracker` -- row schemas in the registry per topic; an incompatible table
  shape halts that table only (status, alert hook, position held);
* :class:`ReplicaSink` -- applies change events to a replica dataset through a session,
  de-duplicating by (LSN, position in transaction) so the replica converges to the source;
* :class:`CDCPipeline` / :func:`replicate` -- ``<source>.<table>`` -> bus -> ``<target>.<table>``
  with OpenLineage column lineage from each source column to its replica column.

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
    from headwater.cdc.base import Connector
    from headwater.cdc.demo import cdc_demo_step
    from headwater.cdc.pipeline import CDCPipeline, replicate
    from headwater.cdc.postgres import PostgresCDC
    from headwater.cdc.schemas import SchemaTracker
    from headwater.cdc.sink import ReplicaSink
    from headwater.cdc.sqlite import SQLiteCDC

__all__ = [
    "CDCError",
    "CDCPipeline",
    "CDCUnavailable",
    "Connector",
    "DecodeError",
    "PostgresCDC",
    "ReplicaSink",
    "ReplicationNotConfigured",
    "SQLiteCDC",
    "SchemaTracker",
    "SlotLost",
    "cdc_demo_step",
    "replicate",
]

_LAZY = {
    "CDCPipeline": "headwater.cdc.pipeline",
    "Connector": "headwater.cdc.base",
    "PostgresCDC": "headwater.cdc.postgres",
    "ReplicaSink": "headwater.cdc.sink",
    "SQLiteCDC": "headwater.cdc.sqlite",
    "SchemaTracker": "headwater.cdc.schemas",
    "cdc_demo_step": "headwater.cdc.demo",
    "replicate": "headwater.cdc.pipeline",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
