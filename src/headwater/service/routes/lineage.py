"""Lineage graphs (upstream/downstream of a dataset or column) and OpenLineage ingest.

``POST /api/v1/lineage`` takes what openlineage-python's ``HttpTransport`` sends (one RunEvent
as JSON, optionally gzip-compressed); events are validated against the OpenLineage spec and
stored through ``platform.lineage`` (COMPLETE events update the graph).
"""

from __future__ import annotations

import gzip
import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, Field

from headwater.errors import InvalidInput
from headwater.principal import Principal
from headwater.service.deps import platform_of, principal
from headwater.service.problems import PROBLEM_RESPONSES

__all__ = ["LineageGraphInfo", "router"]

router = APIRouter(tags=["lineage"], responses=PROBLEM_RESPONSES)


class LineageNodeInfo(BaseModel):
    """A node reached: a dataset, or one of its columns, at a depth from the root."""

    dataset: str
    field: str | None = None
    depth: int


class LineageEdgeInfo(BaseModel):
    """``source`` feeds ``target``."""

    source: str
    target: str
    type: str = Field(description="DIRECT/INDIRECT (columns) or DATASET.")
    subtype: str
    job: str


class LineageGraphInfo(BaseModel):
    """What a lineage query reached."""

    root: str
    direction: Literal["upstream", "downstream"]
    datasets: list[str]
    columns: list[str]
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
    """Where a dataset or column comes from (`upstream`) or what depends on it (`downstream`)."""
    walk = platform.lineage.upstream if direction == "upstream" else platform.lineage.downstream
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
    """OpenLineage events as stored (oldest first), for one run or one job."""
    return platform.lineage.events(run_id=run_id, job_name=job_name, limit=limit)  # type: ignore[no-any-return]


_INGEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "One OpenLineage RunEvent (as openlineage-python's HttpTransport sends it; gzip allowed).",
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
    """Validate and store one OpenLineage RunEvent (the OpenLineage HTTP API path)."""
    from starlette.concurrency import run_in_threadpool

    raw = await request.body()
    if request.headers.get("content-encoding", "").lower() == "gzip":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError):
            raise InvalidInput("the body is not valid gzip") from None
    try:
        event = json.loads(raw or b"null")
    except ValueError:
        raise InvalidInput("the body is not valid JSON") from None
    if not isinstance(event, dict):
        raise InvalidInput("an OpenLineage event is a JSON object")
    stored = await run_in_threadpool(platform.lineage.emit, event)
    job = stored.get("job") or {}
    return Ingested(run_id=str(stored["run"]["runId"]), event_type=stored.get("eventType"),
                    job=f"{job.get('namespace')}/{job.get('name')}")
