"""One entry point for credentials: route a token to API keys or JWT, return who it names."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from headwater.auth._keys import INVALID_CREDENTIALS, KEY_PREFIX
from headwater.errors import AuthenticationError
from headwater.principal import Principal

if TYPE_CHECKING:
    from headwater.auth._jwt import JwtVerifier
    from headwater.auth._keys import ApiKeys

__all__ = ["AuthResult", "Authenticator"]


@dataclass(frozen=True, slots=True)
class AuthResult:
    """Who authenticated, and how.

    API keys carry no roles or attributes (the policy file's principal of the same name gives
    them); a JWT carries what its claims say.
    """

    principal_name: str
    method: Literal["api_key", "jwt"]
    roles: tuple[str, ...] = ()
    attributes: Mapping[str, Any] = field(default_factory=dict)

    def principal(self) -> Principal:
        """This identity as a :class:`~headwater.principal.Principal`."""
        return Principal(
            name=self.principal_name, roles=self.roles, attributes=dict(self.attributes)
        )


class Authenticator:
    """Routes a credential to the right verifier.

    A token starting with ``hwk_`` is an API key (``<key_id>.<secret>``); a token with exactly
    two dots is a JWT; anything else, or a JWT when no ``jwt`` verifier is configured, fails with
    :class:`~headwater.errors.AuthenticationError` (``"invalid credentials"``). An
    ``Authorization`` header value (``Bearer <token>``) is accepted as well.
    """

    def __init__(self, api_keys: ApiKeys | None, jwt: JwtVerifier | None = None) -> None:
        self.api_keys = api_keys
        self.jwt = jwt

    def __repr__(self) -> str:
        return f"Authenticator(api_keys={self.api_keys!r}, jwt={self.jwt!r})"

    def authenticate(self, token: str) -> AuthResult:
        """Verify a bearer token (API key token or JWT)."""
        if not isinstance(token, str):
            raise AuthenticationError(INVALID_CREDENTIALS)
        token = token.strip()
        scheme, _, rest = token.partition(" ")
        if rest and scheme.lower() == "bearer":
            token = rest.strip()
        if token.startswith(KEY_PREFIX) and self.api_keys is not None:
            return AuthResult(self.api_keys.verify(token), "api_key")
        if token.count(".") == 2 and self.jwt is not None:
            name, roles, attributes = self.jwt.verify(token)
            return AuthResult(name, "jwt", roles, attributes)
        raise AuthenticationError(INVALID_CREDENTIALS)

    def is_cached(self, credential: str | tuple[str, str]) -> bool:
        """Whether an API key credential (a token, or a (key id, secret) pair) would be verified
        from the cache, without a slow hash (JWTs and everything else: False)."""
        if self.api_keys is None:
            return False
        if isinstance(credential, tuple):
            return self.api_keys.is_cached(*credential)
        return isinstance(credential, str) and self.api_keys.is_cached(credential.strip())

    def authenticate_basic(self, key_id: str, secret: str) -> AuthResult:
        """Verify an API key given as HTTP Basic user (key id) and password (secret)."""
        if self.api_keys is None:
            raise AuthenticationError(INVALID_CREDENTIALS)
        return AuthResult(self.api_keys.verify(key_id, secret), "api_key")
