"""SIGKILL the CDC process at random points under continuous writes, restart it each time:
the replica equals the source and every committed change was published (after de-dup)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time

import pytest

from headwater.cdc import ReplicaSink
from headwater.cdc.postgres import CHANGE_TYPE
from headwater.events.bus import connect
from tests.cdc.fix_cdc import sql

pytestmark = pytest.mark.postgres

BIG = "(SELECT string_agg(md5(random()::text || g::text), '') FROM generate_series(1, 400) g)"
KILLS = int(os.environ.get("HEADWATER_CDC_KILLS", "5"))


class Writer(threading.Thread):
    """Inserts, updates (small and TOASTed), deletes, multi-row transactions; counts the row
    changes it committed."""

    def __init__(self, dsn: str, table: str, seed: int) -> None:
        super().__init__(daemon=True)
        self.dsn, self.table, self.rng = dsn, table, random.Random(seed)
        self.changes = 0
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        import psycopg2

        conn = psycopg2.connect(self.dsn)
        t = f'public."{self.table}"'
        next_id = 1_000_000
        try:
            while not self.stop.is_set():
                with conn.cursor() as cur:
                    n = 0
                    for _ in range(self.rng.choice((1, 1, 2, 5))):  # statements in this transaction
                        r = self.rng.random()
                        if r < 0.35:
                            rows = self.rng.randint(1, 4)
                            cur.execute(f"INSERT INTO {t} (id, v, body, note) SELECT g, 0, "
                                        f"CASE WHEN random() < 0.2 THEN {BIG} END, 'new' "
                                        "FROM generate_series(%s, %s) g", (next_id, next_id + rows - 1))
                            next_id += rows
                        elif r < 0.65:
                            cur.execute(f"UPDATE {t} SET v = v + 1 WHERE id = (SELECT id FROM {t} ORDER BY random() LIMIT 1)")
                        elif r < 0.75:
                            cur.execute(f"UPDATE {t} SET body = {BIG} WHERE id = (SELECT id FROM {t} ORDER BY random() LIMIT 1)")
                        elif r < 0.85:  # touches a row but leaves a (maybe TOASTed) body unchanged
                            cur.execute(f"UPDATE {t} SET note = md5(random()::text) WHERE id = "
                                        f"(SELECT id FROM {t} WHERE body IS NOT NULL ORDER BY random() LIMIT 1)")
                        else:
                            cur.execute(f"DELETE FROM {t} WHERE id = (SELECT id FROM {t} ORDER BY random() LIMIT 1)")
                        n += cur.rowcount
                conn.commit()
                self.changes += n
                time.sleep(0.002)
        except BaseException as err:  # noqa: BLE001 - reported by the test
            self.error = err
        finally:
            conn.close()


def _spawn(dsn: str, names, bus_url: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "headwater.cdc", "--dsn", dsn, "--slot", names.slot, "--publication",
         names.publication, "--table", f"public.{names.table}", "--bus", bus_url, "--heartbeat-interval", "0.5",
         "--batch-size", "200", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _snapshot_done(dsn: str, slot: str) -> bool:
    rows = sql(dsn, "SELECT snapshot_done FROM public.headwater_cdc_state WHERE slot = %s", (slot,))
    return bool(rows and rows[0][0])


def test_sigkill_resume_converges(cdc_dsn, names, tmp_path, session) -> None:
    rng = random.Random(int(os.environ.get("HEADWATER_CDC_SEED", "0")) or None)
    t = names.table
    sql(cdc_dsn, f'CREATE TABLE public."{t}" (id int PRIMARY KEY, v int NOT NULL, body text, note text)')
    sql(cdc_dsn, f"INSERT INTO public.\"{t}\" SELECT g, 0, CASE WHEN g % 50 = 0 THEN {BIG} END, 'seed' "
                 "FROM generate_series(1, 20000) g")
    bus_url = f"embedded:{tmp_path / 'events.db'}"
    procs: list[subprocess.Popen] = []
    writer = Writer(cdc_dsn, t, rng.randrange(1 << 30))
    try:
        # 1. killed during its initial snapshot, then restarted until the snapshot is done
        p = _spawn(cdc_dsn, names, bus_url)
        procs.append(p)
        time.sleep(rng.uniform(0.3, 0.8))
        p.send_signal(signal.SIGKILL)
        p.wait()
        p = _spawn(cdc_dsn, names, bus_url)
        procs.append(p)
        deadline = time.monotonic() + 60
        while not _snapshot_done(cdc_dsn, names.slot):
            assert p.poll() is None, p.stderr.read()
            assert time.monotonic() < deadline, "snapshot did not finish"
            time.sleep(0.05)
        # 2. continuous writes; kill at random points, restart each time
        writer.start()
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.2, 1.5))
            p.send_signal(signal.SIGKILL)
            p.wait()
            time.sleep(rng.uniform(0, 0.3))
            p = _spawn(cdc_dsn, names, bus_url)
            procs.append(p)
        time.sleep(rng.uniform(0.5, 1.0))
        writer.stop.set()
        writer.join(30)
        assert writer.error is None, writer.error
        assert writer.changes > 100
        # 3. a clean stop after it has caught up (the last process is up: it holds the slot)
        deadline = time.monotonic() + 60
        while not sql(cdc_dsn, "SELECT 1 FROM pg_replication_slots WHERE slot_name = %s AND active",
                      (names.slot,)):
            assert p.poll() is None and time.monotonic() < deadline, "the last connector did not start"
            time.sleep(0.05)
        time.sleep(1.5)
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    finally:
        writer.stop.set()
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    bus = connect(bus_url)
    topic = f"cdc.app.public.{t}"
    sink = ReplicaSink(session, f"warehouse.{t}")
    consumer = bus.subscribe(topic, "replica")
    audit = bus.subscribe(topic, "audit")
    sink.drain(consumer, batch=2000, idle_timeout=1.0)
    # every committed change was published (some more than once), none is missing
    streamed: set[str] = set()
    published = 0
    while msgs := audit.fetch(5000, timeout=0.5):
        for m in msgs:
            e = m.event()
            published += 1
            if e.type == CHANGE_TYPE and e.data["op"] != "r":
                streamed.add(e.id)
        audit.ack_many(msgs)
    assert len(streamed) == writer.changes
    assert sink.skipped > 0 or published == len(streamed) + 20000 + 1  # duplicates were skipped
    source = sql(cdc_dsn, f'SELECT id, v, body, note FROM public."{t}" ORDER BY id')
    replica = session.sql(f"SELECT id, v, body, note FROM warehouse.{t} WHERE NOT _deleted ORDER BY id").to_pylist()
    assert len(replica) == len(source)
    assert [(r["id"], r["v"], r["body"], r["note"]) for r in replica] == source
    bus.close()
