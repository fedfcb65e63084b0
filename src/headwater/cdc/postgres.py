"""Postgres change data capture over logical replication (``pgoutput``, protocol v1).

:class:`PostgresCDC` owns one publication and one logical slot:

1. **Setup.** The publication is created (or its table list set) for the given tables, else
   every user table of the database. The slot is created with ``EXPORT_SNAPSHOT`` on a
   replication connection; a second connection imports that snapshot (``SET TRANSACTION
   SNAPSHOT``) and reads every table, so the snapshot rows (op ``r``) and the stream that
   follows meet exactly at the slot's consistent point: no change is missed or seen twice.
   Snapshot progress lives in ``public.headwater_cdc_state``; a crash during the snapshot
   drops the slot and starts over (the sink's snapshot reconciliation removes rows that the
   second snapshot no longer has).
2. **Streaming.** ``START_REPLICATION`` from the slot's confirmed position. Each transaction is
   buffered until its Commit, then queued; the queue is published (``publish_many`` per topic)
   when it reaches ``batch_size`` events, after ``flush_interval`` seconds, or as soon as the
   stream is caught up. **Only after the bus has acknowledged** does the connector send
   ``flush_lsn`` = the end LSN of the last published transaction (never lose). After a crash
   the server resends everything after that position; events carry deterministic ids and
   (LSN, position) so sinks de-duplicate (:class:`~headwater.cdc.sink.ReplicaSink`).
3. **Heartbeats.** When idle the connector writes ``pg_logical_emit_message`` every
   ``heartbeat_interval`` seconds; the walsender answers with a keepalive carrying its
   position, which is confirmed (nothing is in flight), so an idle slot keeps advancing and
   retains no WAL.

Events: a Debezium envelope as the CloudEvents ``data``::

    {"before": {...} | null, "after": {...} | null, "op": "c" | "u" | "d" | "r" | "t",
     "ts_ms": <publish time>, "source": {"connector": "postgresql", "name": <store>,
     "db", "schema", "table", "lsn": <commit LSN>, "txId", "ts_ms": <commit time>,
     "snapshot": "true" | "last" | "false", "pos": <position in transaction>},
     "transaction": {"id": "<xid>:<lsn>", "total_order": n, "event_count": N}}

published to ``<topic_prefix>.<schema>.<table>`` (one partition, so a table's changes stay in
commit order) with the primary key as the message key and the subject (one value as text,
several as a JSON array); the ``pk`` extension attribute names the key columns (comma-joined).
``type`` is ``io.headwater.cdc.change``; the id is
``<slot>:<lsn hex>:<phase>:<pos>`` so a re-sent change has the id it had before.

Unchanged TOAST values (the server does not send an unchanged large value on UPDATE unless the
table has ``REPLICA IDENTITY FULL``) are **never** emitted as placeholders: the column is
omitted from ``after`` and listed in the ``unchanged`` extension attribute (comma-joined) --
the sink keeps the replica's current value for those columns. With ``REPLICA IDENTITY FULL``
the old row carries the value and ``after`` is complete.

**Schema changes.** Each table's row image is registered as a JSON Schema under the subject
``<topic>-value`` in ``registry`` (see :mod:`headwater.cdc.schemas`) when it is snapshotted and
whenever a ``Relation`` message brings a new shape. A shape the subject's compatibility rule
refuses **halts that table**: status ``halted`` with the error, ``on_alert`` is called, its
later changes are not published, and the slot's confirmed position stays before its first
unpublished change (so nothing is lost: after the schema question is settled, a restart
re-reads them) while the other tables keep streaming.

After the snapshot of each table a control event (type ``io.headwater.cdc.snapshot``, data
``{"snapshot": "completed", "lsn", "rows", "source"}``) marks its end.

Values: JSON types pass through; numeric -> string (exact), timestamps/dates/times -> ISO 8601,
bytea -> base64, arrays -> lists, json/jsonb -> the document, others -> their text form.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import logging
import math
import select
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, date, datetime
from datetime import time as dtime
from decimal import Decimal
from typing import Any

from headwater.cdc._events import encode as _encode
from headwater.cdc._events import ext_json as _ext_json
from headwater.cdc._events import make_event as _make_event
from headwater.cdc._events import quote as _quote
from headwater.cdc.base import CHANGE_TYPE, SNAPSHOT_TYPE, StatusFileWriter, message_key
from headwater.cdc.errors import CDCError, CDCUnavailable, ReplicationNotConfigured, SlotLost
from headwater.cdc.pgoutput import (
    CONVERTERS as _CONVERTERS,
)
from headwater.cdc.pgoutput import (
    UNCHANGED_TOAST,
    Begin,
    Column,
    Commit,
    Delete,
    Insert,
    PgOutputDecoder,
    Relation,
    Truncate,
    Update,
    _parse_array,
    convert,
    format_lsn,
    parse_lsn,
)
from headwater.cdc.schemas import SchemaTracker, json_type_of_pg
from headwater.errors import MissingDependency

__all__ = ["CHANGE_TYPE", "SNAPSHOT_TYPE", "STATE_TABLE", "PostgresCDC", "event_position"]

log = logging.getLogger("headwater.cdc")

STATE_TABLE = "public.headwater_cdc_state"
"""Where each slot's snapshot progress is kept (in the source database)."""
HEARTBEAT_PREFIX = "headwater.cdc.heartbeat"
SNAPSHOT_PHASE = 0
STREAM_PHASE = 1
_SESSION_OPTIONS = "-c DateStyle=ISO -c TimeZone=UTC -c extra_float_digits=3 -c bytea_output=hex -c IntervalStyle=postgres"


