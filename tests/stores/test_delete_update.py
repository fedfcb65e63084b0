"""``Store.delete_rows`` / ``Store.update_rows`` on every backend (``any_store``)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow as pa
import pytest
from sqlglot import exp

from headwater.errors import ColumnNotFound, DatasetNotFound, HeadwaterError, WriteError
from headwater.stores._sql import param
from headwater.stores.base import RowChange, Store
from tests.stores.test_store_suite import expected, people, read

col = exp.column


def test_delete_with_parameters_counts_and_removes(any_store: Store) -> None:
    any_store.write("people", people(list(range(1, 11))), key=["id"])
    where = exp.and_(col("id") > param(0), col("active").eq(param(1)))
    result = any_store.delete_rows("people", where, [4, True])
    assert result.mode is RowChange.DELETE
    assert result.rows_written == 3  # 6, 8, 10
    assert [r["id"] for r in read(any_store, "people")] == [1, 2, 3, 4, 5, 7, 9]


def test_delete_without_match_changes_nothing(any_store: Store) -> None:
    any_store.write("people", people([1, 2, 3]), key=["id"])
    assert any_store.delete_rows("people", col("id") > param(0), [100]).rows_written == 0
    assert read(any_store, "people") == expected(people([1, 2, 3]))


def test_delete_by_timestamp_cutoff(any_store: Store) -> None:
    any_store.write("people", people(list(range(1, 7))), key=["id"])
    cutoff = dt.datetime(2024, 5, 1, 12, 0, 3)  # ``updated`` is 12:00:<id>
    result = any_store.delete_rows("people", col("updated") < param(0), [cutoff])
    assert result.rows_written == 2
    assert [r["id"] for r in read(any_store, "people")] == [3, 4, 5, 6]


def test_delete_everything(any_store: Store) -> None:
    any_store.write("people", people([1, 2, 3]), key=["id"])
    assert any_store.delete_rows("people", exp.true()).rows_written == 3
    assert read(any_store, "people") == []
    any_store.write("people", people([4]))  # the table is still there and writable
    assert [r["id"] for r in read(any_store, "people")] == [4]


def test_update_sets_values_and_reads_columns(any_store: Store) -> None:
    any_store.write("people", people([1, 2, 3, 4]), key=["id"])
    result = any_store.update_rows(
        "people",
        {"NAME": param(0), "score": col("score") * 2},
        exp.column("id").isin(param(1), param(2)),
        ["anon", 2, 4],
    )
    assert result.mode is RowChange.UPDATE
    assert result.rows_written == 2
    got = {r["id"]: r for r in read(any_store, "people")}
    assert got[2]["name"] == got[4]["name"] == "anon"
    assert got[2]["score"] == 6.0 and got[4]["score"] == 12.0
    assert got[1]["name"] == "p1" and got[1]["score"] == 1.5
    assert got[3]["name"] == "p3"


def test_update_to_null(any_store: Store) -> None:
    any_store.write("people", people([1, 2]), key=["id"])
    result = any_store.update_rows("people", {"name": exp.null()}, col("id").eq(param(0)), [1])
    assert result.rows_written == 1
    assert [r["name"] for r in read(any_store, "people")] == [None, "p2"]


def test_null_predicate_rows_are_not_touched(any_store: Store) -> None:
    any_store.write("people", people([1, 2, 3]), key=["id"])
    any_store.update_rows("people", {"name": exp.null()}, col("id").eq(param(0)), [2])
    # ``name = 'p1'`` is NULL (not true) for row 2: only row 1 goes.
    assert any_store.delete_rows("people", col("name").eq(param(0)), ["p1"]).rows_written == 1
    assert [r["id"] for r in read(any_store, "people")] == [2, 3]


def test_unknown_column_is_a_typed_error_and_changes_nothing(any_store: Store) -> None:
    any_store.write("people", people([1, 2]), key=["id"])
    with pytest.raises(ColumnNotFound, match="nope"):
        any_store.delete_rows("people", col("nope").eq(param(0)), [1])
    with pytest.raises(ColumnNotFound, match="nope"):
        any_store.update_rows("people", {"nope": param(0)}, exp.true(), ["x"])
    with pytest.raises(ColumnNotFound, match="ghost"):
        any_store.update_rows("people", {"name": col("ghost")}, exp.true())
    with pytest.raises(WriteError):
        any_store.update_rows("people", {}, exp.true())
    with pytest.raises(WriteError, match="sqlglot"):
        any_store.delete_rows("people", "id = 1")  # type: ignore[arg-type]
    with pytest.raises(WriteError, match="sqlglot"):
        any_store.update_rows("people", {"name": "x"}, exp.true())  # type: ignore[dict-item]
    assert read(any_store, "people") == expected(people([1, 2]))


def test_unknown_table_is_dataset_not_found(any_store: Store) -> None:
    with pytest.raises(DatasetNotFound):
        any_store.delete_rows("missing", exp.true())
    with pytest.raises(DatasetNotFound):
        any_store.update_rows("missing", {"a": exp.null()}, exp.true())


def _fail_before_commit(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the next row change fail after the store has applied it but before it commits."""
    if store.kind == "parquet":
        def fail_manifest(table: str, manifest: dict[str, Any]) -> None:
            raise OSError("injected failure before the manifest swap")

        monkeypatch.setattr(store, "_write_manifest", fail_manifest)
        return

    def fail(cur: Any) -> int:
        raise RuntimeError("injected failure before commit")

    monkeypatch.setattr(store, "_affected", fail)


