"""The local spool: a spooled record is durable when spool() returns (the process may be killed
at once), reads see it, and a dead process's spool is committed exactly once by the next one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from headwater.audit import AuditEvent, AuditLog

from .conftest import KEY

CHILD = textwrap.dedent("""
    import sys, time
    from headwater.audit import AuditEvent, AuditLog
    from headwater.metadata import MetadataStore

    url, spool, n, linger = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    audit = AuditLog(MetadataStore(url), signing_key=sys.argv[5].encode(), checkpoint_every=7,
                     spool_dir=spool, linger_s=linger, spool_sync=sys.argv[6] == "sync")
    for i in range(n):
        audit.spool(AuditEvent(actor="spooled", action="query", rows=i))
        print("ok", i, flush=True)
    time.sleep(120)  # the parent kills us here
""")


def _spooling_child(url: str, spool: Path, n: int, linger: float, sync: bool = False) -> subprocess.Popen:
    return subprocess.Popen(  # noqa: S603 - fixed argv
        [sys.executable, "-c", CHILD, url, str(spool), str(n), str(linger), KEY.decode(),
         "sync" if sync else "cache"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


@pytest.mark.parametrize("sync", [False, True], ids=["page-cache", "fsync"])
@pytest.mark.parametrize("linger", [60.0, 0.0], ids=["never-committed", "committing"])
def test_killed_after_spool_returns_loses_nothing(meta_url: str, meta, tmp_path: Path, linger: float,
                                                  sync: bool) -> None:
    """SIGKILL right after the 30th spool() returned: all 30 records end up in the log, once
    each, in order, with the chain intact — whether the writer had committed none (a 60 s
    linger) or some of them, and whether the spool is flushed to stable storage or not."""
    spool = tmp_path / "spool"
    proc = _spooling_child(meta_url, spool, 30, linger, sync)
    acked = [proc.stdout.readline() for _ in range(30)]
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert all(line.startswith("ok ") for line in acked), proc.stderr.read()
    assert list(spool.glob("*.spool")), "the dead process left its spool behind"

    audit = AuditLog(meta, signing_key=KEY, checkpoint_every=7, spool_dir=spool)
    records = audit.query(actor="spooled", limit=None)  # reads commit dead spools first
    assert [r.rows for r in records] == list(range(30))
    report = audit.verify()
    assert report.ok and report.records_checked == 30
    assert not list(spool.glob("*.spool")), "a recovered spool is removed"
    # recovering again adds nothing
    other = AuditLog(meta, signing_key=KEY, spool_dir=spool)
    assert len(other.query(actor="spooled", limit=None)) == 30
    audit.close()
    other.close()


def test_spooled_records_are_read_back_and_the_spool_removed_on_close(meta, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    audit = AuditLog(meta, signing_key=KEY, spool_dir=spool, linger_s=0.5)
    for i in range(10):
        audit.spool(AuditEvent(actor="alice", action="query", rows=i))
    assert audit.spooled
    assert [r.rows for r in audit.query(actor="alice", limit=None)] == list(range(10))
    audit.spool(AuditEvent(actor="alice", action="query", rows=10))
    audit.close()
    assert not list(spool.glob("*.spool"))
    assert AuditLog(meta, signing_key=KEY).stats()["records"] == 11


def test_a_torn_last_line_is_not_a_record(meta, tmp_path: Path) -> None:
    """A crash inside write() leaves a line without its newline: that call never returned."""
    from headwater.audit._model import body

    spool = tmp_path / "spool"
    spool.mkdir()
    whole = body(AuditEvent(actor="dead", action="query", rows=1))
    torn = body(AuditEvent(actor="dead", action="query", rows=2))
    (spool / "999999-0123456789ab.spool").write_text(f"1 1700000000000000 {whole}\n2 1700000000000001 {torn[:20]}")
    audit = AuditLog(meta, signing_key=KEY, spool_dir=spool)
    assert [r.rows for r in audit.query(actor="dead", limit=None)] == [1]
    assert audit.verify().ok


def test_a_file_being_created_is_never_taken_for_a_dead_processs(tmp_path: Path) -> None:
    """A spool file is created under a name recovery does not list, locked, then renamed: a
    second log's recovery can never lock a live process's new file (which made the owner's own
    lock fail). An empty file its creator left before the rename is deleted once it is old."""
    from headwater.audit import _spool

    mine = _spool.Spool(tmp_path)
    mine.write(1, "{}")
    other = _spool.Spool(tmp_path)
    assert list(_spool.orphans(tmp_path, other)) == []  # locked by its (living) owner
    assert [p.name for p in tmp_path.iterdir()] == [mine.name]  # no .new file left behind
    fresh = tmp_path / f"123-abc{_spool.SUFFIX}{_spool._NEW}"
    fresh.touch()
    assert list(_spool.orphans(tmp_path, other)) == [] and fresh.exists()  # may be in creation
    os.utime(fresh, (1, 1))
    assert list(_spool.orphans(tmp_path, other)) == [] and not fresh.exists()  # abandoned
    mine.discard()


def test_a_synced_spool_flushes_every_entry_and_its_directory(monkeypatch, tmp_path: Path) -> None:
    """``durability: fsync``: each write is fdatasync-ed before it returns, and the new file's
    directory entry is fsync-ed once; the default (page cache) flushes nothing."""
    from headwater.audit import _spool

    flushed: list[str] = []
    real_data, real_dir = _spool._datasync, _spool._fsync_dir
    monkeypatch.setattr(_spool, "_datasync", lambda fd: (flushed.append("data"), real_data(fd)))
    monkeypatch.setattr(_spool, "_fsync_dir", lambda d: (flushed.append(f"dir:{d.name}"), real_dir(d)))
    synced = _spool.Spool(tmp_path / "synced", sync=True)
    for i in range(3):
        synced.write(i, '{"a":1}')
    assert flushed == ["dir:synced", "data", "data", "data"]
    flushed.clear()
    cached = _spool.Spool(tmp_path / "cached")
    cached.write(1, '{"a":1}')
    assert flushed == []
    assert [n for n, _, _ in _spool.read_entries(tmp_path / "synced" / synced.name, 0)] == [1, 2, 3]


def test_platform_durability_fsync_spools_with_sync(tmp_path: Path) -> None:
    from headwater import Config, Platform

    cfg = Config.embedded(tmp_path / "hw")
    cfg.audit.durability = "fsync"
    platform = Platform.open(cfg)
    try:
        platform.session("alice").sql("SELECT 1 AS one").to_arrow()
        assert platform.audit._spool is not None and platform.audit._spool.sync
        assert platform.audit.query(actor="alice", action="query", limit=None)
    finally:
        platform.close()
