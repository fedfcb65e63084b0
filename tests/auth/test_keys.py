"""API keys on SQLite and Postgres: create, verify, list, revoke, expiry, hashing, cache."""

from __future__ import annotations

import pickle
import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from headwater.auth import DEFAULT_SCRYPT, ApiKeyInfo, ApiKeys, ScryptParams
from headwater.auth._tables import api_keys_table
from headwater.errors import AuthenticationError, InvalidInput, NotFound
from headwater.metadata import MetadataStore
from tests.auth.conftest import FAST_SCRYPT


def _fails(keys: ApiKeys, *args: str) -> str:
    with pytest.raises(AuthenticationError) as info:
        keys.verify(*args)
    return str(info.value)


def _stored_hash(meta: MetadataStore, key_id: str) -> str:
    with meta.connect() as conn:
        return conn.execute(
            sa.select(api_keys_table.c.secret_hash).where(api_keys_table.c.key_id == key_id)
        ).scalar_one()


@pytest.fixture
def count_kdf(monkeypatch) -> list[int]:
    """Counts scrypt derivations (the slow part of a verification)."""
    calls = [0]
    original = ScryptParams.derive

    def counting(self, secret, salt):
        calls[0] += 1
        return original(self, secret, salt)

    monkeypatch.setattr(ScryptParams, "derive", counting)
    return calls


# -- create and verify ------------------------------------------------------------------------


def test_create_returns_id_secret_and_token(keys):
    created = keys.create("bob", expires_in=None, description="ci runner")
    assert re.fullmatch(r"hwk_[a-z0-9]{12}", created.key_id)
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", created.secret)
    assert created.token == f"{created.key_id}.{created.secret}"
    assert created.principal == "bob"
    assert created.expires_at is None


def test_created_key_repr_hides_the_secret(keys):
    created = keys.create("bob")
    for text in (repr(created), str(created)):
        assert created.key_id in text
        assert created.secret not in text


def test_verify_token_and_id_secret_pair(keys):
    created = keys.create("bob")
    assert keys.verify(created.token) == "bob"
    assert keys.verify(created.key_id, created.secret) == "bob"


def test_verify_accepts_principal_objects_at_create(keys):
    from headwater.principal import Principal

    created = keys.create(Principal("svc-etl", kind="service"))
    assert keys.verify(created.token) == "svc-etl"


def test_keys_are_distinct(keys):
    a, b = keys.create("bob"), keys.create("bob")
    assert a.key_id != b.key_id and a.secret != b.secret
    assert keys.verify(a.token) == keys.verify(b.token) == "bob"


@pytest.mark.parametrize(
    ("principal", "expires_in"),
    [("", None), ("x" * 256, None), ("bob", timedelta(0)), ("bob", timedelta(seconds=-1))],
)
def test_create_rejects_bad_arguments(keys, principal, expires_in):
    with pytest.raises(InvalidInput):
        keys.create(principal, expires_in=expires_in)


# -- failures all look the same ---------------------------------------------------------------


def test_every_failure_has_the_same_message(keys, clock):
    good = keys.create("bob")
    revoked = keys.create("bob")
    keys.revoke(revoked.key_id)
    expiring = keys.create("bob", expires_in=timedelta(minutes=5))
    clock.advance(minutes=6)
    other = keys.create("carol")
    unknown_id = "hwk_" + "a" * 12
    attempts = [
        (f"{good.key_id}.{other.secret}",),  # wrong secret
        (good.key_id, other.secret),  # wrong secret, pair form
        (f"{unknown_id}.{good.secret}",),  # unknown id
        (unknown_id, good.secret),
        (revoked.token,),  # revoked
        (expiring.token,),  # expired
        (good.key_id,),  # no secret
        (good.token + "x",),  # malformed secret
        ("hwk_short.secret",),  # malformed id
        ("",),
        (f"{good.key_id}.",),
    ]
    messages = {_fails(keys, *attempt) for attempt in attempts}
    assert messages == {"invalid credentials"}


def test_errors_carry_no_credentials(keys):
    good = keys.create("bob")
    other = keys.create("carol")
    with pytest.raises(AuthenticationError) as info:
        keys.verify(good.key_id, other.secret)
    err = info.value
    assert err.context == {}
    for text in (str(err), repr(err), repr(pickle.loads(pickle.dumps(err)))):
        assert other.secret not in text and good.key_id not in text


def test_verify_rejects_non_strings(keys):
    assert _fails(keys, None) == "invalid credentials"  # type: ignore[arg-type]


