"""Lineage graphs (upstream/downstream of a dataset or column) and OpenLineage ingest.

``POST /api/v1/lineage`` takes what openlineage-python's ``HttpTransport`` sends (one RunEvent
as JSON, optionally gzip- or deflate-compressed, inflated incrementally up to
``ServiceConfig.max_inflated_bytes``, 413 beyond); it needs the ``lineage.write`` grant on the
job namespace and records the event as the caller's (untrusted) lineage through
:class:`headwater.lineage.LineageAccess`. Reads show only datasets the caller holds a grant on;
others are ``<hidden dataset N>`` placeholders, events naming them are left out.
"""

from __future__ import annotations

import json
import zlib
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, Field

from headwater.errors import InvalidInput
from headwater.lineage import LineageAccess
from headwater.principal import Principal
from headwater.service.deps import platform_of, principal
from headwater.service.limits import PayloadTooLarge
from headwater.service.problems import PROBLEM_RESPONSES

__all__ = ["LineageGraphInfo", "router"]

router = APIRouter(tags=["lineage"], responses=PROBLEM_RESPONSES)


class LineageNodeInfo(BaseModel):
    """A node reached: a dataset, or one of its columns, at a depth from the root."""

    dataset: str
    field: str | None = None
    depth: int
    hidden: bool = Field(False, description="A placeholder for a dataset the caller may not see.")


class LineageEdgeInfo(BaseModel):
    """``source`` feeds ``target``."""

    source: str
    target: str
    type: str = Field(description="DIRECT/INDIRECT (columns) or DATASET.")
    subtype: str
    job: str = Field(description="The job (empty on an edge into or out of a hidden dataset).")
    trusted: bool = Field(True, description="Recorded by the platform itself (not posted from outside).")
    producer: str = Field("", description="The principal that posted it (empty for the platform's own).")


class LineageGraphInfo(BaseModel):
    """What a lineage query reached."""

    root: str
    direction: Literal["upstream", "downstream"]
    datasets: list[str]
    columns: list[str]
    hidden: int = Field(0, description="Datasets reached that the caller may not see (placeholders).")
    nodes: list[LineageNodeInfo]
    edges: list[LineageEdgeInfo]


class Ingested(BaseModel):
    """An OpenLineage event as stored."""

    run_id: str
    event_type: str | None = None
    job: str


@router.get("/v1/lineage/{node}/{direction}", response_model=LineageGraphInfo, summary="Lineage of a node",
            operation_id="lineage_graph")
def lineage_graph(
    node: Annotated[str, Path(min_length=1, max_length=1024,
                              description="`<store>.<table>` or `<store>.<table>.<column>`")],
    direction: Annotated[Literal["upstream", "downstream"], Path(description="upstream or downstream")],
    depth: Annotated[int | None, Query(ge=0, le=1000, description="Edges to follow (default: all).")] = None,
    platform: Any = Depends(platform_of),
    who: Principal = Depends(principal),
) -> LineageGraphInfo:
    """Where a dataset or column comes from (`upstream`) or what depends on it (`downstream`),
    showing only datasets the caller holds a grant on."""
    access = LineageAccess(platform, who)
    walk = access.upstream if direction == "upstream" else access.downstream
    return LineageGraphInfo(**walk(node, depth).to_dict())


@router.get("/v1/lineage/events", response_model=list[dict[str, Any]], summary="Stored OpenLineage events",
            operation_id="lineage_events")
def lineage_events(
    run_id: Annotated[str | None, Query(max_length=255)] = None,
    job_name: Annotated[str | None, Query(max_length=1024)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    platform: Any = Depends(platform_of),
    who: Principal = Depends(principal),
) -> list[dict[str, Any]]:
    """OpenLineage events as stored (oldest first, SQL without literals), for one run or one job;
    only events whose every dataset the caller holds a grant on."""
    return LineageAccess(platform, who).events(run_id=run_id, job_name=job_name, limit=limit)


_INGEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "One OpenLineage RunEvent (as openlineage-python's HttpTransport sends it; gzip or deflate allowed).",
        "content": {"application/json": {"schema": {
            "type": "object",
            "required": ["eventTime", "producer", "run", "job"],
            "properties": {
                "eventType": {"type": "string", "enum": ["START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER"]},
                "eventTime": {"type": "string", "format": "date-time"},
                "producer": {"type": "string"},
                "schemaURL": {"type": "string"},
                "run": {"type": "object", "required": ["runId"], "properties": {"runId": {"type": "string"}}},
                "job": {"type": "object", "required": ["namespace", "name"],
                        "properties": {"namespace": {"type": "string"}, "name": {"type": "string"}}},
                "inputs": {"type": "array", "items": {"type": "object"}},
                "outputs": {"type": "array", "items": {"type": "object"}},
            },
        }}},
    }
}


