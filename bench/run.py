"""Run the Headwater benchmarks: ``python bench/run.py`` (all) or ``python bench/run.py NAME...``.

The foundation and governed benchmarks share one TPC-H platform and run in this process; the
others (events, CDC, PII, audit, lineage, telemetry, HTTP) build their own set-up and run as
their own scripts, one subprocess each.

Environment: ``HEADWATER_BENCH_SF`` (TPC-H scale factor, default 1),
``HEADWATER_BENCH_QUICK=1`` (small sizes, a smoke test; results go to bench/results/quick/),
``HEADWATER_BENCH_PROFILE=1`` (cProfile one Headwater call per benchmark into bench/data/profiles/),
``HEADWATER_BENCH_PG_DSN`` (Postgres, default host=127.0.0.1 port=5432 dbname=test user=postgres).
Exit status is 1 when a benchmark misses its goal or fails, 0 otherwise (skips do not fail).
"""

from __future__ import annotations

import importlib
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as c  # noqa: E402

FOUNDATION = ["scan_duckdb", "point_lookup", "keyset_pagination", "scan_postgres", "audit_overhead"]
# governed benchmarks run on their own platform (a policy applied), after the open ones
GOVERNED = ["governed_tpch", "decision_cache"]
# standalone scripts (own set-up, own process)
STANDALONE = ["audit_verify", "lineage_tpch", "events_throughput", "cdc_throughput", "pii_scan", "pii_text",
              "telemetry_overhead", "http_service"]
BENCHMARKS = FOUNDATION + GOVERNED + STANDALONE


def _standalone(name: str) -> str:
    import subprocess

    here = Path(__file__).resolve().parent
    rc = subprocess.call([sys.executable, str(here / f"{name}.py")], cwd=here.parent)
    return "done (see its output)" if rc == 0 else "FAIL"


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    names = args or BENCHMARKS
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
        return 2
    info = c.machine_info()
    print(
        f"Headwater benchmarks: sf={c.SF:g} quick={c.QUICK} cores={info['cores']} "
        f"duckdb={info['duckdb']} pyarrow={info['pyarrow']}",
        flush=True,
    )
    t_all = time.perf_counter()
    outcomes: dict[str, str] = {}
    try:
        for name in names:
            print(f"\n== {name}", flush=True)
            t0 = time.perf_counter()
            try:
                if name in STANDALONE:
                    c.close_platform()  # the script opens the TPC-H files itself: no lock held here
                    outcomes[name] = _standalone(name)
                else:
                    doc = importlib.import_module(name).run()
                    outcomes[name] = c.verdict(doc.get("passed"))
            except Exception:  # noqa: BLE001
                traceback.print_exc()
                outcomes[name] = "ERROR"
            print(f"  ({time.perf_counter() - t0:.1f} s)", flush=True)
    finally:
        c.close_platform()
    print(f"\n== summary ({time.perf_counter() - t_all:.0f} s)")
    for name, outcome in outcomes.items():
        print(f"  {name:<20} {outcome}")
    return 1 if any(o in ("FAIL", "ERROR") for o in outcomes.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
