"""The fast verification paths: the SQLite worker process and the Postgres server-side check.

Every tampering is checked on the same data by the fast path as shipped, by the fast path with
the work split in two halves (two processes on SQLite, two connections sharing one snapshot on
Postgres), and by a reference run in which every range takes the row-by-row slow path. All must
report the same first bad record and problem.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest

from headwater.audit import AuditEvent, AuditLog, VerifyReport, _verify, _verify_pg, _verify_sqlite
from headwater.audit._model import digest, encode

from .conftest import tamper

N = 43  # 11 ranges of 4: the worker process gets seqs 21..43


@pytest.fixture(autouse=True)
def small_batches(monkeypatch):
    monkeypatch.setattr(_verify, "BATCH", 4)


def ev(i: int, **kw: object) -> AuditEvent:
    base: dict[str, object] = dict(actor="alice", action="query", datasets=["app.orders"],
                                   statement="SELECT 1", rows=i, trace_id=f"t{i}")
    base.update(kw)
    return AuditEvent(**base)  # type: ignore[arg-type]


def fill(audit: AuditLog, n: int = N) -> None:
    audit.record_many([ev(i) for i in range(n)])


def _same(report: VerifyReport) -> VerifyReport:
    return dataclasses.replace(report, elapsed_s=0.0)


def three_ways(audit: AuditLog, monkeypatch, parallel: bool) -> VerifyReport:
    """The report of the fast path; asserts the slow-path reference says exactly the same."""
    monkeypatch.setattr(_verify, "PARALLEL_MIN_RANGES", 1 if parallel else 10**9)
    monkeypatch.setattr(_verify, "_cpus", lambda: 2)
    fast = audit.verify()
    with monkeypatch.context() as m:
        m.setattr(_verify_sqlite, "check_range", lambda *a: None)

        def slow_only(raw, ranges, first, prev, cps, slow_range, connect=None):
            seq = first
            for _, hi in ranges:
                seq, prev = slow_range(raw.cursor(), "postgresql", hi, seq, prev, cps)
            return seq, prev

        m.setattr(_verify_pg, "stream_pg", slow_only)
        m.setattr(_verify, "PARALLEL_MIN_RANGES", 10**9)
        reference = audit.verify()
    assert _same(fast) == _same(reference)
    return fast


def _hash(audit: AuditLog, seq: int) -> str:
    return audit.query(limit=None)[seq - 1].hash


# -- tamperings: (first bad seq, words in the problem) -----------------------------------
def edit(audit, meta, at):
    tamper(meta, "UPDATE hw_audit_records SET record = replace(record, '\"alice\"', '\"mallory\"') "
                 "WHERE seq = :s", s=at)
    return at, "hash"


def edit_hash(audit, meta, at):
    tamper(meta, "UPDATE hw_audit_records SET hash = :h WHERE seq = :s", h="f" * 64, s=at)
    return at, "hash"


def shift_hash_chars(audit, meta, at):
    """Move one character of hash ``at`` into hash ``at + 1``: the joined hashes are unchanged.
    (Postgres refuses a 65-character hash.)"""
    h1, h2 = _hash(audit, at), _hash(audit, at + 1)
    tamper(meta, "UPDATE hw_audit_records SET hash = :h WHERE seq = :s", h=h1[:63], s=at)
    tamper(meta, "UPDATE hw_audit_records SET hash = :h WHERE seq = :s", h=h1[63] + h2, s=at + 1)
    return at, "hash"


def rehash(audit, meta, at):
    text = encode(_hash(audit, at - 1), at, 1, ev(999))
    tamper(meta, "UPDATE hw_audit_records SET record = :t, hash = :h WHERE seq = :s",
           t=text, h=digest(text), s=at)
    return at + 1, "link"


def delete(audit, meta, at):
    tamper(meta, "DELETE FROM hw_audit_records WHERE seq = :s", s=at)
    return at, "missing"


def insert(audit, meta, at):
    prev = _hash(audit, at - 1)
    tamper(meta, "UPDATE hw_audit_records SET seq = seq + 1000 WHERE seq >= :s",
           "UPDATE hw_audit_records SET seq = seq - 999 WHERE seq >= 1000", s=at)
    text = encode(prev, at, 1, ev(at, actor="mallory"))
    tamper(meta, "INSERT INTO hw_audit_records (seq, hash, record) VALUES (:s, :h, :t)",
           t=text, h=digest(text), s=at)
    return at + 1, f"written as seq {at}"


def reorder(audit, meta, at):
    tamper(meta, "UPDATE hw_audit_records SET seq = -5 WHERE seq = :s",
           "UPDATE hw_audit_records SET seq = :s WHERE seq = :s + 1",
           "UPDATE hw_audit_records SET seq = :s + 1 WHERE seq = -5", s=at)
    return at, "reordered"


TAMPERINGS = [edit, edit_hash, shift_hash_chars, rehash, delete, insert, reorder]


# The worker process is the SQLite path; Postgres refuses a 65-character hash (varchar(64)).
PG = pytest.param("postgres", marks=pytest.mark.postgres)
SQLITE_ONLY = pytest.mark.parametrize("meta_url", ["sqlite"], indirect=True)
BACKEND_WAYS = [("sqlite", False), ("sqlite", True), pytest.param("postgres", False, marks=pytest.mark.postgres),
                pytest.param("postgres", True, marks=pytest.mark.postgres)]
WAY_IDS = ["sqlite-one-process", "sqlite-two-processes", "postgres", "postgres-two-connections"]
CASES = [
    pytest.param(url, parallel, how, id=f"{way}-{how.__name__}", marks=getattr(case, "marks", ()))
    for case, way in zip(BACKEND_WAYS, WAY_IDS, strict=True)
    for url, parallel in [getattr(case, "values", case)]
    for how in TAMPERINGS
    if not (url == "postgres" and how.__name__ == "shift_hash_chars")
]


@pytest.mark.parametrize(("meta_url", "parallel", "how"), CASES, indirect=["meta_url"])
@pytest.mark.parametrize("at", [6, 22, 33], ids=["first-half", "worker-start", "worker-middle"])
def test_tampering_found_at_the_exact_record(audit, meta, monkeypatch, how, at, parallel) -> None:
    fill(audit)
    first_bad, word = how(audit, meta, at)
    report = three_ways(audit, monkeypatch, parallel)
    assert not report.ok
    assert report.first_bad_seq == first_bad, report
    assert word in report.problem


@pytest.mark.parametrize(("meta_url", "parallel"), BACKEND_WAYS, ids=WAY_IDS, indirect=["meta_url"])
def test_intact_log_verifies(audit, monkeypatch, parallel) -> None:
    fill(audit)
    report = three_ways(audit, monkeypatch, parallel)
    assert report.ok and report.records_checked == N and report.last_seq == N
    assert report.checkpoints_checked == N // audit.checkpoint_every


def _job(meta, audit: AuditLog, lo: int) -> dict[str, object]:
    hi = N + 1
    return {"path": meta.engine.url.database, "prev": _hash(audit, lo - 1),
            "ranges": [[s, min(s + 4, hi)] for s in range(lo, hi, 4)],
            "cps": [[c.seq, c.hash] for c in audit.checkpoints() if c.seq >= lo]}


def _run_worker(job: dict[str, object]) -> dict[str, object]:
    command = _verify_sqlite.worker_command()
    assert command is not None  # pytest runs under a Python interpreter
    out = subprocess.run(command, input=json.dumps(job).encode(),
                         capture_output=True, check=True, timeout=60)
    return json.loads(out.stdout)


@SQLITE_ONLY
def test_worker_vouches_for_an_intact_half(audit, meta) -> None:
    fill(audit)
    assert _run_worker(_job(meta, audit, 21)) == {"next": N + 1, "last": _hash(audit, N)}


@SQLITE_ONLY
def test_worker_stops_before_the_first_bad_range(audit, meta) -> None:
    fill(audit)
    job = _job(meta, audit, 21)
    edit(audit, meta, 30)  # in the range 29..32
    assert _run_worker(job) == {"next": 29, "last": _hash(audit, 28)}


@pytest.mark.parametrize("command", [
    [sys.executable, "-c", "print('{\"next\": 44, \"last\": \"' + 'f' * 64 + '\"}')"],
    [sys.executable, "-c", "raise SystemExit(3)"],
    ["/nonexistent/python"],
    [sys.executable, "-c", "print('not json')"],
    None,
], ids=["confused", "failing", "missing", "garbage", "no-interpreter"])
@SQLITE_ONLY
def test_a_bad_worker_cannot_hide_tampering(audit, meta, monkeypatch, command) -> None:
    """A worker that fails, is missing, writes garbage or ends on a hash the database does
    not hold (as one reading another file would) vouches for nothing: its half is checked
    again in the calling process."""
    fill(audit)
    monkeypatch.setattr(_verify_sqlite, "worker_command", lambda: command)
    monkeypatch.setattr(_verify, "PARALLEL_MIN_RANGES", 1)
    assert audit.verify().ok
    edit(audit, meta, 35)
    report = audit.verify()
    assert not report.ok and report.first_bad_seq == 35


@pytest.mark.parametrize("meta_url", [PG], indirect=True)
def test_postgres_shadowing_functions_do_not_fool_the_server_check(audit, meta) -> None:
    """A ``sha256`` that answers every record's stored hash, in a schema searched before
    pg_catalog, changes nothing: the check calls pg_catalog's own functions."""
    from headwater.metadata import MetadataStore

    fill(audit)
    edit(audit, meta, 9)
    tamper(meta, "CREATE FUNCTION sha256(bytea) RETURNS bytea LANGUAGE sql STABLE AS $$ "
                 "SELECT pg_catalog.decode(hash, 'hex') FROM hw_audit_records "
                 "WHERE pg_catalog.convert_to(record, 'UTF8') = $1 $$")
    schema = meta.engine.url.query["options"].split("=", 1)[1]
    url = meta.engine.url.update_query_dict({"options": f"-csearch_path={schema},pg_catalog"})
    with meta.engine.connect() as conn:  # the forgery is in force on that search_path
        conn.exec_driver_sql(f"SET search_path = {schema}, pg_catalog")
        forged = conn.exec_driver_sql(
            "SELECT encode(sha256(convert_to(record, 'UTF8')), 'hex') = hash "
            "FROM hw_audit_records WHERE seq = 9").scalar()
        assert forged is True
    shadowed = MetadataStore.open(url.render_as_string(hide_password=False))
    try:
        report = AuditLog(shadowed, signing_key=audit._key, checkpoint_every=10).verify()
    finally:
        shadowed.close()
    assert not report.ok and report.first_bad_seq == 9


