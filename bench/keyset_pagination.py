"""keyset_pagination: a deep keyset page costs about what the first page costs.

Query: ``SELECT * FROM warehouse.<table> ORDER BY l_orderkey, l_linenumber``, page size 10,000,
on the same 6M rows (SF1), three ways:

* ``lineitem`` with the TPC-H key declared in the catalog
  (``platform.catalog.update("warehouse.lineitem", primary_key=["l_orderkey", "l_linenumber"])``;
  dbgen declares none): Headwater pages on the 2 key columns -- the goal;
* ``lineitem_pk``: a copy with ``PRIMARY KEY (l_orderkey, l_linenumber)`` declared in DuckDB
  (the catalog picks the key up from the store);
* ``lineitem_no_key``: ``lineitem`` with the catalog key cleared, so Headwater cannot know the two
  ORDER BY columns are unique and adds every output column as a tie-breaker (for information).

Headwater: the first page (``session.sql(q, page_size=10000)``) vs the page at 90% depth
(``session.sql(q, page_size=10000, cursor=c90)``). ``c90`` is the cursor Headwater would hand
out after row N90 = 90% of the rows. Asking for it through the public API
(``session.sql(q, page_size=N90).next_cursor``) takes minutes at SF1 (a 5.4M-row page), so it is
built directly with the platform's cursor codec from the row at N90 (found with cheap one-column
queries); quick mode checks that this cursor equals the public one, and every run checks that
the deep page equals raw ``OFFSET N90``'s rows.

Beside it: raw DuckDB OFFSET paging (``LIMIT 10000 OFFSET N90`` vs ``LIMIT 10000``) and a raw
DuckDB keyset page (``WHERE (l_orderkey, l_linenumber) >= (?, ?)``) on the same handle.
Goal: Headwater median(page at 90%) / median(first page) <= 1.5 (on ``lineitem`` with the
declared key).
"""

from __future__ import annotations

import time
from typing import Any

import _common as c

NAME = "keyset_pagination"
GOAL = 1.5
PAGE = 10_000
ORDER = "l_orderkey, l_linenumber"
KEY = ("l_orderkey", "l_linenumber")


def _cursor_at(s: Any, con: Any, table: str, q: str, n: int) -> str:
    """The cursor Headwater returns after the first ``n`` rows of ``q`` (built directly)."""
    from headwater.access.cursor import CursorState
    from headwater.access.session import _fingerprint

    platform = s.platform
    plan = platform.planner.prepare(q)
    # row n-1 in (l_orderkey, l_linenumber) order, without sorting all columns
    k = con.execute(f"SELECT l_orderkey FROM {table} ORDER BY l_orderkey LIMIT 1 OFFSET {n - 1}").fetchone()[0]
    before = con.execute(f"SELECT count(*) FROM {table} WHERE l_orderkey < ?", [k]).fetchone()[0]
    row = con.execute(
        f"SELECT * FROM {table} WHERE l_orderkey = ? ORDER BY l_linenumber LIMIT 1 OFFSET {n - 1 - before}", [k]
    ).fetch_arrow_table().to_pylist()[0]
    last = tuple(row[key.name] for key in plan.sort)
    ties = 0 if plan.unique_sort else 1  # (l_orderkey, l_linenumber) is unique in the data
    state = CursorState(_fingerprint(plan, []), s.principal.name, last, ties, PAGE)
    return platform.cursors.encode(state)


