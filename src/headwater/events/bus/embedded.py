"""The embedded bus: a durable, partitioned log in one SQLite file (WAL) in the platform folder.

No server to run: every process that opens the same file shares the topics, the messages and
the consumer groups' positions, so a consumer can be killed and restarted (or run in several
processes) and carry on where its group left off.

Layout (tables, all ``WITHOUT ROWID`` except ``topics``):

* ``topics(name, partitions)`` and ``heads(topic, part, next_off)`` -- the next offset of each
  partition;
* ``log(topic, part, off, key, value, event_id, ts)`` -- the messages (serialised envelopes);
* ``groups(grp, topic, options)`` -- subscription options fixed when the group was created;
* ``positions(grp, topic, part, fetched, committed)`` -- ``fetched``: next offset never yet
  delivered to the group; ``committed``: every offset below it is acked or given up;
* ``inflight(grp, topic, part, off, deliveries, visible_at)`` -- delivered, not yet acked.

A fetch first redelivers in-flight messages whose ``visible_at`` has passed (ack wait or
``nack`` delay elapsed; a message past ``max_deliveries`` is given up), then hands out new
messages from ``fetched`` onwards, across partitions. Acks delete ``inflight`` rows and move
``committed`` to the oldest message still in flight, so one stuck message never blocks the
ones behind it.

Durability: ``publish``/``publish_many`` return after their transaction has committed to the
write-ahead log. With the default ``synchronous=NORMAL`` (WAL mode) that commit is in the OS
when the call returns -- it survives this process being killed (SIGKILL included) but not a
power loss or kernel crash, which can lose the last transactions (never corrupt the file);
``synchronous="FULL"`` fsyncs the WAL on every commit and survives power loss too, at the cost
of one fsync per transaction. Publishing and acking in batches (``publish_many``,
``ack_many``) is what makes the log fast: one transaction per batch; a fetch copies the
batch's in-flight rows from the log range it read in one statement per partition, and an ack
deletes each run of consecutive offsets with one statement.

Synchronous API, safe to share between threads (each thread gets its own SQLite connection;
each consumer has its own).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from headwater.errors import InvalidInput
from headwater.events.bus.base import (
    Capabilities,
    Message,
    PublishResult,
    SubscriptionOptions,
    TopicInfo,
    default_key,
    partition_for,
    split_batch,
)
from headwater.events.bus.errors import (
    BusUnavailable,
    EventBusError,
    EventTooLarge,
    TopicNotFound,
)
from headwater.events.envelope import MAX_EVENT_BYTES

if TYPE_CHECKING:
    from headwater.events.envelope import Event

__all__ = ["EmbeddedBus", "EmbeddedConsumer"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS topics(
    name TEXT PRIMARY KEY, partitions INTEGER NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS heads(
    topic TEXT NOT NULL, part INTEGER NOT NULL, next_off INTEGER NOT NULL,
    PRIMARY KEY (topic, part)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS log(
    topic TEXT NOT NULL, part INTEGER NOT NULL, off INTEGER NOT NULL, key TEXT,
    value BLOB NOT NULL, event_id TEXT, ts REAL NOT NULL,
    PRIMARY KEY (topic, part, off)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS groups(
    grp TEXT NOT NULL, topic TEXT NOT NULL, options TEXT NOT NULL, created_at REAL NOT NULL,
    PRIMARY KEY (grp, topic)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS positions(
    grp TEXT NOT NULL, topic TEXT NOT NULL, part INTEGER NOT NULL,
    fetched INTEGER NOT NULL, committed INTEGER NOT NULL,
    PRIMARY KEY (grp, topic, part)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS inflight(
    grp TEXT NOT NULL, topic TEXT NOT NULL, part INTEGER NOT NULL, off INTEGER NOT NULL,
    deliveries INTEGER NOT NULL, visible_at REAL NOT NULL,
    PRIMARY KEY (grp, topic, part, off)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS inflight_visible ON inflight(grp, topic, visible_at);
"""

_POLL_S = 0.02
_LOCK_TIMEOUT_S = 30.0
_wakeups: dict[str, threading.Condition] = {}
_wakeups_lock = threading.Lock()


def _wakeup(path: str) -> threading.Condition:
    with _wakeups_lock:
        cond = _wakeups.get(path)
        if cond is None:
            cond = _wakeups[path] = threading.Condition()
        return cond


def _check_name(kind: str, name: str) -> None:
    if not isinstance(name, str) or not name or len(name) > 200:
        raise InvalidInput(f"{kind} name must be a non-empty string of at most 200 characters")