@pytest.mark.parametrize("op", ["delete", "update"])
def test_failure_before_commit_rolls_back(any_store: Store, op: str,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    any_store.write("people", people([1, 2, 3, 4]), key=["id"])
    any_store.write("people", people([5, 6]))
    with monkeypatch.context() as m:
        _fail_before_commit(any_store, m)
        with pytest.raises(HeadwaterError):
            if op == "delete":
                any_store.delete_rows("people", col("id") > param(0), [1])
            else:
                any_store.update_rows("people", {"name": param(0)}, exp.true(), ["x"])
    assert read(any_store, "people") == expected(people([1, 2, 3, 4, 5, 6]))
    assert any_store.delete_rows("people", col("id").eq(param(0)), [6]).rows_written == 1


def test_runtime_error_in_value_rolls_back(any_store: Store) -> None:
    """A value that fails for one matching row leaves every row as it was."""
    any_store.write("people", people([1, 2, 3]), key=["id"])
    if any_store.kind == "sqlite":
        pytest.skip("SQLite converts any text to a number without error")
    bad = exp.cast(exp.func("concat", col("name"), param(0)), "int")
    with pytest.raises(HeadwaterError):
        any_store.update_rows("people", {"score": bad}, exp.true(), ["x"])
    assert read(any_store, "people") == expected(people([1, 2, 3]))


# -- the lake rewrites only what it must -----------------------------------------------
@pytest.fixture
def lake(any_store: Store) -> Store:
    if any_store.kind != "parquet":
        pytest.skip("file rewriting is specific to the Parquet store")
    return any_store


def test_lake_rewrites_only_files_with_matching_rows(lake: Store) -> None:
    for ids in ([1, 2], [3, 4], [5, 6]):
        lake.write("people", people(ids))
    before = list(lake._read_manifest("people")["files"])  # type: ignore[attr-defined]
    result = lake.delete_rows("people", col("id").eq(param(0)), [3])
    after = list(lake._read_manifest("people")["files"])  # type: ignore[attr-defined]
    assert result.rows_written == 1 and result.details["files_rewritten"] == 1
    assert before[0] in after and before[2] in after and before[1] not in after
    assert len(after) == 3
    assert [r["id"] for r in read(lake, "people")] == [1, 2, 4, 5, 6]
    # the replaced file is gone from storage, the others are still there
    base = lake._dir("people")  # type: ignore[attr-defined]
    assert lake.fs.get_file_info(f"{base}/{before[1]}").type.name == "NotFound"  # type: ignore[attr-defined]
    lake.update_rows("people", {"name": param(0)}, exp.true(), ["z"])
    assert {r["name"] for r in read(lake, "people")} == {"z"}


def test_lake_update_with_a_value_of_the_wrong_type_changes_nothing(lake: Store) -> None:
    lake.write("people", people([1, 2]))
    with pytest.raises(WriteError, match="score"):
        lake.update_rows("people", {"score": param(0)}, exp.true(), ["not a number"])
    assert read(lake, "people") == expected(people([1, 2]))


def test_lake_refuses_datasets_without_manifest(lake: Store, tmp_path: Any) -> None:
    import pyarrow.parquet as pq

    base = lake._dir("foreign")  # type: ignore[attr-defined]
    lake.fs.create_dir(base, recursive=True)  # type: ignore[attr-defined]
    with lake.fs.open_output_stream(f"{base}/x.parquet") as f:  # type: ignore[attr-defined]
        pq.write_table(pa.table({"id": [1, 2]}), f)
    with pytest.raises(WriteError, match="manifest"):
        lake.delete_rows("foreign", col("id").eq(param(0)), [1])
