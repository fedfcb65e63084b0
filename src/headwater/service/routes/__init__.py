"""The service's routes, one module per area."""

from __future__ import annotations

from fastapi import FastAPI

__all__ = ["install_routes"]


def install_routes(app: FastAPI) -> None:
    """Mount every route module on ``app``."""
    from headwater.service.routes import health

    app.include_router(health.router)
    for name in ("query", "datasets", "catalog", "policies", "events", "audit", "lineage", "slo"):
        try:
            module = __import__(f"headwater.service.routes.{name}", fromlist=["router"])
        except ModuleNotFoundError as err:
            if err.name != f"headwater.service.routes.{name}":
                raise
            continue
        app.include_router(module.router)