class _Conn:
    """One SQLite connection with explicit transactions and error translation."""

    def __init__(self, path: str, synchronous: str) -> None:
        try:
            self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute(f"PRAGMA synchronous={synchronous}")
            # Waiting for the write lock is done by _Tx with short sleeps: SQLite's own busy
            # handler backs off to 100 ms sleeps, which throttles a producer and a consumer
            # process that take turns many times a second.
            self.db.execute("PRAGMA busy_timeout=0")
        except sqlite3.Error as err:
            raise BusUnavailable(f"cannot open the embedded event log: {err}") from None

    def tx(self) -> _Tx:
        return _Tx(self.db)

    def close(self) -> None:
        self.db.close()


class _Tx:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        deadline = 0.0
        pause = 0.0002
        while True:
            try:
                self.db.execute("BEGIN IMMEDIATE")
                return self.db
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) and "busy" not in str(err):
                    raise BusUnavailable(f"embedded event log error: {err}") from None
                now = time.monotonic()
                if not deadline:
                    deadline = now + _LOCK_TIMEOUT_S
                elif now > deadline:
                    raise BusUnavailable(
                        f"embedded event log is locked by another writer for over {_LOCK_TIMEOUT_S:.0f}s"
                    ) from None
                time.sleep(pause)
                pause = min(pause * 2, 0.005)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            try:
                self.db.execute("COMMIT")
                return
            except sqlite3.Error as err:
                self.db.execute("ROLLBACK")
                raise BusUnavailable(f"embedded event log commit failed: {err}") from None
        try:
            self.db.execute("ROLLBACK")
        except sqlite3.Error:
            pass
        if isinstance(exc, sqlite3.OperationalError):
            raise BusUnavailable(f"embedded event log error: {exc}") from None
        if isinstance(exc, sqlite3.Error):
            raise EventBusError(f"embedded event log error: {exc}") from None


