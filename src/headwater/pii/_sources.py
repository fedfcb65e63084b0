"""Scans that run where data enters the platform: new catalog datasets and event topics.

* :func:`scan_catalogued` classifies a bounded sample of each newly catalogued dataset, read by
  the platform itself (no policy: the values never leave this function, only counts do), and
  keeps the proposals on the dataset (``properties["pii_scan"]``) for ``headwater pii apply``;
  with ``pii.auto_apply`` the confident ones become tags at once. A dataset that cannot be read
  is recorded with its error, never skipped silently.
* :func:`scan_topic` reads a sample of a topic's events with a throw-away consumer group (no
  offsets move for real consumers), classifies every payload field (nested fields as dotted
  paths) and compares the findings with the ``x-pii`` classifications of the event's schema:
  a field that carries PII but is not classified is reported as ``unclassified``.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from sqlglot import exp

from headwater.errors import HeadwaterError, InvalidInput
from headwater.pii._scan import ScanReport, apply_proposals, classify_table

if TYPE_CHECKING:
    from headwater.platform import Platform

__all__ = ["TopicScanReport", "scan_catalogued", "scan_topic"]

log = logging.getLogger("headwater.pii")

PROPERTY = "pii_scan"
"""The dataset property that holds the catalogue scan's proposals (counts only)."""


def _classify(name: str, table: pa.Table, started: float) -> ScanReport:
    report = classify_table(name, table)
    report.elapsed_s = time.perf_counter() - started
    return report


def scan_catalogued(platform: Platform, names: Iterable[str], *, sample: int | None = None) -> list[ScanReport]:
    """Scan each named dataset's first ``sample`` rows; keep proposals on the dataset."""
    cfg = platform.config.pii
    limit = sample or cfg.sample
    reports = []
    for name in names:
        started = time.perf_counter()
        try:
            ds = platform.catalog.get(name)
            store = platform.store(ds.store)
            sql, params = store.render(exp.select("*").from_(store.table_expr(ds.table)).limit(limit))
            report = _classify(ds.name, store.execute(sql, params).read_all(), started)
        except HeadwaterError as err:
            report = ScanReport(dataset=name, rows_sampled=0, error=f"{type(err).__name__}: {err}"[:300])
            log.warning("pii scan of new dataset %s failed: %s", name, report.error)
        reports.append(report)
        _remember(platform, report)
        if cfg.auto_apply and report.error is None:
            apply_proposals(platform.catalog, report, min_confidence=cfg.min_confidence)
    return reports


def _remember(platform: Platform, report: ScanReport) -> None:
    try:
        ds = platform.catalog.get(report.dataset)
    except HeadwaterError:
        return
    props = dict(ds.properties or {})
    props[PROPERTY] = {
        "scanned_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "rows_sampled": report.rows_sampled,
        "error": report.error,
        "unreadable": report.unreadable,
        "proposals": [{"column": c, "tag": p.tag, "confidence": round(p.confidence, 3), "matches": p.matches,
                       "sampled": p.sampled} for c, p in report.proposals],
    }
    platform.catalog.update(report.dataset, properties=props)


@dataclass(slots=True)
class TopicScanReport:
    """What a topic's payloads hold: per-field proposals and fields the schema leaves unclassified."""

    topic: str
    events_sampled: int
    fields: ScanReport
    classified: dict[str, str] = field(default_factory=dict)
    """Field path -> the schema's ``x-pii`` classification (from the registry)."""
    unparseable: int = 0

    @property
    def unclassified(self) -> list[tuple[str, str]]:
        """``(field, proposed tag)`` for PII found in fields the schema does not classify."""
        out = []
        for path, proposal in self.fields.proposals:
            if path not in self.classified and path.rsplit(".", 1)[-1] not in self.classified:
                out.append((path, proposal.tag))
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (counts and tags only)."""
        return {"topic": self.topic, "events_sampled": self.events_sampled, "unparseable": self.unparseable,
                "classified": self.classified, "unclassified": [{"field": f, "tag": t} for f, t in self.unclassified],
                "fields": self.fields.to_dict()["columns"]}


def _flatten(value: Any, prefix: str, out: dict[str, list[Any]], row: int) -> None:
    if isinstance(value, Mapping):
        for k, v in value.items():
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), out, row)
        return
    if isinstance(value, list):
        for item in value[:20]:
            _flatten(item, f"{prefix}[]", out, row)
        return
    column = out.setdefault(prefix or "$", [])
    column.extend([None] * (row - len(column)))
    column.append(None if value is None else str(value))


def scan_topic(platform: Platform, topic: str, *, sample: int = 500, timeout: float = 2.0) -> TopicScanReport:
    """Classify the payload fields of up to ``sample`` events of ``topic``."""
    if sample <= 0:
        raise InvalidInput(f"sample must be a positive number of events, not {sample!r}")
    started = time.perf_counter()
    consumer = platform.bus.subscribe(topic, f"hw-pii-scan-{secrets.token_hex(4)}")
    columns: dict[str, list[Any]] = {}
    classified: dict[str, str] = {}
    n = bad = 0
    try:
        deadline = time.monotonic() + timeout
        while n + bad < sample and time.monotonic() < deadline:
            messages = consumer.fetch(min(256, sample - n - bad), timeout=0.2)
            if not messages:
                continue
            for m in messages:
                try:
                    event = m.event()
                except HeadwaterError:
                    bad += 1
                    continue
                if not classified:
                    classified.update(_classifications(platform, event))
                _flatten(event.data, "", columns, n)
                n += 1
    finally:
        consumer.close()
    for values in columns.values():
        values.extend([None] * (n - len(values)))
    table = pa.table({k: pa.array(v, type=pa.string()) for k, v in columns.items()}) if columns else pa.table({})
    report = _classify(f"topic:{topic}", table, started)
    return TopicScanReport(topic=topic, events_sampled=n, fields=report, classified=classified, unparseable=bad)


def _classifications(platform: Platform, event: Any) -> dict[str, str]:
    """``x-pii`` classifications of the event's registered schema, by field path."""
    if event.schemaid is None:
        return {}
    from headwater.events.registry import classifications

    try:
        registered = platform.schema_registry.get_by_id(event.schemaid)
        return classifications(registered.schema, registered.schema_type)
    except HeadwaterError:
        return {}
