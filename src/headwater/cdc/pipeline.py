"""A ready replication pipeline: ``<source>.<table>`` -> bus -> ``<target>.<table>``.

:class:`CDCPipeline` builds the connector that fits the source store -- :class:`SQLiteCDC` for
the embedded SQLite ``app``, :class:`PostgresCDC` for a Postgres one -- and one
:class:`~headwater.cdc.sink.ReplicaSink` per table writing through a session into the target
store (idempotent upserts, de-duplicated by (LSN or ``seq``, position); deletes become
tombstones, so read replicas ``WHERE NOT _deleted``).

* :meth:`CDCPipeline.sync` captures until the source is caught up, then applies everything
  the bus holds: the replica then equals the source (used by tests, the demo and
  ``headwater cdc pipeline --once``).
* :meth:`CDCPipeline.run` streams continuously (the connector in a thread, the sinks draining
  the bus) until :meth:`CDCPipeline.stop`.

**Lineage.** For every table the pipeline emits an OpenLineage run (START, then COMPLETE once
changes were applied) through ``platform.lineage``: job ``cdc.<source>.<table>``, input the
source table, output the replica, and a ``columnLineage`` facet linking **each source column to
the replica column of the same name** (``DIRECT``/``IDENTITY``). A new shape of the table emits
a new run, so the graph follows schema changes.

**Governance.** A replica gets the catalog tags (``pii.email`` ...) of its source columns and
the source's primary key, so tag-based masks and denials apply to the copy as well.

**Provenance and sealing.** The connector publishes through the platform's signing bus
(:mod:`headwater.events.provenance`) with the source's PII columns sealed under each row's data
subject (:mod:`headwater.events.sealing`). :meth:`CDCPipeline.drain` applies only events whose
signature verifies for their topic -- a change event or snapshot marker anyone else put on the
topic is dead-lettered (stage ``validate``, ``UnverifiedProducer``), audited (``cdc_reject``)
and never applied -- and opens the sealed values before writing (a shredded subject's are NULL).

Row schemas go to ``platform.schema_registry`` (``cdc.<source>.<schema>.<table>-value``), with
the catalog's ``pii.*`` tags as ``x-pii`` classifications.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from headwater.cdc.errors import CDCError
from headwater.errors import ConfigError, InvalidInput

__all__ = ["CDCPipeline", "replicate"]

log = logging.getLogger("headwater.cdc")

REPLICA_COLUMNS = ("_lsn", "_seq", "_deleted")


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class CDCPipeline:
    """Replicates tables of ``source`` into ``target`` through change events on the bus.

    ``tables`` are table names in the source store (default: the catalogued datasets of the
    source, else every table the store has). Writes go through ``session`` (default: a session
    for ``principal``), so the target's governance and audit apply. ``name`` names the
    connector state and the consumer group (and, on Postgres, the slot and publication:
    ``hw_<name>``). ``on_alert`` receives schema halts (see :mod:`headwater.cdc.schemas`).
    """

    def __init__(
        self,
        platform: Any,
        *,
        source: str = "app",
        target: str = "warehouse",
        tables: Sequence[str] | None = None,
        principal: str = "headwater-cdc",
        session: Any = None,
        name: str | None = None,
        batch_size: int = 5000,
        on_alert: Callable[[dict[str, Any]], None] | None = None,
        reset: bool = False,
        status_file: str | None = None,
    ) -> None:
        if source == target:
            raise InvalidInput("the replication target must be another store than the source")
        for store in (source, target):
            if store not in platform.config.stores:
                raise ConfigError(f"no store named {store!r}; stores are {', '.join(platform.config.stores)}")
        self.platform = platform
        self.source = source
        self.target = target
        self.name = name or re.sub(r"[^a-z0-9_]", "_", f"{source}_to_{target}".lower())
        if not self.name.replace("_", "").isalnum() or not self.name.islower():
            raise InvalidInput(f"pipeline name {self.name!r} must be lower-case letters, digits and _")
        self.session = session or platform.session(principal)
        self.tables = list(tables) if tables else self._default_tables()
        if not self.tables:
            raise InvalidInput(f"no tables to replicate from {source}; write some or run `headwater catalog sync`")
        self.group = f"hw-cdc-{self.name}"
        self.connector = self._connector(batch_size, on_alert, reset, status_file)
        from headwater.cdc.sink import ReplicaSink

        self.sinks = {t: ReplicaSink(self.session, f"{target}.{t}") for t in self.tables}
        self._consumers: dict[str, Any] = {}
        self._lineage_shapes: dict[str, tuple[str, ...]] = {}
        self._governed: dict[str, tuple[str, ...] | None] = {}
        self._stop = threading.Event()
        self.applied = 0
        """Change events applied to the replicas by this pipeline."""

    def __repr__(self) -> str:
        return f"CDCPipeline({self.source!r} -> {self.target!r}, tables={self.tables!r})"

    # -- construction --------------------------------------------------------------------------
    def _default_tables(self) -> list[str]:
        listed = [d.table for d in self.platform.catalog.list(f"{self.source}.*")]
        if listed:
            return listed
        return [t.name for t in self.platform.store(self.source).tables()]

    def _classify(self, table: str) -> dict[str, str]:
        ds = self.platform.catalog.find(f"{self.source}.{table.rpartition('.')[2]}")
        if ds is None:
            return {}
        return {c.name: tag[4:] for c in ds.columns for tag in c.tags if tag.startswith("pii.")}

    def _connector(self, batch_size: int, on_alert: Any, reset: bool, status_file: str | None) -> Any:
        from headwater.config import PostgresConfig, SQLiteConfig

        cfg = self.platform.config.stores[self.source]
        gov = self.platform.event_governance
        sealer = gov.sealer
        source = self.source

        def seal(topic: str) -> Any:
            return sealer.for_rows(topic, f"{source}.{topic.rpartition('.')[2]}")

        # Published signed (the pipeline applies only what verifies) with PII sealed.
        common = {"bus": gov.provenance.signing_bus(self.platform.bus), "store": self.source,
                  "batch_size": batch_size, "reset": reset, "registry": self.platform.schema_registry,
                  "on_alert": on_alert, "classify": self._classify, "status_file": status_file, "seal": seal}
        if isinstance(cfg, SQLiteConfig):
            from headwater.cdc.sqlite import SQLiteCDC

            return SQLiteCDC(self.platform.store(self.source).path, tables=self.tables, name=self.name, **common)
        if isinstance(cfg, PostgresConfig):
            from headwater.cdc.postgres import PostgresCDC

            recorder = self.platform.slo_recorder
            return PostgresCDC(cfg.dsn.get_secret_value(), slot=f"hw_{self.name}", publication=f"hw_{self.name}",
                               tables=[f"{cfg.schema_}.{t}" for t in self.tables], heartbeat_interval=1.0,
                               on_lag=recorder.record_slot_lag if recorder is not None else None, **common)
        raise ConfigError(f"store {self.source!r} ({type(cfg).__name__}) has no change capture; "
                          "CDC reads SQLite (triggers) or Postgres (logical replication)")

    def topic_of(self, table: str) -> str:
        """The topic carrying ``table``'s changes."""
        from headwater.config import PostgresConfig

        cfg = self.platform.config.stores[self.source]
        return self.connector.topic_of(f"{cfg.schema_}.{table}" if isinstance(cfg, PostgresConfig) else table)

    def _consumer(self, table: str) -> Any:
        c = self._consumers.get(table)
        if c is None:
            topic = self.topic_of(table)
            self.platform.bus.create_topic(topic, partitions=1)
            c = self._consumers[table] = self.platform.bus.subscribe(topic, self.group)
        return c

    # -- running -------------------------------------------------------------------------------
    def drain(self, *, timeout: float = 0.2, batch: int = 5000) -> dict[str, int]:
        """Apply every change event the bus holds for the tables; returns applied per table.

        Messages are acknowledged only after the replica write committed."""
        from headwater.telemetry.messaging import messaging_system, processing

        system = messaging_system(self.platform.bus)
        applied: dict[str, int] = {}
        for table in self.tables:
            consumer, sink = self._consumer(table), self.sinks[table]
            n = 0
            while True:
                messages = consumer.fetch(batch, timeout=timeout)
                if not messages:
                    break
                events = self._admit(messages)
                if events:
                    with processing(system, self.topic_of(table), self.group, events):
                        n += sink.write(events)
                consumer.ack_many(messages)
                self._record_freshness(events)
            applied[table] = n
            self.applied += n
            if n:
                self._lineage(table, rows=n)
                self._govern(table)
        return applied

    def _admit(self, messages: list[Any]) -> list[Any]:
        """The events of ``messages`` the connector wrote, PII opened for the replica; anything
        else is dead-lettered with its reason (stage ``validate``: not signed by the connector;
        ``deserialise``: not an envelope) and never applied."""
        from headwater.events.bus.errors import InvalidEvent
        from headwater.events.dlq import Stage

        gov = self.platform.event_governance
        provenance = gov.provenance
        out = []
        for m in messages:
            if not provenance.verify(m.topic, m.value):
                self._reject(m, Stage.VALIDATE, (
                    "UnverifiedProducer",
                    f"not written by this platform's {provenance.identity} connector for {m.topic} (no valid "
                    "signature): a change event from anyone else is never applied"))
                continue
            try:
                event = m.event()
            except InvalidEvent as err:
                self._reject(m, Stage.DESERIALISE, err)
                continue
            out.append(_opened(gov.sealer, m.topic, event))
        return out

    def _reject(self, message: Any, stage: Any, error: Any) -> None:
        from headwater.audit import AuditEvent

        letter = self.platform.dead_letters.add(
            message.value, stage=stage, error=error, attempts=1, consumer_group=self.group, topic=message.topic,
            partition=message.partition, offset=message.offset, key=message.key)
        log.warning("CDC pipeline %s: dead-lettered %s@%s:%s (%s)", self.name, message.topic, message.partition,
                    message.offset, letter.reason.error_class)
        self.platform.record(AuditEvent(
            actor="unknown", action="cdc_reject", decision="deny", reason=letter.reason.error_class,
            extra={"topic": message.topic, "partition": message.partition, "offset": message.offset,
                   "dead_letter": letter.id, "pipeline": self.name}))

    def _govern(self, table: str) -> None:
        """Give the replica its source's classification tags (so masks and row policies that
        select by tag cover the copy too) and its primary key, once per shape."""
        shape = self._lineage_shapes.get(table)
        if self._governed.get(table) == shape:
            return
        catalog = self.platform.catalog
        src = catalog.find(f"{self.source}.{table}")
        dst = catalog.find(f"{self.target}.{table}")
        if src is None or dst is None:
            return
        names = set(dst.column_names)
        for col in src.columns:
            if col.tags and col.name in names:
                catalog.set_tags(dst.name, col.name, col.tags)
        if src.primary_key and not dst.primary_key:
            catalog.update(dst.name, primary_key=list(src.primary_key))
        self._governed[table] = shape

    def sync(self, *, idle_timeout: float | None = None) -> dict[str, Any]:
        """Capture until the source has been idle ``idle_timeout`` seconds (default: 0.05 s for
        a SQLite change table, 0.3 s for a replication stream), then apply all of it; returns
        ``{"published", "applied": {table: n}, "halted"}``."""
        from headwater.cdc.sqlite import SQLiteCDC

        if idle_timeout is None:
            idle_timeout = 0.05 if isinstance(self.connector, SQLiteCDC) else 0.3
        self._lineage_start()
        try:
            published = self.connector.run(idle_timeout=idle_timeout)
            applied = self.drain(timeout=0.05)  # everything published is already on the bus
        except BaseException:
            self._record_run(ok=False)
            raise
        halted = sorted(self.connector.schemas.halted)
        self._record_run(ok=not halted)
        return {"published": published, "applied": applied, "halted": halted}

    def _record_freshness(self, events: list[Any]) -> None:
        """Commit-to-replica milliseconds of each applied change toward ``event_freshness``."""
        recorder = self.platform.slo_recorder
        if recorder is None:
            return
        now = dt.datetime.now(dt.UTC)
        for e in events:
            recorder.record_event_delivery(max(0.0, (now - e.time).total_seconds() * 1000))

    def _record_run(self, *, ok: bool) -> None:
        """One pipeline run toward the ``pipeline_success`` SLI (a halted table is a failure)."""
        recorder = self.platform.slo_recorder
        if recorder is not None:
            recorder.record_pipeline_run(ok=ok)

    def run(self, *, poll: float = 0.5) -> None:
        """Stream until :meth:`stop` (the connector in a thread, sinks draining every ``poll``)."""
        self._stop.clear()
        self._lineage_start()
        errors: list[BaseException] = []

        def capture() -> None:
            try:
                self.connector.run()
            except BaseException as err:  # noqa: BLE001 - re-raised on the caller's thread
                errors.append(err)
                self._stop.set()

        thread = threading.Thread(target=capture, name=f"cdc-{self.name}", daemon=True)
        thread.start()
        try:
            while not self._stop.is_set():
                self.drain(timeout=poll)
        finally:
            self.connector.stop()
            thread.join(30)
            self.drain()
            self._record_run(ok=not errors and not self.connector.schemas.halted)
        if errors:
            raise errors[0]

    def stop(self) -> None:
        """Ask :meth:`run` to finish: the connector confirms what it published, the sinks apply
        what is on the bus (thread-safe)."""
        self._stop.set()
        self.connector.stop()

    def status(self) -> dict[str, Any]:
        """The connector's status plus the replicas and changes applied."""
        doc = self.connector.status()
        doc["pipeline"] = {"source": self.source, "target": self.target, "applied": self.applied,
                           "replicas": {t: f"{self.target}.{t}" for t in self.tables}}
        return doc

    def close(self) -> None:
        """Leave the consumer groups (the source capture stays; see :meth:`drop`)."""
        for c in self._consumers.values():
            c.close()
        self._consumers.clear()

    def drop(self) -> None:
        """Remove the source-side capture (slot and publication, or triggers and change table)."""
        self.close()
        self.connector.drop()

    # -- lineage -------------------------------------------------------------------------------
    def _columns(self, table: str) -> list[tuple[str, str]]:
        info = self.platform.store(self.source).table(table)
        return [(c.name, str(c.type)) for c in info.columns]

    def _lineage_start(self) -> None:
        for table in self.tables:
            try:
                self._lineage(table, rows=None)
            except CDCError:
                raise
            except Exception as err:  # noqa: BLE001 - lineage must not stop replication
                log.warning("CDC lineage for %s.%s not recorded: %s", self.source, table, err)

    def _lineage(self, table: str, *, rows: int | None) -> None:
        """One OpenLineage run per shape of ``table``: source column -> replica column."""
        columns = self._columns(table)
        shape = tuple(c for c, _ in columns)
        if self._lineage_shapes.get(table) == shape:
            return
        from headwater.lineage import (
            FACET_SCHEMA_URLS,
            PRODUCER,
            RUN_EVENT_SCHEMA_URL,
            complete_event,
        )

        lineage = self.platform.lineage
        src_ns, src_name = lineage.identity.identity(f"{self.source}.{table}")
        dst_ns, dst_name = lineage.identity.identity(f"{self.target}.{table}")

        def facet(key: str, body: dict[str, Any]) -> dict[str, Any]:
            return {"_producer": PRODUCER, "_schemaURL": FACET_SCHEMA_URLS[key], **body}

        def schema(cols: list[tuple[str, str]]) -> dict[str, Any]:
            return facet("schema", {"fields": [{"name": n, "type": t, "ordinal_position": i}
                                               for i, (n, t) in enumerate(cols, start=1)]})

        replica = columns + [("_lsn", "int64"), ("_seq", "int64"), ("_deleted", "bool")]
        fields = {n: {"inputFields": [{"namespace": src_ns, "name": src_name, "field": n,
                                       "transformations": [{"type": "DIRECT", "subtype": "IDENTITY"}]}]}
                  for n, _ in columns}
        start = {
            "eventType": "START", "eventTime": _now(), "producer": PRODUCER, "schemaURL": RUN_EVENT_SCHEMA_URL,
            "run": {"runId": str(uuid.uuid4())},
            "job": {"namespace": lineage.job_namespace, "name": f"cdc.{self.source}.{table}",
                    "facets": {"jobType": facet("jobType", {"processingType": "STREAMING", "integration": "HEADWATER",
                                                            "jobType": "CDC"})}},
            "inputs": [{"namespace": src_ns, "name": src_name, "facets": {"schema": schema(columns)}}],
            "outputs": [{"namespace": dst_ns, "name": dst_name,
                         "facets": {"schema": schema(replica),
                                    "columnLineage": facet("columnLineage", {"fields": fields})}}],
        }
        lineage.emit(start)
        lineage.emit(complete_event(start, rows_written=rows))
        self._lineage_shapes[table] = shape


