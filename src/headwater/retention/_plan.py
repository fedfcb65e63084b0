"""What a retention run will do (:class:`RetentionPlan`) and what it did (:class:`RetentionReport`)."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["ActionResult", "PlannedAction", "RetentionPlan", "RetentionReport"]

DELETE = "delete"
NULL = "null"
TOKENISE = "tokenise"
PURGE = "purge"
"""Platform-log records removed (dead letters, lineage events, SLO buckets, bus log, audit)."""
HELD = "held"
"""A legal hold covers the dataset: nothing is done to it."""
ERROR = "error"
"""The rule cannot run on this dataset (missing column, wrong archive store ...)."""


@dataclass(frozen=True, slots=True)
class PlannedAction:
    """One action on one dataset (or platform log): what, why, and how much.

    ``rows`` is exact at planning time; ``bytes`` is an estimate (average row size of a sample
    times ``rows``; for column actions only the covered column).
    """

    dataset: str
    action: str
    rows: int = 0
    bytes: int | None = None
    by: str | None = None
    cutoff: dt.datetime | None = None
    """Rows whose ``by`` is older than this are affected."""
    floor: dt.datetime | None = None
    """Column actions leave rows older than this to the delete action of the same dataset."""
    columns: tuple[str, ...] = ()
    archive: str | None = None
    rule: str = ""
    """Where the action comes from (``retention.yaml:7`` or ``catalog retention_days=30``)."""
    holds: tuple[str, ...] = ()
    """Ids of the legal holds that stop it (``held``) or exclude subjects from it."""
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        out = asdict(self)
        for k in ("cutoff", "floor"):
            if out[k] is not None:
                out[k] = out[k].isoformat()
        out["columns"] = list(self.columns)
        out["holds"] = list(self.holds)
        return out


@dataclass(slots=True)
class RetentionPlan:
    """A dry run: every action with its row count; ``apply`` re-checks holds and executes it."""

    created_at: dt.datetime
    """The ``now`` every cutoff was computed from (apply reuses it, so counts match)."""
    source: str
    actions: list[PlannedAction] = field(default_factory=list)

    @property
    def runnable(self) -> list[PlannedAction]:
        """Actions that change data (not held, not in error)."""
        return [a for a in self.actions if a.action not in (HELD, ERROR)]

    @property
    def held(self) -> list[PlannedAction]:
        """Datasets a legal hold keeps as they are."""
        return [a for a in self.actions if a.action == HELD]

    @property
    def total_rows(self) -> int:
        """Rows the runnable actions affect."""
        return sum(a.rows for a in self.runnable)

    @property
    def total_bytes(self) -> int:
        """Approximate bytes the runnable actions affect."""
        return sum(a.bytes or 0 for a in self.runnable)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"created_at": self.created_at.isoformat(), "source": self.source,
                "total_rows": self.total_rows, "total_bytes": self.total_bytes,
                "actions": [a.to_dict() for a in self.actions]}


@dataclass(slots=True)
class ActionResult:
    """What one planned action did."""

    dataset: str
    action: str
    status: str
    """``done``, ``held`` (a legal hold stopped it), ``skipped`` (error in plan) or ``failed``."""
    rows: int = 0
    planned_rows: int = 0
    columns: tuple[str, ...] = ()
    archive_path: str | None = None
    archived_rows: int | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        out = asdict(self)
        out["columns"] = list(self.columns)
        return out


@dataclass(slots=True)
class RetentionReport:
    """The outcome of ``RetentionEngine.apply``."""

    actor: str
    started_at: dt.datetime
    finished_at: dt.datetime | None = None
    results: list[ActionResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No action failed."""
        return not any(r.status == "failed" for r in self.results)

    @property
    def total_rows(self) -> int:
        """Rows deleted, nulled, tokenised or purged."""
        return sum(r.rows for r in self.results if r.status == "done")

    def result(self, dataset: str, action: str, column: str | None = None) -> ActionResult:
        """The result for one dataset and action (and column); ``KeyError`` if none."""
        for r in self.results:
            if r.dataset == dataset and r.action == action and (column is None or column in r.columns):
                return r
        raise KeyError(f"no {action} result for {dataset}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"actor": self.actor, "ok": self.ok, "total_rows": self.total_rows,
                "started_at": self.started_at.isoformat(),
                "finished_at": self.finished_at.isoformat() if self.finished_at else None,
                "results": [r.to_dict() for r in self.results]}
