"""Per-subject keys: seal, open, shred; ids hide the subject; concurrent creators agree."""

from __future__ import annotations

import threading

import pytest

from headwater import Config, Platform
from headwater.errors import InvalidInput
from headwater.subject_keys import SubjectKeys, is_sealed


@pytest.fixture
def keys(tmp_path) -> SubjectKeys:
    p = Platform.open(Config.embedded(tmp_path / "hw"))
    yield p.subject_keys
    p.close()


def test_seal_open_and_shred_one_subject_only(keys: SubjectKeys) -> None:
    a = keys.seal_text("app.customers.id", 1, "ada@example.com")
    b = keys.seal_text("app.customers.id", "2", "bob@example.com")
    assert is_sealed(a) and "ada" not in a
    assert keys.open_text(a) == "ada@example.com"
    assert keys.shred("APP.customers.id", "1") is True  # namespace is case-insensitive, 1 == "1"
    assert keys.open_text(a) is None
    assert keys.open_text(b) == "bob@example.com"
    assert keys.shred("app.customers.id", 1) is False  # idempotent


def test_values_sealed_after_shredding_open_to_nothing_within_the_window(keys: SubjectKeys) -> None:
    old = keys.seal_text("app.c.id", 7, "x")
    keys.shred("app.c.id", 7)
    late = keys.seal_text("app.c.id", 7, "y")  # e.g. a CDC delete's before-image published later
    assert keys.open_text(old) is None and keys.open_text(late) is None
    assert not keys.exists("app.c.id", 7)
    assert keys.shred("app.c.id", 7) is False


def test_after_the_tombstone_window_a_subject_gets_a_new_key(tmp_path) -> None:
    p = Platform.open(Config.embedded(tmp_path / "hw"))
    try:
        keys = SubjectKeys(p.meta.engine, master_key=b"m" * 32, tombstone_ttl_s=0.0)
        old = keys.seal_text("app.c.id", 7, "x")
        keys.shred("app.c.id", 7)
        new = keys.seal_text("app.c.id", 7, "y")
        assert keys.open_text(old) is None and keys.open_text(new) == "y"
    finally:
        p.close()


def test_key_ids_depend_on_the_platform_secret(keys: SubjectKeys, tmp_path) -> None:
    other = SubjectKeys(keys._engine, master_key=b"o" * 32)
    assert other.key_id("app.c.id", 1) != keys.key_id("app.c.id", 1)
    sealed = keys.seal("app.c.id", 1, b"v")
    with pytest.raises(InvalidInput, match="platform secret"):
        other.open(sealed)  # the key row exists, but this secret cannot unwrap it


def test_damaged_and_foreign_values_are_typed_errors(keys: SubjectKeys) -> None:
    sealed = keys.seal("app.c.id", 1, b"secret")
    with pytest.raises(InvalidInput):
        keys.open(sealed[:-1] + bytes([sealed[-1] ^ 1]))
    with pytest.raises(InvalidInput):
        keys.open(b"nope")
    with pytest.raises(InvalidInput):
        keys.open_text("hwenc:v1:@@@")
    with pytest.raises(InvalidInput):
        keys.seal("app.c.id", None, b"x")
    assert "secret" not in repr(keys)


def test_concurrent_first_seals_share_one_key(keys: SubjectKeys) -> None:
    out: list[str] = []

    def seal() -> None:
        out.append(keys.seal_text("app.c.id", 99, "v"))

    threads = [threading.Thread(target=seal) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    keys._cache.clear()
    assert all(keys.open_text(s) == "v" for s in out)


def test_shredded_key_leaves_no_bytes_in_the_metadata_file(tmp_path) -> None:
    p = Platform.open(Config.embedded(tmp_path / "hw"))
    try:
        keys = p.subject_keys
        keys.seal_text("app.c.id", 5, "v")
        with keys._engine.connect() as conn:
            wrapped = bytes(conn.exec_driver_sql("SELECT wrapped FROM hw_subject_keys").scalar_one())
        keys.shred("app.c.id", 5)
    finally:
        p.close()
    blob = b"".join(f.read_bytes() for f in (tmp_path / "hw").rglob("*") if f.is_file())
    assert wrapped not in blob
