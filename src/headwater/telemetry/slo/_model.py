"""Plain data the evaluator hands out: window burn rates, alert states, statuses, reports and
notifications. Everything is frozen and has ``as_dict()`` for JSON output."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Any

__all__ = [
    "AlertEvent",
    "AlertNotification",
    "AlertState",
    "DailySLI",
    "SLOReport",
    "SLOReportEntry",
    "SLOStatus",
    "WindowBurn",
]


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, _AsDict):
        return value.as_dict()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


class _AsDict:
    def as_dict(self) -> dict[str, Any]:
        """JSON-ready plain values (datetimes as ISO 8601, durations in seconds)."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]


@dataclasses.dataclass(frozen=True)
class WindowBurn(_AsDict):
    """Counts, error ratio and burn rate of one SLO over one trailing window."""

    window: str
    """``5m``, ``1h`` ... or the SLO window (``28d``)."""
    good: int
    total: int

    @property
    def bad(self) -> int:
        """Bad events in the window."""
        return self.total - self.good

    def error_ratio(self) -> float | None:
        """Bad over total, ``None`` without events."""
        return self.bad / self.total if self.total else None

    def as_dict(self) -> dict[str, Any]:
        return {"window": self.window, "good": self.good, "total": self.total, "error_ratio": self.error_ratio()}


@dataclasses.dataclass(frozen=True)
class AlertState(_AsDict):
    """The persisted state of one (SLO, severity) alert."""

    severity: str
    state: str
    """``ok`` or ``firing``."""
    since: dt.datetime | None = None
    fired_at: dt.datetime | None = None
    resolved_at: dt.datetime | None = None
    triggered_by: str | None = None
    """The rule that fired it (``1h/5m@14.4x``)."""
    incident: str | None = None
    """The de-duplication key of the current (or last) incident."""
    notified_state: str | None = None

    @property
    def firing(self) -> bool:
        """Whether the alert is firing."""
        return self.state == "firing"


@dataclasses.dataclass(frozen=True)
class SLOStatus(_AsDict):
    """One SLO right now: objective, SLI over its window, budget, burn rates and alerts."""

    id: str
    service: str
    slo: str
    description: str
    sli_kind: str
    series: str
    objective: float
    """Percent (``99.9``)."""
    window: str
    good: int
    total: int
    sli: float | None
    """Percent of good events over the window; ``None`` without events."""
    error_budget_remaining: float
    """Percent of the window's error budget left: 100 untouched, 0 spent, negative overspent."""
    burn_rates: Mapping[str, float | None]
    """Burn rate per window label (``5m`` ... ``3d`` and the SLO window)."""
    windows: tuple[WindowBurn, ...]
    alerts: Mapping[str, AlertState]
    """Alert state per severity (``page``, ``ticket``)."""
    evaluated_at: dt.datetime

    @property
    def state(self) -> str:
        """``page``/``ticket`` when that alert fires (page wins), else ``ok``."""
        for sev in ("page", "ticket"):
            if sev in self.alerts and self.alerts[sev].firing:
                return sev
        return "ok"

    def as_dict(self) -> dict[str, Any]:
        out = super().as_dict()
        out["state"] = self.state
        return out


@dataclasses.dataclass(frozen=True)
class DailySLI(_AsDict):
    """Good and total events of one UTC day."""

    day: dt.date
    good: int
    total: int

    @property
    def sli(self) -> float | None:
        """Percent good, ``None`` without events."""
        return 100.0 * self.good / self.total if self.total else None


@dataclasses.dataclass(frozen=True)
class AlertEvent(_AsDict):
    """One fire or resolve transition from the alert history."""

    slo_id: str
    severity: str
    action: str
    """``fire`` or ``resolve``."""
    at: dt.datetime
    incident: str
    details: Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class SLOReportEntry(_AsDict):
    """The status of one SLO plus its budget arithmetic, daily SLI and alert history."""

    status: SLOStatus
    bad_events: int
    allowed_bad_events: float
    """Bad events the window's budget allows at its current traffic."""
    budget_consumed: float
    """Percent of the budget spent (``100 - error_budget_remaining``)."""
    exhaustion_hours: float | None
    """Hours until the budget runs out at the 1h burn rate; ``None`` when not burning."""
    daily: tuple[DailySLI, ...]
    history: tuple[AlertEvent, ...]


@dataclasses.dataclass(frozen=True)
class SLOReport(_AsDict):
    """Every SLO's report entry at one instant."""

    generated_at: dt.datetime
    entries: tuple[SLOReportEntry, ...]


@dataclasses.dataclass(frozen=True)
class AlertNotification(_AsDict):
    """What a notifier sends when an alert fires or resolves."""

    action: str
    """``fire`` or ``resolve``."""
    severity: str
    slo_id: str
    service: str
    slo: str
    description: str
    objective: float
    window: str
    incident: str
    """Stable per incident: the trigger and its resolve share it (PagerDuty's dedup_key)."""
    at: dt.datetime
    fired_at: dt.datetime | None
    triggered_by: str | None
    burn_rates: Mapping[str, float | None]
    error_budget_remaining: float
    alert_name: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]

    @property
    def summary(self) -> str:
        """One line for a chat message or a pager."""
        if self.action == "fire":
            return (f"[{self.severity.upper()}] {self.service}/{self.slo}: error budget burning "
                    f"at {self.triggered_by} (objective {self.objective:g}% over {self.window}, "
                    f"{self.error_budget_remaining:.1f}% budget left)")
        return f"[RESOLVED {self.severity}] {self.service}/{self.slo}: error budget burn back under threshold"
