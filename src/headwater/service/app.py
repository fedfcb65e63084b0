"""``create_app``: the FastAPI application over one :class:`~headwater.platform.Platform`.

The app is stateless beyond per-replica limits: sessions are built per request from the
authenticated principal, page cursors are signed tokens, and everything durable lives in the
platform's metadata store, so several replicas can serve behind one load balancer.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from pydantic import ValidationError

from headwater.errors import ConfigError
from headwater.service.config import ServiceConfig

if TYPE_CHECKING:
    from headwater.platform import Platform

__all__ = ["create_app"]


def create_app(platform: Platform | None = None, *, config: ServiceConfig | dict[str, Any] | None = None) -> FastAPI:
    """The HTTP service for ``platform`` (default: ``Platform.open()``, closed with the app).

    ``config`` is a :class:`ServiceConfig` (or a mapping of its fields): rate and concurrency
    limits per principal, body size limit, admin roles, page sizes.
    """
    from headwater import __version__ as version
    from headwater.service import deps, problems

    try:
        cfg = config if isinstance(config, ServiceConfig) else ServiceConfig(**(config or {}))
    except ValidationError as err:
        first = err.errors()[0]
        raise ConfigError(f"service config {'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None
    owned = platform is None
    if platform is None:
        from headwater.platform import Platform

        platform = Platform.open()

    served = platform

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if owned:
                served.close()

    app = FastAPI(
        title="Headwater",
        version=version,
        summary="One governed interface to every data store, over HTTP.",
        description=_DESCRIPTION,
        lifespan=lifespan,
        openapi_tags=_TAGS,
    )
    app.state.platform = platform
    app.state.service_config = cfg
    problems.install_handlers(app)
    from headwater.service import limits

    limits.install(app, cfg)
    from headwater.service.routes import install_routes

    install_routes(app)
    app.add_middleware(problems.CatchAll)  # added last: outermost of the app's own middleware
    _install_registry(app, deps.principal)
    _document_problems(app)
    return app


def _document_problems(app: FastAPI) -> None:
    """Put the ``Problem`` schema (referenced by every route's error responses) in the document."""
    from fastapi.openapi.utils import get_openapi

    from headwater.service.problems import Problem

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version, summary=app.summary,
                              description=app.description, routes=app.routes, tags=app.openapi_tags)
            components = doc.setdefault("components", {})
            components.setdefault("schemas", {})["Problem"] = Problem.model_json_schema(
                ref_template="#/components/schemas/{model}")
            components.setdefault("securitySchemes", {}).update(_SECURITY_SCHEMES)
            for path, item in doc.get("paths", {}).items():
                if path in _OPEN_PATHS:
                    continue
                for operation in item.values():
                    if isinstance(operation, dict):
                        operation.setdefault("security", [{name: []} for name in _SECURITY_SCHEMES])
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _install_registry(app: FastAPI, principal: Any) -> None:
    """Mount the Confluent-compatible schema registry (``/subjects``, ``/schemas``, ``/config`` ...)."""
    from headwater.service import registry_api

    registry_api.install(app, principal)


_OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})

_SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key",
               "description": "An API key token, `<key_id>.<secret>`."},
    "Bearer": {"type": "http", "scheme": "bearer",
               "description": "An API key token or a JWT from the configured issuer."},
    "Basic": {"type": "http", "scheme": "basic",
              "description": "An API key's id as user name and its secret as password (as Confluent Cloud)."},
}

_DESCRIPTION = """\
Query, read and write datasets under the platform's policy (masked columns, row filters and
grants apply exactly as in the SDK), browse the catalog, manage policies, publish events, replay
dead letters, read the audit log and lineage, and check SLOs.

Authenticate with an API key (`X-API-Key: <key_id>.<secret>`, `Authorization: Bearer <token>` or
HTTP Basic `<key_id>:<secret>`) or a bearer JWT. Errors are RFC 9457 problem details whose
`code` names the SDK error class.
"""

_TAGS = [
    {"name": "query", "description": "Governed SQL with keyset pages (JSON or Arrow IPC stream)."},
    {"name": "datasets", "description": "Read and write datasets."},
    {"name": "catalog", "description": "Catalogued datasets and their columns."},
    {"name": "policies", "description": "Policy as code (admin only)."},
    {"name": "events", "description": "Publish events and manage dead letters."},
    {"name": "audit", "description": "The tamper-evident audit log (admin only)."},
    {"name": "lineage", "description": "Lineage graphs and OpenLineage ingest."},
    {"name": "slo", "description": "Service level objectives."},
    {"name": "health", "description": "Liveness, readiness and metrics (no credentials)."},
]