# -- expiry -------------------------------------------------------------------------------------


def test_expiry_follows_the_clock(keys, clock):
    created = keys.create("bob", expires_in=timedelta(hours=1))
    assert created.expires_at == clock.now + timedelta(hours=1)
    clock.advance(minutes=59)
    assert keys.verify(created.token) == "bob"
    clock.advance(minutes=1)
    _fails(keys, created.token)


def test_cache_never_outlives_expiry(keys, clock):
    created = keys.create("bob", expires_in=timedelta(seconds=40))
    clock.advance(seconds=30)
    assert keys.verify(created.token) == "bob"  # cached for 30 s, but the key dies in 10
    clock.advance(seconds=10)
    _fails(keys, created.token)


# -- list ---------------------------------------------------------------------------------------


def test_list_never_returns_secrets_or_hashes(keys, meta, clock):
    a = keys.create("bob", description="laptop")
    clock.advance(seconds=1)
    b = keys.create("carol", expires_in=timedelta(days=1))
    listed = keys.list()
    assert [k.key_id for k in listed] == [a.key_id, b.key_id]
    assert all(isinstance(k, ApiKeyInfo) for k in listed)
    fields = set(ApiKeyInfo.__dataclass_fields__)
    assert not fields & {"secret", "secret_hash", "token", "hash"}
    text = repr(listed)
    for secret in (a.secret, b.secret, _stored_hash(meta, a.key_id), _stored_hash(meta, b.key_id)):
        assert secret not in text
    info = listed[0]
    assert (info.principal, info.description) == ("bob", "laptop")
    assert info.created_at == clock.now - timedelta(seconds=1)
    assert info.expires_at is None and info.revoked_at is None and info.last_used_at is None
    assert listed[1].expires_at == clock.now + timedelta(days=1)


def test_list_filters_by_principal(keys):
    keys.create("bob")
    mine = keys.create("carol")
    assert [k.key_id for k in keys.list("carol")] == [mine.key_id]
    assert keys.list("nobody") == []


def test_last_used_at_is_recorded(keys, clock):
    created = keys.create("bob")
    clock.advance(minutes=3)
    keys.verify(created.token)
    (info,) = keys.list()
    assert info.last_used_at == clock.now


# -- revoke -------------------------------------------------------------------------------------


def test_revoke(keys, clock):
    created = keys.create("bob")
    keep = keys.create("bob")
    keys.revoke(created.key_id)
    _fails(keys, created.token)
    assert keys.verify(keep.token) == "bob"
    info = {k.key_id: k for k in keys.list()}
    assert info[created.key_id].revoked_at == clock.now
    assert not info[created.key_id].is_active(clock.now)
    assert info[keep.key_id].is_active(clock.now)


def test_revoke_is_idempotent_and_keeps_the_first_time(keys, clock):
    created = keys.create("bob")
    keys.revoke(created.key_id)
    first = clock.now
    clock.advance(hours=1)
    keys.revoke(created.key_id)
    assert keys.list()[0].revoked_at == first


def test_revoke_unknown_key(keys):
    with pytest.raises(NotFound):
        keys.revoke("hwk_" + "z" * 12)


# -- hashing ------------------------------------------------------------------------------------


def test_stored_hash_is_a_slow_kdf_not_the_secret(meta, clock):
    keys = ApiKeys(meta, clock=clock)  # default cost
    a, b = keys.create("bob"), keys.create("bob")
    stored_a, stored_b = _stored_hash(meta, a.key_id), _stored_hash(meta, b.key_id)
    assert a.secret not in stored_a and a.token not in stored_a
    assert stored_a.startswith("scrypt$ln=15,r=8,p=1$")
    assert DEFAULT_SCRYPT.ln >= 15 and DEFAULT_SCRYPT.r >= 8  # >= 32 MiB per hash
    # per-key salt: two hashes never share salt or digest
    _, _, salt_a, digest_a = stored_a.split("$")
    _, _, salt_b, digest_b = stored_b.split("$")
    assert salt_a != salt_b and digest_a != digest_b
    assert keys.verify(a.token) == "bob"


def test_hashes_made_at_another_cost_still_verify(meta, clock):
    old = ApiKeys(meta, clock=clock, scrypt=FAST_SCRYPT).create("bob")
    assert ApiKeys(meta, clock=clock).verify(old.token) == "bob"


