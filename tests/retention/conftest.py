"""Platforms for retention tests: embedded (SQLite app, DuckDB warehouse, local lake), Postgres
app, and the lake on S3 (moto); plus seeded demo-like datasets with known ages."""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
import pytest

from headwater import Config, Platform
from headwater.config import ParquetConfig, S3Config

N = 20
"""Rows per dataset; row ``i`` (1-based) is ``10 * i`` days and one hour old."""


@dataclass
class Seeded:
    platform: Platform
    now: dt.datetime
    """Aware UTC; the ``now`` plans are made with."""

    def age_ts(self, i: int) -> dt.datetime:
        """The (naive UTC) timestamp of row ``i``."""
        return self.now.replace(tzinfo=None) - dt.timedelta(days=10 * i, hours=1)

    def older_than(self, days: int) -> set[int]:
        """Ids of rows older than ``days`` days."""
        cut = self.now.replace(tzinfo=None) - dt.timedelta(days=days)
        return {i for i in range(1, N + 1) if self.age_ts(i) < cut}


def seed(platform: Platform) -> Seeded:
    """app.customers, warehouse.orders, lake.events with ages 10, 20, ... 200 days (+1h)."""
    s = Seeded(platform, dt.datetime.now(dt.UTC).replace(microsecond=0))
    ids = list(range(1, N + 1))
    ts = pa.array([s.age_ts(i) for i in ids], pa.timestamp("us"))
    session = platform.session("admin")
    session.write("app.customers", pa.table({
        "id": pa.array(ids, pa.int64()), "name": [f"n{i}" for i in ids],
        "email": [f"user{i}@example.com" for i in ids], "created_at": ts}), key="id")
    session.write("warehouse.orders", pa.table({
        "id": pa.array(ids, pa.int64()), "customer_id": pa.array(ids, pa.int64()),
        "coupon": [f"C{i}" for i in ids], "amount": [i * 1.25 for i in ids], "ordered_at": ts}), key="id")
    session.write("lake.events", pa.table({
        "event_id": pa.array(ids, pa.int64()), "customer_id": pa.array(ids, pa.int64()),
        "ip": [f"10.0.0.{i}" for i in ids], "ts": ts}))
    platform.catalog.set_tags("app.customers", "email", ["pii.email"])
    platform.catalog.set_tags("lake.events", "ip", ["pii.ip"])
    return s


@pytest.fixture
def s3_platform(tmp_path, s3_endpoint) -> Iterator[Platform]:
    """The embedded platform with its lake on S3 (moto)."""
    cfg = Config.embedded(tmp_path / "hw")
    prefix = f"rt-{uuid.uuid4().hex[:10]}"
    cfg.stores["lake"] = ParquetConfig(root=f"s3://{s3_endpoint['bucket']}/{prefix}", s3=S3Config(
        endpoint_url=s3_endpoint["endpoint_url"], region=s3_endpoint["region"],
        access_key_id=s3_endpoint["access_key_id"], secret_access_key=s3_endpoint["secret_access_key"]))
    p = Platform.open(cfg)
    try:
        yield p
    finally:
        with contextlib.suppress(Exception):
            lake = p.store("lake")
            lake.fs.delete_dir(lake.root)  # type: ignore[attr-defined]
        p.close()


@pytest.fixture(params=["embedded", pytest.param("postgres", marks=pytest.mark.postgres),
                        pytest.param("s3", marks=pytest.mark.s3),
                        pytest.param("pg_meta", marks=pytest.mark.postgres)])
def rt_platform(request) -> Platform:
    """Embedded; app on Postgres; lake on S3; metadata (holds, audit) on Postgres."""
    name = {"embedded": "platform", "postgres": "pg_platform", "s3": "s3_platform",
            "pg_meta": "pg_meta_platform"}[request.param]
    return request.getfixturevalue(name)


@pytest.fixture
def seeded(rt_platform: Platform) -> Seeded:
    return seed(rt_platform)


@pytest.fixture
def pg_meta_platform(tmp_path) -> Iterator[Platform]:
    """The embedded platform with its metadata store (audit, dead letters, lineage, SLO
    buckets, holds) on Postgres."""
    from headwater.config import MetadataConfig
    from tests.fix_services import pg_schema_url

    with contextlib.contextmanager(pg_schema_url)("hw_rt_meta") as url:
        cfg = Config.embedded(tmp_path / "hw")
        cfg.metadata = MetadataConfig(url=url)
        p = Platform.open(cfg)
        try:
            yield p
        finally:
            p.close()


@pytest.fixture(params=["embedded", pytest.param("pg_meta", marks=pytest.mark.postgres)])
def log_platform(request) -> Platform:
    """Metadata on SQLite, then on Postgres."""
    return request.getfixturevalue("platform" if request.param == "embedded" else "pg_meta_platform")
