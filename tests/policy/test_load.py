"""Policy documents: validation with line numbers, inheritance cycles, versions and diffs."""

from __future__ import annotations

import pickle

import pytest

from headwater.errors import PolicyError
from headwater.policy import load_policy
from tests.policy.conftest import POLICY


def _error(text: str) -> PolicyError:
    with pytest.raises(PolicyError) as info:
        load_policy(text, source="p.yaml")
    return info.value


def test_demo_policy_loads() -> None:
    p = load_policy(POLICY, source="policies.yaml")
    assert set(p.roles) == {"admin", "analyst", "support_eu"}
    assert p.roles["support_eu"].inherits == ("analyst",)
    assert p.principals["carol"].attributes["countries"][0] == "DE"
    assert p.masked_predicates == "deny"
    assert len(p.version) == 16


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("version: 2\n", 1, "version must be"),
        ("version: 1\nroles:\n  a:\n    grants: [{datasets: 'app.*', actions: [drop]}]\n", 4, "unknown action 'drop'"),
        ("version: 1\nroles:\n  a:\n    columns:\n      - {tag: pii.email, mask: blur}\n", 5, "unknown mask 'blur'"),
        ("version: 1\nroles:\n  a:\n    columns:\n      - {tag: pii.email}\n", 5, "exactly one of mask"),
        ("version: 1\nroles:\n  a:\n    colums: []\n", 4, "unknown key 'colums'"),
        ("version: 1\nroles:\n  a: {}\nprincipals:\n  bob: {roles: [a, b]}\n", 5, "unknown role 'b'"),
        ("version: 1\nroles:\n  a:\n    row_filters:\n      - {datasets: app.t, where: 'x IN ('}\n", 5, "does not parse"),
        ("version: 1\nroles:\n  a:\n    row_filters:\n\n      - datasets: app.t\n        where: x IN (SELECT 1)\n", 7, "no subqueries"),
        ("version: 1\nroles:\n  a:\n    row_filters:\n      - {datasets: app.t, where: \"other.x = 1\"}\n", 5, "principal.<attribute>"),
        ("version: 1\nroles:\n  a:\n    columns:\n      - {column: x, mask: {sql: \"read_text('/etc/passwd')\"}}\n", 5, "{col} placeholder"),
        ("version: 1\nroles:\n  a:\n    columns:\n      - {column: x, mask: {sql: \"{col} || read_text('/x')\"}}\n", 5, "read_text"),
        ("version: 1\nroles:\n  a:\n    grants: [{datasets: customers}]\n", 4, "<store>.<table>"),
        ("version: 1\nroles:\n  a: {max_rows: -1}\n", 3, "positive"),
        ("version: 1\nroles:\n  a: {}\n  a: {}\n", 4, "duplicate key"),
        ("version: 1\nroles: [a, b\n", 3, "not valid YAML"),
    ],
)
def test_invalid_documents_name_the_line(text: str, line: int, fragment: str) -> None:
    err = _error(text)
    assert err.line == line, str(err)
    assert str(err).startswith(f"p.yaml:{line}:")
    assert fragment in str(err)


def test_inheritance_cycle_is_rejected() -> None:
    text = "version: 1\nroles:\n  a: {inherits: [b]}\n  b: {inherits: [c]}\n  c: {inherits: [a]}\n"
    err = _error(text)
    assert "cycle" in str(err)
    assert "a -> b -> c -> a" in str(err)
    assert err.line in (3, 4, 5)


def test_unknown_parent_role() -> None:
    err = _error("version: 1\nroles:\n  a: {inherits: [nope]}\n")
    assert err.line == 3 and "unknown role 'nope'" in str(err)


def test_errors_pickle() -> None:
    err = _error("version: 3\n")
    again = pickle.loads(pickle.dumps(err))
    assert again.line == 1 and str(again) == str(err)


def test_version_tracks_meaning_not_formatting() -> None:
    a = load_policy(POLICY)
    b = load_policy(POLICY.replace("roles:\n", "# comment\nroles:\n"))
    assert a.version == b.version
    c = load_policy(POLICY.replace("max_rows: 10000", "max_rows: 500"))
    assert c.version != a.version


def test_diff_is_human_readable() -> None:
    old = load_policy(POLICY)
    new_text = (POLICY.replace("max_rows: 10000", "max_rows: 500")
                .replace("      - {tag: \"pii.phone\", mask: last4}\n", "      - {tag: \"pii.phone\", mask: redact}\n")
                + "  dave: {roles: [analyst]}\n")
    new = load_policy(new_text)
    lines = new.diff(old)
    assert old.diff(old) == []
    changes = old.diff(new)
    assert "~ role analyst: max_rows: 10000 -> 500" in changes
    assert any(line.startswith("+ principal dave added") for line in changes)
    assert any(line.startswith("- role analyst: columns:") and "last4" in line for line in changes)
    assert any(line.startswith("+ role analyst: columns:") and "redact" in line for line in changes)
    assert any(line.startswith("- principal dave removed") for line in lines)


def test_settings_and_defaults() -> None:
    p = load_policy("version: 1\nsettings: {masked_predicates: allow}\n"
                    "defaults:\n  columns: [{tag: 'pii.*', mask: redact}]\nroles: {}\n")
    assert p.masked_predicates == "allow"
    assert p.defaults[0].treatment == "redact"
    err = _error("version: 1\nsettings: {masked_predicates: maybe}\n")
    assert err.line == 2
