"""Database spans never carry values: ``db.query.text`` is parameterised text only; policy
decision spans say allow/deny and denials are counted by reason."""

from __future__ import annotations

import pytest
import sqlglot
from hypothesis import given, settings
from hypothesis import strategies as st

from headwater import AccessDenied
from headwater.telemetry.otel import query_text

MARK = "zqv"
"""Every generated value starts with this, so finding it in the text means a value leaked."""

_texts = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="'\\\x00"), max_size=12).map(
    lambda t: MARK + t)
_ints = st.integers(min_value=10**6, max_value=10**15)


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


TEMPLATES = [
    "SELECT id FROM app.t WHERE name = {s} AND n = {i}",
    "SELECT id FROM app.t WHERE name IN ({s}, {s}) OR n BETWEEN {i} AND {i}",
    "SELECT id FROM app.t WHERE name LIKE {s} ORDER BY id LIMIT {i}",
    "SELECT CASE WHEN n > {i} THEN {s} ELSE {s} END AS c FROM app.t",
    "SELECT id FROM app.t WHERE name = (SELECT max(name) FROM app.u WHERE x = {s})",
    "SELECT id FROM app.t WHERE at > DATE {s} AND n <> -{i}",
    "SELECT concat(name, {s}) AS x, n + {i} AS y FROM app.t",
    "SELECT id FROM app.t WHERE j->>{s} = {s}",
    "SELECT id FROM app.t WHERE name = $${s_raw}$$",
    "SELECT id FROM app.t WHERE name = E{s}",
]


@settings(max_examples=60, deadline=None)
@given(template=st.sampled_from(TEMPLATES), s=_texts, i=_ints)
def test_no_literal_value_survives_in_query_text(template: str, s: str, i: int) -> None:
    sql = template.format(s=_sql_string(s), i=i, s_raw=s.replace("$", ""))
    text = query_text(sqlglot.parse_one(sql, dialect="duckdb"))
    assert MARK not in text and str(i) not in text, (sql, text)
    assert "?" in text


def test_session_spans_hold_parameterised_text_only(session, spans) -> None:
    session.write("app.people", [{"id": 1, "email": "zqv-secret@example.com", "n": 1234567}], key="id")
    spans.clear()
    session.sql("SELECT id FROM app.people WHERE email = 'zqv-secret@example.com' AND n = 1234567").to_arrow()
    session.sql("SELECT id FROM app.people WHERE email = ? AND n = ?", ["zqv-secret@example.com", 1234567]).to_arrow()
    session.write("app.people", [{"id": 2, "email": "zqv-other@example.com", "n": 7654321}], key="id")
    finished = spans.get_finished_spans()
    assert finished
    for span in finished:
        for value in (span.attributes or {}).values():
            assert "zqv" not in str(value) and "1234567" not in str(value), (span.name, value)
        for event in span.events:
            assert "zqv" not in str(event.attributes), span.name
    texts = [s.attributes["db.query.text"] for s in finished if "db.query.text" in (s.attributes or {})]
    assert texts == ["SELECT people.id AS id FROM app.people AS people WHERE people.email = ? AND people.n = ?"] * 2 \
        or all(t.count("?") == 2 for t in texts)


def test_policy_decision_spans_and_denials_by_reason(platform, spans, metric_points) -> None:
    session = platform.session("alice")
    session.write("app.t", [{"id": 1}], key="id")
    platform.policies.apply("version: 1\nroles: {r: {grants: [{datasets: 'app.*', actions: [select]}]}}\n"
                            "principals: {bob: {roles: [r]}}\n", source="p", applied_by="t")
    spans.clear()
    with pytest.raises(AccessDenied):
        platform.session("mallory").sql("SELECT id FROM app.t").to_arrow()
    platform.session("bob").sql("SELECT id FROM app.t").to_arrow()
    decided = [s for s in spans.get_finished_spans() if s.name == "headwater.policy.decide"]
    assert sorted(s.attributes["headwater.policy.decision"] for s in decided) == ["allow", "deny"]
    allow = next(s for s in decided if s.attributes["headwater.policy.decision"] == "allow")
    assert allow.attributes["headwater.principal"] == "bob"
    deny = next(s for s in decided if s.attributes["headwater.policy.decision"] == "deny")
    assert deny.attributes["headwater.policy.rule"] == "default-deny"
    assert deny.attributes["headwater.policy.action"] == "select"
    assert not deny.events  # the denial message is not recorded
    denials = metric_points("headwater.policy.denials")
    assert any(p.attributes.get("headwater.policy.denial.reason") == "default-deny" and p.value >= 1 for p in denials)
    spans.clear()
    with pytest.raises(AccessDenied):  # a write denial gets its decision span too (one)
        platform.session("bob").write("app.t", [{"id": 2}], key="id")
    (decided,) = [s for s in spans.get_finished_spans() if s.name == "headwater.policy.decide"]
    assert decided.attributes["headwater.policy.decision"] == "deny"
    assert decided.attributes["headwater.policy.action"] == "write"
    decisions = metric_points("headwater.policy.decisions")
    assert {p.attributes["headwater.policy.decision"] for p in decisions} >= {"allow", "deny"}
