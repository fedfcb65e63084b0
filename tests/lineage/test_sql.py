"""SQL in lineage keeps no literal: every kind of literal, comment and unparsable text, per
dialect; extraction gaps quote SQL without values."""

from __future__ import annotations

import pytest

from headwater.lineage import column_lineage, scrub_sql
from headwater.lineage._sql import scrub_event, scrub_text, sql_dialect

SECRET = "123-45-6789"

CASES = [
    (f"SELECT * FROM t WHERE ssn = '{SECRET}'", None),
    (f"SELECT * FROM t WHERE ssn = '{SECRET}' -- {SECRET}", "duckdb"),
    (f"SELECT 1 /* {SECRET} */ FROM t", None),
    (f"SELECT $${SECRET}$$ FROM t", "postgres"),
    (f"SELECT $tag${SECRET}$tag$ FROM t", "postgres"),
    (f"SELECT E'x\\'{SECRET}' FROM t", "postgres"),
    (f"SELECT N'{SECRET}', x'{SECRET.replace('-', '')}' FROM t", "postgres"),
    (f'SELECT "{SECRET}" FROM t', "bigquery"),
    (f"SELECT r'{SECRET}' FROM t", "bigquery"),
    (f"SELECT * FROM t WHERE ssn = '{SECRET}", "postgres"),  # unterminated
    (f"SELEC broken ((( '{SECRET}' 123456789", None),  # does not parse
    (f"INSERT INTO t VALUES ('{SECRET}', 123456789)", "snowflake"),
    (f"SELECT * FROM t WHERE ssn = '{SECRET}'", "not-a-dialect"),
    (f"SELECT * FROM t WHERE ssn = '{SECRET}'", "MSSQL"),
    (f"SELECT * FROM t WHERE n = -123456789 AND d = DATE '2020-01-01' AND s = '{SECRET}'", "duckdb"),
]


@pytest.mark.parametrize(("sql", "dialect"), CASES)
def test_no_literal_survives(sql: str, dialect: str | None) -> None:
    out = scrub_sql(sql, dialect)
    for secret in (SECRET, "123456789", "2020-01-01", SECRET.replace("-", "")):
        assert secret not in out, out
    assert out.split()[0].upper() in {"SELECT", "SELEC", "INSERT"}  # the statement's shape stays


def test_statements_without_literals_are_kept_as_written() -> None:
    sql = "select a, b\nFROM app.orders o JOIN app.customers c ON o.cid = c.id"
    assert scrub_sql(sql, "duckdb") == sql
    assert scrub_sql("SELECT * FROM t WHERE a = ?", None) == "SELECT * FROM t WHERE a = ?"


def test_dialect_names_from_openlineage() -> None:
    assert sql_dialect("postgresql") == "postgres"
    assert sql_dialect("MSSQL") == "tsql"
    assert sql_dialect("nonsense") is None and sql_dialect(None) is None and sql_dialect(3) is None


def test_messages_lose_quoted_text_and_pii() -> None:
    msg = scrub_text(f"QueryError: duplicate key (ssn)=({SECRET}) for 'victim@example.com' and a@b.co")
    assert SECRET not in msg and "victim@example.com" not in msg and "a@b.co" not in msg
    assert msg.startswith("QueryError: duplicate key")
    assert scrub_text(None) == ""


def test_scrub_event_reaches_every_sql_bearing_facet() -> None:
    event = {
        "job": {"facets": {"sql": {"query": f"SELECT * FROM t WHERE ssn = '{SECRET}'", "dialect": "postgres"}}},
        "run": {"facets": {
            "extractionError": {"errors": [{"task": f"SELECT '{SECRET}'", "errorMessage": f"at '{SECRET}'",
                                            "stackTrace": f"line 1 '{SECRET}'"}]},
            "errorMessage": {"message": f"bad {SECRET}", "stackTrace": f"'{SECRET}'"},
        }},
    }
    assert SECRET not in repr(scrub_event(event))
    assert scrub_event({"job": "not a mapping", "run": None}) == {"job": "not a mapping", "run": None}


def test_extraction_gaps_quote_sql_without_values() -> None:
    sql = f"CREATE TABLE w.t AS SELECT * FROM read_csv('/etc/{SECRET}.csv') WHERE x = '{SECRET}'"
    result = column_lineage(sql, schema={})
    assert result.gaps and SECRET not in " ".join(result.gaps)
