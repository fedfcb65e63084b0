"""The Confluent Schema Registry REST API over the platform's schema registry.

:func:`install` mounts, at the root of the app, the paths Confluent's clients call
(``/subjects/...``, ``/schemas/ids/...``, ``/compatibility/...``, ``/config``), so that
``confluent_kafka.schema_registry.SchemaRegistryClient`` works unmodified with the service's
base URL as its ``url`` and ``basic.auth.user.info`` set to an API key's ``<key_id>:<secret>``.

Everything is delegated to :class:`headwater.events.registry.SchemaRegistry`
(``platform.schema_registry``): compatibility, canonical form, ids and soft deletes behave as
there. Registration goes through ``platform.register_schema`` as the authenticated principal:
``register`` on the subject's topic (``<topic>-value``/``-key``; any other subject is its own
topic name, see :mod:`headwater.events.acl`), never a reserved CDC topic, and ``declassify``
too for a version that drops or weakens an ``x-pii`` classification. Deleting a subject or a
version and setting or dropping a subject's level need ``admin`` on its topic; the global level
needs an administrator (the service's ``admin_roles``). Reads and compatibility checks are open
to any authenticated principal. Every call is audited with the principal as the actor
(``schema_read``, ``schema_register``, ``schema_check``, ``schema_delete``, ``schema_config``),
failures with ``decision="deny"`` and the error code; a refusal is 403 with ``error_code``
40301, as Confluent's authorizer answers.

Errors on these routes (and only these) are Confluent's: the HTTP status plus a body
``{"error_code": 40401, "message": "..."}`` in ``application/vnd.schemaregistry.v1+json``.
The rest of the service answers with RFC 9457 problem details. Request bodies are accepted as
``application/vnd.schemaregistry.v1+json``, ``application/vnd.schemaregistry+json`` or
``application/json``. Request parameters with no meaning here (``normalize``: schemas are
always stored canonical; ``format``) are accepted and ignored.
"""

import inspect
import logging
import math
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, FastAPI, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from headwater.errors import (
    AccessDenied,
    AuthenticationError,
    HeadwaterError,
    InvalidInput,
    QueryRejected,
    StoreError,
    Transient,
)
from headwater.events.registry import (
    CompatibilityMode,
    IncompatibleSchema,
    InvalidSchema,
    NotSoftDeleted,
    SchemaNotFound,
    SchemaType,
    SchemaVersion,
    SubjectNotFound,
    UnclassifiedPII,
    VersionNotFound,
)
from headwater.principal import Principal
from headwater.service.deps import is_admin, platform_of

__all__ = ["CONTENT_TYPE", "error_response", "install", "is_registry_path"]

logger = logging.getLogger("headwater")

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
"""The media type of every response of these routes."""

_TAG = "schema registry"
_MAX_VERSION = 2**31 - 1
_BODY_TYPES = (CONTENT_TYPE, "application/vnd.schemaregistry+json", "application/json")


class _ConfluentError(HeadwaterError):
    """A condition the library has no class for (an invalid version, a soft-deleted subject),
    carrying its HTTP ``status`` and Confluent ``error_code``; never leaves these routes."""


def _fail(status: int, error_code: int, message: str) -> _ConfluentError:
    return _ConfluentError(message, status=status, error_code=error_code)


# -- wire models ---------------------------------------------------------------------------------
class ErrorBody(BaseModel):
    """Confluent's error body."""

    error_code: int = Field(description="Confluent error code, e.g. 40401 (subject not found).")
    message: str


class Reference(BaseModel):
    """A reference to a version of another subject."""

    name: str
    subject: str
    version: int


