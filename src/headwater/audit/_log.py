"""The audit log on the metadata store: append, checkpoint, verify, query, export, retention.

Appends are serialised by the chain head row (``BEGIN IMMEDIATE`` on SQLite, ``SELECT ... FOR
UPDATE`` on Postgres) and by a per-log lock between threads, so any number of threads and
processes extend one chain. Each append is a committed transaction before :meth:`record`
returns. The class has no update or delete method; only :meth:`apply_retention` removes
records, and it leaves a signed anchor so the rest of the chain still verifies.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from headwater.audit import _verify
from headwater.audit._model import (
    AuditEvent,
    AuditIntegrityError,
    AuditRecord,
    Checkpoint,
    VerifyReport,
    decode,
    digest,
    encode,
    sign,
    to_us,
)
from headwater.errors import InvalidInput, StoreError, StoreUnavailable

__all__ = ["AuditLog", "AuditTicket"]

log = logging.getLogger("headwater.audit")

_PAGE = 1000


class AuditTicket:
    """A submitted audit event; :meth:`wait` returns once its record is committed.

    Obtained from :meth:`AuditLog.submit`. The caller must wait before the call the event
    describes returns: that is what makes the record durable before the caller sees a result.
    """

    __slots__ = ("_done", "_log", "error", "event", "seq")

    def __init__(self, event: AuditEvent, log: AuditLog) -> None:
        self.event = event
        self._log = log
        self.seq = 0
        self.error: BaseException | None = None
        self._done = threading.Event()

    def __repr__(self) -> str:
        state = "committed" if self._done.is_set() and self.error is None else (
            "failed" if self.error is not None else "pending")
        return f"AuditTicket(action={self.event.action!r}, {state})"

    def wait(self, timeout: float | None = None) -> int:
        """Block until the record is committed; returns its seq or raises the append's error.

        A ticket the writer thread has not picked up yet is appended by the caller itself,
        so a busy machine's thread wake-up latency never adds to the call.
        """
        if not self._done.is_set() and self._log._steal(self):
            try:
                self.seq = self._log._append([self.event])[0][0]
            except BaseException as err:  # noqa: BLE001 - raised below, as from the writer
                self.error = err
            self._done.set()
        if not self._done.wait(timeout):
            raise StoreUnavailable("audit log: the record was not committed in time")
        if self.error is not None:
            raise self.error
        return self.seq


class AuditLog:
    """A tamper-evident audit log in a :class:`~headwater.metadata.MetadataStore`.

    ``signing_key`` signs checkpoints, the chain head and the retention anchor (HMAC-SHA256);
    keep it out of the metadata database. A checkpoint is written every ``checkpoint_every``
    records. ``retention_days=None`` keeps records forever.
    """

    def __init__(
        self,
        meta: Any,
        *,
        signing_key: bytes,
        checkpoint_every: int = 1000,
        retention_days: int | None = None,
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
        # Group commit: submit() queues, one writer thread per process appends what is queued.
        self._queue: list[AuditTicket] = []
        self._queue_cv = threading.Condition(threading.Lock())
        self._writer_thread: threading.Thread | None = None
        self._writer_pid = 0
        self._closing = False
        dbapi = self._engine.dialect.loaded_dbapi
        self._operational = dbapi.OperationalError
        self._dbapi_error = dbapi.Error

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
        """Commit what is queued, stop the writer thread and close the dedicated connection
        (pooled connections belong to the metadata store)."""
        with self._queue_cv:
            self._closing = True
            self._queue_cv.notify_all()
            thread = self._writer_thread if self._writer_pid == os.getpid() else None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=30)
        with self._queue_cv:
            self._writer_thread = None
            self._closing = False
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
    def record(self, event: AuditEvent) -> AuditRecord:
        """Append ``event``; the record is committed when this returns."""
        return self.record_many([event])[0]

    def record_many(self, events: Sequence[AuditEvent]) -> list[AuditRecord]:
        """Append ``events`` in one transaction (group commit), in order."""
        return [decode(h, text) for _, h, text in self._append(events)]

    def append(self, event: AuditEvent) -> int:
        """Append one event without reading it back (the query path); returns its seq."""
        return self._append([event])[-1][0]

    def submit(self, event: AuditEvent) -> AuditTicket:
        """Queue ``event`` for the writer thread and return at once (group commit).

        Whatever is queued when the writer wakes is appended in one transaction, so work can
        overlap the commit (the query path submits before it executes) and concurrent callers
        share commits. Call :meth:`AuditTicket.wait` before the described call returns.
        """
        ticket = AuditTicket(event, self)
        with self._queue_cv:
            thread = self._writer_thread
            if thread is None or self._writer_pid != os.getpid() or not thread.is_alive():
                thread = threading.Thread(target=self._drain, name="headwater-audit-writer", daemon=True)
                self._writer_thread, self._writer_pid = thread, os.getpid()
                thread.start()
            self._queue.append(ticket)
            self._queue_cv.notify()
        return ticket

    def _steal(self, ticket: AuditTicket) -> bool:
        """Take ``ticket`` back from the queue if the writer has not started on it."""
        with self._queue_cv:
            try:
                self._queue.remove(ticket)
            except ValueError:
                return False
            return True

    def _drain(self) -> None:
        """The writer thread: append every queued event, a batch per transaction."""
        while True:
            with self._queue_cv:
                while not self._queue and not self._closing:
                    self._queue_cv.wait()
                if not self._queue:
                    return
                batch, self._queue = self._queue, []
            try:
                for ticket, (seq, _, _) in zip(batch, self._append([t.event for t in batch]), strict=True):
                    ticket.seq = seq
            except BaseException as err:  # noqa: BLE001 - handed to the waiting callers
                if len(batch) == 1:
                    batch[0].error = err
                else:  # one bad event must not fail the others: append them one by one
                    for ticket in batch:
                        try:
                            ticket.seq = self._append([ticket.event])[0][0]
                        except BaseException as one:  # noqa: BLE001
                            ticket.error = one
            for ticket in batch:
                ticket._done.set()

    def _append(self, events: Sequence[AuditEvent]) -> list[tuple[int, str, str]]:
        if not events:
            return []
        now = time.time_ns() // 1000
        with self._append_txn() as (cur, seq, prev):
            rows = []
            checkpoints = []
            for event in events:
                seq += 1
                text = encode(prev, seq, now, event)
                prev = digest(text)
                rows.append((seq, prev, text))
                if seq % self.checkpoint_every == 0:
                    checkpoints.append((seq, prev, self._sign("checkpoint", seq, prev), now))
            cur.executemany(self._q("INSERT INTO hw_audit_records (seq, hash, record) VALUES (?, ?, ?)"), rows)
            if checkpoints:
                cur.executemany(self._q("INSERT INTO hw_audit_checkpoints (seq, hash, sig, created_us) "
                                        "VALUES (?, ?, ?, ?)"), checkpoints)
            cur.execute(self._q("UPDATE hw_audit_head SET seq = ?, hash = ?, sig = ? WHERE id = 1"),
                        (seq, prev, self._sign("head", seq, prev)))
        return rows

    def checkpoint(self) -> Checkpoint | None:
        """Sign the current chain head as a checkpoint now (None while the log is empty)."""
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
        with self._raw() as raw:
            cur = raw.cursor()
            cur.execute("SELECT seq, hash, sig FROM hw_audit_checkpoints ORDER BY seq")
            return [Checkpoint(*row) for row in cur.fetchall()]

    # -- verification ------------------------------------------------------------------
    def verify(self, *, start: int | None = None) -> VerifyReport:
        """Check the whole chain (or from seq ``start``): hashes, links, seq continuity,
        checkpoint and head signatures, and the tail against the signed head."""
        with self._raw() as raw:
            return _verify.verify(raw, self._dialect, self._key, start)

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
        with self._raw() as raw:
            cur = raw.cursor()
            cur.execute("SELECT seq, anchor_seq FROM hw_audit_head WHERE id = 1")
            head = cur.fetchone()
            cur.execute("SELECT count(*) FROM hw_audit_records")
            count = cur.fetchone()[0]
        return {"head_seq": head[0] if head else None, "records": count,
                "anchor_seq": head[1] if head else None}



def _rollback(raw: Any) -> None:
    with contextlib.suppress(Exception):
        raw.rollback()


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
