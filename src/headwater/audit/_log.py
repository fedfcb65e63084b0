"""The audit log on the metadata store: append, checkpoint, verify, query, export, retention.

Appends are serialised by the chain head row (``BEGIN IMMEDIATE`` on SQLite, ``SELECT ... FOR
UPDATE`` on Postgres) and by a per-log lock between threads, so any number of threads and
processes extend one chain. Each append is a committed transaction before :meth:`record`
returns. The class has no update or delete method; only :meth:`apply_retention` removes
records, and it leaves a signed anchor so the rest of the chain still verifies.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from headwater.audit import _spool, _verify
from headwater.audit._anchor import PRUNED, AnchorState, HeadAnchor
from headwater.audit._model import (
    AuditEvent,
    AuditIntegrityError,
    AuditRecord,
    Checkpoint,
    VerifyReport,
    body,
    chain_text,
    decode,
    digest,
    sign,
    to_us,
)
from headwater.audit._spool import Spool
from headwater.errors import InvalidInput, StoreError, StoreUnavailable

__all__ = ["AuditLog", "AuditTicket"]

log = logging.getLogger("headwater.audit")

_PAGE = 1000
_IDLE_EXIT_S = 2.0  # an idle writer thread ends after this long


class AuditTicket:
    """A submitted audit event; :meth:`wait` returns once its record is committed.

    Obtained from :meth:`AuditLog.submit`. The caller must wait before the call the event
    describes returns: that is what makes the record durable before the caller sees a result.
    """

    __slots__ = ("_done", "_log", "action", "error", "seq")

    def __init__(self, action: str, log: AuditLog) -> None:
        self.action = action
        self._log = log
        self.seq = 0
        self.error: BaseException | None = None
        self._done = threading.Event()

    def __repr__(self) -> str:
        state = "committed" if self._done.is_set() and self.error is None else (
            "failed" if self.error is not None else "pending")
        return f"AuditTicket(action={self.action!r}, {state})"

    def wait(self, timeout: float | None = None) -> int:
        """Block until the record is committed; returns its seq or raises the append's error.

        A ticket the writer thread has not picked up yet is appended by the caller itself,
        so a busy machine's thread wake-up latency never adds to the call.
        """
        if not self._done.is_set():
            pending = self._log._steal(self)
            if pending is not None:
                try:
                    self.seq = self._log._append_bodies([(pending.ts, pending.body)])[0][0]
                except BaseException as err:  # noqa: BLE001 - raised below, as from the writer
                    self.error = err
                self._log._count_done(1)
                self._done.set()
        if not self._done.wait(timeout):
            raise StoreUnavailable("audit log: the record was not committed in time")
        if self.error is not None:
            raise self.error
        return self.seq


class _Pending:
    """A queued record: its timestamp and body, and either a ticket or a spool mark."""

    __slots__ = ("body", "mark", "ticket", "ts")

    def __init__(self, ts: int, body_json: str, ticket: AuditTicket | None, mark: tuple[str, int] | None) -> None:
        self.ts = ts
        self.body = body_json
        self.ticket = ticket
        self.mark = mark


class AuditLog:
    """A tamper-evident audit log in a :class:`~headwater.metadata.MetadataStore`.

    ``signing_key`` signs checkpoints, the chain head and the retention anchor (HMAC-SHA256);
    keep it out of the metadata database. A checkpoint is written every ``checkpoint_every``
    records. ``retention_days=None`` keeps records forever. With ``spool_dir``, :meth:`spool`
    makes a record durable in this process's spool file there (``spool_sync``: flushed to stable
    storage too) and a writer thread commits it; without, it commits before returning.
    ``anchor`` (a :class:`~headwater.audit.FileAnchor` or :class:`~headwater.audit.S3Anchor`)
    receives the head after every commit, outside the metadata database, so :meth:`verify`
    detects records cut off behind a restored older head.
    """

    def __init__(
        self,
        meta: Any,
        *,
        signing_key: bytes,
        checkpoint_every: int = 1000,
        retention_days: int | None = None,
        spool_dir: str | Path | None = None,
        spool_sync: bool = False,
        linger_s: float = 0.005,
        anchor: HeadAnchor | None = None,
    ) -> None:
        if not isinstance(signing_key, bytes | bytearray) or len(signing_key) < 16:
            raise InvalidInput("audit signing_key must be at least 16 bytes")
        if checkpoint_every < 1:
            raise InvalidInput("checkpoint_every must be >= 1")
        if retention_days is not None and retention_days < 1:
            raise InvalidInput("retention_days must be >= 1 or None")
        self._meta = meta
        self._engine = meta.engine
        self._dialect: str = meta.dialect
        if self._dialect not in ("sqlite", "postgresql"):
            raise InvalidInput(f"the audit log supports SQLite and Postgres, not {self._dialect}")
        self._pg = self._dialect == "postgresql"
        self._key = bytes(signing_key)
        self.checkpoint_every = checkpoint_every
        """Records between two signed checkpoints."""
        self.retention_days = retention_days
        """Age in days after which :meth:`apply_retention` deletes records (None: never)."""
        self._lock = threading.Lock()
        # Appends on SQLite go through one dedicated connection (opened lazily, per process):
        # a pool checkout and checkin cost more than the commit itself.
        database = self._engine.url.database if not self._pg else None
        self._own_path: str | None = database if database and database != ":memory:" else None
        self._own: sqlite3.Connection | None = None
        self._own_pid = 0
        self._mac = hmac.new(self._key, digestmod=hashlib.sha256)
        # Group commit: submit() and spool() queue, one writer thread per process appends what
        # is queued, a batch per transaction.
        self._queue: list[_Pending] = []
        self._queue_cv = threading.Condition(threading.Lock())
        self._writer_thread: threading.Thread | None = None
        self._writer_pid = 0
        self._closing = False
        self._queued = 0  # records ever queued / settled (committed or failed) in this process
        self._done = 0
        self._linger = linger_s
        self._spool = Spool(Path(spool_dir), sync=spool_sync) if spool_dir is not None else None
        self._recovered_pid = 0
        self._writer_error: str | None = None
        self._writer_idle = False
        self._atexit = False
        dbapi = self._engine.dialect.loaded_dbapi
        self._operational = dbapi.OperationalError
        self._dbapi_error = dbapi.Error
        self.anchor = anchor
        """The head anchor outside the metadata database (None: rollbacks go unnoticed)."""
        self._anchor_pid = 0  # the process that checked the anchor exists (once per process)

    def __repr__(self) -> str:
        return (f"AuditLog(dialect={self._dialect!r}, checkpoint_every={self.checkpoint_every}, "
                f"retention_days={self.retention_days})")

    # -- plumbing ----------------------------------------------------------------------
    def _q(self, sql: str) -> str:
        return sql.replace("?", "%s") if self._pg else sql

    @contextlib.contextmanager
    def _raw(self) -> Iterator[Any]:
        """A pooled DBAPI connection, rolled back if not committed, with driver errors
        translated."""
        try:
            raw = self._engine.raw_connection()
        except Exception as err:  # noqa: BLE001 - SQLAlchemy wraps the driver error
            raise StoreUnavailable(f"audit log: metadata store unreachable ({self._dialect}): "
                                   f"{_first_line(err)}") from None
        try:
            yield raw
        except self._operational as err:
            _rollback(raw)
            raise StoreUnavailable(f"audit log: metadata store error ({self._dialect}): "
                                   f"{_first_line(err)}") from None
        except self._dbapi_error as err:
            _rollback(raw)
            raise StoreError(f"audit log: metadata store error ({self._dialect}): "
                             f"{_first_line(err)}") from None
        except BaseException:
            _rollback(raw)
            raise
        finally:
            raw.close()

    def _sign(self, kind: str, seq: int, hash_: str) -> str:
        """:func:`sign` from a keyed HMAC state made once (same signatures, a third the cost)."""
        mac = self._mac.copy()
        mac.update(f"headwater-audit/{kind}:{seq}:{hash_}".encode())
        return mac.hexdigest()

    @contextlib.contextmanager
    def _writer(self) -> Iterator[Any]:
        """The connection appends use: the dedicated SQLite connection, else a pooled one.

        Called with ``self._lock`` held. Driver errors are translated as in :meth:`_raw`; after
        one, the dedicated connection is closed and reopened on the next append.
        """
        if self._own_path is None:
            with self._raw() as raw:
                yield raw
            return
        if self._own is None or self._own_pid != os.getpid():
            try:
                con = sqlite3.connect(self._own_path, isolation_level=None, check_same_thread=False,
                                      timeout=10.0)
                for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=10000"):
                    con.execute(f"PRAGMA {pragma}")
            except sqlite3.Error as err:
                raise StoreUnavailable(f"audit log: metadata store unreachable (sqlite): "
                                       f"{_first_line(err)}") from None
            self._own, self._own_pid = con, os.getpid()
        con = self._own
        try:
            yield con
        except BaseException as err:
            _rollback(con)
            if isinstance(err, sqlite3.Error):
                self._drop_own()
                kind = StoreUnavailable if isinstance(err, sqlite3.OperationalError) else StoreError
                raise kind(f"audit log: metadata store error (sqlite): {_first_line(err)}") from None
            raise

    def _drop_own(self) -> None:
        con, self._own = self._own, None
        if con is not None and self._own_pid == os.getpid():
            with contextlib.suppress(Exception):
                con.close()

    def close(self) -> None:
        """Commit what is queued, stop the writer thread, remove this process's (now fully
        committed) spool file and close the dedicated connection."""
        with self._queue_cv:
            self._closing = True
            self._queue_cv.notify_all()
            thread = self._writer_thread if self._writer_pid == os.getpid() else None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=30)
        with self._queue_cv:
            self._writer_thread = None
            self._closing = False
            spooled_all = not self._queue
            name = self._spool.discard() if self._spool is not None and spooled_all else None
        if name is not None:
            with contextlib.suppress(StoreError):
                self._forget_spool(name)
        if self.anchor is not None:
            self.anchor.close()
        with self._lock:
            self._drop_own()

    @contextlib.contextmanager
    def _append_txn(self) -> Iterator[tuple[Any, int, str]]:
        """A write transaction holding the chain head: yields (cursor, head seq, head hash)."""
        with self._lock, self._writer() as raw:
            cur = raw.cursor()
            if self._pg:
                cur.execute("SELECT seq, hash FROM hw_audit_head WHERE id = 1 FOR UPDATE")
            else:
                cur.execute("BEGIN IMMEDIATE")  # takes the write lock now: no stale snapshot
                cur.execute("SELECT seq, hash FROM hw_audit_head WHERE id = 1")
            row = cur.fetchone()
            if row is None:
                raise AuditIntegrityError("audit log: the chain head row is missing", first_bad_seq=1)
            yield cur, row[0], row[1]
            if self._pg or self._own_path is None:
                raw.commit()
            else:
                cur.execute("COMMIT")

    # -- writing -----------------------------------------------------------------------
    @property
    def spooled(self) -> bool:
        """True when :meth:`spool` writes to a local spool file (else it waits for a commit)."""
        return self._spool is not None

    def record(self, event: AuditEvent) -> AuditRecord:
        """Append ``event``; the record is committed when this returns."""
        return self.record_many([event])[0]

    def record_many(self, events: Sequence[AuditEvent]) -> list[AuditRecord]:
        """Append ``events`` in one transaction, in order; committed when this returns."""
        self.flush()
        now = time.time_ns() // 1000
        return [decode(h, text) for _, h, text in self._append_bodies([(now, body(e)) for e in events])]

    def append(self, event: AuditEvent) -> int:
        """Append one event, committed when this returns (group commit with other threads);
        returns its seq."""
        return self.submit(event).wait()

    def spool(self, event: AuditEvent) -> None:
        """Make ``event`` durable in this process's spool file and queue it for the writer.

        The query path's append: the record survives the process being killed once this
        returns (as a commit to SQLite with ``synchronous=NORMAL`` does), and is chained and
        committed to the metadata store within milliseconds. Without a spool directory this
        is :meth:`append`. An invalid event raises here, before anything is written.
        """
        if self._spool is None:
            self.append(event)
            return
        text = body(event)
        ts = time.time_ns() // 1000
        with self._queue_cv:
            self._ensure_writer()
            try:
                mark = self._spool.write(ts, text)
            except OSError as err:
                raise StoreUnavailable(f"audit log: cannot write the local audit spool: "
                                       f"{err.strerror or err}") from None
            self._queue.append(_Pending(ts, text, None, mark))
            self._queued += 1
            if self._writer_idle:
                self._queue_cv.notify()

    def submit(self, event: AuditEvent) -> AuditTicket:
        """Queue ``event`` for the writer thread and return at once (group commit).

        Whatever is queued when the writer wakes is appended in one transaction, so concurrent
        callers share commits. Call :meth:`AuditTicket.wait` before the described call returns.
        """
        text = body(event)
        ticket = AuditTicket(event.action, self)
        with self._queue_cv:
            self._ensure_writer()
            self._queue.append(_Pending(time.time_ns() // 1000, text, ticket, None))
            self._queued += 1
            self._queue_cv.notify()
        return ticket

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until every record queued so far in this process is committed (and commit the
        spools of processes that died). Reads call this first, so they see every record."""
        self._recover()
        deadline = time.monotonic() + timeout
        with self._queue_cv:
            target = self._queued
            while self._done < target:
                left = deadline - time.monotonic()
                if left <= 0:
                    detail = f" (last error: {self._writer_error})" if self._writer_error else ""
                    raise StoreUnavailable(
                        f"audit log: {target - self._done} record(s) are spooled but not committed yet{detail}")
                self._queue_cv.notify_all()
                self._queue_cv.wait(min(left, 0.05))

    def _ensure_writer(self) -> None:
        """Start this process's writer thread (called with the queue lock held)."""
        thread = self._writer_thread
        if thread is None or self._writer_pid != os.getpid() or not thread.is_alive():
            if self._writer_pid != os.getpid():  # a forked child starts with an empty queue
                self._queue, self._queued, self._done = [], 0, 0
            thread = threading.Thread(target=self._drain, name="headwater-audit-writer", daemon=True)
            self._writer_thread, self._writer_pid = thread, os.getpid()
            thread.start()
            if not self._atexit:
                # A CLI run ends without closing the platform: commit what it spooled on the
                # way out (else the next process commits it from the spool).
                atexit.register(_close_at_exit, weakref.ref(self))
                self._atexit = True

    def _steal(self, ticket: AuditTicket) -> _Pending | None:
        """Take ``ticket``'s record back from the queue if the writer has not started on it."""
        with self._queue_cv:
            for i, item in enumerate(self._queue):
                if item.ticket is ticket:
                    return self._queue.pop(i)
            return None

    def _count_done(self, n: int) -> None:
        with self._queue_cv:
            self._done += n
            self._queue_cv.notify_all()

    def _drain(self) -> None:
        """The writer thread: append what is queued, a batch per transaction. Spooled records
        whose commit fails (metadata store down) stay queued and are retried with backoff; a
        ticket gets the error."""
        backoff = 0.05
        idle_exit = False
        try:
            self._recover()
        except Exception as err:  # noqa: BLE001 - retried on the next flush
            log.warning("audit log: spool recovery failed: %s", _first_line(err))
        while True:
            with self._queue_cv:
                while not self._queue and not self._closing:
                    self._writer_idle = True
                    if not self._queue_cv.wait(_IDLE_EXIT_S) and not self._queue:
                        # Idle: end the thread (the next submit starts another), so an audit
                        # log nobody closes holds no thread and no connection.
                        self._writer_idle = False
                        if self._writer_thread is threading.current_thread():
                            self._writer_thread = None
                        break
                self._writer_idle = False
                if not self._queue:
                    idle_exit = not self._closing
                    break
                linger = self._linger if not self._closing and self._queue[0].ticket is None else 0
            if linger:
                # Gather a group: spooled callers are not waiting for this commit, and nobody
                # wakes the writer while it lingers (a wake-up per record costs the callers).
                time.sleep(linger)
            with self._queue_cv:
                batch, self._queue = self._queue, []
            marks: dict[str, int] = {}
            for item in batch:
                if item.mark is not None:
                    marks[item.mark[0]] = max(marks.get(item.mark[0], 0), item.mark[1])
            try:
                rows = self._append_bodies([(i.ts, i.body) for i in batch], marks)
            except BaseException as err:  # noqa: BLE001 - handed to tickets / retried
                self._writer_error = _first_line(err)
                retry = [i for i in batch if i.ticket is None]
                for item in batch:
                    if item.ticket is not None:
                        item.ticket.error = err
                        item.ticket._done.set()
                with self._queue_cv:
                    self._queue[:0] = retry
                    self._done += len(batch) - len(retry)
                    self._queue_cv.notify_all()
                    closing = self._closing
                if retry:
                    log.warning("audit log: %d spooled record(s) not committed yet, retrying: %s",
                                len(retry), self._writer_error)
                    if closing:
                        return  # they stay in the spool; the next process commits them
                    time.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.05
            self._writer_error = None
            for item, (seq, _, _) in zip(batch, rows, strict=True):
                if item.ticket is not None:
                    item.ticket.seq = seq
                    item.ticket._done.set()
            self._count_done(len(batch))
        if idle_exit:
            with self._lock:
                self._drop_own()

    def _append_bodies(self, items: Sequence[tuple[int, str]],
                       marks: dict[str, int] | None = None) -> list[tuple[int, str, str]]:
        """Chain and commit (ts, body) pairs in one transaction; ``marks`` records how far
        spool files are committed, in the same transaction."""
        if not items:
            return []
        with self._append_txn() as (cur, seq, prev):
            first, first_hash = seq, prev
            rows = []
            checkpoints = []
            given = len(items)
            if self.anchor is not None and self._anchor_pid != os.getpid():
                items = self._anchor_check(first, first_hash, items)
            for ts, text_body in items:
                seq += 1
                text = chain_text(prev, seq, ts, text_body)
                prev = digest(text)
                rows.append((seq, prev, text))
                if seq % self.checkpoint_every == 0:
                    checkpoints.append((seq, prev, self._sign("checkpoint", seq, prev), ts))
            cur.executemany(self._q("INSERT INTO hw_audit_records (seq, hash, record) VALUES (?, ?, ?)"), rows)
            if checkpoints:
                cur.executemany(self._q("INSERT INTO hw_audit_checkpoints (seq, hash, sig, created_us) "
                                        "VALUES (?, ?, ?, ?)"), checkpoints)
            cur.execute(self._q("UPDATE hw_audit_head SET seq = ?, hash = ?, sig = ? WHERE id = 1"),
                        (seq, prev, self._sign("head", seq, prev)))
            if marks:
                cur.executemany(self._q(
                    "INSERT INTO hw_audit_spool (spool, committed) VALUES (?, ?) "
                    "ON CONFLICT (spool) DO UPDATE SET committed = excluded.committed"), list(marks.items()))
        if self.anchor is not None:
            # After the commit: an anchor ahead of the database would fail every verify.
            self.anchor.advance(seq, prev, first, first_hash, self._hash_at)
        return rows[len(rows) - given:]  # the callers' records (an anchor record may precede them)

    def _hash_at(self, seq: int) -> str | None:
        """The stored hash of record ``seq`` (``PRUNED`` when retention removed it, None when it
        is missing): the anchor's continuity check."""
        with self._raw() as raw:
            cur = raw.cursor()
            cur.execute(self._q("SELECT hash FROM hw_audit_records WHERE seq = ?"), (seq,))
            row = cur.fetchone()
            if row is not None:
                raw.rollback()
                return str(row[0])
            cur.execute("SELECT anchor_seq, anchor_hash FROM hw_audit_head WHERE id = 1")
            head = cur.fetchone()
            raw.rollback()
        kept_after = (head[0] or 0) if head else 0
        if seq == kept_after and head is not None:
            return str(head[1])
        return PRUNED if seq < kept_after else None

    def _anchor_check(self, head: int, head_hash: str, items: Sequence[tuple[int, str]]) -> Sequence[tuple[int, str]]:
        """Once per process, in the first append's transaction (which holds the chain head, so
        no other process appends meanwhile): a missing anchor is created at the current head
        before this commit, so no later process takes the gap between a commit and its anchor
        write for a missing anchor. Over a log with records (an upgrade, or an anchor deleted)
        the chain says so in an ``audit_anchor`` record: a deleted anchor leaves evidence."""
        assert self.anchor is not None
        try:
            if self.anchor.read() is not None:
                self._anchor_pid = os.getpid()
                return items
            self.anchor.start(head, head_hash)
        except (AuditIntegrityError, StoreError, OSError) as err:
            log.error("audit anchor: %s", err)  # left as it is; verify reports it
            return items
        self._anchor_pid = os.getpid()
        if head == 0:
            return items
        log.warning("audit log has %d record(s) but no anchor at %s; anchoring from this commit on",
                    head, self.anchor.where)
        event = AuditEvent(actor="headwater", action="audit_anchor", reason="no anchor found; anchoring the head",
                           extra={"anchor": self.anchor.where, "head_seq": head})
        return [(items[0][0], body(event)), *items]

    # -- spool recovery ----------------------------------------------------------------
    def _recover(self) -> int:
        """Commit the uncommitted entries of spool files whose process died; returns how many.

        Runs once per process when it first reads or writes, and on every :meth:`flush`.
        """
        if self._spool is None:
            return 0
        total = 0
        for name, path in _spool.orphans(self._spool.directory, self._spool):
            with self._raw() as raw:
                cur = raw.cursor()
                cur.execute(self._q("SELECT committed FROM hw_audit_spool WHERE spool = ?"), (name,))
                row = cur.fetchone()
                raw.rollback()
            entries = _spool.read_entries(path, row[0] if row else 0)
            if entries:
                self._append_bodies([(ts, text) for _, ts, text in entries], {name: entries[-1][0]})
                log.info("audit log: committed %d record(s) from the spool of a process that died (%s)",
                         len(entries), name)
                total += len(entries)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            self._forget_spool(name)
        return total

    def _forget_spool(self, name: str) -> None:
        with self._raw() as raw:
            cur = raw.cursor()
            cur.execute(self._q("DELETE FROM hw_audit_spool WHERE spool = ?"), (name,))
            raw.commit()

    def checkpoint(self) -> Checkpoint | None:
        """Sign the current chain head as a checkpoint now (None while the log is empty)."""
        self.flush()
        now = time.time_ns() // 1000
        with self._append_txn() as (cur, seq, hash_):
            if seq == 0:
                return None
            cur.execute(self._q("SELECT seq, hash, sig FROM hw_audit_checkpoints WHERE seq = ?"), (seq,))
            row = cur.fetchone()
            if row is not None:
                return Checkpoint(*row)
            sig = sign(self._key, "checkpoint", seq, hash_)
            cur.execute(self._q("INSERT INTO hw_audit_checkpoints (seq, hash, sig, created_us) "
                                "VALUES (?, ?, ?, ?)"), (seq, hash_, sig, now))
        return Checkpoint(seq, hash_, sig)

    def checkpoints(self) -> list[Checkpoint]:
        """Every stored checkpoint, oldest first (export them to anchor the log elsewhere)."""
        self.flush()
        with self._raw() as raw:
            cur = raw.cursor()
            cur.execute("SELECT seq, hash, sig FROM hw_audit_checkpoints ORDER BY seq")
            return [Checkpoint(*row) for row in cur.fetchall()]

    # -- verification ------------------------------------------------------------------
    def verify(self, *, start: int | None = None, strict: bool = False) -> VerifyReport:
        """Check the whole chain (or from seq ``start``): hashes, links, seq continuity,
        checkpoint and head signatures, the tail against the signed head, and the head against
        the anchor outside the metadata database (``rolled_back`` when records were cut off
        and an older signed head restored). ``strict`` raises :class:`AuditIntegrityError`
        instead of returning a failed report."""
        self.flush()
        anchored: AnchorState | None = None
        anchor_problem: str | None = None
        if self.anchor is not None:
            self.anchor.flush()
            # Read before the database snapshot: the anchor only advances after a commit, so
            # an anchor read first is never ahead of a later snapshot of an intact log.
            try:
                anchored = self.anchor.highest()
            except AuditIntegrityError as err:
                anchor_problem = str(err)
        with self._raw() as raw:
            report = _verify.verify(raw, self._dialect, self._key, start, connect=self._raw)
            if self.anchor is not None:
                report = self._check_anchor(raw, report, anchored, anchor_problem)
        return report.check() if strict else report

    def _check_anchor(self, raw: Any, report: VerifyReport, anchored: AnchorState | None,
                      problem: str | None) -> VerifyReport:
        """``report`` with the head compared to the anchor, in the verify's snapshot."""
        assert self.anchor is not None
        where = self.anchor.where
        cur = raw.cursor()
        cur.execute("SELECT seq, anchor_seq, anchor_hash FROM hw_audit_head WHERE id = 1")
        row = cur.fetchone()
        head = row[0] if row else 0
        bad: int | None = None
        if problem is None and anchored is None and head > 0:
            problem = (f"no audit anchor at {where} but the log has {head} record(s): a deleted anchor "
                       "cannot rule out records cut off (it is recreated by the next append)")
            bad = head
        elif problem is None and anchored is not None:
            if head < anchored.seq:
                problem = (f"records {head + 1}..{anchored.seq} were cut off: the chain ends at seq {head} "
                           f"but the anchor at {where} records seq {anchored.seq} (an older head was restored)")
                bad = head + 1
            elif anchored.seq > 0:
                kept_from = (row[1] or 0) if row else 0
                if anchored.seq > kept_from:
                    cur.execute(self._q("SELECT hash FROM hw_audit_records WHERE seq = ?"), (anchored.seq,))
                    found = cur.fetchone()
                    stored = found[0] if found else None
                else:
                    stored = row[2] if row and anchored.seq == kept_from else anchored.hash  # behind retention
                if stored != anchored.hash:
                    problem = (f"record {anchored.seq} is not the one anchored at {where}: the chain was cut "
                               "back and written again")
                    bad = anchored.seq
        elif problem is not None:
            bad = head
        extra = {"head_anchor": where, "head_anchor_seq": anchored.seq if anchored else None}
        if problem is None:
            return dataclasses.replace(report, **extra)
        if not report.ok:  # the chain's own break is what it reports
            return dataclasses.replace(report, **extra)
        return dataclasses.replace(report, ok=False, first_bad_seq=bad, problem=problem, rolled_back=True, **extra)

    # -- reading -----------------------------------------------------------------------
    def query(
        self,
        *,
        actor: str | None = None,
        dataset: str | None = None,
        action: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        limit: int | None = 1000,
        newest_first: bool = False,
    ) -> list[AuditRecord]:
        """Records matching every given filter (``since`` inclusive, ``until`` exclusive),
        in seq order (``newest_first`` reverses it), at most ``limit`` (None: all)."""
        self.flush()
        out: list[AuditRecord] = []
        for rec in self._iter(actor=actor, dataset=dataset, action=action, since=since,
                              until=until, newest_first=newest_first):
            if limit is not None and len(out) >= limit:
                break
            out.append(rec)
        return out

    def _iter(self, *, actor: str | None = None, dataset: str | None = None,
              action: str | None = None, since: dt.datetime | None = None,
              until: dt.datetime | None = None, newest_first: bool = False) -> Iterator[AuditRecord]:
        where: list[str] = []
        params: list[Any] = []
        if actor is not None:
            where.append("actor = ?")
            params.append(actor)
        if action is not None:
            where.append("action = ?")
            params.append(action)
        if since is not None:
            where.append("ts >= ?")
            params.append(to_us(since))
        if until is not None:
            where.append("ts < ?")
            params.append(to_us(until))
        if dataset is not None:
            # a superset by LIKE on the generated column, made exact below
            quoted = json.dumps(dataset)
            pattern = "%" + quoted.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            where.append("datasets LIKE ? ESCAPE '\\'")
            params.append(pattern)
        cmp, order = ("<", "DESC") if newest_first else (">", "ASC")
        cursor_seq: int | None = None
        while True:
            clauses = list(where)
            page_params = list(params)
            if cursor_seq is not None:
                clauses.append(f"seq {cmp} ?")
                page_params.append(cursor_seq)
            sql = "SELECT seq, hash, record FROM hw_audit_records"
            if clauses:
                sql += " WHERE " + " AND ".join(clauses)
            sql += f" ORDER BY seq {order} LIMIT {_PAGE}"
            with self._raw() as raw:
                cur = raw.cursor()
                cur.execute(self._q(sql), page_params)
                rows = cur.fetchall()
            for seq, hash_, text in rows:
                try:
                    rec = decode(hash_, text)
                except (ValueError, TypeError, KeyError):
                    log.warning("audit record %s is malformed; run verify", seq)
                    continue
                if dataset is None or dataset in rec.datasets:
                    yield rec
            if len(rows) < _PAGE:
                return
            cursor_seq = rows[-1][0]

    def export(
        self,
        path: str | Path,
        format: Literal["jsonl", "parquet"] = "jsonl",  # noqa: A002 - the CLI's word
        **filters: Any,
    ) -> int:
        """Write the records matching ``filters`` (as :meth:`query`, without ``limit``) to
        ``path`` as JSON Lines or Parquet; returns how many were written."""
        unknown = set(filters) - {"actor", "dataset", "action", "since", "until", "newest_first"}
        if unknown:
            raise InvalidInput(f"unknown audit export filter(s): {', '.join(sorted(unknown))}")
        from headwater.audit._export import write_jsonl, write_parquet

        self.flush()

        records = self._iter(**filters)
        if format == "jsonl":
            return write_jsonl(Path(path), records)
        if format == "parquet":
            return write_parquet(Path(path), records)
        raise InvalidInput(f"audit export format must be 'jsonl' or 'parquet', not {format!r}")

    # -- retention ---------------------------------------------------------------------
    def apply_retention(self, now: dt.datetime | None = None) -> int:
        """Delete the oldest records older than ``retention_days``; returns how many.

        Only a prefix of the chain goes (records up to the first one young enough to keep),
        and the hash of the last deleted record becomes the signed retention anchor that
        :meth:`verify` starts from. Refuses (:class:`AuditIntegrityError`) while the chain is
        broken, so retention never erases the evidence of tampering.
        """
        if self.retention_days is None:
            return 0
        self.flush()
        now = now or dt.datetime.now(dt.UTC)
        cutoff = to_us(now - dt.timedelta(days=self.retention_days))
        report = self.verify()
        if not report.ok:
            raise AuditIntegrityError(
                f"audit chain is broken at seq {report.first_bad_seq} ({report.problem}); "
                "retention refused", first_bad_seq=report.first_bad_seq)
        with self._append_txn() as (cur, head_seq, _):
            cur.execute("SELECT anchor_seq FROM hw_audit_head WHERE id = 1")
            anchor = cur.fetchone()[0] or 0
            cur.execute(self._q("SELECT min(seq) FROM hw_audit_records WHERE ts >= ? AND seq > ?"),
                        (cutoff, anchor))
            keep_from = cur.fetchone()[0]
            last = head_seq if keep_from is None else keep_from - 1
            if last <= anchor:
                return 0
            cur.execute(self._q("SELECT hash FROM hw_audit_records WHERE seq = ?"), (last,))
            row = cur.fetchone()
            if row is None:
                raise AuditIntegrityError(f"audit record {last} is missing; retention refused",
                                          first_bad_seq=last)
            anchor_hash = row[0]
            cur.execute(self._q("UPDATE hw_audit_head SET anchor_seq = ?, anchor_hash = ?, "
                                "anchor_sig = ? WHERE id = 1"),
                        (last, anchor_hash, sign(self._key, "anchor", last, anchor_hash)))
            cur.execute(self._q("DELETE FROM hw_audit_records WHERE seq <= ?"), (last,))
            deleted = cur.rowcount
            cur.execute(self._q("DELETE FROM hw_audit_checkpoints WHERE seq <= ?"), (last,))
        log.info("audit retention removed %d records up to seq %d", deleted, last)
        return deleted

    def stats(self) -> dict[str, Any]:
        """Head seq, record count and retention anchor (cheap; no verification)."""
        self.flush()
        with self._raw() as raw:
            cur = raw.cursor()
            cur.execute("SELECT seq, anchor_seq FROM hw_audit_head WHERE id = 1")
            head = cur.fetchone()
            cur.execute("SELECT count(*) FROM hw_audit_records")
            count = cur.fetchone()[0]
        return {"head_seq": head[0] if head else None, "records": count,
                "anchor_seq": head[1] if head else None}



def _close_at_exit(ref: weakref.ref[AuditLog]) -> None:
    audit = ref()
    if audit is not None:
        with contextlib.suppress(Exception):
            audit.close()


def _rollback(raw: Any) -> None:
    with contextlib.suppress(Exception):
        raw.rollback()


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
