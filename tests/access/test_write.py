"""``Session.write``: append, upsert and overwrite on each embedded store, every input shape,
typed errors that leave the table unchanged."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

from headwater import DatasetNotFound, InvalidInput, WriteError, WriteMode

STORES = ["app", "warehouse", "lake"]


def rows(session, dataset, order="id"):
    return session.sql(f"SELECT * FROM {dataset} ORDER BY {order}").to_pylist()


def as_list_of_dicts(data):
    return [dict(zip(data, vals, strict=True)) for vals in zip(*data.values(), strict=True)]


INPUTS = {
    "list_of_dicts": as_list_of_dicts,
    "dict_of_lists": lambda d: dict(d),
    "pandas": lambda d: pd.DataFrame(d),
    "polars": lambda d: pl.DataFrame(d),
    "arrow": lambda d: pa.table(d),
    "record_batch": lambda d: pa.RecordBatch.from_pydict(d),
}


@pytest.fixture(params=STORES)
def store(request):
    return request.param


@pytest.mark.parametrize("shape", list(INPUTS))
def test_append_creates_then_appends(session, platform, store, shape):
    convert = INPUTS[shape]
    ds = f"{store}.people"
    first = {"id": [1, 2], "name": ["Ann", "Bob"], "score": [1.5, 2.5]}
    res = session.write(ds, convert(first), key="id")
    assert res.created is True
    assert res.rows_written == 2
    assert res.mode is WriteMode.APPEND
    res = session.write(ds, convert({"id": [3], "name": ["Cy"], "score": [None]}))
    assert res.created is False
    assert res.rows_written == 1
    assert rows(session, ds) == [
        {"id": 1, "name": "Ann", "score": 1.5},
        {"id": 2, "name": "Bob", "score": 2.5},
        {"id": 3, "name": "Cy", "score": None},
    ]
    cat = platform.catalog.get(ds)
    assert cat.column_names == ["id", "name", "score"]
    assert cat.primary_key == ("id",)
    assert cat.owner == "alice"


@pytest.mark.parametrize("shape", list(INPUTS))
def test_upsert_replaces_by_key_and_adds(session, store, shape):
    convert = INPUTS[shape]
    ds = f"{store}.people"
    session.write(ds, {"id": [1, 2, 3], "name": ["Ann", "Bob", "Cy"], "score": [1.0, 2.0, 3.0]}, key="id")
    res = session.write(
        ds, convert({"id": [2, 4, 2], "name": ["Bobby", "Di", "Robert"], "score": [20.0, 4.0, 22.0]}),
        mode="upsert",
    )
    assert res.mode is WriteMode.UPSERT
    assert rows(session, ds) == [
        {"id": 1, "name": "Ann", "score": 1.0},
        {"id": 2, "name": "Robert", "score": 22.0},  # last row per key wins
        {"id": 3, "name": "Cy", "score": 3.0},
        {"id": 4, "name": "Di", "score": 4.0},
    ]


@pytest.mark.parametrize("shape", list(INPUTS))
def test_overwrite_replaces_all_rows(session, store, shape):
    convert = INPUTS[shape]
    ds = f"{store}.people"
    session.write(ds, {"id": [1, 2, 3], "name": ["Ann", "Bob", "Cy"], "score": [1.0, 2.0, 3.0]}, key="id")
    res = session.write(ds, convert({"id": [7, 8], "name": ["G", "H"], "score": [7.0, 8.0]}),
                        mode=WriteMode.OVERWRITE)
    assert res.rows_written == 2
    assert rows(session, ds) == [
        {"id": 7, "name": "G", "score": 7.0},
        {"id": 8, "name": "H", "score": 8.0},
    ]


def test_upsert_with_explicit_key(session, store):
    ds = f"{store}.kv"
    session.write(ds, [{"k": "a", "v": 1}, {"k": "b", "v": 2}])
    session.write(ds, [{"k": "b", "v": 20}, {"k": "c", "v": 3}], mode="upsert", key=["k"])
    assert rows(session, ds, "k") == [{"k": "a", "v": 1}, {"k": "b", "v": 20}, {"k": "c", "v": 3}]


def test_upsert_with_composite_key(session, store):
    ds = f"{store}.scores"
    session.write(ds, {"a": [1, 1, 2], "b": ["x", "y", "x"], "v": [1, 2, 3]}, key=["a", "b"])
    session.write(ds, {"a": [1, 2], "b": ["y", "y"], "v": [20, 4]}, mode="upsert")
    assert rows(session, ds, "a, b") == [
        {"a": 1, "b": "x", "v": 1}, {"a": 1, "b": "y", "v": 20},
        {"a": 2, "b": "x", "v": 3}, {"a": 2, "b": "y", "v": 4},
    ]


def test_write_casts_compatible_types_and_fills_missing_columns(session, store):
    ds = f"{store}.people"
    session.write(ds, {"id": [1], "name": ["Ann"], "score": [1.5]}, key="id")
    # int32 ids and int scores convert safely; a missing nullable column becomes NULL
    session.write(ds, pa.table({"id": pa.array([2], pa.int32()), "score": pa.array([3], pa.int64())}))
    # column names match case-insensitively
    session.write(ds, [{"ID": 3, "Name": "Cy", "SCORE": 0.25}])
    assert rows(session, ds) == [
        {"id": 1, "name": "Ann", "score": 1.5},
        {"id": 2, "name": None, "score": 3.0},
        {"id": 3, "name": "Cy", "score": 0.25},
    ]


def test_write_dates_and_timestamps_round_trip(session, store):
    ds = f"{store}.times"
    when = dt.datetime(2024, 5, 17, 12, 30, 15, 123000)
    session.write(ds, [{"id": 1, "day": dt.date(2024, 5, 17), "at": when, "ok": True}], key="id")
    got = rows(session, ds)
    assert got == [{"id": 1, "day": dt.date(2024, 5, 17), "at": when, "ok": True}]


# -- errors -----------------------------------------------------------------------------------
BAD_WRITES = {
    "string_into_int": ({"id": ["not-a-number"], "name": ["x"], "score": [1.0]}, {}),
    "float_into_int_lossy": ({"id": [1.5], "name": ["x"], "score": [1.0]}, {}),
    "unknown_column": ({"id": [9], "name": ["x"], "score": [1.0], "nope": [1]}, {}),
    "string_into_float": ({"id": [9], "name": ["x"], "score": ["high"]}, {}),
    "null_upsert_key": ({"id": [None, 9], "name": ["x", "y"], "score": [1.0, 2.0]}, {"mode": "upsert"}),
    "upsert_unknown_key": ({"id": [9], "name": ["x"], "score": [1.0]}, {"mode": "upsert", "key": "nope"}),
    "mixed_types_in_rows": ([{"id": 9, "name": "x"}, {"id": "ten", "name": "y"}], {}),
    "rows_not_dicts": ([(9, "x", 1.0)], {}),
    "unsupported_object": (object(), {}),
    "string_data": ("id,name\n1,x", {}),
    "no_columns": ([], {}),
}


@pytest.mark.parametrize("case", list(BAD_WRITES))
def test_bad_write_is_write_error_and_table_unchanged(session, store, case):
    ds = f"{store}.people"
    initial = {"id": [1, 2], "name": ["Ann", "Bob"], "score": [1.0, 2.0]}
    session.write(ds, initial, key="id")
    before = rows(session, ds)
    data, kwargs = BAD_WRITES[case]
    for mode in ([kwargs["mode"]] if "mode" in kwargs else ["append", "upsert", "overwrite"]):
        kw = {**kwargs, "mode": mode}
        with pytest.raises(WriteError) as info:
            session.write(ds, data, **kw)
        assert isinstance(info.value, InvalidInput)
        assert rows(session, ds) == before, (case, mode)


@pytest.mark.parametrize("store_name", ["app", "warehouse"])
def test_duplicate_primary_key_rejects_whole_append(session, store_name):
    ds = f"{store_name}.people"
    session.write(ds, {"id": [1, 2], "name": ["Ann", "Bob"], "score": [1.0, 2.0]}, key="id")
    with pytest.raises(WriteError):
        session.write(ds, {"id": [3, 4, 1], "name": ["C", "D", "dup"], "score": [3.0, 4.0, 9.0]})
    assert [r["id"] for r in rows(session, ds)] == [1, 2]


@pytest.mark.parametrize("store_name", ["app", "warehouse"])  # lake columns are all nullable
def test_not_null_column_required(session, store_name):
    ds = f"{store_name}.people"
    session.write(ds, {"id": [1], "name": ["Ann"]}, key="id")
    with pytest.raises(WriteError, match="id"):
        session.write(ds, {"name": ["no id"]})
    with pytest.raises(WriteError):
        session.write(ds, {"id": [None], "name": ["null id"]})
    assert rows(session, ds) == [{"id": 1, "name": "Ann"}]


def test_write_error_message_does_not_quote_values(session, store):
    ds = f"{store}.people"
    session.write(ds, {"id": [1], "name": ["Ann"]}, key="id")
    with pytest.raises(WriteError) as info:
        session.write(ds, {"id": ["SECRET-VALUE-123"], "name": ["x"]})
    assert "SECRET-VALUE-123" not in str(info.value)
    assert info.value.__cause__ is None


def test_upsert_without_key_on_table_without_primary_key(session, store):
    ds = f"{store}.nokey"
    session.write(ds, {"a": [1], "b": ["x"]})
    with pytest.raises(WriteError, match="key"):
        session.write(ds, {"a": [1], "b": ["y"]}, mode="upsert")
    assert rows(session, ds, "a") == [{"a": 1, "b": "x"}]


def test_invalid_mode_and_names(session):
    with pytest.raises(InvalidInput, match="mode"):
        session.write("app.people", [{"id": 1}], mode="merge")
    with pytest.raises(InvalidInput):
        session.write("people", [{"id": 1}])
    with pytest.raises(InvalidInput):
        session.write("app.a.b", [{"id": 1}])
    with pytest.raises(DatasetNotFound):
        session.write("nostore.people", [{"id": 1}])


def test_written_dataset_is_queryable_immediately_and_federates(session):
    session.write("app.a", {"id": [1, 2, 3], "x": ["p", "q", "r"]}, key="id")
    session.write("warehouse.b", {"id": [2, 3, 4], "y": [20, 30, 40]}, key="id")
    session.write("lake.c", {"id": [3, 4], "z": [True, False]})
    got = session.sql(
        "SELECT a.x, b.y, c.z FROM app.a a JOIN warehouse.b b ON a.id = b.id JOIN lake.c c ON c.id = a.id"
    ).to_pylist()
    assert got == [{"x": "r", "y": 30, "z": True}]


@pytest.mark.parametrize("store_name", ["app", "warehouse", "lake"])
def test_create_from_zero_rows(session, store_name):
    ds = f"{store_name}.empty"
    res = session.write(ds, pa.table({"id": pa.array([], pa.int64()), "x": pa.array([], pa.string())}))
    assert res.created is True
    assert res.rows_written == 0
    assert session.sql(f"SELECT * FROM {ds}").to_pylist() == []
    session.write(ds, [{"id": 1, "x": "a"}])
    assert rows(session, ds) == [{"id": 1, "x": "a"}]


def test_overwrite_with_zero_rows_empties_table(session, store):
    ds = f"{store}.people"
    session.write(ds, {"id": [1, 2], "name": ["Ann", "Bob"]}, key="id")
    session.write(ds, pa.table({"id": pa.array([], pa.int64()), "name": pa.array([], pa.string())}),
                  mode="overwrite")
    assert rows(session, ds) == []
    session.write(ds, [{"id": 3, "name": "Cy"}])
    assert rows(session, ds) == [{"id": 3, "name": "Cy"}]
