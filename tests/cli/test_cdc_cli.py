"""headwater cdc start/status/stop against the real Postgres (logical replication)."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from headwater.cli import app
from tests.fix_services import require_service

DSN = "host=127.0.0.1 port=5432 dbname=test user=postgres"


@pytest.fixture()
def pg_cdc(tmp_path: Path):
    try:
        with psycopg.connect(DSN, autocommit=True, connect_timeout=3) as conn:
            level = conn.execute("SHOW wal_level").fetchone()[0]
    except psycopg.Error as err:
        require_service("postgres", f"Postgres unreachable: {type(err).__name__}")
    if level != "logical":
        require_service("postgres-logical", "wal_level is not logical (run .ci/run to configure it)")
    tag = uuid.uuid4().hex[:8]
    schema, slot = f"hw_cdccli_{tag}", f"hw_cdccli_{tag}"
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute(f'CREATE TABLE "{schema}".items (id bigint PRIMARY KEY, name text)')
        conn.execute(f'INSERT INTO "{schema}".items VALUES (1, \'one\'), (2, \'two\')')
    cfg = tmp_path / "headwater.yaml"
    cfg.write_text(f"platform_dir: hw\nstores:\n  app: {{kind: postgres, dsn: '{DSN}', schema: {schema}}}\n")
    yield cfg, schema, slot
    CliRunner().invoke(app, ["cdc", "stop"], env={"HEADWATER_CONFIG": str(cfg)})  # if a test failed midway
    with psycopg.connect(DSN, autocommit=True) as conn:
        for _ in range(20):
            active = conn.execute("SELECT active FROM pg_replication_slots WHERE slot_name = %s", [slot]).fetchone()
            if not active or not active[0]:
                break
            time.sleep(0.25)
        conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s",
                     [slot])
        conn.execute(f'DROP PUBLICATION IF EXISTS "{slot}"')
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def test_start_status_stop(pg_cdc) -> None:
    cfg, schema, slot = pg_cdc
    env = {"HEADWATER_CONFIG": str(cfg)}
    runner = CliRunner()
    assert runner.invoke(app, ["catalog", "sync"], env=env).exit_code == 0
    started = runner.invoke(app, ["cdc", "start", "--background", "--slot", slot, "--publication", slot], env=env)
    assert started.exit_code == 0, started.stderr
    topic = f"cdc.app.{schema}.items"
    from headwater import Platform

    with Platform.open(cfg) as platform:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and topic not in {t.name for t in platform.bus.topics()}:
            time.sleep(0.3)
        with psycopg.connect(DSN, autocommit=True) as conn:
            conn.execute(f'UPDATE "{schema}".items SET name = \'uno\' WHERE id = 1')
        consumer = platform.bus.subscribe(topic, "cli-test")
        ops: list[str] = []
        while time.monotonic() < deadline and "u" not in ops:
            batch = consumer.fetch(100, timeout=0.5)
            ops.extend(m.event().data.get("op") for m in batch if isinstance(m.event().data, dict))
            consumer.ack_many(batch)
        consumer.close()
    assert ops.count("r") == 2 and "u" in ops
    status = runner.invoke(app, ["cdc", "status", "-f", "json"], env=env)
    doc = json.loads(status.stdout)
    assert any(s["slot"] == slot for s in doc["slots"])
    assert [{k: t[k] for k in ("table", "topic", "topic_exists")} for t in doc["tables"]] == [
        {"table": f"{schema}.items", "topic": topic, "topic_exists": True}]
    assert runner.invoke(app, ["cdc", "stop"], env=env).exit_code == 0
    assert runner.invoke(app, ["cdc", "stop"], env=env).exit_code == 1
