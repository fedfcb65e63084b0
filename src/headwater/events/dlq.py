"""The dead-letter store: failed events with one reason model, on every bus backend.

A dead letter keeps the **original message bytes intact** (even when they do not parse) and
the reason it failed:

* ``stage`` -- where it failed: ``deserialise`` (not a valid envelope), ``validate`` (payload
  breaks its schema, unknown schema id), ``route`` (routing rules failed), ``handle`` (the
  handler raised on every attempt, or crashed the consumer past the delivery limit) or
  ``sink`` (the write to the dataset failed);
* ``error_class`` and ``error_message``; ``attempts``; ``first_failure_at`` and
  ``last_failure_at``;
* ``consumer_group`` and the original ``topic``, ``partition`` and ``offset``.

Rows live in the metadata database (table ``hw_dead_letters``, migration ``0006_events``), one
per (consumer group, event id) -- or per hash of the bytes when there is no id -- so a
redelivered failure updates the row instead of adding a second one, and a replayed event that
fails again comes back to the same row with its ``replay_count``.

:meth:`DeadLetterStore.replay` re-publishes dead letters to their topic (or another) with
filters, a dry run, a rate limit and a loop guard: a dead letter replayed ``max_replays``
times already is refused (:class:`ReplayRefused` in the report) unless ``force=True``.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa

from headwater.errors import InvalidInput, StoreError, StoreUnavailable
from headwater.events.bus.errors import DeadLetterNotFound, InvalidEvent, ReplayRefused
from headwater.events.envelope import Event

__all__ = [
    "DeadLetter",
    "DeadLetterStore",
    "FailureReason",
    "ReplayOutcome",
    "ReplayReport",
    "Stage",
    "dead_letters_table",
]

logger = logging.getLogger("headwater")

METADATA = sa.MetaData()

dead_letters_table = sa.Table(
    "hw_dead_letters",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("fingerprint", sa.String(80), nullable=False),
    sa.Column("consumer_group", sa.String(255), nullable=False),
    sa.Column("topic", sa.String(255), nullable=False),
    sa.Column("partition", sa.Integer, nullable=False),
    sa.Column("offset", sa.BigInteger, nullable=False),
    sa.Column("stage", sa.String(16), nullable=False),
    sa.Column("error_class", sa.String(255), nullable=False),
    sa.Column("error_message", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("first_failure_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_failure_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("event_id", sa.String(255)),
    sa.Column("event_type", sa.String(255)),
    sa.Column("event_source", sa.String(1024)),
    sa.Column("event_subject", sa.String(1024)),
    sa.Column("message_key", sa.String(1024)),
    sa.Column("value", sa.LargeBinary, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("replay_count", sa.Integer, nullable=False),
    sa.Column("replayed_at", sa.DateTime(timezone=True)),
    sa.UniqueConstraint("consumer_group", "fingerprint", name="uq_hw_dead_letters_group_fingerprint"),
)
"""Mirrors migration ``0006_events``."""

_MAX_MESSAGE = 4000


class Stage(StrEnum):
    """Where in the pipeline an event failed."""

    DESERIALISE = "deserialise"
    VALIDATE = "validate"
    ROUTE = "route"
    HANDLE = "handle"
    SINK = "sink"


class Status(StrEnum):
    """A dead letter's state."""

    DEAD = "dead"
    """Failed and waiting (again, after a replay that failed)."""
    REPLAYED = "replayed"
    """Re-published; it returns to ``dead`` if it fails again."""
    DISCARDED = "discarded"
    """Given up on by an operator."""