class SchemaBody(BaseModel):
    """A schema as clients send it (register, look up, compatibility check)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    schema_text: str = Field(alias="schema", description="The schema text.")
    schemaType: str = Field("AVRO", description="AVRO (Confluent's default) or JSON.")
    references: list[Reference] | None = None


class RegisteredId(BaseModel):
    """The global id of a registered schema."""

    id: int


class SchemaById(BaseModel):
    """A schema by global id."""

    model_config = ConfigDict(populate_by_name=True)

    schema_text: str = Field(alias="schema")
    schemaType: str
    references: list[Reference] = []


class SubjectVersionBody(BaseModel):
    """One version of a subject."""

    model_config = ConfigDict(populate_by_name=True)

    subject: str
    version: int
    id: int
    schema_text: str = Field(alias="schema")
    schemaType: str
    references: list[Reference] = []


class SubjectVersionPair(BaseModel):
    """A (subject, version) that uses a schema."""

    subject: str
    version: int


class CompatibilityBody(BaseModel):
    """The outcome of a compatibility check; ``messages`` with ``verbose=true``."""

    is_compatible: bool
    messages: list[str] | None = None


class ConfigBody(BaseModel):
    """A compatibility level as ``GET`` and ``DELETE`` return it."""

    compatibilityLevel: CompatibilityMode


class ConfigUpdate(BaseModel):
    """``PUT /config`` body: ``compatibility`` (or ``compatibilityLevel``)."""

    model_config = ConfigDict(extra="ignore")

    compatibility: str | None = None
    compatibilityLevel: str | None = None


class ConfigUpdated(BaseModel):
    """The level a ``PUT /config`` set."""

    compatibility: CompatibilityMode


# -- responses and errors ------------------------------------------------------------------------
class RegistryResponse(JSONResponse):
    """JSON in the schema registry's media type."""

    media_type = CONTENT_TYPE


def _status_and_code(exc: Exception) -> tuple[int, int, str]:
    """Map an exception to (HTTP status, Confluent error code, message)."""
    if isinstance(exc, _ConfluentError):
        return exc.status, exc.error_code, exc.message  # type: ignore[attr-defined]
    if isinstance(exc, AuthenticationError):
        return 401, 401, "Unauthorized"
    if isinstance(exc, AccessDenied):
        return 403, 40301, exc.message
    if isinstance(exc, SubjectNotFound):
        return 404, 40401, exc.message
    if isinstance(exc, VersionNotFound):
        return 404, 40402, exc.message
    if isinstance(exc, SchemaNotFound):
        return 404, 40403, exc.message
    if isinstance(exc, NotSoftDeleted):
        code = 40407 if exc.context.get("version") is not None else 40405
        return 404, code, exc.message
    if isinstance(exc, IncompatibleSchema):
        return 409, 409, exc.message
    if isinstance(exc, InvalidSchema | UnclassifiedPII):
        return 422, 42201, exc.message
    if isinstance(exc, InvalidInput):
        if type(exc).__name__ == "PayloadTooLarge":
            return 413, 413, exc.message
        return 422, 422, exc.message
    if isinstance(exc, QueryRejected):
        return 429, 429, exc.message
    if isinstance(exc, StoreError):
        code = 50002 if isinstance(exc, Transient) else 50001
        return 500, code, "error in the schema registry's data store"
    if isinstance(exc, RequestValidationError):
        parts = [
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}"
            for e in exc.errors()
        ]
        schema_field = any(tuple(e.get("loc", ()))[:2] == ("body", "schema") for e in exc.errors())
        return 422, 42201 if schema_field else 422, "; ".join(parts) or "invalid request"
    if isinstance(exc, StarletteHTTPException):
        return exc.status_code, exc.status_code, str(exc.detail)
    return 500, 50001, "internal server error"


def is_registry_path(path: str) -> bool:
    """Whether ``path`` belongs to the schema registry API (whose errors are Confluent's)."""
    return path in ("/subjects", "/config", "/schemas/types") or path.startswith(_PREFIXES)


_PREFIXES = ("/subjects/", "/schemas/ids/", "/compatibility/", "/config/")


def error_response(request: Request, exc: Exception) -> Response:
    """A Confluent error response for ``exc``: its status and ``{"error_code", "message"}``.

    Used by these routes, and by anything that rejects a request to them before routing
    (rate and size limits) so that Confluent clients read the error as usual.
    """
    status, code, message = _status_and_code(exc)
    if status >= 500:
        logger.error("schema registry API: %s %s failed: %s", request.method, request.url.path,
                     type(exc).__name__, exc_info=None if isinstance(exc, HeadwaterError) else exc)
    headers: dict[str, str] = {}
    if status == 401:
        cfg = getattr(getattr(request.scope.get("app"), "state", None), "service_config", None)
        realm = getattr(cfg, "realm", "headwater")
        headers["WWW-Authenticate"] = f'Basic realm="{realm}"'
    if status == 429:
        retry = exc.context.get("retry_after_s") if isinstance(exc, HeadwaterError) else None
        headers["Retry-After"] = str(max(1, math.ceil(retry))) if isinstance(retry, int | float) else "1"
    return RegistryResponse({"error_code": code, "message": message}, status_code=status,
                            headers=headers)


