"""Erasure needs the ``erase`` grant on the subject's dataset: planning (it shows where the
subject's data is), running, resuming, verifying and reading a job; denials are audited and
change nothing. Through the SDK on the embedded stores and on Postgres, and through the CLI
(``--as`` and ``--token``). There is no HTTP erasure route yet (noted for the service issue)."""

from __future__ import annotations

import json

import pytest
from tests.erasure._seed import SUBJECT, seed
from typer.testing import CliRunner

from headwater import Platform
from headwater.cli import app
from headwater.erasure import ErasureEngine, JobStatus
from headwater.errors import AccessDenied
from headwater.principal import Principal

POLICY = """\
version: 1
roles:
  dpo:
    grants:
      - {datasets: "app.*", actions: [erase]}
  analyst:
    grants:
      - {datasets: "*", actions: [select]}
  warehouse_dpo:
    grants:
      - {datasets: "warehouse.*", actions: [erase]}
principals:
  dpo: {roles: [dpo]}
  bob: {roles: [analyst]}
  wendy: {roles: [warehouse_dpo]}
"""


def _subject_rows(platform: Platform) -> int:
    """Rows of customer 7 in the source, read by the platform itself (no policy applies)."""
    from sqlglot import exp

    store = platform.store("app")
    tree = (exp.select(exp.func("count", exp.Star())).from_(store.table_expr("customers"))
            .where(exp.column("id").eq(exp.Literal.number(7))))
    return int(store.execute(*store.render(tree)).read_all().column(0)[0].as_py())


def _denials(platform: Platform, who: str) -> list:
    return [r for r in platform.audit.query(action="erase", limit=None) if r.decision == "deny" and r.actor == who]


def test_erase_needs_the_grant_everywhere(seeded):
    platform, _ = seeded
    platform.apply_policy(POLICY, source=None, applied_by="admin")
    engine = ErasureEngine(platform)
    for call in (lambda: engine.plan(SUBJECT, actor="bob"), lambda: engine.run(SUBJECT, actor="bob"),
                 lambda: engine.run(SUBJECT, actor=Principal("mallory", roles=("analyst",))),
                 lambda: engine.run(SUBJECT, actor="wendy")):  # a grant on other datasets does not count
        with pytest.raises(AccessDenied):
            call()
    assert _subject_rows(platform) == 1  # nothing changed
    assert engine.list_jobs(actor="dpo") == []  # no job was even created
    denied = _denials(platform, "bob")
    assert len(denied) == 2 and {r.extra["operation"] for r in denied} == {"plan", "run"}
    assert all(list(r.datasets) == ["app.customers"] and "=7" not in json.dumps(r.to_dict()) for r in denied)
    assert _denials(platform, "mallory") and _denials(platform, "wendy")
    # the holder plans (row counts) and runs
    plan = engine.plan(SUBJECT, actor="dpo")
    assert {t.dataset: t.rows for t in plan.targets}["app.customers"] == 1
    report = engine.run(SUBJECT, actor="dpo")
    assert report.status is JobStatus.COMPLETED and report.actor == "dpo"
    assert _subject_rows(platform) == 0
    # the job's report, verify and resume are the holder's too
    for call in (lambda: engine.status(report.job_id, actor="bob"),
                 lambda: engine.verify(report.job_id, actor="bob"),
                 lambda: engine.run(actor="bob", resume=report.job_id)):
        with pytest.raises(AccessDenied):
            call()
    assert engine.status(report.job_id, actor="dpo").job_id == report.job_id
    assert engine.verify(report.job_id, actor="dpo").ok
    assert [r.job_id for r in engine.list_jobs(actor="dpo")] == [report.job_id]
    assert engine.list_jobs(actor="bob") == []


def test_open_platform_lets_anyone_erase(embedded):
    seed(embedded)
    assert embedded.policy_engine() is None  # no policy applied: the platform is open
    assert ErasureEngine(embedded).run(SUBJECT, actor="anyone").ok


def test_cli_erase_with_as_and_token(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HEADWATER_CONFIG", raising=False)
    with Platform.open() as p:
        seed(p)
        p.apply_policy(POLICY, source=None, applied_by="admin")
        token = p.create_api_key("dpo").token
        bob = p.create_api_key("bob").token
    runner = CliRunner()

    def cli(*args: str):
        return runner.invoke(app, list(args), env={"USER": "bob", "COLUMNS": "300"}, catch_exceptions=False)

    for args in (["--dry-run"], [], ["--as", "bob"], ["--token", bob]):
        res = cli("erase", "--subject", SUBJECT, *args)
        assert res.exit_code == 1 and "AccessDenied" in res.stderr, (args, res.output)
        assert "Traceback" not in res.output
    res = cli("erase", "--subject", SUBJECT, "--token", "hw_nope.nope")
    assert res.exit_code == 1 and "Authentication" in res.stderr
    res = cli("erase", "--subject", SUBJECT, "--dry-run", "--as", "dpo", "--json")
    assert res.exit_code == 0, res.output
    res = cli("erase", "--subject", SUBJECT, "--token", token, "--json")
    assert res.exit_code == 0, res.output
    job = json.loads(res.stdout)
    assert job["status"] == "completed" and job["actor"] == "dpo"
    res = cli("erase", "status", job["job_id"])  # as $USER (bob)
    assert res.exit_code == 1 and "AccessDenied" in res.stderr
    res = cli("erase", "verify", job["job_id"], "--token", token)
    assert res.exit_code == 0 and "completed" in res.stdout
    res = cli("erase", "ls")
    assert res.exit_code == 0 and job["job_id"][:12] not in res.stdout
    res = cli("erase", "ls", "--as", "dpo")
    assert res.exit_code == 0 and job["job_id"][:12] in res.stdout
    with Platform.open() as p:
        assert _subject_rows(p) == 0
        assert {r.extra.get("operation") for r in _denials(p, "bob")} >= {"plan", "run", "status"}
