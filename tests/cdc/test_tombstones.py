"""A deleted source row leaves only its key in the replica: no values survive in the copy."""

from __future__ import annotations

import pyarrow as pa
import sqlglot

from headwater import Platform
from headwater.cdc.pipeline import CDCPipeline


def test_delete_tombstone_keeps_only_the_key(platform: Platform):
    session = platform.session("setup")
    session.write("app.people", pa.table({"id": [1, 2], "email": ["a@example.com", "b@example.com"]}), key="id")
    pipe = CDCPipeline(platform, source="app", target="warehouse", tables=["people"])
    try:
        pipe.sync()
        platform.store("app").delete_rows("people", sqlglot.parse_one("id = 1"))
        pipe.sync()
    finally:
        pipe.drop()
    rows = {r["id"]: r for r in session.sql("SELECT * FROM warehouse.people ORDER BY id").to_pylist()}
    assert rows[1]["_deleted"] is True and rows[1]["email"] is None
    assert rows[2]["_deleted"] is False and rows[2]["email"] == "b@example.com"
