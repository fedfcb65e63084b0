"""The head anchor outside the metadata database: a rolled-back audit head is detected.

The attack (issue 14): an insider who can write the metadata database copies the signed head
row at some point, lets the log grow, then deletes the newest records and their checkpoints and
puts the copied head back. The chain alone verifies after that; with the anchor it does not.
Run on SQLite and Postgres metadata (the ``meta`` fixture), with a file anchor and with an S3
anchor on moto's server (versioning and Object Lock).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from headwater.audit import AuditEvent, AuditIntegrityError, AuditLog, FileAnchor, S3Anchor
from headwater.audit._anchor import s3_client

from .conftest import KEY, tamper


def ev(i: int = 0, actor: str = "alice") -> AuditEvent:
    return AuditEvent(actor=actor, action="query", datasets=["app.orders"], rows=i)


def head_row(meta) -> dict[str, Any]:
    with meta.engine.connect() as conn:
        return dict(conn.execute(sa.text("SELECT seq, hash, sig FROM hw_audit_head WHERE id = 1")).mappings().one())


def roll_back(meta, saved: dict[str, Any]) -> None:
    """Exactly the attack: cut the newest records and their checkpoints, restore the old head."""
    tamper(meta, "DELETE FROM hw_audit_records WHERE seq > :s",
           "DELETE FROM hw_audit_checkpoints WHERE seq > :s",
           "UPDATE hw_audit_head SET seq = :s, hash = :h, sig = :g WHERE id = 1",
           s=saved["seq"], h=saved["hash"], g=saved["sig"])


def attack(audit: AuditLog, meta) -> dict[str, Any]:
    for i in range(12):
        audit.record(ev(i))
    saved = head_row(meta)
    for i in range(12, 25):
        audit.record(ev(i))
    assert audit.verify().ok
    roll_back(meta, saved)
    return saved


def test_rollback_goes_unnoticed_without_an_anchor(meta) -> None:
    """The attack as reported: with the chain alone, verify still passes."""
    audit = AuditLog(meta, signing_key=KEY, checkpoint_every=10)
    attack(audit, meta)
    report = audit.verify()
    assert report.ok and report.last_seq == 12


@pytest.fixture
def anchored(meta, tmp_path) -> AuditLog:
    log = AuditLog(meta, signing_key=KEY, checkpoint_every=10, anchor=FileAnchor(tmp_path / "anchor.json", KEY))
    yield log
    log.close()


def test_rollback_is_detected_with_a_file_anchor(anchored: AuditLog, meta, tmp_path) -> None:
    attack(anchored, meta)
    report = anchored.verify()
    assert not report.ok and report.rolled_back
    assert report.first_bad_seq == 13 and report.head_anchor_seq == 25
    assert "13..25" in report.problem and "cut off" in report.problem
    with pytest.raises(AuditIntegrityError) as info:
        anchored.verify(strict=True)
    assert info.value.rolled_back and info.value.first_bad_seq == 13
    # a second process (a fresh log object on the same database and anchor) sees it too
    other = AuditLog(meta, signing_key=KEY, anchor=FileAnchor(tmp_path / "anchor.json", KEY))
    assert other.verify().rolled_back


def test_rollback_is_not_laundered_by_later_appends(anchored: AuditLog, meta) -> None:
    """Appends after the cut pass the anchored seq again: the anchor must not follow the
    rewritten chain, and verify names the anchored record."""
    attack(anchored, meta)
    for i in range(20):
        anchored.record(ev(100 + i, actor="after"))
    report = anchored.verify()
    assert not report.ok and report.rolled_back
    assert report.head_anchor_seq == 25 and report.first_bad_seq == 25
    assert "not the one anchored" in report.problem


def test_intact_log_verifies_and_reports_the_anchor(anchored: AuditLog, tmp_path) -> None:
    for i in range(7):
        anchored.record(ev(i))
    report = anchored.verify()
    assert report.ok and report.head_anchor_seq == 7 and report.head_anchor == str(tmp_path / "anchor.json")
    doc = json.loads((tmp_path / "anchor.json").read_text())
    assert doc["seq"] == 7 and len(doc["sig"]) == 64


def test_tampered_anchor_fails(anchored: AuditLog, tmp_path) -> None:
    for i in range(5):
        anchored.record(ev(i))
    path = tmp_path / "anchor.json"
    doc = json.loads(path.read_text())
    path.write_text(json.dumps({**doc, "seq": 2}))  # pretend less was written
    report = anchored.verify()
    assert not report.ok and report.rolled_back and "does not verify" in report.problem
    path.write_text("{not json")
    assert "unreadable" in anchored.verify().problem


def test_deleted_anchor_fails_then_leaves_evidence(meta, tmp_path) -> None:
    path = tmp_path / "anchor.json"
    audit = AuditLog(meta, signing_key=KEY, anchor=FileAnchor(path, KEY))
    for i in range(5):
        audit.record(ev(i))
    audit.close()
    path.unlink()
    again = AuditLog(meta, signing_key=KEY, anchor=FileAnchor(path, KEY))
    report = again.verify()
    assert not report.ok and report.rolled_back and "no audit anchor" in report.problem
    again.record(ev(9))  # the first append of a process recreates it, and the chain says so
    assert again.verify().ok
    (note,) = again.query(action="audit_anchor")
    assert note.actor == "headwater" and note.extra["head_seq"] == 5
    again.close()


def test_fresh_log_needs_no_anchor_yet(meta, tmp_path) -> None:
    audit = AuditLog(meta, signing_key=KEY, anchor=FileAnchor(tmp_path / "a.json", KEY))
    assert audit.verify().ok  # empty log, no anchor: nothing to protect yet
    audit.record(ev())
    assert audit.verify().head_anchor_seq == 1
    assert audit.query(action="audit_anchor") == []


def test_anchor_never_moves_back(tmp_path) -> None:
    anchor = FileAnchor(tmp_path / "a.json", KEY)
    anchor.advance(10, "a" * 64, 0, "0" * 64, lambda s: None)
    other = FileAnchor(tmp_path / "a.json", KEY)  # another process's view
    other.advance(7, "b" * 64, 0, "0" * 64, lambda s: None)
    assert anchor.read().seq == 10
    anchor.advance(12, "c" * 64, 10, "a" * 64, lambda s: None)
    assert other.read().seq == 12
    # a base that does not hold the anchored record: refused (a rewritten chain)
    anchor.advance(20, "d" * 64, 12, "e" * 64, lambda s: None)
    assert anchor.read().seq == 12


CHILD = textwrap.dedent("""
    import sys
    from headwater.audit import AuditEvent, AuditLog, FileAnchor
    from headwater.metadata import MetadataStore

    url, actor, n, path, key = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5].encode()
    audit = AuditLog(MetadataStore(url), signing_key=key, checkpoint_every=7, anchor=FileAnchor(path, key))
    for i in range(n):
        if i % 3:
            audit.record(AuditEvent(actor=actor, action="write", rows=i))
        else:
            audit.append(AuditEvent(actor=actor, action="query", rows=i))
    audit.close()
