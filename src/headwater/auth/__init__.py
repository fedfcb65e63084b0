"""Authentication: who is asking, proven by an API key or a JWT bearer token.

* :class:`ApiKeys` -- keys in the metadata database (``hw_api_keys``), shown once at creation as
  ``<key_id>.<secret>``, stored only as scrypt hashes, revocable, optionally expiring, verified
  with a short in-process cache (see :mod:`headwater.auth._keys` for the hash parameters and the
  revocation latency across processes).
* :class:`JwtVerifier` -- HS256 / RS256 / ES256 tokens with issuer, audience and clock-skew
  checks and a JWKS from a dict or file (see :mod:`headwater.auth._jwt`).
* :class:`Authenticator` -- routes a token (``hwk_...`` to API keys, ``a.b.c`` to JWT) and returns
  an :class:`AuthResult`.
* :class:`AuthConfig` -- the ``auth:`` section of the configuration.

Every failure -- unknown, malformed, wrong, expired, revoked, badly signed, wrong issuer or
audience -- is :class:`~headwater.errors.AuthenticationError` with the one message
``"invalid credentials"``. Secrets and tokens never appear in reprs, logs or errors; the
``headwater.auth`` logger records failure reasons at DEBUG level with the public key id only.
"""

from headwater.auth._authenticator import Authenticator, AuthResult
from headwater.auth._jwt import SUPPORTED_ALGORITHMS, JwtIdentity, JwtVerifier
from headwater.auth._keys import (
    DEFAULT_SCRYPT,
    INVALID_CREDENTIALS,
    KEY_PREFIX,
    ApiKeyInfo,
    ApiKeys,
    CreatedKey,
    ScryptParams,
    key_id_of,
)
from headwater.auth.config import AuthConfig, JwtConfig

__all__ = [
    "DEFAULT_SCRYPT",
    "INVALID_CREDENTIALS",
    "KEY_PREFIX",
    "SUPPORTED_ALGORITHMS",
    "ApiKeyInfo",
    "ApiKeys",
    "AuthConfig",
    "AuthResult",
    "Authenticator",
    "CreatedKey",
    "JwtConfig",
    "JwtIdentity",
    "JwtVerifier",
    "ScryptParams",
    "key_id_of",
]
