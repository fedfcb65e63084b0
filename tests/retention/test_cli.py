"""``headwater retention plan|apply`` on a small embedded platform."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from headwater import Config, Platform
from headwater.cli import app
from tests.retention.conftest import seed

RULES = """\
version: 1
defaults: {archive: lake}
rules:
  - dataset: app.customers
    keep: 100d
  - dataset: warehouse.orders
    columns: [coupon]
    null_after: 20d
"""


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path]:
    cfg = Config.embedded(tmp_path / "hw")
    config_path = tmp_path / "headwater.yaml"
    config_path.write_text(cfg.to_yaml_with_secrets())
    with Platform.open(str(config_path)) as p:
        seed(p)
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    return config_path, rules


def invoke(config: Path, *args: str, input: str | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, ["retention", *args], env={"HEADWATER_CONFIG": str(config), "COLUMNS": "200"},
                              input=input, catch_exceptions=False)


def test_plan_table_and_json(setup: tuple[Path, Path]) -> None:
    config, rules = setup
    res = invoke(config, "plan", "--file", str(rules))
    assert res.exit_code == 0, res.output
    assert "app.customers" in res.output and "delete" in res.output and "11" in res.output
    res = invoke(config, "plan", "--file", str(rules), "--json", "--as", "ops")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    counts = {(a["dataset"], a["action"]): a["rows"] for a in doc["actions"]}
    assert counts[("app.customers", "delete")] == 11
    with Platform.open(str(config)) as p:
        assert any(r.action == "retention_plan" for r in p.audit.query(actor="ops"))


def test_apply_asks_first_and_applies_with_yes(setup: tuple[Path, Path]) -> None:
    config, rules = setup
    res = invoke(config, "apply", "--file", str(rules), input="n\n")
    assert res.exit_code == 1 and "aborted" in res.output
    with Platform.open(str(config)) as p:
        assert p.session("admin").sql("SELECT count(*) AS n FROM app.customers").to_pylist()[0]["n"] == 20
    res = invoke(config, "apply", "--file", str(rules), "--yes", "--json", "--as", "ops")
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert report["ok"] and report["actor"] == "ops"
    done = {(r["dataset"], r["action"]): r for r in report["results"]}
    assert done[("app.customers", "delete")]["rows"] == 11
    assert done[("app.customers", "delete")]["archive_path"]
    with Platform.open(str(config)) as p:
        assert p.session("admin").sql("SELECT count(*) AS n FROM app.customers").to_pylist()[0]["n"] == 9
        assert any(r.action == "retention" and r.rows == 11 for r in p.audit.query(actor="ops"))


def test_bad_file_is_one_line_error(setup: tuple[Path, Path], tmp_path: Path) -> None:
    config, _ = setup
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nrules:\n  - dataset: a\n    keep: soon\n")
    res = invoke(config, "plan", "--file", str(bad))
    assert res.exit_code == 1
    assert f"{bad}:4:" in res.output and "Traceback" not in res.output
    res = invoke(config, "plan")
    assert res.exit_code == 1 and "no retention file" in res.output
