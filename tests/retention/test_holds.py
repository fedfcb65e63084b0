"""Legal holds: place, release, match datasets and subjects, audit, CLI."""

import pytest
from typer.testing import CliRunner

from headwater import Config, Platform
from headwater.cli import app
from headwater.errors import InvalidInput, NotFound
from headwater.retention.holds import LegalHolds, Subject, parse_subject


@pytest.fixture
def platform(tmp_path):
    p = Platform.open(Config.embedded(tmp_path))
    yield p
    p.close()


@pytest.mark.parametrize(("text", "expected"), [
    ("customers.id=123", Subject("customers", "id", "123")),
    ("app.customers.id = 123", Subject("app.customers", "id", "123")),
    ("customers.email='a@b.co'", Subject("customers", "email", "a@b.co")),
])
def test_parse_subject(text, expected):
    assert parse_subject(text) == expected
    assert str(parse_subject(text)) == str(expected)


@pytest.mark.parametrize("bad", ["", "customers", "id=1", "customers.id", "1x.id=2"])
def test_parse_subject_rejects_bad_input(bad):
    with pytest.raises(InvalidInput, match="<dataset>.<column>=<value>"):
        parse_subject(bad)


def test_dataset_hold_blocks_matching_datasets_only(platform):
    holds = LegalHolds(platform)
    hold = holds.place(dataset="warehouse.*", reason="case 17", actor="legal")
    assert [h.id for h in holds.blocking("warehouse.orders")] == [hold.id]
    assert holds.blocking("app.orders") == []
    # a dataset-wide hold blocks subject-level work too
    assert [h.id for h in holds.blocking("warehouse.orders", subject=parse_subject("customers.id=1"))] == [hold.id]


def test_subject_hold_blocks_that_subject_everywhere(platform):
    holds = LegalHolds(platform)
    hold = holds.place(subject="customers.id=123", reason="dispute", actor="legal")
    subject = parse_subject("app.customers.id=123")
    assert [h.id for h in holds.blocking("warehouse.customer_orders", subject=subject)] == [hold.id]
    assert holds.blocking("warehouse.customer_orders", subject=parse_subject("customers.id=124")) == []
    assert holds.blocking("app.customers") == []  # subject holds don't block the whole dataset
    assert holds.subject_holds("app.customers") == [Subject("customers", "id", "123")]
    assert holds.subject_holds("app.orders") == []


def test_release_and_audit(platform):
    holds = LegalHolds(platform)
    hold = holds.place(dataset="app.orders", subject="customers.id=9", reason="r", actor="legal")
    holds.release(hold.id, actor="counsel")
    assert holds.list() == []
    with pytest.raises(NotFound):
        holds.release(hold.id, actor="counsel")
    records = [r for r in platform.audit.query(action="legal_hold")]
    assert [r.reason for r in records] == ["legal hold placed", "legal hold released"]
    assert [r.actor for r in records] == ["legal", "counsel"]
    assert all("9" not in str(r.extra.get("subject", "")) for r in records)


def test_place_needs_target_and_reason(platform):
    holds = LegalHolds(platform)
    with pytest.raises(InvalidInput, match="dataset pattern, a subject"):
        holds.place(reason="x", actor="a")
    with pytest.raises(InvalidInput, match="reason"):
        holds.place(dataset="app.x", reason=" ", actor="a")


def test_cli_place_ls_release(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    out = runner.invoke(app, ["holds", "place", "--dataset", "app.orders", "--reason", "case 9"])
    assert out.exit_code == 0, out.output
    hold_id = out.output.split()[-1]
    listed = runner.invoke(app, ["holds", "ls"])
    assert hold_id in listed.output and "case 9" in listed.output
    assert runner.invoke(app, ["holds", "release", hold_id]).exit_code == 0
    assert hold_id not in runner.invoke(app, ["holds", "ls"]).output
    missing = runner.invoke(app, ["holds", "release", hold_id])
    assert missing.exit_code != 0 and "no active legal hold" in missing.output
