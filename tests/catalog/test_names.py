"""Dataset names: normalised to NFKC; names that could pass for another are refused at the
catalog's door (registration, sync) as at the SDK's (write)."""

from __future__ import annotations

import sqlite3

import pyarrow as pa
import pytest

from headwater import InvalidInput
from headwater.catalog import normalise_name
from headwater.stores.base import ColumnInfo, TableInfo


@pytest.mark.parametrize(("name", "expected"), [
    ("app.customers", "app.customers"),
    ("app.\uff43\uff55\uff53\uff54\uff4f\uff4d\uff45\uff52\uff53", "app.customers"),  # fullwidth
    ("app.caf\u00e9", "app.caf\u00e9"),
    ("app.cafe\u0301", "app.caf\u00e9"),  # combining accent composed
    ("app.\u043a\u043b\u0438\u0435\u043d\u0442\u044b", "app.\u043a\u043b\u0438\u0435\u043d\u0442\u044b"),  # Cyrillic
    ("app.\u9867\u5ba2\u30c6\u30fc\u30d6\u30eb", "app.\u9867\u5ba2\u30c6\u30fc\u30d6\u30eb"),  # Han + Katakana
    ("app.order items", "app.order items"),
    ("app.a\u00a0b", "app.a b"),  # a no-break space is a space
])
def test_names_are_normalised(name: str, expected: str) -> None:
    assert normalise_name(name) == expected


@pytest.mark.parametrize("name", [
    "app.t\u200b", "app.\u200dt", "app.t\ufeff", "app.a\u202eb", "app.a\u2066b", "app.a\u00adb",  # invisible
    "app.t ", " app.t", "app.t\u3000", "app.t\t", "app.a\nb", "app.a\u2028b",  # spaces, controls
    "app.\u0430pp", "app.p\u0430yments", "app.\u03bfrders", "app.x\u02bc",  # mixed scripts
    "", "a" * 600,
])
def test_confusable_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidInput):
        normalise_name(name)


def test_messages_show_invisible_characters_escaped() -> None:
    with pytest.raises(InvalidInput) as info:
        normalise_name("app.t\u200b")
    assert "\\u200b" in str(info.value) and "\u200b" not in str(info.value)


def test_register_refuses_names_that_are_not_plain(platform) -> None:
    info = TableInfo(name="t\u200b", columns=(ColumnInfo("id", pa.int64()),), location="x")
    with pytest.raises(InvalidInput):
        platform.catalog.register("app", info, kind="sqlite")
    info = TableInfo(name="\uff54", columns=(ColumnInfo("id", pa.int64()),), location="x")
    with pytest.raises(InvalidInput, match="NFKC"):
        platform.catalog.register("app", info, kind="sqlite")
    assert platform.catalog.list() == []


def test_sync_skips_confusable_tables_and_reports_them(platform) -> None:
    with sqlite3.connect(platform.config.resolve("app.db")) as con:
        con.execute("CREATE TABLE payments (id INTEGER)")
        con.execute('CREATE TABLE "p\u0430yments" (id INTEGER)')  # Cyrillic a
    report = platform.sync_catalog(["app"])
    assert report.added == ["app.payments"]
    assert list(report.errors) == ["'app.p\\u0430yments'"]
    assert [d.name for d in platform.catalog.list()] == ["app.payments"]
    # Looking a name up normalises it too.
    assert platform.catalog.get("app.\uff50\uff41\uff59\uff4d\uff45\uff4e\uff54\uff53").name == "app.payments"
