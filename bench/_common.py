"""Shared helpers for the Headwater benchmarks.

Every benchmark runs Headwater and the raw engine/client side by side in one process, on the
same data, and writes ``bench/results/<name>.json``. This module holds what they share:

* settings from the environment (``HEADWATER_BENCH_SF``, ``HEADWATER_BENCH_QUICK``,
  ``HEADWATER_BENCH_PROFILE``);
* timing (warmup + repeats, alternating raw/Headwater so drift hits both), medians;
* cached data generation under ``bench/data/`` (TPC-H via DuckDB's offline ``tpch`` extension);
* the one benchmark :class:`~headwater.platform.Platform` per process (a DuckDB file can be
  opened by one DuckDB instance per process, so the raw baseline uses the warehouse store's own
  handle, ``platform.store("warehouse").cursor()``);
* result writing and optional cProfile of the Headwater side.

Nothing here downloads anything: the ``tpch`` extension is loaded by path from the
``duckdb-ext-tpch`` package.
"""

from __future__ import annotations

import cProfile
import datetime as dt
import gc
import io
import json
import os
import platform as py_platform
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
DATA_DIR = BENCH_DIR / "data"
RESULTS_DIR = BENCH_DIR / "results"

PG_DSN = os.environ.get("HEADWATER_BENCH_PG_DSN", "host=127.0.0.1 port=5432 dbname=test user=postgres")
PG_SCHEMA = "hw_bench"


# -- settings ---------------------------------------------------------------------------
def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


QUICK = _env_flag("HEADWATER_BENCH_QUICK")
PROFILE = _env_flag("HEADWATER_BENCH_PROFILE")


def _scale_factor() -> float:
    raw = os.environ.get("HEADWATER_BENCH_SF")
    if raw:
        return float(raw)
    return 0.01 if QUICK else 1.0


SF = _scale_factor()


def sf_label(sf: float = SF) -> str:
    """``1``, ``0.1``, ``0.01`` -> a file-name-safe label."""
    return f"{sf:g}".replace(".", "_")


def sized(full: int, quick: int) -> int:
    """``full`` normally, ``quick`` in quick mode."""
    return quick if QUICK else full


# -- timing -----------------------------------------------------------------------------
def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def measure(fn: Callable[[], Any], *, warmup: int = 1, repeats: int = 5) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        gc.collect()
        t, out = _timed(fn)
        del out
        times.append(t)
    return times


def measure_pair(
    raw: Callable[[], Any],
    hw: Callable[[], Any],
    *,
    warmup: int = 1,
    repeats: int = 5,
    check: Callable[[Any, Any], None] | None = None,
) -> tuple[list[float], list[float]]:
    """Time ``raw`` and ``hw`` alternately (raw, hw, raw, hw, ...); returns both lists.

    ``check(raw_result, hw_result)`` runs once on the warmup results (e.g. equal row counts).
    Results are dropped before the next call so two large tables never sit in memory at once.
    """
    for i in range(max(warmup, 1 if check else 0)):
        r = raw()
        h = hw()
        if check and i == 0:
            check(r, h)
        del r, h
    raw_t: list[float] = []
    hw_t: list[float] = []
    for _ in range(repeats):
        gc.collect()
        t, out = _timed(raw)
        del out
        raw_t.append(t)
        gc.collect()
        t, out = _timed(hw)
        del out
        hw_t.append(t)
    return raw_t, hw_t


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def summary(times: list[float]) -> dict[str, Any]:
    """Raw timings plus median/min/max (seconds)."""
    return {
        "timings_s": [round(t, 6) for t in times],
        "median_s": round(median(times), 6),
        "min_s": round(min(times), 6),
        "max_s": round(max(times), 6),
    }


def fmt_s(t: float) -> str:
    return f"{t * 1000:.2f} ms" if t < 1 else f"{t:.3f} s"


