"""``/healthz`` (liveness), ``/readyz`` (metadata store and stores reachable), ``/metrics``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from headwater.service.deps import platform_of

__all__ = ["router"]

router = APIRouter(tags=["health"])


class Health(BaseModel):
    """Liveness."""

    status: str = Field(description="Always ``ok`` when the process answers.")


class Readiness(BaseModel):
    """Readiness: every dependency the service needs, checked now."""

    status: str = Field(description="``ok`` when every check passed, else ``unavailable``.")
    checks: dict[str, str] = Field(description="Each check (metadata, store:<name>) and its outcome.")


@router.get("/healthz", response_model=Health, summary="Liveness", operation_id="healthz")
def healthz() -> Health:
    """The process is up and answering."""
    return Health(status="ok")


def _check_store(platform: Any, name: str) -> str:
    try:
        platform.store(name).tables()
    except Exception as err:  # noqa: BLE001 - report, never raise, never leak the message
        return f"unavailable ({type(err).__name__})"
    return "ok"


def _readiness(platform: Any) -> Readiness:
    import sqlalchemy as sa

    checks: dict[str, str] = {}
    try:
        with platform.meta.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        checks["metadata"] = "ok"
    except Exception as err:  # noqa: BLE001
        checks["metadata"] = f"unavailable ({type(err).__name__})"
    for name in platform.store_names:
        checks[f"store:{name}"] = _check_store(platform, name)
    ok = all(v == "ok" for v in checks.values())
    return Readiness(status="ok" if ok else "unavailable", checks=checks)


@router.get("/readyz", response_model=Readiness, summary="Readiness", operation_id="readyz",
            responses={503: {"model": Readiness, "description": "A dependency is unreachable."}})
async def readyz(response: Response, platform: Any = Depends(platform_of)) -> Readiness:
    """The metadata store and every configured store answer."""
    ready = await run_in_threadpool(_readiness, platform)
    if ready.status != "ok":
        response.status_code = 503
    return ready


@router.get("/metrics", summary="Prometheus metrics", operation_id="metrics",
            response_class=Response,
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                             "description": "Prometheus text exposition format."}})
def metrics() -> Response:
    """Prometheus text exposition of the process's metrics."""
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
