"""Tamper-evident audit log: hash-chained records in the metadata store.

::

    from headwater.audit import AuditEvent, AuditLog, normalise_sql

    audit = AuditLog(meta, signing_key=key, checkpoint_every=1000, retention_days=365)
    audit.record(AuditEvent(actor="alice", action="query", datasets=["app.orders"],
                            statement=normalise_sql(sql), rows=12, duration_ms=3.1))
    report = audit.verify()          # VerifyReport(ok, records_checked, first_bad_seq, problem)
    audit.query(actor="alice", since=yesterday)
    audit.export("audit.parquet", format="parquet", dataset="app.orders")

Each record's hash covers its seq, timestamp, fields and the previous record's hash; every
``checkpoint_every`` records, and at every append for the chain head, (seq, hash) is signed
with HMAC-SHA256. Editing, deleting, inserting or reordering records, or cutting the tail, is
reported by :meth:`AuditLog.verify` with the first bad seq. The log has no update or delete
API; :meth:`AuditLog.apply_retention` drops old records behind a signed anchor.

A signed head stays valid forever, so someone who can write the metadata database could cut
off the newest records and restore an older signed head (or wipe the log). The head anchor
(:mod:`headwater.audit._anchor`: a signed file beside the platform, or an S3 object under
Object Lock in production) holds the highest (seq, hash) ever committed, outside the database,
and only moves forward; :meth:`AuditLog.verify` fails with ``rolled_back`` when the database is
behind it. Someone holding database write access and the signing key can still rewrite
anything, and someone who can also write the anchor's location can cut both back together.
"""

from headwater.audit._anchor import AnchorState, FileAnchor, HeadAnchor, S3Anchor
from headwater.audit._log import AuditLog, AuditTicket
from headwater.audit._model import (
    ACTIONS,
    AuditEvent,
    AuditIntegrityError,
    AuditRecord,
    Checkpoint,
    VerifyReport,
)
from headwater.audit._normalise import normalise_sql

__all__ = [
    "ACTIONS",
    "AnchorState",
    "AuditEvent",
    "AuditIntegrityError",
    "AuditLog",
    "AuditRecord",
    "AuditTicket",
    "Checkpoint",
    "FileAnchor",
    "HeadAnchor",
    "S3Anchor",
    "VerifyReport",
    "normalise_sql",
]
