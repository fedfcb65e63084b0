"""Chain verification, built for speed: about one SHA-256 and two string checks per record.

Records are read in seq ranges of ``BATCH`` with one aggregate query per range, which returns
the range's hashes and texts as two long strings (``group_concat`` / ``string_agg``), so no
Python object is made per row by the driver. A background thread fetches the next range while
the current one is hashed (both drivers release the GIL while the database works).

Per record the fast path checks that its text starts with ``["<previous hash>",<expected seq>,``
(so it links to its predecessor and sits at the seq it was written for) and that its SHA-256
equals its stored hash. Per range it checks count, min and max of the seq column, so the seq
column equals the seq inside every record. Anything unusual in a range sends that range through
the slow path, which reads it row by row and names the first bad record and what is wrong.
"""

from __future__ import annotations

import hashlib
import json
import queue
import threading
import time
from typing import Any

from headwater.audit._model import GENESIS, VerifyReport, signed

BATCH = 50_000

_BATCH_SQL = {
    # SQLite aggregates a rowid range in rowid order; no ORDER BY subquery (25% slower). Were
    # the order ever different, the per-record prefix check would send the range to the slow
    # path, which orders explicitly: a slower verify, never a wrong one.
    "sqlite": (
        "SELECT count(*), min(seq), max(seq), group_concat(hash, ''), group_concat(record, char(10)) "
        "FROM hw_audit_records WHERE seq >= ? AND seq < ?"
    ),
    "postgresql": (
        "SELECT count(*), min(seq), max(seq), string_agg(hash, '' ORDER BY seq), "
        "string_agg(record, E'\\n' ORDER BY seq) FROM hw_audit_records WHERE seq >= %s AND seq < %s"
    ),
}


class _Bad(Exception):
    def __init__(self, seq: int, problem: str) -> None:
        self.seq = seq
        self.problem = problem


def verify(raw: Any, dialect: str, key: bytes, start: int | None) -> VerifyReport:
    """Verify the chain on DBAPI connection ``raw`` (left in a transaction the caller ends)."""
    t0 = time.perf_counter()
    pg = dialect == "postgresql"
    p = "%s" if pg else "?"
    cur = raw.cursor()
    # One snapshot for head, checkpoints and records: appends during verify are not seen.
    cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY" if pg else "BEGIN")
    cur.execute("SELECT seq, hash, sig, anchor_seq, anchor_hash, anchor_sig FROM hw_audit_head WHERE id = 1")
    head = cur.fetchone()
    cur.execute("SELECT min(seq), max(seq) FROM hw_audit_records")
    lo_seq, hi_seq = cur.fetchone()
    bad: list[tuple[int, str]] = []

    if head is None:
        return VerifyReport(False, 0, 1, "the chain head row is missing", elapsed_s=time.perf_counter() - t0)
    head_seq, head_hash, head_sig, anchor_seq, anchor_hash, anchor_sig = head
    first, prev = 1, GENESIS
    if anchor_seq is not None:
        first, prev = anchor_seq + 1, anchor_hash
        if not signed(key, "anchor", anchor_seq, anchor_hash, anchor_sig):
            bad.append((first, f"the retention anchor at seq {anchor_seq} has an invalid signature"))
    if lo_seq is not None and lo_seq < first:
        bad.append((lo_seq, f"record {lo_seq} precedes the start of the chain (seq {first}): inserted"))
    if start is not None and start > first:
        cur.execute(f"SELECT hash FROM hw_audit_records WHERE seq = {p}", (start - 1,))
        row = cur.fetchone()
        if row is None:
            bad.append((start - 1, f"record {start - 1} is missing (deleted)"))
        else:
            first, prev = start, row[0]

    cur.execute(f"SELECT seq, hash, sig FROM hw_audit_checkpoints WHERE seq >= {p} ORDER BY seq", (first,))
    checkpoints = cur.fetchall()
    cp_bad = [(s, f"checkpoint at seq {s} has an invalid signature")
              for s, h, sig in checkpoints if not signed(key, "checkpoint", s, h, sig)]
    bad.extend(cp_bad)
    cps = [(s, h) for s, h, _ in checkpoints]

    exp_seq = first
    last_hash = prev
    if hi_seq is not None and hi_seq >= first:
        try:
            exp_seq, last_hash = _stream(raw, dialect, first, prev, hi_seq, cps)
        except _Bad as err:
            bad.append((err.seq, err.problem))
            exp_seq = err.seq
            last_hash = None
    last = exp_seq - 1
    if last_hash is not None:  # the chain itself is intact up to ``last``
        for s, _ in cps:
            if s > last:
                bad.append((last + 1, f"the log ends at seq {last} but a checkpoint signs seq {s}: "
                                      "records were deleted from the tail"))
                break
        if head_sig is None and head_seq == 0:
            if last >= first:
                bad.append((first, "records exist but the chain head was never signed: inserted"))
        elif not signed(key, "head", head_seq, head_hash, head_sig):
            bad.append((min(head_seq, last) + 1, "the chain head has an invalid signature"))
        elif head_seq > last:
            bad.append((last + 1, f"the log ends at seq {last} but the chain head is at seq "
                                  f"{head_seq}: records were deleted from the tail"))
        elif head_seq < last:
            bad.append((head_seq + 1, f"records after seq {head_seq} were not appended through the "
                                      "audit log: inserted"))
        elif head_seq >= first and head_hash != last_hash:
            bad.append((head_seq, f"record {head_seq} does not match the signed chain head"))

    elapsed = time.perf_counter() - t0
    n_cp = len(cps)
    if bad:
        seq, problem = min(bad)
        return VerifyReport(False, max(0, min(seq, exp_seq) - first), seq, problem, first, last,
                            n_cp, elapsed)
    return VerifyReport(True, max(0, last - first + 1), None, None, first, last, n_cp, elapsed)


