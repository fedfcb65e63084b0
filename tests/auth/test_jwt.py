"""JWT verification: HS256, RS256, ES256, JWKS and kid rotation, claims, time, attacks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from pydantic import SecretStr

from headwater.auth import JwtVerifier
from headwater.errors import AuthenticationError, ConfigError

ISS = "https://idp.example.com/"
AUD = "headwater"
HS_SECRET = "s3cret-s3cret-s3cret-s3cret-s3cret!"  # 35 bytes


# -- keys -----------------------------------------------------------------------------------------


def _rsa() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _ec() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _jwk(private: Any, kid: str | None, **extra: Any) -> dict[str, Any]:
    if isinstance(private, rsa.RSAPrivateKey):
        data = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
    else:
        data = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private.public_key()))
    if kid is not None:
        data["kid"] = kid
    data.update(extra)
    return data


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return _rsa()


@pytest.fixture(scope="module")
def rsa_key2() -> rsa.RSAPrivateKey:
    return _rsa()


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return _ec()


@pytest.fixture
def jwks(rsa_key, ec_key) -> dict[str, Any]:
    return {"keys": [_jwk(rsa_key, "rsa-1"), _jwk(ec_key, "ec-1")]}


MAPPED = {"roles_claim": "roles", "attribute_claims": {"team": "team", "countries": "countries", "tenant": "tenant"}}
"""The claims mapping most tests use (identity comes only from mapped claims)."""


@pytest.fixture
def verifier(clock, jwks) -> JwtVerifier:
    return JwtVerifier(ISS, AUD, hs256_secret=HS_SECRET, jwks=jwks, clock=clock, **MAPPED)


def _claims(clock, **overrides: Any) -> dict[str, Any]:
    now = int(clock.now.timestamp())
    claims: dict[str, Any] = {
        "iss": ISS,
        "aud": AUD,
        "sub": "carol",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "roles": ["support_eu"],
        "team": "support",
        "countries": ["DE", "FR"],
        "tenant": "acme",
        "jti": "abc",
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _hs(clock, secret: str | bytes = HS_SECRET, **overrides: Any) -> str:
    return jwt.encode(_claims(clock, **overrides), secret, algorithm="HS256")


def _rs(clock, key, kid: str | None = "rsa-1", **overrides: Any) -> str:
    headers = {"kid": kid} if kid else None
    return jwt.encode(_claims(clock, **overrides), key, algorithm="RS256", headers=headers)


def _es(clock, key, kid: str | None = "ec-1", **overrides: Any) -> str:
    headers = {"kid": kid} if kid else None
    return jwt.encode(_claims(clock, **overrides), key, algorithm="ES256", headers=headers)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _hand_made(header: dict[str, Any], claims: dict[str, Any], sign: Any = None) -> str:
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = sign(signing_input.encode()) if sign else b""
    return f"{signing_input}.{_b64(signature)}"


def _rejected(verifier: JwtVerifier, token: str) -> str:
    with pytest.raises(AuthenticationError) as info:
        verifier.verify(token)
    assert str(info.value) == "invalid credentials"
    return str(info.value)


# -- good tokens ----------------------------------------------------------------------------------


def test_hs256(verifier, clock):
    name, roles, attributes = verifier.verify(_hs(clock))
    assert name == "carol"
    assert roles == ("support_eu",)
    assert attributes == {"team": "support", "countries": ["DE", "FR"], "tenant": "acme"}


def test_rs256(verifier, clock, rsa_key):
    identity = verifier.verify(_rs(clock, rsa_key))
    assert identity.principal_name == "carol" and identity.roles == ("support_eu",)


def test_es256(verifier, clock, ec_key):
    identity = verifier.verify(_es(clock, ec_key))
    assert identity.principal_name == "carol"
    assert identity.attributes["tenant"] == "acme"


def test_hs256_secret_as_secretstr_and_bytes(clock):
    for secret in (SecretStr(HS_SECRET), HS_SECRET.encode()):
        v = JwtVerifier(ISS, AUD, hs256_secret=secret, clock=clock)
        assert v.verify(_hs(clock)).principal_name == "carol"


def test_audience_list_on_either_side(clock):
    v = JwtVerifier(ISS, ["other", AUD], hs256_secret=HS_SECRET, clock=clock)
    assert v.verify(_hs(clock, aud=[AUD, "x"])).principal_name == "carol"
    assert v.verify(_hs(clock, aud="other")).principal_name == "carol"


def test_roles_as_space_separated_string_and_missing(verifier, clock):
    assert verifier.verify(_hs(clock, roles="analyst admin")).roles == ("analyst", "admin")
    assert verifier.verify(_hs(clock, roles=None)).roles == ()


def test_custom_principal_and_roles_claims(clock):
    v = JwtVerifier(
        ISS, AUD, hs256_secret=HS_SECRET, clock=clock, name_claim="email", roles_claim="groups"
    )
    identity = v.verify(_hs(clock, email="carol@example.com", groups=["g1"]))
    assert identity.principal_name == "carol@example.com"
    assert identity.roles == ("g1",)
    assert identity.attributes == {}  # nothing else is read
    older = JwtVerifier(ISS, AUD, hs256_secret=HS_SECRET, clock=clock, principal_claim="email")
    assert older.verify(_hs(clock, email="x@example.com")).principal_name == "x@example.com"


# -- identity comes only from mapped claims (issue 14) ---------------------------------------------


def test_unmapped_claims_are_ignored(clock):
    # No mapping: the name is sub; roles and attributes come from the policy, never the token.
    v = JwtVerifier(ISS, AUD, hs256_secret=HS_SECRET, clock=clock)
    identity = v.verify(_hs(clock, name="alice", region="EU", roles=["admin"]))
    assert identity == ("carol", (), {})


def test_display_name_claim_cannot_become_the_principal_name(verifier, clock):
    identity = verifier.verify(_hs(clock, name="alice", principal="alice", principal_name="alice"))
    assert identity.principal_name == "carol"
    assert not {"name", "principal", "principal_name"} & set(identity.attributes)


def test_attributes_come_from_their_mapped_claims(clock):
    v = JwtVerifier(ISS, AUD, hs256_secret=HS_SECRET, clock=clock,
                    attribute_claims={"region": "https://idp.example.com/region", "countries": "ctry"})
    identity = v.verify(_hs(clock, region="US", ctry=["DE"], **{"https://idp.example.com/region": "EU"}))
    assert identity.attributes == {"region": "EU", "countries": ["DE"]}
    assert v.verify(_hs(clock)).attributes == {}  # a mapped claim that is absent is just absent


@pytest.mark.parametrize("bad", [{"a": 1}, [{"a": 1}], [["x"]]])
def test_mapped_attribute_of_the_wrong_shape_is_refused(clock, bad):
    v = JwtVerifier(ISS, AUD, hs256_secret=HS_SECRET, clock=clock, attribute_claims={"region": "region"})
    _rejected(v, _hs(clock, region=bad))


@pytest.mark.parametrize("name", [None, "", 7, ["carol"], {"n": "carol"}, " carol", "carol\u200b",
                                  "ca\nrol", "x" * 256])
def test_name_claim_missing_or_not_a_plain_string_is_refused(clock, name):
    v = JwtVerifier(ISS, AUD, hs256_secret=HS_SECRET, clock=clock, name_claim="email")
    _rejected(v, _hs(clock, email=name))


def test_attribute_named_name_is_a_config_error():
    with pytest.raises(ConfigError, match="name"):
        JwtVerifier(ISS, AUD, hs256_secret=HS_SECRET, attribute_claims={"name": "name"})


def test_no_kid_with_a_single_fitting_key(clock, rsa_key):
    v = JwtVerifier(ISS, AUD, jwks={"keys": [_jwk(rsa_key, None)]}, clock=clock)
    assert v.verify(_rs(clock, rsa_key, kid=None)).principal_name == "carol"


# -- JWKS and rotation ----------------------------------------------------------------------------


def test_kid_rotation_through_a_jwks_file(tmp_path, clock, rsa_key, rsa_key2):
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [_jwk(rsa_key, "2024")]}))
    v = JwtVerifier(ISS, AUD, jwks_path=path, clock=clock)
    old = _rs(clock, rsa_key, kid="2024")
    new = _rs(clock, rsa_key2, kid="2025")
    assert v.verify(old).principal_name == "carol"
    _rejected(v, new)  # unknown kid

    path.write_text(json.dumps({"keys": [_jwk(rsa_key, "2024"), _jwk(rsa_key2, "2025")]}))
    v.reload_jwks()  # overlap: both keys valid
    assert v.verify(old).principal_name == v.verify(new).principal_name == "carol"

    path.write_text(json.dumps({"keys": [_jwk(rsa_key2, "2025")]}))
    v.reload_jwks()  # the old key is retired
    _rejected(v, old)
    assert v.verify(new).principal_name == "carol"


def test_kid_selects_the_key(clock, rsa_key, rsa_key2):
    v = JwtVerifier(ISS, AUD, jwks={"keys": [_jwk(rsa_key, "a"), _jwk(rsa_key2, "b")]}, clock=clock)
    assert v.verify(_rs(clock, rsa_key2, kid="b")).principal_name == "carol"
    _rejected(v, _rs(clock, rsa_key2, kid="a"))  # signed by b, claims a
    _rejected(v, _rs(clock, rsa_key, kid=None))  # ambiguous without kid


def test_unknown_and_malformed_kid(verifier, clock, rsa_key):
    _rejected(verifier, _rs(clock, rsa_key, kid="nope"))
    for kid in (7, ["rsa-1"], None):
        token = _hand_made(
            {"alg": "RS256", "kid": kid},
            _claims(clock),
            lambda m: rsa_key.sign(m, padding.PKCS1v15(), hashes.SHA256()),
        )
        _rejected(verifier, token)


def test_kid_of_the_wrong_key_type(verifier, clock, ec_key):
    _rejected(verifier, _es(clock, ec_key, kid="rsa-1"))


def test_jwk_alg_must_match(clock, rsa_key):
    v = JwtVerifier(ISS, AUD, jwks={"keys": [_jwk(rsa_key, "k", alg="RS256")]}, clock=clock)
    assert v.verify(_rs(clock, rsa_key, kid="k")).principal_name == "carol"
    with pytest.raises(ConfigError):
        JwtVerifier(ISS, AUD, jwks={"keys": [_jwk(rsa_key, "k", alg="ES256")]})


def test_encryption_keys_are_ignored(clock, rsa_key):
    v = JwtVerifier(
        ISS,
        AUD,
        hs256_secret=HS_SECRET,
        jwks={"keys": [_jwk(rsa_key, "enc", use="enc")]},
        clock=clock,
    )
    _rejected(v, _rs(clock, rsa_key, kid="enc"))


# -- claims -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"iss": "https://evil.example.com/"},
        {"iss": None},
        {"aud": "someone-else"},
        {"aud": ["a", "b"]},
        {"aud": None},
        {"exp": None},
        {"exp": "tomorrow"},
        {"sub": None},
        {"sub": ""},
        {"sub": 42},
        {"roles": [1, 2]},
        {"roles": {"admin": True}},
    ],
    ids=lambda o: ",".join(f"{k}={v!r}" for k, v in o.items()),
)
def test_bad_claims(verifier, clock, overrides):
    _rejected(verifier, _hs(clock, **overrides))


def test_tampered_payload(verifier, clock):
    header, _, signature = _hs(clock).split(".")
    forged = _b64(json.dumps(_claims(clock, roles=["admin"])).encode())
    _rejected(verifier, f"{header}.{forged}.{signature}")


def test_wrong_hs256_secret(verifier, clock):
    _rejected(verifier, _hs(clock, secret="another-secret-another-secret-xx"))


def test_signed_by_an_unknown_rsa_key(verifier, clock, rsa_key2):
    _rejected(verifier, _rs(clock, rsa_key2, kid="rsa-1"))


# -- time -------------------------------------------------------------------------------------------


def test_expired_within_and_beyond_leeway(verifier, clock):
    token = _hs(clock, exp=int(clock.now.timestamp()) + 10)
    clock.advance(seconds=10 + 59)
    assert verifier.verify(token).principal_name == "carol"  # within 60 s of skew
    clock.advance(seconds=1)
    _rejected(verifier, token)


def test_not_yet_valid(verifier, clock):
    now = int(clock.now.timestamp())
    assert verifier.verify(_hs(clock, nbf=now + 30)).principal_name == "carol"
    _rejected(verifier, _hs(clock, nbf=now + 61))
    _rejected(verifier, _hs(clock, iat=now + 3600))
    _rejected(verifier, _hs(clock, nbf="soon"))


def test_zero_leeway(clock):
    v = JwtVerifier(ISS, AUD, hs256_secret=HS_SECRET, clock=clock, leeway_s=0)
    token = _hs(clock, exp=int(clock.now.timestamp()) + 1)
    clock.advance(seconds=1)
    _rejected(v, token)


# -- algorithm attacks --------------------------------------------------------------------------------


def test_alg_none(verifier, clock):
    for alg in ("none", "None", "NONE"):
        _rejected(verifier, _hand_made({"alg": alg, "typ": "JWT"}, _claims(clock)))


def test_alg_missing_or_unsupported(verifier, clock):
    _rejected(verifier, _hand_made({"typ": "JWT"}, _claims(clock)))
    hs512 = jwt.encode(_claims(clock), HS_SECRET * 2, algorithm="HS512")
    _rejected(verifier, hs512)
    v512 = JwtVerifier(ISS, AUD, hs256_secret=HS_SECRET * 2, clock=clock)
    _rejected(v512, hs512)


def test_algorithm_restriction(clock, rsa_key, jwks):
    v = JwtVerifier(ISS, AUD, hs256_secret=HS_SECRET, jwks=jwks, algorithms=["RS256"], clock=clock)
    assert v.verify(_rs(clock, rsa_key)).principal_name == "carol"
    _rejected(v, _hs(clock))


@pytest.mark.parametrize("with_hs_secret", [False, True])
def test_hs256_signed_with_the_rsa_public_key(clock, rsa_key, jwks, with_hs_secret):
    """Algorithm confusion: an attacker HMACs with the (public) RSA key as the secret."""
    pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    v = JwtVerifier(
        ISS, AUD, hs256_secret=HS_SECRET if with_hs_secret else None, jwks=jwks, clock=clock
    )
    for kid in ("rsa-1", None):
        header = {"alg": "HS256", "typ": "JWT", **({"kid": kid} if kid else {})}
        for secret in (pem, pem.strip(), json.dumps(_jwk(rsa_key, "rsa-1")).encode()):
            token = _hand_made(
                header, _claims(clock), lambda m, s=secret: hmac.new(s, m, hashlib.sha256).digest()
            )
            _rejected(v, token)


def test_es256_token_signed_with_rsa_is_rejected(verifier, clock, rsa_key):
    token = _hand_made(
        {"alg": "ES256", "kid": "ec-1"},
        _claims(clock),
        lambda m: rsa_key.sign(m, padding.PKCS1v15(), hashes.SHA256()),
    )
    _rejected(verifier, token)


# -- malformed input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    ["", "abc", "a.b", "a.b.c", "a.b.c.d", "...", "e30.e30.", "hwk_x.y", "x" * 20_000 + ".a.b"],
)
def test_malformed_tokens(verifier, token):
    _rejected(verifier, token)


def test_non_string(verifier):
    _rejected(verifier, None)  # type: ignore[arg-type]


def test_every_failure_has_the_same_message(verifier, clock, rsa_key2):
    messages = set()
    for token in (
        _hs(clock, iss="x"),
        _hs(clock, aud="x"),
        _hs(clock, exp=0),
        _rs(clock, rsa_key2),
        _hand_made({"alg": "none"}, _claims(clock)),
        "garbage",
    ):
        with pytest.raises(AuthenticationError) as info:
            verifier.verify(token)
        messages.add(str(info.value))
    assert messages == {"invalid credentials"}


# -- configuration ----------------------------------------------------------------------------------


def test_repr_hides_the_secret(verifier):
    assert HS_SECRET not in repr(verifier)
    assert "hs256=set" in repr(verifier)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},  # no key at all
        {"hs256_secret": "too-short"},
        {"hs256_secret": HS_SECRET, "algorithms": ["HS512"]},
        {"hs256_secret": HS_SECRET, "algorithms": ["none"]},
        {"hs256_secret": HS_SECRET, "algorithms": []},
        {"hs256_secret": HS_SECRET, "leeway_s": -1},
        {"jwks": {"keys": [{"kty": "oct", "k": _b64(b"k" * 32)}]}},
        {"jwks": {"nokeys": []}},
        {"jwks": {"keys": [{"kty": "RSA", "n": "AQAB"}]}},
        {"jwks": {"keys": []}},
        {"jwks_path": "/nonexistent/jwks.json"},
    ],
)
def test_config_errors(kwargs):
    with pytest.raises(ConfigError) as info:
        JwtVerifier(ISS, AUD, **kwargs)
    assert "too-short" not in str(info.value)


def test_small_rsa_keys_and_other_curves_are_refused():
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(ConfigError):
        JwtVerifier(ISS, AUD, jwks={"keys": [_jwk(small, "s")]})
    p384 = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(ConfigError):
        JwtVerifier(ISS, AUD, jwks={"keys": [_jwk(p384, "p")]})


def test_bad_issuer_or_audience_config():
    with pytest.raises(ConfigError):
        JwtVerifier("", AUD, hs256_secret=HS_SECRET)
    with pytest.raises(ConfigError):
        JwtVerifier(ISS, [], hs256_secret=HS_SECRET)


def test_jwks_file_not_json(tmp_path):
    path = tmp_path / "jwks.json"
    path.write_text("{nope")
    with pytest.raises(ConfigError):
        JwtVerifier(ISS, AUD, jwks_path=path)
