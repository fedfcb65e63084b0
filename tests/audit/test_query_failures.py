"""Every query is audited, failures included, and a failure's record holds no data.

The attack (issue 14): a query that failed at run time left no audit record, so probing
(queries that fail on purpose, or that fail on the data they touch) went unseen. Each failure
stage (parse, plan, authorise, execute, page cursor, row cap while streaming) must leave one
record with the decision (``deny`` or ``error``), the error class, the stage and the rule, and
nothing of the data: no parameter values, no rows, and not the error's message (a driver's
conversion error quotes the value it could not convert). Run through the SDK on every store.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pyarrow as pa
import pytest

from headwater import Config, Platform
from headwater.errors import HeadwaterError

SECRET = "Secret Name 7"
PROBE = "probe-value-41"
ROWS = [{"id": i, "name": SECRET if i == 7 else str(i), "country": "DE"} for i in range(1, 21)]
STORES = ("app", "warehouse", "lake")
POLICY = """
version: 1
roles:
  reader:
    grants: [{datasets: "*", actions: [select]}]
    max_rows: 5
  app_only:
    grants: [{datasets: "app.*", actions: [select]}]
principals:
  rita: {roles: [reader]}
  nemo: {roles: [app_only]}
"""


def _load(platform: Platform) -> Platform:
    setup = platform.session("setup")
    for store in STORES:
        setup.write(f"{store}.people", pa.Table.from_pylist(ROWS), key="id")
    platform.apply_policy(POLICY, source="failures.yaml", applied_by="test")
    return platform


@pytest.fixture(scope="module")
def embedded(tmp_path_factory) -> Iterator[Platform]:
    platform = _load(Platform.open(Config.embedded(tmp_path_factory.mktemp("fail") / "hw")))
    yield platform
    platform.close()


@pytest.fixture(scope="module")
def production(tmp_path_factory, pg_dsn, s3_endpoint, snowflake_conn_args) -> Iterator[Platform]:
    schema = f"hw_fail_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sf = {k: v for k, v in snowflake_conn_args.items()
          if k in {"account", "user", "password", "database", "host", "port", "protocol"}}
    cfg = Config.load(None, overrides={
        "platform_dir": str(tmp_path_factory.mktemp("fail-prod")),
        "stores": {
            "app": {"kind": "postgres", "dsn": pg_dsn, "schema": schema},
            "warehouse": {"kind": "snowflake", **sf, "schema": f"HW_FAIL_{uuid.uuid4().hex[:8].upper()}"},
            "lake": {"kind": "parquet", "root": f"s3://{s3_endpoint['bucket']}/fail-{uuid.uuid4().hex[:8]}",
                     "s3": {"endpoint_url": s3_endpoint["endpoint_url"], "region": s3_endpoint["region"],
                            "access_key_id": s3_endpoint["access_key_id"],
                            "secret_access_key": s3_endpoint["secret_access_key"]}},
        },
    })
    platform = _load(Platform.open(cfg))
    yield platform
    platform.close()
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(params=["embedded", pytest.param("production", marks=[pytest.mark.postgres, pytest.mark.s3,
                                                                       pytest.mark.snowflake])])
def platform(request) -> Platform:
    return request.getfixturevalue(request.param)


def failed(platform: Platform, who: str, call: Any) -> tuple[BaseException, list[Any]]:
    """Run ``call`` (expected to fail); return the error and the records it added."""
    before = platform.audit.stats()["head_seq"]
    with pytest.raises(Exception) as info:  # noqa: B017 - the class is asserted by the caller
        result = call()
        result.to_arrow()
    new = [r for r in platform.audit.query(actor=who, limit=None) if r.seq > before]
    text = repr(new)
    assert PROBE not in text and SECRET not in text, text  # no parameter value, no data
    return info.value, new


def one(records: list[Any], decision: str) -> Any:
    hits = [r for r in records if r.decision == decision]
    assert len(hits) == 1, records
    return hits[0]


@pytest.mark.parametrize("store", STORES)
def test_runtime_failure_is_audited_without_the_value(platform: Platform, store: str) -> None:
    """The store fails on a row's value (a cast): one error record, with the class, not the
    message that quotes the value."""
    if platform.store(store).kind == "sqlite":
        sql = f"SELECT sum(id + 9223372036854775000) AS s FROM {store}.people WHERE name <> ?"
    else:
        sql = f"SELECT CAST(name AS INTEGER) AS n FROM {store}.people WHERE name <> ?"
    err, records = failed(platform, "rita", lambda: platform.session("rita").sql(sql, [PROBE]))
    assert isinstance(err, HeadwaterError)
    rec = one(records, "error")
    assert rec.action == "query" and rec.extra["error"] == type(err).__name__
    assert rec.extra["stage"] in ("execute", "stream") and [d.lower() for d in rec.datasets] == [f"{store}.people"]
    assert rec.statement and "?" in rec.statement and rec.reason == f"{type(err).__name__} during {rec.extra['stage']}"


@pytest.mark.parametrize("store", STORES)
def test_plan_time_failures_are_audited(platform: Platform, store: str) -> None:
    rita = platform.session("rita")
    cases = [
        (lambda: rita.sql(f"SELECT id FROM {store}.people WHERE (name = ?", [PROBE]), "QueryParseError", "parse"),
        (lambda: rita.sql(f"SELECT nope FROM {store}.people WHERE name = ?", [PROBE]), "ColumnNotFound", "plan"),
        (lambda: rita.sql(f"SELECT id FROM {store}.nobody WHERE name = ?", [PROBE]), "DatasetNotFound", "plan"),
        (lambda: rita.sql(f"SELECT id FROM {store}.people WHERE name = ?", [PROBE, PROBE]), "InvalidInput", "plan"),
    ]
    for call, cls, stage in cases:
        err, records = failed(platform, "rita", call)
        assert type(err).__name__ == cls
        rec = one(records, "error")
        assert (rec.extra["error"], rec.extra["stage"]) == (cls, stage)


def test_denials_are_audited_as_deny(platform: Platform) -> None:
    err, records = failed(platform, "nemo", lambda: platform.session("nemo").sql(
        "SELECT id FROM warehouse.people WHERE name = ?", [PROBE]))
    rec = one(records, "deny")
    assert rec.extra["rule"] == "default-deny" and rec.extra["error"] == "AccessDenied"
    assert rec.extra["attempted"] == "select"


@pytest.mark.parametrize("store", STORES)
def test_row_cap_while_streaming_is_audited(platform: Platform, store: str) -> None:
    """The cap is hit while the result streams (after the allow record): a deny record follows."""
    err, records = failed(platform, "rita", lambda: platform.session("rita").sql(
        f"SELECT id, name FROM {store}.people WHERE name <> ?", [PROBE]))
    assert type(err).__name__ == "QueryRejected"
    rec = one(records, "deny")
    assert rec.extra["rule"] == "max_rows"
    assert [r.decision for r in records] == ["allow", "deny"]


@pytest.mark.parametrize("cursor", ["hwc1.bogus", 12345, {"k": [1]}, b"hwc1."])
def test_bad_cursor_is_audited(embedded: Platform, cursor: Any) -> None:
    err, records = failed(embedded, "rita", lambda: embedded.session("rita").sql(
        "SELECT id FROM app.people WHERE name <> ? ORDER BY id", [PROBE], page_size=2, cursor=cursor))
    assert type(err).__name__ == "InvalidCursor"
    rec = one(records, "error")
    assert rec.extra == {"error": "InvalidCursor", "stage": "execute"}


def test_hostile_statements_are_audited_cleanly(embedded: Platform) -> None:
    """A statement too deep for the parser and a huge one still get a bounded, literal-free record."""
    deep = "SELECT " + "(" * 3000 + "1" + ")" * 3000 + f" FROM app.people WHERE name = '{PROBE}'"
    failed(embedded, "rita", lambda: embedded.session("rita").sql(deep))
    huge = "SELECT id FROM app.people WHERE name IN (" + ", ".join(f"'{PROBE}{i}'" for i in range(20000)) + ") AND"
    err, records = failed(embedded, "rita", lambda: embedded.session("rita").sql(huge))
    (rec,) = records
    assert len(rec.statement) <= 10_002 and rec.decision == "error"


def test_successful_queries_leave_one_allow_record(embedded: Platform) -> None:
    before = embedded.audit.stats()["head_seq"]
    rows = embedded.session("rita").sql("SELECT id FROM app.people WHERE name = ?", ["3"]).to_pylist()
    assert rows == [{"id": 3}]
    new = [r for r in embedded.audit.query(actor="rita", limit=None) if r.seq > before]
    assert [(r.action, r.decision) for r in new] == [("query", "allow")]
