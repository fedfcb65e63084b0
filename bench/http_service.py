"""http_service: governed queries over HTTP (``headwater serve``) vs the same calls in-process.

A platform of its own (``bench/data/platform-http/``: SQLite ``app``, Parquet ``lake``; no
DuckDB file, so the server process and this one can open it side by side) with a policy
applied: principal ``analyst`` sees ``app.customers`` (20,000 rows, ``demo.generate_customers``)
with ``email`` masked to its domain, ``phone`` to its last 4 digits and rows filtered to its
countries, and ``lake.events`` (1,000,000 rows) filtered to its regions. The server is
``create_app(platform)`` on uvicorn in a **subprocess** on loopback (rate limit off, no
concurrency limit), so client and server do not share a GIL.

* **Point lookups**: ``SELECT * FROM app.customers WHERE id = ?`` for random visible ids (seed
  42), ``N_CLIENTS`` threads at once. HTTP: one ``httpx.Client`` per thread (keep-alive),
  ``POST /v1/query`` with an ``X-API-Key``, JSON rows back. SDK: one ``Session`` per thread,
  ``session.sql(q, [k]).to_arrow()``. SDK and HTTP rounds alternate (3 each); requests/s is the
  median round, p50/p99 come from every call. Ratio = SDK requests/s / HTTP requests/s (how
  many times slower the HTTP path is at the same concurrency).
* **Arrow export**: ``SELECT * FROM lake.events`` (row filter applied): HTTP with
  ``Accept: application/vnd.apache.arrow.stream``, the stream decoded to a table, vs the SDK's
  ``to_arrow()``; 1 warmup + 3 repeats each, alternating; MB/s of IPC bytes and rows/s.

No goal is set in the issue: the result records the figures (``passed`` is true when every
answer matched the SDK's). Quick mode: 4 clients, 600 lookups, 100,000 events.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import _common as c

NAME = "http_service"
SQL_LOOKUP = "SELECT * FROM app.customers WHERE id = ?"
SQL_EXPORT = "SELECT * FROM lake.events"
N_CUSTOMERS = 20_000
N_EVENTS = c.sized(1_000_000, 100_000)
N_CLIENTS = c.sized(8, 4)
N_LOOKUPS = c.sized(3_000, 600)
ROUNDS = 3
ARROW_STREAM = "application/vnd.apache.arrow.stream"
COUNTRIES = ["DE", "FR", "IT", "ES", "NL", "US"]
REGIONS = ["eu", "us"]

POLICY = f"""\
version: 1
roles:
  loader:
    grants:
      - {{datasets: "*", actions: [select, insert, update, delete]}}
  reader:
    grants:
      - {{datasets: ["app.customers", "lake.events"], actions: [select]}}
    columns:
      - {{column: app.customers.email, mask: email_domain}}
      - {{column: app.customers.phone, mask: last4}}
      - {{column: app.customers.ssn, deny: true}}
    row_filters:
      - {{datasets: app.customers, where: "country IN principal.countries"}}
      - {{datasets: lake.events, where: "region IN principal.regions"}}
principals:
  bench_loader: {{roles: [loader], kind: service}}
  analyst: {{roles: [reader], attributes: {{countries: {COUNTRIES}, regions: {REGIONS}}}}}
"""


def _dir() -> Path:
    return c.DATA_DIR / ("platform-http-quick" if c.QUICK else "platform-http")


def _config(directory: Path) -> Any:
    from headwater.config import Config, ParquetConfig, SQLiteConfig

    return Config(platform_dir=str(directory),
                  stores={"app": SQLiteConfig(path="app.db"), "lake": ParquetConfig(root="lake")})


def _events(n: int) -> Any:
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(42)
    regions = np.array(["eu", "us", "apac", "latam"])
    kinds = np.array(["view", "click", "purchase", "refund"])
    return pa.table({
        "id": pa.array(np.arange(1, n + 1, dtype=np.int64)),
        "customer_id": pa.array(rng.integers(1, N_CUSTOMERS + 1, n, dtype=np.int64)),
        "region": pa.array(regions[rng.integers(0, 4, n)]),
        "kind": pa.array(kinds[rng.integers(0, 4, n)]),
        "amount": pa.array(np.round(rng.random(n) * 500, 2)),
        "ts": pa.array(np.datetime64("2026-01-01T00:00:00", "us")
                       + rng.integers(0, 86_400 * 300, n).astype("timedelta64[s]")),
    })


def _open() -> Any:
    """The benchmark platform, with its data and policy made once."""
    from headwater.demo import generate_customers
    from headwater.platform import Platform

    directory = _dir()
    marker = directory / f".ready-{N_EVENTS}"
    platform = Platform(_config(directory))
    if marker.exists():
        return platform
    t0 = time.perf_counter()
    platform.apply_policy(POLICY, source="bench/http_service.py", applied_by="bench")
    loader = platform.session("bench_loader")
    loader.write("app.customers", generate_customers(N_CUSTOMERS), key="id", mode="overwrite")
    loader.write("lake.events", _events(N_EVENTS), key="id", mode="overwrite")
    marker.touch()
    print(f"  made the HTTP benchmark platform in {time.perf_counter() - t0:.1f} s", flush=True)
    return platform


# -- the server ----------------------------------------------------------------------------
def serve(directory: str, port: int) -> None:
    """Run ``create_app`` over the benchmark platform (the subprocess's entry point)."""
    import uvicorn

    from headwater.platform import Platform
    from headwater.service import ServiceConfig, create_app

    platform = Platform(_config(Path(directory)))
    app = create_app(platform, config=ServiceConfig(rate_enabled=False, max_concurrent=None))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_server() -> tuple[subprocess.Popen[bytes], str]:
    import httpx

    port = _free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(c.BENCH_DIR), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(_dir()), str(port)], env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.terminate()
    raise RuntimeError("the server did not answer /healthz within 60 s")


