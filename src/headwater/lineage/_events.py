"""OpenLineage RunEvents for a write that derives data.

A run is a START event (sent before the statement runs) and then COMPLETE or FAIL. Both carry
the inputs and outputs with their ``schema`` facet, the output with its ``columnLineage`` facet
(1-2-0: per-field ``inputFields`` with ``transformations``, whole-dataset indirect inputs under
``dataset``), and the job with its ``sql`` (literals replaced by placeholders, :func:`~headwater.lineage._sql.scrub_sql`)
and ``jobType`` facets. Lineage the extractor could
not follow is reported in an ``extractionError`` run facet; a failure in an ``errorMessage`` one.

Every facet carries ``_producer`` (this package, with its version) and the ``_schemaURL`` of the
facet version it follows.
"""

from __future__ import annotations

import datetime as dt
import traceback
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from headwater.lineage._identity import IdentityMap
from headwater.lineage._sql import scrub_sql, scrub_text

if TYPE_CHECKING:
    from headwater.lineage._extract import LineageResult

__all__ = [
    "FACET_SCHEMA_URLS",
    "PRODUCER",
    "RUN_EVENT_SCHEMA_URL",
    "build_fail_event",
    "build_run_events",
    "complete_event",
    "facet",
    "fail_event",
]


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("headwater")
    except Exception:  # noqa: BLE001 - not installed as a distribution
        return "0.1.0"


PRODUCER = f"https://github.com/headwater-data/headwater/tree/v{_version()}"
"""The ``producer``/``_producer`` URI of every event and facet Headwater writes."""

SPEC = "https://openlineage.io/spec"
RUN_EVENT_SCHEMA_URL = f"{SPEC}/2-0-2/OpenLineage.json#/$defs/RunEvent"
"""The event's ``schemaURL``."""

FACET_SCHEMA_URLS = {
    "schema": f"{SPEC}/facets/1-2-0/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet",
    "columnLineage": f"{SPEC}/facets/1-2-0/ColumnLineageDatasetFacet.json#/$defs/ColumnLineageDatasetFacet",
    "symlinks": f"{SPEC}/facets/1-0-1/SymlinksDatasetFacet.json#/$defs/SymlinksDatasetFacet",
    "sql": f"{SPEC}/facets/1-1-0/SQLJobFacet.json#/$defs/SQLJobFacet",
    "jobType": f"{SPEC}/facets/2-0-4/JobTypeJobFacet.json#/$defs/JobTypeJobFacet",
    "errorMessage": f"{SPEC}/facets/1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet",
    "extractionError": f"{SPEC}/facets/1-1-2/ExtractionErrorRunFacet.json#/$defs/ExtractionErrorRunFacet",
    "outputStatistics": f"{SPEC}/facets/1-0-2/OutputStatisticsOutputDatasetFacet.json#/$defs/OutputStatisticsOutputDatasetFacet",
}
"""The ``_schemaURL`` of each facet Headwater writes, by facet key."""

ColumnsLike = Mapping[str, str] | Sequence[tuple[str, str]]


def facet(key: str, body: Mapping[str, Any], *, producer: str = PRODUCER) -> dict[str, Any]:
    """Facet ``key`` with its ``_producer`` and ``_schemaURL``."""
    return {"_producer": producer, "_schemaURL": FACET_SCHEMA_URLS[key], **body}


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _name_and_columns(ref: Any, schemas: Mapping[str, Any] | None) -> tuple[str, list[tuple[str, str | None]] | None]:
    name = ref if isinstance(ref, str) else ref.name
    cols: Any = None
    if not isinstance(ref, str):
        cols = [(c.name, c.type) for c in ref.columns]
    elif schemas is not None:
        key = next((k for k in schemas if k.lower() == name.lower()), None)
        if key is not None:
            got = schemas[key]
            cols = list(got.items()) if isinstance(got, Mapping) else [
                (c.name, c.type) for c in got.columns] if hasattr(got, "columns") else list(got)
    return name, cols


def _schema_facet(cols: Sequence[tuple[str, str | None]], producer: str) -> dict[str, Any]:
    fields = []
    for i, (n, t) in enumerate(cols, start=1):
        f: dict[str, Any] = {"name": n, "ordinal_position": i}
        if t:
            f["type"] = str(t)
        fields.append(f)
    return facet("schema", {"fields": fields}, producer=producer)


def column_lineage_facet(result: LineageResult, identity: IdentityMap, *,
                         producer: str = PRODUCER) -> dict[str, Any]:
    """The ``columnLineage`` facet of ``result``'s output."""
    fields = {}
    for name, col in result.columns.items():
        fields[name] = {
            "inputFields": [f.to_json(*identity.identity(f.dataset)) for f in col.inputs],
        }
    body: dict[str, Any] = {"fields": fields}
    if result.dataset:
        body["dataset"] = [f.to_json(*identity.identity(f.dataset)) for f in result.dataset]
    return facet("columnLineage", body, producer=producer)


