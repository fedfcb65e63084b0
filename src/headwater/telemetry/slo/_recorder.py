"""SLI counters: an in-process buffer of per-minute good/total counts, flushed to the metadata
store with an upsert.

Durability: counts live in memory until a flush, which happens when ``max_pending`` events are
buffered (checked on each :meth:`SLORecorder.record`, on the caller's thread), every
``flush_interval_s`` (from the daemon thread once :meth:`SLORecorder.start` ran, else on the next
``record`` after the interval), and on :meth:`SLORecorder.flush`/:meth:`SLORecorder.close` (and
at interpreter exit once started). Use ``start()`` in long-running processes so the query path
only ever pays for a dict update, bar one upsert per ``max_pending`` events. A crash therefore loses at
most the last ``flush_interval_s`` seconds or ``max_pending`` events of counts; SLOs measured
over days barely move. A flush that fails keeps the counts for the next attempt and logs a
warning; ``record`` never raises a store error into the caller's hot path. Should the store stay
down, at most ``max_buffered_buckets`` (series, minute) cells are kept and newer ones are
dropped and counted in :attr:`SLORecorder.dropped`.
"""

from __future__ import annotations

import atexit
import datetime as dt
import logging
import threading
import time
import weakref
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from headwater.errors import HeadwaterError, InvalidInput, StoreUnavailable
from headwater.telemetry.slo._clock import Clock, minute_of
from headwater.telemetry.slo._spec import SLO, THRESHOLD_KINDS, threshold_series
from headwater.telemetry.slo._tables import buckets_table, dialect_insert

__all__ = ["SLORecorder", "retention_minutes"]

log = logging.getLogger("headwater.telemetry.slo")

_PRUNE_EVERY_S = 3600.0


