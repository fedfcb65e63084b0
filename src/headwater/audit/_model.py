"""Audit events, stored records, verification reports and the canonical record encoding.

A record's text is the canonical JSON (sorted keys, no spaces, ASCII only, no NaN) of
``[prev_hash, seq, ts_us, actor, action, datasets, decision, details]``; its hash is the
SHA-256 of that text, so the hash covers the sequence number, the timestamp, every field and
the previous record's hash. The text is stored as is and never re-serialised, so verification
only hashes bytes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from headwater.errors import AuditIntegrityError, InvalidInput

__all__ = [
    "ACTIONS",
    "AuditEvent",
    "AuditIntegrityError",
    "AuditRecord",
    "Checkpoint",
    "VerifyReport",
]

GENESIS = "0" * 64
"""``prev_hash`` of the first record of a log."""

ACTIONS = frozenset(
    {
        "authenticate",
        "query",
        "explain",
        "write",
        "deny",
        "policy_change",
        "credential_change",
        "schema_register",
        "replay",
        "erase",
        "audit_anchor",
    }
)
"""The actions Headwater itself records; other lowercase names are accepted too."""

DECISIONS = ("allow", "deny", "error")
"""``error``: the call failed (parse, plan, store ...); the record holds the error class, no data."""

_dumps = json.JSONEncoder(
    ensure_ascii=True, separators=(",", ":"), sort_keys=True, allow_nan=False
).encode



@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEvent:
    """What happened: one authentication, query, write, denial, policy change ...

    ``statement`` must already be normalised (:func:`headwater.audit.normalise_sql`): the
    log stores it as given. ``masks`` maps a column to the mask applied to it; ``extra`` is any
    JSON object. Never put secrets in an event.
    """

    actor: str
    action: str
    datasets: Sequence[str] = ()
    columns: Sequence[str] = ()
    masks: Mapping[str, str] = field(default_factory=dict)
    row_filters: Sequence[str] = ()
    decision: str = "allow"
    reason: str | None = None
    statement: str | None = None
    rows: int | None = None
    duration_ms: float | None = None
    trace_id: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One stored audit record (an :class:`AuditEvent` plus its place in the chain)."""

    seq: int
    ts: dt.datetime
    actor: str
    action: str
    datasets: tuple[str, ...]
    columns: tuple[str, ...]
    masks: dict[str, str]
    row_filters: tuple[str, ...]
    decision: str
    reason: str | None
    statement: str | None
    rows: int | None
    duration_ms: float | None
    trace_id: str | None
    extra: dict[str, Any]
    prev_hash: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``ts`` as ISO 8601 UTC with microseconds)."""
        return {
            "seq": self.seq,
            "ts": self.ts.isoformat(timespec="microseconds"),
            "actor": self.actor,
            "action": self.action,
            "datasets": list(self.datasets),
            "columns": list(self.columns),
            "masks": dict(self.masks),
            "row_filters": list(self.row_filters),
            "decision": self.decision,
            "reason": self.reason,
            "statement": self.statement,
            "rows": self.rows,
            "duration_ms": self.duration_ms,
            "trace_id": self.trace_id,
            "extra": dict(self.extra),
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed (seq, hash) pair: the chain up to ``seq`` cannot be rewritten unnoticed."""

    seq: int
    hash: str
    sig: str


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """Outcome of :meth:`AuditLog.verify`; ``first_bad_seq`` is where the chain breaks."""

    ok: bool
    records_checked: int
    first_bad_seq: int | None = None
    problem: str | None = None
    first_seq: int | None = None
    last_seq: int | None = None
    checkpoints_checked: int = 0
    elapsed_s: float = 0.0
    rolled_back: bool = False
    """The chain verifies but the newest records were cut off (the head is behind the anchor,
    or the anchored record is gone or different), or the anchor is missing or does not verify."""
    head_anchor_seq: int | None = None
    """The seq held by the head anchor outside the metadata database (None: no anchor)."""
    head_anchor: str | None = None
    """Where the head anchor is (a path or ``s3://...``), when one is configured."""

    def __bool__(self) -> bool:
        return self.ok

    def check(self) -> VerifyReport:
        """Return ``self`` when the log is intact, else raise :class:`AuditIntegrityError`
        (with ``first_bad_seq`` and ``rolled_back``)."""
        if not self.ok:
            raise AuditIntegrityError(
                f"audit log does not verify at seq {self.first_bad_seq}: {self.problem}",
                first_bad_seq=self.first_bad_seq, rolled_back=self.rolled_back)
        return self