# -- machine / results ------------------------------------------------------------------
def machine_info() -> dict[str, Any]:
    import duckdb
    import pyarrow

    cpu = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
                break
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    return {
        "cores": cores,
        "cpu_count": os.cpu_count(),
        "cpu": cpu,
        "memory_gb": mem_gb,
        "os": py_platform.platform(),
        "python": sys.version.split()[0],
        "duckdb": duckdb.__version__,
        "pyarrow": pyarrow.__version__,
        # other work on the machine skews timings; the 1-minute load average at write time
        "loadavg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }


def result_path(name: str) -> Path:
    """``bench/results/<name>.json``; quick runs go to ``bench/results/quick/`` (not committed)."""
    if QUICK:
        return RESULTS_DIR / "quick" / f"{name}.json"
    if SF != 1.0:
        return RESULTS_DIR / f"{name}.sf{sf_label()}.json"
    return RESULTS_DIR / f"{name}.json"


def write_result(
    name: str,
    *,
    parameters: dict[str, Any],
    raw: dict[str, Any] | None,
    headwater: dict[str, Any] | None,
    ratio: float | None,
    goal: dict[str, Any],
    passed: bool | None,
    extra: dict[str, Any] | None = None,
    skipped: str | None = None,
) -> dict[str, Any]:
    """Write one benchmark's result JSON and return it."""
    doc: dict[str, Any] = {
        "name": name,
        "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "quick": QUICK,
        "parameters": {"sf": SF, **parameters},
        "raw": raw,
        "headwater": headwater,
        "ratio": None if ratio is None else round(ratio, 4),
        "goal": goal,
        "passed": passed,
    }
    if skipped:
        doc["skipped"] = skipped
    if extra:
        doc["extra"] = extra
    path = result_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    print(f"  -> {path.relative_to(BENCH_DIR.parent)}")
    return doc


def verdict(passed: bool | None) -> str:
    return {True: "PASS", False: "FAIL", None: "SKIP"}[passed]


# -- profiling --------------------------------------------------------------------------
def maybe_profile(name: str, fn: Callable[[], Any], *, top: int = 30) -> str | None:
    """With ``HEADWATER_BENCH_PROFILE=1``: cProfile one call of ``fn``, print and save the top.

    The text goes to ``bench/data/profiles/<name>.txt`` (and the raw ``.prof`` beside it).
    """
    if not PROFILE:
        return None
    prof = cProfile.Profile()
    prof.enable()
    out = fn()
    prof.disable()
    del out
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf).strip_dirs().sort_stats("cumulative")
    stats.print_stats(top)
    buf.write("\n--- by internal time ---\n")
    stats.sort_stats("tottime").print_stats(top)
    text = buf.getvalue()
    out_dir = DATA_DIR / "profiles"
    out_dir.mkdir(parents=True, exist_ok=True)
    prof.dump_stats(str(out_dir / f"{name}.prof"))
    (out_dir / f"{name}.txt").write_text(text)
    print(f"  profile of the Headwater side -> {out_dir / (name + '.txt')}")
    print("\n".join(text.splitlines()[: top + 12]))
    return text


# -- data -------------------------------------------------------------------------------
def tpch_path(sf: float = SF) -> Path:
    return DATA_DIR / f"tpch-sf{sf_label(sf)}" / "warehouse.duckdb"


def ensure_tpch(sf: float = SF) -> Path:
    """A DuckDB file holding TPC-H at ``sf`` (generated once, then reused)."""
    from headwater.stores.duckdb import load_extension, new_connection

    path = tpch_path(sf)
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".duckdb.tmp")
    for p in (tmp, Path(str(tmp) + ".wal")):
        if p.exists():
            p.unlink()
    print(f"  generating TPC-H sf={sf:g} into {path} (once) ...", flush=True)
    t0 = time.perf_counter()
    con = new_connection(tmp, allow_unsigned=True)
    try:
        load_extension(con, "tpch")
        con.execute(f"CALL dbgen(sf={sf})")
        con.execute("CHECKPOINT")
        n = con.execute("SELECT count(*) FROM lineitem").fetchone()[0]
    finally:
        con.close()
    tmp.rename(path)
    print(f"  generated lineitem={n:,} rows in {time.perf_counter() - t0:.1f} s", flush=True)
    return path


def ensure_lineitem_pk(path: Path) -> None:
    """Add ``lineitem_pk``: lineitem with its TPC-H key (l_orderkey, l_linenumber) declared.

    dbgen declares no keys, so Headwater cannot know (l_orderkey, l_linenumber) is unique and
    pages ``lineitem`` on every column; ``lineitem_pk`` measures the keyed case.
    """
    from headwater.stores.duckdb import new_connection

    con = new_connection(path)
    try:
        have = con.execute(
            "SELECT count(*) FROM duckdb_constraints() WHERE table_name = 'lineitem_pk' "
            "AND constraint_type = 'PRIMARY KEY'"
        ).fetchone()[0]
        if have:
            return
        t0 = time.perf_counter()
        con.execute("DROP TABLE IF EXISTS lineitem_pk")
        con.execute("CREATE TABLE lineitem_pk AS SELECT * FROM lineitem ORDER BY l_orderkey, l_linenumber")
        con.execute("ALTER TABLE lineitem_pk ADD PRIMARY KEY (l_orderkey, l_linenumber)")
        con.execute("CHECKPOINT")
        print(f"  built lineitem_pk (once) in {time.perf_counter() - t0:.1f} s", flush=True)
    finally:
        con.close()


