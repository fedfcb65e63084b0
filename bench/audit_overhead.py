"""audit_overhead: the audit log's cost on the query path, SDK point lookups with audit on vs off.

The same ``session.sql("SELECT * FROM <store>.orders WHERE o_orderkey = ?", [k]).to_arrow()``
as ``point_lookup``, on the same platform, with ``platform.config.audit.enabled`` switched on
and off key by key (on, off, on, off, ...), each call timed on its own. With audit on, every call
appends a hash-chained record to the metadata store (SQLite, the embedded default) that is
committed before the call returns; the benchmark checks that exactly one record per call was
written. Goal: median(audit on) - median(audit off) <= 0.2 ms, every store.

Also reported, without a goal (``extra.overhead_fsync_ms``): the same alternation with the spool
flushed to stable storage on every record (``audit.durability: fsync``), over half as many keys.

"Raw" here is Headwater with audit off (the thing the audit log wraps is the query path itself).
"""

from __future__ import annotations

import random
import time
from typing import Any

import _common as c

NAME = "audit_overhead"
GOAL_MS = 0.2
SQL = "SELECT * FROM {store}.orders WHERE o_orderkey = ?"


def _pairs(platform: Any, s: Any, sql: str, keys: list[int], warmup: int) -> tuple[list[float], list[float]]:
    audit = platform.config.audit
    pc = time.perf_counter
    for k in keys[:warmup]:
        audit.enabled = True
        assert s.sql(sql, [k]).to_arrow().num_rows == 1
        audit.enabled = False
        assert s.sql(sql, [k]).to_arrow().num_rows == 1
    on: list[float] = []
    off: list[float] = []
    for i, k in enumerate(keys[warmup:]):
        # alternate which side goes first, so neither always follows the other
        order = (True, False) if i % 2 == 0 else (False, True)
        for flag in order:
            audit.enabled = flag
            t0 = pc()
            s.sql(sql, [k]).to_arrow()
            (on if flag else off).append(pc() - t0)
    audit.enabled = True
    return on, off


def _fsync_overhead(platform: Any, s: Any, sql: str, keys: list[int]) -> float | None:
    """Median overhead (ms) of audit with every spooled record fdatasync-ed."""
    spool = platform.audit._spool
    if spool is None:
        return None
    spool.sync = True
    try:
        on, off = _pairs(platform, s, sql, keys, 0)
    finally:
        spool.sync = False
    return round((c.median(on) - c.median(off)) * 1000, 4)


def run() -> dict[str, Any]:
    platform = c.get_platform()
    s = c.session()
    n = c.sized(2000, 200)
    warmup = c.sized(50, 10)
    rng = random.Random(42)
    stores = {"duckdb": "warehouse", "sqlite": "app"}
    if c.pg_skip_reason() is None:
        stores["postgres"] = "pg"
    skipped = {} if "postgres" in stores else {"postgres": c.pg_skip_reason()}
    per_store: dict[str, Any] = {}
    for label, store in stores.items():
        sql = SQL.format(store=store)
        try:
            keys = [r["o_orderkey"] for r in s.sql(
                f"SELECT o_orderkey FROM {store}.orders ORDER BY o_orderkey LIMIT 5000").to_pylist()]
        except Exception as err:  # noqa: BLE001 - the copy is made by point_lookup
            skipped[label] = f"{store}.orders missing ({type(err).__name__}); run point_lookup first"
            print(f"  {label} skipped: {skipped[label]}")
            continue
        keys = [rng.choice(keys) for _ in range(n + warmup)]
        before = platform.audit.stats()["head_seq"]
        on, off = _pairs(platform, s, sql, keys, warmup)
        written = platform.audit.stats()["head_seq"] - before
        expected = n + warmup
        assert written == expected, f"{label}: {written} audit records for {expected} audited calls"
        m_on, m_off = c.median(on), c.median(off)
        over = (m_on - m_off) * 1000
        over_fsync = _fsync_overhead(platform, s, sql, keys[: len(keys) // 2])
        per_store[label] = {
            "audit_on": {"median_ms": round(m_on * 1000, 4),
                         "p95_ms": round(sorted(on)[int(len(on) * 0.95)] * 1000, 4)},
            "audit_off": {"median_ms": round(m_off * 1000, 4),
                          "p95_ms": round(sorted(off)[int(len(off) * 0.95)] * 1000, 4)},
            "overhead_ms": round(over, 4),
            "overhead_fsync_ms": over_fsync,
            "ratio": round(m_on / m_off, 4),
            "records_written": written,
            "passed": over <= GOAL_MS,
        }
        print(f"  {label:<8} audit off {m_off * 1000:.3f} ms  on {m_on * 1000:.3f} ms  "
              f"overhead {over:.3f} ms/call (goal <= {GOAL_MS} ms)  {c.verdict(over <= GOAL_MS)}; "
              f"with fsync {over_fsync} ms")
    res = platform.audit.verify()
    print(f"  audit chain after the run: {'intact' if res.ok else 'BROKEN'} ({res.records_checked:,} records)")
    passed = bool(per_store) and all(v["passed"] for v in per_store.values()) and res.ok
    first = next(iter(per_store.values()), {"ratio": None})
    return c.write_result(
        NAME,
        parameters={"lookups": n, "warmup_lookups": warmup, "query": SQL, "key_seed": 42,
                    "metadata_store": platform.meta.dialect, "audit_record": "committed before the call returns"},
        raw={k: v["audit_off"] for k, v in per_store.items()},
        headwater={k: v["audit_on"] for k, v in per_store.items()},
        ratio=first["ratio"],
        goal={"metric": "median call with audit on - median with audit off (ms), every store", "op": "<=",
              "value": GOAL_MS},
        passed=passed,
        extra={"overhead_ms": {k: v["overhead_ms"] for k, v in per_store.items()},
               "overhead_fsync_ms": {k: v["overhead_fsync_ms"] for k, v in per_store.items()},
               "records_written": {k: v["records_written"] for k, v in per_store.items()},
               "chain_ok": res.ok, "skipped": skipped},
    )


if __name__ == "__main__":
    import run as _run

    _run.main([NAME])
