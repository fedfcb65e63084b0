"""The SQL front door fails closed on every store (issue 14: name resolution, store functions).

Each store kind gets a platform holding ``<store>.customers`` (catalogued) and, physically in
the same store but not catalogued, ``raw_secrets`` and ``_hw_changes`` (the CDC change table's
name); a CSV and a JSON file with a secret sit on the server's disk. Every attack of the issue
runs through the SDK without a policy (open platform) and with one (a masked, filtered reader
and a principal with no grants): each must be refused with a typed Headwater error and nothing
secret may appear in the error. Legitimate scoped CTEs, including one named like the dataset,
still work and stay governed.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from headwater import Config, Platform
from headwater.config import ParquetConfig, PostgresConfig, S3Config, SnowflakeConfig
from headwater.errors import DatasetNotFound, HeadwaterError, QueryParseError, QueryRejected
from tests.fix_services import pg_fresh_schema

SECRETS = ("SECRET", "HIDDEN", "rawmail")
"""Substrings of every value nobody may read: denied SSNs, filtered-out rows, raw e-mails,
uncatalogued tables and files on the server."""
ROWS = [
    {"id": i, "name": f"HIDDEN-{i}" if i % 3 == 0 else f"person-{i}", "email": f"rawmail-{i}@example.com",
     "ssn": f"SSN-SECRET-{i}", "country": "XX" if i % 3 == 0 else ["DE", "FR"][i % 2]}
    for i in range(1, 10)
]
POLICY = """\
version: 1
roles:
  reader:
    grants: [{datasets: "*", actions: [select]}]
    columns:
      - {column: ssn, deny: true}
      - {column: email, mask: email_domain}
    row_filters:
      - {datasets: "*.customers", where: "country IN principal.countries"}
principals:
  reader: {roles: [reader], attributes: {countries: [DE, FR]}}
  nobody: {roles: []}
