"""Legal holds: what retention and erasure must not delete.

A hold covers either a **dataset** (a glob over qualified catalog names such as
``app.customers`` or ``warehouse.*``; nothing in it may be deleted or anonymised) or a **data
subject** (``customers.id=123``: that subject's rows survive retention, and erasing the subject
is refused). Holds live in the metadata store (``hw_legal_holds``), so every process and
service replica sees the same set; placing and releasing one is audited. A released hold keeps
its row (with who released it and when) for the record.

::

    holds = LegalHolds(platform)
    hold = holds.place(dataset="app.orders", reason="litigation 2026-17", actor="legal")
    holds.blocking("app.orders")            # -> [hold]
    holds.release(hold.id, actor="legal")
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import re
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from headwater.errors import InvalidInput, NotFound

if TYPE_CHECKING:
    from headwater.platform import Platform

__all__ = ["LegalHold", "LegalHolds", "Subject", "holds_table", "parse_subject"]

METADATA = sa.MetaData()

holds_table = sa.Table(
    "hw_legal_holds",
    METADATA,
    sa.Column("hold_id", sa.String(32), primary_key=True),
    sa.Column("dataset", sa.String(512)),
    sa.Column("subject_dataset", sa.String(512)),
    sa.Column("subject_column", sa.String(255)),
    sa.Column("subject_value", sa.Text),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("created_by", sa.String(255), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("released_by", sa.String(255)),
    sa.Column("released_at", sa.DateTime(timezone=True)),
)
"""Mirror of migration ``0009_legal_holds``."""

_SUBJECT = re.compile(r"^\s*(?P<dataset>[A-Za-z_][\w$]*(?:\.[A-Za-z_][\w$]*)*)\.(?P<column>[A-Za-z_][\w$]*)"
                      r"\s*=\s*(?P<value>.+?)\s*$")


@dataclass(frozen=True, slots=True)
class Subject:
    """A data subject: the rows of ``dataset`` whose ``column`` equals ``value``.

    ``dataset`` is a catalog name, short (``customers``) or qualified (``app.customers``);
    ``value`` is kept as text, as it was given.
    """

    dataset: str
    column: str
    value: str

    def __str__(self) -> str:
        return f"{self.dataset}.{self.column}={self.value}"

    @property
    def table(self) -> str:
        """The unqualified table name (``customers`` for ``app.customers``)."""
        return self.dataset.rsplit(".", 1)[-1]

    def names_dataset(self, dataset: str) -> bool:
        """True when ``dataset`` (qualified) is this subject's dataset."""
        if "." in self.dataset:
            return self.dataset.lower() == dataset.lower()
        return dataset.rsplit(".", 1)[-1].lower() == self.dataset.lower()

    def same_as(self, other: Subject) -> bool:
        """The same subject, with short and qualified dataset names compared by table."""
        if self.column.lower() != other.column.lower() or self.value != other.value:
            return False
        if "." in self.dataset and "." in other.dataset:
            return self.dataset.lower() == other.dataset.lower()
        return self.table.lower() == other.table.lower()


def parse_subject(text: str | Subject) -> Subject:
    """``"customers.id=123"`` or ``"app.customers.id=123"`` -> :class:`Subject`.

    Quotes around the value are removed (``customers.email='a@b.c'``).
    """
    if isinstance(text, Subject):
        return text
    m = _SUBJECT.match(text or "")
    if m is None:
        raise InvalidInput(f"a subject is <dataset>.<column>=<value>, e.g. customers.id=123; got {text!r}")
    value = m["value"]
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1]
    return Subject(m["dataset"], m["column"], value)


@dataclass(frozen=True, slots=True)
class LegalHold:
    """One hold; ``dataset`` is a glob or None (all datasets), ``subject`` a Subject or None."""

    id: str
    dataset: str | None
    subject: Subject | None
    reason: str
    created_by: str
    created_at: dt.datetime

    def covers_dataset(self, dataset: str) -> bool:
        """True when the hold's dataset pattern (or its absence) takes in ``dataset``."""
        return self.dataset is None or fnmatch.fnmatchcase(dataset.lower(), self.dataset.lower())


