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
        claims:                      # which claims say who the principal is; nothing else is read
          name: sub                  # default: sub. The principal's name (principal.name)
          roles: groups              # default: none (roles then come from the policy file)
          attributes:                # default: none. principal.<attribute> <- claim
            region: region
            countries: countries

Precedence is the main config's (arguments > environment > file > defaults). ``hs256_secret``
is a :class:`pydantic.SecretStr`: it never shows in reprs, logs or errors.

Claims are mapped explicitly: the principal's name, roles and attributes come only from the
claims named under ``claims`` (an attribute a row filter reads as ``principal.region`` must be
mapped), every other claim of a token is ignored, and a token whose ``name`` claim is missing or
not a string is refused. ``principal_claim``/``roles_claim`` are older spellings of
``claims.name``/``claims.roles``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

if TYPE_CHECKING:
    from headwater.auth._authenticator import Authenticator
    from headwater.metadata import MetadataStore

__all__ = ["AuthConfig", "JwtClaims", "JwtConfig"]

_CLAIM = re.compile(r"[A-Za-z_][A-Za-z0-9_:./-]{0,127}")
_ATTRIBUTE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


class _Model(BaseModel):
    # hide_input_in_errors: a validation error must not echo a secret it was given.
    model_config = ConfigDict(extra="forbid", frozen=False, hide_input_in_errors=True)


class JwtClaims(_Model):
    """Which token claims name the principal, its roles and its attributes (nothing else is read)."""

    name: str = Field("sub", description="Claim holding the principal's name (a non-empty string).")
    roles: str | None = Field(None, description="Claim holding the roles (a list of strings or a "
                              "space-separated string); unset: roles come from the policy file.")
    attributes: dict[str, str] = Field(default_factory=dict, description="principal.<attribute> -> "
                                       "the claim it comes from; unset attributes come from the policy file.")

    @field_validator("name", "roles")
    @classmethod
    def _claim_name(cls, value: str | None) -> str | None:
        if value is not None and not _CLAIM.fullmatch(value):
            raise ValueError("a claim name is 1-128 letters, digits or _:./- starting with a letter or _")
        return value

    @field_validator("attributes")
    @classmethod
    def _attribute_names(cls, value: dict[str, str]) -> dict[str, str]:
        for attribute, claim in value.items():
            if not _ATTRIBUTE.fullmatch(attribute) or attribute == "name":
                raise ValueError(f"attribute {attribute!r}: attribute names are identifiers, and 'name' is "
                                 "the principal's name (map it with claims.name)")
            if not _CLAIM.fullmatch(claim):
                raise ValueError(f"attribute {attribute!r}: {claim!r} is not a claim name")
        return value


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
    claims: JwtClaims = Field(default_factory=JwtClaims, description="Claims mapped to the principal.")
    principal_claim: str | None = Field(None, description="Older spelling of claims.name.")
    roles_claim: str | None = Field(None, description="Older spelling of claims.roles.")

    @model_validator(mode="after")
    def _legacy_claims(self) -> JwtConfig:
        if self.principal_claim is not None or self.roles_claim is not None:
            if "claims" in self.model_fields_set:
                raise ValueError("give claims, or the older principal_claim/roles_claim, not both")
            self.claims = JwtClaims(name=self.principal_claim or "sub", roles=self.roles_claim)
        return self

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
                name_claim=self.jwt.claims.name,
                roles_claim=self.jwt.claims.roles,
                attribute_claims=self.jwt.claims.attributes,
            )
        return Authenticator(ApiKeys(meta, cache_ttl_s=self.api_key_cache_ttl_s), verifier)
