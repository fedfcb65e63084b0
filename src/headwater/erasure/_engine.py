"""``ErasureEngine``: plan, run and resume the erasure of one data subject everywhere."""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from headwater.erasure._copies import count_copy, erase_copy, namespaces, storage_name
from headwater.erasure._deadletters import delete_dead_letters, match_dead_letters
from headwater.erasure._discover import discover, resolve_subject, trusted_walk
from headwater.erasure._execute import anonymise_rows, count_rows, delete_rows
from headwater.erasure._jobs import JobStore, _now
from headwater.erasure._model import (
    ErasureMode,
    ErasurePlan,
    ErasureReport,
    ErasureTarget,
    JobStatus,
    TargetKind,
    TargetResult,
    TargetState,
)
from headwater.errors import AccessDenied, Conflict, HeadwaterError, InvalidInput, LegalHoldActive
from headwater.principal import Principal
from headwater.retention.holds import LegalHold, LegalHolds, Subject, parse_subject

if TYPE_CHECKING:
    from headwater.platform import Platform

__all__ = ["PAUSE_ENV", "ErasureEngine", "Progress"]

log = logging.getLogger("headwater.erasure")

PAUSE_ENV = "HEADWATER_ERASE_PAUSE_S"
"""Test hook: seconds to sleep after each target is committed (crash-and-resume tests)."""

Progress = Callable[[TargetResult, str], None]
"""Called with a target and ``"start"`` or ``"done"`` while a job runs."""

Actor = Principal | str
"""Who asks: a principal (authenticated, e.g. ``platform.authenticate(token)``) or, for trusted
in-process callers, a principal's name (its roles then come from the policy)."""

_COPIES = (TargetKind.CHANGE_TABLE, TargetKind.ARCHIVE, TargetKind.SUBJECT_KEY, TargetKind.STORAGE)


