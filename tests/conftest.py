"""Shared fixtures: an embedded platform in ``tmp_path`` and a Postgres-backed one.

The Postgres platform uses the ``pg_dsn`` fixture of ``tests/fix_services.py`` when that plugin
provides one; otherwise it tries ``HEADWATER_TEST_PG_DSN`` (default: the local test server).
It skips with a reason when the server is unreachable, unless ``HEADWATER_REQUIRE_SERVICES=1``
makes absence a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from headwater import Config, Platform, Session
from headwater.config import PostgresConfig

DEFAULT_PG_DSN = "host=127.0.0.1 port=5432 dbname=test user=postgres"


def _require_services() -> bool:
    return os.environ.get("HEADWATER_REQUIRE_SERVICES") == "1"


@pytest.fixture
def platform(tmp_path) -> Iterator[Platform]:
    """A fresh embedded platform (SQLite app, DuckDB warehouse, Parquet lake)."""
    p = Platform.open(Config.embedded(tmp_path / "hw"))
    try:
        yield p
    finally:
        p.close()


@pytest.fixture
def session(platform: Platform) -> Session:
    """Alice's session on the embedded platform."""
    return platform.session("alice")


@pytest.fixture
def headwater_pg_dsn(request) -> str:
    """A reachable Postgres DSN, or a skip (a failure under HEADWATER_REQUIRE_SERVICES=1)."""
    if _has_fixture(request, "pg_dsn"):
        return request.getfixturevalue("pg_dsn")
    dsn = os.environ.get("HEADWATER_TEST_PG_DSN", DEFAULT_PG_DSN)
    try:
        import psycopg
    except ImportError:  # pragma: no cover - the test extra installs it
        if _require_services():
            pytest.fail("psycopg is not installed but HEADWATER_REQUIRE_SERVICES=1")
        pytest.skip("psycopg is not installed (pip install 'headwater[postgres]')")
    try:
        with psycopg.connect(dsn, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as err:
        reason = f"Postgres is unreachable ({type(err).__name__}); set HEADWATER_TEST_PG_DSN"
        if _require_services():
            pytest.fail(reason + " (HEADWATER_REQUIRE_SERVICES=1)")
        pytest.skip(reason)
    return dsn


def _has_fixture(request, name: str) -> bool:
    try:
        defs = request._fixturemanager.getfixturedefs(name, request.node)
    except Exception:  # noqa: BLE001 - pytest internals differ between versions
        return False
    return bool(defs)


@pytest.fixture
def pg_schema(headwater_pg_dsn: str) -> Iterator[tuple[str, str]]:
    """A fresh random schema in the test database, dropped afterwards: (dsn, schema)."""
    import psycopg

    schema = f"hw_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(headwater_pg_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield headwater_pg_dsn, schema
    finally:
        with psycopg.connect(headwater_pg_dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def pg_platform(tmp_path, pg_schema: tuple[str, str]) -> Iterator[Platform]:
    """The embedded platform with its ``app`` store swapped for Postgres."""
    dsn, schema = pg_schema
    cfg = Config.embedded(tmp_path / "hw")
    # Principal reads run as a reader role the platform creates and grants (a unique one per
    # test, dropped afterwards: roles are cluster-wide).
    role = f"hw_reader_{uuid.uuid4().hex[:10]}"
    cfg.stores["app"] = PostgresConfig(dsn=dsn, schema=schema, reader_role=role)
    p = Platform.open(cfg)
    try:
        yield p
    finally:
        p.close()
        _drop_role(dsn, role)


def _drop_role(dsn: str, role: str) -> None:
    import contextlib

    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        with contextlib.suppress(psycopg.Error):
            conn.execute(f'DROP OWNED BY "{role}"')
        with contextlib.suppress(psycopg.Error):
            conn.execute(f'DROP ROLE IF EXISTS "{role}"')


@pytest.fixture(params=["embedded", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_platform(request) -> Platform:
    """The embedded platform, then the one whose ``app`` store is Postgres."""
    if request.param == "embedded":
        return request.getfixturevalue("platform")
    return request.getfixturevalue("pg_platform")
