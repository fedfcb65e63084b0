"""The audit log over HTTP (admin only): list with filters, verify the chain."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from headwater.principal import Principal
from headwater.service.deps import platform_of, require_admin
from headwater.service.problems import PROBLEM_RESPONSES

__all__ = ["AuditRecordInfo", "VerifyResponse", "router"]

router = APIRouter(prefix="/v1/audit", tags=["audit"], responses=PROBLEM_RESPONSES)


class AuditRecordInfo(BaseModel):
    """One audit record and its place in the hash chain."""

    seq: int
    ts: str = Field(description="ISO 8601 UTC.")
    actor: str
    action: str
    datasets: list[str]
    columns: list[str]
    masks: dict[str, str]
    row_filters: list[str]
    decision: str
    reason: str | None = None
    statement: str | None = None
    rows: int | None = None
    duration_ms: float | None = None
    trace_id: str | None = None
    extra: dict[str, Any]
    prev_hash: str
    hash: str


class VerifyResponse(BaseModel):
    """The chain check: intact, or where it breaks."""

    ok: bool
    records_checked: int
    first_bad_seq: int | None = None
    problem: str | None = None
    first_seq: int | None = None
    last_seq: int | None = None
    checkpoints_checked: int
    elapsed_s: float
    rolled_back: bool = Field(False, description="Records were cut off behind the head anchor (or it is "
                              "missing or does not verify).")
    head_anchor_seq: int | None = Field(None, description="The seq held by the anchor outside the metadata database.")


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


@router.get("", response_model=list[AuditRecordInfo], summary="List audit records", operation_id="list_audit")
def list_audit(
    actor: Annotated[str | None, Query(max_length=255)] = None,
    dataset: Annotated[str | None, Query(max_length=512)] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[dt.datetime | None, Query(description="At or after (ISO 8601).")] = None,
    until: Annotated[dt.datetime | None, Query(description="Before (ISO 8601).")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    newest_first: Annotated[bool, Query()] = False,
    platform: Any = Depends(platform_of),
    who: Principal = Depends(require_admin),
) -> list[AuditRecordInfo]:
    """Records matching every filter, in chain order (or newest first)."""
    records = platform.audit.query(actor=actor, dataset=dataset, action=action, since=_utc(since),
                                   until=_utc(until), limit=limit, newest_first=newest_first)
    return [AuditRecordInfo(**_jsonable(r.to_dict())) for r in records]


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    from headwater.service.routes._common import jsonable

    return jsonable(d)  # type: ignore[no-any-return]


@router.get("/verify", response_model=VerifyResponse, summary="Verify the audit chain", operation_id="verify_audit")
def verify_audit(platform: Any = Depends(platform_of), who: Principal = Depends(require_admin)) -> VerifyResponse:
    """Check hashes, links, sequence, signed checkpoints and the head against its anchor outside
    the metadata database; says where the chain breaks or that records were cut off."""
    r = platform.audit.verify()
    return VerifyResponse(ok=r.ok, records_checked=r.records_checked, first_bad_seq=r.first_bad_seq,
                          problem=str(r.problem) if r.problem else None, first_seq=r.first_seq,
                          last_seq=r.last_seq, checkpoints_checked=r.checkpoints_checked, elapsed_s=r.elapsed_s,
                          rolled_back=r.rolled_back, head_anchor_seq=r.head_anchor_seq)