def postgres_reachable() -> str | None:
    """None when Postgres answers, else the reason it does not."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install 'headwater[postgres]')"
    try:
        with psycopg.connect(PG_DSN, connect_timeout=3) as con:
            con.execute("SELECT 1")
    except Exception as err:  # noqa: BLE001
        return f"Postgres at {PG_DSN!r} is unreachable: {str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__}"
    return None


_PLATFORM: Any = None
_PG_REASON: str | None = "not checked"


def pg_skip_reason() -> str | None:
    """Why Postgres benchmarks are skipped (None when Postgres is configured)."""
    get_platform()
    return _PG_REASON


def get_platform() -> Any:
    """The benchmark platform (built once per process; no policy applied: open).

    Stores: ``warehouse`` (DuckDB file with TPC-H), ``app`` (SQLite), and ``pg`` (Postgres,
    schema ``hw_bench``) when Postgres is reachable.
    """
    global _PLATFORM, _PG_REASON
    if _PLATFORM is not None:
        return _PLATFORM
    close_governed_platform()  # one DuckDB instance per file per process
    from headwater.config import Config, DuckDBConfig, PostgresConfig, QueryConfig, SQLiteConfig
    from headwater.platform import Platform

    wh = ensure_tpch()
    ensure_lineitem_pk(wh)
    stores: dict[str, Any] = {
        "warehouse": DuckDBConfig(path=str(wh)),
        "app": SQLiteConfig(path="app.db"),
    }
    _PG_REASON = postgres_reachable()
    if _PG_REASON is None:
        import psycopg

        with psycopg.connect(PG_DSN, autocommit=True) as con:
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {PG_SCHEMA}")
        stores["pg"] = PostgresConfig(dsn=PG_DSN, schema=PG_SCHEMA)
    cfg = Config(
        platform_dir=str(DATA_DIR / f"platform-sf{sf_label()}"),
        stores=stores,
        # keyset_pagination positions a cursor at 90% depth with one big page.
        query=QueryConfig(max_page_size=100_000_000),
    )
    _PLATFORM = Platform(cfg)
    _PLATFORM.sync_catalog()
    return _PLATFORM


def close_platform() -> None:
    global _PLATFORM
    if _PLATFORM is not None:
        _PLATFORM.close()
        _PLATFORM = None
    close_governed_platform()


# -- governed platform ------------------------------------------------------------------
# A policy, once applied, stays in force in that platform's metadata store (default deny), so
# the governed benchmarks use their own platform directory (same TPC-H DuckDB file, own
# metadata and SQLite ``app.db``); the open platform above never sees a policy.
GOV_NATIONS = [0, 2, 3, 6, 7, 8, 9, 12, 18, 21]
"""Nation keys the analyst may see (customer row filter): ALGERIA, BRAZIL, CANADA, FRANCE,
GERMANY, INDIA, INDONESIA, JAPAN, CHINA, VIETNAM -- so TPC-H Q5/Q7/Q8 keep rows."""

GOV_POLICY = f"""\
version: 1
settings:
  # TPC-H Q10 groups by c_phone/c_address and Q22 filters and groups on substring(c_phone):
  # masked values are allowed in predicates (they are computed inside the masking scan anyway).
  masked_predicates: allow
roles:
  bench_admin:
    grants:
      - {{datasets: "*", actions: [select, insert, update, delete]}}
  tpch_analyst:
    grants:
      - {{datasets: ["warehouse.*", "app.*"], actions: [select]}}
    columns:
      - {{column: "warehouse.customer.c_phone", mask: last4}}
      - {{column: "warehouse.customer.c_address", mask: redact}}
    row_filters:
      - {{datasets: warehouse.customer, where: "c_nationkey IN principal.nations"}}
principals:
  bench_loader: {{roles: [bench_admin], kind: service}}
  analyst: {{roles: [tpch_analyst], attributes: {{nations: {GOV_NATIONS}}}}}
"""

_GOV_PLATFORM: Any = None


def get_governed_platform() -> Any:
    """The governed benchmark platform with :data:`GOV_POLICY` applied (once per process).

    Stores: ``warehouse`` (the same TPC-H DuckDB file) and ``app`` (its own SQLite file).
    Principals: ``analyst`` (role ``tpch_analyst``) and ``bench_loader`` (admin, for setup).
    """
    global _GOV_PLATFORM, _PLATFORM
    if _GOV_PLATFORM is not None:
        return _GOV_PLATFORM
    if _PLATFORM is not None:  # one DuckDB instance per file per process
        _PLATFORM.close()
        _PLATFORM = None
    from headwater.config import Config, DuckDBConfig, QueryConfig, SQLiteConfig
    from headwater.platform import Platform

    wh = ensure_tpch()
    cfg = Config(
        platform_dir=str(DATA_DIR / f"platform-gov-sf{sf_label()}"),
        stores={"warehouse": DuckDBConfig(path=str(wh)), "app": SQLiteConfig(path="app.db")},
        query=QueryConfig(max_page_size=100_000_000),
    )
    _GOV_PLATFORM = Platform(cfg)
    _GOV_PLATFORM.sync_catalog()
    _GOV_PLATFORM.policies.apply(GOV_POLICY, source="bench/_common.py:GOV_POLICY", applied_by="bench")
    return _GOV_PLATFORM


def close_governed_platform() -> None:
    global _GOV_PLATFORM
    if _GOV_PLATFORM is not None:
        _GOV_PLATFORM.close()
        _GOV_PLATFORM = None


def session() -> Any:
    return get_platform().session("bench")