""")


def test_processes_keep_the_anchor_monotonic(meta_url: str, meta, tmp_path) -> None:
    """Several processes append at once; a watcher reads the anchor all along: its seq never
    goes down, and at the end it equals the head and the log verifies."""
    path = tmp_path / "anchor.json"
    seen: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        reader = FileAnchor(path, KEY)
        while not stop.is_set():
            state = reader.read()
            if state is not None:
                seen.append(state.seq)
            time.sleep(0.002)

    watcher = threading.Thread(target=watch)
    watcher.start()
    procs = [subprocess.Popen(  # noqa: S603 - fixed argv
        [sys.executable, "-c", CHILD, meta_url, f"p{i}", "40", str(path), KEY.decode()],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ}) for i in range(3)]
    try:
        for p in procs:
            _, err = p.communicate(timeout=300)
            assert p.returncode == 0, err
    finally:
        stop.set()
        watcher.join()
    assert seen == sorted(seen) and seen
    audit = AuditLog(meta, signing_key=KEY, anchor=FileAnchor(path, KEY))
    report = audit.verify()
    assert report.ok, report
    assert report.last_seq == 120 and report.head_anchor_seq == 120


# -- S3 (moto) ----------------------------------------------------------------------------
@pytest.fixture
def locked_bucket(s3_endpoint) -> dict[str, Any]:
    """A fresh versioned bucket with Object Lock on the moto server."""
    client = _client(s3_endpoint)
    bucket = f"hw-anchor-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    return {**s3_endpoint, "bucket": bucket}


def _client(endpoint: dict[str, Any]) -> Any:
    return s3_client(endpoint["endpoint_url"], endpoint["region"], endpoint["access_key_id"],
                     endpoint["secret_access_key"])


def _s3_anchor(endpoint: dict[str, Any], key: str = "hw/audit-anchor.json") -> S3Anchor:
    return S3Anchor(endpoint["bucket"], key, KEY, client=lambda: _client(endpoint), retain_days=1)


def test_rollback_is_detected_with_an_s3_anchor(meta, locked_bucket) -> None:
    anchor = _s3_anchor(locked_bucket)
    audit = AuditLog(meta, signing_key=KEY, checkpoint_every=10, anchor=anchor)
    attack(audit, meta)
    report = audit.verify()
    assert not report.ok and report.rolled_back and report.head_anchor_seq == 25
    assert report.head_anchor == f"s3://{locked_bucket['bucket']}/hw/audit-anchor.json"
    # each version is put under Object Lock retention
    head = _client(locked_bucket).head_object(Bucket=locked_bucket["bucket"], Key="hw/audit-anchor.json")
    assert head["ObjectLockMode"] == "GOVERNANCE" and head["ObjectLockRetainUntilDate"]
    audit.close()


def test_old_s3_anchor_put_back_is_still_caught(meta, locked_bucket) -> None:
    """The attacker also puts an older (validly signed) anchor back as the newest version:
    verification takes the highest seq of the newest versions."""
    anchor = _s3_anchor(locked_bucket)
    audit = AuditLog(meta, signing_key=KEY, checkpoint_every=10, anchor=anchor)
    client = _client(locked_bucket)
    for i in range(12):
        audit.record(ev(i))
    anchor.flush()
    old = client.get_object(Bucket=locked_bucket["bucket"], Key="hw/audit-anchor.json")["Body"].read()
    saved = head_row(meta)
    for i in range(12, 25):
        audit.record(ev(i))
    anchor.flush()
    roll_back(meta, saved)
    client.put_object(Bucket=locked_bucket["bucket"], Key="hw/audit-anchor.json", Body=old)
    assert anchor.current()[0].seq == 12
    report = audit.verify()
    assert not report.ok and report.rolled_back and report.head_anchor_seq == 25
    audit.close()


def test_s3_anchor_is_monotonic_under_concurrent_writers(locked_bucket) -> None:
    """Many writers, each its own S3Anchor (as separate processes would be), race conditional
    PUTs: the anchor ends at the highest seq, and never went down on the way."""
    writers = [_s3_anchor(locked_bucket, "race/anchor.json") for _ in range(4)]
    seqs = list(range(1, 41))

    def run(w: S3Anchor, mine: list[int]) -> None:
        for s in mine:
            w.advance(s, f"{s:064x}", s - 1, f"{s - 1:064x}", lambda n: f"{n:064x}")  # record n's hash
            time.sleep(0.001)
        w.flush()

    threads = [threading.Thread(target=run, args=(w, seqs[i::4])) for i, w in enumerate(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    final = writers[0].current()[0]
    assert final is not None and final.seq == 40
    client = _client(locked_bucket)
    versions = client.list_object_versions(Bucket=locked_bucket["bucket"], Prefix="race/")["Versions"]
    bodies = [json.loads(client.get_object(Bucket=locked_bucket["bucket"], Key="race/anchor.json",
                                           VersionId=v["VersionId"])["Body"].read())["seq"]
              for v in reversed(versions)]  # S3 lists a key's versions newest first
    assert bodies == sorted(bodies) and len(bodies) == len(set(bodies))


def test_platform_anchor_config(tmp_path: Path, locked_bucket) -> None:
    from headwater import Config, Platform

    cfg = Config.load(None, overrides={"platform_dir": str(tmp_path / "hw"), "audit": {"anchor": {
        "kind": "s3", "bucket": locked_bucket["bucket"], "key": "p/anchor.json", "retain_days": 1,
        "s3": {"endpoint_url": locked_bucket["endpoint_url"], "region": locked_bucket["region"],
               "access_key_id": locked_bucket["access_key_id"],
               "secret_access_key": locked_bucket["secret_access_key"]}}}})
    assert locked_bucket["secret_access_key"] not in repr(cfg)
    with Platform.open(cfg) as platform:
        platform.session("alice").sql("SELECT 1 AS one").to_arrow()
        report = platform.audit.verify()
        assert report.ok and report.head_anchor == f"s3://{locked_bucket['bucket']}/p/anchor.json"
        assert report.head_anchor_seq == report.last_seq
    with Platform.open(Config.embedded(tmp_path / "emb")) as platform:
        platform.session("alice").sql("SELECT 1 AS one").to_arrow()
        report = platform.audit.verify()
        assert report.ok and report.head_anchor == str(tmp_path / "emb" / "audit-anchor.json")


def test_cli_and_http_report_a_rolled_back_platform(tmp_path: Path) -> None:
    """The attack on a platform's metadata database: `audit verify` exits 3, HTTP says so."""
    import httpx
    from typer.testing import CliRunner

    from headwater import Config, Platform
    from headwater.cli import app
    from tests.service.conftest import serve

    platform = Platform.open(Config.embedded(tmp_path / "hw"))
    try:
        s = platform.session("alice")
        s.write("app.t", [{"id": 1}], key="id")
        for _ in range(5):
            s.sql("SELECT id FROM app.t").to_arrow()
        platform.audit.flush()
        saved = head_row(platform.meta)
        for _ in range(5):
            s.sql("SELECT id FROM app.t").to_arrow()
        token = platform.create_api_key("alice").token
        platform.apply_policy("version: 1\nroles:\n  admin: {grants: [{datasets: '*', actions: [select]}]}\n"
                              "principals:\n  alice: {roles: [admin]}\n", source="p", applied_by="t")
        platform.audit.flush()
        cfg = tmp_path / "headwater.yaml"
        cfg.write_text(platform.config.to_yaml_with_secrets())
        env = {"HEADWATER_CONFIG": str(cfg)}
        ok = CliRunner().invoke(app, ["audit", "verify"], env=env)
        assert ok.exit_code == 0 and "anchored at seq" in ok.stdout, ok.output
        roll_back(platform.meta, saved)
        bad = CliRunner().invoke(app, ["audit", "verify"], env=env)
        assert bad.exit_code == 3 and "rolled back" in bad.stderr and "cut off" in bad.stderr, bad.output
        assert "Traceback" not in bad.output
        with serve(platform) as server, httpx.Client(base_url=server.base_url, timeout=30) as c:
            r = c.get("/v1/audit/verify", headers={"X-API-Key": token})
            assert r.status_code == 200 and r.json()["ok"] is False and r.json()["rolled_back"] is True
            assert r.json()["head_anchor_seq"] > saved["seq"]
    finally:
        platform.close()
