"""The same calling code on the embedded platform and on Postgres + Snowflake + S3.

A config swaps ``app`` for Postgres, ``warehouse`` for Snowflake (fakesnow's server) and
``lake`` for Parquet on S3 (moto's server), all over real connections on loopback; the SDK calls
do not change and give the same answers.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pytest

from headwater import Config, Platform
from headwater.stores.base import ColumnInfo, TableInfo


def _workload(platform: Platform) -> dict[str, Any]:
    s = platform.session("swap-test")
    s.write("app.customers", [{"id": i, "name": f"c{i}", "country": ["DE", "US", "FR"][i % 3]} for i in range(1, 31)],
            key="id")
    s.write("warehouse.orders", {"id": list(range(1, 91)), "customer_id": [i % 30 + 1 for i in range(90)],
                                 "amount": [float(i) for i in range(1, 91)]}, key="id")
    s.write("lake.events", {"customer_id": [1, 2, 3, 4], "kind": ["view", "click", "view", "purchase"]})
    s.write("app.customers", [{"id": 2, "name": "two", "country": "US"}], mode="upsert")
    joined = s.sql(
        "SELECT c.country, count(*) AS n, sum(o.amount) AS total FROM app.customers c "
        "JOIN warehouse.orders o ON o.customer_id = c.id WHERE c.id <= ? GROUP BY c.country ORDER BY c.country",
        [20],
    ).to_pylist()
    three = s.sql(
        "SELECT e.kind, count(*) AS n FROM lake.events e JOIN app.customers c ON c.id = e.customer_id "
        "JOIN warehouse.orders o ON o.customer_id = c.id GROUP BY e.kind ORDER BY e.kind"
    ).to_pylist()
    pages = [p.to_pylist() for p in s.read("app.customers", columns=["id"], page_size=7)]
    return {
        "joined": [{k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items()} for r in joined],
        "three": three,
        "pages": [[r["id"] for r in p] for p in pages],
        "name2": s.sql("SELECT name FROM app.customers WHERE id = ?", [2]).to_pylist(),
    }


def _lower(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k.lower(): v for k, v in r.items()} for r in rows]


def test_same_code_same_answers(tmp_path: Path, pg_dsn: str, s3_endpoint: dict[str, Any],
                                snowflake_conn_args: dict[str, Any]) -> None:
    embedded = Platform.open(Config.embedded(tmp_path / "embedded"))
    expected = _workload(embedded)
    embedded.close()

    schema = f"hw_swap_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    prefix = f"{s3_endpoint['bucket']}/swap-{uuid.uuid4().hex[:8]}"
    sf = dict(snowflake_conn_args)
    cfg = Config.load(None, overrides={
        "platform_dir": str(tmp_path / "prod"),
        "stores": {
            "app": {"kind": "postgres", "dsn": pg_dsn, "schema": schema},
            "warehouse": {"kind": "snowflake", **{k: v for k, v in sf.items() if k in {
                "account", "user", "password", "database", "schema", "host", "port", "protocol", "warehouse"}}},
            "lake": {"kind": "parquet", "root": f"s3://{prefix}", "s3": {
                "endpoint_url": s3_endpoint["endpoint_url"], "region": s3_endpoint["region"],
                "access_key_id": s3_endpoint["access_key_id"],
                "secret_access_key": s3_endpoint["secret_access_key"]}},
        },
    })
    try:
        prod = Platform.open(cfg)
        got = _workload(prod)
        kinds = {name: prod.store(name).kind for name in ("app", "warehouse", "lake")}
        prod.close()
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    assert kinds == {"app": "postgres", "warehouse": "snowflake", "lake": "parquet"}
    assert _lower(got["joined"]) == _lower(expected["joined"])
    assert _lower(got["three"]) == _lower(expected["three"])
    assert got["pages"] == expected["pages"]
    assert got["name2"] == expected["name2"] == [{"name": "two"}]


def test_repr_and_errors_hide_secrets(tmp_path: Path) -> None:
    cfg = Config.load(None, overrides={
        "platform_dir": str(tmp_path),
        "stores": {"app": {"kind": "postgres", "dsn": "host=127.0.0.1 port=1 user=u password=hunter2-secret",
                           "connect_timeout_s": 1}},
    })
    platform = Platform.open(cfg)
    platform.catalog.register("app", TableInfo(name="t", columns=(ColumnInfo("id", pa.int64()),),
                                               location="postgres://x/t"), kind="postgres")
    assert "hunter2" not in repr(cfg) + repr(platform) + repr(platform.store("app"))
    with pytest.raises(Exception) as info:
        platform.session("x").sql("SELECT 1 AS one FROM app.t").to_arrow()
    assert "hunter2" not in str(info.value)
    assert type(info.value).__name__ in {"StoreUnavailable"}
    platform.close()
