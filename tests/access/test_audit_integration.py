"""Every call leaves an audit record before it returns; the chain detects tampering."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from headwater import AccessDenied, AuthenticationError
from headwater.cli import app


@pytest.fixture()
def audited(platform, session):
    session.write("app.people", [{"id": 1, "email": "a@x.org", "country": "DE"},
                                 {"id": 2, "email": "b@y.org", "country": "US"}], key="id")
    platform.catalog.set_tags("app.people", "email", ["pii.email"])
    platform.apply_policy("""
version: 1
roles:
  admin: {grants: [{datasets: "*", actions: [select, insert]}]}
  analyst:
    grants: [{datasets: "app.*", actions: [select]}]
    columns: [{tag: pii.email, mask: redact}]
    row_filters: [{datasets: app.people, where: "country IN principal.countries"}]
principals:
  alice: {roles: [admin]}
  bob: {roles: [analyst], attributes: {countries: [DE]}}
""", source="p.yaml", applied_by="ops")
    return platform


def test_queries_writes_denials_and_changes_are_recorded(audited) -> None:
    bob = audited.session("bob")
    assert bob.sql("SELECT id, email FROM app.people WHERE id > 0").to_pylist() == [{"id": 1, "email": "****"}]
    with pytest.raises(AccessDenied):
        bob.sql("SELECT id FROM app.people WHERE email = 'a@x.org'")
    with pytest.raises(AccessDenied):
        bob.write("app.people", [{"id": 3, "country": "DE"}])
    audited.session("alice").write("app.people", [{"id": 3, "email": "c@z.org", "country": "FR"}])
    key = audited.create_api_key("bob", actor="ops")
    audited.session(token=key.token)
    with pytest.raises(AuthenticationError):
        audited.session(token=key.token + "x")
    audited.revoke_api_key(key.key_id, actor="ops")

    records = audited.audit.query(limit=1000)
    by_action: dict[str, list] = {}
    for r in records:
        by_action.setdefault(r.action, []).append(r)
    assert {"write", "policy_change", "query", "deny", "credential_change", "authenticate"} <= set(by_action)
    query = next(r for r in by_action["query"] if r.actor == "bob")
    assert query.datasets == ("app.people",)
    assert "app.people.email" in query.columns
    assert query.masks == {"app.people.email": "redact"}
    assert query.row_filters and "country" in query.row_filters[0]
    assert query.rows == 1 or query.rows is None
    assert "0" not in (query.statement or "").replace("00", "")  # literals removed
    denials = [r for r in by_action["deny"] if r.actor == "bob"]
    assert len(denials) == 2 and all(r.decision == "deny" and r.reason for r in denials)
    assert "a@x.org" not in " ".join(str(r.statement) + str(r.reason) for r in records)
    auth = by_action["authenticate"]
    assert [r.decision for r in auth] == ["allow", "deny"]
    assert key.secret not in repr(records)
    assert audited.audit.verify().ok


def test_audit_log_cannot_be_changed_through_the_sdk(audited) -> None:
    log = audited.audit
    assert not any(hasattr(log, name) for name in ("update", "delete", "edit", "remove"))
    with pytest.raises(Exception):  # noqa: B017 - the audit tables are not datasets
        audited.session("alice").sql("SELECT * FROM app.hw_audit_records").to_arrow()


def test_cli_verify_finds_the_first_tampered_record(audited) -> None:
    audited.session("alice").sql("SELECT count(*) FROM app.people").to_arrow()
    cfg = audited.dir / "headwater.yaml"
    cfg.write_text(f"platform_dir: {audited.dir}\n")
    env = {"HEADWATER_CONFIG": str(cfg)}
    ok = CliRunner().invoke(app, ["audit", "verify"], env=env)
    assert ok.exit_code == 0 and "intact" in ok.stdout
    listing = CliRunner().invoke(app, ["audit", "ls", "--actor", "alice", "-f", "json"], env=env)
    assert listing.exit_code == 0 and '"action": "query"' in listing.stdout
    with audited.meta.engine.begin() as conn:
        seq = conn.execute(sa.text("SELECT min(seq) FROM hw_audit_records WHERE action = 'query'")).scalar()
        cols = [c["name"] for c in sa.inspect(conn).get_columns("hw_audit_records")]
        body = "record" if "record" in cols else next(c for c in cols if c not in ("seq", "hash"))
        conn.execute(sa.text(f"UPDATE hw_audit_records SET {body} = replace({body}, 'people', 'peop1e') "
                             "WHERE seq = :s"), {"s": seq})
    broken = CliRunner().invoke(app, ["audit", "verify"], env=env)
    assert broken.exit_code == 2
    assert f"record {seq}" in broken.stderr
