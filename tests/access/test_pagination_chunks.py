"""Large pages on DuckDB are fetched as keyset chunks; the result is the same page."""

from __future__ import annotations

import pyarrow as pa

from headwater.access import session as session_mod


def test_large_pages_are_chunked_but_identical(session, monkeypatch) -> None:
    n = 25_000
    session.write("warehouse.big", pa.table({"k": list(range(n, 0, -1)), "v": [i % 7 for i in range(n)]}), key="k")
    session.platform.catalog.update("warehouse.big", primary_key=["k"])
    calls = []
    real = session_mod.Session._execute

    def counting(self, *args, **kwargs):  # noqa: ANN001, ANN202
        calls.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(session_mod.Session, "_execute", counting)
    pages = list(session.sql("SELECT k, v FROM warehouse.big", page_size=9_000))
    assert [p.num_rows for p in pages] == [9_000, 9_000, 7_000]
    keys = [r["k"] for p in pages for r in p.to_pylist()]
    assert keys == list(range(1, n + 1))
    assert len(calls) >= 6  # each 9,001-row fetch took several chunks


def test_declared_key_survives_sync(platform, session) -> None:
    session.write("warehouse.nokey", {"a": [1, 2], "b": ["x", "y"]})
    assert platform.catalog.get("warehouse.nokey").primary_key == ()
    platform.catalog.update("warehouse.nokey", primary_key=["A"])
    platform.sync_catalog()
    assert platform.catalog.get("warehouse.nokey").primary_key == ("a",)


def test_chunks_under_a_non_unique_order_keep_every_duplicate(session, monkeypatch) -> None:
    """No key: the order extends to every column and ties are identical rows. Runs of them
    cross chunk boundaries (chunks of 3) and one run is longer than a chunk and than a page."""
    monkeypatch.setattr(session_mod, "_DUCKDB_TOPN_ROWS", 3)
    runs = {0: 1, 1: 2, 2: 4, 3: 3, 4: 11, 5: 1, 6: 5}
    rows = [{"g": g, "v": "x"} for g, count in runs.items() for _ in range(count)]
    session.write("warehouse.dups", pa.Table.from_pylist(rows[::-1]))
    pages = list(session.sql("SELECT g, v FROM warehouse.dups ORDER BY g", page_size=7))
    assert [p.num_rows for p in pages] == [7, 7, 7, 6]
    assert [r["g"] for p in pages for r in p.to_pylist()] == [r["g"] for r in rows]