def retention_minutes(slos: Iterable[SLO]) -> int:
    """How many minutes of buckets evaluation needs: the longest SLO or alert window plus a day
    (35 days when there are no SLOs)."""
    windows = [w for slo in slos for w in (slo.window, *(r.long for r in slo.alerting.burn_rates))]
    longest = max(windows, default=dt.timedelta(days=34))
    return int((longest + dt.timedelta(days=1)).total_seconds() // 60)


class SLORecorder:
    """Records good/total SLI events into 1-minute buckets in the metadata store.

    ``slos`` tells :meth:`observe` which thresholds the threshold kinds (``query_latency``,
    ``event_freshness``, ``cdc_slot_lag``) are judged against and how long buckets are kept.
    ``clock`` (an aware-datetime callable) stamps events recorded without ``at`` and paces the
    flushes. One recorder per process is enough; it is thread-safe.
    """

    def __init__(
        self,
        meta: Any,
        slos: Iterable[SLO] = (),
        *,
        flush_interval_s: float = 10.0,
        max_pending: int = 10_000,
        max_buffered_buckets: int = 100_000,
        clock: Clock | None = None,
    ) -> None:
        if flush_interval_s <= 0 or max_pending < 1:
            raise InvalidInput("flush_interval_s must be > 0 and max_pending >= 1")
        self.meta = meta
        self.slos = tuple(slos)
        self.flush_interval_s = flush_interval_s
        self.max_pending = max_pending
        self.max_buffered_buckets = max_buffered_buckets
        self._clock = clock
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._buffer: dict[tuple[str, int], list[int]] = {}
        self._pending = 0
        self._last_flush = self._now()
        self._last_prune = float("-inf")
        self._thresholds: dict[str, tuple[tuple[float, str], ...]] = {}
        for kind in THRESHOLD_KINDS:
            ts = sorted({float(s.sli.threshold) for s in self.slos if s.sli.kind == kind and s.sli.threshold})
            self._thresholds[kind] = tuple((t, threshold_series(kind, t)) for t in ts)
        self._retention = retention_minutes(self.slos)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.dropped = 0
        """Events dropped because the buffer was full while the store was unreachable."""

    def __repr__(self) -> str:
        return f"SLORecorder(slos={len(self.slos)}, pending={self._pending})"

    def _now(self) -> float:
        return self._clock().timestamp() if self._clock else time.time()

    # -- the hot path ------------------------------------------------------------------------
    def record(self, sli: str, good: int, total: int, at: dt.datetime | None = None) -> None:
        """Add ``good`` good events out of ``total`` to series ``sli`` in the minute of ``at``
        (default: now).

        ``sli`` is a built-in kind without a threshold (``query_success``,
        ``pipeline_success``), an ``events`` SLI's name, or a threshold series such as
        ``query_latency:500ms``; threshold kinds are recorded with :meth:`observe`.
        """
        if sli in THRESHOLD_KINDS:
            raise InvalidInput(
                f"{sli} is judged against each SLO's threshold: call observe({sli!r}, value) "
                f"or record a threshold series such as {threshold_series(sli, 500)!r}", sli=sli)
        if not 0 <= good <= total:
            raise InvalidInput(f"need 0 <= good <= total, got good={good} total={total}", sli=sli)
        now = self._now()
        minute = int(now // 60) if at is None else minute_of(at)
        self._add(sli, minute, good, total, now)

    def observe(self, kind: str, value: float, at: dt.datetime | None = None) -> None:
        """One event of a threshold kind with its measured ``value`` (milliseconds for
        ``query_latency`` and ``event_freshness``, bytes for ``cdc_slot_lag``): good for every
        SLO whose threshold it is at or under. A no-op when no SLO uses ``kind``."""
        targets = self._thresholds.get(kind)
        if targets is None:
            raise InvalidInput(f"{kind!r} is not a threshold SLI kind ({', '.join(sorted(THRESHOLD_KINDS))})")
        if not targets:
            return
        now = self._now()
        minute = int(now // 60) if at is None else minute_of(at)
        for threshold, series in targets:
            self._add(series, minute, 1 if value <= threshold else 0, 1, now)

    def record_query(self, duration_ms: float, *, ok: bool = True, at: dt.datetime | None = None) -> None:
        """One SDK query: counts toward ``query_success`` and (whatever its outcome)
        ``query_latency``."""
        self.record("query_success", 1 if ok else 0, 1, at)
        self.observe("query_latency", duration_ms, at)

    def record_pipeline_run(self, *, ok: bool, at: dt.datetime | None = None) -> None:
        """One pipeline run, toward ``pipeline_success``."""
        self.record("pipeline_success", 1 if ok else 0, 1, at)

    def record_event_delivery(self, latency_ms: float, at: dt.datetime | None = None) -> None:
        """One event delivered end to end after ``latency_ms``, toward ``event_freshness``."""
        self.observe("event_freshness", latency_ms, at)

    def record_slot_lag(self, lag_bytes: int, at: dt.datetime | None = None) -> None:
        """One replication-slot lag sample, toward ``cdc_slot_lag``."""
        self.observe("cdc_slot_lag", lag_bytes, at)

    def _add(self, series: str, minute: int, good: int, total: int, now: float) -> None:
        key = (series, minute)
        with self._lock:
            cell = self._buffer.get(key)
            if cell is None:
                if len(self._buffer) >= self.max_buffered_buckets:
                    self.dropped += total
                    return
                self._buffer[key] = [good, total]
            else:
                cell[0] += good
                cell[1] += total
            self._pending += total or 1
            # With the background thread running, only a full buffer flushes on the caller's
            # thread; the timed flushes happen off the hot path.
            due = self._pending >= self.max_pending or (
                self._thread is None and now - self._last_flush >= self.flush_interval_s)
        if due:
            self._flush_quietly()

    # -- flushing ----------------------------------------------------------------------------
    @property
    def pending(self) -> int:
        """Events buffered and not yet written."""
        return self._pending

    def flush(self) -> int:
        """Write the buffered counts now; returns the number of bucket rows upserted.

        Raises :class:`~headwater.errors.StoreUnavailable` when the store cannot be written (the
        counts stay buffered).
        """
        with self._flush_lock:
            with self._lock:
                batch, self._buffer = self._buffer, {}
                self._pending = 0
                now = self._now()
                self._last_flush = now
            if not batch:
                return 0
            rows = [{"series": s, "minute": m, "good": g, "total": t} for (s, m), (g, t) in batch.items()]
            try:
                self._upsert(rows)
            except (HeadwaterError, sa.exc.SQLAlchemyError) as err:
                self._restore(batch)
                if isinstance(err, HeadwaterError):
                    raise
                raise StoreUnavailable(f"SLO counters not written: {type(err).__name__}") from None
            if now - self._last_prune >= _PRUNE_EVERY_S:
                self._last_prune = now
                try:
                    self.prune()
                except (HeadwaterError, sa.exc.SQLAlchemyError) as err:  # pruning can wait
                    log.warning("SLO bucket retention failed: %s", err)
            return len(rows)

    def _flush_quietly(self) -> None:
        try:
            self.flush()
        except (HeadwaterError, sa.exc.SQLAlchemyError) as err:
            log.warning("SLO counters kept in memory, flush failed: %s", err)

    def _restore(self, batch: dict[tuple[str, int], list[int]]) -> None:
        with self._lock:
            for key, (g, t) in batch.items():
                cell = self._buffer.get(key)
                if cell is None:
                    if len(self._buffer) >= self.max_buffered_buckets:
                        self.dropped += t
                        continue
                    self._buffer[key] = [g, t]
                else:
                    cell[0] += g
                    cell[1] += t
                self._pending += t

    def _upsert(self, rows: list[dict[str, Any]]) -> None:
        stmt = dialect_insert(self.meta.dialect, buckets_table)
        stmt = stmt.on_conflict_do_update(
            index_elements=[buckets_table.c.series, buckets_table.c.minute],
            set_={"good": buckets_table.c.good + stmt.excluded.good,
                  "total": buckets_table.c.total + stmt.excluded.total},
        )
        # A stable order keeps concurrent flushers from deadlocking on Postgres row locks.
        rows.sort(key=lambda r: (r["series"], r["minute"]))
        with self.meta.begin() as conn:
            conn.execute(stmt, rows)

    def prune(self, *, now: dt.datetime | None = None) -> int:
        """Delete buckets older than the retention (longest window plus a day); returns how
        many rows went."""
        current = minute_of(now) if now is not None else int(self._now() // 60)
        with self.meta.begin() as conn:
            result = conn.execute(sa.delete(buckets_table).where(buckets_table.c.minute < current - self._retention))
        return result.rowcount or 0

    # -- background flushing -----------------------------------------------------------------
    def start(self) -> SLORecorder:
        """Flush from a daemon thread every ``flush_interval_s`` (so idle periods are written
        too) and at interpreter exit. Returns ``self``."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="headwater-slo-flush", daemon=True)
            self._thread.start()
            ref = weakref.ref(self)
            atexit.register(lambda: (r := ref()) is not None and r._flush_quietly())
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.flush_interval_s):
            self._flush_quietly()

    def close(self) -> None:
        """Stop the background thread (if any) and flush what is buffered."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join(timeout=self.flush_interval_s + 5)
        self._flush_quietly()

    def __enter__(self) -> SLORecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