@dataclass(frozen=True)
class FailureReason:
    """The one reason model of a dead letter (the same on every backend)."""

    stage: Stage
    error_class: str
    error_message: str
    attempts: int
    first_failure_at: datetime
    last_failure_at: datetime
    consumer_group: str
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class DeadLetter:
    """A stored dead letter: the reason, the original bytes and replay state."""

    id: int
    reason: FailureReason
    value: bytes
    """The original message, byte for byte."""
    event_id: str | None
    event_type: str | None
    key: str | None
    status: str
    replay_count: int
    replayed_at: datetime | None

    def event(self) -> Event:
        """The original event (:class:`InvalidEvent` when it never parsed)."""
        return Event.from_json(self.value)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (the bytes as text, replaced where not UTF-8)."""
        r = self.reason
        return {
            "id": self.id,
            "status": self.status,
            "stage": r.stage.value,
            "error_class": r.error_class,
            "error_message": r.error_message,
            "attempts": r.attempts,
            "first_failure_at": r.first_failure_at.isoformat(),
            "last_failure_at": r.last_failure_at.isoformat(),
            "consumer_group": r.consumer_group,
            "topic": r.topic,
            "partition": r.partition,
            "offset": r.offset,
            "event_id": self.event_id,
            "event_type": self.event_type,
            "key": self.key,
            "replay_count": self.replay_count,
            "replayed_at": self.replayed_at.isoformat() if self.replayed_at else None,
            "value": self.value.decode("utf-8", "replace"),
        }


@dataclass(frozen=True)
class ReplayOutcome:
    """What happened to one dead letter in a replay."""

    id: int
    action: str
    """``"replayed"``, ``"would replay"`` (dry run) or ``"refused"`` (loop guard)."""
    topic: str
    reason: str | None = None


@dataclass
class ReplayReport:
    """Result of :meth:`DeadLetterStore.replay`."""

    dry_run: bool
    outcomes: list[ReplayOutcome] = field(default_factory=list)

    @property
    def replayed(self) -> int:
        """Dead letters re-published (or that would be, in a dry run)."""
        return sum(o.action in ("replayed", "would replay") for o in self.outcomes)

    @property
    def refused(self) -> int:
        """Dead letters the loop guard held back."""
        return sum(o.action == "refused" for o in self.outcomes)


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:  # SQLite drops the offset; we store UTC
        return value.replace(tzinfo=UTC)
    return value


def fingerprint(value: bytes, event_id: str | None) -> str:
    """Identity of a failed message within a group: its event id, else a hash of its bytes."""
    if event_id:
        return "id:" + event_id[:76]
    return "sha256:" + hashlib.sha256(value).hexdigest()[:72]


class DeadLetterStore:
    """Dead letters in the metadata database.

    ``engine`` is a SQLAlchemy engine (``platform.meta.engine``) whose database has been
    migrated; ``create_tables=True`` creates the table instead (tests, tools).
    """

    def __init__(self, engine: sa.Engine, *, create_tables: bool = False) -> None:
        self.engine = engine
        if create_tables:
            METADATA.create_all(engine)

    @classmethod
    def for_platform(cls, platform: Any) -> DeadLetterStore:
        """The store of a :class:`~headwater.platform.Platform` (its metadata database)."""
        return cls(platform.meta.engine)

    def __repr__(self) -> str:
        return f"DeadLetterStore(dialect={self.engine.dialect.name!r})"

    @contextmanager
    def _tx(self) -> Iterator[sa.Connection]:
        try:
            with self.engine.begin() as conn:
                yield conn
        except sa.exc.IntegrityError:
            raise
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as err:
            raise StoreUnavailable(
                f"dead-letter store unavailable: {type(err.orig).__name__}: {err.orig}"
            ) from None
        except sa.exc.DBAPIError as err:
            raise StoreError(f"dead-letter store query failed: {type(err.orig).__name__}") from None

    # -- writes ------------------------------------------------------------------------------
    def add(
        self,
        value: bytes,
        *,
        stage: Stage | str,
        error: BaseException | tuple[str, str],
        attempts: int,
        consumer_group: str,
        topic: str,
        partition: int,
        offset: int,
        key: str | None = None,
        event: Event | None = None,
        first_failure_at: datetime | None = None,
    ) -> DeadLetter:
        """Record a failure (or update the group's existing record of the same event).

        ``error`` is the exception, or ``(error_class, message)``. An existing record gets the
        new reason, its attempts added, ``status`` back to ``dead`` and its ``replay_count``
        kept (the loop guard counts across replays).
        """
        stage = Stage(stage)
        if isinstance(error, BaseException):
            error_class = type(error).__name__
            message = str(error) or error_class
        else:
            error_class, message = error
        message = message[:_MAX_MESSAGE]
        if event is None:
            try:
                event = Event.from_json(value)
            except InvalidEvent:
                event = None
        if key is None and event is not None:  # the default key (buses may not carry it)
            key = event.subject if event.subject is not None else event.id
        now = _now()
        first = first_failure_at or now
        fp = fingerprint(value, event.id if event else None)
        t = dead_letters_table
        for _ in range(3):
            try:
                with self._tx() as conn:
                    row = conn.execute(
                        sa.select(t.c.id, t.c.attempts, t.c.first_failure_at).where(
                            t.c.consumer_group == consumer_group, t.c.fingerprint == fp
                        )
                    ).first()
                    values = dict(
                        topic=topic,
                        partition=int(partition),
                        offset=int(offset),
                        stage=stage.value,
                        error_class=error_class,
                        error_message=message,
                        last_failure_at=now,
                        status=Status.DEAD.value,
                        message_key=key,
                    )
                    if row is None:
                        new_id = conn.execute(
                            t.insert()
                            .values(
                                fingerprint=fp,
                                consumer_group=consumer_group,
                                attempts=int(attempts),
                                first_failure_at=first,
                                event_id=event.id if event else None,
                                event_type=event.type if event else None,
                                event_source=event.source if event else None,
                                event_subject=event.subject if event else None,
                                value=bytes(value),
                                replay_count=0,
                                **values,
                            )
                            .returning(t.c.id)
                        ).scalar_one()
                    else:
                        new_id = row.id
                        conn.execute(
                            t.update()
                            .where(t.c.id == row.id)
                            .values(attempts=row.attempts + int(attempts), **values)
                        )
                break
            except sa.exc.IntegrityError:  # a concurrent consumer inserted it first: update
                continue
        logger.info(
            "dead letter %s: group %r topic %r p%s@%s stage=%s %s",
            new_id, consumer_group, topic, partition, offset, stage.value, error_class,
        )
        return self.get(new_id)

    def discard(self, dead_letter_id: int) -> None:
        """Mark a dead letter as given up (kept for the record, never replayed)."""
        self._set_status(dead_letter_id, Status.DISCARDED)

    def _set_status(self, dead_letter_id: int, status: Status, **extra: Any) -> None:
        t = dead_letters_table
        with self._tx() as conn:
            n = conn.execute(
                t.update().where(t.c.id == int(dead_letter_id)).values(status=status.value, **extra)
            ).rowcount
        if not n:
            raise DeadLetterNotFound(f"no dead letter has id {dead_letter_id}", dead_letter_id=dead_letter_id)

    # -- reads -------------------------------------------------------------------------------
    def get(self, dead_letter_id: int) -> DeadLetter:
        """One dead letter by id (``show``)."""
        t = dead_letters_table
        with self._tx() as conn:
            row = conn.execute(sa.select(t).where(t.c.id == int(dead_letter_id))).first()
        if row is None:
            raise DeadLetterNotFound(f"no dead letter has id {dead_letter_id}", dead_letter_id=dead_letter_id)
        return _to_dead_letter(row)

    def list(
        self,
        *,
        status: str | None = "dead",
        topic: str | None = None,
        consumer_group: str | None = None,
        stage: Stage | str | None = None,
        error_class: str | None = None,
        event_type: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        ids: Any = None,
        limit: int | None = 100,
        after_id: int | None = None,
    ) -> list[DeadLetter]:
        """Dead letters matching every given filter, oldest failure first (``ls``).

        ``status=None`` lists every status; ``since``/``until`` bound ``last_failure_at``;
        ``after_id`` pages (letters with a larger id only).
        """
        query = sa.select(dead_letters_table).order_by(dead_letters_table.c.id)
        query = query.where(*self._filters(status, topic, consumer_group, stage, error_class, event_type, since, until, ids))
        if after_id is not None:
            query = query.where(dead_letters_table.c.id > int(after_id))
        if limit is not None:
            query = query.limit(int(limit))
        with self._tx() as conn:
            return [_to_dead_letter(r) for r in conn.execute(query)]

    def count(self, **filters: Any) -> int:
        """How many dead letters match (same filters as :meth:`list`)."""
        args = {"status": "dead", **filters}
        where = self._filters(
            args.get("status"), args.get("topic"), args.get("consumer_group"), args.get("stage"),
            args.get("error_class"), args.get("event_type"), args.get("since"), args.get("until"),
            args.get("ids"),
        )
        with self._tx() as conn:
            return conn.execute(
                sa.select(sa.func.count()).select_from(dead_letters_table).where(*where)
            ).scalar_one()

    @staticmethod
    def _filters(status, topic, group, stage, error_class, event_type, since, until, ids) -> list[Any]:  # type: ignore[no-untyped-def]
        c = dead_letters_table.c
        out: list[Any] = []
        if status is not None:
            if status not in {s.value for s in Status}:
                raise InvalidInput(f"status must be one of {[s.value for s in Status]}, not {status!r}")
            out.append(c.status == status)
        if topic is not None:
            out.append(c.topic == topic)
        if group is not None:
            out.append(c.consumer_group == group)
        if stage is not None:
            out.append(c.stage == Stage(stage).value)
        if error_class is not None:
            out.append(c.error_class == error_class)
        if event_type is not None:
            out.append(c.event_type == event_type)
        if since is not None:
            out.append(c.last_failure_at >= since)
        if until is not None:
            out.append(c.last_failure_at < until)
        if ids is not None:
            out.append(c.id.in_([int(i) for i in ids]))
        return out

    # -- replay ------------------------------------------------------------------------------
    def replay(
        self,
        bus: Any,
        *,
        to_topic: str | None = None,
        dry_run: bool = False,
        rate: float | None = None,
        max_replays: int = 3,
        force: bool = False,
        limit: int | None = None,
        **filters: Any,
    ) -> ReplayReport:
        """Re-publish dead letters (status ``dead`` unless ``status`` is given in filters).

        Each goes back, bytes intact, to its original topic (or ``to_topic``) with its
        original key; its row becomes ``replayed`` and ``replay_count`` grows. ``rate``
        caps replays per second. A dead letter already replayed ``max_replays`` times is
        refused (the loop guard) unless ``force``. ``dry_run`` reports without publishing.
        On NATS a replay gets a fresh ``Nats-Msg-Id`` so the broker's de-duplication does not
        swallow it; consumers still see the original event id.
        """
        letters = self.list(limit=limit, **filters)
        report = ReplayReport(dry_run=dry_run)
        interval = 1.0 / rate if rate else 0.0
        next_at = time.monotonic()
        for dl in letters:
            topic = to_topic or dl.reason.topic
            if dl.replay_count >= max_replays and not force:
                err = ReplayRefused(
                    f"dead letter {dl.id} was replayed {dl.replay_count} times (max_replays="
                    f"{max_replays}); fix the cause, or pass force=True",
                    dead_letter_id=dl.id,
                    replay_count=dl.replay_count,
                )
                report.outcomes.append(ReplayOutcome(dl.id, "refused", topic, str(err)))
                continue
            if dry_run:
                report.outcomes.append(ReplayOutcome(dl.id, "would replay", topic))
                continue
            if interval:
                delay = next_at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                next_at = max(next_at, time.monotonic()) + interval
            msg_id = f"{dl.event_id or dl.id}:replay:{dl.replay_count + 1}"
            bus.publish_raw(topic, dl.value, key=dl.key, msg_id=msg_id)
            t = dead_letters_table
            with self._tx() as conn:
                conn.execute(
                    t.update()
                    .where(t.c.id == dl.id)
                    .values(
                        status=Status.REPLAYED.value,
                        replay_count=t.c.replay_count + 1,
                        replayed_at=_now(),
                    )
                )
            logger.info("dead letter %s replayed to %r (replay %s)", dl.id, topic, dl.replay_count + 1)
            report.outcomes.append(ReplayOutcome(dl.id, "replayed", topic))
        return report


def _to_dead_letter(row: Any) -> DeadLetter:
    return DeadLetter(
        id=row.id,
        reason=FailureReason(
            stage=Stage(row.stage),
            error_class=row.error_class,
            error_message=row.error_message,
            attempts=row.attempts,
            first_failure_at=_aware(row.first_failure_at),  # type: ignore[arg-type]
            last_failure_at=_aware(row.last_failure_at),  # type: ignore[arg-type]
            consumer_group=row.consumer_group,
            topic=row.topic,
            partition=row.partition,
            offset=row.offset,
        ),
        value=bytes(row.value),
        event_id=row.event_id,
        event_type=row.event_type,
        key=row.message_key,
        status=row.status,
        replay_count=row.replay_count,
        replayed_at=_aware(row.replayed_at),
    )