@router.post("/api/v1/lineage", response_model=Ingested, status_code=201, summary="Ingest an OpenLineage event",
             operation_id="ingest_lineage", openapi_extra=_INGEST_BODY)
async def ingest_lineage(request: Request, platform: Any = Depends(platform_of),
                         who: Principal = Depends(principal)) -> Ingested:
    """Validate and store one OpenLineage RunEvent (the OpenLineage HTTP API path).

    Needs the `lineage.write` grant on the event's job namespace; the platform's own namespace is
    refused (403). The event is recorded as posted by the caller (untrusted lineage).
    """
    from starlette.concurrency import run_in_threadpool

    cfg = getattr(request.app.state, "service_config", None)
    cap = getattr(cfg, "max_inflated_bytes", DEFAULT_MAX_INFLATED)
    raw = inflate(await request.body(), request.headers.get("content-encoding", ""), cap)
    try:
        event = json.loads(raw or b"null")
    except (ValueError, RecursionError):
        raise InvalidInput("the body is not valid JSON (or nests too deeply)") from None
    if not isinstance(event, dict):
        raise InvalidInput("an OpenLineage event is a JSON object")
    stored = await run_in_threadpool(LineageAccess(platform, who).post, event)
    job = stored.get("job") or {}
    return Ingested(run_id=str(stored["run"]["runId"]), event_type=stored.get("eventType"),
                    job=f"{job.get('namespace')}/{job.get('name')}")


DEFAULT_MAX_INFLATED = 10 * 1024 * 1024
"""Largest inflated body when the service config names none."""


def inflate(body: bytes, encoding: str, cap: int) -> bytes:
    """``body`` decoded per its ``Content-Encoding`` (identity, gzip or deflate), inflated in
    steps of at most what is left under ``cap`` bytes: a body that inflates past ``cap`` is
    refused (``PayloadTooLarge``, 413) as soon as it does, never inflated whole."""
    codings = [c.strip().lower() for c in encoding.split(",") if c.strip()]
    if len(codings) > 1:
        raise InvalidInput("one content-encoding at most (identity, gzip or deflate)")
    coding = codings[0] if codings else "identity"
    if coding == "identity":
        return body
    if coding in ("gzip", "x-gzip"):
        return _inflate(body, 16 + zlib.MAX_WBITS, cap, members=True)
    if coding == "deflate":
        # RFC 9110 "deflate" is the zlib format; some clients send raw deflate.
        try:
            return _inflate(body, zlib.MAX_WBITS, cap, members=False)
        except _Corrupt:
            return _inflate(body, -zlib.MAX_WBITS, cap, members=False)
    raise InvalidInput(f"content-encoding {coding!r} is not accepted (identity, gzip or deflate)")


class _Corrupt(InvalidInput):
    """A compressed body that does not decode."""


def _inflate(data: bytes, wbits: int, cap: int, *, members: bool) -> bytes:
    out = bytearray()
    while True:
        d = zlib.decompressobj(wbits)
        pending = data
        while pending:
            try:
                # max_length bounds what one call produces (0 would mean "no limit": never here)
                chunk = d.decompress(pending, cap + 1 - len(out))
            except zlib.error:
                raise _Corrupt("the body is not valid gzip/deflate") from None
            out += chunk
            if len(out) > cap:
                raise PayloadTooLarge(f"the request body inflates to more than {cap} bytes", limit=cap)
            pending = d.unconsumed_tail
            if d.eof:
                break
        if not d.eof:
            raise _Corrupt("the compressed body is truncated")
        data = d.unused_data
        if not data:
            return bytes(out)
        if not members:
            raise _Corrupt("data after the end of the compressed body")