def test_unknown_ids_cost_a_hash_too(keys, count_kdf):
    created = keys.create("bob")
    count_kdf[0] = 0
    _fails(keys, "hwk_" + "q" * 12, created.secret)
    assert count_kdf[0] == 1


def test_revoked_and_expired_keys_cost_a_hash_too(keys, clock, count_kdf):
    revoked = keys.create("bob")
    keys.revoke(revoked.key_id)
    expired = keys.create("bob", expires_in=timedelta(seconds=1))
    clock.advance(seconds=2)
    count_kdf[0] = 0
    _fails(keys, revoked.token)
    _fails(keys, expired.token)
    assert count_kdf[0] == 2


# -- verification cache ---------------------------------------------------------------------------


def test_cache_skips_the_slow_hash(keys, clock, count_kdf):
    created = keys.create("bob")
    count_kdf[0] = 0
    for _ in range(5):
        assert keys.verify(created.token) == "bob"
    assert count_kdf[0] == 1
    assert keys.verify(created.key_id, created.secret) == "bob"  # same token, same entry
    assert count_kdf[0] == 1
    clock.advance(seconds=31)
    assert keys.verify(created.token) == "bob"
    assert count_kdf[0] == 2


def test_cache_does_not_accept_a_wrong_secret(keys):
    created = keys.create("bob")
    keys.verify(created.token)
    _fails(keys, created.key_id, created.secret[:-1] + ("A" if created.secret[-1] != "A" else "B"))


def test_cache_can_be_disabled(meta, clock, count_kdf):
    keys = ApiKeys(meta, clock=clock, scrypt=FAST_SCRYPT, cache_ttl_s=0)
    created = keys.create("bob")
    count_kdf[0] = 0
    keys.verify(created.token)
    keys.verify(created.token)
    assert count_kdf[0] == 2


def test_revoke_invalidates_the_cache_in_this_process(keys, meta, clock):
    created = keys.create("bob")
    assert keys.verify(created.token) == "bob"  # cached now
    keys.revoke(created.key_id)
    _fails(keys, created.token)
    # another ApiKeys on the same metadata store shares the cache
    other = ApiKeys(meta, clock=clock, scrypt=FAST_SCRYPT)
    second = keys.create("bob")
    assert keys.verify(second.token) == "bob"
    other.revoke(second.key_id)
    _fails(keys, second.token)


def test_other_processes_see_a_revocation_within_the_ttl(meta, clock):
    # A second MetadataStore on the same database stands for another process: its cache is its own.
    this = ApiKeys(meta, clock=clock, scrypt=FAST_SCRYPT)
    url = meta.engine.url.render_as_string(hide_password=False)
    elsewhere_meta = MetadataStore(url)
    try:
        elsewhere = ApiKeys(elsewhere_meta, clock=clock, scrypt=FAST_SCRYPT, cache_ttl_s=30)
        created = this.create("bob")
        assert elsewhere.verify(created.token) == "bob"
        this.revoke(created.key_id)
        _fails(this, created.token)
        clock.advance(seconds=29)
        assert elsewhere.verify(created.token) == "bob"  # the documented window
        clock.advance(seconds=1)
        _fails(elsewhere, created.token)
    finally:
        elsewhere_meta.close()


def test_a_verification_racing_a_revocation_is_not_cached(keys, monkeypatch):
    created = keys.create("bob")
    import headwater.auth._keys as mod

    original = mod._check

    def revoke_midway(secret, encoded):
        keys.revoke(created.key_id)  # lands after the row was read
        return original(secret, encoded)

    monkeypatch.setattr(mod, "_check", revoke_midway)
    keys.verify(created.token)  # read before the revocation: may still succeed once
    monkeypatch.setattr(mod, "_check", original)
    _fails(keys, created.token)


# -- schema ---------------------------------------------------------------------------------------


def test_migration_matches_the_table_definition(meta):
    inspector = sa.inspect(meta.engine)
    columns = {c["name"]: c for c in inspector.get_columns("hw_api_keys")}
    assert set(columns) == {c.name for c in api_keys_table.columns}
    for column in api_keys_table.columns:
        assert columns[column.name]["nullable"] == column.nullable, column.name
    assert inspector.get_pk_constraint("hw_api_keys")["constrained_columns"] == ["key_id"]
    assert {i["name"] for i in inspector.get_indexes("hw_api_keys")} == {"ix_hw_api_keys_principal"}


def test_api_keys_repr_is_safe(keys):
    assert "ApiKeys(" in repr(keys)
