"""Crash durability and cross-process appends, with real subprocesses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

from headwater.audit import AuditEvent, AuditLog

from .conftest import KEY

CHILD = textwrap.dedent("""
    import sys, time
    from headwater.audit import AuditEvent, AuditLog
    from headwater.metadata import MetadataStore

    url, actor, n, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    KEY = sys.argv[5].encode()
    audit = AuditLog(MetadataStore(url), signing_key=KEY, checkpoint_every=7)
    for i in range(n):
        rec = audit.record(AuditEvent(actor=actor, action="write", rows=i))
        if mode == "crash":
            print("ok", rec.seq, flush=True)
    if mode == "crash":
        time.sleep(120)  # the parent kills us here
""")


def _child(url: str, actor: str, n: int, mode: str) -> subprocess.Popen:
    return subprocess.Popen(  # noqa: S603 - fixed argv
        [sys.executable, "-c", CHILD, url, actor, str(n), mode, KEY.decode()],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def test_killed_right_after_record_returns(meta_url: str, meta) -> None:
    """SIGKILL the writer as soon as ``record`` has returned: the record is there."""
    proc = _child(meta_url, "crash", 1, "crash")
    line = proc.stdout.readline()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert line.startswith("ok "), proc.stderr.read()
    seq = int(line.split()[1])
    audit = AuditLog(meta, signing_key=KEY)
    (rec,) = audit.query(actor="crash")
    assert rec.seq == seq
    assert audit.verify().ok


def test_killed_mid_stream(meta_url: str, meta) -> None:
    """Kill after the 20th acknowledged record of a stream: all 20 are there, chain intact."""
    proc = _child(meta_url, "stream", 10_000, "crash")
    acked = []
    while len(acked) < 20:
        line = proc.stdout.readline()
        assert line.startswith("ok "), proc.stderr.read()
        acked.append(int(line.split()[1]))
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    audit = AuditLog(meta, signing_key=KEY)
    stored = {r.seq for r in audit.query(actor="stream", limit=None)}
    assert set(acked) <= stored
    report = audit.verify()
    assert report.ok, report
    # the log goes on after the crash
    audit.record(AuditEvent(actor="after", action="query"))
    assert audit.verify().ok


def test_two_processes_append_one_chain(meta_url: str, meta) -> None:
    procs = [_child(meta_url, f"p{i}", 60, "plain") for i in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    audit = AuditLog(meta, signing_key=KEY)
    report = audit.verify()
    assert report.ok and report.last_seq == 120, report
    recs = audit.query(limit=None)
    assert [r.seq for r in recs] == list(range(1, 121))
    assert sum(r.actor == "p0" for r in recs) == sum(r.actor == "p1" for r in recs) == 60
