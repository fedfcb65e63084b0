"""``headwater cdc pipeline`` and ``headwater cdc status`` on the embedded platform (SQLite
capture): replicas follow the source, status shows the change-table backlog and halted tables."""

from __future__ import annotations

import contextlib
import json
import sqlite3

from typer.testing import CliRunner

from headwater import Config, Platform
from headwater.cli import app


def _setup(tmp_path):
    cfg_path = tmp_path / "headwater.yaml"
    cfg_path.write_text(Config.embedded(tmp_path / "hw").to_yaml_with_secrets())
    with Platform.open(cfg_path) as platform:
        platform.session("alice").write("app.items", [{"id": 1, "name": "one"}, {"id": 2, "name": "two"}], key="id")
        db = platform.store("app").path
    return {"HEADWATER_CONFIG": str(cfg_path)}, cfg_path, db


def test_pipeline_once_and_status(tmp_path) -> None:
    env, cfg_path, db = _setup(tmp_path)
    runner = CliRunner()
    out = runner.invoke(app, ["cdc", "pipeline", "--once", "--tables", "items"], env=env)
    assert out.exit_code == 0, out.output
    assert "warehouse.items" in out.stdout
    with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as con:
        con.execute("UPDATE items SET name = 'uno' WHERE id = 1")
        con.execute("DELETE FROM items WHERE id = 2")
    status = json.loads(runner.invoke(app, ["cdc", "status", "-f", "json"], env=env).stdout)
    assert status["kind"] == "sqlite" and status["change_table"]["backlog"] == 2
    assert status["change_table"]["tables"] == {"items": 2}
    assert runner.invoke(app, ["cdc", "pipeline", "--once", "--tables", "items"], env=env).exit_code == 0
    status = json.loads(runner.invoke(app, ["cdc", "status", "-f", "json"], env=env).stdout)
    assert status["change_table"]["backlog"] == 0
    row = next(t for t in status["tables"] if t["table"] == "main.items")
    assert row["state"] == "streaming" and row["topic"] == "cdc.app.main.items"
    with Platform.open(cfg_path) as platform:
        rows = platform.session("alice").sql("SELECT id, name FROM warehouse.items WHERE NOT _deleted").to_pylist()
    assert rows == [{"id": 1, "name": "uno"}]
    table = runner.invoke(app, ["cdc", "status"], env=env)
    assert table.exit_code == 0 and "backlog 0" in table.stdout


def test_status_shows_a_halted_table(tmp_path) -> None:
    env, cfg_path, db = _setup(tmp_path)
    runner = CliRunner()
    assert runner.invoke(app, ["cdc", "pipeline", "--once", "--tables", "items"], env=env).exit_code == 0
    with Platform.open(cfg_path) as platform:
        platform.schema_registry.set_config("cdc.app.main.items-value", "FULL")
    with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as con:
        con.execute("ALTER TABLE items ADD COLUMN note TEXT")
        con.execute("INSERT INTO items (id, name, note) VALUES (3, 'three', 'x')")
    out = runner.invoke(app, ["cdc", "pipeline", "--once", "--tables", "items"], env=env)
    assert out.exit_code == 0 and "halted" in out.stdout
    status = json.loads(runner.invoke(app, ["cdc", "status", "-f", "json"], env=env).stdout)
    row = next(t for t in status["tables"] if t["table"] == "main.items")
    assert row["state"] == "halted" and "FULL" in row["error"] and row["backlog"] == 1
    assert "halted" in runner.invoke(app, ["cdc", "status"], env=env).stdout