def _stream(raw: Any, dialect: str, first: int, prev: str, hi_seq: int,
            cps: list[tuple[int, str]]) -> tuple[int, str]:
    """Check records ``first..hi_seq``; returns (next expected seq, last hash) or raises _Bad."""
    sql = _BATCH_SQL[dialect]
    ranges = [(lo, min(lo + BATCH, hi_seq + 1)) for lo in range(first, hi_seq + 1, BATCH)]
    batches: queue.Queue[Any] = queue.Queue(maxsize=2)
    stop = threading.Event()

    def fetch() -> None:
        cur = raw.cursor()
        try:
            for lo, hi in ranges:
                if stop.is_set():
                    return
                cur.execute(sql, (lo, hi))
                batches.put((lo, hi, cur.fetchone()))
        except BaseException as err:  # noqa: BLE001 - handed to the consuming thread
            batches.put(err)

    worker = threading.Thread(target=fetch, name="headwater-audit-verify", daemon=True)
    worker.start()
    sync_cur = None  # after an anomaly the connection is used from this thread only

    def halt() -> None:
        stop.set()
        while worker.is_alive():
            try:
                batches.get(timeout=0.05)
            except queue.Empty:
                pass
        worker.join()

    cp_iter = iter(cps)
    cp_seq, cp_hash = next(cp_iter, (None, None))
    exp_seq = first
    sha = hashlib.sha256
    try:
        for lo, hi in ranges:
            if sync_cur is None:
                item = batches.get()
                if isinstance(item, BaseException):
                    raise item
                row = item[2]
            else:
                sync_cur.execute(sql, (lo, hi))
                row = sync_cur.fetchone()
            count, mn, mx, hashes, texts = row
            ok = (count and mn == exp_seq and mx == mn + count - 1
                  and len(hashes) == 64 * count)
            lines = texts.split("\n") if ok else ()
            if ok and len(lines) == count:
                i = 0
                for line in lines:
                    h = hashes[i:i + 64]
                    if not line.startswith(f'["{prev}",{exp_seq},') or sha(line.encode()).hexdigest() != h:
                        break
                    if exp_seq == cp_seq:
                        if h != cp_hash:
                            break
                        cp_seq, cp_hash = next(cp_iter, (None, None))
                    prev = h
                    exp_seq += 1
                    i += 64
                else:
                    continue
            # Something is off in this range: find out exactly what, row by row.
            if sync_cur is None:
                halt()
                sync_cur = raw.cursor()
            exp_seq, prev, cp_seq, cp_hash = _slow(sync_cur, dialect, hi, exp_seq, prev,
                                                   cp_seq, cp_hash, cp_iter)
    finally:
        halt()
    return exp_seq, prev


def _slow(cur: Any, dialect: str, hi: int, exp_seq: int, prev: str,
          cp_seq: int | None, cp_hash: str | None, cp_iter: Any) -> tuple[Any, ...]:
    p = "%s" if dialect == "postgresql" else "?"
    cur.execute(f"SELECT seq, hash, record FROM hw_audit_records WHERE seq >= {p} AND seq < {p} "
                "ORDER BY seq", (exp_seq, hi))
    for seq, h, text in cur.fetchall():
        if seq != exp_seq:
            raise _Bad(exp_seq, f"record {exp_seq} is missing (deleted)")
        try:
            body = json.loads(text)
            ok_shape = isinstance(body, list) and len(body) == 8
        except ValueError:
            ok_shape = False
        if not ok_shape:
            raise _Bad(seq, f"record {seq} is not a well-formed audit record: edited")
        if body[1] != seq:
            raise _Bad(seq, f"record stored at seq {seq} was written as seq {body[1]}: "
                            "reordered or moved")
        if body[0] != prev:
            raise _Bad(seq, f"record {seq} does not link to record {seq - 1} "
                            "(prev_hash mismatch): a record was inserted, replaced or edited")
        if not text.startswith(f'["{prev}",{seq},'):
            raise _Bad(seq, f"record {seq} is not in canonical form: edited")
        if hashlib.sha256(text.encode()).hexdigest() != h:
            raise _Bad(seq, f"record {seq} does not match its hash: edited")
        if seq == cp_seq:
            if h != cp_hash:
                raise _Bad(seq, f"record {seq} does not match the signed checkpoint at seq {seq}: "
                                "the chain was rewritten")
            cp_seq, cp_hash = next(cp_iter, (None, None))
        prev = h
        exp_seq += 1
    if exp_seq < hi:
        raise _Bad(exp_seq, f"record {exp_seq} is missing (deleted)")
    return exp_seq, prev, cp_seq, cp_hash

