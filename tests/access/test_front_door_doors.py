"""The front door's attacks through the other doors: once through the CLI (``headwater sql``) and
once through HTTP (``POST /v1/query``), on an embedded platform with the demo policy applied.

The physical SQLite table ``customers`` (behind ``app.customers``) and an uncatalogued
``_hw_changes`` hold values bob may not read (SSNs, raw e-mails); a file on disk holds a secret.
Every attack is refused with a typed error (exit code 1 and the class on stderr; an RFC 9457
problem with a 4xx status), without a traceback and without any of those values.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from headwater.cli import app
from tests.service.conftest import CUSTOMERS, Served, open_platform, serve

RAW = [c["ssn"] for c in CUSTOMERS] + [c["email"] for c in CUSTOMERS] + ["CHANGES-SECRET", "FILE-SECRET"]


@pytest.fixture(scope="module")
def platform_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("doors")
    platform = open_platform(root / "hw")
    platform.store("app").write("_hw_changes", pa.table({"id": [1], "before": ["CHANGES-SECRET"]}))
    (root / "secret.csv").write_text("a\nFILE-SECRET\n")
    (root / "headwater.yaml").write_text(
        f"platform_dir: {root / 'hw'}\nstores:\n  app: {{kind: sqlite, path: app.db}}\n"
        "  warehouse: {kind: duckdb, path: warehouse.duckdb}\n  lake: {kind: parquet, root: lake}\n")
    platform.close()
    yield root


def attacks(root: Path) -> list[str]:
    return [
        "WITH customers AS (SELECT * FROM customers) SELECT ssn, email FROM customers",
        "SELECT * FROM (WITH customers AS (SELECT 1 AS x) SELECT * FROM customers) a, customers",
        "SELECT * FROM (WITH _hw_changes AS (SELECT 1 AS x) SELECT * FROM _hw_changes) a, _hw_changes",
        f"WITH x AS (SELECT 1 AS y) SELECT * FROM x, '{root / 'secret.csv'}'",
        "SELECT id, query_to_xml('select ssn from customers', true, true, '') FROM app.customers",
        "SELECT " + "(" * 3000 + "1" + ")" * 3000,
        "SELECT " + "9" * 5000,
    ]


def test_cli_refuses_every_attack(platform_dir: Path) -> None:
    runner = CliRunner()
    env = {"HEADWATER_CONFIG": str(platform_dir / "headwater.yaml"), "USER": "bob"}
    for sql in attacks(platform_dir):
        res = runner.invoke(app, ["sql", sql, "--as", "bob", "--format", "json"], env=env, catch_exceptions=False)
        assert res.exit_code == 1, (sql[:60], res.stdout[:300])
        assert "QueryRejected" in res.stderr or "QueryParseError" in res.stderr, res.stderr[:300]
        assert "Traceback" not in res.stderr + res.stdout
        assert not any(v in res.stderr + res.stdout for v in RAW)
    ok = runner.invoke(app, ["sql", "WITH customers AS (SELECT * FROM app.customers) SELECT email FROM customers",
                             "--as", "bob", "--format", "json"], env=env, catch_exceptions=False)
    assert ok.exit_code == 0, ok.stderr
    assert "@example.com" in ok.stdout and not any(v in ok.stdout for v in RAW)


def test_http_refuses_every_attack(platform_dir: Path) -> None:
    from headwater import Config, Platform

    platform = Platform.open(Config.load(platform_dir / "headwater.yaml"))
    key = platform.create_api_key("bob")
    try:
        with serve(platform) as server:
            served = Served(platform=platform, base_url=server.base_url)
            with served.client() as c:
                for sql in attacks(platform_dir):
                    r = c.post("/v1/query", json={"sql": sql}, headers={"X-API-Key": key.token})
                    assert 400 <= r.status_code < 500, (sql[:60], r.status_code, r.text[:300])
                    assert r.headers["content-type"].startswith("application/problem+json")
                    assert r.json()["code"] in {"QueryRejected", "QueryParseError"}, r.text[:300]
                    assert not any(v in r.text for v in RAW) and "Traceback" not in r.text
                ok = c.post("/v1/query", json={"sql": "WITH customers AS (SELECT * FROM app.customers) "
                                                      "SELECT email FROM customers"},
                            headers={"X-API-Key": key.token})
                assert ok.status_code == 200, ok.text[:300]
                assert "@example.com" in ok.text and not any(v in ok.text for v in RAW)
    finally:
        platform.close()
