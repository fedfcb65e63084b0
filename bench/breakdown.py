"""Where a Headwater point lookup spends its time, stage by stage (not a goal benchmark).

``python bench/breakdown.py`` replays the steps of ``Session.sql(...).to_arrow()`` for one-row
lookups on each store (prepare -> bind -> render -> store.execute -> read_all) and prints the
median microseconds of each, next to the raw client call. Uses internals on purpose; keep it in
step with src/headwater/access/session.py.
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as c  # noqa: E402


def _med_us(fn: Any, args: list[Any]) -> float:
    ts = []
    for a in args:
        t0 = time.perf_counter()
        fn(a)
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1e6


def breakdown(store_name: str, keys: list[int], raw: Any) -> dict[str, float]:
    from headwater.access.planner import bind_params

    p = c.get_platform()
    s = c.session()
    sql = f"SELECT * FROM {store_name}.orders WHERE o_orderkey = ?"
    store = p.store(store_name)
    plan = p.planner.prepare(sql)
    timeout = p.config.query.timeout_s
    batch = p.config.query.batch_size
    rendered, vals0 = store.render(plan.tree, [keys[0]])
    out = {
        "raw client call": _med_us(raw, keys),
        "session.sql().to_arrow() total": _med_us(lambda k: s.sql(sql, [k]).to_arrow(), keys),
        "planner.prepare (cache hit)": _med_us(lambda k: p.planner.prepare(sql), keys),
        "catalog.version": _med_us(lambda k: p.catalog.version, keys),
        "bind_params": _med_us(lambda k: bind_params(plan, [k]), keys),
        "store.render (sqlglot generate)": _med_us(lambda k: store.render(plan.tree, [k]), keys),
        "store.execute + read_all": _med_us(
            lambda k: store.execute(rendered, [k], batch_size=batch, timeout_s=timeout).read_all(), keys),
        "store.execute + read_all, no timeout": _med_us(
            lambda k: store.execute(rendered, [k], batch_size=batch, timeout_s=None).read_all(), keys),
    }
    return out


def main() -> None:
    import sqlite3

    p = c.get_platform()
    rng = random.Random(7)
    con = p.store("warehouse").cursor()
    keys = [r[0] for r in con.execute("SELECT o_orderkey FROM orders ORDER BY o_orderkey LIMIT 5000").fetchall()]
    keys = rng.sample(keys, 300)
    results = {"duckdb": breakdown(
        "warehouse", keys,
        lambda k: con.execute("SELECT * FROM orders WHERE o_orderkey = ?", [k]).fetch_arrow_table())}
    sc = sqlite3.connect(p.store("app").path, isolation_level=None)
    try:
        results["sqlite"] = breakdown(
            "app", keys, lambda k: sc.execute("SELECT * FROM orders WHERE o_orderkey = ?", (k,)).fetchall())
    except Exception as err:  # noqa: BLE001
        print(f"sqlite: {err} (run bench/run.py point_lookup first)")
    if c.pg_skip_reason() is None:
        import psycopg

        pg = psycopg.connect(c.PG_DSN, autocommit=True)
        results["postgres"] = breakdown(
            "pg", keys,
            lambda k: pg.execute(f"SELECT * FROM {c.PG_SCHEMA}.orders WHERE o_orderkey = %s", (k,)).fetchall())
    for store, stages in results.items():
        print(f"\n{store} (median us per call, {len(keys)} calls each)")
        for stage, us in stages.items():
            print(f"  {stage:<40} {us:9.1f}")
    c.close_platform()


if __name__ == "__main__":
    main()