def _opened(sealer: Any, topic: str, event: Any) -> Any:
    """``event`` with the sealed values of its row images opened for the replica (a shredded
    subject's become NULL; a value sealed for another topic or column is not this change's and
    becomes NULL too)."""
    from headwater.errors import InvalidInput
    from headwater.events.sealing import is_sealed

    data = event.data
    if not isinstance(data, dict):
        return event

    def row(image: Any) -> Any:
        if not isinstance(image, dict) or not any(is_sealed(v) for v in image.values()):
            return image
        out = {}
        for k, v in image.items():
            if is_sealed(v):
                try:
                    ctx = sealer.open(v)
                except InvalidInput:
                    ctx = None
                v = ctx.value if ctx is not None and ctx.topic == topic and ctx.field == k else None
            out[k] = v
        return out

    before, after = row(data.get("before")), row(data.get("after"))
    if before is data.get("before") and after is data.get("after"):
        return event
    return event._evolve(data={**data, "before": before, "after": after})


def replicate(platform: Any, *, source: str = "app", target: str = "warehouse",
              tables: Sequence[str] | None = None, **options: Any) -> dict[str, Any]:
    """Bring ``target``'s replicas of ``source``'s tables up to date once (capture until idle,
    apply, record lineage); returns what :meth:`CDCPipeline.sync` returns.

    The source-side capture stays in place (triggers, or the slot, which retains WAL until the
    next call) so the next call continues where this one stopped; ``CDCPipeline(...).drop()``
    removes it."""
    pipeline = CDCPipeline(platform, source=source, target=target, tables=tables, **options)
    try:
        return pipeline.sync()
    finally:
        pipeline.close()
