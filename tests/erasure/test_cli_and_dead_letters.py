"""``headwater erase`` end to end, and which dead letters count as carrying the subject."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from tests.erasure._seed import SUBJECT, count, seed
from typer.testing import CliRunner

from headwater import Platform
from headwater.cli import app
from headwater.erasure._deadletters import match_dead_letters, subject_fields
from headwater.events.dlq import DeadLetterStore
from headwater.events.envelope import Event
from headwater.retention.holds import LegalHolds, Subject


@pytest.fixture
def cli(tmp_path, monkeypatch):
    """Invoke the CLI on the embedded platform in ``tmp_path/.headwater`` (seeded)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HEADWATER_CONFIG", raising=False)
    with Platform.open() as p:
        seed(p)
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, list(args), env={"USER": "dpo", "COLUMNS": "300"}, catch_exceptions=False)

    return invoke


def test_cli_dry_run_run_status_and_ls(cli):
    res = cli("erase", "--subject", SUBJECT, "--dry-run", "--json")
    assert res.exit_code == 0, res.output
    plan = json.loads(res.stdout)
    assert plan["subject"] == "app.customers.id=7"
    assert {t["dataset"]: t["rows"] for t in plan["targets"] if t["addressable"]}["lake.customer_export"] == 1
    res = cli("erase", "--subject", SUBJECT, "--dry-run")
    assert res.exit_code == 0 and "warehouse.by_country" in res.stdout and "not subject-addressable" in res.stdout
    res = cli("erase", "--subject", SUBJECT, "--json")
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["status"] == "completed" and report["actor"] == "dpo"
    res = cli("erase", "status", report["job_id"])
    assert res.exit_code == 0 and "completed" in res.stdout and "verified" in res.stdout
    res = cli("erase", "status", report["job_id"], "--json")
    assert json.loads(res.stdout)["job_id"] == report["job_id"]
    res = cli("erase", "ls")
    assert res.exit_code == 0 and report["job_id"][:8] in res.stdout
    res = cli("erase", "--subject", "customers.id=8", "--anonymise")
    assert res.exit_code == 0, res.output
    assert "anonymise" in res.stdout and "completed" in res.stdout
    with Platform.open() as p:
        assert count(p, "app.customers", "id IN (7, 8)") == 0
        assert count(p, "app.customers") == 19  # 7 deleted, 8 anonymised


def test_cli_errors_and_refusal(cli):
    res = cli("erase", "--subject", "customers")
    assert res.exit_code == 1 and "InvalidInput" in res.stderr
    res = cli("erase", "status", "erase_missing")
    assert res.exit_code == 1 and "NotFound" in res.stderr
    with Platform.open() as p:
        hold = LegalHolds(p).place(dataset="lake.*", reason="audit", actor="legal")
    res = cli("erase", "--subject", SUBJECT)
    assert res.exit_code == 1 and "LegalHoldActive" in res.stderr
    job_id = next(w for w in res.stderr.split() if w.startswith("erase_"))
    with Platform.open() as p:
        assert count(p, "app.customers", "id = 7") == 1
        LegalHolds(p).release(hold.id, actor="legal")
    res = cli("erase", "--resume", job_id, "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["status"] == "completed" and json.loads(res.stdout)["job_id"] == job_id
    res = cli("erase", "verify", job_id)
    assert res.exit_code == 0 and "completed" in res.stdout
    with Platform.open() as p:
        assert count(p, "app.customers", "id = 7") == 0


# -- dead letters ----------------------------------------------------------------------
@pytest.fixture
def dlq(tmp_path):
    from headwater import Config

    with Platform.open(Config.embedded(tmp_path / "hw")) as p:
        yield p.meta.engine, DeadLetterStore.for_platform(p)


def _add(store: DeadLetterStore, raw: bytes, topic: str, offset: int, key: str | None = None) -> int:
    return store.add(raw, stage="sink", error=("WriteError", "no"), attempts=1, consumer_group="g",
                     topic=topic, partition=0, offset=offset, key=key).id


def test_dead_letter_matching(dlq):
    engine, store = dlq
    subj = Subject("app.customers", "id", "123")
    ev = lambda data, **kw: Event(type=kw.pop("type", "x.changed"), source=kw.pop("source", "/x"),  # noqa: E731
                                  data=data, **kw).to_json()
    hits = {
        _add(store, ev({"customer_id": 123}), "orders", 1),
        _add(store, ev({"after": {"id": 123}}), "cdc.app.public.customers", 2),
        _add(store, ev({"id": "123"}, type="customer.updated"), "events", 3),
        _add(store, ev({"items": [{"cust_ref": 123}]}), "orders", 4),  # a lineage-derived name
        _add(store, ev({"note": "x"}, subject="123"), "customers", 5),
        _add(store, ev({"customer_id": 123.0}), "orders", 6),
        _add(store, ev(json.dumps({"customer_id": 123})), "orders", 14),  # JSON carried as text
    }
    misses = {
        _add(store, ev({"id": 123}), "orders", 7),  # an order's own id
        _add(store, ev({"customer_id": 1234}), "orders", 8),
        _add(store, ev({"customer_id": True}), "orders", 9),
        _add(store, ev({"note": "customer 123"}), "customers", 10),
        _add(store, ev({"note": "x"}, subject="123"), "orders", 11),  # key of another table
    }
    _add(store, b"\x00\xffbinary", "customers", 12)
    _add(store, b"{not json", "customers", 13)
    match = match_dead_letters(engine, subj, derived=["cust_ref"])
    assert set(match.ids) == hits and not (set(match.ids) & misses)
    assert match.unparseable == 2
    specific, generic = subject_fields(subj, ["cust_ref", "id"])
    assert {"customer_id", "cust_ref"} <= specific and generic == {"id"}


def test_dead_letter_deletion_is_scoped(dlq):
    engine, store = dlq
    from headwater.erasure._deadletters import delete_dead_letters

    keep = _add(store, Event(type="t", source="/s", data={"customer_id": 5}).to_json(), "orders", 1)
    gone = _add(store, Event(type="t", source="/s", data={"customer_id": 6}).to_json(), "orders", 2)
    assert delete_dead_letters(engine, [gone]) == 1
    assert delete_dead_letters(engine, []) == 0
    with engine.connect() as conn:
        ids = {r[0] for r in conn.execute(sa.text("SELECT id FROM hw_dead_letters"))}
    assert ids == {keep}
