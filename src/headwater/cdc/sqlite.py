"""SQLite change data capture: triggers into a change table, drained in commit order.

SQLite has no write-ahead-log decoding, so :class:`SQLiteCDC` captures with triggers:

1. **Setup.** ``_hw_changes`` (``seq INTEGER PRIMARY KEY AUTOINCREMENT``, ``tbl``, ``op``
   ``c``/``u``/``d``, ``before``/``after`` as JSON objects, ``txid``, ``ts_ms``) and one
   ``AFTER INSERT/UPDATE/DELETE`` trigger per captured table (``_hw_cdc_<table>_<op>``) that
   appends the row image. SQLite has a single writer and the triggers run inside the writing
   transaction, so ``seq`` order is commit order and a rolled-back write leaves no change.
   (Triggers cannot see a transaction id; ``txid`` is NULL unless the writer fills it.)
2. **Snapshot.** One read transaction (WAL mode: a consistent view) reads ``max(seq)`` and then
   every captured table: those rows are published as ``op = "r"`` at position ``max(seq)``, and
   changes with a larger ``seq`` follow. Progress is kept in ``_hw_cdc_state``; an interrupted
   snapshot is taken again (the sink's reconciliation removes rows the new one lacks).
3. **Streaming.** Rows after the last published ``seq`` are read in order, turned into the
   same Debezium envelope as :class:`~headwater.cdc.postgres.PostgresCDC` (``source.connector
   = "sqlite"``, ``source.lsn = seq``, ``pos = 0``) and published per topic
   ``<topic_prefix>.main.<table>`` with the primary key as the key. **Only after the bus has
   acknowledged** them are the rows deleted from ``_hw_changes`` (never lose; after a crash they
   are read again and sinks de-duplicate by (``seq``, position)).
4. **Schema changes.** ``PRAGMA schema_version`` is watched; a captured table whose columns
   changed gets its row schema registered (:mod:`headwater.cdc.schemas`) and its triggers
   rebuilt; an incompatible shape halts the table (its changes stay in ``_hw_changes``). SQLite
   refuses to drop or rename a column that the capture triggers reference.
5. **Erasure.** Pending rows hold full before/after images, so :func:`subject_changes` finds
   and prunes a data subject's rows (``headwater.erasure`` calls it after erasing the source,
   whose delete is captured too): the subject's changes, its erasure included, are never shipped.

One connector per database file: the change table is shared by every captured table.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from headwater.cdc._events import encode, event_json, make_event
from headwater.cdc.base import CHANGE_TYPE, SNAPSHOT_TYPE, StatusFileWriter, message_key
from headwater.cdc.errors import CDCError, CDCUnavailable
from headwater.cdc.schemas import SchemaTracker, json_type_of_sqlite

__all__ = ["CHANGE_TABLE", "STATE_TABLE", "SQLiteCDC", "has_change_table", "subject_changes"]

log = logging.getLogger("headwater.cdc")

CHANGE_TABLE = "_hw_changes"
"""The change table the capture triggers append to."""
STATE_TABLE = "_hw_cdc_state"
"""Snapshot progress of each connector name."""
_TRIGGER_PREFIX = "_hw_cdc_"


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _bare(table: str) -> str:
    schema, dot, name = table.partition(".")
    if dot and schema != "main":
        raise CDCError(f"SQLite CDC captures tables of the main database, not {table!r}", table=table)
    return name if dot else schema


class _Table:
    """Shape of one captured table."""

    __slots__ = ("blobs", "bools", "columns", "ext", "key", "name", "source_json", "topic")

    def __init__(self, name: str, columns: list[tuple[str, str]], key: list[str], topic: str) -> None:
        self.name = name
        self.columns = columns  # (name, declared type)
        self.key = key
        self.topic = topic
        self.bools = [c for c, d in columns if "BOOL" in d.upper()]
        self.blobs = [c for c, d in columns if "BLOB" in d.upper()]
        self.ext = {"pk": ",".join(key)} if key else {}
        self.source_json = ""

    def shape(self) -> list[tuple[str, str | None]]:
        return [(c, json_type_of_sqlite(d)) for c, d in self.columns]


class _Stats:
    __slots__ = ("counts", "last_seq", "skipped", "snapshot_rows")

    def __init__(self) -> None:
        self.counts = {"c": 0, "u": 0, "d": 0, "r": 0}
        self.last_seq: int | None = None
        self.snapshot_rows = 0
        self.skipped = 0


class SQLiteCDC(StatusFileWriter):
    """Streams a SQLite database's changes to ``bus`` through triggers and ``_hw_changes``.

    ``path`` is the database file (or a :class:`~headwater.stores.sqlite.SQLiteStore`).
    ``tables`` are table names (``main.table`` or ``table``); None captures every user table.
    ``store`` names the source in topics and events (``topic_prefix`` defaults to
    ``cdc.<store>``); ``name`` identifies the connector's snapshot state. ``registry``,
    ``on_alert`` and ``classify`` are as for :class:`~headwater.cdc.schemas.SchemaTracker`;
    ``status_file`` receives :meth:`status` as JSON while running. ``reset=True`` removes the
    capture (triggers, pending changes, state) and starts again from a fresh snapshot. ``seal``
    gives the sealing plan of a topic (see :attr:`seal`); publish through a signing bus
    (:meth:`~headwater.events.provenance.Provenance.signing_bus`) so that pipelines accept the
    events (``CDCPipeline`` does both).
    """

    def __init__(
        self,
        path: Any,
        *,
        bus: Any,
        tables: Sequence[str] | None = None,
        store: str = "app",
        name: str = "headwater",
        topic_prefix: str | None = None,
        source: str | None = None,
        batch_size: int = 5000,
        poll_interval: float = 0.05,
        snapshot: bool = True,
        reset: bool = False,
        registry: Any = None,
        on_alert: Callable[[dict[str, Any]], None] | None = None,
        classify: Callable[[str], Mapping[str, str]] | None = None,
        status_file: str | None = None,
        seal: Callable[[str], Any] | None = None,
    ) -> None:
        self.path = Path(getattr(path, "path", path))
        self.seal = seal
        """``seal(topic)`` -> the :class:`~headwater.events.sealing.RowSeal` of the topic's table
        (its PII columns sealed under their subject's key), or None: nothing to seal."""
        self.bus = bus
        self.tables = [_bare(t) for t in tables] if tables is not None else None
        self.store = store
        self.name = name
        self.topic_prefix = topic_prefix or f"cdc.{store}"
        self.source = source or f"/headwater/cdc/{store}"
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.snapshot = snapshot
        self.reset = reset
        self.schemas = SchemaTracker(registry, on_alert=on_alert, classify=classify)
        """Row schemas in the registry; tables halted by an incompatible shape."""
        self.status_file = status_file
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._tables: dict[str, _Table] = {}
        self._stats: dict[str, _Stats] = {}
        self._topics: set[str] = set()
        self._published = 0
        self._last_seq = 0
        self._state = "stopped"
        self._error: str | None = None
        self._schema_version: int | None = None
        self._status_written = 0.0
        self._con: sqlite3.Connection | None = None
        self._uncaptured: list[str] = []

    def __repr__(self) -> str:
        return f"SQLiteCDC(path={str(self.path)!r}, store={self.store!r}, name={self.name!r})"

    # -- connection ----------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        if self._con is None:
            if not self.path.exists():
                raise CDCError(f"SQLite database {self.path} does not exist")
            try:
                con = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
                con.execute("PRAGMA journal_mode=WAL")
            except sqlite3.Error as err:
                raise CDCUnavailable(f"cannot open SQLite database {self.path}: {err}") from None
            self._con = con
        return self._con

    def _close(self) -> None:
        if self._con is not None:
            with contextlib.suppress(sqlite3.Error):
                self._con.close()
            self._con = None

    @contextlib.contextmanager
    def _write(self) -> Any:
        con = self._connect()
        con.execute("BEGIN IMMEDIATE")
        try:
            yield con
        except BaseException:
            con.rollback()
            raise
        con.commit()

    # -- setup ---------------------------------------------------------------------------------
    def topic_of(self, table: str) -> str:
        """``<topic_prefix>.main.<table>``."""
        return f"{self.topic_prefix}.main.{_bare(table)}"

    def _resolve_tables(self, con: sqlite3.Connection) -> list[str]:
        if self.tables is not None:
            return list(self.tables)
        rows = con.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "
            "AND name NOT LIKE 'hw\\_%' ESCAPE '\\' AND name NOT LIKE '\\_hw\\_%' ESCAPE '\\' ORDER BY name"
        ).fetchall()
        return [r[0] for r in rows]

    def _introspect(self, con: sqlite3.Connection, table: str) -> _Table:
        info = con.execute(f"PRAGMA table_info({_q(table)})").fetchall()
        if not info:
            raise CDCError(f"table {table!r} does not exist in {self.path.name}", table=table)
        columns = [(r[1], r[2] or "") for r in info]
        key = [r[1] for r in sorted((r for r in info if r[5]), key=lambda r: r[5])]
        t = _Table(table, columns, key, self.topic_of(table))
        t.source_json = (f'{{"connector":"sqlite","name":{encode(self.store)},"db":{encode(self.path.name)},'
                         f'"schema":"main","table":{encode(table)},')
        return t

    def _trigger_sql(self, t: _Table) -> list[str]:
        def image(ref: str) -> str:
            parts = []
            for c, _ in t.columns:
                v = f"{ref}.{_q(c)}"
                parts.append(f"{_lit(c)}, CASE WHEN typeof({v}) = 'blob' THEN hex({v}) ELSE {v} END")
            return f"json_object({', '.join(parts)})"

        now = "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)"
        ins = f"INSERT INTO {CHANGE_TABLE} (tbl, op, before, after, ts_ms) VALUES ({_lit(t.name)}, "
        out = []
        for op, event, before, after in (("c", "INSERT", "NULL", image("NEW")),
                                         ("u", "UPDATE", image("OLD"), image("NEW")),
                                         ("d", "DELETE", image("OLD"), "NULL")):
            trig = _q(f"{_TRIGGER_PREFIX}{t.name}_{op}")
            out.append(f"DROP TRIGGER IF EXISTS {trig}")
            out.append(f"CREATE TRIGGER {trig} AFTER {event} ON {_q(t.name)} BEGIN "
                       f"{ins}'{op}', {before}, {after}, {now}); END")
        return out

    def ensure_capture(self) -> list[str]:
        """Create the change table and (re)build every captured table's triggers; returns the
        captured tables."""
        con = self._connect()
        with self._write():
            con.execute(f"CREATE TABLE IF NOT EXISTS {CHANGE_TABLE} (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
                        "tbl TEXT NOT NULL, op TEXT NOT NULL, before TEXT, after TEXT, txid INTEGER, "
                        "ts_ms INTEGER NOT NULL)")
            con.execute(f"CREATE TABLE IF NOT EXISTS {STATE_TABLE} (name TEXT PRIMARY KEY, snapshot_seq INTEGER, "
                        "snapshot_done INTEGER NOT NULL DEFAULT 0)")
            tables = self._resolve_tables(con)
            if not tables:
                raise CDCError(f"no tables to capture in {self.path.name}")
            triggers = {r[0] for r in con.execute(
                "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE '\\_hw\\_cdc\\_%' ESCAPE '\\'")}
            # Tables without their triggers were never captured, or were dropped and created again.
            self._uncaptured = [n for n in tables
                                if not all(f"{_TRIGGER_PREFIX}{n}_{op}" in triggers for op in "cud")]
            for name in tables:
                t = self._introspect(con, name)
                self._tables[name] = t
                for stmt in self._trigger_sql(t):
                    con.execute(stmt)
        self._schema_version = con.execute("PRAGMA schema_version").fetchone()[0]
        for t in self._tables.values():
            self._stats.setdefault(t.name, _Stats())
            self._topic(t)
        return tables

    def drop(self) -> None:
        """Remove the triggers, pending changes and this connector's state (stop it first).

        The (empty) change table stays: its sequence never goes back, so positions taken after
        a reset still sort after everything a replica has applied."""
        con = self._connect()
        with self._write():
            for (trig,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE "
                                       "'\\_hw\\_cdc\\_%' ESCAPE '\\'").fetchall():
                con.execute(f"DROP TRIGGER IF EXISTS {_q(trig)}")
            for table, where in ((CHANGE_TABLE, ""), (STATE_TABLE, " WHERE name = ?")):
                if con.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (table,)).fetchone():
                    con.execute(f"DELETE FROM {table}{where}", (self.name,) if where else ())
        self._close()

    def _snapshot_point(self) -> int:
        """A fresh position for a snapshot: above every change captured so far (even deleted
        ones), so the sink never takes a new snapshot for an old one."""
        con = self._connect()
        with self._write():
            con.execute(f"INSERT INTO {CHANGE_TABLE} (tbl, op, ts_ms) VALUES ('', 'm', 0)")
            con.execute(f"DELETE FROM {CHANGE_TABLE} WHERE seq = last_insert_rowid()")
            return int(con.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (CHANGE_TABLE,)).fetchone()[0])

    # -- inspection ----------------------------------------------------------------------------
    def backlog(self) -> dict[str, int]:
        """Changes captured but not yet acknowledged by the bus, per table."""
        try:
            con = self._connect()
            rows = con.execute(f"SELECT tbl, count(*) FROM {CHANGE_TABLE} GROUP BY tbl").fetchall()
        except (sqlite3.Error, CDCError):
            return {}
        return {r[0]: int(r[1]) for r in rows}

    def status(self) -> dict[str, Any]:
        """State, error, events, per-table counts and backlog, halted tables."""
        backlog = self.backlog()
        halted = self.schemas.halted
        with self._lock:
            tables = {
                f"main.{name}": {"topic": self.topic_of(name), **s.counts, "snapshot_rows": s.snapshot_rows,
                                 "last_seq": s.last_seq, "skipped": s.skipped, "backlog": backlog.get(name, 0),
                                 "schema_version": self.schemas.versions.get(f"main.{name}"),
                                 "state": "halted" if f"main.{name}" in halted else "streaming",
                                 "error": halted[f"main.{name}"].error if f"main.{name}" in halted else None}
                for name, s in self._stats.items()
            }
        return {
            "connector": "sqlite",
            "store": self.store,
            "name": self.name,
            "database": str(self.path),
            "state": self._state,
            "error": self._error,
            "events": self._published,
            "last_seq": self._last_seq,
            "backlog": sum(backlog.values()),
            "tables": tables,
            "halted": {name: h.to_dict() for name, h in halted.items()},
        }

    # -- running -------------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask :meth:`run` to publish what it holds, confirm it and return (thread-safe)."""
        self._stop.set()

    def run(self, max_events: int | None = None, idle_timeout: float | None = None) -> int:
        """Set up capture, snapshot if needed, then stream until :meth:`stop`, ``max_events``
        events or ``idle_timeout`` seconds without a change; returns events published."""
        self._stop.clear()
        self._state = "starting"
        self._error = None
        start = self._published
        try:
            if self.reset:
                self.drop()
                self.reset = False
            self.ensure_capture()
            for t in self._tables.values():
                self._observe(t)
            con = self._connect()
            row = con.execute(f"SELECT snapshot_seq, snapshot_done FROM {STATE_TABLE} WHERE name = ?",
                              (self.name,)).fetchone()
            resume = row is not None and bool(row[1])
            if not resume:
                if self.snapshot:
                    self._state = "snapshot"
                    self._take_snapshot()
                else:
                    seq = self._snapshot_point()
                    with self._write():
                        con.execute(f"INSERT OR REPLACE INTO {STATE_TABLE} VALUES (?, ?, 1)", (self.name, seq))
                row = con.execute(f"SELECT snapshot_seq, snapshot_done FROM {STATE_TABLE} WHERE name = ?",
                                  (self.name,)).fetchone()
            self._last_seq = int(row[0] or 0)
            if resume and self._uncaptured and self.snapshot:
                self._resnapshot([self._tables[n] for n in self._uncaptured])
            self._state = "streaming"
            self._stream(max_events, idle_timeout, start)
            self._state = "stopped"
        except sqlite3.Error as err:
            self._state = "failed"
            self._error = str(err)
            raise CDCError(f"SQLite CDC on {self.path.name} failed: {err}") from None
        except BaseException as err:
            self._state = "failed"
            self._error = str(err)
            raise
        finally:
            self._write_status(force=True)
            self._close()
        return self._published - start

    def _observe(self, t: _Table) -> bool:
        ok = self.schemas.observe(f"main.{t.name}", t.topic, t.shape(), t.key)
        if not ok:
            self._write_status(force=True)
        return ok

    def _topic(self, t: _Table) -> str:
        if t.topic not in self._topics:
            self.bus.create_topic(t.topic, partitions=1)
            self._topics.add(t.topic)
        return t.topic

    def _take_snapshot(self) -> None:
        con = self._connect()
        ts_ms = int(time.time() * 1000)
        cp = self._snapshot_point()
        con.execute("BEGIN")  # one read transaction: every change up to cp is in the tables
        try:
            for t in self._tables.values():
                if self.schemas.is_halted(f"main.{t.name}"):
                    self.schemas.halted[f"main.{t.name}"].error += (
                        " (its snapshot was not taken: after settling the schema, restart with reset=True)")
                    continue
                self._snapshot_table(con, t, cp, ts_ms)
        finally:
            con.rollback()
        with self._write():
            con.execute(f"INSERT OR REPLACE INTO {STATE_TABLE} VALUES (?, ?, 1)", (self.name, cp))
            con.execute(f"DELETE FROM {CHANGE_TABLE} WHERE seq <= ?", (cp,))  # inside the snapshot

    def _snapshot_table(self, con: sqlite3.Connection, t: _Table, cp: int, ts_ms: int) -> None:
        from headwater.events.envelope import Event

        cols = [c for c, _ in t.columns]
        cur = con.execute(f"SELECT {', '.join(_q(c) for c in cols)} FROM {_q(t.name)}")
        ext = {"pk": ",".join(t.key)} if t.key else {}
        batch: list[tuple[Any, str | None]] = []
        n = 0
        while True:
            rows = cur.fetchmany(self.batch_size)
            if not rows:
                break
            plan = self.seal(t.topic) if self.seal is not None else None
            for row in rows:
                after = self._values(t, dict(zip(cols, row, strict=True)))
                data, key = self._envelope(t, "r", None, after, cp, None, ts_ms, ts_ms, snapshot="true", pos=n)
                if plan is not None:
                    data["after"] = plan.seal(after)
                    key = plan.key(key)
                batch.append((Event(type=CHANGE_TYPE, source=self.source, data=data, id=f"{self.name}:{cp}:0:{n}",
                                    subject=key, extensions=ext), key))
                n += 1
            self._publish_changes(t.topic, batch)
            batch = []
        marker = {"snapshot": "completed", "lsn": cp, "rows": n,
                  "source": {"connector": "sqlite", "name": self.store, "db": self.path.name, "schema": "main",
                             "table": t.name, "lsn": cp, "snapshot": "last"}}
        self._publish_changes(t.topic, [(Event(type=SNAPSHOT_TYPE, source=self.source, data=marker,
                                               id=f"{self.name}:{cp}:snapshot:{t.name}",
                                               subject=f"main.{t.name}"), None)])
        with self._lock:
            s = self._stats[t.name]
            s.counts["r"] += n
            s.snapshot_rows = n
            s.last_seq = cp
        self._published += n + 1

    @staticmethod
    def _values(t: _Table, row: dict[str, Any]) -> dict[str, Any]:
        for c in t.bools:
            v = row.get(c)
            if isinstance(v, int):
                row[c] = bool(v)
        for c in t.blobs:
            v = row.get(c)
            if isinstance(v, bytes | bytearray):
                row[c] = base64.b64encode(v).decode("ascii")
            elif isinstance(v, str):
                with contextlib.suppress(ValueError):
                    row[c] = base64.b64encode(bytes.fromhex(v)).decode("ascii")
        for c, v in row.items():
            if isinstance(v, bytes | bytearray):  # a blob in a column not declared BLOB
                row[c] = base64.b64encode(v).decode("ascii")
        return row

    def _envelope(self, t: _Table, op: str, before: dict[str, Any] | None, after: dict[str, Any] | None,
                  seq: int, txid: int | None, commit_ms: int, now_ms: int, *, snapshot: str = "false",
                  pos: int = 0) -> tuple[dict[str, Any], str | None]:
        key = message_key(after if after is not None else before, t.key)
        data = {
            "before": before,
            "after": after,
            "source": {"connector": "sqlite", "name": self.store, "db": self.path.name, "schema": "main",
                       "table": t.name, "lsn": seq, "txId": txid, "ts_ms": commit_ms, "snapshot": snapshot,
                       "pos": pos},
            "op": op,
            "ts_ms": now_ms,
        }
        return data, key

    def _publish_changes(self, topic: str, items: list[tuple[Any, str | None]]) -> None:
        """Publish one topic's batch of change events to the bus, retrying while it is down
        (nothing is deleted from the change table before this returns)."""
        # telemetry: one publish span, traceparent stamped into the events
        from headwater.events.bus.errors import BusUnavailable
        from headwater.telemetry.messaging import publish_many

        delay = 0.1
        while True:
            try:
                publish_many(self.bus, topic, items)
                return
            except BusUnavailable:
                if self._stop.is_set():
                    raise
                log.warning("bus unavailable; retrying publish to %s in %.1fs", topic, delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _check_schema(self) -> None:
        con = self._connect()
        version = con.execute("PRAGMA schema_version").fetchone()[0]
        if version == self._schema_version:
            return
        triggers = {r[0] for r in con.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE '\\_hw\\_cdc\\_%' ESCAPE '\\'")}
        changed: list[_Table] = []
        recreated: list[_Table] = []
        for name, old in list(self._tables.items()):
            try:
                t = self._introspect(con, name)
            except CDCError:
                continue  # dropped: its triggers went with it
            if not all(f"{_TRIGGER_PREFIX}{name}_{op}" in triggers for op in "cud"):
                recreated.append(t)  # dropped and created again (CREATE OR REPLACE): capture was lost
            elif t.columns != old.columns or t.key != old.key:
                changed.append(t)
        for t in changed + recreated:
            if self._observe(t):
                with self._write():
                    for stmt in self._trigger_sql(t):
                        con.execute(stmt)
                self._tables[t.name] = t
                log.info("SQLite CDC: %s changed; triggers rebuilt", t.name)
        if recreated:
            self._resnapshot(recreated)
        self._schema_version = con.execute("PRAGMA schema_version").fetchone()[0]

    def _resnapshot(self, tables: list[_Table]) -> None:
        """Snapshot tables whose changes were not captured for a while (recreated, or newly
        captured): what they received then is only in the tables. The end-of-snapshot marker
        makes the sink drop replica rows the table no longer has."""
        con = self._connect()
        cp = self._snapshot_point()
        con.execute("BEGIN")
        try:
            for t in tables:
                if not self.schemas.is_halted(f"main.{t.name}"):
                    log.warning("SQLite CDC: %s was not captured for a while; taking a new snapshot of it", t.name)
                    self._snapshot_table(con, t, cp, int(time.time() * 1000))
        finally:
            con.rollback()

    def _stream(self, max_events: int | None, idle_timeout: float | None, start: int) -> None:

        con = self._connect()
        last_change = time.monotonic()
        while True:
            rows = con.execute(f"SELECT seq, tbl, op, before, after, txid, ts_ms FROM {CHANGE_TABLE} "
                               "WHERE seq > ? ORDER BY seq LIMIT ?", (self._last_seq, self.batch_size)).fetchall()
            if not rows:
                now = time.monotonic()
                self._write_status()
                if (self._stop.is_set()
                        or (max_events is not None and self._published - start >= max_events)
                        or (idle_timeout is not None and now - last_change >= idle_timeout)):
                    return
                self._check_schema()
                self._stop.wait(self.poll_interval)
                continue
            last_change = time.monotonic()
            now_ms = int(time.time() * 1000)
            by_topic: dict[str, list[tuple[Any, str | None]]] = {}
            halted = self.schemas.halted
            published = 0
            plans: dict[str, Any] = {}
            for seq, tbl, op, before, after, txid, ts_ms in rows:
                t = self._tables.get(tbl)
                if t is None:
                    continue  # no longer captured
                if halted and f"main.{tbl}" in halted:
                    self._stats[tbl].skipped += 1
                    continue
                b = self._values(t, json.loads(before)) if before is not None else None
                a = self._values(t, json.loads(after)) if after is not None else None
                data, key = self._envelope(t, op, b, a, seq, txid, ts_ms, now_ms)
                if self.seal is not None:
                    if t.topic not in plans:
                        plans[t.topic] = self.seal(t.topic)
                    plan = plans[t.topic]
                    if plan is not None:  # PII columns sealed under their subject's key
                        b = data["before"] = plan.seal(b)
                        a = data["after"] = plan.seal(a)
                        before, after = encode(b), encode(a)
                        key = plan.key(key)
                if t.bools or t.blobs:  # values were converted: encode them again
                    before, after = encode(b), encode(a)
                eid = f"{self.name}:{seq}:1:0"
                data_json = (f'{{"before":{before or "null"},"after":{after or "null"},"source":{t.source_json}'
                             f'"lsn":{seq},"txId":{encode(txid)},"ts_ms":{ts_ms},"snapshot":"false","pos":0}},'
                             f'"op":"{op}","ts_ms":{now_ms}}}')
                when = datetime.fromtimestamp(ts_ms / 1000, UTC)
                raw = event_json(CHANGE_TYPE, self.source, eid, key, when.isoformat(), t.ext, data_json)
                by_topic.setdefault(t.topic, []).append(
                    (make_event(CHANGE_TYPE, self.source, data, eid, key, when, t.ext, raw), key))
                s = self._stats[tbl]
                s.counts[op] += 1
                s.last_seq = seq
                published += 1
            for topic, items in by_topic.items():
                self._publish_changes(topic, items)
            last = rows[-1][0]
            # Acknowledged by the bus: now the rows may go (a halted table's stay for later).
            with self._write():
                if halted:
                    marks = ", ".join("?" * len(halted))
                    con.execute(f"DELETE FROM {CHANGE_TABLE} WHERE seq <= ? AND tbl NOT IN ({marks})",
                                (last, *(h.split(".", 1)[1] for h in halted)))
                else:
                    con.execute(f"DELETE FROM {CHANGE_TABLE} WHERE seq <= ?", (last,))
            self._last_seq = last
            self._published += published
            if max_events is not None and self._published - start >= max_events:
                return


# -- erasure: a data subject's rows in the change table ------------------------------------------
def has_change_table(path: str | Path) -> bool:
    """Whether the SQLite database at ``path`` has a capture change table."""
    path = Path(path)
    if not path.exists():
        return False
    try:
        with contextlib.closing(sqlite3.connect(path, timeout=10.0)) as con:
            return con.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                               (CHANGE_TABLE,)).fetchone() is not None
    except sqlite3.Error as err:
        raise CDCUnavailable(f"cannot open SQLite database {path.name}: {err}") from None


def _subject_where(matches: Sequence[tuple[str, str]], value: str) -> tuple[str, list[Any]]:
    """``(tbl = ? AND (before.col IN (...) OR after.col IN (...))) OR ...`` for the subject."""
    candidates: list[Any] = [value]
    with contextlib.suppress(ValueError):
        candidates.append(int(value))
    with contextlib.suppress(ValueError):
        f = float(value)
        if f not in candidates:
            candidates.append(f)
    marks = ", ".join("?" * len(candidates))
    clauses, params = [], []
    for table, column in matches:
        path = '$."' + column.replace("\\", "\\\\").replace('"', '\\"') + '"'
        clauses.append(f"(lower(tbl) = lower(?) AND (json_extract(before, ?) IN ({marks}) "
                       f"OR json_extract(after, ?) IN ({marks})))")
        params += [table, path, *candidates, path, *candidates]
    return " OR ".join(clauses), params


def subject_changes(path: str | Path, matches: Sequence[tuple[str, str]], value: str, *,
                    delete: bool = False) -> int:
    """Rows of the change table whose before or after image holds ``value`` in one of the
    ``(table, column)`` pairs: counted, or deleted when ``delete`` (erasure).

    The change table holds full row images until the bus has acknowledged them, and the
    erasure's own delete of the source row adds one more (its before image): erasure prunes
    them all, so the delete is never shipped with the subject's data. Deletes run with
    ``secure_delete`` on, then the WAL is checkpointed and truncated (the erasure's storage
    step vacuums the file afterwards). A value compares as text and as a number (``7`` and
    ``'7'`` are one subject, as in the capture's JSON)."""
    path = Path(path)
    if not matches or not has_change_table(path):
        return 0
    where, params = _subject_where(matches, value)
    try:
        with contextlib.closing(sqlite3.connect(path, timeout=30.0, isolation_level=None)) as con:
            if not delete:
                return int(con.execute(f"SELECT count(*) FROM {CHANGE_TABLE} WHERE {where}", params).fetchone()[0])
            con.execute("PRAGMA secure_delete=ON")
            con.execute("BEGIN IMMEDIATE")
            try:
                n = con.execute(f"DELETE FROM {CHANGE_TABLE} WHERE {where}", params).rowcount
            except BaseException:
                con.rollback()
                raise
            con.commit()
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            return int(n or 0)
    except sqlite3.Error as err:
        raise CDCUnavailable(f"change table of {path.name}: {err}") from None
