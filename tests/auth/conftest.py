"""Fixtures for the auth tests: a controllable clock, a metadata store on SQLite and on a fresh
Postgres schema (skipped with a reason when Postgres is absent, failed under
``HEADWATER_REQUIRE_SERVICES=1`` through ``headwater_pg_dsn``), and cheap scrypt parameters."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from headwater.auth import ApiKeys, ScryptParams
from headwater.metadata import MetadataStore

FAST_SCRYPT = ScryptParams(ln=10, r=8, p=1)
"""Cheap enough for many tests; the default cost has a test of its own."""


class Clock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _pg_url(dsn: str, schema: str) -> sa.URL:
    from psycopg.conninfo import conninfo_to_dict

    parts = conninfo_to_dict(dsn)
    return sa.URL.create(
        "postgresql+psycopg",
        username=parts.get("user"),
        password=parts.get("password"),
        host=parts.get("host"),
        port=int(parts["port"]) if parts.get("port") else None,
        database=parts.get("dbname"),
        query={"options": f"-csearch_path={schema}"},
    )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def meta(request, tmp_path) -> Iterator[MetadataStore]:
    """A migrated metadata store: SQLite in ``tmp_path``, then a fresh Postgres schema."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'metadata.db'}"
    else:
        dsn, schema = request.getfixturevalue("pg_schema")
        url = _pg_url(dsn, schema).render_as_string(hide_password=False)
    store = MetadataStore.open(url)
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def keys(meta: MetadataStore, clock: Clock) -> ApiKeys:
    return ApiKeys(meta, clock=clock, scrypt=FAST_SCRYPT)
