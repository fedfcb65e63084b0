"""Retention of the platform's own records: dead letters, lineage events, SLO buckets, the
embedded bus log and the audit log.

Each log has a ``count`` (for the plan) and a ``purge`` (for apply) over the same predicate, so
the plan's numbers are what apply removes. The audit log is only ever trimmed through
:meth:`headwater.audit.AuditLog.apply_retention`, which keeps the hash chain verifiable behind a
signed anchor; SLO buckets never go below what burn-rate evaluation needs; bus messages go only
once they are old **and** committed by every consumer group of their topic.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from headwater.errors import HeadwaterError, StoreUnavailable
from headwater.retention._model import PlatformLogs
from headwater.retention._plan import ERROR, PURGE, PlannedAction

if TYPE_CHECKING:
    from headwater.platform import Platform

__all__ = ["LOGS", "count_log", "plan_platform_logs", "purge_log"]

LOGS = ("dead_letters", "lineage_events", "slo_buckets", "bus_log", "audit")
"""Platform log names, as in the ``platform:`` section (datasets ``platform.<name>``)."""


def plan_platform_logs(platform: Platform, logs: PlatformLogs, now: dt.datetime, source: str) -> list[PlannedAction]:
    """One ``purge`` action per configured log with the number of records it would remove."""
    out: list[PlannedAction] = []
    for name in LOGS:
        age: dt.timedelta | None = getattr(logs, name)
        rule = f"{source} platform.{name}"
        if name == "audit" and age is None and platform.config.audit.retention_days:
            age = dt.timedelta(days=platform.config.audit.retention_days)
            rule = f"headwater.yaml audit.retention_days={platform.config.audit.retention_days}"
        if age is None:
            continue
        cutoff = now - age
        try:
            rows = count_log(platform, name, cutoff, now)
        except _NotApplicable as err:
            out.append(PlannedAction(dataset=f"platform.{name}", action=ERROR, cutoff=cutoff, rule=rule,
                                     note=str(err)))
            continue
        out.append(PlannedAction(dataset=f"platform.{name}", action=PURGE, rows=rows, cutoff=cutoff, rule=rule))
    return out


class _NotApplicable(HeadwaterError):
    """This log cannot be trimmed on this platform (e.g. the bus is NATS)."""


def count_log(platform: Platform, name: str, cutoff: dt.datetime, now: dt.datetime) -> int:
    """Records of log ``name`` that :func:`purge_log` would remove for ``cutoff``."""
    return _LOG_FUNCS[name](platform, cutoff, now, False)


def purge_log(platform: Platform, name: str, cutoff: dt.datetime, now: dt.datetime) -> int:
    """Remove the records of log ``name`` older than ``cutoff``; returns how many went."""
    return _LOG_FUNCS[name](platform, cutoff, now, True)


def _meta_delete(platform: Platform, table: sa.Table, cond: Any, apply: bool) -> int:
    if not apply:
        with platform.meta.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(table).where(cond)).scalar() or 0)
    with platform.meta.begin() as conn:
        return int(conn.execute(sa.delete(table).where(cond)).rowcount or 0)


def _dead_letters(platform: Platform, cutoff: dt.datetime, now: dt.datetime, apply: bool) -> int:
    from headwater.events.dlq import dead_letters_table as t

    return _meta_delete(platform, t, t.c.last_failure_at < cutoff, apply)


def _lineage_events(platform: Platform, cutoff: dt.datetime, now: dt.datetime, apply: bool) -> int:
    # Only the raw events go: the lineage graph (dataset and column edges) stays queryable.
    from headwater.lineage._tables import events_table as t

    return _meta_delete(platform, t, t.c.received_at < cutoff, apply)


def _slo_buckets(platform: Platform, cutoff: dt.datetime, now: dt.datetime, apply: bool) -> int:
    from headwater.telemetry.slo import retention_minutes
    from headwater.telemetry.slo._tables import buckets_table as t

    needed = retention_minutes(platform.slos)  # burn-rate evaluation reads this far back
    minute = min(int(cutoff.timestamp() // 60), int(now.timestamp() // 60) - needed)
    return _meta_delete(platform, t, t.c.minute < minute, apply)


_BUS_OLD = """
FROM log WHERE ts < ?
  AND NOT EXISTS (SELECT 1 FROM positions p WHERE p.topic = log.topic AND p.part = log.part
                  AND p.committed <= log.off)
  AND NOT EXISTS (SELECT 1 FROM groups g WHERE g.topic = log.topic AND NOT EXISTS (
                  SELECT 1 FROM positions p WHERE p.grp = g.grp AND p.topic = g.topic AND p.part = log.part))
  AND NOT EXISTS (SELECT 1 FROM inflight i WHERE i.topic = log.topic AND i.part = log.part AND i.off = log.off)