def event_position(data: dict[str, Any]) -> tuple[int, int, int]:
    """The total order of a change event within its table: (LSN, phase, position).

    Snapshot rows (phase 0) sort before every streamed change at the same LSN (phase 1).
    """
    src = data["source"]
    return (int(src["lsn"]), SNAPSHOT_PHASE if data.get("op") == "r" else STREAM_PHASE, int(src["pos"]))


def _psycopg2() -> Any:
    try:
        import psycopg2
        import psycopg2.extras
    except ImportError:
        raise MissingDependency(
            "Postgres CDC needs psycopg2 for the replication protocol: pip install psycopg2-binary "
            "(or 'headwater[cdc]')", package="psycopg2-binary"
        ) from None
    return psycopg2


def _jsonable(value: Any) -> Any:
    cls = value.__class__
    if cls is str or cls is int or cls is bool or value is None:
        return value
    if cls is float:
        return value if math.isfinite(value) else str(value)
    if cls is Decimal:
        return str(value)
    if isinstance(value, datetime | date | dtime):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value  # dicts from json/jsonb


def _iso_ts(text: str) -> str:
    # PostgreSQL ISO output ('2024-05-01 10:00:00.5+00') as ISO 8601, without a datetime round trip
    t = text.replace(" ", "T", 1)
    i = max(t.rfind("+"), t.rfind("-"))
    if i > 10 and ":" not in t[i:]:
        t += ":00"
    return t


def _b64(text: str) -> str:
    return base64.b64encode(_CONVERTERS[17](text)).decode("ascii")