class LegalHolds:
    """Place, release, list and check legal holds (metadata store; audited)."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self._engine = platform.meta.engine

    def __repr__(self) -> str:
        return "LegalHolds()"

    def place(self, *, reason: str, actor: str, dataset: str | None = None,
              subject: str | Subject | None = None) -> LegalHold:
        """Place a hold on a dataset pattern, a subject, or a subject within datasets."""
        if dataset is None and subject is None:
            raise InvalidInput("a legal hold needs a dataset pattern, a subject or both")
        if not reason or not reason.strip():
            raise InvalidInput("a legal hold needs a reason")
        subj = parse_subject(subject) if subject is not None else None
        hold = LegalHold(id=f"hold_{secrets.token_hex(6)}", dataset=dataset, subject=subj, reason=reason.strip(),
                         created_by=actor, created_at=dt.datetime.now(dt.UTC))
        with self.platform.meta.begin() as conn:
            conn.execute(holds_table.insert().values(
                hold_id=hold.id, dataset=dataset,
                subject_dataset=subj.dataset if subj else None, subject_column=subj.column if subj else None,
                subject_value=subj.value if subj else None, reason=hold.reason, created_by=actor,
                created_at=hold.created_at))
        self._audit(actor, "legal hold placed", hold)
        return hold

    def release(self, hold_id: str, *, actor: str) -> None:
        """Release an active hold (its row stays, marked released)."""
        hold = self.get(hold_id)
        with self.platform.meta.begin() as conn:
            conn.execute(holds_table.update().where(holds_table.c.hold_id == hold_id)
                         .values(released_by=actor, released_at=dt.datetime.now(dt.UTC)))
        self._audit(actor, "legal hold released", hold)

    def get(self, hold_id: str) -> LegalHold:
        """One active hold by id; :class:`NotFound` when absent or released."""
        for hold in self.list():
            if hold.id == hold_id:
                return hold
        raise NotFound(f"no active legal hold {hold_id!r} (headwater holds ls lists them)", hold_id=hold_id)

    def list(self) -> list[LegalHold]:
        """Active holds, oldest first."""
        t = holds_table
        with self.platform.meta.connect() as conn:
            rows = conn.execute(sa.select(t).where(t.c.released_at.is_(None)).order_by(t.c.created_at)).all()
        return [_hold(r) for r in rows]

    def blocking(self, dataset: str, *, subject: Subject | None = None) -> list[LegalHold]:
        """Holds that forbid deleting or anonymising in ``dataset`` (for ``subject`` if given).

        A dataset-wide hold (no subject) blocks when its pattern matches. A subject hold blocks
        when ``subject`` is the same subject and the hold's dataset pattern (if any) matches.
        """
        out = []
        for hold in self.list():
            if not hold.covers_dataset(dataset):
                continue
            if hold.subject is None or (subject is not None and hold.subject.same_as(subject)):
                out.append(hold)
        return out

    def subject_holds(self, dataset: str) -> list[Subject]:
        """Held subjects whose rows retention must keep in ``dataset`` (the subject's own dataset)."""
        return [h.subject for h in self.list()
                if h.subject is not None and h.covers_dataset(dataset) and h.subject.names_dataset(dataset)]

    def _audit(self, actor: str, reason: str, hold: LegalHold) -> None:
        from headwater.audit import AuditEvent

        extra: dict[str, Any] = {"hold_id": hold.id, "reason": hold.reason}
        if hold.dataset is not None:
            extra["dataset"] = hold.dataset
        if hold.subject is not None:
            extra["subject"] = f"{hold.subject.dataset}.{hold.subject.column}"  # never the subject's value
        self.platform.record(AuditEvent(actor=actor, action="legal_hold", reason=reason,
                                        datasets=[hold.dataset] if hold.dataset else [], extra=extra))


def _hold(row: Any) -> LegalHold:
    subj = (Subject(row.subject_dataset, row.subject_column, row.subject_value)
            if row.subject_column is not None else None)
    created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=dt.UTC)
    return LegalHold(id=row.hold_id, dataset=row.dataset, subject=subj, reason=row.reason,
                     created_by=row.created_by, created_at=created)
