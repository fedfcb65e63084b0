"""The SLI recorder: buffering, flush triggers, the bucket upsert, thresholds and retention."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from headwater.errors import InvalidInput, StoreUnavailable
from headwater.telemetry.slo import SLORecorder, load_slos, retention_minutes
from headwater.telemetry.slo._clock import minute_of
from headwater.telemetry.slo._tables import buckets_table

SLOS = load_slos("""
service: hw
slos:
  - {name: fast, objective: 99, sli: {query_latency: {threshold_ms: 100}}}
  - {name: ok, objective: 99.5, sli: {query_latency: {threshold_ms: 1000}}}
  - {name: success, objective: 99.9, sli: {query_success: {}}}
  - {name: fresh, objective: 95, sli: {event_freshness: {threshold_ms: 5000}}}
  - {name: lag, objective: 99, sli: {cdc_slot_lag: {max_bytes: 1000}}}
""")


def buckets(meta) -> dict[tuple[str, int], tuple[int, int]]:
    with meta.connect() as conn:
        return {(r.series, r.minute): (r.good, r.total) for r in conn.execute(sa.select(buckets_table))}


def test_counts_stay_buffered_until_flush(meta, clock):
    rec = SLORecorder(meta, SLOS, clock=clock)
    rec.record("query_success", 9, 10)
    rec.record("query_success", 1, 1)
    assert rec.pending == 11 and buckets(meta) == {}
    assert rec.flush() == 1
    assert buckets(meta) == {("query_success", minute_of(clock.now)): (10, 11)}
    assert rec.pending == 0 and rec.flush() == 0


def test_upsert_adds_to_an_existing_minute_and_separates_minutes(meta, clock):
    rec = SLORecorder(meta, SLOS, clock=clock)
    rec.record("query_success", 3, 4)
    rec.flush()
    rec.record("query_success", 5, 5)
    rec.record("query_success", 0, 2, at=clock.ago(minutes=1))
    rec.flush()
    m = minute_of(clock.now)
    assert buckets(meta) == {("query_success", m): (8, 9), ("query_success", m - 1): (0, 2)}


def test_two_recorders_add_up(meta, clock):
    a, b = SLORecorder(meta, clock=clock), SLORecorder(meta, clock=clock)
    a.record("orders", 1, 1)
    b.record("orders", 0, 1)
    a.flush()
    b.flush()
    assert buckets(meta)[("orders", minute_of(clock.now))] == (1, 2)


def test_flushes_after_max_pending_events(meta, clock):
    rec = SLORecorder(meta, clock=clock, max_pending=100)
    for _ in range(99):
        rec.record("x", 1, 1)
    assert buckets(meta) == {}
    rec.record("x", 1, 1)
    assert buckets(meta) == {("x", minute_of(clock.now)): (100, 100)}
    assert rec.pending == 0


def test_flushes_after_the_interval(meta, clock):
    rec = SLORecorder(meta, clock=clock, flush_interval_s=10)
    rec.record("x", 1, 1)
    clock.advance(seconds=9)
    rec.record("x", 1, 1)
    assert buckets(meta) == {}
    clock.advance(seconds=1)
    rec.record("x", 0, 1)
    assert sum(t for (_, t) in buckets(meta).values()) == 3


def test_close_flushes_and_background_thread_flushes(meta, clock):
    with SLORecorder(meta, clock=clock) as rec:
        rec.record("x", 1, 1)
    assert buckets(meta)
    rec = SLORecorder(meta, flush_interval_s=0.05).start()
    try:
        rec.record("y", 1, 1)
        deadline = dt.datetime.now() + dt.timedelta(seconds=5)
        while not any(s == "y" for s, _ in buckets(meta)) and dt.datetime.now() < deadline:
            pass
        assert any(s == "y" for s, _ in buckets(meta))
    finally:
        rec.close()


def test_observe_judges_every_threshold(meta, clock):
    rec = SLORecorder(meta, SLOS, clock=clock)
    rec.record_query(50)                 # under both thresholds
    rec.record_query(500)                # under 1000 only
    rec.record_query(100, ok=False)      # at the threshold counts as good; failed query
    rec.record_query(5000)
    rec.record_event_delivery(4999)
    rec.record_event_delivery(5001)
    rec.record_slot_lag(1000)
    rec.record_slot_lag(1001)
    rec.record_pipeline_run(ok=True)     # no SLO uses it, still recorded
    rec.flush()
    m = minute_of(clock.now)
    assert buckets(meta) == {
        ("query_latency:100ms", m): (2, 4),
        ("query_latency:1000ms", m): (3, 4),
        ("query_success", m): (3, 4),
        ("event_freshness:5000ms", m): (1, 2),
        ("cdc_slot_lag:1000b", m): (1, 2),
        ("pipeline_success", m): (1, 1),
    }


def test_observe_without_slos_of_that_kind_is_a_no_op(meta, clock):
    rec = SLORecorder(meta, clock=clock)
    rec.observe("query_latency", 10)
    assert rec.pending == 0


def test_bad_input(meta):
    rec = SLORecorder(meta)
    with pytest.raises(InvalidInput, match="observe"):
        rec.record("query_latency", 1, 1)
    with pytest.raises(InvalidInput, match="good <= total"):
        rec.record("x", 2, 1)
    with pytest.raises(InvalidInput, match="good <= total"):
        rec.record("x", -1, 1)
    with pytest.raises(InvalidInput, match="not a threshold SLI kind"):
        rec.observe("query_success", 1)


def test_retention_covers_the_longest_window_plus_a_day(meta, clock):
    assert retention_minutes(SLOS) == 29 * 1440
    assert retention_minutes([]) == 35 * 1440
    rec = SLORecorder(meta, SLOS, clock=clock)
    rec.record("x", 1, 1, at=clock.ago(days=29, minutes=1))
    rec.record("x", 1, 1, at=clock.ago(days=28, minutes=23 * 60))
    rec.flush()  # the first flush also prunes (then at most hourly)
    kept = [minute_of(clock.ago(days=28, minutes=23 * 60))]
    assert [m for (_, m) in buckets(meta)] == kept
    rec.record("x", 1, 1, at=clock.ago(days=29, minutes=1))
    rec.flush()
    assert len(buckets(meta)) == 2
    assert rec.prune() == 1
    assert [m for (_, m) in buckets(meta)] == kept


class _DownStore:
    """A metadata store whose writes fail, as when the database is unreachable."""

    dialect = "sqlite"

    def __init__(self) -> None:
        self.up = False
        self.rows: list[dict] = []

    def begin(self):
        if not self.up:
            raise StoreUnavailable("metadata store unreachable (sqlite): test")
        outer = self

        class _Conn:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False

            def execute(self, stmt, rows=None):
                outer.rows.extend(rows or [])
                return type("R", (), {"rowcount": 0})()

        return _Conn()


def test_failed_flush_keeps_counts_and_record_never_raises(clock, caplog):
    store = _DownStore()
    rec = SLORecorder(store, clock=clock, max_pending=2, max_buffered_buckets=3)
    rec.record("x", 1, 1)
    rec.record("x", 0, 1)  # triggers a flush that fails quietly
    assert "flush failed" in caplog.text
    assert rec.pending == 2
    with pytest.raises(StoreUnavailable):
        rec.flush()
    assert rec.pending == 2
    for k in range(1, 5):  # the buffer holds 3 cells; the 4th minute is dropped
        rec.record("y", 1, 1, at=clock.ago(minutes=k))
    assert rec.dropped >= 1
    store.up = True
    rec.flush()
    assert ("x", minute_of(clock.now), 1, 2) in {(r["series"], r["minute"], r["good"], r["total"]) for r in store.rows}
