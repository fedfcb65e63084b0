"""scan_duckdb: full scan of TPC-H lineitem to Arrow, Headwater vs raw DuckDB.

Headwater: ``session.sql("SELECT * FROM warehouse.lineitem").to_arrow()``.
Raw:       ``cursor.execute("SELECT * FROM lineitem").fetch_arrow_table()`` on the warehouse
           store's own DuckDB handle (same file, same process).
Goal: median(Headwater) / median(raw) <= 1.10.
"""

from __future__ import annotations

from typing import Any

import _common as c

NAME = "scan_duckdb"
GOAL = 1.10


def run() -> dict[str, Any]:
    platform = c.get_platform()
    s = c.session()
    con = platform.store("warehouse").cursor()
    hw_sql = "SELECT * FROM warehouse.lineitem"
    raw_sql = "SELECT * FROM lineitem"
    rows = con.execute("SELECT count(*) FROM lineitem").fetchone()[0]
    warmup, repeats = 1, c.sized(5, 3)

    def raw() -> Any:
        return con.execute(raw_sql).fetch_arrow_table()

    def hw() -> Any:
        return s.sql(hw_sql).to_arrow()

    def check(r: Any, h: Any) -> None:
        assert r.num_rows == h.num_rows == rows, (r.num_rows, h.num_rows, rows)
        assert r.schema.names == h.schema.names, (r.schema.names, h.schema.names)

    print(f"  lineitem rows={rows:,}; warmup={warmup} repeats={repeats}", flush=True)
    raw_t, hw_t = c.measure_pair(raw, hw, warmup=warmup, repeats=repeats, check=check)
    con.close()
    ratio = c.median(hw_t) / c.median(raw_t)
    passed = ratio <= GOAL
    print(
        f"  raw duckdb {c.fmt_s(c.median(raw_t))}  headwater {c.fmt_s(c.median(hw_t))}  "
        f"ratio {ratio:.3f} (goal <= {GOAL})  {c.verdict(passed)}"
    )
    c.maybe_profile(NAME, hw)
    return c.write_result(
        NAME,
        parameters={"rows": rows, "warmup": warmup, "repeats": repeats, "query": hw_sql,
                    "raw_query": raw_sql,
                    "batch_size": platform.config.query.batch_size},
        raw=c.summary(raw_t),
        headwater=c.summary(hw_t),
        ratio=ratio,
        goal={"metric": "median headwater / median raw", "op": "<=", "value": GOAL},
        passed=passed,
    )


if __name__ == "__main__":
    import run as _run

    _run.main([NAME])
