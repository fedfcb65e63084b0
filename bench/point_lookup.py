"""point_lookup: 1,000 single-row lookups by key, Headwater vs the raw client, per store.

Headwater: ``session.sql("SELECT * FROM <store>.orders WHERE o_orderkey = ?", [k]).to_arrow()``.
Raw:
* DuckDB (``warehouse``, TPC-H orders): the warehouse store's own DuckDB handle,
  ``cur.execute(same SQL, [k]).fetch_arrow_table()``;
* SQLite (``app``, 100k orders rows copied in with ``session.write``): one ``sqlite3``
  connection, ``execute(...).fetchall()``;
* Postgres (``pg``, schema hw_bench, same 100k rows): one ``psycopg`` connection (autocommit),
  ``execute(...).fetchall()``.
Raw and Headwater calls alternate key by key; each call is timed on its own.
Goal: median Headwater call - median raw call <= 1 ms, per store.
"""

from __future__ import annotations

import random
import sqlite3
import time
from typing import Any

import _common as c

NAME = "point_lookup"
GOAL_MS = 1.0
SQL = "SELECT * FROM {store}.orders WHERE o_orderkey = ?"


def _copy_orders(s: Any, store: str, n: int, count: Any) -> None:
    """Copy the first ``n`` orders of the warehouse into ``<store>.orders`` (once)."""
    have = count()
    if have == n:
        return
    t0 = time.perf_counter()
    data = s.sql(f"SELECT * FROM warehouse.orders ORDER BY o_orderkey LIMIT {n}").to_arrow()
    s.write(f"{store}.orders", data, mode="overwrite" if have is not None else "append", key="o_orderkey")
    print(f"  copied {n:,} orders rows into {store}.orders in {time.perf_counter() - t0:.1f} s", flush=True)


def _lookups(
    label: str, raw: Any, hw: Any, keys: list[int], warmup: int
) -> tuple[list[float], list[float]]:
    for k in keys[:warmup]:
        r, h = raw(k), hw(k)
        assert len(r) == h.num_rows == 1, (label, k, len(r), h.num_rows)
    raw_t: list[float] = []
    hw_t: list[float] = []
    pc = time.perf_counter
    for k in keys:
        t0 = pc()
        raw(k)
        t1 = pc()
        hw(k)
        t2 = pc()
        raw_t.append(t1 - t0)
        hw_t.append(t2 - t1)
    return raw_t, hw_t


def _stats(raw_t: list[float], hw_t: list[float]) -> dict[str, Any]:
    m_raw, m_hw = c.median(raw_t), c.median(hw_t)
    q = sorted(hw_t)
    qr = sorted(raw_t)
    over_ms = (m_hw - m_raw) * 1000
    return {
        "raw": {"median_ms": round(m_raw * 1000, 4), "p95_ms": round(qr[int(len(qr) * 0.95)] * 1000, 4),
                "total_s": round(sum(raw_t), 4), "timings_ms": [round(t * 1000, 4) for t in raw_t]},
        "headwater": {"median_ms": round(m_hw * 1000, 4), "p95_ms": round(q[int(len(q) * 0.95)] * 1000, 4),
                      "total_s": round(sum(hw_t), 4), "timings_ms": [round(t * 1000, 4) for t in hw_t]},
        "overhead_ms": round(over_ms, 4),
        "ratio": round(m_hw / m_raw, 4),
        "passed": over_ms <= GOAL_MS,
    }