# -- encoding ---------------------------------------------------------------------------
def _str_list(name: str, value: Sequence[str]) -> list[str]:
    if isinstance(value, str) or not all(isinstance(v, str) for v in value):
        raise InvalidInput(f"audit event {name} must be a list of strings", field=name)
    return list(value)


def body(event: AuditEvent) -> str:
    """The canonical JSON of ``event`` without its chain fields (validated):
    ``[actor, action, datasets, decision, details]``."""
    if not isinstance(event.actor, str) or not event.actor:
        raise InvalidInput("audit event actor must be a non-empty string", field="actor")
    if not isinstance(event.action, str) or not event.action or len(event.action) > 64:
        raise InvalidInput("audit event action must be a non-empty string (<= 64 chars)", field="action")
    if event.decision not in DECISIONS:
        raise InvalidInput("audit event decision must be 'allow', 'deny' or 'error'", field="decision")
    if event.rows is not None and (not isinstance(event.rows, int) or event.rows < 0):
        raise InvalidInput("audit event rows must be a non-negative integer", field="rows")
    duration = event.duration_ms
    if duration is not None:
        duration = float(duration)
        if not math.isfinite(duration):
            raise InvalidInput("audit event duration_ms must be finite", field="duration_ms")
    details = {
        "columns": _str_list("columns", event.columns),
        "duration_ms": duration,
        "extra": dict(event.extra),
        "masks": dict(event.masks),
        "reason": event.reason,
        "row_filters": _str_list("row_filters", event.row_filters),
        "rows": event.rows,
        "statement": event.statement,
        "trace_id": event.trace_id,
    }
    fields = [event.actor, event.action, _str_list("datasets", event.datasets), event.decision, details]
    try:
        return _dumps(fields)
    except (TypeError, ValueError) as err:
        raise InvalidInput(f"audit event is not JSON-serialisable: {err}", field="extra") from None


def chain_text(prev_hash: str, seq: int, ts_us: int, body_json: str) -> str:
    """The record text: ``body_json`` with the chain fields in front. Equal to the canonical
    JSON of ``[prev_hash, seq, ts_us, *body]`` (a list's canonical JSON is its items' joined
    by commas), without serialising the body again."""
    return f'["{prev_hash}",{int(seq)},{int(ts_us)},{body_json[1:]}'


def encode(prev_hash: str, seq: int, ts_us: int, event: AuditEvent) -> str:
    """The canonical record text of ``event`` at ``seq`` after ``prev_hash``."""
    return chain_text(prev_hash, seq, ts_us, body(event))


def digest(text: str) -> str:
    """SHA-256 (hex) of a record's text."""
    return hashlib.sha256(text.encode()).hexdigest()


def decode(hash_: str, text: str) -> AuditRecord:
    """The :class:`AuditRecord` stored as ``text`` with ``hash_``."""
    prev, seq, ts_us, actor, action, datasets, decision, d = json.loads(text)
    return AuditRecord(
        seq=seq,
        ts=dt.datetime.fromtimestamp(ts_us // 1_000_000, dt.UTC).replace(microsecond=ts_us % 1_000_000),
        actor=actor,
        action=action,
        datasets=tuple(datasets),
        columns=tuple(d["columns"]),
        masks=d["masks"],
        row_filters=tuple(d["row_filters"]),
        decision=decision,
        reason=d["reason"],
        statement=d["statement"],
        rows=d["rows"],
        duration_ms=d["duration_ms"],
        trace_id=d["trace_id"],
        extra=d["extra"],
        prev_hash=prev,
        hash=hash_,
    )


def sign(key: bytes, kind: str, seq: int, hash_: str) -> str:
    """HMAC-SHA256 over (kind, seq, hash); ``kind`` keeps head, checkpoint and anchor
    signatures from standing in for one another."""
    msg = f"headwater-audit/{kind}:{seq}:{hash_}".encode()
    return hmac.new(key, msg, hashlib.sha256).hexdigest()


def signed(key: bytes, kind: str, seq: int, hash_: str, sig: str | None) -> bool:
    return sig is not None and hmac.compare_digest(sign(key, kind, seq, hash_), sig)


def to_us(value: dt.datetime) -> int:
    """Microseconds since the epoch (naive datetimes are taken as UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    delta = value - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
