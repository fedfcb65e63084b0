"""Group commit: submit() queues, the writer thread (or the waiting caller) commits, every
ticket resolves, the chain stays intact, and a bad event is refused before it is queued."""

from __future__ import annotations

import threading

import pytest

from headwater.audit import AuditEvent, AuditLog
from headwater.errors import InvalidInput
from tests.audit.conftest import KEY


def _event(i: int, actor: str = "alice") -> AuditEvent:
    return AuditEvent(actor=actor, action="query", datasets=["app.orders"], statement=f"SELECT {i}", rows=i)


def test_submit_then_wait_commits_in_order(audit: AuditLog) -> None:
    tickets = [audit.submit(_event(i)) for i in range(25)]
    seqs = [t.wait(timeout=30) for t in tickets]
    assert sorted(seqs) == list(range(1, 26))
    assert [r.rows for r in audit.query(limit=None)] == sorted(
        range(25), key=lambda i: seqs[i])
    assert audit.verify().ok


def test_many_threads_share_commits(audit: AuditLog) -> None:
    per_thread, threads_n = 40, 6
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(per_thread):
                audit.submit(_event(i, actor=f"t{n}")).wait(timeout=30)
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    records = audit.query(limit=None)
    assert len(records) == per_thread * threads_n
    assert {r.actor for r in records} == {f"t{n}" for n in range(threads_n)}
    report = audit.verify()
    assert report.ok and report.records_checked == per_thread * threads_n


def test_bad_event_is_refused_before_it_is_queued(audit: AuditLog) -> None:
    good1 = audit.submit(_event(1))
    with pytest.raises(InvalidInput, match="actor"):
        audit.submit(AuditEvent(actor="", action="query"))
    with pytest.raises(InvalidInput, match="actor"):
        audit.spool(AuditEvent(actor="", action="query"))
    good2 = audit.submit(_event(2))
    assert good1.wait(timeout=30) >= 1
    assert good2.wait(timeout=30) >= 1
    assert [r.rows for r in audit.query(limit=None)] == [1, 2]
    assert audit.verify().ok


def test_close_commits_what_is_queued(meta) -> None:
    log = AuditLog(meta, signing_key=KEY)
    with log._lock:  # the writer cannot append until close() waits for it
        tickets = [log.submit(_event(i)) for i in range(5)]
    log.close()
    assert all(t.wait(timeout=30) for t in tickets)
    assert log.stats()["records"] == 5
    # a closed log opens its writer again on the next submit
    assert log.submit(_event(6)).wait(timeout=30) == 6
    log.close()


def test_ticket_repr_holds_no_statement(audit: AuditLog) -> None:
    ticket = audit.submit(AuditEvent(actor="bob", action="query", statement="SELECT secret_value"))
    ticket.wait(timeout=30)
    assert "secret_value" not in repr(ticket)
    assert "committed" in repr(ticket)


def test_an_idle_writer_ends_and_a_new_one_starts(audit: AuditLog, monkeypatch) -> None:
    """An audit log nobody closes holds no thread once idle; the next record starts one."""
    import time

    from headwater.audit import _log

    monkeypatch.setattr(_log, "_IDLE_EXIT_S", 0.1)
    first = audit.submit(_event(1))
    first.wait(timeout=30)
    thread = audit._writer_thread
    assert thread is not None
    deadline = time.monotonic() + 10
    while thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not thread.is_alive()
    assert audit._own is None  # its connection was released too
    audit.spool(_event(2))
    assert audit.submit(_event(3)).wait(timeout=30) == 3
    assert [r.rows for r in audit.query(limit=None)] == [1, 2, 3]
    assert audit.verify().ok
