"""The SQLite fast path of chain verification, and its worker process.

Standard library only, on purpose: the second half of a large log is checked by this file run
as a script (``python -I -S _verify_sqlite.py``, about 0.1 s to start, against 2 s to import the
``headwater`` package) in its own process, so hashing uses both cores instead of one GIL. The
worker reads the database file read-only on its own connection and reports how far the chain
is intact; it never decides that something is wrong: the calling process re-checks every range
the worker did not vouch for, with the exact row-by-row slow path of
:mod:`headwater.audit._verify`.

Per range, one aggregate query returns count, min and max of the seq column, the hashes as one
string and the texts as one newline-joined BLOB (no Python object per row in the driver, no
UTF-8 decoding); a background thread runs the next query while the current range is checked
(the driver releases the GIL while SQLite works). The checks run as C-level ``map`` calls,
with no Python bytecode per record: the joined SHA-256 hex digests of the texts equal the
joined stored hashes, and every text starts with ``["<previous hash>",<expected seq>,``.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import os
import queue
import sqlite3
import sys
import threading
from typing import Any
from urllib.parse import quote

# SQLite aggregates a rowid range in rowid order; no ORDER BY subquery (25% slower). Were the
# order ever different, the prefix check would send the range to the slow path, which orders
# explicitly: a slower verify, never a wrong one. The separator is a literal newline
# (``char(10)`` is a call per row). Canonical texts are ASCII with escaped newlines, so a raw
# newline only appears in an edited record, which then breaks the line count. Checking the
# prefixes in SQL (substr, ||) costs SQLite more than the whole check costs Python.
BATCH_SQL = (
    "SELECT count(*), min(seq), max(seq), group_concat(hash, ''), "
    "CAST(group_concat(record, '\n') AS BLOB), "
    "sum(typeof(hash) != 'text' OR typeof(record) != 'text' OR length(hash) != 64) "
    "FROM hw_audit_records WHERE seq >= ? AND seq < ?"
)

_sha256 = hashlib.sha256
_digest = type(_sha256()).digest

Ranges = list[tuple[int, int]]
Checkpoints = list[tuple[int, str]]


def cps_between(cps: Checkpoints, lo: int, hi: int) -> Checkpoints:
    """The checkpoints (sorted by seq) with ``lo <= seq < hi``."""
    return cps[bisect.bisect_left(cps, (lo,)):bisect.bisect_left(cps, (hi,))]


def check_range(row: Any, exp_seq: int, prev: str, cps: Checkpoints) -> str | None:
    """The fast check of one range: its last hash if every record is intact, else None.

    ``row`` is a :data:`BATCH_SQL` row; ``cps`` the checkpoints inside the range.
    """
    count, mn, mx, hashes, texts, odd = row
    if not (count and mn == exp_seq and mx == mn + count - 1 and odd == 0
            and isinstance(hashes, str) and len(hashes) == 64 * count
            and isinstance(texts, bytes)):
        return None
    for seq, cp_hash in cps:
        at = 64 * (seq - exp_seq)
        if hashes[at:at + 64] != cp_hash:
            return None
    lines = texts.split(b"\n")
    if len(lines) != count:
        return None
    # every text hashes to its stored hash (lowercase hex, exactly as the slow path compares)
    if b"".join(map(_digest, map(_sha256, lines))).hex() != hashes:
        return None
    # every text starts with ["<previous record's hash>",<its seq>,
    hb = hashes.encode()
    n = len(hb)
    prevs = [prev.encode()]
    prevs += map(hb.__getitem__, map(slice, range(0, n - 64, 64), range(64, n, 64)))
    prefixes = map(b'["%s",%d,'.__mod__, zip(prevs, range(exp_seq, exp_seq + count), strict=True))
    if not all(map(bytes.startswith, lines, prefixes)):
        return None
    return hashes[-64:]


def stream(con: Any, ranges: Ranges, exp_seq: int, prev: str, cps: Checkpoints) -> tuple[int, str]:
    """Fast-check consecutive ``ranges`` from ``exp_seq`` after ``prev`` on DBAPI connection
    ``con``; stops before the first range that is not perfect. Returns (first seq not vouched
    for, hash of the record before it)."""
    batches: queue.Queue[Any] = queue.Queue(maxsize=2)
    stop = threading.Event()

    def fetch() -> None:
        cur = con.cursor()
        try:
            for lo, hi in ranges:
                if stop.is_set():
                    return
                cur.execute(BATCH_SQL, (lo, hi))
                batches.put(cur.fetchone())
        except BaseException as err:  # noqa: BLE001 - handed to the consuming thread
            batches.put(err)

    worker = threading.Thread(target=fetch, name="headwater-audit-verify", daemon=True)
    worker.start()
    try:
        for lo, hi in ranges:
            row = batches.get()
            if isinstance(row, BaseException):
                raise row
            last = check_range(row, exp_seq, prev, cps_between(cps, lo, hi))
            if last is None:
                break
            exp_seq, prev = hi, last
    finally:
        stop.set()
        while worker.is_alive():
            try:
                batches.get(timeout=0.05)
            except queue.Empty:
                pass
        worker.join()
    return exp_seq, prev


def _work() -> None:
    """Worker entry: a JSON job on stdin, ``{"next": seq, "last": hash}`` on stdout."""
    job = json.load(sys.stdin)
    ranges = [(lo, hi) for lo, hi in job["ranges"]]
    cps = [(s, h) for s, h in job["cps"]]
    con = sqlite3.connect(f"file:{quote(job['path'])}?mode=ro", uri=True, timeout=5,
                          check_same_thread=False, isolation_level=None)
    try:
        con.execute("BEGIN")
        exp_seq, last = stream(con, ranges, ranges[0][0], job["prev"], cps)
    finally:
        con.close()
    json.dump({"next": exp_seq, "last": last}, sys.stdout)


def worker_command() -> list[str] | None:
    """The command that runs this file as a worker (isolated, no site packages); None when
    this process was not started by a Python interpreter (embedded in a server, say)."""
    exe = sys.executable
    if not exe or not os.path.basename(exe).lower().startswith(("python", "pypy")):
        return None
    return [exe, "-I", "-S", __file__]


def parse_result(out: bytes, ranges: Ranges) -> tuple[int, str | None]:
    """(first seq not vouched for, last hash) from a worker's output; nothing vouched for
    when the output is not what a worker writes."""
    try:
        res = json.loads(out)
        nxt, last = res["next"], res["last"]
    except (ValueError, TypeError, KeyError):
        return ranges[0][0], None
    if not (isinstance(nxt, int) and isinstance(last, str)
            and nxt in {ranges[0][0], *(hi for _, hi in ranges)}):
        return ranges[0][0], None
    return nxt, last


if __name__ == "__main__":
    _work()
