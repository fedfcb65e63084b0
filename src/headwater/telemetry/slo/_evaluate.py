"""In-process burn-rate evaluation: windows from the bucket table, the multi-window
multi-burn-rate conditions, the persisted alert state machine and notification dispatch.

Arithmetic (SRE workbook, chapter 5): the error budget of an SLO with objective ``o`` percent is
``b = 1 - o/100``; the burn rate over a window is ``error_ratio / b``. A rule
``(long, short, factor)`` holds when *both* windows' error ratios are at or above
``factor * b`` and the long window saw at least ``rule.required_events(o)`` events (see
:class:`~headwater.telemetry.slo.BurnRateRule`). The comparison is exact (integer counts
against a rational threshold), so 144 bad events in 10,000 at 99.9 % is a 14.4x burn and pages;
143 is not. An alert of a severity fires when any of its rules holds and resolves when none does.

A window of ``n`` minutes covers the ``n`` one-minute buckets ending with the current minute.

Alert state lives in ``hw_slo_alerts``. Every transition is a compare-and-set on the row's
state, so when several processes evaluate at once exactly one records the transition. A
notification is sent by whoever claims it with a compare-and-set on ``notified_state``, so an
alert that keeps firing is notified once; a failed send releases the claim and is retried on the
next evaluation (delivery is at least once when one of several notifiers fails).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Iterable, Sequence
from fractions import Fraction
from typing import Any

import sqlalchemy as sa

from headwater.errors import InvalidInput
from headwater.telemetry.slo._clock import Clock, as_utc, minute_of, minute_start, system_clock
from headwater.telemetry.slo._model import (
    AlertEvent,
    AlertNotification,
    AlertState,
    DailySLI,
    SLOReport,
    SLOReportEntry,
    SLOStatus,
    WindowBurn,
)
from headwater.telemetry.slo._spec import SLO, BurnRateRule, format_duration
from headwater.telemetry.slo._tables import (
    alert_events_table,
    alerts_table,
    buckets_table,
    dialect_insert,
)

__all__ = ["SLOEvaluator", "alert_name"]

log = logging.getLogger("headwater.telemetry.slo")


def alert_name(slo: SLO) -> str:
    """``alerting.name`` or ``<Service><Slo>BudgetBurn`` in CamelCase."""
    if slo.alerting.name:
        return slo.alerting.name
    words = re.split(r"[^A-Za-z0-9]+", f"{slo.service} {slo.name}")
    return "".join(w[:1].upper() + w[1:] for w in words if w) + "BudgetBurn"


def _windows(slo: SLO) -> list[tuple[str, int]]:
    """(label, minutes) of every window the SLO needs, shortest first, SLO window last."""
    seen: dict[str, int] = {}
    for rule in slo.alerting.burn_rates:
        for d in (rule.short, rule.long):
            seen[format_duration(d)] = int(d.total_seconds() // 60)
    out = sorted(seen.items(), key=lambda kv: kv[1])
    out.append((slo.window_label, int(slo.window.total_seconds() // 60)))
    return out


def _burn(wb: WindowBurn, budget: Fraction) -> float | None:
    if not wb.total:
        return None
    return float(Fraction(wb.bad, wb.total) / budget)


def _holds(rule: BurnRateRule, slo: SLO, long: WindowBurn, short: WindowBurn) -> bool:
    if long.total < rule.required_events(slo.objective) or not short.total:
        return False
    threshold = rule.threshold(slo.objective)
    return Fraction(long.bad, long.total) >= threshold and Fraction(short.bad, short.total) >= threshold


class SLOEvaluator:
    """Evaluates SLOs from the bucket counters of a :class:`~headwater.metadata.MetadataStore`.

    ``notifiers`` receive fire and resolve notifications (see
    :mod:`headwater.telemetry.slo.notify`); ``recorder``, when given, is flushed before each
    evaluation so the latest counts count. ``clock`` returns the current aware datetime.
    """

    def __init__(
        self,
        meta: Any,
        slos: Iterable[SLO],
        *,
        notifiers: Sequence[Any] = (),
        recorder: Any = None,
        clock: Clock | None = None,
    ) -> None:
        self.meta = meta
        self.slos = tuple(slos)
        ids = [s.id for s in self.slos]
        if len(set(ids)) != len(ids):
            raise InvalidInput("SLO ids must be unique", ids=sorted(ids))
        self.notifiers = tuple(notifiers)
        self.recorder = recorder
        self._clock = clock or system_clock
        self._by_id = {s.id: s for s in self.slos}

    def __repr__(self) -> str:
        return f"SLOEvaluator(slos={len(self.slos)}, notifiers={len(self.notifiers)})"

    def now(self) -> dt.datetime:
        """The evaluator's clock, in UTC."""
        return as_utc(self._clock())

    # -- counts --------------------------------------------------------------------------
    def _window_counts(self, now: dt.datetime, slos: Sequence[SLO]) -> dict[str, dict[str, WindowBurn]]:
        """For each SLO id: WindowBurn per window label, from one grouped query."""
        if not slos:
            return {}
        current = minute_of(now)
        spans = sorted({m for s in slos for _, m in _windows(s)})
        b = buckets_table
        cols: list[Any] = [b.c.series]
        for m in spans:
            inside = b.c.minute > current - m
            cols.append(sa.func.coalesce(sa.func.sum(sa.case((inside, b.c.good), else_=0)), 0).label(f"g{m}"))
            cols.append(sa.func.coalesce(sa.func.sum(sa.case((inside, b.c.total), else_=0)), 0).label(f"t{m}"))
        series = sorted({s.sli.series for s in slos})
        stmt = (sa.select(*cols)
                .where(b.c.series.in_(series), b.c.minute > current - spans[-1], b.c.minute <= current)
                .group_by(b.c.series))
        with self.meta.connect() as conn:
            rows = {r._mapping["series"]: r._mapping for r in conn.execute(stmt)}
        out: dict[str, dict[str, WindowBurn]] = {}
        for slo in slos:
            row = rows.get(slo.sli.series)
            out[slo.id] = {
                label: WindowBurn(label, int(row[f"g{m}"]) if row else 0, int(row[f"t{m}"]) if row else 0)
                for label, m in _windows(slo)
            }
        return out

    def _alert_rows(self, ids: Iterable[str]) -> dict[tuple[str, str], dict[str, Any]]:
        with self.meta.connect() as conn:
            rows = conn.execute(sa.select(alerts_table).where(alerts_table.c.slo_id.in_(sorted(set(ids)))))
            return {(r.slo_id, r.severity): dict(r._mapping) for r in rows}

    def _select(self, slo_ids: Iterable[str] | None) -> list[SLO]:
        if slo_ids is None:
            return list(self.slos)
        out = []
        for i in slo_ids:
            if i not in self._by_id:
                raise InvalidInput(f"no SLO {i!r} (known: {', '.join(sorted(self._by_id))})", slo=i)
            out.append(self._by_id[i])
        return out

    # -- status and report -----------------------------------------------------------------
    def status(self, slo_ids: Iterable[str] | None = None) -> list[SLOStatus]:
        """Every SLO (or those named by id) right now; reads, never changes alert state."""
        now = self.now()
        slos = self._select(slo_ids)
        counts = self._window_counts(now, slos)
        rows = self._alert_rows(s.id for s in slos)
        return [self._status(slo, counts[slo.id], rows, now) for slo in slos]

    def _status(self, slo: SLO, wins: dict[str, WindowBurn], rows: dict[tuple[str, str], dict[str, Any]],
                now: dt.datetime) -> SLOStatus:
        full = wins[slo.window_label]
        remaining = 100.0
        if full.total:
            remaining = float(100 * (1 - Fraction(full.bad, full.total) / slo.budget))
        alerts = {}
        for sev in slo.severities():
            row = rows.get((slo.id, sev))
            if row is None:
                alerts[sev] = AlertState(sev, "ok")
            else:
                alerts[sev] = AlertState(
                    sev, row["state"], _opt_utc(row["since"]), _opt_utc(row["fired_at"]),
                    _opt_utc(row["resolved_at"]), row["triggered_by"], row["incident"], row["notified_state"])
        return SLOStatus(
            id=slo.id, service=slo.service, slo=slo.name, description=slo.description,
            sli_kind=slo.sli.kind, series=slo.sli.series, objective=slo.objective, window=slo.window_label,
            good=full.good, total=full.total,
            sli=100.0 * full.good / full.total if full.total else None,
            error_budget_remaining=remaining,
            burn_rates={label: _burn(wb, slo.budget) for label, wb in wins.items()},
            windows=tuple(wins.values()), alerts=alerts, evaluated_at=now,
        )

    def report(self, slo_ids: Iterable[str] | None = None) -> SLOReport:
        """:meth:`status` plus budget arithmetic, the daily SLI and alert history over each
        SLO's window."""
        now = self.now()
        statuses = self.status(slo_ids)
        entries = []
        current = minute_of(now)
        for st in statuses:
            slo = self._by_id[st.id]
            span = int(slo.window.total_seconds() // 60)
            b = buckets_table
            day = (b.c.minute // 1440).label("day")
            stmt = (sa.select(day, sa.func.sum(b.c.good), sa.func.sum(b.c.total))
                    .where(b.c.series == slo.sli.series, b.c.minute > current - span, b.c.minute <= current)
                    .group_by(day).order_by(day))
            ev = alert_events_table
            hist = (sa.select(ev).where(ev.c.slo_id == slo.id, ev.c.at >= now - slo.window).order_by(ev.c.id))
            with self.meta.connect() as conn:
                daily = tuple(DailySLI((minute_start(int(d) * 1440)).date(), int(g), int(t)) for d, g, t in conn.execute(stmt))
                history = tuple(AlertEvent(r.slo_id, r.severity, r.action, as_utc(r.at), r.incident, r.details or {})
                                for r in conn.execute(hist))
            bad = st.total - st.good
            allowed = float(st.total * slo.budget)
            shortest_long = min((r.long for r in slo.alerting.burn_rates), default=dt.timedelta(hours=1))
            burn = st.burn_rates.get(format_duration(shortest_long))
            hours = None
            if burn and burn > 0 and st.error_budget_remaining > 0:
                hours = st.error_budget_remaining / 100 * slo.window.total_seconds() / 3600 / burn
            entries.append(SLOReportEntry(st, bad, allowed, 100.0 - st.error_budget_remaining, hours, daily, history))
        return SLOReport(now, tuple(entries))

    # -- evaluation ----------------------------------------------------------------------
    def evaluate(self) -> list[AlertEvent]:
        """Evaluate every SLO once: record fire/resolve transitions and send the
        notifications due. Returns the transitions this call made."""
        if self.recorder is not None:
            self.recorder.flush()
        now = self.now()
        counts = self._window_counts(now, self.slos)
        rows = self._alert_rows(s.id for s in self.slos)
        events: list[AlertEvent] = []
        for slo in self.slos:
            wins = counts[slo.id]
            for sev in slo.severities():
                rule = next((r for r in slo.alerting.rules(sev)
                             if _holds(r, slo, wins[format_duration(r.long)], wins[format_duration(r.short)])), None)
                ev = self._transition(slo, sev, rule, wins, rows.get((slo.id, sev)), now)
                if ev is not None:
                    events.append(ev)
        self._dispatch(now, counts)
        return events

    def _details(self, slo: SLO, wins: dict[str, WindowBurn]) -> dict[str, Any]:
        return {"burn_rates": {k: _burn(w, slo.budget) for k, w in wins.items()},
                "totals": {k: w.total for k, w in wins.items()}}

    def _transition(self, slo: SLO, sev: str, rule: BurnRateRule | None, wins: dict[str, WindowBurn],
                    row: dict[str, Any] | None, now: dt.datetime) -> AlertEvent | None:
        firing = rule is not None
        t = alerts_table
        key = (t.c.slo_id == slo.id) & (t.c.severity == sev)
        details = self._details(slo, wins)
        incident = f"{slo.id}/{sev}/{now.strftime('%Y%m%dT%H%M%SZ')}"
        with self.meta.begin() as conn:
            if row is None:
                values = {
                    "slo_id": slo.id, "severity": sev, "service": slo.service, "slo": slo.name,
                    "state": "firing" if firing else "ok", "since": now, "fired_at": now if firing else None,
                    "incident": incident if firing else None, "triggered_by": rule.label if rule else None,
                    "notified_state": "ok", "notify_attempts": 0, "evaluated_at": now, "details": details,
                }
                ins = dialect_insert(self.meta.dialect, t).values(**values).on_conflict_do_nothing(
                    index_elements=[t.c.slo_id, t.c.severity]).returning(t.c.slo_id)
                # RETURNING, not rowcount: psycopg reports -1 for INSERT ... ON CONFLICT here.
                if conn.execute(ins).first() is None:
                    return None  # another process created it; the next evaluation takes over
                if not firing:
                    return None
            elif firing == (row["state"] == "firing"):
                return None
            elif firing:
                upd = sa.update(t).where(key, t.c.state == "ok").values(
                    state="firing", since=now, fired_at=now, resolved_at=None, incident=incident,
                    triggered_by=rule.label, evaluated_at=now, details=details)  # type: ignore[union-attr]
                if conn.execute(upd).rowcount != 1:
                    return None
            else:
                incident = row["incident"]
                upd = sa.update(t).where(key, t.c.state == "firing").values(
                    state="ok", since=now, resolved_at=now, evaluated_at=now, details=details)
                if conn.execute(upd).rowcount != 1:
                    return None
            action = "fire" if firing else "resolve"
            ev_details = {**details, "triggered_by": rule.label if rule else row and row["triggered_by"]}
            conn.execute(sa.insert(alert_events_table).values(
                slo_id=slo.id, severity=sev, action=action, at=now, incident=incident, details=ev_details))
        log.info("SLO %s %s alert %s (%s)", slo.id, sev, "fired" if firing else "resolved", incident)
        return AlertEvent(slo.id, sev, action, now, incident, ev_details)

    def _dispatch(self, now: dt.datetime, counts: dict[str, dict[str, WindowBurn]]) -> None:
        rows = self._alert_rows(s.id for s in self.slos)
        t = alerts_table
        for (slo_id, sev), row in sorted(rows.items()):
            slo = self._by_id.get(slo_id)
            old = row["notified_state"] or "ok"
            if slo is None or row["state"] == old:
                continue
            key = (t.c.slo_id == slo_id) & (t.c.severity == sev)
            claim = sa.update(t).where(key, t.c.state == row["state"], t.c.notified_state == row["notified_state"]) \
                .values(notified_state=row["state"], notify_attempts=t.c.notify_attempts + 1)
            with self.meta.begin() as conn:
                if conn.execute(claim).rowcount != 1:
                    continue  # another process claimed it
            note = self._notification(slo, sev, row, counts[slo_id], now)
            errors = []
            for notifier in self.notifiers:
                wanted = getattr(notifier, "severities", None)
                if wanted is not None and sev not in wanted:
                    continue
                try:
                    notifier.send(note)
                except Exception as err:  # noqa: BLE001 - a broken notifier must not stop the others
                    errors.append(f"{getattr(notifier, 'name', type(notifier).__name__)}: {err}")
            with self.meta.begin() as conn:
                if errors:
                    log.warning("SLO %s %s notification failed, will retry: %s", slo_id, sev, "; ".join(errors))
                    conn.execute(sa.update(t).where(key, t.c.notified_state == row["state"])
                                 .values(notified_state=row["notified_state"], last_error="; ".join(errors)[:2000]))
                else:
                    conn.execute(sa.update(t).where(key).values(notify_attempts=0, last_error=None))

    def _notification(self, slo: SLO, sev: str, row: dict[str, Any], wins: dict[str, WindowBurn],
                      now: dt.datetime) -> AlertNotification:
        full = wins[slo.window_label]
        remaining = 100.0 if not full.total else float(100 * (1 - Fraction(full.bad, full.total) / slo.budget))
        return AlertNotification(
            action="fire" if row["state"] == "firing" else "resolve", severity=sev, slo_id=slo.id,
            service=slo.service, slo=slo.name, description=slo.description, objective=slo.objective,
            window=slo.window_label, incident=row["incident"] or f"{slo.id}/{sev}", at=now,
            fired_at=_opt_utc(row["fired_at"]), triggered_by=row["triggered_by"],
            burn_rates={k: _burn(w, slo.budget) for k, w in wins.items()}, error_budget_remaining=remaining,
            alert_name=alert_name(slo), labels={**slo.labels, **slo.alerting.labels_for(sev)},
            annotations=slo.alerting.annotations_for(sev),
        )


def _opt_utc(value: dt.datetime | None) -> dt.datetime | None:
    return as_utc(value) if value is not None else None