class ErasureEngine:
    """Erase a data subject (``customers.id=123``) from every dataset that holds it.

    Every call needs the ``erase`` grant on the subject's dataset
    (``Platform.authorize(actor, "datasets", <dataset>, "erase")``; the platform is open until a
    policy is applied): planning too, since a plan shows where the subject's data is. A denial
    raises ``AccessDenied`` and is audited.

    ``plan`` is a dry run. ``run`` discovers the targets, refuses with ``LegalHoldActive`` when
    a legal hold covers any of them (before touching anything), stores the job and its targets
    in the metadata store, then erases and verifies target by target, re-checks every target
    once all are done, and finally rewrites the storage of every store it touched;
    ``run(resume=job_id)`` continues a job that crashed or ended ``partial`` and never re-does a
    verified target. The JSON report goes to ``<platform dir>/erasure/<job id>.json`` (or
    ``report_dir``).
    """

    def __init__(self, platform: Platform, *, report_dir: str | Path | None = None) -> None:
        self.platform = platform
        self.jobs = JobStore(platform.meta)
        self.holds = LegalHolds(platform)
        self.report_dir = Path(report_dir) if report_dir is not None else platform.dir / "erasure"

    def __repr__(self) -> str:
        return f"ErasureEngine(report_dir={str(self.report_dir)!r})"

    # -- planning ----------------------------------------------------------------------
    def plan(self, subject: str | Subject, *, actor: Actor | None = None) -> ErasurePlan:
        """Every target with the subject's row count (a store that cannot be reached gets its
        error instead), and the legal holds that would refuse a run. Changes nothing; needs the
        ``erase`` grant (``AccessDenied`` otherwise). ``actor`` defaults to the OS user, as
        ``Platform.session()`` does."""
        subj, root = resolve_subject(self.platform, parse_subject(subject))
        self._authorize(actor, subj.dataset, "plan")
        targets = discover(self.platform, subj, root)
        derived = _derived_columns(targets)
        datasets = [t for t in targets if t.kind is TargetKind.DATASET and t.addressable]
        for t in targets:
            if not t.addressable or t.kind is TargetKind.STORAGE:
                continue
            try:
                t.rows = self._count(t.kind, t.dataset, t.store, t.columns, subj, derived, datasets)
            except Exception as err:  # noqa: BLE001 - a plan reports every failure per target
                t.error = _scrub(_describe(err), subj.value)
        return ErasurePlan(subj, targets, self._blocking(subj, targets))

    def _authorize(self, actor: Actor | None, dataset: str, what: str, job_id: str | None = None) -> Principal:
        """The principal, once the policy lets it erase in ``dataset``; a denial is audited."""
        if actor is None:
            actor = os.environ.get("USER") or "local"
        if isinstance(actor, str) and not actor.strip():
            raise InvalidInput("an erasure needs an actor (who asked for it)")
        principal = Principal.of(actor)
        try:
            self.platform.authorize(principal, "datasets", dataset, "erase")
        except AccessDenied as err:
            from headwater.audit import AuditEvent

            self.platform.record(AuditEvent(
                actor=principal.name, action="erase", decision="deny", reason=str(err)[:300],
                datasets=[dataset], extra={"operation": what, **({"job_id": job_id} if job_id else {})}))
            raise
        return principal

    def _blocking(self, subject: Subject, targets: list[Any]) -> list[LegalHold]:
        found: dict[str, LegalHold] = {}
        for t in targets:
            erasable = t.addressable if isinstance(t, ErasureTarget) else t.state is not TargetState.RESIDUAL
            if erasable and t.kind is not TargetKind.STORAGE:
                for hold in self.holds.blocking(t.dataset, subject=subject):
                    found.setdefault(hold.id, hold)
        return list(found.values())

    # -- running -----------------------------------------------------------------------
    def run(
        self,
        subject: str | Subject | None = None,
        *,
        actor: Actor,
        mode: ErasureMode | str = ErasureMode.DELETE,
        resume: str | None = None,
        progress: Progress | None = None,
    ) -> ErasureReport:
        """Erase ``subject`` everywhere (or continue job ``resume``); returns the report.

        The report's ``status`` is ``completed`` only when every erasable target was verified
        empty of the subject, re-checked after the last one, and every touched store's storage
        rewritten; otherwise ``partial`` with the reason per target (resume the job). Raises
        ``AccessDenied`` without the ``erase`` grant on the subject's dataset (audited),
        ``LegalHoldActive`` when a hold covers a target (nothing is touched) and
        ``InvalidInput`` for a bad subject or mode.
        """
        if isinstance(actor, str) and not actor.strip():
            raise InvalidInput("an erasure needs an actor (who asked for it)")
        if resume is not None:
            return self._resume(resume, subject, actor, progress)
        if subject is None:
            raise InvalidInput("name the subject to erase (customers.id=123) or a job to resume")
        try:
            mode = ErasureMode(mode)
        except ValueError:
            raise InvalidInput(f"mode must be 'delete' or 'anonymise', not {mode!r}") from None
        subj, root = resolve_subject(self.platform, parse_subject(subject))
        actor = self._authorize(actor, subj.dataset, "run").name
        targets = discover(self.platform, subj, root)
        job_id = f"erase_{secrets.token_hex(8)}"
        holds = self._blocking(subj, targets)
        surrogate = secrets.token_hex(8) if mode is ErasureMode.ANONYMISE else None
        status = JobStatus.REFUSED if holds else JobStatus.RUNNING
        self.jobs.create(job_id, subject=str(subj), subject_dataset=subj.dataset, subject_column=subj.column,
                         mode=mode, actor=actor, status=status, surrogate=surrogate, targets=targets)
        if holds:
            self._refuse(job_id, subj, actor, holds)
        return self._execute(job_id, actor, progress)

    def _resume(self, job_id: str, subject: str | Subject | None, who: Actor,
                progress: Progress | None) -> ErasureReport:
        job = self.jobs.job(job_id)
        subj = _job_subject(job)
        actor = self._authorize(who, subj.dataset, "resume", job_id).name
        if subject is not None and not parse_subject(subject).same_as(subj):
            raise InvalidInput(f"job {job_id} erases a different subject; resume it without --subject",
                               job_id=job_id)
        if job.status is JobStatus.COMPLETED:
            return self.jobs.report(job_id)
        holds = self._blocking(subj, [t for t in self.jobs.targets(job_id) if t.state is not TargetState.VERIFIED])
        if holds:
            self.jobs.update_job(job_id, status=JobStatus.REFUSED)
            self._refuse(job_id, subj, actor, holds)
        return self._execute(job_id, actor, progress)

    def _refuse(self, job_id: str, subject: Subject, actor: str, holds: list[LegalHold]) -> None:
        from headwater.audit import AuditEvent

        ids = [h.id for h in holds]
        self.platform.record(AuditEvent(
            actor=actor, action="erase", decision="deny", reason="legal hold",
            datasets=sorted({h.dataset for h in holds if h.dataset}),
            extra={"job_id": job_id, "subject": f"{subject.dataset}.{subject.column}", "holds": ids}))
        raise LegalHoldActive(
            f"erasure refused, nothing was changed: legal hold(s) {', '.join(ids)} cover "
            f"{', '.join(sorted({h.dataset or str(h.subject) for h in holds}))}; release them, then "
            f"resume job {job_id}", holds=ids, job_id=job_id)

    def _execute(self, job_id: str, actor: str, progress: Progress | None) -> ErasureReport:
        job = self.jobs.job(job_id)
        subj = _job_subject(job)
        targets = self.jobs.targets(job_id)
        derived = _derived_columns(targets)
        datasets = [t for t in targets if t.kind is TargetKind.DATASET and t.state is not TargetState.RESIDUAL]
        if not self.jobs.claim(job_id, job.runs):
            raise Conflict(f"erasure job {job_id} was started by another process just now; "
                           "check `headwater erase status`", job_id=job_id)
        pause = float(os.environ.get(PAUSE_ENV) or 0)
        touched: set[str] = set()

        def one(t: TargetResult) -> None:
            if progress is not None:
                progress(t, "start")
            self._erase_one(job_id, actor, t, subj, job.mode, job.surrogate, derived, datasets)
            if progress is not None:
                progress(t, "done")
            if pause:
                time.sleep(pause)

        storage = [t for t in targets if t.kind is TargetKind.STORAGE]
        for t in targets:
            if t.kind is TargetKind.STORAGE or t.state in (TargetState.VERIFIED, TargetState.RESIDUAL):
                continue
            one(t)
            touched.add(_storage_of(t))
        # Copies can come back while later targets run (a CDC change applied to a replica, a
        # dead letter, a key created by a sealing producer): every target is checked once more.
        self._recheck(job_id, actor, job.mode, targets, subj, derived, datasets)
        for t in storage:
            if t.state is TargetState.RESIDUAL or (t.state is TargetState.VERIFIED and t.dataset not in touched):
                continue
            one(t)
        return self._finish(job_id, actor, subj)

    def _recheck(self, job_id: str, actor: str, mode: ErasureMode, targets: list[TargetResult], subj: Subject,
                 derived: set[str], datasets: list[TargetResult]) -> None:
        for t in targets:
            if t.kind is TargetKind.STORAGE or t.state is not TargetState.VERIFIED:
                continue
            try:
                left = self._count(t.kind, t.dataset, t.store, t.columns, subj, derived, datasets)
            except Exception as err:  # noqa: BLE001 - not proven clean: left to a resume
                left, why = 1, _scrub(f"re-check failed: {_describe(err)}", subj.value)
            else:
                why = (f"{left} {_unit(t.kind)} of the subject appeared again before the run ended "
                       "(e.g. a CDC change applied meanwhile); resume the job")
            if left:
                t.state, t.verified, t.error = TargetState.FAILED, False, why
                self._audit_target(actor, job_id, mode, t)
                self.jobs.update_target(job_id, t.position, state=t.state.value, verified=False, error=t.error)

    def _erase_one(self, job_id: str, actor: str, t: TargetResult, subj: Subject, mode: ErasureMode,
                   surrogate: str | None, derived: set[str], datasets: list[TargetResult]) -> None:
        """Change one target, commit, verify, audit, commit; ``t`` is updated in place.

        The audit record is appended before the final state is committed: a crash between the
        two makes a resume verify (and audit) the target again, never leaves it unaudited."""
        try:
            held = [] if t.kind is TargetKind.STORAGE else self.holds.blocking(t.dataset, subject=subj)
            if held:  # placed while this job ran: leave the target for a resume after release
                raise LegalHoldActive(f"legal hold(s) {', '.join(h.id for h in held)} placed during the run "
                                      f"cover {t.dataset}", holds=[h.id for h in held])
            n, note = self._change(t, subj, mode, surrogate, derived, datasets)
            if n is not None:
                t.rows = (t.rows or 0) + n
            t.state, t.error = TargetState.EXECUTED, None
            if note:
                t.reason = note
            self.jobs.update_target(job_id, t.position, state=t.state.value, rows=t.rows, error=None,
                                    reason=t.reason)
            left = self._count(t.kind, t.dataset, t.store, t.columns, subj, derived, datasets)
            if left:
                t.state, t.error = TargetState.FAILED, f"{left} {_unit(t.kind)} of the subject remain after the erase"
            else:
                t.state, t.verified = TargetState.VERIFIED, True
        except Exception as err:  # noqa: BLE001 - any failure leaves the target to a resume
            if not isinstance(err, HeadwaterError | OSError):
                log.exception("erasure of %s failed", t.dataset)
            t.state, t.verified = TargetState.FAILED, False
            t.error = _scrub(_describe(err), subj.value)
        self._audit_target(actor, job_id, mode, t)
        self.jobs.update_target(job_id, t.position, state=t.state.value, verified=t.verified, error=t.error)

    def _change(self, t: TargetResult, subj: Subject, mode: ErasureMode, surrogate: str | None,
                derived: set[str], datasets: list[TargetResult]) -> tuple[int | None, str | None]:
        if t.kind is TargetKind.DEAD_LETTERS:
            engine = self.platform.meta.engine
            return delete_dead_letters(engine, match_dead_letters(engine, subj, derived,
                                                                  self._key_ids(subj, datasets)).ids), None
        if t.kind in _COPIES:
            return erase_copy(self.platform, t.kind, t.store, t.columns, subj.value, datasets)
        store, table, ds = self._locate(t.dataset, t.store)
        if mode is ErasureMode.ANONYMISE:
            n, changed = anonymise_rows(store, table, t.columns, subj.value, t.dataset, surrogate or "0",
                                        self._pii_columns(ds))
            return n, (f"anonymised columns: {', '.join(changed)}" if changed else None)
        return delete_rows(store, table, t.columns, subj.value, t.dataset), None

    def _key_ids(self, subj: Subject, datasets: list[Any]) -> list[bytes]:
        keys = self.platform.subject_keys
        return [keys.key_id(ns, subj.value) for ns in namespaces(subj, datasets)]

    def _pii_columns(self, ds: Any) -> list[str]:
        """Columns tagged ``pii*`` in the catalog, or copied unchanged from such a column (trusted
        lineage carries the tag to CTAS tables and lake copies that were never scanned)."""
        if ds is None:
            return []
        out = []
        for c in ds.columns:
            if _is_pii(c.tags):
                out.append(c.name)
                continue
            try:
                edges = trusted_walk(self.platform, ds.name, c.name, up=True, identity_only=True)
            except HeadwaterError:
                continue
            for ref in {e.source for e in edges}:
                name, _, col = ref.rpartition(".")
                up = self.platform.catalog.find(name)
                if up is not None and any(x.name == col and _is_pii(x.tags) for x in up.columns):
                    out.append(c.name)
                    break
        return out

    def _count(self, kind: TargetKind, dataset: str, store_name: str | None, columns: tuple[str, ...],
               subj: Subject, derived: set[str], datasets: list[Any]) -> int:
        if kind is TargetKind.DEAD_LETTERS:
            return len(match_dead_letters(self.platform.meta.engine, subj, derived,
                                          self._key_ids(subj, datasets)).ids)
        if kind in _COPIES:
            return count_copy(self.platform, kind, store_name, columns, subj.value, datasets)
        store, table, _ = self._locate(dataset, store_name)
        return count_rows(store, table, columns, subj.value, dataset)

    def _locate(self, dataset: str, store_name: str | None) -> tuple[Any, str, Any]:
        ds = self.platform.catalog.find(dataset)
        store = self.platform.store(ds.store if ds else (store_name or dataset.split(".", 1)[0]))
        return store, (ds.table if ds else dataset.split(".", 1)[1]), ds

    def _finish(self, job_id: str, actor: str, subj: Subject, what: str = "erasure") -> ErasureReport:
        targets = self.jobs.targets(job_id)
        open_ = [t for t in targets if t.state not in (TargetState.VERIFIED, TargetState.RESIDUAL)]
        status = JobStatus.PARTIAL if open_ else JobStatus.COMPLETED
        finished = None if open_ else (self.jobs.job(job_id).finished_at or _now())
        self.jobs.update_job(job_id, status=status, finished_at=finished,
                             error=f"{len(open_)} target(s) not verified; resume the job" if open_ else None)
        report = self.jobs.report(job_id)
        report.path = self._write(report)
        self.jobs.update_job(job_id, report_path=str(report.path))
        from headwater.audit import AuditEvent

        self.platform.record(AuditEvent(
            actor=actor, action="erase", reason=f"{what} {status.value}",
            datasets=[t.dataset for t in targets if t.kind is TargetKind.DATASET and t.state is not TargetState.RESIDUAL],
            rows=report.rows,
            extra={"job_id": job_id, "subject": f"{subj.dataset}.{subj.column}", "mode": report.mode.value,
                   "status": status.value, "run": report.runs,
                   "verified": sum(t.verified for t in targets), "not_verified": [t.dataset for t in open_],
                   "residual": [t.dataset for t in targets if t.state is TargetState.RESIDUAL],
                   "report": str(report.path)}))
        return report

    def _audit_target(self, actor: str, job_id: str, mode: ErasureMode, t: TargetResult) -> None:
        from headwater.audit import AuditEvent

        self.platform.record(AuditEvent(
            actor=actor, action="erase", datasets=[t.dataset],
            columns=[f"{t.dataset}.{c}" for c in t.columns], rows=t.rows,
            reason=f"target {t.state.value}",
            extra={"job_id": job_id, "target": t.position, "kind": t.kind.value, "mode": mode.value,
                   "verified": t.verified, "error": t.error}))

    def _write(self, report: ErasureReport) -> Path:
        self.report_dir.mkdir(parents=True, exist_ok=True)
        path = self.report_dir / f"{report.job_id}.json"
        tmp = path.with_suffix(".json.tmp")
        # The report names the subject (its reference): readable by the owner only.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(report.to_dict(), indent=2) + "\n")
        os.replace(tmp, path)
        return path

    def verify(self, job_id: str, *, actor: Actor) -> ErasureReport:
        """Query every verified target of a job again (needs the ``erase`` grant). A target where
        the subject reappeared (a CDC pipeline applying the source delete writes a tombstone
        row carrying the key; a late dead letter; a key created again by a sealing producer) is
        re-opened and the job becomes ``partial``: resume it. Targets that cannot be reached
        keep their state and get the error."""
        job = self.jobs.job(job_id)
        subj = _job_subject(job)
        who = self._authorize(actor, subj.dataset, "verify", job_id).name
        if job.status is JobStatus.REFUSED:
            return self.jobs.report(job_id)
        targets = self.jobs.targets(job_id)
        derived = _derived_columns(targets)
        datasets = [t for t in targets if t.kind is TargetKind.DATASET and t.state is not TargetState.RESIDUAL]
        for t in targets:
            if t.state is not TargetState.VERIFIED:
                continue
            try:
                left = self._count(t.kind, t.dataset, t.store, t.columns, subj, derived, datasets)
            except Exception as err:  # noqa: BLE001 - unreachable now: not proof the subject is back
                self.jobs.update_target(job_id, t.position, error=_scrub(f"re-check failed: {_describe(err)}",
                                                                          subj.value))
                continue
            if left:
                t.state, t.verified = TargetState.FAILED, False
                t.error = f"{left} {_unit(t.kind)} of the subject reappeared after the erasure; resume the job"
                self._audit_target(who, job_id, job.mode, t)
                self.jobs.update_target(job_id, t.position, state=t.state.value, verified=False, error=t.error)
                self._reopen_storage(job_id, targets, t)
        return self._finish(job_id, who, subj, "erasure re-check")

    def _reopen_storage(self, job_id: str, targets: list[TargetResult], t: TargetResult) -> None:
        """A target re-opened by ``verify`` needs its store's storage step again after the resume."""
        where = _storage_of(t)
        for s in targets:
            if s.kind is TargetKind.STORAGE and s.dataset == where and s.state is TargetState.VERIFIED:
                s.state, s.verified = TargetState.PENDING, False
                self.jobs.update_target(job_id, s.position, state=s.state.value, verified=False)

    # -- reading -----------------------------------------------------------------------
    def status(self, job_id: str, *, actor: Actor | None = None) -> ErasureReport:
        """A job's report as stored now (``NotFound`` for an unknown job; the ``erase`` grant on
        its subject's dataset is needed to read it; ``actor`` defaults to the OS user)."""
        job = self.jobs.job(job_id)
        self._authorize(actor, job.subject_dataset, "status", job_id)
        return self.jobs.report(job_id)

    def list_jobs(self, limit: int = 50, *, actor: Actor | None = None) -> list[ErasureReport]:
        """The newest jobs whose subject's dataset ``actor`` (default: the OS user) may erase,
        newest first."""
        principal = Principal.of(actor if actor is not None else os.environ.get("USER") or "local")
        policy = self.platform.policy_engine()
        return [self.jobs.report(j.job_id) for j in self.jobs.jobs(limit)
                if policy is None or policy.allowed(principal, "datasets", j.subject_dataset, "erase")]


