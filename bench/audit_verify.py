"""audit_verify: ``AuditLog.verify()`` over 1M hash-chained audit records.

Setup (once, cached under ``bench/data/audit/``): 1M records with realistic fields, the chain
computed in Python with the library's own encoder and bulk-inserted, checkpoints every 1000 and
a signed head, exactly as ``record`` would have left them. Then ``verify()`` is timed: on
SQLite the second half of the chain is checked by a worker process (two CPUs), on Postgres the
server hashes every record itself (see ``headwater.audit._verify``). ``elapsed_s`` of the
reports includes starting the worker. Raw: one plain ``SELECT seq, hash, record ... ORDER BY
seq`` read to Python (no hashing), for scale. Goal: median verify rate >= 500,000 records/s
(SQLite metadata store; Postgres, when reachable, is reported under ``extra``). ``extra`` also
records the 1-minute load average before and after, since the machine is shared.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import _common as c

NAME = "audit_verify"
GOAL = 500_000
KEY = b"headwater-bench-audit-signing-key"
CHECKPOINT_EVERY = 1000
PG_SCHEMA = "hw_bench_audit"


def _events(n: int) -> Any:
    from headwater.audit import AuditEvent

    actors = ["alice", "bob", "carol", "svc-etl", "svc-api"]
    datasets = [["app.orders"], ["app.customers"], ["warehouse.order_facts", "app.orders"]]
    for i in range(n):
        deny = i % 50 == 0
        yield AuditEvent(
            actor=actors[i % 5], action="deny" if deny else ("write" if i % 7 == 0 else "query"),
            datasets=datasets[i % 3], columns=["o_orderkey", "o_totalprice", "o_orderdate"],
            masks={"email": "hash"} if i % 3 == 1 else {},
            row_filters=["region = ?"] if i % 4 == 0 else [],
            decision="deny" if deny else "allow", reason="rule pii-deny" if deny else None,
            statement="SELECT o_orderkey, o_totalprice FROM app.orders WHERE o_orderkey = ?",
            rows=i % 100, duration_ms=round(0.1 + (i % 97) / 10, 2), trace_id=f"{i:032x}",
        )


def _populate(meta: Any, n: int) -> None:
    """Write ``n`` records the way ``record`` would (but in big transactions)."""
    from headwater.audit._model import GENESIS, digest, encode, sign

    t0 = time.perf_counter()
    ts0 = int(dt.datetime(2026, 1, 1, tzinfo=dt.UTC).timestamp() * 1_000_000)
    pg = meta.dialect == "postgresql"
    raw = meta.engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("DELETE FROM hw_audit_records")
        cur.execute("DELETE FROM hw_audit_checkpoints")
        prev, rows, cps = GENESIS, [], []
        for seq, event in enumerate(_events(n), start=1):
            text = encode(prev, seq, ts0 + seq * 1000, event)
            prev = digest(text)
            rows.append((seq, prev, text))
            if seq % CHECKPOINT_EVERY == 0:
                cps.append((seq, prev, sign(KEY, "checkpoint", seq, prev), ts0))
            if len(rows) == 100_000 or seq == n:
                if pg:
                    with cur.copy("COPY hw_audit_records (seq, hash, record) FROM STDIN") as cp:
                        for r in rows:
                            cp.write_row(r)
                else:
                    cur.executemany("INSERT INTO hw_audit_records (seq, hash, record) VALUES (?, ?, ?)", rows)
                rows = []
        p = "%s" if pg else "?"
        cur.executemany(f"INSERT INTO hw_audit_checkpoints (seq, hash, sig, created_us) VALUES ({p}, {p}, {p}, {p})", cps)
        cur.execute(f"UPDATE hw_audit_head SET seq = {p}, hash = {p}, sig = {p}, anchor_seq = NULL, "
                    "anchor_hash = NULL, anchor_sig = NULL WHERE id = 1",
                    (n, prev, sign(KEY, "head", n, prev)))
        raw.commit()
    finally:
        raw.close()
    print(f"  wrote {n:,} records ({meta.dialect}) in {time.perf_counter() - t0:.1f} s", flush=True)


def _ready(meta: Any, n: int) -> Any:
    from headwater.audit import AuditLog

    audit = AuditLog(meta, signing_key=KEY, checkpoint_every=CHECKPOINT_EVERY)
    if audit.stats() != {"head_seq": n, "records": n, "anchor_seq": None}:
        _populate(meta, n)
    return audit


def _raw_scan(meta: Any) -> Any:
    def scan() -> int:
        raw = meta.engine.raw_connection()
        try:
            cur = raw.cursor()
            cur.execute("SELECT seq, hash, record FROM hw_audit_records ORDER BY seq")
            n = 0
            while True:
                rows = cur.fetchmany(50_000)
                if not rows:
                    return n
                n += len(rows)
        finally:
            raw.close()

    return scan


def _measure(meta: Any, n: int, repeats: int) -> dict[str, Any]:
    audit = _ready(meta, n)
    report = audit.verify()
    assert report.ok and report.records_checked == n, report
    load_before = os.getloadavg()[0]
    raw_t, hw_t = c.measure_pair(_raw_scan(meta), audit.verify, warmup=0, repeats=repeats)
    load = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    rate = n / c.median(hw_t)
    print(f"  {meta.dialect}: plain scan {c.fmt_s(c.median(raw_t))}  verify {c.fmt_s(c.median(hw_t))}"
          f"  = {rate:,.0f} records/s (goal >= {GOAL:,})", flush=True)
    c.maybe_profile(f"{NAME}_{meta.dialect}", audit.verify)
    return {"raw": c.summary(raw_t), "headwater": c.summary(hw_t), "rate": rate,
            "checkpoints": report.checkpoints_checked, "loadavg_1m": load}


def _pg_meta() -> Any:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    from headwater.metadata import MetadataStore

    info = conninfo_to_dict(c.PG_DSN)
    with psycopg.connect(c.PG_DSN, autocommit=True) as con:
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {PG_SCHEMA}")
    url = (f"postgresql+psycopg://{info.get('user', 'postgres')}@{info.get('host', '127.0.0.1')}:"
           f"{info.get('port', 5432)}/{info.get('dbname', 'test')}"
           f"?options={quote(f'-csearch_path={PG_SCHEMA}')}")
    return MetadataStore.open(url)


def run() -> dict[str, Any]:
    from headwater.metadata import MetadataStore

    n = c.sized(1_000_000, 50_000)
    repeats = c.sized(5, 3)
    path = c.DATA_DIR / "audit" / f"meta-{n}.db"
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    meta = MetadataStore.open(f"sqlite:///{path}")
    try:
        sqlite = _measure(meta, n, repeats)
    finally:
        meta.close()
    extra: dict[str, Any] = {"sqlite_rate_records_per_s": round(sqlite["rate"]),
                             "sqlite_loadavg_1m_before_after": sqlite["loadavg_1m"]}
    reason = c.postgres_reachable()
    if reason is None:
        pg_meta = _pg_meta()
        try:
            pg = _measure(pg_meta, n, repeats)
        finally:
            pg_meta.close()
        extra.update(postgres_raw=pg["raw"], postgres_headwater=pg["headwater"],
                     postgres_rate_records_per_s=round(pg["rate"]),
                     postgres_loadavg_1m_before_after=pg["loadavg_1m"])
    else:
        extra["postgres_skipped"] = reason
    passed = sqlite["rate"] >= GOAL
    print(f"  verify rate {sqlite['rate']:,.0f} records/s (goal >= {GOAL:,})  {c.verdict(passed)}")
    return c.write_result(
        NAME,
        parameters={"records": n, "repeats": repeats, "checkpoint_every": CHECKPOINT_EVERY,
                    "store": "sqlite", "raw": "SELECT seq, hash, record ORDER BY seq, fetchmany"},
        raw=sqlite["raw"],
        headwater=sqlite["headwater"],
        ratio=c.median(sqlite["headwater"]["timings_s"]) / c.median(sqlite["raw"]["timings_s"]),
        goal={"metric": "records / median verify seconds (sqlite)", "op": ">=", "value": GOAL},
        passed=passed,
        extra=extra,
    )


if __name__ == "__main__":
    run()
