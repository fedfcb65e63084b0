"""Registry fixtures: a ``SchemaRegistry`` on a SQLite file and on Postgres.

Postgres comes from ``HEADWATER_TEST_PG_URL`` (default: the local test server); each test gets
a fresh Postgres schema that is dropped afterwards, so reruns and parallel runs are clean.
Unreachable Postgres skips with a reason, or fails under ``HEADWATER_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa

from headwater.events.registry import SchemaRegistry
from headwater.events.registry._tables import METADATA

DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@pytest.fixture
def sqlite_engine(tmp_path) -> Iterator[sa.Engine]:
    """An engine on a fresh SQLite file with the registry tables created."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'registry.db'}")
    METADATA.create_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def pg_engine() -> Iterator[sa.Engine]:
    """An engine whose search_path is a fresh, private Postgres schema."""
    url = os.environ.get("HEADWATER_TEST_PG_URL", DEFAULT_PG_URL)
    admin = sa.create_engine(url, connect_args={"connect_timeout": 3})
    schema = f"hw_registry_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except Exception as err:  # noqa: BLE001 - any failure to connect means "no service"
        admin.dispose()
        reason = f"Postgres unreachable at {url.split('@')[-1]} ({type(err).__name__})"
        if os.environ.get("HEADWATER_REQUIRE_SERVICES") == "1":
            pytest.fail(reason + " and HEADWATER_REQUIRE_SERVICES=1")
        pytest.skip(reason)
    engine = sa.create_engine(url, connect_args={"options": f"-csearch_path={schema}"})
    try:
        METADATA.create_all(engine)
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request) -> sa.Engine:
    """The registry database, once per backend."""
    return request.getfixturevalue(f"{'sqlite' if request.param == 'sqlite' else 'pg'}_engine")


@pytest.fixture
def make_registry(engine) -> Callable[..., SchemaRegistry]:
    """Build registries (with options) that share the backend database."""

    def make(**options) -> SchemaRegistry:
        return SchemaRegistry(engine, **options)

    return make


@pytest.fixture
def registry(make_registry) -> SchemaRegistry:
    """A registry with default options (BACKWARD, strict, pii_policy="warn")."""
    return make_registry()