@SQLITE_ONLY
def test_worker_opens_a_path_with_uri_characters(audit, meta, tmp_path) -> None:
    """The worker opens the file by URI: ``#``, ``%``, ``?`` and spaces in its path are quoted."""
    import sqlite3

    fill(audit)
    odd = tmp_path / "a dir#1%20?x" / "meta copy.db"
    odd.parent.mkdir()
    src = sqlite3.connect(meta.engine.url.database)
    dst = sqlite3.connect(odd)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()
    job = {**_job(meta, audit, 21), "path": str(odd)}
    assert _run_worker(job) == {"next": N + 1, "last": _hash(audit, N)}


def _on_second_connection(audit: AuditLog, monkeypatch, action) -> list[int]:
    """Split every log in two halves and run ``action()`` when verify opens its second
    connection (after the first one exported its snapshot); returns the connections opened."""
    import contextlib

    monkeypatch.setattr(_verify, "PARALLEL_MIN_RANGES", 1)
    monkeypatch.setattr(_verify, "_cpus", lambda: 2)
    opened: list[int] = []
    own = audit._raw

    @contextlib.contextmanager
    def raw():
        opened.append(1)
        if len(opened) == 2:
            action()
        with own() as conn:
            yield conn

    monkeypatch.setattr(audit, "_raw", raw)
    return opened


