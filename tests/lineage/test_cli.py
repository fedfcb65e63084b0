"""``headwater lineage show`` / ``post`` under a policy: reads show only granted datasets,
posting needs the lineage.write grant; errors are one line on stderr, never a traceback."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from headwater import Config, Platform
from headwater.cli import app
from tests.lineage._gov import forged_identity, seed


@pytest.fixture(scope="module")
def config_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("cli")
    cfg = Config.embedded(directory / ".headwater")
    path = directory / "headwater.yaml"
    path.write_text(cfg.to_yaml_with_secrets())
    platform = Platform.open(Config.load(path))
    seed(platform)
    platform.close()
    return path


@pytest.fixture
def run(config_path: Path) -> Callable[..., object]:
    runner = CliRunner()

    def invoke(*args: str, user: str = "nobody") -> object:
        return runner.invoke(app, list(args), env={"HEADWATER_CONFIG": str(config_path), "USER": user},
                             catch_exceptions=False)

    return invoke


def test_show_hides_datasets_the_reader_may_not_see(run) -> None:
    res = run("lineage", "show", "warehouse.copy", "--as", "bob", "-f", "json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["hidden"] == 1 and doc["datasets"] == [] and doc["columns"] == []
    assert "customers" not in res.stdout and "app." not in res.stdout
    table = run("lineage", "show", "warehouse.copy.id", "--as", "bob")
    assert table.exit_code == 0 and "1 dataset you cannot see" in table.stdout
    assert "customers" not in table.stdout
    full = run("lineage", "show", "warehouse.copy", "-f", "json", user="alice")
    assert json.loads(full.stdout)["datasets"] == ["app.customers"]


def test_show_of_a_dataset_without_a_grant_is_refused(run) -> None:
    for args in (("--as", "bob", "app.customers"), ("warehouse.copy",)):  # bob; then $USER=nobody
        res = run("lineage", "show", *args[-1:], *args[:-1], "--downstream")
        assert res.exit_code == 1
        assert "AccessDenied" in res.stderr and "Traceback" not in res.output


def test_post_needs_the_write_grant(run, config_path: Path, tmp_path: Path) -> None:
    path = tmp_path / "event.json"
    path.write_text(json.dumps(forged_identity()))
    denied = run("lineage", "post", str(path), "--as", "mallory")
    assert denied.exit_code == 1 and "AccessDenied" in denied.stderr and "Traceback" not in denied.output
    ok = run("lineage", "post", str(path), "--as", "etl")
    assert ok.exit_code == 0, ok.output
    shown = json.loads(run("lineage", "show", "app.customers.id", "--downstream", "-f", "json", user="alice").stdout)
    forged = next(e for e in shown["edges"] if e["target"] == "app.accounts.id")
    assert forged["trusted"] is False and forged["producer"] == "etl"
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    res = run("lineage", "post", str(bad), "--as", "etl")
    assert res.exit_code == 1 and "InvalidInput" in res.stderr
    missing = run("lineage", "post", str(tmp_path / "nope.json"), "--as", "etl")
    assert missing.exit_code == 1 and "Traceback" not in missing.output
