"""A platform whose one data store ``db`` is each backend in turn, with a policy for write attacks.

``root`` may do anything; ``carol`` may select, insert, update and delete in ``db.*`` but only
rows whose ``country`` is DE or FR, and never reads (so never writes) ``salary``; ``dave`` has
no role. ``db.people`` holds one DE, one FR and one US row.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pytest

from headwater import Config, Platform
from headwater.config import (
    DuckDBConfig,
    ParquetConfig,
    PostgresConfig,
    S3Config,
    SnowflakeConfig,
    SQLiteConfig,
)
from tests.fix_services import pg_fresh_schema

POLICY = """\
version: 1
roles:
  admin:
    grants:
      - {datasets: "*", actions: [select, insert, update, delete]}
  eu_writer:
    grants:
      - {datasets: "db.*", actions: [select, insert, update, delete]}
    columns:
      - {column: salary, deny: true}
    row_filters:
      - {datasets: "db.*", where: "country IN principal.countries"}
principals:
  root: {roles: [admin]}
  carol: {roles: [eu_writer], attributes: {countries: [DE, FR]}}
"""

PEOPLE = [
    {"id": 1, "country": "DE", "salary": 100, "name": "Ann"},
    {"id": 2, "country": "FR", "salary": 200, "name": "Bo"},
    {"id": 3, "country": "US", "salary": 300, "name": "Cy"},
]


def people_table(rows: list[dict[str, Any]] = PEOPLE) -> pa.Table:
    """Rows as an Arrow table with fixed types (every store creates the same columns)."""
    return pa.table({
        "id": pa.array([r["id"] for r in rows], pa.int64()),
        "country": pa.array([r["country"] for r in rows], pa.string()),
        "salary": pa.array([r["salary"] for r in rows], pa.int64()),
        "name": pa.array([r["name"] for r in rows], pa.string()),
    })


@contextlib.contextmanager
def _store_config(kind: str, request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Any]:
    if kind == "sqlite":
        yield SQLiteConfig(path="db.sqlite")
    elif kind == "duckdb":
        yield DuckDBConfig(path="db.duckdb")
    elif kind == "postgres":
        dsn = request.getfixturevalue("pg_dsn")
        with pg_fresh_schema(dsn) as schema:
            yield PostgresConfig(dsn=dsn, schema=schema, max_connections=4)
    elif kind == "parquet_local":
        yield ParquetConfig(root="lake")
    elif kind == "parquet_s3":
        s3 = request.getfixturevalue("s3_endpoint")
        yield ParquetConfig(root=f"s3://{s3['bucket']}/w-{uuid.uuid4().hex[:12]}",
                            s3=S3Config(endpoint_url=s3["endpoint_url"], region=s3["region"],
                                        access_key_id=s3["access_key_id"],
                                        secret_access_key=s3["secret_access_key"]))
    elif kind == "snowflake":
        args = dict(request.getfixturevalue("snowflake_conn_args"))
        args["schema"] = f"HW_TEST_{uuid.uuid4().hex[:12].upper()}"
        yield SnowflakeConfig(**args)
    else:  # pragma: no cover
        raise AssertionError(kind)


def open_db_platform(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Platform]:
    """A platform whose store ``db`` is one backend (``request.param``, one of ``STORE_KINDS``),
    seeded and governed; a fixture body (``yield from``)."""
    with _store_config(request.param, request, tmp_path) as store_cfg:
        cfg = Config(platform_dir=str(tmp_path / "hw"), stores={"db": store_cfg})
        cfg.pii.scan_on_catalog = False
        platform = Platform.open(cfg)
        try:
            platform.session("root").write("db.people", people_table(), key="id")
            platform.apply_policy(POLICY, source="test", applied_by="test")
            yield platform
        finally:
            platform.close()


def table_rows(platform: Platform, table: str) -> list[dict[str, Any]]:
    """Every row of ``db.<table>`` as root sees it, keys lower-cased (Snowflake upper-cases
    them), sorted by id."""
    rows = platform.session("root").sql(f"SELECT * FROM db.{table}").to_pylist()
    return sorted(({k.lower(): v for k, v in r.items()} for r in rows), key=lambda r: r["id"])
