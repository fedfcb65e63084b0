"""Configuration of authentication, a section of the main :class:`headwater.Config`.

::

    auth:
      api_key_cache_ttl_s: 30        # 0 disables the verification cache
      jwt:                           # absent: bearer JWTs are refused
        issuer: https://idp.example.com/
        audience: headwater          # or a list
        hs256_secret: ${HW_JWT_SECRET}   # HS256; at least 32 bytes
        jwks_path: jwks.json         # RS256 / ES256; relative to the platform directory
        algorithms: [HS256, RS256, ES256]
        leeway_s: 60
        principal_claim: sub
        roles_claim: roles

Precedence is the main config's (arguments > environment > file > defaults). ``hs256_secret``
is a :class:`pydantic.SecretStr`: it never shows in reprs, logs or errors.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

if TYPE_CHECKING:
    from headwater.auth._authenticator import Authenticator
    from headwater.metadata import MetadataStore

__all__ = ["AuthConfig", "JwtConfig"]


class _Model(BaseModel):
    # hide_input_in_errors: a validation error must not echo a secret it was given.
    model_config = ConfigDict(extra="forbid", frozen=False, hide_input_in_errors=True)


class JwtConfig(_Model):
    """Bearer JWT verification (see :class:`headwater.auth.JwtVerifier`)."""

    issuer: str = Field(min_length=1, description="Required value of the ``iss`` claim.")
    audience: str | list[str] = Field(description="Accepted ``aud`` value(s).")
    hs256_secret: SecretStr | None = Field(None, description="Shared HS256 key, >= 32 bytes.")
    jwks_path: str | None = Field(
        None, description="JWKS JSON file for RS256/ES256, relative to the platform directory."
    )
    algorithms: list[Literal["HS256", "RS256", "ES256"]] = Field(
        default_factory=lambda: ["HS256", "RS256", "ES256"], min_length=1
    )
    leeway_s: float = Field(60.0, ge=0, le=3600, description="Clock skew allowed on exp/nbf/iat.")
    principal_claim: str = "sub"
    roles_claim: str = "roles"

    @model_validator(mode="after")
    def _needs_a_key(self) -> JwtConfig:
        if self.hs256_secret is None and self.jwks_path is None:
            raise ValueError("jwt needs hs256_secret and/or jwks_path")
        if (
            self.hs256_secret is not None
            and len(self.hs256_secret.get_secret_value().encode()) < 32
        ):
            raise ValueError("jwt.hs256_secret must be at least 32 bytes")
        return self


class AuthConfig(_Model):
    """API keys (always on) and optional JWT bearer tokens."""

    api_key_cache_ttl_s: float = Field(
        30.0,
        ge=0,
        le=3600,
        description="How long a verified API key is trusted without the database; also how "
        "long other processes may accept a key after it is revoked.",
    )
    jwt: JwtConfig | None = None

    def build(self, meta: MetadataStore, *, base_dir: str | Path | None = None) -> Authenticator:
        """The :class:`~headwater.auth.Authenticator` this configuration describes."""
        from headwater.auth._authenticator import Authenticator
        from headwater.auth._jwt import JwtVerifier
        from headwater.auth._keys import ApiKeys

        verifier = None
        if self.jwt is not None:
            jwks_path = None
            if self.jwt.jwks_path is not None:
                jwks_path = Path(self.jwt.jwks_path)
                if base_dir is not None and not jwks_path.is_absolute():
                    jwks_path = Path(base_dir) / jwks_path
            verifier = JwtVerifier(
                self.jwt.issuer,
                self.jwt.audience,
                hs256_secret=self.jwt.hs256_secret,
                jwks_path=jwks_path,
                algorithms=tuple(self.jwt.algorithms),
                leeway_s=self.jwt.leeway_s,
                principal_claim=self.jwt.principal_claim,
                roles_claim=self.jwt.roles_claim,
            )
        return Authenticator(ApiKeys(meta, cache_ttl_s=self.api_key_cache_ttl_s), verifier)
