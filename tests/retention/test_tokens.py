"""Tokens written by retention equal the ``tokenise`` mask, on the stores that compute it natively
(DuckDB, the lake, Snowflake) and on those where DuckDB computes it (SQLite, Postgres)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow as pa
import pytest
from sqlglot import exp

from headwater.catalog import CatalogColumn
from headwater.policy import PORTABLE
from headwater.policy._masks import mask_expression
from headwater.retention._engine import _Params, _tokens
from headwater.stores._sql import param
from headwater.stores.base import Store

KEY = "k" * 64


def test_tokens_from_every_store_match(any_store: Store) -> None:
    emails = [f"user{i}@example.com" for i in range(1, 6)]
    any_store.write("people", pa.table({"id": pa.array(range(1, 6), pa.int64()), "email": emails,
                                        "at": pa.array([dt.datetime(2024, 1, i) for i in range(1, 6)],
                                                       pa.timestamp("us"))}), key=["id"])
    column = CatalogColumn("email", "string")
    p = _Params([dt.datetime(2024, 1, 4)])
    value = mask_expression("tokenise", exp.column("email"), column, lambda _n: p.add(KEY))
    if "tokenise" not in PORTABLE[any_store.capabilities.dialect]:
        pytest.skip(f"{any_store.kind} has no native SHA-256 tokenise: retention computes tokens in "
                    "DuckDB (test_engine.py::test_tokens_equal_the_masking_policys_tokens)")
    result = any_store.update_rows("people", {"email": value}, exp.column("at") < param(0), p.values)
    assert result.rows_written == 3
    got = _read(any_store)
    expected = _tokens(emails[:3], column, KEY)
    assert [got[i] for i in (1, 2, 3)] == expected
    assert [got[i] for i in (4, 5)] == emails[3:]
    assert all(t.startswith("tok_") and len(t) == 28 for t in expected)


def _read(store: Store) -> dict[int, Any]:
    from tests.stores.test_store_suite import query, select_all

    return {r["id"] if "id" in r else r["ID"]: r.get("email", r.get("EMAIL"))
            for r in query(store, select_all(store, "people")).to_pylist()}
