"""Apply CDC change events to a replica dataset, converging to the source.

:class:`ReplicaSink` turns the change events of one source table (one topic, one partition,
so in commit order) into ``session.write(dataset, rows, mode="upsert", key=<primary key>)``
calls -- one atomic write per batch, into any store.

**De-duplication by (LSN, position in transaction).** Every replica row carries ``_lsn`` (the
commit LSN of the change that wrote it) and ``_seq`` (its position in the transaction;
snapshot rows get ``position - 2**40`` so they sort before any streamed change at the same
LSN). The sink keeps a watermark -- the highest (``_lsn``, ``_seq``) applied, read back from
the replica when it starts -- and skips any event at or below it. The connector re-sends
everything after its last confirmed position after a crash; those events are skipped, so
each change is applied exactly once and the replica converges.

**Deletes.** :class:`~headwater.access.session.Session` has no delete API, so a delete is an
upsert of a *tombstone*: the key and ``_deleted = true``, every other column null -- a deleted
row's values are not kept in the copy (erasure relies on it), even when the source sends a full
``before`` image (``REPLICA IDENTITY FULL``). Read the replica with
``WHERE NOT _deleted``; tombstones also keep the watermark of deleted rows. A key change
(UPDATE of the primary key) tombstones the old key. TRUNCATE tombstones every live row.

Arrays and json/jsonb values are written as JSON text (not every store has nested types).

**Unchanged TOAST columns** (listed in the ``unchanged`` extension, absent from ``after``) keep
the replica's current value: taken from an earlier row of the same batch, else read from the
replica.

**New columns.** A write that names columns the replica lacks (the source table gained a
column: a compatible schema change) recreates the replica with them (``CREATE OR REPLACE TABLE
... AS SELECT``, governed and recorded like any derivation), null in earlier rows.

**Snapshot reconciliation.** The end-of-snapshot marker of a table (``lsn`` = the slot's
consistent point) tombstones live replica rows older than that snapshot: rows a previous,
interrupted snapshot wrote but that no longer exist.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from headwater.cdc.base import CHANGE_TYPE, SNAPSHOT_TYPE
from headwater.errors import DatasetNotFound, WriteError

__all__ = ["DELETED", "LSN", "SEQ", "SNAPSHOT_SEQ_BASE", "ReplicaSink"]

log = logging.getLogger("headwater.cdc")

DELETED = "_deleted"
"""Tombstone flag column of a replica row."""
LSN = "_lsn"
"""Commit LSN of the change that last wrote the row."""
SEQ = "_seq"
"""Position of that change in its transaction (snapshot rows: position - 2**40)."""
SNAPSHOT_SEQ_BASE = 2**40


def _position(data: dict[str, Any]) -> tuple[int, int]:
    src = data["source"]
    pos = int(src.get("pos", 0))
    if data.get("op") == "r":
        pos -= SNAPSHOT_SEQ_BASE
    return int(src["lsn"]), pos


def _flat(value: Any) -> Any:
    # Arrays and json documents are stored as JSON text: not every store has nested types.
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return value


class ReplicaSink:
    """Applies change events of one table to ``dataset`` (``<store>.<table>``) via ``session``.

    ``key`` is the primary key (default: the ``pk`` extension attribute of the events).
    """

    def __init__(self, session: Any, dataset: str, *, key: Sequence[str] | str | None = None) -> None:
        self.session = session
        self.dataset = dataset
        self.key: list[str] | None = [key] if isinstance(key, str) else (list(key) if key else None)
        self._watermark: tuple[int, int] | None = None
        self._loaded = False
        self.applied = 0
        """Change events applied (not skipped) by this sink."""
        self.skipped = 0
        """Change events skipped as already applied (at or below the watermark)."""

    def __repr__(self) -> str:
        return f"ReplicaSink(dataset={self.dataset!r}, key={self.key!r})"

    @property
    def watermark(self) -> tuple[int, int] | None:
        """The highest (LSN, position) applied to the replica."""
        self._load()
        return self._watermark

    def _select(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        try:
            return self.session.sql(sql, list(params) if params else None).to_pylist()
        except DatasetNotFound:
            return []

    def _load(self) -> None:
        if self._loaded:
            return
        rows = self._select(f"SELECT {LSN}, {SEQ} FROM {self.dataset} ORDER BY {LSN} DESC, {SEQ} DESC LIMIT 1")
        self._watermark = (int(rows[0][LSN]), int(rows[0][SEQ])) if rows else None
        self._loaded = True

    def write(self, events: Sequence[Any]) -> int:
        """Apply a batch in order (one atomic write per run of plain changes); returns the
        number of change events applied."""
        self._load()
        batch: dict[tuple[Any, ...], dict[str, Any]] = {}
        applied = 0
        for event in events:
            etype = event.type
            if etype == SNAPSHOT_TYPE:
                pos = (int(event.data["lsn"]), -1)
                if self._watermark is not None and pos <= self._watermark:
                    continue
                self._flush(batch)
                self._tombstone_live(pos, older_than=pos[0])
                self._watermark = pos
                continue
            if etype != CHANGE_TYPE:
                continue
            data = event.data
            pos = _position(data)
            if self._watermark is not None and pos <= self._watermark:
                self.skipped += 1
                continue
            key = self._key_of(event)
            op = data["op"]
            if op == "t":
                self._flush(batch)
                self._tombstone_live(pos)
            elif op == "d":
                before = data.get("before") or {}
                row = {k: before[k] for k in key if k in before}
                self._stamp(row, pos, deleted=True)
                batch[self._kv(row, key, event)] = row
            else:
                after = dict(data["after"])
                kv = self._kv(after, key, event)
                before = data.get("before")
                if op == "u" and before and all(k in before for k in key):
                    old_kv = tuple(before[k] for k in key)
                    if old_kv != kv:
                        tomb = {k: before[k] for k in key}
                        self._stamp(tomb, pos, deleted=True)
                        batch[old_kv] = tomb
                unchanged = event.extensions.get("unchanged")
                if unchanged:
                    self._fill_unchanged(after, [c for c in unchanged.split(",") if c], kv, key, batch)
                self._stamp(after, pos, deleted=False)
                batch.pop(kv, None)  # keep arrival order: the latest change goes last
                batch[kv] = after
            self._watermark = pos
            applied += 1
        self._flush(batch)
        self.applied += applied
        return applied

    __call__ = write

    # -- helpers -------------------------------------------------------------------------------
    def _key_of(self, event: Any) -> list[str]:
        if self.key is None:
            pk = event.extensions.get("pk")
            if not pk:
                raise WriteError(
                    f"event {event.id}: the source table has no primary key; pass key=[...] to ReplicaSink",
                    event_id=event.id)
            self.key = pk.split(",")
        return self.key

    def _kv(self, row: dict[str, Any], key: list[str], event: Any) -> tuple[Any, ...]:
        try:
            return tuple(row[k] for k in key)
        except KeyError as err:
            raise WriteError(f"event {event.id}: change lacks key column {err.args[0]!r}",
                             event_id=event.id) from None

    @staticmethod
    def _stamp(row: dict[str, Any], pos: tuple[int, int], *, deleted: bool) -> None:
        row[LSN] = pos[0]
        row[SEQ] = pos[1]
        row[DELETED] = deleted

    def _fill_unchanged(self, after: dict[str, Any], cols: list[str], kv: tuple[Any, ...], key: list[str],
                        batch: dict[tuple[Any, ...], dict[str, Any]]) -> None:
        prev = batch.get(kv)
        if prev is None:
            where = " AND ".join(f'"{k}" = ?' for k in key)
            rows = self._select(f"SELECT * FROM {self.dataset} WHERE {where}", kv)
            prev = rows[0] if rows else None
        if prev is None:
            log.warning("%s: no replica row for %s to take unchanged TOAST columns %s from", self.dataset, kv, cols)
            return
        for c in cols:
            if c in prev:
                after[c] = prev[c]

    def _tombstone_live(self, pos: tuple[int, int], older_than: int | None = None) -> None:
        assert self.key is not None or older_than is not None
        cond = f"NOT {DELETED}" + (f" AND {LSN} < ?" if older_than is not None else "")
        rows = self._select(f"SELECT * FROM {self.dataset} WHERE {cond}",
                            [older_than] if older_than is not None else [])
        if not rows:
            return
        for row in rows:
            self._stamp(row, pos, deleted=True)
        key = self.key or []
        self.session.write(self.dataset, rows, mode="upsert", key=key or None)

    def _flush(self, batch: dict[tuple[Any, ...], dict[str, Any]]) -> None:
        if not batch:
            return
        rows = [{c: _flat(v) for c, v in r.items()} for r in batch.values()]
        columns: dict[str, None] = {}
        for row in rows:
            for c in row:
                columns.setdefault(c, None)
        # An upsert keeps the stored value of a column it is not given; a replica row is the
        # whole source row (a tombstone: the key and nulls), so every replica column is given.
        replica = self.session.platform.catalog.find(self.dataset)
        present = {c.casefold() for c in columns}
        for c in replica.column_names if replica is not None else ():
            if c.casefold() not in present:
                columns.setdefault(c, None)
        if len(columns) and any(len(r) != len(columns) for r in rows):
            rows = [{c: r.get(c) for c in columns} for r in rows]
        try:
            self.session.write(self.dataset, rows, mode="upsert", key=self.key)
        except WriteError as err:
            new = list(getattr(err, "columns", None) or ())
            if not new:
                raise
            self._add_columns(new, rows)
            self.session.write(self.dataset, rows, mode="upsert", key=self.key)
        batch.clear()

    def _add_columns(self, names: list[str], rows: list[dict[str, Any]]) -> None:
        """The source gained columns (a compatible schema change): recreate the replica with them
        (null in earlier rows) by one governed ``CREATE OR REPLACE TABLE ... AS SELECT``."""
        extra = []
        for name in names:
            sample = next((r[name] for r in rows if r.get(name) is not None), None)
            sql_type = ("BOOLEAN" if isinstance(sample, bool) else "BIGINT" if isinstance(sample, int)
                        else "DOUBLE" if isinstance(sample, float) else "VARCHAR")
            extra.append(f'CAST(NULL AS {sql_type}) AS "{name.replace(chr(34), chr(34) * 2)}"')
        log.info("%s: the source gained column(s) %s; recreating the replica with them", self.dataset, names)
        self.session.sql(f"CREATE OR REPLACE TABLE {self.dataset} AS SELECT *, {', '.join(extra)} "
                         f"FROM {self.dataset}").to_pylist()

    def drain(self, consumer: Any, *, batch: int = 1000, idle_timeout: float = 1.0) -> int:
        """Fetch from ``consumer`` (a bus consumer on the table's topic), apply and ack until
        nothing arrives for ``idle_timeout`` seconds; returns change events applied."""
        total = 0
        while True:
            messages = consumer.fetch(batch, timeout=idle_timeout)
            if not messages:
                return total
            total += self.write([m.event() for m in messages])
            consumer.ack_many(messages)