def _variant(s: Any, con: Any, table: str, rows: int, n90: int, warmup: int, repeats: int,
             label: str | None = None) -> dict[str, Any]:
    q = f"SELECT * FROM warehouse.{table} ORDER BY {ORDER}"
    label = label or table
    raw_q = f"SELECT * FROM {table} ORDER BY {ORDER}"
    platform = s.platform
    plan = platform.planner.prepare(q)
    t0 = time.perf_counter()
    c90 = _cursor_at(s, con, table, q, n90)
    print(f"  [{label}] sort keys={len(plan.sort)} unique={plan.unique_sort}; cursor at row {n90:,} "
          f"built in {time.perf_counter() - t0:.2f} s (untimed)", flush=True)
    if c.QUICK:
        public = s.sql(q, page_size=n90).next_cursor
        fp = _fingerprint_of(plan)
        a = platform.cursors.decode(public, fingerprint=fp, principal=s.principal.name)
        b = platform.cursors.decode(c90, fingerprint=fp, principal=s.principal.name)
        assert (a.last, a.ties) == (b.last, b.ties), (a, b)
        print(f"  [{label}] built cursor == public next_cursor of a {n90:,}-row page", flush=True)

    def hw_first() -> Any:
        return s.sql(q, page_size=PAGE)

    def hw_deep() -> Any:
        return s.sql(q, page_size=PAGE, cursor=c90)

    key = ["l_orderkey", "l_linenumber"]
    first = hw_first().to_arrow()
    ref_first = con.execute(f"{raw_q} LIMIT {PAGE}").fetch_arrow_table()
    assert first.select(key).to_pylist() == ref_first.select(key).to_pylist(), "first page mismatch"
    deep = hw_deep().to_arrow()
    last = deep.slice(0, 1).select(key).to_pylist()[0]
    hw_first_t, hw_deep_t = c.measure_pair(hw_first, hw_deep, warmup=warmup, repeats=repeats)

    raw_keyset_sql = (f"SELECT * FROM {table} WHERE (l_orderkey, l_linenumber) >= (?, ?) "
                      f"ORDER BY {ORDER} LIMIT {PAGE}")

    def raw_keyset_deep() -> Any:
        return con.execute(raw_keyset_sql, [last["l_orderkey"], last["l_linenumber"]]).fetch_arrow_table()

    raw_ks_t = c.measure(raw_keyset_deep, warmup=warmup, repeats=repeats)
    # extra: a page at 10% depth (DuckDB sorts every row after the cursor when LIMIT > 5000)
    n10 = rows // 10
    c10 = _cursor_at(s, con, table, q, n10)
    hw_10_t = c.measure(lambda: s.sql(q, page_size=PAGE, cursor=c10), warmup=0, repeats=c.sized(3, 2))
    ratio = c.median(hw_deep_t) / c.median(hw_first_t)
    out = {
        "table": table, "label": label, "query": q, "sort_keys": len(plan.sort), "unique_sort": plan.unique_sort,
        "headwater_first": c.summary(hw_first_t), "headwater_deep": c.summary(hw_deep_t),
        "raw_keyset_deep": c.summary(raw_ks_t),
        "headwater_at_10pct": c.summary(hw_10_t),
        "ratio_at_10pct": round(c.median(hw_10_t) / c.median(hw_first_t), 4),
        "ratio": round(ratio, 4), "passed": ratio <= GOAL,
        "headwater_first_vs_raw_limit": None,
        "headwater_deep_vs_raw_keyset": round(c.median(hw_deep_t) / c.median(raw_ks_t), 4),
        "_deep_keys": deep.select(key).to_pylist(),
    }
    print(f"  [{label}] headwater keyset: first {c.fmt_s(c.median(hw_first_t))}  at 90% "
          f"{c.fmt_s(c.median(hw_deep_t))}  ratio {ratio:.3f} (goal <= {GOAL})  {c.verdict(ratio <= GOAL)}")
    print(f"  [{label}] raw duckdb keyset page at 90%: {c.fmt_s(c.median(raw_ks_t))};  headwater page at 10%: "
          f"{c.fmt_s(c.median(hw_10_t))} (ratio {c.median(hw_10_t) / c.median(hw_first_t):.2f}, not the goal)", flush=True)
    c.maybe_profile(f"{NAME}_{label}_first", hw_first)
    c.maybe_profile(f"{NAME}_{label}_deep", hw_deep)
    return out


