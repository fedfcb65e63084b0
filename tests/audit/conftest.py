"""Audit fixtures: a migrated metadata store on SQLite and on Postgres.

Postgres comes from ``HEADWATER_TEST_PG_URL`` (default: the local test server); each test gets
a fresh ``hw_audit_<random>`` schema (through ``options=-csearch_path`` in the URL), dropped
afterwards. Unreachable Postgres skips with a reason, or fails under
``HEADWATER_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from headwater.audit import AuditLog
from headwater.metadata import MetadataStore
from tests.fix_services import pg_schema_url

KEY = b"audit-test-signing-key-0123456789"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def meta_url(request, tmp_path) -> Iterator[str]:
    """The URL of an empty metadata database, once per backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'meta.db'}"
    else:
        yield from pg_schema_url("hw_audit")


@pytest.fixture
def meta(meta_url: str) -> Iterator[MetadataStore]:
    """A metadata store migrated to head."""
    store = MetadataStore.open(meta_url)
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def audit(meta: MetadataStore) -> AuditLog:
    """An audit log with a checkpoint every 10 records."""
    return AuditLog(meta, signing_key=KEY, checkpoint_every=10)


def tamper(meta: MetadataStore, *statements: str, **params: object) -> None:
    """Run SQL straight against the metadata database, as an attacker with DB access would."""
    with meta.engine.begin() as conn:
        for sql in statements:
            conn.execute(sa.text(sql), params)
