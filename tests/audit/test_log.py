"""Audit log: append, verify, query, export, retention, and every kind of tampering."""

from __future__ import annotations

import datetime as dt
import json
import threading

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from headwater.audit import AuditEvent, AuditIntegrityError, AuditLog, VerifyReport, _log, _verify
from headwater.audit._model import GENESIS, digest, encode
from headwater.errors import InvalidInput

from .conftest import KEY, tamper


@pytest.fixture(autouse=True)
def small_batches(monkeypatch):
    """Verify in ranges of 4 so fast path, slow path and range edges all get exercised."""
    monkeypatch.setattr(_verify, "BATCH", 4)


def ev(i: int = 0, **kw) -> AuditEvent:
    base = dict(actor="alice", action="query", datasets=["app.orders"], columns=["o_orderkey"],
                statement="SELECT * FROM app.orders WHERE o_orderkey = ?", rows=i,
                duration_ms=1.5, trace_id=f"t{i}")
    base.update(kw)
    return AuditEvent(**base)


def fill(audit: AuditLog, n: int = 25) -> None:
    for i in range(n):
        audit.record(ev(i))


def bad(report: VerifyReport) -> int | None:
    assert not report.ok, report
    assert report.problem
    return report.first_bad_seq


# -- append and verify ------------------------------------------------------------------
def test_append_and_verify(audit: AuditLog) -> None:
    assert audit.verify().ok  # empty log
    recs = [audit.record(ev(i)) for i in range(25)]
    assert [r.seq for r in recs] == list(range(1, 26))
    assert recs[0].prev_hash == GENESIS
    assert all(b.prev_hash == a.hash for a, b in zip(recs, recs[1:], strict=False))
    report = audit.verify()
    assert report.ok and report.records_checked == 25 and report.last_seq == 25
    assert report.checkpoints_checked == 2
    assert [c.seq for c in audit.checkpoints()] == [10, 20]
    assert audit.verify(start=12).records_checked == 14


def test_record_many_and_on_demand_checkpoint(audit: AuditLog) -> None:
    recs = audit.record_many([ev(i) for i in range(23)])
    assert [r.seq for r in recs] == list(range(1, 24))
    cp = audit.checkpoint()
    assert cp is not None and cp.seq == 23 and cp.hash == recs[-1].hash
    assert audit.checkpoint() == cp  # idempotent
    assert [c.seq for c in audit.checkpoints()] == [10, 20, 23]
    assert audit.verify().ok


def test_record_fields_round_trip(audit: AuditLog) -> None:
    r = audit.record(AuditEvent(
        actor="bob", action="deny", datasets=["app.customers"], columns=["email"],
        masks={"email": "hash"}, row_filters=["region = ?"], decision="deny",
        reason="rule pii-deny", statement="SELECT email FROM app.customers", rows=0,
        duration_ms=0.25, trace_id="abc", extra={"ip": "10.0.0.1", "n": [1, 2]}))
    (got,) = audit.query(actor="bob")
    assert got == r
    assert got.masks == {"email": "hash"} and got.extra == {"ip": "10.0.0.1", "n": [1, 2]}
    assert got.ts.tzinfo is not None


def test_invalid_events_are_refused(audit: AuditLog) -> None:
    with pytest.raises(InvalidInput):
        audit.record(ev(decision="maybe"))
    with pytest.raises(InvalidInput):
        audit.record(ev(actor=""))
    with pytest.raises(InvalidInput):
        audit.record(ev(extra={"x": object()}))
    with pytest.raises(InvalidInput):
        audit.record(ev(datasets="app.orders"))
    assert audit.verify().ok and audit.stats()["records"] == 0


def test_no_update_or_delete_api() -> None:
    verbs = ("update", "delete", "remove", "edit", "erase", "truncate", "rewrite", "set")
    assert not [n for n in dir(AuditLog) if not n.startswith("__") and n.lstrip("_").startswith(verbs)]
    with pytest.raises(InvalidInput):
        AuditLog(object(), signing_key=b"short")


def test_key_never_in_repr(audit: AuditLog) -> None:
    assert "audit-test" not in repr(audit)


def test_generated_columns_cannot_be_edited_alone(audit: AuditLog, meta) -> None:
    fill(audit, 3)
    with pytest.raises(sa.exc.DBAPIError):
        tamper(meta, "UPDATE hw_audit_records SET actor = 'mallory' WHERE seq = 2")


