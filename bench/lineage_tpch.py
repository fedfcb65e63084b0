"""lineage_tpch: column lineage of all 22 TPC-H queries, as ``CREATE TABLE warehouse.q<N> AS``.

Headwater: ``headwater.lineage.column_lineage(sql, schema=...)`` for the 22 statements in a row
(parse, qualify against the TPC-H schema, scope walk); one timing = all 22. The query texts come
from DuckDB's offline ``tpch`` extension (``tpch_queries()``), the schema from ``CALL dbgen(sf=0)``.
There is no raw baseline (nothing else derives column lineage here); also reported: building
the START/COMPLETE events and validating them against the OpenLineage schemas.
Goal: all 22 in < 1 s (median of the repeats).

Run: ``.venv/bin/python bench/lineage_tpch.py``.
"""

from __future__ import annotations

import time
from typing import Any

import _common as c

NAME = "lineage_tpch"
GOAL_S = 1.0


def _tpch() -> tuple[list[tuple[int, str]], dict[str, dict[str, str]]]:
    import sqlglot
    from sqlglot import exp

    from headwater.stores.duckdb import load_extension, new_connection

    con = new_connection(allow_unsigned=True)
    try:
        load_extension(con, "tpch")
        queries = con.execute("SELECT query_nr, query FROM tpch_queries() ORDER BY 1").fetchall()
        con.execute("CALL dbgen(sf=0)")
        schema: dict[str, dict[str, str]] = {}
        for t, col, ty in con.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "ORDER BY table_name, ordinal_position"
        ).fetchall():
            schema.setdefault(f"warehouse.{t}", {})[col] = ty
    finally:
        con.close()
    tables = {k.split(".", 1)[1] for k in schema}
    statements = []
    for n, q in queries:
        tree = sqlglot.parse_one(q, read="duckdb")
        for t in tree.find_all(exp.Table):
            if not t.db and t.name in tables:
                t.set("db", exp.to_identifier("warehouse"))
        statements.append((int(n), f"CREATE TABLE warehouse.q{n} AS {tree.sql(dialect='duckdb')}"))
    return statements, schema


def run() -> dict[str, Any]:
    from headwater.lineage import build_run_events, column_lineage, default_validator

    statements, schema = _tpch()
    repeats = c.sized(10, 3)

    def lineage_all() -> list[Any]:
        return [column_lineage(sql, schema=schema) for _, sql in statements]

    times = c.measure(lineage_all, warmup=1, repeats=repeats)
    results = lineage_all()
    per_query = {}
    for (n, sql), _ in zip(statements, results, strict=True):
        t0 = time.perf_counter()
        column_lineage(sql, schema=schema)
        per_query[f"q{n}"] = round((time.perf_counter() - t0) * 1000, 3)
    gaps = {f"q{n}": r.gaps for (n, _), r in zip(statements, results, strict=True) if r.gaps}
    validator = default_validator()

    def events_all() -> int:
        count = 0
        for (n, sql), r in zip(statements, results, strict=True):
            for ev in build_run_events("headwater://bench", f"tpch.q{n}", sql, r, schemas=schema):
                validator.validate(ev)
                count += 1
        return count

    event_times = c.measure(events_all, warmup=1, repeats=repeats)
    med = c.median(times)
    passed = med < GOAL_S and not gaps
    print(f"  column lineage, 22 TPC-H queries: median {c.fmt_s(med)} (goal < {GOAL_S:g} s) "
          f"{c.verdict(passed)}; slowest {max(per_query, key=per_query.get)} "
          f"{max(per_query.values()):.1f} ms; events + validation {c.fmt_s(c.median(event_times))}")
    maybe = c.maybe_profile(NAME, lineage_all)
    del maybe
    return c.write_result(
        NAME,
        parameters={"queries": len(statements), "repeats": repeats, "warmup": 1,
                    "statement": "CREATE TABLE warehouse.q<N> AS <TPC-H query N>"},
        raw=None,
        headwater={"column_lineage_22": c.summary(times),
                   "events_build_and_validate_44": c.summary(event_times),
                   "per_query_ms": per_query,
                   "output_columns": sum(len(r.columns) for r in results),
                   "gaps": gaps},
        ratio=None,
        goal={"metric": "median total seconds for column lineage of all 22 queries", "max_s": GOAL_S},
        passed=passed,
    )


if __name__ == "__main__":
    run()
