"""decision_cache: point lookups under a policy (warm decision cache) vs the raw driver.

Governed benchmark platform (``_common.get_governed_platform``: policy ``_common.GOV_POLICY``
applied). The principal ``analyst`` (role ``tpch_analyst``: select on ``warehouse.*`` and
``app.*``; ``orders`` has no mask or filter for it, so this measures the policy machinery
itself) runs ``session.sql("SELECT * FROM <store>.orders WHERE o_orderkey = ?", [k]).to_arrow()``.
The plan cache holds one decision per (SQL, catalog version, policy cache key of the principal);
50 warmup lookups fill it, then 1,000 lookups of random existing keys (seed 42) are timed one
by one, alternating with the raw call:

* DuckDB (``warehouse.orders``, TPC-H, no index): the warehouse store's own DuckDB handle,
  ``cur.execute(same SQL, [k]).fetch_arrow_table()``;
* SQLite (``app.orders``: the first 100k orders copied into the governed platform's own
  ``app.db`` once, ``o_orderkey`` primary key): one ``sqlite3`` connection, ``fetchall()``;
* Postgres (``pg.orders`` in schema ``hw_bench_gov``, the same 100k rows copied once, primary
  key): a governed platform of its own (``bench/data/platform-gov-pg``: store ``pg`` only, the
  same policy with ``pg.*`` granted, so no DuckDB file is opened twice) read through the SDK
  (the store's own read path and pool), vs one ``psycopg`` connection (autocommit),
  ``fetchall()``. Skipped with a reason when Postgres is unreachable.

Overhead = median(Headwater call) - median(raw call); goal <= 0.5 ms per store.
Also reported (not goals): the per-stage cost of a governed call (plan cache hit with the
principal, the policy engine's cache key and parameter binding, rendering, execution).
"""

from __future__ import annotations

import random
import sqlite3
import statistics
import time
from typing import Any

import _common as c
from point_lookup import _lookups, _stats

NAME = "decision_cache"
GOAL_MS = 0.5
SQL = "SELECT * FROM {store}.orders WHERE o_orderkey = ?"
PRINCIPAL = "analyst"


def _med_us(fn: Any, args: list[Any]) -> float:
    ts = []
    for a in args:
        t0 = time.perf_counter()
        fn(a)
        ts.append(time.perf_counter() - t0)
    return round(statistics.median(ts) * 1e6, 1)


def _stages(platform: Any, s: Any, store_name: str, keys: list[int]) -> dict[str, float]:
    """Median microseconds of each step of a governed ``session.sql(...).to_arrow()``."""
    from headwater.access.planner import bind_params
    from headwater.access.session import _render

    sql = SQL.format(store=store_name)
    who = s.principal
    planner = platform.planner
    engine = platform.policy_engine()
    plan = planner.prepare(sql, principal=who)
    store = platform.store(store_name)
    timeout = s._timeout(plan, None)
    batch = platform.config.query.batch_size
    vals = bind_params(plan, [keys[0]]) + engine.params_for(plan.decision, who)
    rendered, rvals = _render(plan.rendered, store_name, store, plan.tree, vals)
    return {
        "session.sql().to_arrow() total": _med_us(lambda k: s.sql(sql, [k]).to_arrow(), keys),
        "platform.policy_engine()": _med_us(lambda k: platform.policy_engine(), keys),
        "engine.cache_key(principal)": _med_us(lambda k: engine.cache_key(who), keys),
        "planner.prepare (cache hit, with principal)": _med_us(lambda k: planner.prepare(sql, principal=who), keys),
        "session._plan (prepare + bind + params_for)": _med_us(lambda k: s._plan(sql, [k]), keys),
        "engine.params_for": _med_us(lambda k: engine.params_for(plan.decision, who), keys),
        "_render (cached template + bind)": _med_us(
            lambda k: _render(plan.rendered, store_name, store, plan.tree, [k] + vals[1:]), keys),
        "store.execute + read_all": _med_us(
            lambda k: store.execute(rendered, [k] + rvals[1:], batch_size=batch, timeout_s=timeout).read_all(), keys),
    }


