"""Fixtures for CDC tests against the real Postgres (``HEADWATER_TEST_PG_DSN``).

Each test gets a fresh table name, slot and publication (unique suffix); all three, and the
slot's row in the state table, are dropped afterwards so no slot retains WAL.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.fix_services import DEFAULT_PG_DSN, require_service


@pytest.fixture(scope="session")
def cdc_dsn() -> str:
    """A reachable Postgres DSN with ``wal_level = logical`` and psycopg2 importable."""
    dsn = os.environ.get("HEADWATER_TEST_PG_DSN", DEFAULT_PG_DSN)
    try:
        import psycopg2
    except ImportError:
        require_service("postgres-cdc", "psycopg2 is not installed (pip install psycopg2-binary)")
    try:
        conn = psycopg2.connect(dsn, connect_timeout=3)
    except psycopg2.Error as err:
        require_service("postgres-cdc", f"cannot connect ({type(err).__name__}); set HEADWATER_TEST_PG_DSN")
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW wal_level")
            level = cur.fetchone()[0]
    finally:
        conn.close()
    if level != "logical":
        require_service("postgres-cdc", f"wal_level is {level!r}, CDC needs 'logical'")
    return dsn


@dataclass
class Names:
    table: str
    slot: str
    publication: str


def sql(dsn: str, statement: str, params: tuple = ()) -> list[tuple]:
    """Run one statement in autocommit; its rows (if any)."""
    import psycopg2

    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(statement, params or None)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def drop_slot(dsn: str, slot: str) -> None:
    """Drop ``slot``, waiting for a killed connector's walsender to let go of it."""
    deadline = time.monotonic() + 20
    while True:
        try:
            sql(dsn, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s",
                (slot,))
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture
def names(cdc_dsn: str) -> Iterator[Names]:
    """Unique table/slot/publication names, cleaned up afterwards."""
    suffix = uuid.uuid4().hex[:10]
    n = Names(f"cdc_t_{suffix}", f"hw_cdc_slot_{suffix}", f"hw_cdc_pub_{suffix}")
    try:
        yield n
    finally:
        drop_slot(cdc_dsn, n.slot)
        sql(cdc_dsn, f'DROP PUBLICATION IF EXISTS "{n.publication}"')
        sql(cdc_dsn, f'DROP TABLE IF EXISTS public."{n.table}", public."{n.table}_other"')
        with contextlib.suppress(Exception):
            sql(cdc_dsn, "DELETE FROM public.headwater_cdc_state WHERE slot = %s", (n.slot,))
