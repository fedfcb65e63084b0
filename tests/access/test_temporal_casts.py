"""``CAST(... AS DATE|TIMESTAMP)`` keeps its type on every store (SQLite answers text)."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa

from headwater import Platform

ROWS = [{"id": 1, "at": "2025-03-03 19:00:00"}, {"id": 2, "at": "2025-12-31 23:59:59"}, {"id": 3, "at": None}]


def test_date_and_timestamp_casts_are_typed(any_platform: Platform):
    s = any_platform.session("setup")
    s.write("app.events", pa.Table.from_pylist(ROWS), key="id")
    t = s.sql("SELECT id, CAST(at AS DATE) AS day, CAST(at AS TIMESTAMP) AS ts, at FROM app.events ORDER BY id").to_arrow()
    assert t.schema.field("day").type == pa.date32()
    assert pa.types.is_timestamp(t.schema.field("ts").type)
    assert t.column("day").to_pylist() == [dt.date(2025, 3, 3), dt.date(2025, 12, 31), None]
    assert t.column("ts").to_pylist()[0].replace(tzinfo=None) == dt.datetime(2025, 3, 3, 19, 0)
    assert pa.types.is_string(t.schema.field("at").type)  # no cast, no change


def test_ctas_from_sqlite_keeps_the_date_type(platform: Platform):
    s = platform.session("setup")
    s.write("app.events", pa.Table.from_pylist(ROWS), key="id")
    s.sql("CREATE TABLE warehouse.days AS SELECT id, CAST(at AS DATE) AS day FROM app.events").to_arrow()
    assert platform.catalog.get("warehouse.days").column("day").type.startswith("date")
    paged = list(s.read("warehouse.days", page_size=2))
    assert [r["day"] for p in paged for r in p.to_pylist()] == [dt.date(2025, 3, 3), dt.date(2025, 12, 31), None]
