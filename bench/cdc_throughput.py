"""Postgres CDC: change events per second from one slot into the bus, and commit-to-publish
latency at a fixed write rate.

* **throughput** -- a fresh table in the captured publication; ``N`` rows are inserted in
  transactions of 100 (the source write rate is measured too), then one :class:`PostgresCDC`
  streams them from its slot into the bus (decode, Debezium envelope, CloudEvents JSON,
  ``publish_many``, confirm). events/s = events / wall time of ``run(max_events=N)``.
  Goal: >= 25,000 events/s on 2 cores.
* **latency** -- the connector runs while a writer commits 50-row transactions every 10 ms
  (5,000 changes/s) for ``SECONDS`` seconds; latency = bus acknowledgement time minus the
  server's commit timestamp, per transaction. Goal: p99 <= 100 ms.

Both run on the embedded bus (a temp SQLite log) and on NATS JetStream
(``HEADWATER_BENCH_NATS_URL``, default ``nats://127.0.0.1:4222``; skipped when it does not
answer). Raw baseline: the source write rate of the same rows (psycopg2, same transactions).
"""

from __future__ import annotations

import os
import socket
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as c  # noqa: E402

NATS_URL = os.environ.get("HEADWATER_BENCH_NATS_URL", "nats://127.0.0.1:4222")
N = c.sized(200_000, 20_000)
RATE = 5000
SECONDS = c.sized(20, 5)
TX_ROWS = 100


def _sql(dsn: str, statement: str, params: tuple | None = None) -> list:
    import psycopg2

    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(statement, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def _nats_up() -> bool:
    u = urlparse(NATS_URL)
    try:
        with socket.create_connection((u.hostname or "127.0.0.1", u.port or 4222), timeout=1):
            return True
    except OSError:
        return False


def _connector(dsn: str, bus, suffix: str, table: str):
    from headwater.cdc import PostgresCDC

    return PostgresCDC(dsn, slot=f"hw_bench_slot_{suffix}", publication=f"hw_bench_pub_{suffix}",
                       tables=[table], bus=bus, store="bench", heartbeat_interval=1.0,
                       snapshot=False)


def throughput(dsn: str, bus) -> dict:
    import psycopg2

    suffix = uuid.uuid4().hex[:8]
    table = f"cdc_bench_{suffix}"
    _sql(dsn, f"CREATE TABLE public.{table} (id int PRIMARY KEY, v int, s text, amount numeric(12,2), at timestamptz)")
    cdc = _connector(dsn, bus, suffix, table)
    try:
        cdc.run(idle_timeout=0.1)  # creates publication and slot
        conn = psycopg2.connect(dsn)
        t0 = time.perf_counter()
        with conn.cursor() as cur:
            for start in range(0, N, TX_ROWS):
                cur.execute(f"INSERT INTO public.{table} SELECT g, g %% 1000, md5(g::text), g * 1.25, now() "
                            "FROM generate_series(%s, %s) g", (start, start + TX_ROWS - 1))
                conn.commit()
        write_s = time.perf_counter() - t0
        conn.close()
        t0 = time.perf_counter()
        published = cdc.run(max_events=N)
        cdc_s = time.perf_counter() - t0
        lag = cdc.lag_bytes()
    finally:
        cdc.drop()
        _sql(dsn, f"DROP TABLE IF EXISTS public.{table}")
    return {"events": published, "seconds": round(cdc_s, 3), "events_per_s": round(published / cdc_s),
            "source_rows_per_s": round(N / write_s), "lag_bytes_after": lag}


def latency(dsn: str, bus) -> dict:
    import psycopg2

    suffix = uuid.uuid4().hex[:8]
    table = f"cdc_bench_{suffix}"
    _sql(dsn, f"CREATE TABLE public.{table} (id int PRIMARY KEY, v int, s text)")
    cdc = _connector(dsn, bus, suffix, table)
    try:
        cdc.run(idle_timeout=0.1)
        th = threading.Thread(target=cdc.run, daemon=True)
        th.start()
        time.sleep(0.5)
        rows_per_tx = RATE // 100
        conn = psycopg2.connect(dsn)
        next_id, t_start = 0, time.perf_counter()
        with conn.cursor() as cur:
            for i in range(SECONDS * 100):
                due = t_start + i * 0.01
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                cur.execute(f"INSERT INTO public.{table} SELECT g, 0, md5(g::text) FROM generate_series(%s, %s) g",
                            (next_id, next_id + rows_per_tx - 1))
                conn.commit()
                next_id += rows_per_tx
        achieved = next_id / (time.perf_counter() - t_start)
        conn.close()
        deadline = time.monotonic() + 30
        while cdc.status()["events"] < next_id and time.monotonic() < deadline:
            time.sleep(0.05)
        cdc.stop()
        th.join(10)
        lat = sorted(cdc.latencies())
    finally:
        cdc.drop()
        _sql(dsn, f"DROP TABLE IF EXISTS public.{table}")
    q = statistics.quantiles(lat, n=100) if len(lat) > 1 else [float("nan")] * 99
    return {"target_changes_per_s": RATE, "achieved_changes_per_s": round(achieved), "transactions": len(lat),
            "p50_ms": round(q[49] * 1000, 2), "p99_ms": round(q[98] * 1000, 2),
            "max_ms": round(lat[-1] * 1000, 2) if lat else None}


def main() -> None:
    from headwater.events.bus import connect

    reason = c.postgres_reachable()
    if reason is None:
        level = _sql(c.PG_DSN, "SHOW wal_level")[0][0]
        if level != "logical":
            reason = f"wal_level is {level!r}, CDC needs 'logical'"
    goal = {"events_per_s": 25_000, "p99_ms_at_5000_per_s": 100}
    if reason:
        c.write_result("cdc_throughput", parameters={"events": N}, raw=None, headwater=None, ratio=None,
                       goal=goal, passed=None, skipped=reason)
        print("skipped:", reason)
        return
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        buses = {"embedded": lambda: connect(f"embedded:{tmp}/events.db")}
        if _nats_up():
            buses["nats"] = lambda: connect(NATS_URL)
        for name, make in buses.items():
            bus = make()
            try:
                results[name] = {"throughput": throughput(c.PG_DSN, bus), "latency": latency(c.PG_DSN, bus)}
            finally:
                bus.close()
            print(name, results[name])
    emb = results["embedded"]
    passed = (emb["throughput"]["events_per_s"] >= goal["events_per_s"]
              and emb["latency"]["p99_ms"] <= goal["p99_ms_at_5000_per_s"])
    c.write_result(
        "cdc_throughput",
        parameters={"events": N, "tx_rows": TX_ROWS, "latency_rate": RATE, "latency_seconds": SECONDS},
        raw={"source_rows_per_s": emb["throughput"]["source_rows_per_s"]},
        headwater=results,
        ratio=emb["throughput"]["events_per_s"] / emb["throughput"]["source_rows_per_s"],
        goal=goal,
        passed=passed,
    )
    print(c.verdict(passed))


if __name__ == "__main__":
    main()