def run() -> dict[str, Any]:
    platform = c.get_governed_platform()
    loader = platform.session("bench_loader")
    s = platform.session(PRINCIPAL)
    n_lookups = c.sized(1000, 100)
    n_copy = c.sized(100_000, 5_000)
    warmup = c.sized(50, 10)
    rng = random.Random(42)
    per_store: dict[str, Any] = {}
    stages: dict[str, Any] = {}

    # -- DuckDB -------------------------------------------------------------------------
    con = platform.store("warehouse").cursor()
    all_keys = [r[0] for r in con.execute("SELECT o_orderkey FROM orders").fetchall()]
    keys = rng.sample(all_keys, n_lookups + warmup)
    raw_sql = "SELECT * FROM orders WHERE o_orderkey = ?"
    hw_sql = SQL.format(store="warehouse")
    plan = platform.planner.prepare(hw_sql, principal=s.principal)
    assert plan.decision is not None and plan.store == "warehouse", plan
    raw_t, hw_t = _lookups(
        "duckdb",
        lambda k: con.execute(raw_sql, [k]).fetch_arrow_table(),
        lambda k: s.sql(hw_sql, [k]).to_arrow(),
        keys, warmup,
    )
    per_store["duckdb"] = _stats(raw_t, hw_t)
    stages["duckdb"] = _stages(platform, s, "warehouse", keys[:300])
    stages["duckdb"]["raw client call"] = _med_us(lambda k: con.execute(raw_sql, [k]).fetch_arrow_table(), keys[:300])
    c.maybe_profile(f"{NAME}_duckdb", lambda: [s.sql(hw_sql, [k]).to_arrow() for k in keys[:200]])

    # -- SQLite -------------------------------------------------------------------------
    app = platform.store("app")

    def sqlite_count() -> int | None:
        with sqlite3.connect(app.path) as sc:
            try:
                return sc.execute("SELECT count(*) FROM orders").fetchone()[0]
            except sqlite3.OperationalError:
                return None

    have = sqlite_count()
    if have != n_copy:
        t0 = time.perf_counter()
        data = loader.sql(f"SELECT * FROM warehouse.orders ORDER BY o_orderkey LIMIT {n_copy}").to_arrow()
        loader.write("app.orders", data, mode="overwrite" if have is not None else "append", key="o_orderkey")
        print(f"  copied {n_copy:,} orders rows into app.orders (governed platform) in "
              f"{time.perf_counter() - t0:.1f} s", flush=True)
    small_keys = sorted(all_keys)[:n_copy]
    keys = rng.sample(small_keys, n_lookups + warmup)
    sc = sqlite3.connect(app.path, isolation_level=None)
    raw_sql = "SELECT * FROM orders WHERE o_orderkey = ?"
    hw_sql = SQL.format(store="app")
    plan = platform.planner.prepare(hw_sql, principal=s.principal)
    assert plan.decision is not None and plan.store == "app", plan
    raw_t, hw_t = _lookups(
        "sqlite",
        lambda k: sc.execute(raw_sql, (k,)).fetchall(),
        lambda k: s.sql(hw_sql, [k]).to_arrow(),
        keys, warmup,
    )
    per_store["sqlite"] = _stats(raw_t, hw_t)
    stages["sqlite"] = _stages(platform, s, "app", keys[:300])
    stages["sqlite"]["raw client call"] = _med_us(lambda k: sc.execute(raw_sql, (k,)).fetchall(), keys[:300])
    sc.close()
    con.close()
    c.maybe_profile(f"{NAME}_sqlite", lambda: [s.sql(hw_sql, [k]).to_arrow() for k in keys[:200]])

    # -- Postgres -----------------------------------------------------------------------
    skipped: dict[str, str] = {}
    reason = c.postgres_reachable()
    if reason is None:
        pg_platform = _pg_platform()
        try:
            per_store["postgres"], stages["postgres"] = _postgres(pg_platform, loader, n_copy, rng.sample(
                small_keys, n_lookups + warmup), warmup)
        finally:
            pg_platform.close()
    else:
        skipped["postgres"] = reason
        print(f"  postgres skipped: {reason}")

    for store, st in per_store.items():
        st["passed"] = st["overhead_ms"] <= GOAL_MS
        print(
            f"  {store:<8} raw {st['raw']['median_ms']:.3f} ms  headwater (governed) "
            f"{st['headwater']['median_ms']:.3f} ms  overhead {st['overhead_ms']:.3f} ms/call "
            f"(goal <= {GOAL_MS} ms)  ratio {st['ratio']:.2f}  {c.verdict(st['passed'])}"
        )
    for store, st in stages.items():
        print(f"  {store} stages (median us): " + "; ".join(f"{k} {v:.0f}" for k, v in st.items()))
    passed = all(st["passed"] for st in per_store.values())
    return c.write_result(
        NAME,
        parameters={"lookups": n_lookups, "warmup_lookups": warmup, "copied_rows": n_copy,
                    "query": SQL, "key_seed": 42, "principal": PRINCIPAL, "policy": c.GOV_POLICY},
        raw={k: v["raw"] for k, v in per_store.items()},
        headwater={k: v["headwater"] for k, v in per_store.items()},
        ratio=per_store["duckdb"]["ratio"],
        goal={"metric": "median governed headwater call - median raw call (ms), every store", "op": "<=",
              "value": GOAL_MS},
        passed=passed,
        extra={
            "overhead_ms": {k: v["overhead_ms"] for k, v in per_store.items()},
            "ratio": {k: v["ratio"] for k, v in per_store.items()},
            "passed": {k: v["passed"] for k, v in per_store.items()},
            "skipped": skipped,
            "stages_median_us": stages,
            "notes": "raw DuckDB returns Arrow (fetch_arrow_table); raw sqlite3 and psycopg return "
                     "tuples (fetchall), Headwater returns Arrow. orders carries no mask or filter for "
                     "the analyst, but the decision still wraps the scan in the policy subquery.",
        },
    )


