"""What every change data capture connector offers: the :class:`Connector` protocol.

Both :class:`~headwater.cdc.postgres.PostgresCDC` (logical replication) and
:class:`~headwater.cdc.sqlite.SQLiteCDC` (triggers into a change table) implement it, so the
pipeline, the CLI and the demo drive either the same way:

* ``run(max_events=None, idle_timeout=None) -> int`` -- snapshot if needed, then stream
  changes to the bus until :meth:`stop`, ``max_events`` or ``idle_timeout`` seconds without a
  change; returns the events published by the call. A source position is confirmed (slot
  flush LSN, change-table rows deleted) only after the bus acknowledged everything up to it.
* ``stop()`` -- thread-safe; ``run`` publishes and confirms what it holds, then returns.
* ``status() -> dict`` -- ``state``, ``error``, ``events``, per-table counts (``tables``,
  each with ``state`` ``streaming``/``halted`` and ``error``), ``halted`` and the source's
  backlog (``lag_bytes`` for a slot, ``backlog`` rows for a change table).
* ``topic_of(table) -> str`` -- ``<topic_prefix>.<schema>.<table>`` for ``schema.table``.
* ``drop()`` -- remove what the connector created at the source (slot, publication,
  triggers, change table).
* ``schemas`` -- the :class:`~headwater.cdc.schemas.SchemaTracker` (registry versions, halts).

A running connector may also write its :meth:`status` to a JSON *status file* (atomically,
about once a second and on every halt) so ``headwater cdc status`` in another process can show
it; :func:`read_status_file` reads it back.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "CHANGE_TYPE", "SNAPSHOT_TYPE", "Connector", "StatusFileWriter", "message_key", "read_status_file",
    "write_status_file",
]

log = logging.getLogger("headwater.cdc")

CHANGE_TYPE = "io.headwater.cdc.change"
"""CloudEvents ``type`` of a change event."""
SNAPSHOT_TYPE = "io.headwater.cdc.snapshot"
"""CloudEvents ``type`` of the end-of-snapshot marker of one table."""


@runtime_checkable
class Connector(Protocol):
    """A change data capture connector (see the module docstring)."""

    bus: Any
    store: str
    topic_prefix: str
    schemas: Any

    def run(self, max_events: int | None = None, idle_timeout: float | None = None) -> int:
        """Snapshot if needed, then stream until stopped; returns events published."""
        ...

    def stop(self) -> None:
        """Ask :meth:`run` to publish and confirm what it holds, then return."""
        ...

    def status(self) -> dict[str, Any]:
        """State, error, counts per table, halted tables and source backlog."""
        ...

    def topic_of(self, table: str) -> str:
        """The topic of ``schema.table``."""
        ...

    def drop(self) -> None:
        """Remove what the connector created at the source."""
        ...


def write_status_file(path: str | os.PathLike[str], doc: dict[str, Any]) -> None:
    """Replace ``path`` with ``doc`` as JSON in one rename (readers never see half a file)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".cdc-status-", dir=target.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, default=str)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_status_file(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The last status a connector wrote to ``path`` (None when there is none)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def message_key(row: dict[str, Any] | None, keys: Any) -> str | None:
    """The bus key of a change: the primary key's value as text (JSON for composite keys)."""
    if not keys or row is None:
        return None
    if len(keys) == 1:
        kv = row.get(keys[0])
        return kv if isinstance(kv, str) else (str(kv) if isinstance(kv, int) else json.dumps(kv))
    return json.dumps([row.get(k) for k in keys], separators=(",", ":"))


class StatusFileWriter:
    """Mixin: write ``self.status()`` to ``self.status_file`` at most once a second (or when forced)."""

    status_file: str | None
    _status_written: float

    def status(self) -> dict[str, Any]:  # pragma: no cover - provided by the connector
        raise NotImplementedError

    def _write_status(self, force: bool = False) -> None:
        if self.status_file is None:
            return
        now = time.monotonic()
        if not force and now - self._status_written < 1.0:
            return
        self._status_written = now
        try:
            doc = self.status()
            doc["pid"] = os.getpid()
            doc["updated_at"] = time.time()
            write_status_file(self.status_file, doc)
        except OSError as err:
            log.warning("cannot write CDC status file %s: %s", self.status_file, err)
