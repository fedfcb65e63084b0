"""The retention file: durations, rule checks, and errors that name the line."""

from __future__ import annotations

import datetime as dt

import pytest

from headwater.errors import PolicyError
from headwater.retention import load_retention, parse_duration, read_retention_file

GOOD = """\
version: 1
defaults:
  archive: lake
rules:
  - dataset: app.orders
    by: ordered_at
    keep: 365d
  - tag: "pii.*"
    datasets: "app.*"
    tokenise_after: 30d
  - dataset: "warehouse.*"
    columns: [note]
    null_after: 2w
platform:
  dead_letters: 30d
  bus_log: 12h
  audit: 365d
"""


def test_a_full_file_loads() -> None:
    pol = load_retention(GOOD, source="retention.yaml")
    assert pol.defaults.archive == "lake"
    orders, pii, notes = pol.rules
    assert orders.keep == dt.timedelta(days=365) and orders.by == "ordered_at" and orders.pattern == "app.orders"
    assert pii.column_action == ("tokenise", dt.timedelta(days=30)) and pii.pattern == "app.*"
    assert notes.column_action == ("null", dt.timedelta(weeks=2))
    assert pol.platform.bus_log == dt.timedelta(hours=12)
    assert [pol.rule_line(i) for i in range(3)] == [5, 8, 11]


@pytest.mark.parametrize("text, value", [("90d", dt.timedelta(days=90)), ("12h", dt.timedelta(hours=12)),
                                         ("2w", dt.timedelta(weeks=2)), ("30", dt.timedelta(days=30)),
                                         ("15m", dt.timedelta(minutes=15)), (" 7 d ", dt.timedelta(days=7))])
def test_durations(text: str, value: dt.timedelta) -> None:
    assert parse_duration(text) == value


@pytest.mark.parametrize("text", ["", "0d", "-1d", "3x", "d", "1.5d", "ninety days"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


BAD = [
    # (document, line, words in the message)
    ("version: 1\nrules:\n  - dataset: a\n    keep: 9x\n", 4, "rules[0].keep"),
    ("version: 1\nrules:\n  - dataset: a\n    keep: 1d\n  - dataset: b\n    kepe: 1d\n", 6, "unknown key"),
    ("version: 1\nrules:\n  - dataset: a\n    keep: 1d\n\n  - dataset: b\n    by: t\n", 6,
     "needs keep, null_after or tokenise_after"),
    ("version: 1\nrules:\n  - keep: 1d\n", 3, "needs dataset"),
    ("version: 1\nrules:\n  - dataset: a\n    null_after: 1d\n", 3, "columns or a tag"),
    ("version: 1\nrules:\n  - tag: x\n    null_after: 3d\n    tokenise_after: 4d\n", 3, "exclude each other"),
    ("version: 2\n", 1, "version"),
    ("version: 1\nplatform:\n  audit: 12h\n", 3, "whole number of days"),
    ("version: 1\nplatform:\n  dead_letter: 3d\n", 3, "unknown key"),
    ("version: 1\nrules: [\n", 3, "not valid YAML"),
    ("version: 1\nrules:\n  - dataset: a\n    keep: 1d\n    keep: 2d\n", 5, "duplicate key"),
    ("- a\n- b\n", 1, "mapping"),
    ("", 1, "empty"),
    ("version: 1\nrules: {dataset: a}\n", 2, "rules"),
]


@pytest.mark.parametrize("text, line, words", BAD)
def test_errors_name_the_line(text: str, line: int, words: str) -> None:
    with pytest.raises(PolicyError) as info:
        load_retention(text, source="r.yaml")
    err = info.value
    assert str(err).startswith(f"r.yaml:{line}:"), str(err)
    assert err.line == line  # type: ignore[attr-defined]
    assert words in str(err)


def test_missing_and_unreadable_files(tmp_path) -> None:
    with pytest.raises(PolicyError, match="no retention file"):
        read_retention_file(tmp_path / "nope.yaml")
    bad = tmp_path / "bin.yaml"
    bad.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(PolicyError, match="cannot read"):
        read_retention_file(bad)
