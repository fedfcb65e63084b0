"""The Postgres fast path of chain verification: the server checks every record itself.

One query per seq range computes, for every record, ``pg_catalog.sha256`` of its text against
its stored hash, that its text starts with ``["<previous record's stored hash>",<its seq>,``
(``lag(hash)``; the first record of a range links to the last hash of the range before, passed
in) and its hash at every checkpoint in the range; only one summary row per range comes back
to Python. Every function and aggregate is schema-qualified (``pg_catalog.``) and every comparison is
``OPERATOR(pg_catalog.…)``, so objects of the same name earlier on the ``search_path`` cannot
fool the verifier. A range that is not perfect goes through the row-by-row slow path of
:mod:`headwater.audit._verify`, which names the first bad record and what is wrong.

A long log is split in two halves checked at once on two connections (two server backends,
the hashing being the server's work): the second connection joins the first one's snapshot
(``pg_export_snapshot`` / ``SET TRANSACTION SNAPSHOT``), so both see exactly the same records,
and starts from the stored hash of the record before its half, which the first half verifies.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from headwater.audit._verify_sqlite import cps_between

_RANGE_SQL = """
SELECT pg_catalog.count(*), pg_catalog.min(t.seq), pg_catalog.max(t.seq),
       pg_catalog.count(*) FILTER (WHERE t.ok IS NOT TRUE),
       pg_catalog.min(t.hash) FILTER (WHERE t.seq OPERATOR(pg_catalog.=) %(last)s)
FROM (
    SELECT r.seq, r.hash,
           pg_catalog.starts_with(
               r.record,
               pg_catalog.concat('["', coalesce(pg_catalog.lag(r.hash) OVER (ORDER BY r.seq), %(prev)s::text),
                                 '",', r.seq, ','))
           AND pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(r.record, 'UTF8')), 'hex')
               OPERATOR(pg_catalog.=) r.hash
           AND (c.hash IS NULL OR c.hash OPERATOR(pg_catalog.=) r.hash) AS ok
    FROM hw_audit_records AS r
    LEFT JOIN ROWS FROM (pg_catalog.unnest(%(cp_seqs)s::bigint[]),
                        pg_catalog.unnest(%(cp_hashes)s::text[])) AS c (seq, hash)
        ON c.seq OPERATOR(pg_catalog.=) r.seq
    WHERE r.seq OPERATOR(pg_catalog.>=) %(lo)s AND r.seq OPERATOR(pg_catalog.<) %(hi)s
) AS t
"""

SlowRange = Callable[[Any, str, int, int, str, list[tuple[int, str]]], tuple[int, str]]
Connect = Callable[[], contextlib.AbstractContextManager[Any]]

log = logging.getLogger("headwater.audit")

_SNAPSHOT_ID = re.compile(r"[0-9A-Fa-f]+(-[0-9A-Fa-f]+)+")


def stream_pg(raw: Any, ranges: list[tuple[int, int]], first: int, prev: str,
              cps: list[tuple[int, str]], slow_range: SlowRange, *,
              connect: Connect | None = None) -> tuple[int, str]:
    """Check the records of ``ranges`` (consecutive, from ``first``) after ``prev``; returns
    (next expected seq, last hash) or raises the slow path's error at the first bad record.

    With ``connect`` (a second connection of the same database, as a context manager), the
    second half of ``ranges`` is checked on it at the same time, in the same snapshot."""
    cur = raw.cursor()
    if connect is None or len(ranges) < 2:
        return _ranges(cur, ranges, first, prev, cps, slow_range)
    half = ranges[len(ranges) // 2:]
    cur.execute("SELECT pg_catalog.pg_export_snapshot()")
    snapshot = cur.fetchone()[0]
    cur.execute("SELECT hash FROM hw_audit_records WHERE seq OPERATOR(pg_catalog.=) %s", (half[0][0] - 1,))
    row = cur.fetchone()
    if row is None or not isinstance(snapshot, str) or not _SNAPSHOT_ID.fullmatch(snapshot):
        return _ranges(cur, ranges, first, prev, cps, slow_range)  # the first half names the gap
    with contextlib.ExitStack() as stack:
        ocur = _join(stack, connect, snapshot)
        if ocur is None:
            return _ranges(cur, ranges, first, prev, cps, slow_range)
        pool = stack.enter_context(ThreadPoolExecutor(1, thread_name_prefix="audit-verify"))
        later = pool.submit(_ranges, ocur, half, half[0][0], row[0], cps, slow_range)
        try:
            exp_seq, last = _ranges(cur, ranges[:len(ranges) // 2], first, prev, cps, slow_range)
        except BaseException:
            later.cancel()
            with contextlib.suppress(Exception):
                later.result()  # the connection goes back to the pool idle
            raise
        result = later.result()  # the first half is intact: a bad record here is the first one
    if (exp_seq, last) != (half[0][0], row[0]):  # cannot happen in one snapshot; stay correct anyway
        return _ranges(cur, half, exp_seq, last, cps, slow_range)
    return result


def _join(stack: contextlib.ExitStack, connect: Connect, snapshot: str) -> Any:
    """A cursor of a second connection in ``snapshot``, or None when it cannot be had (the
    pool is exhausted, the server refuses): the caller then checks everything on one."""
    try:
        other = stack.enter_context(connect())
        ocur = other.cursor()
        ocur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        ocur.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")  # checked: hex digits and dashes only
        return ocur
    except Exception as err:  # noqa: BLE001 - the second connection is an optimisation only
        log.warning("audit verify: no second connection (%s); checking on one",
                    str(err).splitlines()[0] if str(err) else type(err).__name__)
        return None


def _ranges(cur: Any, ranges: list[tuple[int, int]], first: int, prev: str,
            cps: list[tuple[int, str]], slow_range: SlowRange) -> tuple[int, str]:
    exp_seq = first
    for lo, hi in ranges:
        in_range = cps_between(cps, lo, hi)
        cur.execute(_RANGE_SQL, {
            "lo": lo, "hi": hi, "last": hi - 1, "prev": prev,
            "cp_seqs": [s for s, _ in in_range], "cp_hashes": [h for _, h in in_range],
        })
        count, mn, mx, n_bad, last = cur.fetchone()
        if (count and mn == exp_seq and mx == hi - 1 and mx == mn + count - 1 and n_bad == 0
                and last is not None):
            exp_seq, prev = hi, last
            continue
        exp_seq, prev = slow_range(cur, "postgresql", hi, exp_seq, prev, cps)
    return exp_seq, prev