def build_run_events(
    job_namespace: str,
    job_name: str,
    sql: str,
    result: LineageResult,
    inputs: Sequence[Any] | None = None,
    outputs: Sequence[Any] | None = None,
    *,
    schemas: Mapping[str, Any] | None = None,
    identity: IdentityMap | None = None,
    run_id: str | None = None,
    event_time: str | None = None,
    rows_written: int | None = None,
    producer: str = PRODUCER,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The START and COMPLETE events of one run of ``sql``.

    ``inputs``/``outputs`` are dataset names (``<store>.<table>``) or catalog ``Dataset``s;
    they default to what ``result`` read and its target. ``schemas`` gives columns (name -> type)
    for names given as text; the output's schema defaults to ``result``'s output columns.
    Send START before the statement runs and COMPLETE after it (or build COMPLETE later with
    :func:`complete_event`, FAIL with :func:`fail_event`).
    """
    start = _start_event(job_namespace, job_name, sql, result, inputs, outputs, schemas=schemas,
                         identity=identity, run_id=run_id, event_time=event_time, producer=producer)
    return start, complete_event(start, rows_written=rows_written, event_time=event_time)


def build_fail_event(
    job_namespace: str,
    job_name: str,
    sql: str,
    result: LineageResult,
    inputs: Sequence[Any] | None = None,
    outputs: Sequence[Any] | None = None,
    *,
    error: BaseException | str,
    schemas: Mapping[str, Any] | None = None,
    identity: IdentityMap | None = None,
    run_id: str | None = None,
    event_time: str | None = None,
    producer: str = PRODUCER,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The START and FAIL events of a run of ``sql`` that raised ``error``."""
    start = _start_event(job_namespace, job_name, sql, result, inputs, outputs, schemas=schemas,
                         identity=identity, run_id=run_id, event_time=event_time, producer=producer)
    return start, fail_event(start, error, event_time=event_time)


def _start_event(job_namespace, job_name, sql, result, inputs, outputs, *, schemas, identity,  # type: ignore[no-untyped-def]
                 run_id, event_time, producer) -> dict[str, Any]:
    identity = identity or IdentityMap()
    # Lineage is read by whoever may see its datasets: the statement's shape, never its values.
    sql = scrub_sql(sql, result.dialect)
    inputs = list(result.inputs) if inputs is None else list(inputs)
    outputs = ([result.target] if result.target else []) if outputs is None else list(outputs)
    run_facets: dict[str, Any] = {}
    if result.gaps:
        run_facets["extractionError"] = facet("extractionError", {
            "totalTasks": 1,
            "failedTasks": 0 if result.columns else 1,
            "errors": [{"errorMessage": g, "task": sql, "taskNumber": 0} for g in result.gaps],
        }, producer=producer)
    run: dict[str, Any] = {"runId": run_id or str(uuid.uuid4())}
    if run_facets:
        run["facets"] = run_facets
    job_facets = {
        "sql": facet("sql", {"query": sql, "dialect": result.dialect}, producer=producer),
        "jobType": facet("jobType", {"processingType": "BATCH", "integration": "HEADWATER",
                                     "jobType": "QUERY"}, producer=producer),
    }

    def dataset(ref: Any, *, output: bool) -> dict[str, Any]:
        name, cols = _name_and_columns(ref, schemas)
        ns, ol_name = identity.identity(name)
        facets: dict[str, Any] = {}
        is_target = output and result.target is not None and name.lower() == result.target.lower()
        if cols is None and is_target:
            cols = [(c, None) for c in result.columns]
        if cols is not None:
            facets["schema"] = _schema_facet(cols, producer)
        if is_target or (output and len(outputs) == 1 and result.target is None):
            facets["columnLineage"] = column_lineage_facet(result, identity, producer=producer)
        aliases = identity.aliases_of(name)
        if aliases:
            facets["symlinks"] = facet("symlinks", {"identifiers": [
                {"namespace": a_ns, "name": a_name, "type": "TABLE"} for a_ns, a_name in aliases
            ]}, producer=producer)
        out: dict[str, Any] = {"namespace": ns, "name": ol_name}
        if facets:
            out["facets"] = facets
        return out

    return {
        "eventType": "START",
        "eventTime": event_time or _now(),
        "producer": producer,
        "schemaURL": RUN_EVENT_SCHEMA_URL,
        "run": run,
        "job": {"namespace": job_namespace, "name": job_name, "facets": job_facets},
        "inputs": [dataset(r, output=False) for r in inputs],
        "outputs": [dataset(r, output=True) for r in outputs],
    }


def complete_event(start: Mapping[str, Any], *, rows_written: int | None = None,
                   event_time: str | None = None) -> dict[str, Any]:
    """The COMPLETE event of the run ``start`` began (with ``outputStatistics`` when the row
    count is known)."""
    import copy

    ev = copy.deepcopy(dict(start))
    ev["eventType"] = "COMPLETE"
    ev["eventTime"] = event_time or _now()
    if rows_written is not None:
        for ds in ev.get("outputs") or ():
            ds["outputFacets"] = {"outputStatistics": facet(
                "outputStatistics", {"rowCount": int(rows_written)}, producer=ev["producer"])}
    return ev


def fail_event(start: Mapping[str, Any], error: BaseException | str, *,
               event_time: str | None = None) -> dict[str, Any]:
    """The FAIL event of the run ``start`` began, with an ``errorMessage`` run facet."""
    import copy

    ev = copy.deepcopy(dict(start))
    ev["eventType"] = "FAIL"
    ev["eventTime"] = event_time or _now()
    body: dict[str, Any] = {"programmingLanguage": "PYTHON"}
    # Error messages can quote SQL and values: quoted text and PII spans are removed.
    if isinstance(error, BaseException):
        body["message"] = scrub_text(f"{type(error).__name__}: {error}")
        if error.__traceback__ is not None:
            body["stackTrace"] = scrub_text("".join(traceback.format_exception(error)))
    else:
        body["message"] = scrub_text(str(error))
    run = ev.setdefault("run", {})
    run.setdefault("facets", {})["errorMessage"] = facet("errorMessage", body, producer=ev["producer"])
    return ev