class EmbeddedBus:
    """A durable partitioned log in ``path`` (a SQLite file, created if missing).

    ``synchronous`` is SQLite's ``NORMAL`` (survives process crashes, the default) or
    ``FULL`` (also survives power loss). ``max_event_bytes`` caps one serialised event.
    """

    capabilities: Capabilities

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: str = "NORMAL",
        max_event_bytes: int = MAX_EVENT_BYTES,
    ) -> None:
        if synchronous.upper() not in ("NORMAL", "FULL"):
            raise InvalidInput("synchronous must be 'NORMAL' or 'FULL'")
        self.path = str(Path(path))
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._sync = synchronous.upper()
        self.capabilities = Capabilities(
            backend="embedded", publish_dedup=False, max_event_bytes=max_event_bytes
        )
        self._local = threading.local()
        self._conns: list[_Conn] = []
        self._lock = threading.Lock()
        self._partitions: dict[str, int] = {}
        self._wake = _wakeup(os.path.abspath(self.path))
        self._closed = False
        with self._conn().tx() as db:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)

    def __repr__(self) -> str:
        return f"EmbeddedBus(path={self.path!r})"

    def _conn(self) -> _Conn:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise EventBusError("the bus is closed")
            conn = self._local.conn = _Conn(self.path, self._sync)
            with self._lock:
                self._conns.append(conn)
        return conn

    # -- topics ------------------------------------------------------------------------------
    def create_topic(self, name: str, partitions: int = 1) -> TopicInfo:
        """Create ``name`` with ``partitions`` partitions (an existing topic is kept as is)."""
        _check_name("topic", name)
        if not isinstance(partitions, int) or not 1 <= partitions <= 1024:
            raise InvalidInput("partitions must be an integer from 1 to 1024")
        with self._conn().tx() as db:
            row = db.execute("SELECT partitions FROM topics WHERE name = ?", (name,)).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO topics(name, partitions, created_at) VALUES (?, ?, ?)",
                    (name, partitions, time.time()),
                )
                db.executemany(
                    "INSERT INTO heads(topic, part, next_off) VALUES (?, ?, 0)",
                    [(name, p) for p in range(partitions)],
                )
            else:
                partitions = row[0]
        self._partitions[name] = partitions
        return TopicInfo(name, partitions)

    def topics(self) -> list[TopicInfo]:
        """Every topic with its partition count and stored message count."""
        db = self._conn().db
        rows = db.execute(
            "SELECT t.name, t.partitions, COALESCE(SUM(h.next_off), 0) FROM topics t "
            "LEFT JOIN heads h ON h.topic = t.name GROUP BY t.name ORDER BY t.name"
        ).fetchall()
        return [TopicInfo(n, p, m) for n, p, m in rows]

    def delete_topic(self, name: str) -> None:
        """Drop the topic, its messages and its groups' positions."""
        with self._conn().tx() as db:
            if db.execute("SELECT 1 FROM topics WHERE name = ?", (name,)).fetchone() is None:
                raise TopicNotFound(f"no topic named {name!r}", topic=name)
            for table in ("log", "heads", "groups", "positions", "inflight"):
                db.execute(f"DELETE FROM {table} WHERE topic = ?", (name,))  # noqa: S608
            db.execute("DELETE FROM topics WHERE name = ?", (name,))
        self._partitions.pop(name, None)

    def _partition_count(self, db: sqlite3.Connection, topic: str) -> int:
        n = self._partitions.get(topic)
        if n is None:
            row = db.execute("SELECT partitions FROM topics WHERE name = ?", (topic,)).fetchone()
            if row is None:
                raise TopicNotFound(
                    f"no topic named {topic!r}; create it with create_topic()", topic=topic
                )
            n = self._partitions[topic] = row[0]
        return n

    # -- publish -----------------------------------------------------------------------------
    def publish(self, topic: str, event: Event, key: str | None = None) -> PublishResult:
        """Append one event (see :meth:`publish_many` for throughput)."""
        return self.publish_many(topic, [(event, default_key(event, key))])[0]

    def publish_many(
        self, topic: str, events: Iterable[Event | tuple[Event, str | None]]
    ) -> list[PublishResult]:
        """Append a batch in one transaction: all of it is stored, or none."""
        limit = self.capabilities.max_event_bytes
        pairs = split_batch(events)
        encoded = [(ev, key, ev.to_json(max_bytes=limit)) for ev, key in pairs]
        return self._append(topic, encoded)

    def publish_raw(
        self, topic: str, value: bytes, key: str | None = None, *, msg_id: str | None = None
    ) -> PublishResult:
        """Append bytes as they are (replays of dead letters, tests of malformed input;
        consumers dead-letter bytes that do not parse at the *deserialise* stage).
        ``msg_id`` is accepted for symmetry and ignored (no broker de-duplication here)."""
        if len(value) > self.capabilities.max_event_bytes:
            raise EventTooLarge(
                f"message is {len(value)} bytes; the limit is {self.capabilities.max_event_bytes}",
                size=len(value),
                limit=self.capabilities.max_event_bytes,
            )
        return self._append(topic, [(None, key, value)])[0]

    def _append(self, topic: str, encoded: list[tuple[Any, str | None, bytes]]) -> list[PublishResult]:
        if not encoded:
            return []
        conn = self._conn()
        now = time.time()
        out: list[PublishResult] = []
        rows = []
        with conn.tx() as db:
            n = self._partition_count(db, topic)
            heads = dict(db.execute("SELECT part, next_off FROM heads WHERE topic = ?", (topic,)))
            for i, (ev, key, raw) in enumerate(encoded):
                part = partition_for(key, n, i)
                off = heads[part]
                heads[part] = off + 1
                rows.append((topic, part, off, key, raw, ev.id if ev is not None else None, now))
                out.append(PublishResult(topic, part, off))
            db.executemany(
                "INSERT INTO log(topic, part, off, key, value, event_id, ts) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            db.executemany(
                "UPDATE heads SET next_off = ? WHERE topic = ? AND part = ?",
                [(off, topic, part) for part, off in heads.items()],
            )
        with self._wake:
            self._wake.notify_all()
        return out

    # -- consume -----------------------------------------------------------------------------
    def subscribe(
        self, topic: str, group: str, *, options: SubscriptionOptions | None = None
    ) -> EmbeddedConsumer:
        """Join ``group`` on ``topic`` (the group is created on first use). ``options``
        replace the group's stored options; None keeps them (defaults for a new group)."""
        _check_name("group", group)
        opts = options or SubscriptionOptions()
        if opts.max_deliveries < 1 or opts.ack_wait <= 0:
            raise InvalidInput("max_deliveries must be >= 1 and ack_wait > 0")
        if opts.start not in ("earliest", "latest"):
            raise InvalidInput("start must be 'earliest' or 'latest'")
        conn = _Conn(self.path, self._sync)
        try:
            with conn.tx() as db:
                n = self._partition_count(db, topic)
                row = db.execute(
                    "SELECT options FROM groups WHERE grp = ? AND topic = ?", (group, topic)
                ).fetchone()
                if row is None:
                    db.execute(
                        "INSERT INTO groups(grp, topic, options, created_at) VALUES (?, ?, ?, ?)",
                        (group, topic, json.dumps(_opts_to_json(opts)), time.time()),
                    )
                    heads = dict(
                        db.execute("SELECT part, next_off FROM heads WHERE topic = ?", (topic,))
                    )
                    db.executemany(
                        "INSERT INTO positions(grp, topic, part, fetched, committed) "
                        "VALUES (?, ?, ?, ?, ?)",
                        [
                            (group, topic, p, *(2 * [heads[p] if opts.start == "latest" else 0]))
                            for p in range(n)
                        ],
                    )
                elif options is None:
                    opts = _opts_from_json(json.loads(row[0]))
                else:
                    db.execute(
                        "UPDATE groups SET options = ? WHERE grp = ? AND topic = ?",
                        (json.dumps(_opts_to_json(opts)), group, topic),
                    )
        except BaseException:
            conn.close()
            raise
        return EmbeddedConsumer(self, conn, topic, group, n, opts)

    def close(self) -> None:
        """Close every connection this bus opened (consumers close their own)."""
        self._closed = True
        with self._lock:
            for conn in self._conns:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            self._conns.clear()
        self._local = threading.local()

    def __enter__(self) -> EmbeddedBus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EmbeddedConsumer:
    """A member of a consumer group of the embedded log (see :class:`EmbeddedBus`)."""

    def __init__(
        self,
        bus: EmbeddedBus,
        conn: _Conn,
        topic: str,
        group: str,
        partitions: int,
        options: SubscriptionOptions,
    ) -> None:
        self.bus = bus
        self.topic = topic
        self.group = group
        self.options = options
        self._conn = conn
        self._partitions = partitions
        self._rotate = 0
        self._closed = False

    def __repr__(self) -> str:
        return f"EmbeddedConsumer(topic={self.topic!r}, group={self.group!r})"

    def fetch(self, max_messages: int = 100, timeout: float = 1.0) -> list[Message]:
        """Up to ``max_messages`` deliveries; waits up to ``timeout`` s for the first."""
        if self._closed:
            raise EventBusError("the consumer is closed")
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            out = self._fetch_once(max(1, int(max_messages)))
            remaining = deadline - time.monotonic()
            if out or remaining <= 0:
                return out
            with self.bus._wake:
                self.bus._wake.wait(min(remaining, _POLL_S))

    def _fetch_once(self, limit: int) -> list[Message]:
        topic, group, opts = self.topic, self.group, self.options
        now = time.time()
        out: list[Message] = []
        with self._conn.tx() as db:
            due = db.execute(
                "SELECT part, off, deliveries FROM inflight WHERE grp = ? AND topic = ? "
                "AND visible_at <= ? ORDER BY visible_at LIMIT ?",
                (group, topic, now, limit),
            ).fetchall()
            if due:
                give_up = [(group, topic, p, o) for p, o, d in due if d >= opts.max_deliveries]
                again = [(p, o, d + 1) for p, o, d in due if d < opts.max_deliveries]
                if give_up:
                    db.executemany(
                        "DELETE FROM inflight WHERE grp = ? AND topic = ? AND part = ? AND off = ?",
                        give_up,
                    )
                    self._advance(db, {p for _, _, p, _ in give_up})
                if again:
                    db.executemany(
                        "UPDATE inflight SET deliveries = ?, visible_at = ? "
                        "WHERE grp = ? AND topic = ? AND part = ? AND off = ?",
                        [(d, now + opts.wait_for(d), group, topic, p, o) for p, o, d in again],
                    )
                    for p, o, d in again:
                        row = db.execute(
                            "SELECT key, value FROM log WHERE topic = ? AND part = ? AND off = ?",
                            (topic, p, o),
                        ).fetchone()
                        if row is not None:
                            out.append(Message(topic, p, o, row[1], row[0], d))
            remaining = limit - len(out)
            if remaining > 0:
                positions = dict(
                    db.execute(
                        "SELECT part, fetched FROM positions WHERE grp = ? AND topic = ?",
                        (group, topic),
                    )
                )
                first_wait = now + opts.wait_for(1)
                start = self._rotate
                self._rotate = (self._rotate + 1) % self._partitions
                for i in range(self._partitions):
                    if remaining <= 0:
                        break
                    part = (start + i) % self._partitions
                    first = positions.get(part, 0)
                    rows = db.execute(
                        "SELECT off, key, value FROM log WHERE topic = ? AND part = ? AND off >= ? "
                        "ORDER BY off LIMIT ?",
                        (topic, part, first, remaining),
                    ).fetchall()
                    if not rows:
                        continue
                    last = rows[-1][0]
                    out.extend([Message(topic, part, off, value, key) for off, key, value in rows])
                    # the in-flight rows straight from the log range just read (same transaction)
                    db.execute(
                        "INSERT OR REPLACE INTO inflight(grp, topic, part, off, deliveries, "
                        "visible_at) SELECT ?, topic, part, off, 1, ? FROM log "
                        "WHERE topic = ? AND part = ? AND off BETWEEN ? AND ?",
                        (group, first_wait, topic, part, first, last),
                    )
                    db.execute(
                        "UPDATE positions SET fetched = ? WHERE grp = ? AND topic = ? AND part = ?",
                        (last + 1, group, topic, part),
                    )
                    remaining -= len(rows)
        return out

    def _advance(self, db: sqlite3.Connection, parts: Iterable[int]) -> None:
        for part in parts:
            db.execute(
                "UPDATE positions SET committed = COALESCE((SELECT MIN(off) FROM inflight "
                "WHERE grp = ?1 AND topic = ?2 AND part = ?3), fetched) "
                "WHERE grp = ?1 AND topic = ?2 AND part = ?3",
                (self.group, self.topic, part),
            )

    def ack(self, message: Message) -> None:
        """Mark one message done for the group."""
        self.ack_many([message])

    def ack_many(self, messages: Sequence[Message]) -> None:
        """Mark a batch done in one transaction."""
        if not messages:
            return
        group, topic = self.group, self.topic
        ranges = _runs(messages)
        with self._conn.tx() as db:
            # one DELETE per run of consecutive offsets (a fetched batch is a few runs)
            db.executemany(
                "DELETE FROM inflight WHERE grp = ? AND topic = ? AND part = ? "
                "AND off BETWEEN ? AND ?",
                [(group, topic, part, lo, hi) for part, lo, hi in ranges],
            )
            self._advance(db, {part for part, _, _ in ranges})

    def nack(self, message: Message, delay: float = 0.0) -> None:
        """Make the message visible again after ``delay`` seconds."""
        with self._conn.tx() as db:
            db.execute(
                "UPDATE inflight SET visible_at = ? WHERE grp = ? AND topic = ? AND part = ? "
                "AND off = ?",
                (time.time() + max(delay, 0.0), self.group, self.topic, message.partition, message.offset),
            )

    def committed(self) -> dict[int, int]:
        """Partition -> committed offset."""
        return dict(
            self._conn.db.execute(
                "SELECT part, committed FROM positions WHERE grp = ? AND topic = ? ORDER BY part",
                (self.group, self.topic),
            )
        )

    def lag(self) -> dict[int, int]:
        """Partition -> messages published but not acked (or given up) by the group."""
        rows = self._conn.db.execute(
            "SELECT h.part, h.next_off - p.fetched + (SELECT COUNT(*) FROM inflight i "
            "WHERE i.grp = p.grp AND i.topic = p.topic AND i.part = p.part) "
            "FROM heads h JOIN positions p ON p.topic = h.topic AND p.part = h.part "
            "WHERE p.grp = ? AND h.topic = ? ORDER BY h.part",
            (self.group, self.topic),
        )
        return dict(rows)

    def close(self) -> None:
        """Leave the group (in-flight messages are redelivered after their ack wait)."""
        if not self._closed:
            self._closed = True
            self._conn.close()

    def __enter__(self) -> EmbeddedConsumer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _runs(messages: Sequence[Message]) -> list[tuple[int, int, int]]:
    """``(partition, first, last)`` runs of consecutive offsets covering exactly ``messages``."""
    offsets: dict[int, list[int]] = {}
    for m in messages:
        offs = offsets.get(m.partition)
        if offs is None:
            offsets[m.partition] = [m.offset]
        else:
            offs.append(m.offset)
    out = []
    for part, offs in offsets.items():
        offs.sort()
        lo = hi = offs[0]
        for off in offs[1:]:
            if off > hi + 1:
                out.append((part, lo, hi))
                lo = off
            hi = off
        out.append((part, lo, hi))
    return out


def _opts_to_json(opts: SubscriptionOptions) -> dict[str, Any]:
    return {
        "max_deliveries": opts.max_deliveries,
        "ack_wait": opts.ack_wait,
        "backoff": list(opts.backoff),
        "start": opts.start,
    }


def _opts_from_json(doc: dict[str, Any]) -> SubscriptionOptions:
    return SubscriptionOptions(
        max_deliveries=int(doc["max_deliveries"]),
        ack_wait=float(doc["ack_wait"]),
        backoff=tuple(doc.get("backoff") or ()),
        start=doc.get("start", "earliest"),
    )