@pytest.mark.parametrize("meta_url", [PG], indirect=True)
def test_postgres_halves_share_one_snapshot(audit, meta, monkeypatch) -> None:
    """The second connection checks the first one's snapshot: a record edited after verify
    began (between the snapshot and the second connection) is not seen by either half, and the
    same edit is found by the next verify."""
    fill(audit)
    own = audit._raw
    opened = _on_second_connection(audit, monkeypatch, lambda: edit(audit, meta, 35))
    report = audit.verify()
    assert len(opened) == 2 and report.ok and report.last_seq == N
    monkeypatch.setattr(audit, "_raw", own)
    again = audit.verify()
    assert not again.ok and again.first_bad_seq == 35


@pytest.mark.parametrize("meta_url", [PG], indirect=True)
def test_postgres_without_a_second_connection_checks_on_one(audit, meta, monkeypatch, caplog) -> None:
    """A second connection that cannot be opened (pool or server at its limit) costs speed,
    not the answer: the whole log is checked on the first, and the fallback is logged."""
    from headwater.errors import StoreUnavailable

    def refuse() -> None:
        raise StoreUnavailable("too many clients already")

    fill(audit)
    edit(audit, meta, 35)
    opened = _on_second_connection(audit, monkeypatch, refuse)
    report = audit.verify()
    assert len(opened) == 2 and not report.ok and report.first_bad_seq == 35
    assert "no second connection (too many clients already)" in caplog.text
