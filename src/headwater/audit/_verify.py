"""Chain verification, built for speed: no Python bytecode runs per record on the fast paths.

Records are checked in seq ranges of ``BATCH``. Per record the fast paths check that its text
starts with ``["<previous hash>",<expected seq>,`` (so it links to its predecessor and sits at
the seq it was written for) and that its SHA-256 equals its stored hash; per range, count, min
and max of the seq column (so the seq column equals the seq inside every record) and the hash
at every checkpoint.

* SQLite (:mod:`headwater.audit._verify_sqlite`): one aggregate query per range returns the
  hashes and the texts as two long strings; the checks are C-level ``map`` calls (OpenSSL's
  SHA-256). A log of ``2 * PARALLEL_MIN_RANGES`` ranges or more is split in two: the second half
  is checked by a worker process (standard library only, on its own read-only connection), the
  first half here meanwhile, so two cores hash.
* Postgres (:mod:`headwater.audit._verify_pg`): the server checks every record of a range
  itself (``pg_catalog.sha256``, ``lag(hash)``) and returns one summary row.

Anything unusual in a range sends that range through the slow path, which reads it row by row
and names the first bad record and what is wrong; the fast paths only ever vouch for ranges.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import json
import os
import subprocess
import threading
import time
from typing import TYPE_CHECKING, Any

from headwater.audit import _verify_sqlite as _fast
from headwater.audit._model import GENESIS, VerifyReport, signed

if TYPE_CHECKING:
    from headwater.audit._verify_pg import Connect

BATCH = 20_000
"""Records per range (a range is one query and one C-level check)."""

PG_BATCH = 5_000
"""Records per range on Postgres: the range is sorted by seq for ``lag``, and a sort of 5,000
records stays within the default ``work_mem`` (4 MB), where 20,000 spill to disk."""

PARALLEL_MIN_RANGES = 5
"""A log of at least twice this many ranges is checked in two halves at once (given two CPUs):
two processes on SQLite, two connections on Postgres. Below that, starting the second costs
more than it saves."""


class _Bad(Exception):
    def __init__(self, seq: int, problem: str) -> None:
        self.seq = seq
        self.problem = problem


def verify(raw: Any, dialect: str, key: bytes, start: int | None, *,
           connect: Connect | None = None) -> VerifyReport:
    """Verify the chain on DBAPI connection ``raw`` (left in a transaction the caller ends);
    ``connect`` opens a second connection to the same database (Postgres checks a long log on
    both at once)."""
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
            exp_seq, last_hash = _stream(raw, dialect, first, prev, hi_seq, cps, connect)
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
            cps: list[tuple[int, str]],
            connect: Connect | None = None) -> tuple[int, str]:
    """Check records ``first..hi_seq``; returns (next expected seq, last hash) or raises _Bad."""
    size = min(BATCH, PG_BATCH) if dialect == "postgresql" else BATCH
    ranges = [(lo, min(lo + size, hi_seq + 1)) for lo in range(first, hi_seq + 1, size)]
    split = len(ranges) >= 2 * PARALLEL_MIN_RANGES and _cpus() > 1
    if dialect == "postgresql":
        from headwater.audit._verify_pg import stream_pg

        return stream_pg(raw, ranges, first, prev, cps, _slow_range, connect=connect if split else None)
    exp_seq = first
    path = _sqlite_file(raw) if split else None
    if path is not None:
        # The second half goes to a worker process (its own connection, so its own snapshot:
        # the records below the head are append-only), the first is checked here meanwhile.
        # The worker starts from the stored hash of the record before its half, which this
        # half verifies; whatever the worker does not vouch for is checked again below, so a
        # failed, killed or confused worker only costs time.
        half = ranges[len(ranges) // 2:]
        cur = raw.cursor()
        cur.execute("SELECT hash FROM hw_audit_records WHERE seq = ?", (half[0][0] - 1,))
        row = cur.fetchone()
        if row is not None and isinstance(row[0], str):
            job = {"path": path, "ranges": half, "prev": row[0],
                   "cps": _fast.cps_between(cps, half[0][0], hi_seq + 1)}
            (exp_seq, prev), (w_next, w_last) = _in_worker(job, lambda: _sqlite_ranges(
                raw, ranges[:len(ranges) // 2], first, prev, cps))
            if exp_seq == half[0][0] and prev == row[0] and w_last is not None:
                # a confused worker (another file, say) ends on a hash this snapshot lacks
                cur.execute("SELECT hash FROM hw_audit_records WHERE seq = ?", (w_next - 1,))
                if cur.fetchone() == (w_last,):
                    exp_seq, prev = w_next, w_last
            ranges = [r for r in half if r[0] >= exp_seq]
    return _sqlite_ranges(raw, ranges, exp_seq, prev, cps)


def _in_worker(job: dict[str, Any], here: Any) -> tuple[tuple[int, str], tuple[int, str | None]]:
    """Run ``job`` in a worker process while ``here()`` runs in this one; returns (``here()``,
    the worker's (first seq not vouched for, last hash))."""
    command = _fast.worker_command()
    try:
        if command is None:
            raise OSError("no Python interpreter to start")
        proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL)
    except OSError:
        return here(), (job["ranges"][0][0], None)
    try:
        feed = threading.Thread(target=_feed, args=(proc, json.dumps(job).encode()), daemon=True)
        feed.start()
        mine = here()
        out = proc.stdout.read() if proc.stdout else b""
        feed.join()
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()
    return mine, _fast.parse_result(out, job["ranges"]) if proc.returncode == 0 \
        else (job["ranges"][0][0], None)


def _feed(proc: subprocess.Popen[bytes], data: bytes) -> None:
    with contextlib.suppress(OSError):
        assert proc.stdin is not None
        proc.stdin.write(data)
        proc.stdin.close()


def _cpus() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on every platform
        return os.cpu_count() or 1


def _sqlite_file(raw: Any) -> str | None:
    """The file of the main SQLite database behind ``raw`` (None: in memory or temporary)."""
    cur = raw.cursor()
    cur.execute("PRAGMA database_list")
    for _, name, file in cur.fetchall():
        if name == "main":
            return file or None
    return None


def _sqlite_ranges(raw: Any, ranges: list[tuple[int, int]], exp_seq: int, prev: str,
                   cps: list[tuple[int, str]]) -> tuple[int, str]:
    """Check consecutive ``ranges`` from ``exp_seq`` in this process: fast, and a range that
    is not perfect row by row."""
    while ranges:
        exp_seq, prev = _fast.stream(raw, ranges, exp_seq, prev, cps)
        ranges = [r for r in ranges if r[0] >= exp_seq]
        if ranges:
            # Something is off in this range: find out exactly what, row by row.
            _, hi = ranges.pop(0)
            exp_seq, prev = _slow_range(raw.cursor(), "sqlite", hi, exp_seq, prev, cps)
    return exp_seq, prev


def _slow_range(cur: Any, dialect: str, hi: int, exp_seq: int, prev: str,
                cps: list[tuple[int, str]]) -> tuple[int, str]:
    """Check records ``exp_seq..hi - 1`` row by row: (next expected seq, last hash) or _Bad."""
    cp_iter = iter(cps[bisect.bisect_left(cps, (exp_seq,)):])
    cp_seq, cp_hash = next(cp_iter, (None, None))
    exp_seq, prev, _, _ = _slow(cur, dialect, hi, exp_seq, prev, cp_seq, cp_hash, cp_iter)
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

