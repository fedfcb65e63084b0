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

Typical use on the SDK write path::

    lineage = LineageStore(meta, platform="prod")
    with lineage.track(sql, schema=schema_from_catalog(catalog), job_name="alice.write") as run:
        run.rows_written = execute(sql)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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
from headwater.lineage._store import (
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
    "ColumnLineage",
    "EventValidator",
    "HttpTransport",
    "IdentityMap",
    "InputField",
    "InvalidLineageEvent",
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
]


def schema_from_catalog(catalog: Catalog) -> Any:
    """A ``schema`` callable for :func:`column_lineage` that reads the catalog (the ``Dataset``
    of a name, None for an unknown dataset)."""
    return catalog.find