# -- tampering --------------------------------------------------------------------------
def test_edit_a_field(audit: AuditLog, meta) -> None:
    fill(audit)
    tamper(meta, "UPDATE hw_audit_records SET record = replace(record, '\"alice\"', '\"mallory\"') "
                 "WHERE seq = 13")
    report = audit.verify()
    assert bad(report) == 13 and "hash" in report.problem
    assert report.records_checked == 12


def test_edit_rows_with_rehash(audit: AuditLog, meta) -> None:
    """Editing record 7 and fixing its own hash: the chain breaks where 8 links to 7."""
    fill(audit)
    (rec,) = audit.query(since=None, limit=None)[6:7]
    text = encode(rec.prev_hash, 7, 1, ev(999))
    tamper(meta, "UPDATE hw_audit_records SET record = :t, hash = :h WHERE seq = 7",
           t=text, h=digest(text))
    report = audit.verify()
    assert bad(report) == 8 and "record 7" in report.problem


def test_edit_hash_column(audit: AuditLog, meta) -> None:
    fill(audit)
    tamper(meta, "UPDATE hw_audit_records SET hash = :h WHERE seq = 4", h="f" * 64)
    assert bad(audit.verify()) == 4


def test_delete_a_record(audit: AuditLog, meta) -> None:
    fill(audit)
    tamper(meta, "DELETE FROM hw_audit_records WHERE seq = 7")
    report = audit.verify()
    assert bad(report) == 7 and "missing" in report.problem


def test_delete_first_record(audit: AuditLog, meta) -> None:
    fill(audit)
    tamper(meta, "DELETE FROM hw_audit_records WHERE seq = 1")
    assert bad(audit.verify()) == 1


def test_insert_forged_record_in_the_middle(audit: AuditLog, meta) -> None:
    """Replace record 9 by a forgery that links correctly to 8: record 10 no longer links."""
    fill(audit)
    prev = audit.query(limit=None)[7].hash
    text = encode(prev, 9, 1, ev(9, actor="mallory"))
    tamper(meta, "UPDATE hw_audit_records SET record = :t, hash = :h WHERE seq = 9",
           t=text, h=digest(text))
    report = audit.verify()
    assert bad(report) == 10 and "link" in report.problem


def test_insert_forged_record_at_the_tail(audit: AuditLog, meta) -> None:
    """A correctly chained record appended outside the SDK: caught by the signed head."""
    fill(audit)
    prev = audit.query(limit=None)[-1].hash
    text = encode(prev, 26, 1, ev(26, actor="mallory"))
    tamper(meta, "INSERT INTO hw_audit_records (seq, hash, record) VALUES (26, :h, :t)",
           t=text, h=digest(text))
    report = audit.verify()
    assert bad(report) == 26 and "inserted" in report.problem


def test_insert_forged_record_before_the_start(audit: AuditLog, meta) -> None:
    fill(audit)
    text = encode(GENESIS, 0, 1, ev(0))
    tamper(meta, "INSERT INTO hw_audit_records (seq, hash, record) VALUES (0, :h, :t)",
           t=text, h=digest(text))
    assert bad(audit.verify()) == 0


def test_insert_with_shifted_seqs(audit: AuditLog, meta) -> None:
    """Shift records 20.. up by one and insert a forgery at 20."""
    fill(audit)
    tamper(meta, "UPDATE hw_audit_records SET seq = seq + 1000 WHERE seq >= 20",
           "UPDATE hw_audit_records SET seq = seq - 999 WHERE seq >= 1000")
    prev = audit.query(limit=19)[-1].hash
    text = encode(prev, 20, 1, ev(20, actor="mallory"))
    tamper(meta, "INSERT INTO hw_audit_records (seq, hash, record) VALUES (20, :h, :t)",
           t=text, h=digest(text))
    report = audit.verify()
    assert bad(report) == 20  # the checkpoint at 20 no longer matches


def test_reorder_two_records(audit: AuditLog, meta) -> None:
    fill(audit)
    tamper(meta, "UPDATE hw_audit_records SET seq = -5 WHERE seq = 5",
           "UPDATE hw_audit_records SET seq = 5 WHERE seq = 6",
           "UPDATE hw_audit_records SET seq = 6 WHERE seq = -5")
    report = audit.verify()
    assert bad(report) == 5 and "reordered" in report.problem