def _json_array(element: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        return _jsonable(_parse_array(text, element))

    return parse


_JSON_SCALARS: dict[int, Callable[[str], Any]] = {
    16: _CONVERTERS[16], 20: int, 21: int, 23: int, 26: int,
    700: lambda t: _jsonable(float(t)), 701: lambda t: _jsonable(float(t)),
    17: _b64, 114: _CONVERTERS[114], 3802: _CONVERTERS[3802],
    1114: _iso_ts, 1184: _iso_ts, 1266: _iso_ts,
}
JSON_CONVERTERS: dict[int, Callable[[str], Any]] = dict(_JSON_SCALARS)
"""Type OID -> text parser straight to the JSON value events carry (numeric stays its exact
text, timestamps become ISO 8601 text, bytea base64)."""
JSON_CONVERTERS.update({1000: _json_array(_CONVERTERS[16]), 1005: _json_array(int), 1007: _json_array(int),
                        1016: _json_array(int), 1009: _json_array(str), 1015: _json_array(str),
                        1014: _json_array(str), 2951: _json_array(str), 1231: _json_array(str),
                        1021: _json_array(float), 1022: _json_array(float), 1115: _json_array(_iso_ts),
                        1185: _json_array(_iso_ts), 1182: _json_array(str), 199: _json_array(_CONVERTERS[114]),
                        3807: _json_array(_CONVERTERS[3802])})


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _qualify(table: str) -> tuple[str, str]:
    schema, dot, name = table.partition(".")
    return (schema, name) if dot else ("public", schema)


class _TableStats:
    __slots__ = ("counts", "last_lsn", "skipped", "snapshot_rows", "topic")

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.skipped = 0
        self.counts = {"c": 0, "u": 0, "d": 0, "r": 0, "t": 0}
        self.last_lsn: int | None = None
        self.snapshot_rows = 0


class PostgresCDC(StatusFileWriter):
    """Streams one Postgres database's changes to ``bus`` through a logical slot.

    ``dsn`` is a libpq connection string (the role needs ``REPLICATION`` and may create
    publications). ``tables`` are ``schema.table`` names (``table`` means ``public.table``);
    None captures every user table. ``store`` names the source in topics and events
    (``topic_prefix`` defaults to ``cdc.<store>``).

    Tuning: ``batch_size`` events or ``flush_interval`` seconds per publish;
    ``heartbeat_interval`` seconds of idleness between heartbeats; ``lag_alarm_bytes`` calls
    ``on_alarm(status)`` when the slot retains more WAL than that; ``on_lag(bytes)`` receives a
    slot-lag sample every ``heartbeat_interval`` (the ``cdc_slot_lag`` SLI). ``reset=True`` drops an
    existing (or lost) slot and starts again from a fresh snapshot; ``snapshot=False`` skips
    the initial snapshot (streaming only). ``seal`` gives the sealing plan of a topic (see
    :attr:`seal`); publish through a signing bus
    (:meth:`~headwater.events.provenance.Provenance.signing_bus`) so that pipelines accept the
    events (``CDCPipeline`` does both).
    """

    def __init__(
        self,
        dsn: str,
        *,
        slot: str,
        publication: str,
        tables: Sequence[str] | None = None,
        bus: Any,
        store: str = "app",
        topic_prefix: str | None = None,
        source: str | None = None,
        batch_size: int = 5000,
        flush_interval: float = 0.02,
        heartbeat_interval: float = 10.0,
        status_interval: float = 1.0,
        lag_alarm_bytes: int | None = None,
        on_alarm: Callable[[dict[str, Any]], None] | None = None,
        on_lag: Callable[[int], None] | None = None,
        snapshot: bool = True,
        reset: bool = False,
        registry: Any = None,
        on_alert: Callable[[dict[str, Any]], None] | None = None,
        classify: Callable[[str], Any] | None = None,
        status_file: str | None = None,
        seal: Callable[[str], Any] | None = None,
    ) -> None:
        for label, name in (("slot", slot), ("publication", publication)):
            if not name or not name.replace("_", "").isalnum() or not name.islower():
                raise CDCError(f"{label} name {name!r} must be lower-case letters, digits and _")
        self.dsn = dsn
        self.slot = slot
        self.publication = publication
        self.tables = [".".join(_qualify(t)) for t in tables] if tables is not None else None
        self.bus = bus
        self.store = store
        self.topic_prefix = topic_prefix or f"cdc.{store}"
        self.source = source or f"/headwater/cdc/{store}"
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.heartbeat_interval = heartbeat_interval
        self.status_interval = status_interval
        self.lag_alarm_bytes = lag_alarm_bytes
        self.on_alarm = on_alarm
        self.on_lag = on_lag
        self.snapshot = snapshot
        self.reset = reset
        self._stop = threading.Event()
        self._stats: dict[str, _TableStats] = {}
        self._topics: set[str] = set()
        self._published = 0
        self._flushed_lsn: int | None = None
        self._state = "stopped"
        self._error: str | None = None
        self._latencies: collections.deque[float] = collections.deque(maxlen=200_000)
        self._sql_conn: Any = None
        self._db: str | None = None
        self._lock = threading.Lock()
        self._keys: dict[int, tuple[Relation, tuple[str, ...]]] = {}
        self._templates: dict[int, tuple[Any, ...]] = {}
        self._source_q = _quote(self.source)
        self.schemas = SchemaTracker(registry, on_alert=on_alert, classify=classify)
        """Row schemas in the registry; tables halted by an incompatible shape."""
        self.status_file = status_file
        self.seal = seal
        """``seal(topic)`` -> the :class:`~headwater.events.sealing.RowSeal` of the topic's table
        (its PII columns sealed under their subject's key), or None: nothing to seal."""
        self._frozen_at: int | None = None
        self._status_written = 0.0

    def __repr__(self) -> str:
        return f"PostgresCDC(slot={self.slot!r}, publication={self.publication!r}, store={self.store!r})"

    # -- connections ---------------------------------------------------------------------------
    def _sql(self) -> Any:
        """The plain (autocommit) connection for catalog queries and heartbeats."""
        pg = _psycopg2()
        if self._sql_conn is None or self._sql_conn.closed:
            try:
                self._sql_conn = pg.connect(self.dsn, options=_SESSION_OPTIONS, connect_timeout=10)
            except pg.Error as err:
                raise CDCUnavailable(f"cannot connect to the CDC source: {_describe(err)}") from None
            self._sql_conn.autocommit = True
        return self._sql_conn

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        pg = _psycopg2()
        try:
            with self._sql().cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall() if cur.description else []
        except pg.OperationalError as err:
            self._close_sql()
            raise CDCUnavailable(f"CDC source query failed: {_describe(err)}") from None
        except pg.Error as err:
            raise CDCError(f"CDC source query failed: {_describe(err)}") from None

    def _close_sql(self) -> None:
        if self._sql_conn is not None:
            with contextlib.suppress(Exception):
                self._sql_conn.close()
            self._sql_conn = None

    # -- inspection ----------------------------------------------------------------------------
    def lag_bytes(self) -> int | None:
        """Bytes of WAL the slot retains (``pg_current_wal_lsn() - confirmed_flush_lsn``);
        None when the slot does not exist."""
        rows = self._query(
            "SELECT (pg_current_wal_lsn() - confirmed_flush_lsn)::bigint FROM pg_replication_slots "
            "WHERE slot_name = %s", (self.slot,))
        return int(rows[0][0]) if rows and rows[0][0] is not None else None

    def confirmed_lsn(self) -> int | None:
        """The slot's ``confirmed_flush_lsn`` (None when the slot does not exist)."""
        rows = self._query("SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s",
                           (self.slot,))
        return parse_lsn(rows[0][0]) if rows and rows[0][0] else None

    def status(self) -> dict[str, Any]:
        """State, error, slot position and lag, and per-table counts by op."""
        try:
            lag = self.lag_bytes()
        except CDCError:
            lag = None
        lat = sorted(self._latencies)
        with self._lock:
            tables = {
                name: {"topic": s.topic, **s.counts, "snapshot_rows": s.snapshot_rows,
                       "last_lsn": None if s.last_lsn is None else format_lsn(s.last_lsn),
                       "skipped": s.skipped, "schema_version": self.schemas.versions.get(name),
                       "state": "halted" if name in self.schemas.halted else "streaming",
                       "error": self.schemas.halted[name].error if name in self.schemas.halted else None}
                for name, s in self._stats.items()
            }
        return {
            "connector": "postgresql",
            "store": self.store,
            "slot": self.slot,
            "publication": self.publication,
            "state": self._state,
            "error": self._error,
            "events": self._published,
            "flushed_lsn": None if self._flushed_lsn is None else format_lsn(self._flushed_lsn),
            "lag_bytes": lag,
            "lag_alarm": bool(self.lag_alarm_bytes is not None and lag is not None and lag > self.lag_alarm_bytes),
            "latency_ms": {
                "p50": _pct(lat, 0.50), "p99": _pct(lat, 0.99), "samples": len(lat),
            },
            "tables": tables,
            "halted": {name: h.to_dict() for name, h in self.schemas.halted.items()},
            "confirm_held_at": None if self._frozen_at is None else format_lsn(self._frozen_at),
        }

    def topic_of(self, table: str) -> str:
        """``<topic_prefix>.<schema>.<table>`` of ``table`` (``schema.table`` or ``table``)."""
        schema, name = _qualify(table)
        return f"{self.topic_prefix}.{schema}.{name}"

    def latencies(self) -> list[float]:
        """Commit-to-publish seconds of recent transactions (server commit time to bus ack)."""
        return list(self._latencies)

    # -- management ----------------------------------------------------------------------------
    def _check_server(self) -> None:
        rows = self._query("SELECT current_setting('wal_level'), current_database()")
        if rows[0][0] != "logical":
            raise ReplicationNotConfigured(
                f"wal_level is {rows[0][0]!r}; CDC needs wal_level = logical "
                "(ALTER SYSTEM SET wal_level = logical, then restart Postgres)")
        self._db = rows[0][1]
        self._query(
            f"CREATE TABLE IF NOT EXISTS {STATE_TABLE} (slot text PRIMARY KEY, publication text NOT NULL, "
            "consistent_point pg_lsn, snapshot_done boolean NOT NULL DEFAULT false, "
            "updated_at timestamptz NOT NULL DEFAULT now())")

    def _resolve_tables(self) -> list[str]:
        if self.tables is not None:
            return list(self.tables)
        rows = self._query(
            "SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND n.nspname NOT IN ('pg_catalog', "
            "'information_schema') AND n.nspname NOT LIKE 'pg_%%' AND (n.nspname || '.' || c.relname) <> %s "
            "ORDER BY 1", (STATE_TABLE,))
        return [r[0] for r in rows]

    def ensure_publication(self) -> list[str]:
        """Create the publication, or set its tables; returns the captured tables."""
        tables = self._resolve_tables()
        if not tables:
            raise CDCError("no tables to capture")
        listed = ", ".join(".".join(_quote_ident(p) for p in _qualify(t)) for t in tables)
        exists = self._query("SELECT 1 FROM pg_publication WHERE pubname = %s", (self.publication,))
        if exists:
            self._query(f"ALTER PUBLICATION {_quote_ident(self.publication)} SET TABLE {listed}")
        else:
            self._query(f"CREATE PUBLICATION {_quote_ident(self.publication)} FOR TABLE {listed}")
        return tables

    def drop(self) -> None:
        """Drop the slot, the publication and the snapshot state (stop the connector first)."""
        deadline = time.monotonic() + 10
        while True:
            try:
                self._query("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                            "WHERE slot_name = %s", (self.slot,))
                break
            except CDCError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)  # still active: the walsender of a killed process is exiting
        self._query(f"DROP PUBLICATION IF EXISTS {_quote_ident(self.publication)}")
        with contextlib.suppress(CDCError):
            self._query(f"DELETE FROM {STATE_TABLE} WHERE slot = %s", (self.slot,))

    def heartbeat(self) -> None:
        """Write a tiny non-transactional WAL record so an idle slot gets a position to confirm."""
        self._query("SELECT pg_logical_emit_message(false, %s, '')", (HEARTBEAT_PREFIX,))

    def _slot_row(self, wait: float = 15.0) -> tuple[Any, ...] | None:
        """(confirmed_flush_lsn, wal_status) of the slot, once no other process holds it."""
        deadline = time.monotonic() + wait
        while True:
            rows = self._query(
                "SELECT confirmed_flush_lsn::text, wal_status, active_pid, plugin FROM pg_replication_slots "
                "WHERE slot_name = %s", (self.slot,))
            if not rows:
                return None
            lsn, wal_status, pid, plugin = rows[0]
            if plugin != "pgoutput":
                raise CDCError(f"slot {self.slot!r} uses plugin {plugin!r}, not pgoutput; drop it or pick another name",
                               slot=self.slot)
            if wal_status == "lost":
                raise SlotLost(
                    f"replication slot {self.slot!r} was invalidated (the WAL it needed was removed, "
                    "max_slot_wal_keep_size); changes since its last confirmed position are gone. Fix: "
                    "restart CDC with reset=True (headwater cdc start --reset) to drop it and re-snapshot, "
                    "and raise max_slot_wal_keep_size or alert on slot lag.",
                    slot=self.slot, fix="reset")
            if pid is None:
                return rows[0]
            if time.monotonic() > deadline:
                raise CDCError(f"slot {self.slot!r} is in use by server process {pid}; is another connector running?",
                               slot=self.slot)
            time.sleep(0.1)

    def _state_row(self) -> tuple[Any, ...] | None:
        rows = self._query(f"SELECT consistent_point::text, snapshot_done FROM {STATE_TABLE} WHERE slot = %s",
                           (self.slot,))
        return rows[0] if rows else None

    # -- running -------------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask :meth:`run` to publish what it holds, confirm it and return (thread-safe)."""
        self._stop.set()

    def run(self, max_events: int | None = None, idle_timeout: float | None = None) -> int:
        """Snapshot if needed, then stream until :meth:`stop`, ``max_events`` events (at a
        transaction boundary) or ``idle_timeout`` seconds without a change; returns the number
        of events published by this call."""
        pg = _psycopg2()
        self._stop.clear()
        self._state = "starting"
        self._error = None
        self._frozen_at = None
        start_count = self._published
        repl = None
        try:
            self._check_server()
            tables = self.ensure_publication()
            if self.reset:
                self.drop()
                self.ensure_publication()
                self.reset = False
            repl = self._replication_connection()
            cur = repl.cursor()
            slot = self._slot_row()
            state = self._state_row()
            if slot is not None and not (state and state[1]) and self.snapshot:
                log.warning("slot %s exists but its snapshot never finished; starting over", self.slot)
                self._query("SELECT pg_drop_replication_slot(%s)", (self.slot,))
                slot = None
            if slot is None:
                if state and state[1]:
                    raise SlotLost(
                        f"replication slot {self.slot!r} is gone but its snapshot was taken: it was dropped "
                        "outside Headwater, and changes since its last position are lost. Fix: restart CDC "
                        "with reset=True (headwater cdc start --reset) to take a fresh snapshot.",
                        slot=self.slot, fix="reset")
                self._create_and_snapshot(cur, tables)
            self._state = "streaming"
            self._stream(cur, max_events, idle_timeout, start_count)
            self._state = "stopped"
        except pg.Error as err:
            self._state = "failed"
            self._error = _describe(err)
            raise _translate(err, self.slot) from None
        except BaseException as err:
            self._state = "failed"
            self._error = str(err)
            raise
        finally:
            if repl is not None:
                with contextlib.suppress(Exception):
                    repl.close()
            self._write_status(force=True)
            self._close_sql()
        return self._published - start_count

    def _replication_connection(self) -> Any:
        pg = _psycopg2()
        try:
            return pg.connect(self.dsn, connection_factory=pg.extras.LogicalReplicationConnection,
                              options=_SESSION_OPTIONS, connect_timeout=10)
        except pg.Error as err:
            raise _translate(err, self.slot) from None

    def _create_and_snapshot(self, cur: Any, tables: list[str]) -> None:
        mode = "EXPORT_SNAPSHOT" if self.snapshot else "NOEXPORT_SNAPSHOT"
        cur.execute(f"CREATE_REPLICATION_SLOT {_quote_ident(self.slot)} LOGICAL pgoutput {mode}")
        _, consistent_point, snapshot_name, _ = cur.fetchone()
        cp = parse_lsn(consistent_point)
        self._query(
            f"INSERT INTO {STATE_TABLE} (slot, publication, consistent_point, snapshot_done) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (slot) DO UPDATE SET publication = EXCLUDED.publication, consistent_point = "
            "EXCLUDED.consistent_point, snapshot_done = EXCLUDED.snapshot_done, updated_at = now()",
            (self.slot, self.publication, consistent_point, not self.snapshot))
        if not self.snapshot:
            return
        self._state = "snapshot"
        self._take_snapshot(snapshot_name, cp, tables)
        self._query(f"UPDATE {STATE_TABLE} SET snapshot_done = true, updated_at = now() WHERE slot = %s",
                    (self.slot,))

    def _take_snapshot(self, snapshot_name: str, cp: int, tables: list[str]) -> None:
        pg = _psycopg2()
        conn = pg.connect(self.dsn, options=_SESSION_OPTIONS, connect_timeout=10)
        try:
            conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
            with conn.cursor() as c:
                c.execute("SET TRANSACTION SNAPSHOT %s", (snapshot_name,))
            for table in tables:
                rel = _relation_of(conn, table)
                self._snapshot_table(conn, rel, cp)
            conn.rollback()
        finally:
            conn.close()

    def _snapshot_table(self, conn: Any, rel: Relation, cp: int) -> None:
        from headwater.events.envelope import Event

        if not self._observe(rel):
            halt = self.schemas.halted[rel.qualified]
            halt.error += " (its snapshot was not taken: after settling the schema, restart with reset=True)"
            return
        cols = ", ".join(f"{_quote_ident(c.name)}::text" for c in rel.columns)
        ts = datetime.now(UTC)
        ts_ms = int(ts.timestamp() * 1000)
        topic = self._topic(rel)
        stats = self._stats_of(rel)
        batch: list[tuple[Any, str | None]] = []
        pk_ext = {"pk": ",".join(rel.key_columns)} if rel.key_columns else {}
        n = 0
        plan = self.seal(topic) if self.seal is not None else None
        with conn.cursor(name=f"hw_cdc_{self.slot}") as c:
            c.itersize = 5000
            c.execute(f"SELECT {cols} FROM {_quote_ident(rel.schema)}.{_quote_ident(rel.name)}")
            columns = rel.columns
            for row in c:
                after = {col.name: None if v is None else convert(col.type_oid, v, JSON_CONVERTERS)
                         for col, v in zip(columns, row, strict=True)}
                data, key, _ = self._envelope(rel, "r", None, after, cp, 0, ts_ms, ts_ms, snapshot="true")
                if plan is not None:
                    data["after"] = plan.seal(data["after"])
                    key = plan.key(key)
                data["source"]["pos"] = n
                batch.append((self._event(data, key, f"{self.slot}:{cp:X}:0:{n}", pk_ext), key))
                n += 1
                if len(batch) >= self.batch_size:
                    self._publish_many(topic, batch)
                    batch = []
        if batch:
            self._publish_many(topic, batch)
        marker = {"snapshot": "completed", "lsn": cp, "rows": n,
                  "source": {"connector": "postgresql", "name": self.store, "db": self._db,
                             "schema": rel.schema, "table": rel.name, "lsn": cp, "snapshot": "last"}}
        self._publish_many(topic, [(Event(type=SNAPSHOT_TYPE, source=self.source, data=marker,
                                          id=f"{self.slot}:{cp:X}:snapshot:{rel.qualified}",
                                          subject=rel.qualified), None)])
        with self._lock:
            stats.counts["r"] += n
            stats.snapshot_rows = n
            stats.last_lsn = cp
        self._published += n + 1

    # -- events --------------------------------------------------------------------------------
    def _topic(self, rel: Relation) -> str:
        topic = f"{self.topic_prefix}.{rel.schema}.{rel.name}"
        if topic not in self._topics:
            self.bus.create_topic(topic, partitions=1)
            self._topics.add(topic)
        return topic

    def _observe(self, rel: Relation) -> bool:
        """Register the shape of ``rel``; False when the table is halted."""
        columns = [(c.name, json_type_of_pg(c.type_oid)) for c in rel.columns]
        ok = self.schemas.observe(rel.qualified, self._topic(rel), columns, rel.key_columns)
        if not ok:
            self._write_status(force=True)
        return ok

    def _stats_of(self, rel: Relation) -> _TableStats:
        stats = self._stats.get(rel.qualified)
        if stats is None:
            with self._lock:
                stats = self._stats[rel.qualified] = _TableStats(self._topic(rel))
        return stats

    def _envelope(
        self, rel: Relation, op: str, before: dict[str, Any] | None, after: dict[str, Any] | None,
        lsn: int, xid: int, commit_ms: int, now_ms: int, *, snapshot: str = "false",
    ) -> tuple[dict[str, Any], str | None, list[str]]:
        # Values are already JSON (JSON_CONVERTERS); only unchanged TOAST needs care.
        unchanged: list[str] = []
        if after is not None and UNCHANGED_TOAST in after.values():
            out = {}
            for name, v in after.items():
                if v is UNCHANGED_TOAST:
                    v = before.get(name, UNCHANGED_TOAST) if before else UNCHANGED_TOAST
                    if v is UNCHANGED_TOAST:
                        unchanged.append(name)
                        continue
                out[name] = v
            after = out
        if before is not None and UNCHANGED_TOAST in before.values():
            before = {k: v for k, v in before.items() if v is not UNCHANGED_TOAST}
        cached = self._keys.get(rel.oid)
        if cached is None or cached[0] is not rel:  # a new Relation message replaces the shape
            cached = self._keys[rel.oid] = (rel, rel.key_columns)
        keys = cached[1]
        key = message_key(after if after is not None else before, keys)
        data = {
            "before": before,
            "after": after,
            "source": {"connector": "postgresql", "name": self.store, "db": self._db, "schema": rel.schema,
                       "table": rel.name, "lsn": lsn, "txId": xid, "ts_ms": commit_ms, "snapshot": snapshot,
                       "pos": 0},
            "op": op,
            "ts_ms": now_ms,
        }
        return data, key, unchanged

    def _template(self, rel: Relation) -> tuple[Any, ...]:
        """What every change event of ``rel`` shares: extensions (and their JSON), the constant
        start of ``source`` as JSON (up to ``"lsn"``), the topic, the op counters and stats."""
        keys = rel.key_columns
        ext = {"pk": ",".join(keys)} if keys else {}
        source_js = (f'{{"connector":"postgresql","name":{_encode(self.store)},"db":{_encode(self._db)},'
                     f'"schema":{_encode(rel.schema)},"table":{_encode(rel.name)},')
        stats = self._stats_of(rel)
        tpl = self._templates[rel.oid] = (ext, _ext_json(ext), source_js, stats.topic, stats.counts, stats, rel)
        return tpl

    def _event(self, data: dict[str, Any], key: str | None, event_id: str, ext: dict[str, Any]) -> Any:
        from headwater.events.envelope import Event

        return Event(type=CHANGE_TYPE, source=self.source, data=data, id=event_id, subject=key,
                     extensions=ext)

    def _publish_many(self, topic: str, items: list[tuple[Any, str | None]]) -> None:
        # telemetry: one publish span, traceparent stamped into the events
        from headwater.events.bus.errors import BusUnavailable
        from headwater.telemetry.messaging import publish_many

        delay = 0.1
        while True:
            try:
                publish_many(self.bus, topic, items, owned=True)  # events built for this batch
                return
            except BusUnavailable:
                # Nothing is confirmed to the slot until this succeeds: retrying is safe.
                if self._stop.is_set():
                    raise
                log.warning("bus unavailable; retrying publish to %s in %.1fs", topic, delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    # -- streaming -----------------------------------------------------------------------------
    def _stream(self, cur: Any, max_events: int | None, idle_timeout: float | None, start_count: int) -> None:
        cur.start_replication(
            slot_name=self.slot, decode=False, start_lsn=0, status_interval=self.status_interval,
            options={"proto_version": "1", "publication_names": self.publication},
        )
        decoder = PgOutputDecoder(converters=JSON_CONVERTERS)
        pending: list[tuple[str, Any, str | None]] = []
        pending_lsn: int | None = None
        pending_since = 0.0
        pending_commits: list[float] = []
        tx: list[tuple[Relation, dict[str, Any], str | None, list[str]]] = []
        begin: Begin | None = None
        last_change = time.monotonic()
        last_heartbeat = time.monotonic()
        last_alarm_check = 0.0
        confirmed = 0

        # One batch is published on a worker thread while the next is decoded; it is confirmed
        # (feedback from this thread: the cursor is not thread-safe) only once it is acknowledged.
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"cdc-publish-{self.slot}")
        inflight: tuple[Future[float], int | None, list[float], int] | None = None

        def publish(by_topic: dict[str, list[tuple[Any, str | None]]]) -> float:
            for topic, items in by_topic.items():
                self._publish_many(topic, items)
            return time.time()

        def confirm(lsn: int | None) -> None:
            nonlocal confirmed
            if lsn is None:
                return
            # A halted table holds the confirmed position before its first unpublished change.
            target = lsn if self._frozen_at is None else min(lsn, self._frozen_at)
            if target > confirmed:
                cur.send_feedback(flush_lsn=target, write_lsn=target, reply=False)
                self._flushed_lsn = confirmed = target

        def settle() -> None:
            nonlocal inflight
            if inflight is None:
                return
            future, lsn, commits, count = inflight
            inflight = None
            acked = future.result()
            self._latencies.extend(acked - c for c in commits)
            self._published += count
            confirm(lsn)

        def flush(wait: bool = False) -> None:
            nonlocal pending, pending_lsn, pending_commits, inflight
            settle()
            if pending:
                by_topic: dict[str, list[tuple[Any, str | None]]] = {}
                for topic, event, key in pending:
                    by_topic.setdefault(topic, []).append((event, key))
                inflight = (executor.submit(publish, by_topic), pending_lsn, pending_commits, len(pending))
            else:
                confirm(pending_lsn)
            pending, pending_lsn, pending_commits = [], None, []
            if wait:
                settle()

        def queued() -> int:
            return self._published + len(pending) + (inflight[3] if inflight is not None else 0) - start_count

        try:
            while True:
                msg = cur.read_message()
                if msg is None:
                    now = time.monotonic()
                    if pending or inflight is not None or pending_lsn is not None:
                        flush(wait=True)
                    elif begin is None and self._frozen_at is None:
                        wal_end = cur.wal_end
                        if wal_end and wal_end > confirmed:
                            # Caught up with nothing in flight: every change before wal_end is
                            # published, so the idle position can be confirmed.
                            cur.send_feedback(flush_lsn=wal_end, write_lsn=wal_end, force=True)
                            self._flushed_lsn = confirmed = wal_end
                    if (self._stop.is_set()
                            or (max_events is not None and queued() >= max_events and begin is None)
                            or (idle_timeout is not None and now - last_change >= idle_timeout and begin is None)):
                        cur.send_feedback(force=True)  # the last confirmed position reaches the server
                        return
                    if now - last_heartbeat >= self.heartbeat_interval:
                        last_heartbeat = now
                        with contextlib.suppress(CDCError):
                            self.heartbeat()
                    self._write_status()
                    if ((self.lag_alarm_bytes is not None or self.on_lag is not None)
                            and now - last_alarm_check >= self.heartbeat_interval):
                        last_alarm_check = now
                        self._check_alarm()
                    wait = min(self.heartbeat_interval, 1.0 if idle_timeout is None else max(0.01, min(1.0, idle_timeout)))
                    with contextlib.suppress(InterruptedError):
                        select.select([cur], [], [], wait)
                    continue
                last_change = time.monotonic()
                m = decoder.decode(msg.payload)
                cls = m.__class__
                if cls is Insert:
                    tx.append((m.relation, m.new, None, "c"))  # type: ignore[arg-type]
                elif cls is Update:
                    tx.append((m.relation, m.new, _old(m), "u"))  # type: ignore[arg-type]
                elif cls is Delete:
                    tx.append((m.relation, None, _old(m), "d"))  # type: ignore[arg-type]
                elif cls is Begin:
                    begin = m  # type: ignore[assignment]
                    tx = []
                elif cls is Commit:
                    if begin is None:
                        raise CDCError("Commit without Begin in the replication stream")
                    now_ms = int(time.time() * 1000)
                    commit_ms = int(begin.commit_ts.timestamp() * 1000)
                    lsn = begin.final_lsn
                    n = len(tx)
                    txid = f"{begin.xid}:{lsn}"
                    halted = self.schemas.halted
                    xid = begin.xid
                    commit_ts = begin.commit_ts
                    time_iso = commit_ts.isoformat()  # the events' time: their commit
                    id_prefix = f"{self.slot}:{lsn:X}:1:"
                    after_id = (f'","source":{self._source_q},"type":"{CHANGE_TYPE}","time":"{time_iso}",'
                                '"datacontenttype":"application/json"')
                    tx_json = f'"ts_ms":{commit_ms},"snapshot":"false","pos":'
                    plans: dict[str, Any] = {}
                    for pos, (rel, new, old, op) in enumerate(tx):
                        if halted and rel.qualified in halted:
                            self._stats_of(rel).skipped += 1
                            continue
                        if op == "t":
                            data, key, unchanged = self._envelope(rel, "t", None, None, lsn, xid, commit_ms, now_ms)
                        else:
                            data, key, unchanged = self._envelope(rel, op, old, new, lsn, xid, commit_ms, now_ms)
                        data["source"]["pos"] = pos
                        data["transaction"] = {"id": txid, "total_order": pos + 1, "event_count": n}
                        tpl = self._templates.get(rel.oid)
                        if tpl is None or tpl[6] is not rel:
                            tpl = self._template(rel)
                        ext, ext_js, source_js, topic, counts, stats, _ = tpl
                        if unchanged:
                            ext = {**ext, "unchanged": ",".join(unchanged)}
                            ext_js = _ext_json(ext)
                        if self.seal is not None:
                            if topic not in plans:
                                plans[topic] = self.seal(topic)
                            plan = plans[topic]
                            if plan is not None:  # PII columns sealed under their subject's key
                                data["before"] = plan.seal(data["before"])
                                data["after"] = plan.seal(data["after"])
                                key = plan.key(key)
                        counts[op] += 1
                        stats.last_lsn = lsn
                        # The envelope's JSON from the table's template: only the row images are encoded.
                        rows = _encode({"before": data["before"], "after": data["after"]})
                        eid = f"{id_prefix}{pos}"
                        subj = "" if key is None else f',"subject":{_quote(key)}'
                        raw = (f'{{"specversion":"1.0","id":"{eid}{after_id}{subj}{ext_js},"data":'
                               f'{rows[:-1]},"source":{source_js}"lsn":{lsn},"txId":{xid},{tx_json}{pos}}},'
                               f'"op":"{op}","ts_ms":{now_ms},"transaction":{{"id":"{txid}",'
                               f'"total_order":{pos + 1},"event_count":{n}}}}}}}').encode()
                        pending.append((topic, _make_event(CHANGE_TYPE, self.source, data, eid, key, commit_ts, ext,
                                                           raw), key))
                    if not pending_since or not pending_commits:
                        pending_since = time.monotonic()
                    pending_commits.append(begin.commit_ts.timestamp())
                    pending_lsn = m.end_lsn  # type: ignore[union-attr]
                    begin = None
                    tx = []
                    if len(pending) >= self.batch_size or time.monotonic() - pending_since >= self.flush_interval:
                        flush()
                        pending_since = 0.0
                    if max_events is not None and queued() >= max_events:
                        flush(wait=True)
                        cur.send_feedback(force=True)
                        return
                elif cls is Truncate:
                    for rel in m.relations:  # type: ignore[union-attr]
                        tx.append((rel, None, None, "t"))
                elif cls is Relation:
                    self._stats_of(m)  # type: ignore[arg-type]
                    if not self._observe(m) and self._frozen_at is None:  # type: ignore[arg-type]
                        # Everything before this transaction may still be confirmed; nothing after.
                        self._frozen_at = pending_lsn if pending_lsn is not None else confirmed
                        log.warning("CDC slot %s: confirmed position held at %s while %s is halted",
                                    self.slot, format_lsn(self._frozen_at), m.qualified)  # type: ignore[union-attr]
                # Origin, Type and logical messages carry nothing to publish.
        finally:
            executor.shutdown(wait=True)

    def _check_alarm(self) -> None:
        try:
            lag = self.lag_bytes()
        except CDCError:
            return
        if lag is not None and self.on_lag is not None:
            self.on_lag(lag)
        if lag is not None and self.lag_alarm_bytes is not None and lag > self.lag_alarm_bytes:
            log.warning("CDC slot %s retains %d bytes of WAL (alarm at %d)", self.slot, lag, self.lag_alarm_bytes)
            if self.on_alarm is not None:
                self.on_alarm(self.status())


def _old(m: Update | Delete) -> dict[str, Any] | None:
    # A 'K' tuple sends nulls for the non-key columns: keep only the key, never fake nulls.
    if m.old is None or m.old_kind != "K":
        return m.old
    return {k: m.old[k] for k in m.relation.key_columns}


def _relation_of(conn: Any, table: str) -> Relation:
    schema, name = _qualify(table)
    with conn.cursor() as c:
        c.execute(
            "SELECT c.oid, c.relreplident FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s", (schema, name))
        row = c.fetchone()
        if row is None:
            raise CDCError(f"table {schema}.{name} does not exist", table=f"{schema}.{name}")
        oid, ident = row
        c.execute(
            "SELECT a.attname, a.atttypid, a.atttypmod, coalesce(a.attnum = ANY(i.indkey), false) "
            "FROM pg_attribute a LEFT JOIN pg_index i ON i.indrelid = a.attrelid AND i.indisprimary "
            "WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum", (oid,))
        cols = tuple(Column(n, t, m, bool(k)) for n, t, m, k in c.fetchall())
    return Relation(int(oid), schema, name, ident if isinstance(ident, str) else ident.decode(), cols)


def _pct(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    idx = min(len(sorted_values) - 1, int(q * len(sorted_values)))
    return round(sorted_values[idx] * 1000, 2)


def _describe(err: Any) -> str:
    text = (getattr(err, "pgerror", None) or str(err) or type(err).__name__).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _translate(err: Any, slot: str) -> CDCError:
    pg = _psycopg2()
    msg = _describe(err)
    code = getattr(err, "pgcode", None)
    if code == "55000" and ("can no longer get changes" in msg or "invalidated" in msg):
        return SlotLost(f"replication slot {slot!r} was invalidated: {msg}. Fix: restart CDC with reset=True "
                        "(headwater cdc start --reset) to drop it and re-snapshot.", slot=slot, fix="reset")
    if code == "42704" and "replication slot" in msg:
        return SlotLost(f"{msg}. Fix: restart CDC with reset=True to create it again from a fresh snapshot.",
                        slot=slot, fix="reset")
    if code in ("55000", "53400") and ("wal_level" in msg or "replication slots" in msg):
        return ReplicationNotConfigured(f"logical replication is not available: {msg}")
    if code == "42501":
        return ReplicationNotConfigured(f"the CDC role lacks a privilege: {msg} (it needs REPLICATION)")
    if isinstance(err, pg.OperationalError) or code is None:
        return CDCUnavailable(f"replication connection failed: {msg}")
    return CDCError(f"replication failed: {msg}")


def iter_tables(values: Iterable[str]) -> list[str]:
    """Normalise table names to ``schema.table``."""
    return [".".join(_qualify(t)) for t in values]
