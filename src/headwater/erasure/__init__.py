"""Erasure of a data subject across every copy: source, replicas, derived tables, lake files,
CDC change tables, retention archives, dead letters, and event topics through crypto-shredding.

::

    from headwater.erasure import ErasureEngine

    engine = ErasureEngine(platform)
    plan = engine.plan("customers.id=123", actor="dpo")      # dry run: targets, row counts, holds
    report = engine.run("customers.id=123", actor="dpo")     # or actor=platform.authenticate(token)
    report.status, report.path                              # "completed", the JSON report
    engine.run(actor="dpo", resume=report.job_id)           # continue a partial or crashed job

**Who may erase.** Every call (plan, run, resume, verify, status; ``list_jobs`` filters) needs
``Platform.authorize(actor, "datasets", <subject's dataset>, "erase")``: planning too, since a
plan shows where the subject's data is. A denial raises ``AccessDenied`` and is audited; nothing
is created or changed. Until a policy is applied the platform is open (as for every door).

Discovery (:mod:`headwater.erasure._discover`) resolves the subject's dataset in the catalog
and follows **trusted** column lineage (edges the platform recorded itself, never an outside
producer's) from the key column through ``DIRECT``/``IDENTITY`` edges to every dataset that
copies the key (CTAS and ``INSERT ... SELECT`` tables, query results written to the lake, CDC
replicas), finds CDC replicas by their bookkeeping columns, and adds the copies the platform
keeps for itself (:mod:`headwater.erasure._copies`): rows of CDC change tables (SQLite
capture's ``_hw_changes``, full before/after images), retention archives on every Parquet store,
dead letters (sealed payloads included), the subject's crypto-shredding keys
(``platform.subject_keys.shred("<store>.<table>.<column>", value)``, always, idempotent), and one
storage step per touched store. It reports what it cannot erase with the reason: datasets
derived without the key (aggregates: *not subject-addressable*) and event topics.

Execution goes through ``Store.delete_rows`` / ``Store.update_rows`` (Parquet files are
rewritten and the manifest swapped), honours legal holds (a held target makes the run refuse
with ``LegalHoldActive`` before anything is touched), and verifies every target with a query
for the subject's rows; once all are done every target is **checked again** (a copy that came
back meanwhile makes the job ``partial``), then the **storage step** leaves no recoverable
bytes (:mod:`headwater.erasure._scrub`: SQLite ``VACUUM`` with ``secure_delete`` and a truncated
WAL, DuckDB file rewritten, Postgres ``VACUUM (FULL)``, unlisted lake files deleted). The status
is ``completed`` only when every erasable target verified clean and every storage step finished;
otherwise ``partial`` with the reason per target. The job and each target's state are committed
to the metadata store (``hw_erasure_jobs``, ``hw_erasure_targets``) as they change, so a crashed
or ``partial`` job resumes where it stopped and never re-does a verified target. Each run writes
a JSON report (holding the subject only as its reference) and audit records: one per target,
one per run; audit records name the subject's dataset and column and the job id, never its value.

``anonymise`` mode keeps the rows: the key columns get a random surrogate of the job (a
negative number for integer keys, ``anon-<hex>`` for text) and columns tagged ``pii*`` in the
catalog become NULL. Dead letters and change-table rows are deleted in both modes.

Known limits: a source's own foreign keys are not lineage (``app.orders.customer_id`` is not
found from ``app.customers.id``; erase ``orders.customer_id=123`` as its own subject), though
tables derived by joining on such a key are found. Event topics are append-only: only fields
sealed under the subject's key become unreadable (shredding); unsealed fields leave with the
topic's retention, and a key created again after the shred (an event sealed since) re-opens the
job. A Postgres CDC source ships the source delete from its WAL, so a replica may get a
tombstone carrying the key after the run: ``ErasureEngine.verify(job)`` (``headwater erase
verify JOB``) finds it and re-opens the job for a resume (a SQLite source's change is pruned
before it ships). Outside Headwater's reach, documented not erased: Postgres WAL segments,
replicas and backups; S3 object versions of a versioned bucket; Snowflake Time Travel and
Fail-safe (reported as a residual storage target); filesystem and SSD blocks of deleted files;
copies made outside the platform. The audit log and erasure jobs keep the subject's reference
(``app.customers.id=123``), never its other values. There is no HTTP erasure route yet.
"""

from headwater.erasure._engine import PAUSE_ENV, ErasureEngine, Progress
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
from headwater.retention.holds import Subject, parse_subject

__all__ = [
    "PAUSE_ENV",
    "ErasureEngine",
    "ErasureMode",
    "ErasurePlan",
    "ErasureReport",
    "ErasureTarget",
    "JobStatus",
    "Progress",
    "Subject",
    "TargetKind",
    "TargetResult",
    "TargetState",
    "parse_subject",
]
