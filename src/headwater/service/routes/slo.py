"""``GET /v1/slo``: each SLO's status (SLI, error budget, burn rates, alert state)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from headwater.principal import Principal
from headwater.service.deps import platform_of, principal
from headwater.service.problems import PROBLEM_RESPONSES

__all__ = ["SLOStatusInfo", "router"]

router = APIRouter(prefix="/v1", tags=["slo"], responses=PROBLEM_RESPONSES)


class SLOStatusInfo(BaseModel):
    """One SLO right now."""

    id: str
    service: str
    slo: str
    description: str
    sli_kind: str
    objective: float = Field(description="Percent (99.9).")
    window: str
    good: int
    total: int
    sli: float | None = Field(None, description="Percent of good events; null without events.")
    error_budget_remaining: float = Field(description="Percent of the error budget left (negative: overspent).")
    burn_rates: dict[str, float | None]
    alerts: dict[str, Any]
    state: str = Field(description="ok, ticket or page.")
    evaluated_at: str


@router.get("/slo", response_model=list[SLOStatusInfo], summary="SLO status", operation_id="slo_status")
def slo_status(platform: Any = Depends(platform_of), who: Principal = Depends(principal)) -> list[SLOStatusInfo]:
    """Every SLO in force with its SLI over the window, budget left, burn rates and alerts."""
    from headwater.service.routes._common import jsonable

    out = []
    for status in platform.slo_evaluator().status():
        d = jsonable(status.as_dict())
        out.append(SLOStatusInfo(**{k: d.get(k) for k in SLOStatusInfo.model_fields}))
    return out
