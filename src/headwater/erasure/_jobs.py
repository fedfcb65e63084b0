"""Erasure jobs and their targets in the metadata store (``hw_erasure_*``).

Every state change is its own committed transaction, so a process killed at any point leaves
a job that says exactly which targets were verified; a resume starts from there.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from headwater.erasure._model import (
    ErasureMode,
    ErasureReport,
    ErasureTarget,
    JobStatus,
    TargetKind,
    TargetResult,
    TargetState,
)
from headwater.erasure._tables import jobs_table, targets_table
from headwater.errors import NotFound

if TYPE_CHECKING:
    from headwater.metadata import MetadataStore

__all__ = ["Job", "JobStore"]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    if value is not None and value.tzinfo is None:  # SQLite drops the offset; we store UTC
        return value.replace(tzinfo=dt.UTC)
    return value


@dataclass(slots=True)
class Job:
    """One stored job row."""

    job_id: str
    subject: str
    subject_dataset: str
    subject_column: str
    mode: ErasureMode
    actor: str
    status: JobStatus
    surrogate: str | None
    created_at: dt.datetime
    finished_at: dt.datetime | None
    runs: int
    report_path: str | None


class JobStore:
    """Reads and writes erasure jobs."""

    def __init__(self, meta: MetadataStore) -> None:
        self.meta = meta

    def create(self, job_id: str, *, subject: str, subject_dataset: str, subject_column: str,
               mode: ErasureMode, actor: str, status: JobStatus, surrogate: str | None,
               targets: list[ErasureTarget]) -> None:
        """Store a new job and its plan in one transaction."""
        now = _now()
        with self.meta.begin() as conn:
            conn.execute(jobs_table.insert().values(
                job_id=job_id, subject=subject, subject_dataset=subject_dataset, subject_column=subject_column,
                mode=mode.value, actor=actor, status=status.value, surrogate=surrogate, created_at=now,
                updated_at=now, finished_at=None, runs=0, report_path=None, error=None))
            if targets:
                conn.execute(targets_table.insert(), [dict(
                    job_id=job_id, position=i, kind=t.kind.value, dataset=t.dataset, store=t.store,
                    columns=list(t.columns), found_by=t.found_by,
                    state=(TargetState.PENDING if t.addressable else TargetState.RESIDUAL).value,
                    rows=None, verified=False, reason=t.reason, error=None, updated_at=now,
                ) for i, t in enumerate(targets)])

    def job(self, job_id: str) -> Job:
        """One job; ``NotFound`` when there is none."""
        with self.meta.connect() as conn:
            r = conn.execute(sa.select(jobs_table).where(jobs_table.c.job_id == job_id)).first()
        if r is None:
            raise NotFound(f"no erasure job {job_id!r} (headwater erase ls lists them)", job_id=job_id)
        return Job(r.job_id, r.subject, r.subject_dataset, r.subject_column, ErasureMode(r.mode), r.actor,
                   JobStatus(r.status), r.surrogate, _aware(r.created_at), _aware(r.finished_at), r.runs,
                   r.report_path)

    def targets(self, job_id: str) -> list[TargetResult]:
        """The job's targets in plan order."""
        t = targets_table
        with self.meta.connect() as conn:
            rows = conn.execute(sa.select(t).where(t.c.job_id == job_id).order_by(t.c.position)).all()
        return [TargetResult(r.position, TargetKind(r.kind), r.dataset, r.store, tuple(r.columns or ()),
                             r.found_by, TargetState(r.state), r.rows, bool(r.verified), r.reason, r.error)
                for r in rows]

    def update_target(self, job_id: str, position: int, **values: Any) -> None:
        """Commit new values for one target."""
        t = targets_table
        with self.meta.begin() as conn:
            conn.execute(t.update().where((t.c.job_id == job_id) & (t.c.position == position))
                         .values(updated_at=_now(), **values))

    def update_job(self, job_id: str, **values: Any) -> None:
        """Commit new values for a job."""
        if isinstance(values.get("status"), JobStatus):
            values["status"] = values["status"].value
        with self.meta.begin() as conn:
            conn.execute(jobs_table.update().where(jobs_table.c.job_id == job_id)
                         .values(updated_at=_now(), **values))

    def claim(self, job_id: str, runs: int) -> bool:
        """Start run ``runs + 1`` of a job unless another process started one since ``runs`` was
        read (a compare-and-set on the run counter); True when this caller won."""
        with self.meta.begin() as conn:
            n = conn.execute(jobs_table.update()
                             .where((jobs_table.c.job_id == job_id) & (jobs_table.c.runs == runs))
                             .values(runs=runs + 1, status=JobStatus.RUNNING.value, error=None,
                                     updated_at=_now())).rowcount
        return n == 1

    def jobs(self, limit: int = 50) -> list[Job]:
        """Newest jobs first."""
        with self.meta.connect() as conn:
            ids = [r.job_id for r in conn.execute(
                sa.select(jobs_table.c.job_id).order_by(jobs_table.c.created_at.desc()).limit(limit))]
        return [self.job(i) for i in ids]

    def report(self, job_id: str) -> ErasureReport:
        """The job's report as stored now."""
        from pathlib import Path

        job = self.job(job_id)
        return ErasureReport(job.job_id, job.subject, job.mode, job.actor, job.status, job.created_at,
                             job.finished_at, job.runs, self.targets(job_id),
                             Path(job.report_path) if job.report_path else None)