PG_SCHEMA = "hw_bench_gov"


def _pg_platform() -> Any:
    """The governed Postgres platform: store ``pg`` (schema :data:`PG_SCHEMA`), the benchmark
    policy with ``pg.*`` granted to the analyst, its own metadata (no DuckDB file opened)."""
    import psycopg

    from headwater.config import Config, PostgresConfig, QueryConfig
    from headwater.platform import Platform

    with psycopg.connect(c.PG_DSN, autocommit=True) as con:
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {PG_SCHEMA}")
    cfg = Config(
        platform_dir=str(c.DATA_DIR / "platform-gov-pg"),
        stores={"pg": PostgresConfig(dsn=c.PG_DSN, schema=PG_SCHEMA)},
        query=QueryConfig(max_page_size=100_000_000),
    )
    platform = Platform(cfg)
    platform.sync_catalog()
    policy = c.GOV_POLICY.replace('["warehouse.*", "app.*"]', '["warehouse.*", "app.*", "pg.*"]')
    assert policy != c.GOV_POLICY
    platform.policies.apply(policy, source="bench/decision_cache.py:_pg_platform", applied_by="bench")
    return platform


def _postgres(platform: Any, loader: Any, n_copy: int, keys: list[int], warmup: int) -> tuple[Any, Any]:
    """Governed lookups on ``pg.orders`` vs the raw psycopg call, and the stages of a call."""
    import psycopg

    pg = psycopg.connect(c.PG_DSN, autocommit=True)
    try:
        try:
            have = pg.execute(f"SELECT count(*) FROM {PG_SCHEMA}.orders").fetchone()[0]
        except psycopg.errors.UndefinedTable:
            have = None
        if have != n_copy:
            t0 = time.perf_counter()
            data = loader.sql(f"SELECT * FROM warehouse.orders ORDER BY o_orderkey LIMIT {n_copy}").to_arrow()
            platform.session("bench_loader").write(
                "pg.orders", data, mode="overwrite" if have is not None else "append", key="o_orderkey")
            print(f"  copied {n_copy:,} orders rows into pg.orders (governed Postgres platform) in "
                  f"{time.perf_counter() - t0:.1f} s", flush=True)
        s = platform.session(PRINCIPAL)
        raw_sql = f"SELECT * FROM {PG_SCHEMA}.orders WHERE o_orderkey = %s"
        hw_sql = SQL.format(store="pg")
        plan = platform.planner.prepare(hw_sql, principal=s.principal)
        assert plan.decision is not None and plan.store == "pg", plan
        raw_t, hw_t = _lookups(
            "postgres",
            lambda k: pg.execute(raw_sql, (k,)).fetchall(),
            lambda k: s.sql(hw_sql, [k]).to_arrow(),
            keys, warmup,
        )
        stats = _stats(raw_t, hw_t)
        st = _stages(platform, s, "pg", keys[:300])
        st["raw client call"] = _med_us(lambda k: pg.execute(raw_sql, (k,)).fetchall(), keys[:300])
        c.maybe_profile(f"{NAME}_postgres", lambda: [s.sql(hw_sql, [k]).to_arrow() for k in keys[:200]])
        return stats, st
    finally:
        pg.close()


if __name__ == "__main__":
    import run as _run

    _run.main([NAME])
