"""scan_postgres: read a 1M-row Postgres table to Arrow, Headwater vs raw psycopg.

Table ``hw_bench.scan_1m`` (made once with generate_series): bigint, int, numeric(12,2), text,
date, timestamp.
Headwater: ``session.sql("SELECT * FROM pg.scan_1m").to_arrow()`` (the store streams through a
server-side cursor, 65,536 rows per fetch).
Raw: one psycopg connection, client-side cursor, ``fetchall()``, then the straightforward
column-wise ``pa.array(column, type=...)`` into a ``pa.table``. For reference, a raw server-side
cursor doing the same per 65,536-row ``fetchmany`` is timed too (not part of the goal).
Goal: median(Headwater) / median(raw) <= 1.10. Skipped (with the reason) when Postgres is down.
"""

from __future__ import annotations

import time
from typing import Any

import pyarrow as pa

import _common as c

NAME = "scan_postgres"
GOAL = 1.10
TYPES = [pa.int64(), pa.int32(), pa.decimal128(12, 2), pa.string(), pa.date32(), pa.timestamp("us")]
NAMES = ["id", "n", "amount", "label", "d", "ts"]


def _to_table(rows: list[tuple[Any, ...]]) -> pa.Table:
    cols = list(zip(*rows, strict=True)) if rows else [() for _ in NAMES]
    return pa.table([pa.array(col, type=t) for col, t in zip(cols, TYPES, strict=True)], names=NAMES)


def run() -> dict[str, Any]:
    rows = c.sized(1_000_000, 20_000)
    table = f"scan_{rows // 1000}k" if rows < 1_000_000 else f"scan_{rows // 1_000_000}m"
    goal = {"metric": "median headwater / median raw", "op": "<=", "value": GOAL}
    reason = c.pg_skip_reason()
    if reason is not None:
        print(f"  skipped: {reason}")
        return c.write_result(NAME, parameters={"rows": rows}, raw=None, headwater=None, ratio=None,
                              goal=goal, passed=None, skipped=reason)
    import psycopg

    platform = c.get_platform()
    s = c.session()
    pg = psycopg.connect(c.PG_DSN, autocommit=True)
    fq = f"{c.PG_SCHEMA}.{table}"
    try:
        have = pg.execute(f"SELECT count(*) FROM {fq}").fetchone()[0]
    except psycopg.errors.UndefinedTable:
        have = None
    if have != rows:
        t0 = time.perf_counter()
        pg.execute(f"DROP TABLE IF EXISTS {fq}")
        pg.execute(
            f"CREATE TABLE {fq} AS SELECT g::bigint AS id, (g % 1000)::int AS n, "
            f"(g * 1.01)::numeric(12,2) AS amount, 'label-' || (g % 10000) AS label, "
            f"date '2020-01-01' + (g % 3650) AS d, timestamp '2020-01-01' + g * interval '1 second' AS ts "
            f"FROM generate_series(1, {rows}) g"
        )
        pg.execute(f"ALTER TABLE {fq} ADD PRIMARY KEY (id)")
        pg.execute(f"VACUUM ANALYZE {fq}")
        print(f"  created {fq} ({rows:,} rows) in {time.perf_counter() - t0:.1f} s", flush=True)
    if platform.catalog.find(f"pg.{table}") is None:
        platform.sync_catalog(["pg"])
    hw_sql = f"SELECT * FROM pg.{table}"
    raw_sql = f"SELECT * FROM {fq}"
    batch = platform.config.query.batch_size

    def raw() -> pa.Table:
        with pg.cursor() as cur:
            cur.execute(raw_sql)
            return _to_table(cur.fetchall())

    def raw_server_side() -> pa.Table:
        with pg.transaction(), pg.cursor(name="bench_scan") as cur:
            cur.execute(raw_sql)
            parts = []
            while True:
                chunk = cur.fetchmany(batch)
                if not chunk:
                    break
                parts.append(_to_table(chunk))
            return pa.concat_tables(parts)

    def hw() -> pa.Table:
        return s.sql(hw_sql).to_arrow()

    def check(r: pa.Table, h: pa.Table) -> None:
        assert r.num_rows == h.num_rows == rows, (r.num_rows, h.num_rows)
        assert r.schema.equals(h.schema), (r.schema, h.schema)

    warmup, repeats = 1, c.sized(3, 3)
    print(f"  {fq}: {rows:,} rows; warmup={warmup} repeats={repeats}", flush=True)
    raw_t, hw_t = c.measure_pair(raw, hw, warmup=warmup, repeats=repeats, check=check)
    ss_t = c.measure(raw_server_side, warmup=0, repeats=repeats)
    pg.close()
    ratio = c.median(hw_t) / c.median(raw_t)
    ss_ratio = c.median(hw_t) / c.median(ss_t)
    passed = ratio <= GOAL
    print(f"  raw psycopg {c.fmt_s(c.median(raw_t))}  headwater {c.fmt_s(c.median(hw_t))}  "
          f"ratio {ratio:.3f} (goal <= {GOAL})  {c.verdict(passed)}")
    print(f"  (raw server-side cursor {c.fmt_s(c.median(ss_t))}; headwater / that = {ss_ratio:.3f})")
    c.maybe_profile(NAME, hw)
    return c.write_result(
        NAME,
        parameters={"rows": rows, "table": fq, "columns": dict(zip(NAMES, map(str, TYPES), strict=True)),
                    "warmup": warmup, "repeats": repeats, "batch_size": batch},
        raw=c.summary(raw_t),
        headwater=c.summary(hw_t),
        ratio=ratio,
        goal=goal,
        passed=passed,
        extra={"raw_server_side_cursor": c.summary(ss_t), "ratio_vs_server_side": round(ss_ratio, 4)},
    )


if __name__ == "__main__":
    import run as _run

    _run.main([NAME])
