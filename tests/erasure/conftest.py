"""Platforms for erasure tests: embedded (SQLite, DuckDB, local Parquet) and Postgres + DuckDB +
Parquet on S3 (moto), both seeded with one customer in many places."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from tests.erasure._seed import pg_s3_config, pg_schema, seed
from tests.fix_services import pg_schema_url

from headwater import Config, Platform


@pytest.fixture
def embedded(tmp_path) -> Iterator[Platform]:
    p = Platform.open(Config.embedded(tmp_path / "hw"))
    try:
        yield p
    finally:
        p.close()


@pytest.fixture
def pg_s3(tmp_path, pg_dsn, s3_endpoint) -> Iterator[tuple[Platform, dict[str, Any]]]:
    """A Postgres (app and metadata) / DuckDB / S3 platform and what it takes to rebuild its config."""
    with pg_schema(pg_dsn) as schema, contextlib.contextmanager(pg_schema_url)("hw_erase_meta") as meta_url:
        cfg = pg_s3_config(tmp_path, pg_dsn, schema, s3_endpoint, meta_url=meta_url)
        p = Platform.open(cfg)
        try:
            yield p, {"dsn": pg_dsn, "schema": schema, "s3": s3_endpoint, "meta_url": meta_url}
        finally:
            p.close()


@pytest.fixture(params=["embedded", pytest.param("pg_s3", marks=[pytest.mark.postgres, pytest.mark.s3])])
def seeded(request) -> tuple[Platform, dict[str, int]]:
    """Each platform kind in turn, seeded; (platform, dead-letter ids)."""
    if request.param == "embedded":
        platform = request.getfixturevalue("embedded")
    else:
        platform, _ = request.getfixturevalue("pg_s3")
    return platform, seed(platform)
