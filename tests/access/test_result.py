"""``Result``: conversions, page iteration and streaming batches."""

from __future__ import annotations

import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

from headwater import InvalidInput, Result

STORES = ["app", "warehouse", "lake"]


@pytest.fixture
def numbers(platform):
    session = platform.session("alice")
    data = {"id": list(range(1, 26)), "label": [f"n{i}" for i in range(1, 26)],
            "half": [i / 2 for i in range(1, 26)]}
    for store in STORES:
        session.write(f"{store}.numbers", data, key="id")
    return session, data


@pytest.mark.parametrize("store", STORES)
def test_conversions(numbers, store):
    session, data = numbers
    q = f"SELECT id, label, half FROM {store}.numbers ORDER BY id"

    table = session.sql(q).to_arrow()
    assert isinstance(table, pa.Table)
    assert table.column_names == ["id", "label", "half"]
    assert table.column("id").to_pylist() == data["id"]
    assert pa.types.is_integer(table.schema.field("id").type)
    assert pa.types.is_floating(table.schema.field("half").type)

    df = session.sql(q).to_pandas()
    assert isinstance(df, pd.DataFrame)
    assert list(df.columns) == ["id", "label", "half"]
    assert df["label"].tolist() == data["label"]

    pf = session.sql(q).to_polars()
    assert isinstance(pf, pl.DataFrame)
    assert pf["half"].to_list() == data["half"]

    assert session.sql(q).to_pylist() == [
        {"id": i, "label": lab, "half": h} for i, lab, h in zip(data["id"], data["label"], data["half"], strict=True)
    ]


def test_result_metadata(numbers):
    session, _ = numbers
    res = session.sql("SELECT id, label FROM app.numbers WHERE id <= 3 ORDER BY id")
    assert isinstance(res, Result)
    assert res.columns == ["id", "label"]
    assert res.schema.names == ["id", "label"]
    assert res.next_cursor is None
    assert res.next_page() is None
    assert res.num_rows == 3
    assert "rows=3" in repr(res)
    # converting again after materialising is fine
    assert res.to_pylist() == res.to_pylist()


@pytest.mark.parametrize("store", STORES)
def test_iteration_over_pages(numbers, store):
    session, data = numbers
    first = session.read(f"{store}.numbers", order_by="id", page_size=10)
    pages = list(first)
    assert [p.num_rows for p in pages] == [10, 10, 5]
    assert pages[0] is first
    assert [r["id"] for p in pages for r in p.to_pylist()] == data["id"]
    assert all(p.columns == ["id", "label", "half"] for p in pages)
    assert pages[-1].next_cursor is None
    assert all(p.next_cursor for p in pages[:-1])


def test_iterating_unpaged_result_yields_itself(numbers):
    session, _ = numbers
    res = session.sql("SELECT id FROM app.numbers")
    assert [p for p in res] == [res]


@pytest.mark.parametrize("store", STORES)
def test_batches_stream_with_small_batch_size(platform, numbers, store):
    session, data = numbers
    platform.config.query.batch_size = 4
    res = session.sql(f"SELECT id, label FROM {store}.numbers ORDER BY id")
    batches = list(res.batches())
    assert all(isinstance(b, pa.RecordBatch) for b in batches)
    assert sum(b.num_rows for b in batches) == 25
    assert len(batches) >= 7
    assert max(b.num_rows for b in batches) <= 4
    assert [i for b in batches for i in b.column(0).to_pylist()] == data["id"]
    # a streaming result streams once
    with pytest.raises(InvalidInput, match="consumed"):
        list(res.batches())
    with pytest.raises(InvalidInput, match="consumed"):
        res.to_arrow()


def test_batches_federated_with_small_batch_size(platform, numbers):
    session, data = numbers
    platform.config.query.batch_size = 3
    res = session.sql(
        "SELECT a.id, w.half, l.label FROM app.numbers a JOIN warehouse.numbers w ON a.id = w.id "
        "JOIN lake.numbers l ON l.id = a.id ORDER BY a.id"
    )
    batches = list(res.batches())
    assert sum(b.num_rows for b in batches) == 25
    assert len(batches) > 1
    rows = pa.Table.from_batches(batches).to_pylist()
    assert [r["id"] for r in rows] == data["id"]
    assert [r["label"] for r in rows] == data["label"]


def test_batches_stream_lazily(platform, numbers):
    session, _ = numbers
    platform.config.query.batch_size = 5
    res = session.sql("SELECT id FROM app.numbers ORDER BY id")
    it = res.batches()
    first = next(it)
    assert first.column(0).to_pylist() == [1, 2, 3, 4, 5]
    res.close()  # releasing early is allowed


def test_batches_of_paged_result(numbers):
    session, _ = numbers
    page = session.read("app.numbers", order_by="id", page_size=10)
    assert sum(b.num_rows for b in page.batches()) == 10
    assert sum(b.num_rows for b in page.batches()) == 10  # a page is held, so it can be re-read


def test_empty_result_conversions(numbers):
    session, _ = numbers
    res = session.sql("SELECT id, label FROM warehouse.numbers WHERE id < 0")
    table = res.to_arrow()
    assert table.num_rows == 0
    assert table.column_names == ["id", "label"]
    assert res.to_pandas().empty
    assert res.to_polars().height == 0
    assert res.to_pylist() == []