"""
"""Messages older than the cutoff that every consumer group of their topic has committed (a
group that never fetched from the partition has committed nothing)."""


def _bus_path(platform: Platform) -> str | None:
    url = platform.config.events.bus
    if url is None:
        path = platform.dir / "events.db"
        return str(path) if path.exists() else None
    if not url.startswith("embedded:"):
        raise _NotApplicable(f"bus_log retention trims the embedded bus; {url.split(':', 1)[0]} keeps "
                             "messages by its own retention settings (max_age)")
    from headwater.events.bus.embedded import EmbeddedBus

    bus = platform.bus
    return bus.path if isinstance(bus, EmbeddedBus) else None


def _bus_log(platform: Platform, cutoff: dt.datetime, now: dt.datetime, apply: bool) -> int:
    path = _bus_path(platform)
    if path is None:
        return 0
    try:
        db = sqlite3.connect(path, timeout=30.0, isolation_level=None)
    except sqlite3.Error as err:
        raise StoreUnavailable(f"embedded bus log unavailable: {err}") from None
    try:
        if not apply:
            return int(db.execute(f"SELECT count(*) {_BUS_OLD}", (cutoff.timestamp(),)).fetchone()[0])
        db.execute("BEGIN IMMEDIATE")
        try:
            n = db.execute(f"DELETE {_BUS_OLD}", (cutoff.timestamp(),)).rowcount
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return int(n)
    except sqlite3.Error as err:
        raise StoreUnavailable(f"embedded bus log: {err}") from None
    finally:
        with contextlib.suppress(sqlite3.Error):
            db.close()


def _audit(platform: Platform, cutoff: dt.datetime, now: dt.datetime, apply: bool) -> int:
    days = max(1, round((now - cutoff).total_seconds() / 86400))
    audit = platform.audit
    if apply:
        # The audit log's own retention: verifies the chain first, then drops a prefix behind
        # a signed anchor. Its age setting is swapped for this one call.
        before = audit.retention_days
        audit.retention_days = days
        try:
            return int(audit.apply_retention(now))
        finally:
            audit.retention_days = before
    from headwater.audit._model import to_us

    cut = to_us(now - dt.timedelta(days=days))
    with platform.meta.connect() as conn:
        head = conn.execute(sa.text("SELECT seq, anchor_seq FROM hw_audit_head WHERE id = 1")).first()
        if head is None:
            return 0
        head_seq, anchor = int(head[0] or 0), int(head[1] or 0)
        keep_from = conn.execute(sa.text("SELECT min(seq) FROM hw_audit_records WHERE ts >= :c AND seq > :a"),
                                 {"c": cut, "a": anchor}).scalar()
        last = head_seq if keep_from is None else int(keep_from) - 1
        if last <= anchor:
            return 0
        return int(conn.execute(sa.text("SELECT count(*) FROM hw_audit_records WHERE seq > :a AND seq <= :l"),
                                {"a": anchor, "l": last}).scalar() or 0)


_LOG_FUNCS: dict[str, Callable[[Platform, dt.datetime, dt.datetime, bool], int]] = {
    "dead_letters": _dead_letters,
    "lineage_events": _lineage_events,
    "slo_buckets": _slo_buckets,
    "bus_log": _bus_log,
    "audit": _audit,
}