def _fingerprint_of(plan: Any) -> str:
    from headwater.access.session import _fingerprint

    return _fingerprint(plan, [])


def run() -> dict[str, Any]:
    platform = c.get_platform()
    s = c.session()
    con = platform.store("warehouse").cursor()
    rows = con.execute("SELECT count(*) FROM lineitem").fetchone()[0]
    n90 = int(rows * 0.9)
    warmup, repeats = 1, c.sized(5, 3)
    print(f"  rows={rows:,} page={PAGE:,} deep row={n90:,}", flush=True)

    # lineitem as dbgen makes it (no key anywhere), then with its TPC-H key declared in the catalog
    platform.catalog.update("warehouse.lineitem", primary_key=[])
    variants = {"lineitem_no_key": _variant(s, con, "lineitem", rows, n90, warmup, repeats, "lineitem_no_key")}
    platform.catalog.update("warehouse.lineitem", primary_key=list(KEY))
    variants["lineitem"] = _variant(s, con, "lineitem", rows, n90, warmup, repeats)
    variants["lineitem_pk"] = _variant(s, con, "lineitem_pk", rows, n90, warmup, repeats)

    # raw OFFSET paging (deep OFFSET is slow: few repeats; its result also checks the keyset page)
    raw_q = f"SELECT * FROM lineitem ORDER BY {ORDER}"
    off_first_t = c.measure(lambda: con.execute(f"{raw_q} LIMIT {PAGE}").fetch_arrow_table(),
                            warmup=warmup, repeats=repeats)
    off_deep_t = []
    for i in range(c.sized(2, 2)):
        t0 = time.perf_counter()
        ref = con.execute(f"{raw_q} LIMIT {PAGE} OFFSET {n90}").fetch_arrow_table()
        off_deep_t.append(time.perf_counter() - t0)
        if i == 0:
            ref_keys = ref.select(["l_orderkey", "l_linenumber"]).to_pylist()
            for t, v in variants.items():
                assert v["_deep_keys"] == ref_keys, f"{t}: keyset page at 90% != OFFSET page"
        del ref
    con.close()
    off_ratio = c.median(off_deep_t) / c.median(off_first_t)
    for v in variants.values():
        v.pop("_deep_keys")
        v["headwater_first_vs_raw_limit"] = round(c.median(v["headwater_first"]["timings_s"]) / c.median(off_first_t), 4)
    print(f"  raw OFFSET (lineitem): first {c.fmt_s(c.median(off_first_t))}  at 90% "
          f"{c.fmt_s(c.median(off_deep_t))}  ratio {off_ratio:.3f}")
    main = variants["lineitem"]
    for t, v in variants.items():
        print(f"  {t:<16} keyset ratio {v['ratio']:.3f} {c.verdict(v['passed'])}   OFFSET ratio {off_ratio:.1f}   "
              f"headwater first page / raw LIMIT {v['headwater_first_vs_raw_limit']:.2f}")
    return c.write_result(
        NAME,
        parameters={"rows": rows, "page_size": PAGE, "deep_row": n90, "order_by": ORDER,
                    "warmup": warmup, "repeats": repeats, "cursor": "built with the platform codec",
                    "declared_key": list(KEY), "declared_with": "platform.catalog.update(primary_key=...)"},
        raw={"offset_first": c.summary(off_first_t), "offset_deep": c.summary(off_deep_t),
             "keyset_deep": main["raw_keyset_deep"]},
        headwater={"first": main["headwater_first"], "deep": main["headwater_deep"]},
        ratio=main["ratio"],
        goal={"metric": "headwater median(page at 90%) / median(first page), on lineitem with the "
                      "TPC-H key declared in the catalog", "op": "<=",
              "value": GOAL},
        passed=main["passed"],
        extra={"offset_ratio": round(off_ratio, 4), "variants": variants},
    )


if __name__ == "__main__":
    import run as _run

    _run.main([NAME])
