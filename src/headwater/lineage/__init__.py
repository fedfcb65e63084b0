"""Column-level lineage as OpenLineage events, stored in the metadata store, and the graph.

* :func:`column_lineage` derives, with sqlglot, the input fields of every output column of an
  ``INSERT ... SELECT``, ``CREATE TABLE ... AS`` or query (a write of a query result), with
  OpenLineage ``columnLineage`` 1-2-0 transformation types; what it cannot follow is listed in
  :attr:`LineageResult.gaps`, never dropped silently.
* :func:`build_run_events` / :func:`build_fail_event` turn that into START + COMPLETE/FAIL
  RunEvents with ``schema``, ``sql`` and ``columnLineage`` facets.
* :func:`dataset_identity` and :class:`IdentityMap` give every dataset one OpenLineage identity
  (``headwater://<platform>``, ``<store>.<table>``) whichever integration reported it.
* :class:`LineageStore` validates, stores and optionally sends events (:class:`HttpTransport`)
  and answers ``upstream``, ``downstream`` and ``impact`` to any depth.
* :class:`LineageAccess` (``session.lineage``) is lineage as one principal may use it: posting
  events needs the ``lineage.write`` grant on the job namespace; reads show only datasets the
  principal holds a grant on (others are ``<hidden dataset N>`` placeholders).
* :func:`scrub_sql`: the SQL lineage records (facets, stored events) has no literals.

Trust (what erasure may follow). Events are recorded with their provenance:

* ``LineageStore.emit(event)`` — the platform's own runs (the SDK write path, CDC). Its edges
  are **trusted** (``LineageEdge.trusted``).
* ``LineageStore.ingest(event, producer=<principal>)`` — events posted from outside (HTTP
  ``POST /api/v1/lineage``, ``session.lineage.post``, ``headwater lineage post``). Untrusted;
  never in the platform's job namespace (``LineageStore.reserved``: its ``job_namespace`` and any
  ``headwater`` namespace); a COMPLETE replaces only that producer's edges of that job; an output
  without ``columnLineage`` keeps its column edges.
* Graph queries on the store follow **trusted edges only unless asked otherwise**
  (``upstream/downstream/impact(..., trusted_only=True)``), and
  ``LineageStore.copies_of(dataset, column, trusted_only=True)`` lists the ``DIRECT``/``IDENTITY``
  edges out of a column (the copies erasure must reach), trusted only.

Typical use on the SDK write path::

    lineage = LineageStore(meta, platform="prod")
    with lineage.track(sql, schema=schema_from_catalog(catalog), job_name="alice.write") as run:
        run.rows_written = execute(sql)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from headwater.lineage._access import LineageAccess
from headwater.lineage._events import (
    FACET_SCHEMA_URLS,
    PRODUCER,
    RUN_EVENT_SCHEMA_URL,
    build_fail_event,
    build_run_events,
    column_lineage_facet,
    complete_event,
    fail_event,
)
from headwater.lineage._extract import (
    ColumnLineage,
    InputField,
    LineageResult,
    SchemaLike,
    Transformation,
    column_lineage,
)
from headwater.lineage._identity import IdentityMap, dataset_identity, postgres_identity
from headwater.lineage._sql import scrub_sql
from headwater.lineage._store import (
    WITHHELD,
    LineageEdge,
    LineageGraph,
    LineageNode,
    LineageRun,
    LineageStore,
)
from headwater.lineage._transport import HttpTransport, LineageDeliveryError
from headwater.lineage._validate import EventValidator, InvalidLineageEvent, default_validator

if TYPE_CHECKING:
    from headwater.catalog import Catalog

__all__ = [
    "FACET_SCHEMA_URLS",
    "PRODUCER",
    "RUN_EVENT_SCHEMA_URL",
    "WITHHELD",
    "ColumnLineage",
    "EventValidator",
    "HttpTransport",
    "IdentityMap",
    "InputField",
    "InvalidLineageEvent",
    "LineageAccess",
    "LineageDeliveryError",
    "LineageEdge",
    "LineageGraph",
    "LineageNode",
    "LineageResult",
    "LineageRun",
    "LineageStore",
    "SchemaLike",
    "Transformation",
    "build_fail_event",
    "build_run_events",
    "column_lineage",
    "column_lineage_facet",
    "complete_event",
    "dataset_identity",
    "default_validator",
    "fail_event",
    "postgres_identity",
    "schema_from_catalog",
    "scrub_sql",
]


def schema_from_catalog(catalog: Catalog) -> Any:
    """A ``schema`` callable for :func:`column_lineage` that reads the catalog (the ``Dataset``
    of a name, None for an unknown dataset)."""
    return catalog.find