# -- point lookups ------------------------------------------------------------------------
def _concurrently(make_worker: Any, keys: list[int]) -> tuple[float, list[float]]:
    """Run ``keys`` split over ``N_CLIENTS`` threads; (wall seconds, per-call latencies)."""
    slices = [keys[i::N_CLIENTS] for i in range(N_CLIENTS)]
    with cf.ThreadPoolExecutor(N_CLIENTS) as pool:
        workers = list(pool.map(lambda _: make_worker(), range(N_CLIENTS)))  # set up untimed
        t0 = time.perf_counter()
        parts = list(pool.map(lambda pair: pair[0](pair[1]), zip(workers, slices, strict=True)))
        wall = time.perf_counter() - t0
    for w in workers:
        getattr(w, "close", lambda: None)()
    return wall, [t for part in parts for t in part]


class _HttpWorker:
    def __init__(self, url: str, token: str) -> None:
        import httpx

        self.client = httpx.Client(base_url=url, headers={"X-API-Key": token}, timeout=30)

    def __call__(self, keys: list[int]) -> list[float]:
        out, pc, post = [], time.perf_counter, self.client.post
        for k in keys:
            t0 = pc()
            resp = post("/v1/query", json={"sql": SQL_LOOKUP, "params": [k]})
            resp.raise_for_status()
            resp.json()
            out.append(pc() - t0)
        return out

    def close(self) -> None:
        self.client.close()


class _SdkWorker:
    def __init__(self, platform: Any) -> None:
        self.session = platform.session("analyst")

    def __call__(self, keys: list[int]) -> list[float]:
        out, pc, sql = [], time.perf_counter, self.session.sql
        for k in keys:
            t0 = pc()
            sql(SQL_LOOKUP, [k]).to_arrow()
            out.append(pc() - t0)
        return out


def _pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(len(s) * q))]


def _lookup_stats(walls: list[float], lat: list[float], per_round: int) -> dict[str, Any]:
    rps = [per_round / w for w in walls]
    return {"requests_per_s": round(statistics.median(rps), 1),
            "rounds_requests_per_s": [round(r, 1) for r in rps],
            "p50_ms": round(_pct(lat, 0.50) * 1000, 3), "p99_ms": round(_pct(lat, 0.99) * 1000, 3),
            "mean_ms": round(statistics.fmean(lat) * 1000, 3), "calls": len(lat)}


def _check_lookup(platform: Any, url: str, token: str, key: int) -> None:
    import httpx

    sdk = platform.session("analyst").sql(SQL_LOOKUP, [key]).to_arrow().to_pylist()
    body = httpx.post(f"{url}/v1/query", json={"sql": SQL_LOOKUP, "params": [key]},
                      headers={"X-API-Key": token}, timeout=30).json()
    http_rows = [dict(zip(body["columns"], row, strict=True)) for row in body["rows"]]
    assert len(sdk) == len(http_rows) == 1, (sdk, body)
    for col in ("id", "email", "phone", "country"):
        assert str(sdk[0][col]) == str(http_rows[0][col]), (col, sdk, http_rows)
    assert "ssn" not in body["columns"]


# -- Arrow export -------------------------------------------------------------------------
def _http_export(url: str, token: str) -> tuple[Any, int]:
    import httpx
    import pyarrow as pa

    with httpx.Client(base_url=url, timeout=300) as client:
        resp = client.post("/v1/query", json={"sql": SQL_EXPORT},
                           headers={"X-API-Key": token, "Accept": ARROW_STREAM})
        resp.raise_for_status()
        data = resp.content
    return pa.ipc.open_stream(pa.py_buffer(data)).read_all(), len(data)


