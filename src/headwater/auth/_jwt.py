"""JWT bearer tokens: HS256 with a shared secret, RS256 and ES256 with a JWKS (PyJWT).

What a token must satisfy, in order (every failure is the same
:class:`~headwater.errors.AuthenticationError`, ``"invalid credentials"``):

1. at most ``max_token_bytes`` long, three dot-separated parts, a parsable header;
2. header ``alg`` is one of the configured ``algorithms`` (``none`` never is);
3. the key is chosen by the algorithm *and* its type, never by the token alone: ``HS256`` only
   ever uses ``hs256_secret``; ``RS256`` only RSA keys of the JWKS, ``ES256`` only P-256 EC keys.
   So a token signed with HMAC using the RSA public key as the secret (algorithm confusion) finds
   no key or fails its signature. With a ``kid`` the JWKS key of that id is used (and must fit
   the algorithm, and the JWK's own ``alg`` when it has one); without a ``kid``, only when
   exactly one JWKS key fits;
4. the signature verifies; ``iss`` equals ``issuer``; ``aud`` (string or list) contains one of
   ``audience``; ``exp`` is present;
5. times, against ``clock`` with ``leeway_s`` of skew either way: ``exp`` not passed,
   ``nbf`` (if present) reached, ``iat`` (if present) not in the future;
6. the name claim (``name_claim``, default ``sub``) is a non-empty printable string without
   surrounding spaces; the roles claim (``roles_claim``, default none), if mapped and present,
   is a list of strings or a space-separated string; each mapped attribute claim, if present, is
   a string, number, boolean or a list of those.

Identity comes only from mapped claims (``auth.jwt.claims`` in the configuration): the name from
``name_claim``, roles from ``roles_claim`` and each attribute ``principal.<attribute>`` from the
claim ``attribute_claims`` maps it to. Every other claim is ignored: a display-name claim
``name``, a ``region`` the issuer lets users edit, anything an identity provider adds later
cannot reach a row filter unless the configuration says so.

JWKS come from a dict or a JSON file (``jwks_path``; :meth:`JwtVerifier.reload_jwks` re-reads it
after a rotation); there is no network fetch. Only RSA (>= 2048 bits) and EC P-256 public keys
with ``use`` absent or ``sig`` are taken; symmetric (``oct``) JWKs are refused, HS256 uses
``hs256_secret`` (at least 32 bytes).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import SecretStr

from headwater.auth._keys import INVALID_CREDENTIALS
from headwater.errors import AuthenticationError, ConfigError, MissingDependency

__all__ = ["SUPPORTED_ALGORITHMS", "JwtIdentity", "JwtVerifier"]

log = logging.getLogger("headwater.auth")

SUPPORTED_ALGORITHMS = ("HS256", "RS256", "ES256")
"""The algorithms a :class:`JwtVerifier` can be configured with."""

_SCALARS = (str, int, float, bool)

_MIN_HMAC_BYTES = 32
_MIN_RSA_BITS = 2048


def _jwt_module() -> Any:
    try:
        import jwt
    except ImportError:  # pragma: no cover - PyJWT is a dependency
        raise MissingDependency(
            "JWT authentication needs PyJWT with cryptography: pip install 'PyJWT[crypto]'"
        ) from None
    return jwt


def _fail() -> AuthenticationError:
    return AuthenticationError(INVALID_CREDENTIALS)


class JwtIdentity(NamedTuple):
    """Who a verified token names: ``name, roles, attributes = verifier.verify(token)``."""

    principal_name: str
    roles: tuple[str, ...]
    attributes: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class _Jwk:
    kid: str | None
    alg: str
    """The algorithm this key serves: RS256 or ES256."""
    jwk_alg: str | None
    key: Any


def _load_jwks(jwks: Mapping[str, Any]) -> tuple[_Jwk, ...]:
    jwt = _jwt_module()
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    keys = jwks.get("keys") if isinstance(jwks, Mapping) else None
    if not isinstance(keys, list):
        raise ConfigError("a JWKS is a JSON object with a 'keys' list")
    loaded: list[_Jwk] = []
    for i, data in enumerate(keys):
        if not isinstance(data, Mapping):
            raise ConfigError(f"JWKS key #{i} is not an object")
        kty = data.get("kty")
        if kty == "oct":
            raise ConfigError(
                f"JWKS key #{i}: symmetric (oct) keys are not accepted; use hs256_secret for HS256"
            )
        if data.get("use", "sig") != "sig":
            continue
        kid = data.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise ConfigError(f"JWKS key #{i}: 'kid' must be a string")
        try:
            key = jwt.PyJWK(dict(data)).key
        except jwt.PyJWTError as err:
            raise ConfigError(f"JWKS key #{i} ({kid or 'no kid'}) is unusable: {err}") from None
        if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            key = key.public_key()
        if isinstance(key, rsa.RSAPublicKey):
            if key.key_size < _MIN_RSA_BITS:
                raise ConfigError(f"JWKS key #{i} ({kid or 'no kid'}): RSA keys need >= 2048 bits")
            alg = "RS256"
        elif isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1":
            alg = "ES256"
        else:
            raise ConfigError(f"JWKS key #{i} ({kid or 'no kid'}): only RSA and EC P-256 keys")
        jwk_alg = data.get("alg")
        if jwk_alg is not None and jwk_alg != alg:
            raise ConfigError(
                f"JWKS key #{i} ({kid or 'no kid'}): alg {jwk_alg!r} does not fit the key"
            )
        loaded.append(_Jwk(kid=kid, alg=alg, jwk_alg=jwk_alg, key=key))
    return tuple(loaded)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


class JwtVerifier:
    """Verifies JWT bearer tokens; see the module docstring for every check.

    ``hs256_secret`` enables HS256; ``jwks`` (a dict) or ``jwks_path`` (a JSON file) enables
    RS256/ES256. ``clock`` returns the current aware UTC time (tests pass a controllable one).
    """

    def __init__(
        self,
        issuer: str,
        audience: str | Sequence[str],
        *,
        hs256_secret: str | bytes | SecretStr | None = None,
        jwks: Mapping[str, Any] | None = None,
        jwks_path: str | Path | None = None,
        algorithms: Sequence[str] = SUPPORTED_ALGORITHMS,
        leeway_s: float = 60.0,
        name_claim: str = "sub",
        roles_claim: str | None = None,
        attribute_claims: Mapping[str, str] | None = None,
        principal_claim: str | None = None,
        clock: Callable[[], datetime] | None = None,
        max_token_bytes: int = 16_384,
    ) -> None:
        if not issuer or not isinstance(issuer, str):
            raise ConfigError("JWT issuer must be a non-empty string")
        audiences = (audience,) if isinstance(audience, str) else tuple(audience)
        if not audiences or not all(isinstance(a, str) and a for a in audiences):
            raise ConfigError("JWT audience must be a non-empty string or list of strings")
        unknown = [a for a in algorithms if a not in SUPPORTED_ALGORITHMS]
        if unknown or not algorithms:
            raise ConfigError(
                f"JWT algorithms must be among {', '.join(SUPPORTED_ALGORITHMS)}; got {list(algorithms)!r}"
            )
        if jwks is not None and jwks_path is not None:
            raise ConfigError("give either jwks or jwks_path, not both")
        if leeway_s < 0:
            raise ConfigError("JWT leeway_s must be >= 0")
        self.issuer = issuer
        self.audience = audiences
        self.algorithms = tuple(dict.fromkeys(algorithms))
        self.leeway_s = float(leeway_s)
        # ``principal_claim`` is the older spelling of ``name_claim``.
        self.name_claim = principal_claim or name_claim
        self.roles_claim = roles_claim
        self.attribute_claims = dict(attribute_claims or {})
        if "name" in self.attribute_claims:
            raise ConfigError("the attribute 'name' is the principal's name: map it with name_claim")
        self.max_token_bytes = max_token_bytes
        self._clock = clock or (lambda: datetime.now(UTC))

        self._hs_key: bytes | None = None
        if hs256_secret is not None:
            if isinstance(hs256_secret, SecretStr):
                hs256_secret = hs256_secret.get_secret_value()
            raw = hs256_secret.encode() if isinstance(hs256_secret, str) else bytes(hs256_secret)
            if len(raw) < _MIN_HMAC_BYTES:
                raise ConfigError(f"JWT hs256_secret must be at least {_MIN_HMAC_BYTES} bytes")
            self._hs_key = raw
        self._jwks_path = Path(jwks_path) if jwks_path is not None else None
        self._keys: tuple[_Jwk, ...] = ()
        if jwks is not None:
            self._keys = _load_jwks(jwks)
        elif self._jwks_path is not None:
            self.reload_jwks()
        if self._hs_key is None and not self._keys:
            raise ConfigError("JWT verification needs hs256_secret and/or a JWKS with keys")
        _jwt_module()

    def __repr__(self) -> str:
        return (
            f"JwtVerifier(issuer={self.issuer!r}, audience={list(self.audience)!r}, "
            f"algorithms={list(self.algorithms)!r}, hs256={'set' if self._hs_key else 'unset'}, "
            f"jwks_keys={[k.kid for k in self._keys]!r})"
        )

    def reload_jwks(self, jwks: Mapping[str, Any] | None = None) -> None:
        """Replace the JWKS with ``jwks``, or re-read ``jwks_path`` (key rotation)."""
        if jwks is None:
            if self._jwks_path is None:
                raise ConfigError("no jwks_path to reload the JWKS from")
            try:
                jwks = json.loads(self._jwks_path.read_text())
            except OSError as err:
                raise ConfigError(
                    f"cannot read JWKS file {self._jwks_path}: {err.strerror}"
                ) from None
            except ValueError:
                raise ConfigError(f"JWKS file {self._jwks_path} is not valid JSON") from None
        self._keys = _load_jwks(jwks)  # type: ignore[arg-type]

    def _key_for(self, alg: str, kid: Any) -> Any:
        if alg == "HS256":
            return self._hs_key
        if kid is not None:
            if not isinstance(kid, str):
                return None
            fits = [k for k in self._keys if k.kid == kid and k.alg == alg]
        else:
            fits = [k for k in self._keys if k.alg == alg]
        return fits[0].key if len(fits) == 1 else None

    def verify(self, token: str) -> JwtIdentity:
        """The principal a valid token names, or :class:`~headwater.errors.AuthenticationError`."""
        jwt = _jwt_module()
        if not isinstance(token, str) or len(token) > self.max_token_bytes or token.count(".") != 2:
            raise _fail()
        try:
            header = jwt.get_unverified_header(token)
        except (jwt.PyJWTError, ValueError, TypeError):
            raise _fail() from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            log.debug("JWT rejected: algorithm not allowed")
            raise _fail()
        key = self._key_for(alg, header.get("kid"))
        if key is None:
            log.debug("JWT rejected: no key for alg %s", alg)
            raise _fail()
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=list(self.audience),
                issuer=self.issuer,
                options={
                    "verify_signature": True,
                    "verify_aud": True,
                    "verify_iss": True,
                    # Times are checked below against self._clock.
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "require": ["exp", "iss", "aud"],
                },
            )
        except (jwt.PyJWTError, ValueError, TypeError) as err:
            log.debug("JWT rejected: %s", type(err).__name__)
            raise _fail() from None
        self._check_times(claims)
        return self._identity(claims)

    def _check_times(self, claims: Mapping[str, Any]) -> None:
        now = self._clock().timestamp()
        exp = _number(claims.get("exp"))
        if exp is None or now >= exp + self.leeway_s:
            log.debug("JWT rejected: expired or bad exp")
            raise _fail()
        for name in ("nbf", "iat"):
            if name in claims:
                value = _number(claims[name])
                if value is None or value > now + self.leeway_s:
                    log.debug("JWT rejected: %s in the future or malformed", name)
                    raise _fail()

    def _identity(self, claims: Mapping[str, Any]) -> JwtIdentity:
        name = claims.get(self.name_claim)
        if (not isinstance(name, str) or not name or len(name) > 255 or not name.isprintable()
                or name != name.strip()):
            log.debug("JWT rejected: the name claim is missing or not a plain string")
            raise _fail()
        roles: tuple[str, ...] = ()
        raw_roles = claims.get(self.roles_claim) if self.roles_claim is not None else None
        if raw_roles is None:
            roles = ()
        elif isinstance(raw_roles, str):
            roles = tuple(raw_roles.split())
        elif isinstance(raw_roles, list) and all(isinstance(r, str) and r for r in raw_roles):
            roles = tuple(raw_roles)
        else:
            log.debug("JWT rejected: the roles claim is not a list of strings")
            raise _fail()
        attributes: dict[str, Any] = {}
        for attribute, claim in self.attribute_claims.items():
            if claim not in claims:
                continue
            value = claims[claim]
            ok = isinstance(value, _SCALARS) or (
                isinstance(value, list) and all(isinstance(v, _SCALARS) for v in value))
            if not ok:
                log.debug("JWT rejected: attribute claim for %s is not a value or list of values", attribute)
                raise _fail()
            attributes[attribute] = value
        return JwtIdentity(name, roles, attributes)
