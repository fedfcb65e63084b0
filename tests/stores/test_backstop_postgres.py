"""The Postgres backstop on the real server: principal reads run read-only as a reader role that
may read catalogued tables only. Each test creates its own roles (unique names) and drops them.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import pyarrow as pa
import pytest

from headwater import QueryRejected
from headwater.errors import ConfigError, HeadwaterError
from headwater.stores.base import BACKSTOP_RULE, ReadScope
from headwater.stores.postgres import PostgresStore
from tests.fix_services import pg_fresh_schema

pytestmark = pytest.mark.postgres
SCOPE = ReadScope(tables={"customers": frozenset({"id", "name"})})


def _admin(dsn: str):  # noqa: ANN202
    import psycopg

    return psycopg.connect(dsn, autocommit=True)


@contextlib.contextmanager
def _roles(dsn: str, *names: str) -> Iterator[None]:
    try:
        yield
    finally:
        with _admin(dsn) as conn:
            for name in names:
                with contextlib.suppress(Exception):
                    conn.execute(f'DROP OWNED BY "{name}"')
                with contextlib.suppress(Exception):
                    conn.execute(f'DROP ROLE IF EXISTS "{name}"')


@pytest.fixture
def pg(pg_dsn: str) -> Iterator[tuple[PostgresStore, str, str]]:
    """A store whose reader role (created by the grant sync) may read ``customers`` only."""
    role = f"hw_reader_{uuid.uuid4().hex[:10]}"
    with pg_fresh_schema(pg_dsn) as schema, _roles(pg_dsn, role):
        store = PostgresStore("app", pg_dsn, schema=schema, max_connections=3, reader_role=role)
        try:
            store.write("customers", pa.table({"id": [1, 2], "name": ["a", "b"]}), key=["id"])
            store.write("payroll", pa.table({"id": [1], "salary": [100]}))
            with _admin(pg_dsn) as conn:
                conn.execute(f'CREATE SEQUENCE "{schema}".seq')
                conn.execute(f'CREATE TABLE "{schema}"."_hw_changes" (seq int, row text)')
                conn.execute(f"INSERT INTO \"{schema}\".\"_hw_changes\" VALUES (1, 'ssn 111')")
            store.sync_reader_grants(["customers"])
            yield store, schema, role
        finally:
            store.close()


def _refused(store: PostgresStore, sql: str, scope: ReadScope = SCOPE) -> None:
    with pytest.raises(QueryRejected) as info:
        store.execute(sql, scope=scope).read_all()
    assert info.value.context["rule"] == BACKSTOP_RULE


def test_reads_of_catalogued_tables_pass(pg) -> None:  # noqa: ANN001
    store, schema, role = pg
    out = store.execute(f'SELECT id, name FROM "{schema}".customers WHERE id = %s', [2], scope=SCOPE).read_all()
    assert out.to_pylist() == [{"id": 2, "name": "b"}]
    who = store.execute("SELECT current_user AS u, current_setting('transaction_read_only') AS ro",
                        scope=SCOPE).read_all().to_pylist()
    assert who == [{"u": role, "ro": "on"}]
    # the platform's own path keeps the owner role and may write
    assert store.execute("SELECT current_user AS u").read_all().column(0)[0].as_py() != role


@pytest.mark.parametrize("sql", [
    'SELECT * FROM "{schema}".payroll',                                        # not catalogued
    'SELECT * FROM "{schema}"."_hw_changes"',                                  # CDC change rows
    "SELECT query_to_xml('SELECT * FROM \"{schema}\".payroll', true, true, '')",  # SQL inside a function
    "SELECT nextval('\"{schema}\".seq')",
    "SELECT setval('\"{schema}\".seq', 42)",
    'DELETE FROM "{schema}".customers',
    'INSERT INTO "{schema}".customers VALUES (9, \'x\')',
    'CREATE TABLE "{schema}".stolen AS SELECT * FROM "{schema}".customers',
    'SELECT 1; DELETE FROM "{schema}".customers',                              # a second statement
    "SELECT pg_read_file('/etc/hostname')",
    "COPY (SELECT 1) TO '/tmp/hw_backstop_out.csv'",
])
def test_refuses_outside_the_catalog(pg, sql: str) -> None:  # noqa: ANN001
    store, schema, _ = pg
    _refused(store, sql.format(schema=schema))
    assert store.execute(f'SELECT count(*) AS n FROM "{schema}".customers').read_all().column(0)[0].as_py() == 2


def test_database_dump_holds_only_granted_tables(pg) -> None:  # noqa: ANN001
    """``database_to_xml`` runs as the reader: it sees the catalogued table, nothing else."""
    store, _, _ = pg
    dump = store.execute("SELECT database_to_xml(true, true, '') AS x", scope=SCOPE).read_all().column(0)[0].as_py()
    assert "<name>b</name>" in dump
    assert "salary" not in dump and "ssn 111" not in dump


def test_revoked_when_leaving_the_catalog(pg) -> None:  # noqa: ANN001
    store, schema, role = pg
    store.sync_reader_grants(["customers", "payroll"])
    assert store.execute(f'SELECT * FROM "{schema}".payroll', scope=SCOPE).read_all().num_rows == 1
    ran = store.sync_reader_grants(["customers"])
    assert any(s.startswith("REVOKE") and "payroll" in s for s in ran)
    _refused(store, f'SELECT * FROM "{schema}".payroll')


def test_replace_keeps_the_grant(pg) -> None:  # noqa: ANN001
    store, schema, _ = pg
    store.replace("customers", pa.table({"id": [7], "name": ["z"]}), key=["id"])
    assert store.execute(f'SELECT name FROM "{schema}".customers', scope=SCOPE).read_all().to_pylist() == [{"name": "z"}]


def test_a_tampered_connection_is_discarded(pg) -> None:  # noqa: ANN001
    """Turning read-only off from inside a read poisons nothing: the connection is closed."""
    store, schema, _ = pg
    out = store.execute("SELECT set_config('default_transaction_read_only', 'off', false) AS v",
                        scope=SCOPE).read_all()
    assert out.column(0)[0].as_py() == "off"
    for _ in range(4):  # whichever pooled connection comes next is still read-only
        assert store.execute("SELECT current_setting('transaction_read_only') AS ro",
                             scope=SCOPE).read_all().column(0)[0].as_py() == "on"
        _refused(store, f'DELETE FROM "{schema}".customers')


def test_grant_statements_script(pg) -> None:  # noqa: ANN001
    store, schema, role = pg
    script = store.grant_statements(["customers"])
    assert script[0].startswith("DO $$") and f'CREATE ROLE "{role}" NOLOGIN' in script[0]
    assert f'GRANT USAGE ON SCHEMA "{schema}" TO "{role}"' in script
    assert f'GRANT SELECT ON TABLE "{schema}"."customers" TO "{role}"' in script
    assert not any("payroll" in s for s in script)  # never granted, nothing to revoke


def test_missing_role_is_a_clear_error(pg_dsn: str) -> None:
    with pg_fresh_schema(pg_dsn) as schema:
        store = PostgresStore("app", pg_dsn, schema=schema, reader_role=f"hw_missing_{uuid.uuid4().hex[:8]}")
        try:
            with pytest.raises(ConfigError, match="headwater stores grants app"):
                store.execute("SELECT 1", scope=SCOPE).read_all()
        finally:
            store.close()


def test_reader_login_cannot_leave_its_role(pg_dsn: str) -> None:
    """With ``reader_dsn`` the reader logs in as itself: ``set_config('role', ...)`` back to a
    privileged role is refused (with SET ROLE from a privileged login it would not be)."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    login = f"hw_reader_login_{uuid.uuid4().hex[:8]}"
    with pg_fresh_schema(pg_dsn) as schema, _roles(pg_dsn, login):
        with _admin(pg_dsn) as conn:
            conn.execute(f'CREATE ROLE "{login}" LOGIN NOSUPERUSER NOINHERIT')
        reader_dsn = make_conninfo(**{**conninfo_to_dict(pg_dsn), "user": login})
        store = PostgresStore("app", pg_dsn, schema=schema, reader_role=login, reader_dsn=reader_dsn)
        try:
            store.write("customers", pa.table({"id": [1], "name": ["a"]}), key=["id"])
            store.write("payroll", pa.table({"id": [1], "salary": [100]}))
            store.sync_reader_grants(["customers"])
            assert store.execute(f'SELECT * FROM "{schema}".customers', scope=SCOPE).read_all().num_rows == 1
            with pytest.raises(QueryRejected):
                store.execute(
                    "SELECT set_config('role', 'postgres', false) AS r, "
                    f"query_to_xml('SELECT * FROM \"{schema}\".payroll', true, true, '') AS x",
                    scope=SCOPE).read_all()
        except psycopg.OperationalError as err:  # pragma: no cover - server without trust auth
            pytest.skip(f"cannot log in as a new role here: {err}")
        finally:
            store.close()


def test_superuser_reader_is_refused(pg_dsn: str) -> None:
    with pg_fresh_schema(pg_dsn) as schema:
        store = PostgresStore("app", pg_dsn, schema=schema, reader_role="postgres")
        try:
            with pytest.raises(HeadwaterError, match="superuser"):
                store.execute("SELECT 1", scope=SCOPE).read_all()
        finally:
            store.close()
