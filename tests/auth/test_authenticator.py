"""The authenticator routes tokens; secrets stay out of logs; AuthConfig builds it."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import ValidationError

from headwater.auth import ApiKeys, AuthConfig, Authenticator, AuthResult, JwtVerifier
from headwater.errors import AuthenticationError
from headwater.principal import Principal
from tests.auth.conftest import FAST_SCRYPT

ISS, AUD = "https://idp.example.com/", "headwater"
HS_SECRET = "0123456789abcdef0123456789abcdef-hs"


@pytest.fixture
def auth(keys, clock) -> Authenticator:
    return Authenticator(keys, JwtVerifier(ISS, AUD, hs256_secret=HS_SECRET, clock=clock, roles_claim="roles",
                                           attribute_claims={"countries": "countries"}))


def _jwt(clock, **claims) -> str:
    now = int(clock.now.timestamp())
    body = {"iss": ISS, "aud": AUD, "sub": "carol", "exp": now + 60, "roles": ["support_eu"]}
    return jwt.encode({**body, **claims}, HS_SECRET, algorithm="HS256")


def test_api_key_token(auth, keys):
    created = keys.create("bob")
    result = auth.authenticate(created.token)
    assert result == AuthResult("bob", "api_key", (), {})
    assert auth.authenticate(f"Bearer {created.token}").principal_name == "bob"
    assert auth.authenticate_basic(created.key_id, created.secret).method == "api_key"


def test_jwt_token(auth, clock):
    result = auth.authenticate(_jwt(clock, countries=["DE"]))
    assert result.method == "jwt"
    assert result.principal() == Principal("carol", ("support_eu",), {"countries": ["DE"]})
    assert auth.authenticate("bearer " + _jwt(clock)).principal_name == "carol"


@pytest.mark.parametrize("token", ["", "   ", "nope", "a.b", "a.b.c.d", "Bearer ", "hwk_", None])
def test_garbage(auth, token):
    with pytest.raises(AuthenticationError, match="^invalid credentials$"):
        auth.authenticate(token)  # type: ignore[arg-type]


def test_jwt_without_a_verifier(keys, clock):
    with pytest.raises(AuthenticationError, match="^invalid credentials$"):
        Authenticator(keys).authenticate(_jwt(clock))


def test_api_keys_without_a_store(clock):
    auth = Authenticator(None, JwtVerifier(ISS, AUD, hs256_secret=HS_SECRET, clock=clock))
    with pytest.raises(AuthenticationError):
        auth.authenticate("hwk_aaaaaaaaaaaa." + "a" * 43)
    with pytest.raises(AuthenticationError):
        auth.authenticate_basic("hwk_aaaaaaaaaaaa", "a" * 43)


def test_same_message_across_methods(auth, keys, clock):
    created = keys.create("bob", expires_in=timedelta(seconds=5))
    expired_jwt = _jwt(clock, exp=int(clock.now.timestamp()) - 3600)
    clock.advance(seconds=6)
    messages = set()
    for token in (created.token, expired_jwt, _jwt(clock, aud="x"), "junk"):
        with pytest.raises(AuthenticationError) as info:
            auth.authenticate(token)
        messages.add(str(info.value))
    assert messages == {"invalid credentials"}


def test_secrets_never_reach_logs(auth, keys, clock, caplog):
    caplog.set_level(logging.DEBUG, logger="headwater")
    created = keys.create("bob")
    other = keys.create("carol")
    auth.authenticate(created.token)
    keys.revoke(created.key_id)
    wrong = f"{created.key_id}.{other.secret}"
    bad_jwt = _jwt(clock, aud="x")
    for token in (created.token, wrong, bad_jwt):
        with pytest.raises(AuthenticationError):
            auth.authenticate(token)
    text = caplog.text + repr(auth) + repr(keys)
    for secret in (created.secret, other.secret, HS_SECRET, bad_jwt.split(".")[2]):
        assert secret not in text
    assert created.key_id in caplog.text  # the public id is what operators need


# -- AuthConfig -----------------------------------------------------------------------------------


def test_config_defaults():
    cfg = AuthConfig()
    assert cfg.jwt is None and cfg.api_key_cache_ttl_s == 30


def test_config_hides_the_secret():
    cfg = AuthConfig.model_validate(
        {"jwt": {"issuer": ISS, "audience": AUD, "hs256_secret": HS_SECRET}}
    )
    for text in (repr(cfg), str(cfg), cfg.model_dump_json()):
        assert HS_SECRET not in text


@pytest.mark.parametrize(
    "jwt_section",
    [
        {"issuer": ISS, "audience": AUD},  # no key
        {"issuer": ISS, "audience": AUD, "hs256_secret": "short-secret-value"},
        {"issuer": "", "audience": AUD, "hs256_secret": HS_SECRET},
        {"issuer": ISS, "audience": AUD, "hs256_secret": HS_SECRET, "algorithms": ["none"]},
        {"issuer": ISS, "audience": AUD, "hs256_secret": HS_SECRET, "leeway_s": -1},
        {"issuer": ISS, "audience": AUD, "hs256_secret": HS_SECRET, "surprise": 1},
    ],
)
def test_config_validation_never_echoes_secrets(jwt_section):
    with pytest.raises(ValidationError) as info:
        AuthConfig.model_validate({"jwt": jwt_section})
    assert "short-secret-value" not in str(info.value) and HS_SECRET not in str(info.value)


def test_config_builds_an_authenticator(meta, tmp_path, clock):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key())) | {"kid": "k1"}
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [jwk]}))
    cfg = AuthConfig.model_validate(
        {
            "api_key_cache_ttl_s": 5,
            "jwt": {
                "issuer": ISS,
                "audience": [AUD],
                "hs256_secret": HS_SECRET,
                "jwks_path": "jwks.json",
                "algorithms": ["HS256", "RS256"],
                "leeway_s": 0,
            },
        }
    )
    auth = cfg.build(meta, base_dir=tmp_path)
    assert auth.jwt is not None and auth.jwt.leeway_s == 0
    assert auth.jwt.algorithms == ("HS256", "RS256")
    token = jwt.encode(
        {"iss": ISS, "aud": AUD, "sub": "dave", "exp": 2**40}, key, "RS256", headers={"kid": "k1"}
    )
    assert auth.authenticate(token).principal_name == "dave"
    created = ApiKeys(meta, scrypt=FAST_SCRYPT).create("erin")
    assert auth.authenticate(created.token).principal_name == "erin"


def test_config_maps_claims_explicitly(meta):
    jwt_base = {"issuer": ISS, "audience": AUD, "hs256_secret": HS_SECRET}
    token = jwt.encode({"iss": ISS, "aud": AUD, "sub": "erin", "exp": 2**40, "name": "alice", "roles": ["admin"],
                        "grp": "support_eu analyst", "rgn": "EU", "region": "US"}, HS_SECRET, "HS256")
    # Defaults: name from sub, no roles or attributes from the token.
    plain = AuthConfig.model_validate({"jwt": jwt_base}).build(meta)
    assert plain.authenticate(token).principal() == Principal("erin", (), {})
    mapped = AuthConfig.model_validate({"jwt": {**jwt_base, "claims": {
        "name": "sub", "roles": "grp", "attributes": {"region": "rgn"}}}}).build(meta)
    assert mapped.authenticate(token).principal() == Principal("erin", ("support_eu", "analyst"), {"region": "EU"})
    # The older spellings still work and mean the same.
    older = AuthConfig.model_validate({"jwt": {**jwt_base, "principal_claim": "sub", "roles_claim": "grp"}}).build(meta)
    assert older.authenticate(token).principal() == Principal("erin", ("support_eu", "analyst"), {})


@pytest.mark.parametrize("claims", [
    {"attributes": {"name": "name"}},          # name is the principal's name, not an attribute
    {"attributes": {"bad-attr": "x"}},
    {"name": ""},
    {"roles": "a b"},
    {"surprise": "x"},
])
def test_config_rejects_bad_claim_mappings(claims):
    with pytest.raises(ValidationError):
        AuthConfig.model_validate({"jwt": {"issuer": ISS, "audience": AUD, "hs256_secret": HS_SECRET,
                                           "claims": claims}})
    with pytest.raises(ValidationError, match="not both"):
        AuthConfig.model_validate({"jwt": {"issuer": ISS, "audience": AUD, "hs256_secret": HS_SECRET,
                                           "claims": {"name": "sub"}, "roles_claim": "roles"}})
