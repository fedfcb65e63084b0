"""RFC 9457 problem details for every error the service returns.

A :class:`~headwater.errors.HeadwaterError` maps to a status by its category (the first class in
its MRO found in :data:`STATUS_BY_NAME`); the body is ``application/problem+json`` with
``type``, ``title``, ``status``, ``detail``, ``instance`` and ``code`` (the SDK error class name,
so clients can rebuild the typed cause). Unexpected exceptions become a bare 500 with no detail:
no stack trace, driver message or secret ever reaches a response.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from headwater.errors import HeadwaterError

__all__ = ["PROBLEM_JSON", "PROBLEM_RESPONSES", "STATUS_BY_NAME", "Problem", "install_handlers", "problem_response", "status_for"]

log = logging.getLogger("headwater.service")

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://headwater.dev/problems/"

STATUS_BY_NAME: dict[str, int] = {
    "AuthenticationError": 401,
    "AccessDenied": 403,
    "RateLimited": 429,
    "PayloadTooLarge": 413,
    "IncompatibleSchema": 409,
    "NotSoftDeleted": 409,
    "Conflict": 409,
    "AuditIntegrityError": 409,
    "NotFound": 404,
    "WriteError": 422,
    "PolicyError": 422,
    "SchemaError": 422,
    "InvalidInput": 400,
    "QueryTimeout": 504,
    "Transient": 503,
    "QueryError": 422,
    "StoreError": 503,
    "EventBusError": 503,
    "MissingDependency": 503,
    "ConfigError": 503,
    "QueryRejected": 403,
    "HeadwaterError": 400,
}
"""Status of each error category, in priority order: the first name found among the error's
class and its bases wins (an ``InvalidEvent`` is both an ``EventBusError`` and an
``InvalidInput``: the caller's mistake, 400)."""


class Problem(BaseModel):
    """An RFC 9457 problem details object."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="URI naming the problem type.")
    title: str = Field(description="Short summary of the problem type.")
    status: int = Field(description="HTTP status code.")
    detail: str | None = Field(None, description="What went wrong in this occurrence (never a stack trace).")
    instance: str | None = Field(None, description="The request path this occurrence is about.")
    code: str = Field(description="The Headwater SDK error class (e.g. DatasetNotFound).")


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    "default": {
        "description": "An error, as RFC 9457 problem details (`code` names the SDK error class).",
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    },
}
"""OpenAPI ``responses`` entry every route carries (the ``Problem`` schema is added by the app)."""


def status_for(err: BaseException) -> int:
    """The HTTP status an error maps to."""
    if isinstance(err, HeadwaterError) and err.context.get("rule") == "max_concurrent":
        return 429
    names = {cls.__name__ for cls in type(err).__mro__}
    for name, status in STATUS_BY_NAME.items():
        if name in names:
            return status
    return 500


def _slug(name: str) -> str:
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i:
            out.append("-")
        out.append(ch.lower())
    return "".join(out)


def problem_response(
    request: Request, status: int, code: str, detail: str | None, *,
    headers: dict[str, str] | None = None, extra: dict[str, Any] | None = None,
) -> JSONResponse:
    """A problem+json response."""
    body: dict[str, Any] = {
        "type": TYPE_BASE + _slug(code),
        "title": HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else code,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        "code": code,
    }
    if extra:
        body.update(extra)
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


_SAFE_CONTEXT = ("rule", "dataset", "column", "line", "subject", "version", "store", "retry_after_s")

_SERVER_SIDE = {
    503: "a store, the metadata store or the event bus is unavailable; retry later",
    504: "the query ran past its timeout and was cancelled",
}


def _context(err: HeadwaterError) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in _SAFE_CONTEXT:
        value = err.context.get(key)
        if isinstance(value, str | int | float | bool):
            out[key] = value
    return out


def headwater_error_response(request: Request, err: HeadwaterError) -> JSONResponse:
    """The problem response for a Headwater error (with the challenge or Retry-After it needs)."""
    status = status_for(err)
    headers: dict[str, str] = {}
    if status == 401:
        realm = getattr(getattr(request.app.state, "service_config", None), "realm", "headwater")
        headers["WWW-Authenticate"] = f'Bearer realm="{realm}", Basic realm="{realm}"'
    if status in (429, 503):
        retry = err.context.get("retry_after_s")
        headers["Retry-After"] = str(max(1, int(retry + 0.999))) if isinstance(retry, int | float) else "1"
    # Server-side failures carry driver and file-system detail the caller has no use for (and
    # should not learn): they get a fixed sentence; the typed code and safe context remain.
    detail = _SERVER_SIDE.get(status, "the server could not complete the request") if status >= 500 else err.message
    return problem_response(request, status, type(err).__name__, detail, headers=headers or None,
                            extra=_context(err))


class CatchAll:
    """Outermost middleware: ``Cache-Control: no-store`` on every response, and an unexpected
    exception becomes a bare 500 problem.

    Starlette's own server-error middleware would re-raise it for the ASGI server to log with its
    traceback (and whatever a driver put in the message); here only the class name is logged at
    ERROR, the traceback at DEBUG on the ``headwater.service`` logger.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                if not any(k.lower() == b"cache-control" for k, _ in headers):
                    # governed answers differ per principal: no shared cache may keep them
                    headers.append((b"cache-control", b"no-store"))
                    message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as err:  # noqa: BLE001 - the last line of defence
            log.error("unhandled error on %s %s: %s", scope.get("method"), scope.get("path"), type(err).__name__)
            log.debug("unhandled error", exc_info=True)
            if started:
                return  # the status line is out; the client sees a truncated body
            from headwater.service import registry_api

            request = Request(scope)
            if registry_api.is_registry_path(scope["path"]):
                response = registry_api.error_response(request, err)
            else:
                response = problem_response(request, 500, "InternalError", "the server failed to handle this request")
            await response(scope, receive, send)


def install_handlers(app: FastAPI) -> None:
    """Route every error through problem details."""

    @app.exception_handler(HeadwaterError)
    async def _headwater(request: Request, err: HeadwaterError) -> JSONResponse:
        return headwater_error_response(request, err)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, err: RequestValidationError) -> JSONResponse:
        errors = [{"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
                  for e in err.errors()]
        detail = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors[:5]) or "invalid request"
        return problem_response(request, 422, "RequestValidationError", detail, extra={"errors": errors})

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, err: StarletteHTTPException) -> JSONResponse:
        code = {404: "NotFound", 405: "MethodNotAllowed", 413: "PayloadTooLarge",
                406: "NotAcceptable", 415: "UnsupportedMediaType"}.get(err.status_code, "HTTPError")
        detail = err.detail if isinstance(err.detail, str) else None
        return problem_response(request, err.status_code, code, detail, headers=getattr(err, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, err: Exception) -> JSONResponse:
        log.error("unhandled error on %s %s: %s", request.method, request.url.path, type(err).__name__)
        return problem_response(request, 500, "InternalError", "the server failed to handle this request")
