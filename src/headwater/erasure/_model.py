"""Value types of erasure: targets, the plan, per-target results and the report."""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from headwater.retention.holds import LegalHold, Subject

__all__ = [
    "ErasureMode",
    "ErasurePlan",
    "ErasureReport",
    "ErasureTarget",
    "JobStatus",
    "TargetKind",
    "TargetResult",
    "TargetState",
]

DEAD_LETTERS = "headwater.dead_letters"
"""The name dead letters go by in plans, reports and legal-hold patterns."""
SUBJECT_KEYS = "headwater.subject_keys"
"""The name of the subject-key target (crypto-shredding of event topics)."""
METADATA = "headwater.metadata"
"""The name of the metadata database's storage target."""


class ErasureMode(enum.StrEnum):
    """What happens to the subject's rows."""

    DELETE = "delete"
    """Delete every row that carries the subject."""
    ANONYMISE = "anonymise"
    """Keep the rows; replace the subject's key with a random surrogate and null PII-tagged columns."""


class TargetKind(enum.StrEnum):
    """Where a copy of the subject lives."""

    DATASET = "dataset"
    DEAD_LETTERS = "dead_letters"
    TOPIC = "topic"
    CHANGE_TABLE = "change_table"
    """Rows of a CDC change table (SQLite capture's ``_hw_changes``) holding the subject."""
    ARCHIVE = "archive"
    """Retention archives (Parquet) on a lake store."""
    SUBJECT_KEY = "subject_key"
    """The subject's crypto-shredding keys (sealed event fields)."""
    STORAGE = "storage"
    """A store's files rewritten so that no bytes of erased rows remain (run last)."""


class TargetState(enum.StrEnum):
    """A target's progress within a job."""

    PENDING = "pending"
    EXECUTED = "executed"
    """Changed, not yet verified (a crash came between)."""
    VERIFIED = "verified"
    """Changed and a query found no row of the subject left: never re-done."""
    FAILED = "failed"
    """Could not be reached or still holds the subject; a resume tries again."""
    RESIDUAL = "residual"
    """Holds (or may hold) the subject but cannot be erased by Headwater; see ``reason``."""


class JobStatus(enum.StrEnum):
    """An erasure job's status."""

    RUNNING = "running"
    PARTIAL = "partial"
    """Some erasable target is not verified; resume the job."""
    COMPLETED = "completed"
    """Every erasable target is verified (residual copies are listed in the report)."""
    REFUSED = "refused"
    """A legal hold covers a target; nothing was touched."""


@dataclass(slots=True)
class ErasureTarget:
    """One place that holds (or may hold) the subject."""

    kind: TargetKind
    dataset: str
    """Qualified catalog name; ``headwater.dead_letters``; ``topic:<name>`` for a topic;
    ``<store>._hw_changes``, ``<store>.archive``, ``headwater.subject_keys``;
    ``storage:<store>`` (``storage:headwater.metadata``) for a storage step."""
    store: str | None
    columns: tuple[str, ...]
    """Columns that carry the subject's key value (empty for dead letters and residuals);
    ``<table>.<column>`` for a change table, ``<dataset>.<column>`` for archives, namespaces
    for subject keys, tables for a storage step."""
    found_by: str
    """How discovery reached it (``subject``, ``lineage app.customers.id -> ...``, ``cdc replica``)."""
    addressable: bool = True
    """False when the subject cannot be found or removed in it (aggregates, append-only logs)."""
    reason: str | None = None
    """Why it is not addressable (or other notes)."""
    depth: int = 0
    rows: int | None = None
    """Rows holding the subject (plans); None when not counted."""
    error: str | None = None
    """Why counting failed (plans)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (no subject values)."""
        return {"kind": self.kind.value, "dataset": self.dataset, "store": self.store,
                "columns": list(self.columns), "found_by": self.found_by, "addressable": self.addressable,
                "reason": self.reason, "rows": self.rows, "error": self.error}


@dataclass(slots=True)
class ErasurePlan:
    """What an erasure of ``subject`` would touch (``ErasureEngine.plan``, a dry run)."""

    subject: Subject
    """The subject with its dataset qualified (``app.customers.id=123``)."""
    targets: list[ErasureTarget]
    holds: list[LegalHold] = field(default_factory=list)
    """Legal holds that would make a run refuse."""

    @property
    def erasable(self) -> list[ErasureTarget]:
        """Targets a run changes and verifies."""
        return [t for t in self.targets if t.addressable]

    @property
    def residual(self) -> list[ErasureTarget]:
        """Targets reported but not erasable (with their reason)."""
        return [t for t in self.targets if not t.addressable]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; the subject appears only as its reference."""
        return {"subject": str(self.subject), "targets": [t.to_dict() for t in self.targets],
                "holds": [{"id": h.id, "dataset": h.dataset, "reason": h.reason} for h in self.holds]}


@dataclass(slots=True)
class TargetResult:
    """One target's outcome in a job."""

    position: int
    kind: TargetKind
    dataset: str
    store: str | None
    columns: tuple[str, ...]
    found_by: str
    state: TargetState
    rows: int | None = None
    """Rows deleted or anonymised (summed over the runs of the job)."""
    verified: bool = False
    reason: str | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"position": self.position, "kind": self.kind.value, "dataset": self.dataset,
                "store": self.store, "columns": list(self.columns), "found_by": self.found_by,
                "state": self.state.value, "rows": self.rows, "verified": self.verified,
                "reason": self.reason, "error": self.error}


@dataclass(slots=True)
class ErasureReport:
    """The outcome of an erasure job (``ErasureEngine.run`` / ``status``)."""

    job_id: str
    subject: str
    """The subject reference (``app.customers.id=123``): the only subject value in the report."""
    mode: ErasureMode
    actor: str
    status: JobStatus
    created_at: dt.datetime
    finished_at: dt.datetime | None
    runs: int
    targets: list[TargetResult]
    path: Path | None = None
    """Where the JSON report was written."""

    @property
    def ok(self) -> bool:
        """True when every erasable target was verified."""
        return self.status is JobStatus.COMPLETED

    @property
    def rows(self) -> int:
        """Rows deleted or anonymised in total."""
        return sum(t.rows or 0 for t in self.targets)

    @property
    def pending(self) -> list[TargetResult]:
        """Erasable targets not verified yet."""
        return [t for t in self.targets if t.state not in (TargetState.VERIFIED, TargetState.RESIDUAL)]

    @property
    def residual(self) -> list[TargetResult]:
        """Copies Headwater reports but cannot erase."""
        return [t for t in self.targets if t.state is TargetState.RESIDUAL]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what the report file holds)."""
        return {
            "job_id": self.job_id, "subject": self.subject, "mode": self.mode.value, "actor": self.actor,
            "status": self.status.value, "created_at": self.created_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "runs": self.runs, "rows": self.rows,
            "verified": sum(t.verified for t in self.targets),
            "targets": [t.to_dict() for t in self.targets],
        }