def run() -> dict[str, Any]:
    platform = _open()
    proc, url = _start_server()
    key = platform.create_api_key("analyst", description="bench/http_service.py")
    token = key.token
    try:
        visible = platform.session("analyst").sql("SELECT id FROM app.customers").to_arrow()
        rng = random.Random(42)
        keys = rng.choices(visible.column("id").to_pylist(), k=N_LOOKUPS * ROUNDS)
        _check_lookup(platform, url, token, keys[0])

        # -- point lookups: warm both sides, then alternate rounds ------------------------
        _concurrently(lambda: _SdkWorker(platform), keys[: N_CLIENTS * 25])
        _concurrently(lambda: _HttpWorker(url, token), keys[: N_CLIENTS * 25])
        sdk_walls, http_walls, sdk_lat, http_lat = [], [], [], []
        for r in range(ROUNDS):
            chunk = keys[r * N_LOOKUPS:(r + 1) * N_LOOKUPS]
            wall, lat = _concurrently(lambda: _SdkWorker(platform), chunk)
            sdk_walls.append(wall)
            sdk_lat += lat
            wall, lat = _concurrently(lambda: _HttpWorker(url, token), chunk)
            http_walls.append(wall)
            http_lat += lat
        sdk = _lookup_stats(sdk_walls, sdk_lat, N_LOOKUPS)
        http = _lookup_stats(http_walls, http_lat, N_LOOKUPS)
        ratio = sdk["requests_per_s"] / http["requests_per_s"]
        print(f"  point lookups, {N_CLIENTS} clients: SDK {sdk['requests_per_s']:,.0f} req/s "
              f"(p50 {sdk['p50_ms']:.2f} ms, p99 {sdk['p99_ms']:.2f} ms) | HTTP "
              f"{http['requests_per_s']:,.0f} req/s (p50 {http['p50_ms']:.2f} ms, p99 "
              f"{http['p99_ms']:.2f} ms) | ratio SDK/HTTP {ratio:.2f}", flush=True)

        # -- Arrow export ---------------------------------------------------------------
        s = platform.session("analyst")
        sdk_table = s.sql(SQL_EXPORT).to_arrow()
        http_table, nbytes = _http_export(url, token)
        assert http_table.num_rows == sdk_table.num_rows > 0, (http_table.num_rows, sdk_table.num_rows)
        assert http_table.schema.names == sdk_table.schema.names
        assert set(http_table.column("region").unique().to_pylist()) <= set(REGIONS)
        sdk_t: list[float] = []
        http_t: list[float] = []
        for _ in range(3):
            t0 = time.perf_counter()
            s.sql(SQL_EXPORT).to_arrow()
            sdk_t.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            _http_export(url, token)
            http_t.append(time.perf_counter() - t0)
        rows = sdk_table.num_rows
        mb = nbytes / 1e6
        sdk_s, http_s = c.median(sdk_t), c.median(http_t)
        export = {
            "rows": rows, "ipc_bytes": nbytes, "arrow_nbytes": sdk_table.nbytes,
            "sdk": {**c.summary(sdk_t), "rows_per_s": round(rows / sdk_s), "mb_per_s": round(sdk_table.nbytes / 1e6 / sdk_s, 1)},
            "http": {**c.summary(http_t), "rows_per_s": round(rows / http_s), "mb_per_s": round(mb / http_s, 1)},
            "ratio_http_to_sdk_time": round(http_s / sdk_s, 3),
        }
        print(f"  Arrow export of {rows:,} rows ({mb:.1f} MB IPC): SDK {fmt(rows / sdk_s)} rows/s | "
              f"HTTP {fmt(rows / http_s)} rows/s, {mb / http_s:,.0f} MB/s | time ratio HTTP/SDK "
              f"{http_s / sdk_s:.2f}", flush=True)
    finally:
        platform.revoke_api_key(key.key_id, actor="bench")
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        platform.close()

    return c.write_result(
        NAME,
        parameters={"clients": N_CLIENTS, "lookups_per_round": N_LOOKUPS, "rounds": ROUNDS,
                    "customers": N_CUSTOMERS, "events": N_EVENTS, "lookup_sql": SQL_LOOKUP,
                    "export_sql": SQL_EXPORT, "server": "uvicorn, 1 process, subprocess on loopback"},
        raw={"point_lookup": sdk, "export": export["sdk"]},
        headwater={"point_lookup": http, "export": export["http"]},
        ratio=ratio,
        goal={"description": "none set in issue 9: figures recorded; ratio = SDK req/s / HTTP req/s "
                             "at the same concurrency"},
        passed=True,
        extra={"export": export},
    )


def fmt(x: float) -> str:
    return f"{x:,.0f}"


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        serve(sys.argv[2], int(sys.argv[3]))
    else:
        doc = run()
        print(f"{NAME}: ratio SDK/HTTP {doc['ratio']} ({c.verdict(doc['passed'])})")
