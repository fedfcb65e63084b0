"""Applied policies, versioned in the metadata store.

Every ``apply`` adds a version (the document text, its content hash, who applied it and when);
the newest version is in force. A process re-checks the newest version at most every
``refresh_s`` seconds, so a policy applied by the CLI reaches a running service within that time.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from dataclasses import dataclass

import sqlalchemy as sa

from headwater.metadata import MetadataStore
from headwater.policy._engine import PolicyEngine
from headwater.policy._model import Policy, load_policy

__all__ = ["PolicyStore", "PolicyVersion", "policies_table"]

policies_table = sa.Table(
    "hw_policies",
    sa.MetaData(),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("document", sa.Text, nullable=False),
    sa.Column("source", sa.String(500)),
    sa.Column("applied_by", sa.String(255), nullable=False),
    sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True, slots=True)
class PolicyVersion:
    """One applied policy document."""

    version: int
    content_hash: str
    document: str
    source: str | None
    applied_by: str
    applied_at: dt.datetime


class PolicyStore:
    """Versions of the policy document, and the engine for the one in force."""

    def __init__(self, meta: MetadataStore, *, hmac_key: bytes, refresh_s: float = 2.0) -> None:
        self.meta = meta
        self._hmac_key = hmac_key
        self.refresh_s = refresh_s
        self._lock = threading.Lock()
        self._engine: PolicyEngine | None = None
        self._version = -1
        self._checked = 0.0

    def __repr__(self) -> str:
        return f"PolicyStore(version={self._version})"

    def mask_key(self, name: str) -> str:
        """The derived key of mask ``name`` (``token``, ``hash_in``, ``hash_out``), for code that
        must write the very value a mask shows (retention's ``tokenise_after``)."""
        from headwater.policy._engine import mask_key

        return mask_key(self._hmac_key, name)

    def latest(self) -> PolicyVersion | None:
        """The policy in force, or None when none was ever applied."""
        with self.meta.connect() as conn:
            row = conn.execute(sa.select(policies_table).order_by(policies_table.c.version.desc()).limit(1)).first()
        return PolicyVersion(**row._mapping) if row else None

    def history(self) -> list[PolicyVersion]:
        """Every applied version, newest first."""
        with self.meta.connect() as conn:
            rows = conn.execute(sa.select(policies_table).order_by(policies_table.c.version.desc())).all()
        return [PolicyVersion(**r._mapping) for r in rows]

    def get(self, version: int) -> PolicyVersion | None:
        """One version by number."""
        with self.meta.connect() as conn:
            row = conn.execute(sa.select(policies_table).where(policies_table.c.version == version)).first()
        return PolicyVersion(**row._mapping) if row else None

    def apply(self, text: str, *, source: str | None, applied_by: str) -> tuple[PolicyVersion, Policy]:
        """Validate and store a new version (a no-op returning the current one if unchanged)."""
        policy = load_policy(text, source=source or "<policy>")
        current = self.latest()
        if current is not None and current.content_hash == policy.version:
            return current, policy
        with self.meta.begin() as conn:
            conn.execute(sa.insert(policies_table).values(
                content_hash=policy.version, document=text, source=source, applied_by=applied_by,
                applied_at=dt.datetime.now(dt.UTC)))
        self._checked = 0.0
        latest = self.latest()
        assert latest is not None
        return latest, policy

    def engine(self) -> PolicyEngine | None:
        """The engine for the policy in force (None: no policy applied, the platform is open)."""
        now = time.monotonic()
        if now - self._checked < self.refresh_s:
            return self._engine
        with self._lock:
            with self.meta.connect() as conn:
                version = conn.execute(sa.select(sa.func.max(policies_table.c.version))).scalar()
            if version is None:
                self._engine, self._version = None, -1
            elif version != self._version:
                current = self.get(version)
                assert current is not None
                policy = load_policy(current.document, source=current.source or f"policy v{version}")
                self._engine, self._version = PolicyEngine(policy, hmac_key=self._hmac_key), version
            self._checked = now
            return self._engine
