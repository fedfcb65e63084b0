"""Retention of the platform's own records: dead letters, lineage events, SLO buckets, the
embedded bus log and the audit log (whose hash chain must stay verifiable)."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import sqlalchemy as sa

from headwater import Platform
from headwater.events.dlq import dead_letters_table
from headwater.events.envelope import Event
from headwater.lineage._tables import events_table
from headwater.retention import RetentionEngine
from headwater.telemetry.slo import retention_minutes
from headwater.telemetry.slo._tables import buckets_table


def only(plan, dataset: str):  # type: ignore[no-untyped-def]
    (a,) = [a for a in plan.actions if a.dataset == dataset]
    return a


def test_dead_letters_older_than_n_days(log_platform: Platform) -> None:
    p = log_platform
    dlq = p.dead_letters
    for i in range(4):
        dlq.add(f"bad {i}".encode(), stage="deserialise", error=("ValueError", "not json"), attempts=1,
                consumer_group="g", topic="orders", partition=0, offset=i)
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=40)
    with p.meta.begin() as conn:
        conn.execute(sa.update(dead_letters_table).where(dead_letters_table.c.offset < 3)
                     .values(first_failure_at=old, last_failure_at=old))
    engine = RetentionEngine(p)
    plan = engine.plan("version: 1\nplatform:\n  dead_letters: 30d\n")
    assert only(plan, "platform.dead_letters").rows == 3
    report = engine.apply(plan, actor="ops")
    assert report.result("platform.dead_letters", "purge").rows == 3
    left = dlq.list()
    assert [d.value for d in left] == [b"bad 3"]


def test_lineage_events_go_but_the_graph_stays(log_platform: Platform) -> None:
    platform = log_platform
    s = platform.session("admin")
    s.write("app.src", pa.table({"id": [1, 2]}))
    s.sql("CREATE OR REPLACE TABLE warehouse.dst AS SELECT id FROM app.src")
    with platform.meta.connect() as conn:
        n_events = conn.execute(sa.select(sa.func.count()).select_from(events_table)).scalar()
    assert n_events, "deriving a table records lineage events"
    engine = RetentionEngine(platform)
    text = "version: 1\nplatform:\n  lineage_events: 1d\n"
    assert only(engine.plan(text), "platform.lineage_events").rows == 0
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
    plan = engine.plan(text, now=later)
    assert only(plan, "platform.lineage_events").rows == n_events
    assert engine.apply(plan, actor="ops").result("platform.lineage_events", "purge").rows == n_events
    assert "app.src" in platform.lineage.upstream("warehouse.dst").datasets


def test_slo_buckets_keep_what_evaluation_needs(log_platform: Platform) -> None:
    platform = log_platform
    now = dt.datetime.now(dt.UTC)
    minute = int(now.timestamp() // 60)
    needed = retention_minutes(platform.slos)
    minutes = [minute - 10, minute - needed + 5, minute - needed - 5, minute - needed - 500]
    with platform.meta.begin() as conn:
        conn.execute(sa.insert(buckets_table), [{"series": "s", "minute": m, "good": 1, "total": 1}
                                                for m in minutes])
    engine = RetentionEngine(platform)
    # asking for one day keeps the evaluation window anyway
    plan = engine.plan("version: 1\nplatform:\n  slo_buckets: 1d\n", now=now)
    assert only(plan, "platform.slo_buckets").rows == 2
    engine.apply(plan, actor="ops")
    with platform.meta.connect() as conn:
        left = sorted(r[0] for r in conn.execute(sa.select(buckets_table.c.minute)))
    assert left == sorted(minutes[:2])


def test_bus_log_drops_only_old_committed_messages(platform: Platform) -> None:
    bus = platform.bus
    bus.create_topic("clicks", partitions=1)
    consumer = bus.subscribe("clicks", "readers")
    bus.publish_many("clicks", [Event(type="click", source="/t", data={"i": i}) for i in range(5)])
    got = consumer.fetch(3, timeout=2)
    assert len(got) == 3
    consumer.ack_many(got)
    engine = RetentionEngine(platform)
    text = "version: 1\nplatform:\n  bus_log: 1d\n"
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
    assert only(engine.plan(text), "platform.bus_log").rows == 0  # not old yet
    plan = engine.plan(text, now=later)
    assert only(plan, "platform.bus_log").rows == 3  # two are not committed by "readers"
    assert engine.apply(plan, actor="ops").result("platform.bus_log", "purge").rows == 3
    rest = consumer.fetch(10, timeout=2)
    assert [m.offset for m in rest] == [3, 4]
    consumer.ack_many(rest)
    consumer.close()


def test_bus_log_with_a_group_that_never_fetched(platform: Platform) -> None:
    bus = platform.bus
    bus.create_topic("views", partitions=1)
    bus.subscribe("views", "lazy").close()
    bus.publish_many("views", [Event(type="view", source="/t", data={"i": i}) for i in range(3)])
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
    plan = RetentionEngine(platform).plan("version: 1\nplatform:\n  bus_log: 1d\n", now=later)
    assert only(plan, "platform.bus_log").rows == 0


def test_audit_retention_keeps_the_chain_verifiable(log_platform: Platform) -> None:
    p = log_platform
    s = p.session("admin")
    s.write("app.t", pa.table({"id": [1, 2, 3]}))
    s.sql("SELECT * FROM app.t").to_arrow()
    before = p.audit.stats()["records"]
    assert before >= 2
    engine = RetentionEngine(p)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=3)
    plan = engine.plan("version: 1\nplatform:\n  audit: 2d\n", now=later)
    assert only(plan, "platform.audit").rows == before
    report = engine.apply(plan, actor="ops")
    assert report.result("platform.audit", "purge").rows == before
    assert p.audit.verify().ok
    assert p.audit.retention_days == p.config.audit.retention_days  # restored
    # the run's own records (written after the cutoff) are kept
    assert any(r.action == "retention" for r in p.audit.query(actor="ops"))


def test_nothing_configured_plans_nothing(platform: Platform) -> None:
    plan = RetentionEngine(platform).plan("version: 1\n")
    assert plan.actions == [] or all(a.dataset == "platform.audit" for a in plan.actions)
