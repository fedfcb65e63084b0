"""PII scans where data enters: new catalog datasets and event topic payloads."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from headwater import Config, Platform
from headwater.events.envelope import Event
from headwater.pii import scan_catalogued, scan_topic

ROWS = [{"id": i, "contact": f"user{i}@example.com", "note": "hello", "amount": i * 1.5} for i in range(200)]


def test_new_dataset_is_scanned_when_catalogued(platform: Platform):
    platform.session("setup").write("app.contacts", pa.Table.from_pylist(ROWS), key="id")
    scan = platform.catalog.get("app.contacts").properties["pii_scan"]
    assert scan["rows_sampled"] == 200 and scan["error"] is None
    tags = {(p["column"], p["tag"]) for p in scan["proposals"]}
    assert ("contact", "pii.email") in tags
    assert not any(p["column"] in ("note", "amount", "id") for p in scan["proposals"])
    assert "user1@" not in json.dumps(scan)  # counts only, never values
    # proposals are not tags until applied
    assert not platform.catalog.get("app.contacts").column("contact").tags


def test_auto_apply_and_opt_out(tmp_path):
    cfg = Config.embedded(tmp_path / "a")
    cfg.pii.auto_apply = True
    with Platform.open(cfg) as p:
        p.session("setup").write("warehouse.contacts", pa.Table.from_pylist(ROWS))
        assert "pii.email" in p.catalog.get("warehouse.contacts").column("contact").tags
    cfg = Config.embedded(tmp_path / "b")
    cfg.pii.scan_on_catalog = False
    with Platform.open(cfg) as p:
        p.session("setup").write("warehouse.contacts", pa.Table.from_pylist(ROWS))
        assert "pii_scan" not in p.catalog.get("warehouse.contacts").properties


def test_sync_scans_tables_created_outside_headwater(platform: Platform):
    store = platform.store("app")
    store.write("raw_signups", pa.Table.from_pylist(ROWS))  # straight to the store: not catalogued yet
    report = platform.sync_catalog(["app"])
    assert "app.raw_signups" in report.added
    assert platform.catalog.get("app.raw_signups").properties["pii_scan"]["proposals"]


def test_unreadable_dataset_is_reported(platform: Platform):
    reports = scan_catalogued(platform, ["app.missing_table"])
    assert reports[0].error and "NotFound" in reports[0].error


def test_topic_payloads_checked_against_schema_classifications(platform: Platform):
    schema = {"type": "object", "properties": {
        "order_id": {"type": "integer"},
        "email": {"type": "string", "x-pii": "email"},
        "comment": {"type": "string"}}}
    platform.register_schema("orders-value", json.dumps(schema))
    platform.bus.create_topic("orders", 1)
    producer = platform.producer()
    for i in range(50):
        producer.publish("orders", Event(type="order.created", source="/shop", data={
            "order_id": i, "email": f"b{i}@example.org", "comment": f"call me on +1 415-555-01{i:02d}"}))
    report = scan_topic(platform, "orders", sample=40)
    assert report.events_sampled == 40
    assert report.classified == {"email": "email"}
    assert ("comment", "pii.phone") in report.unclassified
    assert not any(f == "email" for f, _ in report.unclassified)
    assert "example.org" not in json.dumps(report.to_dict())
    # the scan's own consumer group moved no real consumer: a new group still sees all 50
    assert len(platform.bus.subscribe("orders", "real").fetch(100, timeout=1.0)) == 50


def test_topic_sample_must_be_positive(platform: Platform):
    with pytest.raises(Exception, match="positive"):
        scan_topic(platform, "orders", sample=0)