def test_renumber_seq_column(audit: AuditLog, meta) -> None:
    """Changing only the seq column (keeping the order) is caught too."""
    fill(audit)
    tamper(meta, "UPDATE hw_audit_records SET seq = 100 WHERE seq = 25")
    assert bad(audit.verify()) == 25


def test_delete_tail_after_checkpoint(audit: AuditLog, meta) -> None:
    fill(audit)
    tamper(meta, "DELETE FROM hw_audit_records WHERE seq > 15")
    report = audit.verify()
    assert bad(report) == 16 and "tail" in report.problem


def test_delete_tail_after_last_checkpoint(audit: AuditLog, meta) -> None:
    fill(audit)
    tamper(meta, "DELETE FROM hw_audit_records WHERE seq > 21")
    report = audit.verify()
    assert bad(report) == 22 and "tail" in report.problem


def test_delete_tail_and_its_checkpoints_and_reset_head(audit: AuditLog, meta) -> None:
    """Cutting the tail and rolling the head back needs a signature the attacker lacks."""
    fill(audit)
    (last_kept,) = [r for r in audit.query(limit=None) if r.seq == 12]
    tamper(meta, "DELETE FROM hw_audit_records WHERE seq > 12",
           "DELETE FROM hw_audit_checkpoints WHERE seq > 12",
           "UPDATE hw_audit_head SET seq = 12, hash = :h", h=last_kept.hash)
    assert bad(audit.verify()) == 13


def test_rewritten_chain_caught_by_checkpoint(audit: AuditLog, meta) -> None:
    """An attacker re-chains records 5..25 consistently: the checkpoint at 10 disagrees."""
    fill(audit)
    recs = audit.query(limit=None)
    prev = recs[3].hash
    stmts, params = [], {}
    for i in range(5, 26):
        text = encode(prev, i, 1, ev(i, actor="mallory"))
        prev = digest(text)
        stmts.append(f"UPDATE hw_audit_records SET record = :t{i}, hash = :h{i} WHERE seq = {i}")
        params[f"t{i}"], params[f"h{i}"] = text, prev
    tamper(meta, *stmts, **params)
    report = audit.verify()
    assert bad(report) == 10 and "checkpoint" in report.problem


def test_forged_checkpoint_signature(audit: AuditLog, meta) -> None:
    fill(audit)
    tamper(meta, "UPDATE hw_audit_checkpoints SET sig = :s WHERE seq = 20", s="0" * 64)
    report = audit.verify()
    assert bad(report) == 20 and "signature" in report.problem


def test_other_key_fails(audit: AuditLog, meta) -> None:
    fill(audit, 12)
    assert not AuditLog(meta, signing_key=b"another-key-0123456789").verify().ok


# -- concurrency within a process ------------------------------------------------------
def test_threads_keep_one_chain(audit: AuditLog) -> None:
    def work(t: int) -> None:
        for i in range(15):
            audit.record(ev(i, actor=f"thread{t}"))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    report = audit.verify()
    assert report.ok and report.last_seq == 60


# -- query and export -----------------------------------------------------------------
def test_query_filters(audit: AuditLog) -> None:
    audit.record(ev(1, actor="alice", datasets=["app.orders"]))
    audit.record(ev(2, actor="bob", action="write", datasets=["app.orders", "wh.facts"]))
    audit.record(ev(3, actor="bob", datasets=["app_orders"]))  # "_" is no LIKE wildcard
    audit.record(ev(4, actor="carol", action="deny", decision="deny", datasets=[]))
    assert [r.seq for r in audit.query(actor="bob")] == [2, 3]
    assert [r.seq for r in audit.query(dataset="app.orders")] == [1, 2]
    assert [r.seq for r in audit.query(dataset="app_orders")] == [3]
    assert [r.seq for r in audit.query(action="write")] == [2]
    assert [r.seq for r in audit.query(actor="bob", dataset="wh.facts")] == [2]
    assert [r.seq for r in audit.query(limit=2, newest_first=True)] == [4, 3]
    ts = audit.query()[2].ts
    assert [r.seq for r in audit.query(since=ts)][0] >= 3
    assert audit.query(until=ts - dt.timedelta(days=1)) == []
    assert len(audit.query(limit=None)) == 4