def run() -> dict[str, Any]:
    platform = c.get_platform()
    s = c.session()
    n_lookups = c.sized(1000, 100)
    n_copy = c.sized(100_000, 5_000)
    warmup = c.sized(50, 10)
    rng = random.Random(42)
    per_store: dict[str, Any] = {}
    skipped: dict[str, str] = {}

    # -- DuckDB -------------------------------------------------------------------------
    con = platform.store("warehouse").cursor()
    all_keys = [r[0] for r in con.execute("SELECT o_orderkey FROM orders").fetchall()]
    keys = rng.sample(all_keys, n_lookups + warmup)
    raw_sql = SQL.format(store="warehouse").replace("warehouse.", "")
    hw_sql = SQL.format(store="warehouse")
    raw_t, hw_t = _lookups(
        "duckdb",
        lambda k: con.execute(raw_sql, [k]).fetch_arrow_table(),
        lambda k: s.sql(hw_sql, [k]).to_arrow(),
        keys, warmup,
    )
    per_store["duckdb"] = _stats(raw_t, hw_t)
    c.maybe_profile(f"{NAME}_duckdb", lambda: [s.sql(hw_sql, [k]).to_arrow() for k in keys[:200]])

    # -- SQLite -------------------------------------------------------------------------
    app = platform.store("app")

    def sqlite_count() -> int | None:
        with sqlite3.connect(app.path) as sc:
            try:
                return sc.execute("SELECT count(*) FROM orders").fetchone()[0]
            except sqlite3.OperationalError:
                return None

    _copy_orders(s, "app", n_copy, sqlite_count)
    small_keys = [k for k in sorted(all_keys)[:n_copy]]
    keys = rng.sample(small_keys, n_lookups + warmup)
    sc = sqlite3.connect(app.path, isolation_level=None)
    raw_sql = "SELECT * FROM orders WHERE o_orderkey = ?"
    hw_sql = SQL.format(store="app")
    raw_t, hw_t = _lookups(
        "sqlite",
        lambda k: sc.execute(raw_sql, (k,)).fetchall(),
        lambda k: s.sql(hw_sql, [k]).to_arrow(),
        keys, warmup,
    )
    sc.close()
    per_store["sqlite"] = _stats(raw_t, hw_t)
    c.maybe_profile(f"{NAME}_sqlite", lambda: [s.sql(hw_sql, [k]).to_arrow() for k in keys[:200]])

    # -- Postgres -----------------------------------------------------------------------
    reason = c.pg_skip_reason()
    if reason is None:
        import psycopg

        pg = psycopg.connect(c.PG_DSN, autocommit=True)

        def pg_count() -> int | None:
            try:
                return pg.execute(f"SELECT count(*) FROM {c.PG_SCHEMA}.orders").fetchone()[0]
            except psycopg.errors.UndefinedTable:
                return None

        _copy_orders(s, "pg", n_copy, pg_count)
        raw_sql = f"SELECT * FROM {c.PG_SCHEMA}.orders WHERE o_orderkey = %s"
        hw_sql = SQL.format(store="pg")
        raw_t, hw_t = _lookups(
            "postgres",
            lambda k: pg.execute(raw_sql, (k,)).fetchall(),
            lambda k: s.sql(hw_sql, [k]).to_arrow(),
            keys, warmup,
        )
        pg.close()
        per_store["postgres"] = _stats(raw_t, hw_t)
        c.maybe_profile(f"{NAME}_postgres", lambda: [s.sql(hw_sql, [k]).to_arrow() for k in keys[:200]])
    else:
        skipped["postgres"] = reason
        print(f"  postgres skipped: {reason}")

    for store, st in per_store.items():
        print(
            f"  {store:<8} raw {st['raw']['median_ms']:.3f} ms  headwater {st['headwater']['median_ms']:.3f} ms  "
            f"overhead {st['overhead_ms']:.3f} ms/call (goal <= {GOAL_MS} ms)  ratio {st['ratio']:.2f}  "
            f"{c.verdict(st['passed'])}"
        )
    passed = all(st["passed"] for st in per_store.values())
    duck = per_store["duckdb"]
    return c.write_result(
        NAME,
        parameters={"lookups": n_lookups, "warmup_lookups": warmup, "copied_rows": n_copy,
                    "query": SQL, "key_seed": 42},
        raw={k: v["raw"] for k, v in per_store.items()},
        headwater={k: v["headwater"] for k, v in per_store.items()},
        ratio=duck["ratio"],
        goal={"metric": "median headwater call - median raw call (ms), every store", "op": "<=",
              "value": GOAL_MS},
        passed=passed,
        extra={
            "overhead_ms": {k: v["overhead_ms"] for k, v in per_store.items()},
            "ratio": {k: v["ratio"] for k, v in per_store.items()},
            "passed": {k: v["passed"] for k, v in per_store.items()},
            "skipped": skipped,
            "notes": "raw DuckDB returns Arrow (fetch_arrow_table); raw sqlite3/psycopg return "
                     "tuples (fetchall), Headwater returns Arrow from every store.",
        },
    )


if __name__ == "__main__":
    import run as _run

    _run.main([NAME])
