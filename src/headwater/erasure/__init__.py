"""Erasure of a data subject across every copy: source, replicas, derived tables, lake files,
dead letters.

::

    from headwater.erasure import ErasureEngine

    engine = ErasureEngine(platform)
    plan = engine.plan("customers.id=123")          # dry run: targets, row counts, holds
    report = engine.run("customers.id=123", actor="dpo")
    report.status, report.path                      # "completed", the JSON report
    engine.run(actor="dpo", resume=report.job_id)   # continue a partial or crashed job

Discovery (:mod:`headwater.erasure._discover`) resolves the subject's dataset in the catalog
and follows column lineage from the key column through ``DIRECT``/``IDENTITY`` edges to every
dataset that copies the key (CTAS and ``INSERT ... SELECT`` tables, query results written to
the lake), finds CDC replicas by their bookkeeping columns, searches dead letters, and reports
what it cannot erase with the reason: datasets derived without the key (aggregates: *not
subject-addressable*) and event topics (append-only logs).

Execution goes through ``Store.delete_rows`` / ``Store.update_rows`` (Parquet files are
rewritten and the manifest swapped), honours legal holds (a held target makes the run refuse
with ``LegalHoldActive`` before anything is touched), and verifies every target with a query
for the subject's rows. The job and each target's state are committed to the metadata store
(``hw_erasure_jobs``, ``hw_erasure_targets``) as they change, so a crashed or ``partial`` job
resumes where it stopped and never re-does a verified target. Each run writes a JSON report
(holding the subject only as its reference) and audit records: one per target, one per run;
audit records name the subject's dataset and column and the job id, never its value.

``anonymise`` mode keeps the rows: the key columns get a random surrogate of the job (a
negative number for integer keys, ``anon-<hex>`` for text) and columns tagged ``pii*`` in the
catalog become NULL. Dead letters are deleted in both modes.

Known limits: a source's own foreign keys are not lineage (``app.orders.customer_id`` is not
found from ``app.customers.id``; erase ``orders.customer_id=123`` as its own subject), though
tables derived by joining on such a key are found; a CDC pipeline that ships the source delete
later writes a tombstone row carrying the key into its replica: ``ErasureEngine.verify(job)``
(``headwater erase verify JOB``) finds it and re-opens the job for a resume.
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