def test_query_pages(audit: AuditLog, monkeypatch) -> None:
    monkeypatch.setattr(_log, "_PAGE", 3)
    audit.record_many([ev(i, actor="a" if i % 2 else "b") for i in range(20)])
    assert [r.seq for r in audit.query(actor="a", limit=None)] == list(range(2, 21, 2))
    assert [r.seq for r in audit.query(actor="a", limit=4, newest_first=True)] == [20, 18, 16, 14]


def test_export_jsonl_and_parquet(audit: AuditLog, tmp_path) -> None:
    audit.record(ev(1, masks={"email": "hash"}, extra={"k": 1}))
    audit.record(ev(2, actor="bob", datasets=["wh.facts"]))
    audit.record(ev(3))
    n = audit.export(tmp_path / "a.jsonl", dataset="app.orders")
    lines = [json.loads(x) for x in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert n == 2 and [x["seq"] for x in lines] == [1, 3]
    assert lines[0]["masks"] == {"email": "hash"} and lines[0]["hash"]
    assert audit.export(tmp_path / "a.parquet", format="parquet") == 3
    table = pq.read_table(tmp_path / "a.parquet")
    assert table.num_rows == 3 and table.column("actor").to_pylist() == ["alice", "bob", "alice"]
    assert table.column("datasets").to_pylist()[1] == ["wh.facts"]
    assert json.loads(table.column("extra").to_pylist()[0]) == {"k": 1}
    assert audit.export(tmp_path / "none.parquet", format="parquet", actor="nobody") == 0
    assert pq.read_table(tmp_path / "none.parquet").num_rows == 0
    with pytest.raises(InvalidInput):
        audit.export(tmp_path / "x", format="csv")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        audit.export(tmp_path / "x", limit=3)


# -- retention --------------------------------------------------------------------------
def test_retention_keeps_chain_verifiable(meta, monkeypatch) -> None:
    audit = AuditLog(meta, signing_key=KEY, checkpoint_every=4, retention_days=30)
    day0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    clock = {"now": day0}
    monkeypatch.setattr(_log.time, "time_ns", lambda: int(clock["now"].timestamp() * 1e9))
    fill(audit, 10)
    clock["now"] = day0 + dt.timedelta(days=40)
    fill(audit, 5)
    assert audit.apply_retention(now=day0 + dt.timedelta(days=20)) == 0
    assert audit.apply_retention(now=day0 + dt.timedelta(days=45)) == 10
    assert audit.apply_retention(now=day0 + dt.timedelta(days=45)) == 0
    report = audit.verify()
    assert report.ok and report.first_seq == 11 and report.records_checked == 5
    assert [c.seq for c in audit.checkpoints()] == [12]
    fill(audit, 3)
    assert audit.verify().ok and audit.stats() == {"head_seq": 18, "records": 8, "anchor_seq": 10}
    assert AuditLog(meta, signing_key=KEY).apply_retention() == 0  # retention off
    # everything old: the whole log goes, and the chain continues from the anchor
    assert audit.apply_retention(now=day0 + dt.timedelta(days=100)) == 8
    assert audit.verify().ok
    fill(audit, 2)
    assert audit.verify().ok


def test_retention_anchor_forged(meta, monkeypatch) -> None:
    audit = AuditLog(meta, signing_key=KEY, retention_days=1)
    fill(audit, 6)
    future = dt.datetime.now(dt.UTC) + dt.timedelta(days=3)
    assert audit.apply_retention(now=future) == 6
    fill(audit, 2)
    tamper(meta, "UPDATE hw_audit_head SET anchor_seq = 3")
    assert bad(audit.verify()) == 4


def test_retention_refused_on_broken_chain(meta) -> None:
    audit = AuditLog(meta, signing_key=KEY, retention_days=1)
    fill(audit, 6)
    tamper(meta, "DELETE FROM hw_audit_records WHERE seq = 2")
    with pytest.raises(AuditIntegrityError) as err:
        audit.apply_retention(now=dt.datetime.now(dt.UTC) + dt.timedelta(days=3))
    assert err.value.first_bad_seq == 2
    assert audit.stats()["records"] == 5