_ACTIONS = {
    "register_schema": "schema_register",
    "test_compatibility": "schema_check",
    "test_compatibility_all": "schema_check",
    "delete_subject": "schema_delete",
    "delete_version": "schema_delete",
    "set_config": "schema_config",
    "set_subject_config": "schema_config",
    "delete_config": "schema_config",
    "delete_subject_config": "schema_config",
}


class _ConfluentRoute(APIRoute):
    """A route whose errors (including authentication and request validation) are rendered
    as Confluent error bodies, whatever exception handlers the rest of the app installs."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        action = _ACTIONS.get(self.name, "schema_read")

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as exc:  # noqa: BLE001 - every error becomes a Confluent body
                response = error_response(request, exc)
                who = getattr(request.state, "principal", None)
                if isinstance(who, Principal) and not isinstance(exc, AuthenticationError):
                    await run_in_threadpool(_audit_failure, request, who, action,
                                            response.status_code, exc)
                return response

        return route


def _audit_failure(request: Request, who: Principal, action: str, status: int, exc: Exception) -> None:
    try:
        _, code, _ = _status_and_code(exc)
        _record(request, who, action, decision="deny", reason=f"{code}: {type(exc).__name__}",
                extra={"method": request.method, "path": request.url.path, "status": status})
    except Exception:  # noqa: BLE001 - a failed audit of a failure must not mask the failure
        logger.exception("schema registry API: could not audit a failed call")


def _record(request: Request, who: Principal, action: str, *, decision: str = "allow",
            reason: str | None = None, extra: dict[str, Any] | None = None) -> None:
    from headwater.audit import AuditEvent

    platform_of(request).record(AuditEvent(actor=who.name, action=action, decision=decision, reason=reason,
                               extra=extra or {}))


# -- helpers -------------------------------------------------------------------------------------
def _version(raw: str) -> int | Literal["latest"]:
    if raw == "latest" or raw == "-1":
        return "latest"
    try:
        number = int(raw)
    except ValueError:
        number = 0
    if not 1 <= number <= _MAX_VERSION:
        raise _fail(422, 42202, f"The specified version '{raw}' is not a valid version id. Allowed "
                                "values are between [1, 2^31-1] and the string \"latest\"")
    return number


def _subject(subject: str) -> str:
    if not subject.strip() or len(subject) > 255 or any(ord(c) < 32 for c in subject):
        raise _fail(422, 42208, "subject must be 1 to 255 printable characters")
    return subject


def _level(raw: str | None) -> CompatibilityMode:
    try:
        if raw is None:
            raise InvalidInput("missing")
        return CompatibilityMode.of(raw)
    except InvalidInput:
        raise _fail(422, 42203, "Invalid compatibility level. Valid values are "
                    + ", ".join(m.value for m in CompatibilityMode)) from None


def _schema_type(raw: str) -> SchemaType:
    return SchemaType.of(raw)  # InvalidSchema (42201) for PROTOBUF and unknown types


def _schema_text(body: SchemaBody) -> str:
    if not body.schema_text.strip():
        raise _fail(422, 42201, "Empty schema")
    return body.schema_text


def _refs(body: SchemaBody) -> list[dict[str, Any]] | None:
    return [r.model_dump() for r in body.references] if body.references else None


def _refs_out(version: Any) -> list[Reference]:
    return [Reference(**r.to_dict()) for r in version.references]


def _version_body(v: SchemaVersion) -> SubjectVersionBody:
    return SubjectVersionBody(subject=v.subject, version=v.version, id=v.id, schema=v.schema,
                              schemaType=v.schema_type.value, references=_refs_out(v))


def _page(items: list[Any], offset: int, limit: int) -> list[Any]:
    items = items[max(offset, 0):]
    return items[:limit] if limit >= 0 else items


def _require_admin(request: Request, who: Principal) -> None:
    cfg = getattr(request.app.state, "service_config", None)
    roles = tuple(getattr(cfg, "admin_roles", ("admin",)))
    if not is_admin(platform_of(request), who, roles):
        raise AccessDenied(f"{who.name} may not change the schema registry (needs one of the "
                           f"roles: {', '.join(roles)})", rule="admin")


def _require_topic_admin(request: Request, who: Principal, subject: str) -> None:
    """A subject's versions and level are its topic's: ``admin`` on the topic (audited)."""
    platform_of(request).event_governance.check_subject(who, subject, "admin")


_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "content": {CONTENT_TYPE: {}}, "description": text}
    for status, text in (
        (400, "A request body that cannot be parsed (error_code 400)"),
        (401, "Missing or invalid credentials (error_code 401)"),
        (403, "Not allowed (error_code 40301)"),
        (404, "Subject (40401), version (40402) or schema (40403) not found; soft-delete state "
              "(40404-40407); no subject-level configuration (40408)"),
        (409, "Incompatible schema (error_code 409)"),
        (422, "Invalid schema (42201), version (42202), compatibility level (42203), subject "
              "(42208) or request (422)"),
        (413, "Request body too large (error_code 413)"),
        (429, "Too many requests (error_code 429)"),
        (500, "Data store error (50001, 50002)"),
    )
}

_BODY_EXTRA = {
    "requestBody": {
        "required": True,
        "content": {t: {"schema": {"$ref": "#/components/schemas/SchemaBody"}} for t in _BODY_TYPES},
    }
}

Deleted = Annotated[bool, Query(description="Include soft-deleted subjects or versions.")]
Permanent = Annotated[bool, Query(description="Hard-delete (after a soft delete).")]
Verbose = Annotated[bool, Query(description="Return the incompatibilities as messages.")]
Normalize = Annotated[bool, Query(description="Accepted; schemas are always stored canonical.")]
Offset = Annotated[int, Query(ge=0)]
Limit = Annotated[int, Query(ge=-1, description="-1: no limit.")]
Version = Annotated[str, Path(description="A version number (1..2^31-1), 'latest' or -1.")]
Subject = Annotated[str, Path(max_length=255)]
SchemaId = Annotated[int, Path(ge=0, le=_MAX_VERSION)]


# -- routes --------------------------------------------------------------------------------------
def install(app: FastAPI, principal: Callable[..., Principal]) -> None:
    """Mount the Confluent Schema Registry REST API at the root of ``app``.

    ``principal`` is the dependency that authenticates a request (``headwater.service.deps.
    principal``); the platform is ``app.state.platform``.
    """
    app.include_router(_router(principal))
    _scope_http_errors(app)


def _scope_http_errors(app: FastAPI) -> None:
    """Render routing errors (404 unknown path, 405 wrong method) on registry paths as
    Confluent errors; every other path keeps the handler the app had."""
    previous = app.exception_handlers.get(StarletteHTTPException)

    async def http_error(request: Request, exc: Exception) -> Response:
        if is_registry_path(request.url.path) or previous is None:
            return error_response(request, exc)
        result = previous(request, exc)
        return await result if inspect.isawaitable(result) else result

    app.add_exception_handler(StarletteHTTPException, http_error)


def _router(principal: Callable[..., Principal]) -> APIRouter:  # noqa: C901 - one route each
    router = APIRouter(route_class=_ConfluentRoute, default_response_class=RegistryResponse,
                       tags=[_TAG], responses=_ERRORS)
    Who = Annotated[Principal, Depends(principal)]

    def registry(request: Request) -> Any:
        return platform_of(request).schema_registry

    # -- schemas by id ------------------------------------------------------------------------
    @router.get("/schemas/types", response_model=list[str], summary="Supported schema types")
    def schema_types(request: Request, who: Who) -> list[str]:
        _record(request, who, "schema_read", reason="schema types")
        return [t.value for t in SchemaType]

    @router.get("/schemas/ids/{id}", response_model=SchemaById, response_model_by_alias=True,
                summary="The schema with a global id")
    def get_schema(request: Request, who: Who, id: SchemaId,
                   subject: str | None = None, format: str | None = None) -> SchemaById:
        found = registry(request).get_by_id(id)
        _record(request, who, "schema_read", reason=f"id {id}", extra={"schema_id": id})
        return SchemaById(schema=found.schema, schemaType=found.schema_type.value,
                          references=_refs_out(found))

    @router.get("/schemas/ids/{id}/versions", response_model=list[SubjectVersionPair],
                summary="The (subject, version) pairs that use a schema")
    def get_schema_versions(request: Request, who: Who, id: SchemaId, deleted: Deleted = False,
                            subject: str | None = None, offset: Offset = 0,
                            limit: Limit = -1) -> list[SubjectVersionPair]:
        reg = registry(request)
        reg.get_by_id(id)  # 40403 for an unknown id
        pairs = [SubjectVersionPair(subject=s, version=v)
                 for s, v in reg.subject_versions_by_id(id, include_deleted=deleted)
                 if subject is None or s == subject]
        _record(request, who, "schema_read", reason=f"id {id} versions", extra={"schema_id": id})
        return _page(pairs, offset, limit)

    @router.get("/schemas/ids/{id}/subjects", response_model=list[str],
                summary="The subjects that use a schema")
    def get_schema_subjects(request: Request, who: Who, id: SchemaId, deleted: Deleted = False,
                            subject: str | None = None, offset: Offset = 0,
                            limit: Limit = -1) -> list[str]:
        reg = registry(request)
        reg.get_by_id(id)
        names = sorted({s for s, _ in reg.subject_versions_by_id(id, include_deleted=deleted)
                        if subject is None or s == subject})
        _record(request, who, "schema_read", reason=f"id {id} subjects", extra={"schema_id": id})
        return _page(names, offset, limit)

    # -- subjects -----------------------------------------------------------------------------
    @router.get("/subjects", response_model=list[str], summary="Subjects")
    def get_subjects(request: Request, who: Who, deleted: Deleted = False,
                     deleted_only: bool = False,
                     subjectPrefix: str | None = None, offset: Offset = 0,  # noqa: N803
                     limit: Limit = -1) -> list[str]:
        reg = registry(request)
        if deleted_only:
            live = set(reg.subjects())
            names = [s for s in reg.subjects(include_deleted=True) if s not in live]
        else:
            names = reg.subjects(include_deleted=deleted)
        if subjectPrefix:
            names = [s for s in names if s.startswith(subjectPrefix)]
        _record(request, who, "schema_read", reason="subjects")
        return _page(names, offset, limit)

    @router.get("/subjects/{subject}/versions", response_model=list[int],
                summary="Version numbers of a subject")
    def get_versions(request: Request, who: Who, subject: Subject, deleted: Deleted = False,
                     deleted_only: bool = False, offset: Offset = 0,
                     limit: Limit = -1) -> list[int]:
        reg = registry(request)
        if deleted_only:
            every = reg.versions(subject, include_deleted=True)
            try:
                live = set(reg.versions(subject))
            except SubjectNotFound:
                live = set()
            numbers = [n for n in every if n not in live]
        else:
            numbers = reg.versions(subject, include_deleted=deleted)
        _record(request, who, "schema_read", reason=f"{subject} versions",
                extra={"subject": subject})
        return _page(numbers, offset, limit)

    @router.get("/subjects/{subject}/versions/{version}", response_model=SubjectVersionBody,
                response_model_by_alias=True, summary="One version of a subject")
    def get_version(request: Request, who: Who, subject: Subject, version: Version,
                    deleted: Deleted = False, format: str | None = None) -> SubjectVersionBody:
        found = registry(request).get_version(subject, _version(version), include_deleted=deleted)
        _record(request, who, "schema_read", reason=f"{subject} v{found.version}",
                extra={"subject": subject, "version": found.version, "schema_id": found.id})
        return _version_body(found)

    @router.get("/subjects/{subject}/versions/{version}/schema",
                summary="Only the schema text of a version",
                responses={200: {"content": {CONTENT_TYPE: {"schema": {}}},
                                 "description": "The schema itself (JSON)"}})
    def get_version_schema(request: Request, who: Who, subject: Subject, version: Version,
                           deleted: Deleted = False) -> Response:
        found = registry(request).get_version(subject, _version(version), include_deleted=deleted)
        _record(request, who, "schema_read", reason=f"{subject} v{found.version}",
                extra={"subject": subject, "version": found.version, "schema_id": found.id})
        return Response(found.schema, media_type=CONTENT_TYPE)

    @router.post("/subjects/{subject}/versions", response_model=RegisteredId,
                 summary="Register a schema under a subject", openapi_extra=_BODY_EXTRA)
    def register_schema(request: Request, who: Who, subject: Subject,
                        body: Annotated[SchemaBody, Body()],
                        normalize: Normalize = False) -> RegisteredId:
        _subject(subject)
        text, stype, refs = _schema_text(body), _schema_type(body.schemaType), _refs(body)
        # The platform's governed call: `register` on the subject's topic (and `declassify` for a
        # version that weakens a classification), compatibility enforced, audited.
        schema_id = platform_of(request).register_schema(subject, text, stype.value, actor=who.name,
                                                         principal=who, references=refs)
        return RegisteredId(id=schema_id)

    @router.post("/subjects/{subject}", response_model=SubjectVersionBody,
                 response_model_by_alias=True, openapi_extra=_BODY_EXTRA,
                 summary="Look a schema up under a subject")
    def lookup_schema(request: Request, who: Who, subject: Subject,
                      body: Annotated[SchemaBody, Body()], deleted: Deleted = False,
                      normalize: Normalize = False,
                      format: str | None = None) -> SubjectVersionBody:
        found = registry(request).lookup(subject, _schema_text(body), _schema_type(body.schemaType),
                                         references=_refs(body), include_deleted=deleted)
        _record(request, who, "schema_read", reason=f"lookup {subject} -> v{found.version}",
                extra={"subject": subject, "version": found.version, "schema_id": found.id})
        return _version_body(found)

    @router.delete("/subjects/{subject}", response_model=list[int],
                   summary="Delete a subject (soft, or permanent after a soft delete)")
    def delete_subject(request: Request, who: Who, subject: Subject,
                       permanent: Permanent = False) -> list[int]:
        _require_topic_admin(request, who, subject)
        reg = registry(request)
        try:
            numbers = reg.delete_subject(subject, permanent=permanent)
        except SubjectNotFound:
            if not permanent and subject in reg.subjects(include_deleted=True):
                raise _fail(404, 40404, f"Subject '{subject}' was soft deleted. Set "
                                        "permanent=true to delete permanently") from None
            raise
        _record(request, who, "schema_delete",
                reason=f"{subject} {'permanently ' if permanent else ''}deleted",
                extra={"subject": subject, "versions": numbers, "permanent": permanent})
        return numbers

    @router.delete("/subjects/{subject}/versions/{version}", response_model=int,
                   summary="Delete a version (soft, or permanent after a soft delete)")
    def delete_version(request: Request, who: Who, subject: Subject, version: Version,
                       permanent: Permanent = False) -> int:
        _require_topic_admin(request, who, subject)
        reg = registry(request)
        wanted = _version(version)
        try:
            number = reg.delete_version(subject, wanted, permanent=permanent)
        except (SubjectNotFound, VersionNotFound):
            if not permanent and wanted != "latest":
                try:
                    gone = reg.get_version(subject, wanted, include_deleted=True).deleted
                except (SubjectNotFound, VersionNotFound):
                    gone = False
                if gone:
                    raise _fail(404, 40406, f"Version {wanted} of subject '{subject}' was soft "
                                            "deleted. Set permanent=true to delete permanently"
                                ) from None
            raise
        _record(request, who, "schema_delete",
                reason=f"{subject} v{number} {'permanently ' if permanent else ''}deleted",
                extra={"subject": subject, "version": number, "permanent": permanent})
        return number

    # -- compatibility ------------------------------------------------------------------------
    def _check(request: Request, who: Who, subject: str, body: SchemaBody,
               version: int | Literal["latest", "all"], verbose: bool) -> CompatibilityBody:
        reg = registry(request)
        if isinstance(version, int):
            reg.get_version(subject, version)  # 40401 / 40402 before comparing
        result = reg.check(subject, _schema_text(body), _schema_type(body.schemaType),
                           version=version, references=_refs(body))
        _record(request, who, "schema_check",
                reason=f"{subject} {version}: {'compatible' if result.compatible else 'incompatible'}",
                extra={"subject": subject, "version": version, "compatible": result.compatible})
        return CompatibilityBody(is_compatible=result.compatible,
                                 messages=list(result.messages) if verbose else None)

    @router.post("/compatibility/subjects/{subject}/versions/{version}",
                 response_model=CompatibilityBody, response_model_exclude_none=True,
                 openapi_extra=_BODY_EXTRA, summary="Test a schema against one version")
    def test_compatibility(request: Request, who: Who, subject: Subject, version: Version,
                           body: Annotated[SchemaBody, Body()], verbose: Verbose = False,
                           normalize: Normalize = False) -> CompatibilityBody:
        return _check(request, who, subject, body, _version(version), verbose)

    @router.post("/compatibility/subjects/{subject}/versions", response_model=CompatibilityBody,
                 response_model_exclude_none=True, openapi_extra=_BODY_EXTRA,
                 summary="Test a schema against every live version")
    def test_compatibility_all(request: Request, who: Who, subject: Subject,
                               body: Annotated[SchemaBody, Body()], verbose: Verbose = False,
                               normalize: Normalize = False) -> CompatibilityBody:
        return _check(request, who, subject, body, "all", verbose)

    # -- configuration ------------------------------------------------------------------------
    @router.get("/config", response_model=ConfigBody, summary="The global compatibility level")
    def get_config(request: Request, who: Who) -> ConfigBody:
        mode = registry(request).get_config(None)
        _record(request, who, "schema_read", reason="global config")
        return ConfigBody(compatibilityLevel=mode)

    @router.put("/config", response_model=ConfigUpdated,
                summary="Set the global compatibility level")
    def set_config(request: Request, who: Who,
                   body: Annotated[ConfigUpdate, Body()]) -> ConfigUpdated:
        _require_admin(request, who)
        mode = registry(request).set_config(None, _level(body.compatibility or body.compatibilityLevel))
        _record(request, who, "schema_config", reason=f"global -> {mode.value}",
                extra={"compatibility": mode.value})
        return ConfigUpdated(compatibility=mode)

    @router.delete("/config", response_model=ConfigBody,
                   summary="Reset the global compatibility level (returns the old one)")
    def delete_config(request: Request, who: Who) -> ConfigBody:
        _require_admin(request, who)
        reg = registry(request)
        before = reg.get_config(None)
        reg.delete_config(None)
        _record(request, who, "schema_config", reason=f"global reset (was {before.value})",
                extra={"compatibility": None})
        return ConfigBody(compatibilityLevel=before)

    @router.get("/config/{subject}", response_model=ConfigBody,
                summary="A subject's compatibility level")
    def get_subject_config(request: Request, who: Who, subject: Subject,
                           defaultToGlobal: bool = False) -> ConfigBody:  # noqa: N803
        mode = registry(request).get_config(subject, default_to_global=defaultToGlobal)
        if mode is None:
            raise _fail(404, 40408, f"Subject '{subject}' does not have subject-level "
                                    "compatibility configured")
        _record(request, who, "schema_read", reason=f"{subject} config", extra={"subject": subject})
        return ConfigBody(compatibilityLevel=mode)

    @router.put("/config/{subject}", response_model=ConfigUpdated,
                summary="Set a subject's compatibility level")
    def set_subject_config(request: Request, who: Who, subject: Subject,
                           body: Annotated[ConfigUpdate, Body()]) -> ConfigUpdated:
        _subject(subject)
        _require_topic_admin(request, who, subject)
        level = _level(body.compatibility or body.compatibilityLevel)
        mode = registry(request).set_config(subject, level)
        _record(request, who, "schema_config", reason=f"{subject} -> {mode.value}",
                extra={"subject": subject, "compatibility": mode.value})
        return ConfigUpdated(compatibility=mode)

    @router.delete("/config/{subject}", response_model=ConfigBody,
                   summary="Drop a subject's own level (it falls back to the global one)")
    def delete_subject_config(request: Request, who: Who, subject: Subject) -> ConfigBody:
        _require_topic_admin(request, who, subject)
        reg = registry(request)
        before = reg.get_config(subject, default_to_global=False)
        if before is None:
            raise _fail(404, 40408, f"Subject '{subject}' does not have subject-level "
                                    "compatibility configured")
        reg.delete_config(subject)
        _record(request, who, "schema_config", reason=f"{subject} reset (was {before.value})",
                extra={"subject": subject, "compatibility": None})
        return ConfigBody(compatibilityLevel=before)

    return router
