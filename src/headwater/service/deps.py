"""FastAPI dependencies: the platform, the authenticated principal, a governed session.

Credentials are accepted the ways off-the-shelf clients send them:

* ``X-API-Key: <key_id>.<secret>``
* ``Authorization: Bearer <api key token or JWT>``
* ``Authorization: Basic base64(<key_id>:<secret>)`` (as Confluent Cloud takes API keys, so a
  ``SchemaRegistryClient`` with ``basic.auth.user.info`` works unmodified)

Anything missing or invalid is :class:`~headwater.errors.AuthenticationError` (401 with a
``WWW-Authenticate`` challenge); the message never says which part was wrong.

A request's credential is verified once: the outcome, success or failure, is kept on
``request.state`` (the limits middleware verifies first, the route's dependency reuses it), so a
wrong API key costs one slow hash, not two.
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING

from fastapi import Request

from headwater.errors import AccessDenied, AuthenticationError
from headwater.principal import Principal

if TYPE_CHECKING:
    from headwater.access.session import Session
    from headwater.platform import Platform

__all__ = ["credentials", "is_admin", "key_id", "platform_of", "principal", "require_admin", "session"]

_MISSING = "missing credentials"
_INVALID = "invalid credentials"


def platform_of(request: Request) -> Platform:
    """The platform the app serves (``app.state.platform``)."""
    return request.app.state.platform  # type: ignore[no-any-return]


def credentials(request: Request) -> str | tuple[str, str] | None:
    """The credential a request carries: a token, a (key id, secret) pair, or None."""
    key = request.headers.get("x-api-key")
    if key:
        return key.strip()
    auth = request.headers.get("authorization")
    if not auth:
        return None
    scheme, _, rest = auth.strip().partition(" ")
    scheme = scheme.lower()
    rest = rest.strip()
    if scheme == "bearer" and rest:
        return rest
    if scheme == "basic" and rest:
        try:
            decoded = base64.b64decode(rest, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise AuthenticationError(_INVALID) from None
        user, colon, secret = decoded.partition(":")
        if not colon or not user or not secret:
            raise AuthenticationError(_INVALID)
        return user, secret
    raise AuthenticationError(_INVALID)


def principal(request: Request) -> Principal:
    """Authenticate the request once: the principal, or the failure, is kept on
    ``request.state`` for the rest of the request."""
    cached = getattr(request.state, "principal", None)
    if isinstance(cached, Principal):
        return cached
    if getattr(request.state, "auth_failed", False):
        raise AuthenticationError(_INVALID)
    cred = credentials(request)
    if cred is None:
        raise AuthenticationError(_MISSING)
    platform = platform_of(request)
    try:
        if isinstance(cred, tuple):
            key_id, secret = cred
            # An API key token is "<key_id>.<secret>": Basic carries the same two halves.
            if "." in key_id or "." in secret:
                raise AuthenticationError(_INVALID)
            who = platform.authenticate(f"{key_id}.{secret}")
        else:
            who = platform.authenticate(cred)
    except AuthenticationError:
        request.state.auth_failed = True
        raise
    request.state.principal = who
    return who


def key_id(cred: str | tuple[str, str]) -> str | None:
    """The API key id of a credential that verifying would hash (None: a JWT, or a key too
    malformed to be hashed)."""
    from headwater.auth import KEY_PREFIX, key_id_of

    if isinstance(cred, tuple):
        return key_id_of(*cred)
    return key_id_of(cred) if cred.startswith(KEY_PREFIX) else None


def session(request: Request) -> Session:
    """A governed session for the request's principal."""
    from headwater.access.session import Session

    return Session(platform_of(request), principal(request))


def is_admin(platform: Platform, who: Principal, admin_roles: tuple[str, ...]) -> bool:
    """Whether a principal may use admin routes.

    With no policy applied the platform is open (as in the SDK); once one is, the principal's
    roles as the policy resolves them (token roles, else the policy file's) must include one of
    ``admin_roles``.
    """
    engine = platform.policy_engine()
    if engine is None:
        return True
    roles, _ = engine.resolve(who)
    return any(r in admin_roles for r in roles)


def require_admin(request: Request) -> Principal:
    """Dependency for admin-only routes: the principal, or 403 ``AccessDenied`` (audited)."""
    who = principal(request)
    cfg = request.app.state.service_config
    platform = platform_of(request)
    if not is_admin(platform, who, tuple(cfg.admin_roles)):
        from headwater.audit import AuditEvent

        platform.record(AuditEvent(actor=who.name, action="deny", decision="deny", reason="admin route",
                                   extra={"path": request.url.path, "method": request.method}))
        raise AccessDenied(f"{who.name} is not an administrator (needs one of the roles: "
                           f"{', '.join(cfg.admin_roles)})", rule="admin")
    return who