def _is_pii(tags: Any) -> bool:
    return any(str(t).lower().startswith("pii") for t in tags)


def _job_subject(job: Any) -> Subject:
    """The stored subject, exactly (the value is what follows ``<dataset>.<column>=``)."""
    prefix = f"{job.subject_dataset}.{job.subject_column}="
    return Subject(job.subject_dataset, job.subject_column, job.subject[len(prefix):])


def _storage_of(t: Any) -> str:
    """The storage step that follows a change to target ``t``."""
    if t.kind in (TargetKind.DEAD_LETTERS, TargetKind.SUBJECT_KEY):
        return storage_name(None)
    return storage_name(t.store) if t.store else ""


def _unit(kind: TargetKind) -> str:
    return {TargetKind.SUBJECT_KEY: "key(s)", TargetKind.STORAGE: "unlisted file(s)"}.get(kind, "row(s)")


def _derived_columns(targets: list[Any]) -> set[str]:
    """Names of every column that carries the key (they name the subject in event payloads)."""
    return {c for t in targets if t.kind is TargetKind.DATASET for c in t.columns}


def _describe(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"[:1000]


def _scrub(text: str, value: str) -> str:
    """An error text without the subject's value (stores may echo it)."""
    if not value:
        return text
    return re.sub(rf"(?<![\w]){re.escape(value)}(?![\w])", "<subject>", text)

