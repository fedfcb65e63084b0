"""Lineage fixtures: TPC-H queries and schema from DuckDB's tpch extension, the conformance
validator, and a metadata store on SQLite and on Postgres (a fresh schema per test).

The OpenLineage schemas come from ``shared/conformance/openlineage`` (``HEADWATER_CONFORMANCE_DIR``
overrides where ``shared/conformance`` is), not from the copy the package ships, so the tests
check events against the specification itself.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlglot
from sqlglot import exp

from headwater.lineage import EventValidator, LineageStore
from headwater.metadata import MetadataStore

DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def conformance_dir() -> Path:
    env = os.environ.get("HEADWATER_CONFORMANCE_DIR")
    if env:
        return Path(env) / "openlineage"
    return Path(__file__).resolve().parents[2].parent / "shared" / "conformance" / "openlineage"


@pytest.fixture(scope="session")
def conformance() -> EventValidator:
    """A validator on the specification's own schema files."""
    path = conformance_dir()
    if not (path / "OpenLineage.json").exists():
        if os.environ.get("HEADWATER_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{path} not found (HEADWATER_REQUIRE_SERVICES=1)")
        pytest.skip(f"OpenLineage conformance schemas not found at {path}")
    return EventValidator(path)


def _tpch() -> tuple[list[tuple[int, str]], dict[str, dict[str, str]]]:
    from headwater.stores.duckdb import load_extension, new_connection

    con = new_connection(allow_unsigned=True)
    try:
        load_extension(con, "tpch")
        queries = [(int(n), q) for n, q in con.execute("SELECT query_nr, query FROM tpch_queries() ORDER BY 1").fetchall()]
        con.execute("CALL dbgen(sf=0)")
        schema: dict[str, dict[str, str]] = {}
        for t, c, ty in con.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "ORDER BY table_name, ordinal_position"
        ).fetchall():
            schema.setdefault(f"warehouse.{t}", {})[c] = ty
    finally:
        con.close()
    return queries, schema


def tpch_statement(n: int, query: str, tables: set[str]) -> str:
    """``CREATE TABLE warehouse.q<n> AS <query>`` with every TPC-H table as ``warehouse.<t>``."""
    tree = sqlglot.parse_one(query, read="duckdb")
    for t in tree.find_all(exp.Table):
        if not t.db and t.name in tables:
            t.set("db", exp.to_identifier("warehouse"))
    return f"CREATE TABLE warehouse.q{n} AS {tree.sql(dialect='duckdb')}"


@pytest.fixture(scope="session")
def tpch() -> tuple[dict[int, str], dict[str, dict[str, str]]]:
    """TPC-H statements by number (``CREATE TABLE warehouse.q<N> AS ...``) and the schema."""
    queries, schema = _tpch()
    tables = {k.split(".", 1)[1] for k in schema}
    return {n: tpch_statement(n, q, tables) for n, q in queries}, schema


@pytest.fixture
def sqlite_meta(tmp_path) -> Iterator[MetadataStore]:
    meta = MetadataStore.open(f"sqlite:///{tmp_path / 'metadata.db'}")
    yield meta
    meta.close()


@pytest.fixture
def pg_meta() -> Iterator[MetadataStore]:
    """A metadata store in a fresh Postgres schema, dropped afterwards."""
    import sqlalchemy as sa

    url = os.environ.get("HEADWATER_TEST_PG_URL", DEFAULT_PG_URL)
    schema = f"hw_lineage_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(url, connect_args={"connect_timeout": 3})
    try:
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except Exception as err:  # noqa: BLE001 - any failure to connect means "no service"
        admin.dispose()
        reason = f"Postgres unreachable at {url.split('@')[-1]} ({type(err).__name__})"
        if os.environ.get("HEADWATER_REQUIRE_SERVICES") == "1":
            pytest.fail(reason + " and HEADWATER_REQUIRE_SERVICES=1")
        pytest.skip(reason)
    sep = "&" if "?" in url else "?"
    meta = MetadataStore.open(f"{url}{sep}options=-csearch_path%3D{schema}")
    try:
        yield meta
    finally:
        meta.close()
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def meta(request) -> MetadataStore:
    """The metadata store, on SQLite then on Postgres."""
    return request.getfixturevalue("sqlite_meta" if request.param == "sqlite" else "pg_meta")


@pytest.fixture
def lineage(meta: MetadataStore, conformance: EventValidator) -> LineageStore:
    """A lineage store validating against the conformance schemas."""
    return LineageStore(meta, platform="test", validator=conformance)
