"""Migration ``0013_lineage_provenance`` on a lineage store written before it: edges in the
platform's namespace become trusted, others not, and stored SQL loses its literals."""

from __future__ import annotations

import json
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig

import headwater.metadata
from headwater.lineage import LineageStore
from headwater.metadata import MetadataStore


def _upgrade(store: MetadataStore, revision: str) -> None:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(Path(headwater.metadata.__file__).parent / "migrations"))
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def test_legacy_rows_get_provenance_and_lose_literals(tmp_path) -> None:
    store = MetadataStore(f"sqlite:///{tmp_path / 'meta.db'}")
    _upgrade(store, "0012_subject_keys")
    now = "2026-01-01 00:00:00"
    event = {"eventType": "COMPLETE", "job": {"namespace": "headwater://default", "name": "j", "facets": {
        "sql": {"query": "SELECT * FROM app.customers WHERE ssn = '123-45-6789'", "dialect": "duckdb"}}},
        "run": {"runId": "r1"}}
    edge = ("INSERT INTO hw_lineage_column_edges (job_namespace, job_name, run_id, src_namespace, src_name, "
            "src_field, dst_namespace, dst_name, dst_field, type, subtype, created_at) VALUES "
            "(:ns, 'j', 'r1', 'headwater://default', 'app.customers', 'id', 'headwater://default', :dst, 'id', "
            "'DIRECT', 'IDENTITY', :now)")
    with store.engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO hw_lineage_events (run_id, event_type, event_time, job_namespace, job_name, producer, "
            "payload, received_at) VALUES ('r1', 'COMPLETE', 't', 'headwater://default', 'j', 'p', :payload, :now)"),
            {"payload": json.dumps(event), "now": now})
        conn.execute(sa.text(edge), {"ns": "headwater://default", "dst": "warehouse.copy", "now": now})
        conn.execute(sa.text(edge), {"ns": "airflow://prod", "dst": "app.accounts", "now": now})
    store.upgrade()
    lineage = LineageStore(store)
    assert {e.target for e in lineage.copies_of("app.customers", "id")} == {"warehouse.copy.id"}
    assert {e.target for e in lineage.copies_of("app.customers", "id", trusted_only=False)} == {
        "warehouse.copy.id", "app.accounts.id"}
    stored = lineage.events()
    assert "123-45-6789" not in json.dumps(stored)
    assert stored[0]["job"]["facets"]["sql"]["query"] == "SELECT * FROM app.customers WHERE ssn = ?"
    store.close()