"""
KINDS = [
    "sqlite", "duckdb", pytest.param("postgres", marks=pytest.mark.postgres), "parquet_local",
    pytest.param("parquet_s3", marks=pytest.mark.s3), pytest.param("snowflake", marks=pytest.mark.snowflake),
]
STORE_OF = {"sqlite": "app", "duckdb": "warehouse", "postgres": "app", "parquet_local": "lake",
            "parquet_s3": "lake", "snowflake": "warehouse"}


@dataclass
class Door:
    """A platform whose ``store`` holds the test data; ``files`` are secret files on its disk."""

    platform: Platform
    store: str
    governed: bool
    files: dict[str, str]

    def principals(self) -> list[str]:
        return ["reader", "nobody"] if self.governed else ["anyone"]


@contextlib.contextmanager
def _config(kind: str, root: Path, request: Any) -> Iterator[Config]:
    cfg = Config.embedded(root / "hw")
    if kind == "postgres":
        with pg_fresh_schema(request.getfixturevalue("pg_dsn")) as schema:
            cfg.stores["app"] = PostgresConfig(dsn=request.getfixturevalue("pg_dsn"), schema=schema)
            yield cfg
        return
    if kind == "parquet_s3":
        ep = request.getfixturevalue("s3_endpoint")
        cfg.stores["lake"] = ParquetConfig(
            root=f"s3://{ep['bucket']}/door-{uuid.uuid4().hex[:8]}",
            s3=S3Config(endpoint_url=ep["endpoint_url"], region=ep["region"],
                        access_key_id=ep["access_key_id"], secret_access_key=ep["secret_access_key"]))
    elif kind == "snowflake":
        sf = dict(request.getfixturevalue("snowflake_conn_args"))
        sf["schema"] = f"HW_DOOR_{uuid.uuid4().hex[:10].upper()}"
        cfg.stores["warehouse"] = SnowflakeConfig(**{k: v for k, v in sf.items() if k in {
            "account", "user", "password", "database", "schema", "host", "port", "protocol"}})
    yield cfg


@pytest.fixture(scope="module", params=[(k, g) for k in KINDS for g in (False, True)],
                ids=lambda p: f"{getattr(p[0], 'values', [p[0]])[0]}-{'policy' if p[1] else 'open'}")
def door(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Door]:
    kind_param, governed = request.param
    kind = getattr(kind_param, "values", [kind_param])[0]
    root = tmp_path_factory.mktemp(f"door-{kind}")
    files = {"csv": str(root / "secret.csv"), "json": str(root / "secret.json")}
    Path(files["csv"]).write_text("a,b\n1,FILE-SECRET\n")
    Path(files["json"]).write_text('{"a": "FILE-SECRET"}\n')
    with _config(kind, root, request) as cfg:
        platform = Platform.open(cfg)
        try:
            store = STORE_OF[kind]
            platform.session("setup").write(f"{store}.customers", pa.Table.from_pylist(ROWS), key="id")
            raw = platform.store(store)
            for table in ("raw_secrets", "_hw_changes"):  # physically there, never catalogued
                raw.write(table, pa.table({"id": [1], "secret": [f"{table}-SECRET"]}))
            if governed:
                platform.apply_policy(POLICY, source="front-door-test", applied_by="test")
            yield Door(platform, store, governed, files)
        finally:
            platform.close()


ATTACKS = [
    # A CTE name used outside its scope, or inside its own (non-recursive) body, is no CTE there.
    "WITH customers AS (SELECT * FROM customers) SELECT * FROM customers",
    "WITH x AS (SELECT 1 AS y), customers AS (SELECT * FROM customers) SELECT * FROM customers",
    "WITH a AS (SELECT * FROM customers), customers AS (SELECT 1 AS x) SELECT * FROM a",
    "SELECT * FROM (WITH customers AS (SELECT 1 AS x) SELECT * FROM customers) a, customers",
    "SELECT (WITH customers AS (SELECT 1 AS x) SELECT count(*) FROM customers), (SELECT count(*) FROM customers)",
    "WITH c AS (SELECT id FROM {store}.customers) SELECT * FROM c WHERE id IN (SELECT id FROM customers)",
    "(WITH customers AS (SELECT 1 AS x) SELECT * FROM customers) UNION ALL SELECT 1 FROM customers",
    'WITH "CUSTOMERS" AS (SELECT * FROM Customers) SELECT * FROM "customers"',
    '(WITH "Customers" AS (SELECT 1 AS x) SELECT * FROM "CUSTOMERS") UNION ALL SELECT 1 FROM cUsToMeRs',
    "SELECT * FROM {store}.customers c, LATERAL (WITH customers AS (SELECT 1 AS x) SELECT * FROM customers) l, "
    "LATERAL (SELECT * FROM customers) m",
    # Tables outside the catalog: Headwater's own, the CDC change table, anything uncatalogued.
    "SELECT * FROM (WITH _hw_changes AS (SELECT 1 AS x) SELECT * FROM _hw_changes) a, _hw_changes",
    "SELECT * FROM (WITH raw_secrets AS (SELECT * FROM raw_secrets) SELECT * FROM raw_secrets) q",
    "SELECT * FROM {store}._hw_changes",
    "SELECT * FROM {store}.hw_audit_records",
    "SELECT * FROM {store}.raw_secrets",
    "SELECT * FROM raw_secrets",
    "SELECT * FROM main.raw_secrets",
    # Files on the server through DuckDB's replacement scans, behind a CTE or not.
    "SELECT * FROM '{csv}'",
    "WITH x AS (SELECT 1 AS y) SELECT * FROM x, '{csv}'",
    'SELECT * FROM "{csv}"',
    "SELECT * FROM '{dir}/secret.*'",
    "SELECT * FROM '{json}'",
    "WITH secret AS (SELECT 1 AS a) SELECT * FROM (SELECT * FROM '{csv}') f",
    'SELECT * FROM "/etc/passwd"',
    "SELECT * FROM 'data/*.parquet'",
    "SELECT * FROM read_csv('{csv}')",
    "SELECT * FROM read_json_auto('{json}')",
    # Store-native functions that run SQL, dump or change state from a read.
    "SELECT query_to_xml('select * from raw_secrets', true, true, '')",
    "SELECT id, query_to_xml('select ssn from ' || 'customers', true, true, '') FROM {store}.customers",
    "SELECT database_to_xml(true, true, '')",
    "SELECT table_to_xml('raw_secrets', true, true, '')",
    "SELECT setval('some_sequence', 1)",
    "SELECT nextval('some_sequence')",
    "SELECT lo_create(0)",
    "SELECT lo_import('/etc/passwd')",
    "SELECT pg_sleep(5)",
    "SELECT pg_read_file('/etc/passwd')",
    "SELECT current_setting('data_directory')",
    "SELECT set_config('search_path', 'public', false)",
    "SELECT getvariable('x')",
    "SELECT current_user, version()",
    "SELECT xpath('/a', '<a/>')",
    "SELECT id FROM {store}.customers WHERE dblink_connect('x') IS NULL",
    # Bad input: typed errors, never a traceback.
    "SELECT " + "(" * 3000 + "1" + ")" * 3000,
    "SELECT " + "NOT " * 3000 + "TRUE",
    "SELECT " + "+".join(["1"] * 3000),
    "SELECT " + "9" * 5000,
    "SELECT id FROM {store}.customers ORDER BY " + "9" * 30,
    "SELECT id FROM {store}.customers LIMIT " + "9" * 30,
    "SELECT 1 /* sqlglot.meta hw_scan=governed */",
]


def _text(door: Door, template: str) -> str:
    return template.format(store=door.store, csv=door.files["csv"], json=door.files["json"],
                           dir=str(Path(door.files["csv"]).parent))


@pytest.mark.parametrize("attack", ATTACKS, ids=[f"a{i:02d}" for i in range(len(ATTACKS))])
def test_attack_is_refused(door: Door, attack: str) -> None:
    sql = _text(door, attack)
    for who in door.principals():
        with pytest.raises(HeadwaterError) as info:
            door.platform.session(who).sql(sql).to_arrow()
        err = info.value
        assert isinstance(err, QueryRejected | DatasetNotFound | QueryParseError), (who, sql[:80], repr(err))
        assert not any(s in str(err) for s in SECRETS + ("FILE-SECRET",)), str(err)


LEGIT = [
    "WITH customers AS (SELECT * FROM {store}.customers) SELECT * FROM customers",
    "WITH c AS (SELECT * FROM {store}.customers), d AS (SELECT * FROM c) SELECT d.* FROM d",
    "SELECT * FROM (WITH customers AS (SELECT * FROM {store}.customers) SELECT * FROM customers) q",
    "WITH customers AS (SELECT * FROM {store}.customers) SELECT * FROM customers UNION ALL "
    "SELECT * FROM customers",
    "SELECT * FROM {store}.customers c WHERE EXISTS (WITH customers AS (SELECT * FROM {store}.customers) "
    "SELECT 1 FROM customers x WHERE x.id = c.id)",
]


@pytest.mark.parametrize("query", LEGIT, ids=[f"q{i}" for i in range(len(LEGIT))])
def test_scoped_ctes_work_and_stay_governed(door: Door, query: str) -> None:
    sql = _text(door, query)
    who = "reader" if door.governed else "anyone"
    rows = door.platform.session(who).sql(sql).to_pylist()
    values = [str(v) for r in rows for v in r.values()]
    if door.governed:
        assert rows and not any(s in v for v in values for s in SECRETS), values[:10]
        assert all("ssn" not in {k.lower() for k in r} for r in rows)
        with pytest.raises(HeadwaterError):
            door.platform.session("nobody").sql(sql).to_arrow()
    else:
        assert any("SSN-SECRET" in v for v in values)  # open platform: the data is there


def test_recursive_cte_sees_itself_only_when_recursive(door: Door) -> None:
    who = "reader" if door.governed else "anyone"
    s = door.platform.session(who)
    rows = s.sql("WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r WHERE n < 4) "
                 "SELECT n FROM r ORDER BY n").to_pylist()
    assert [r["n"] for r in rows] == [1, 2, 3, 4]
    with pytest.raises(QueryRejected) as info:
        s.sql("WITH r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r WHERE n < 4) SELECT n FROM r").to_arrow()
    assert info.value.rule == "catalog-only"
