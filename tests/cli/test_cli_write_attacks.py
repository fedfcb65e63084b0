"""Issue 14 through the CLI: write attacks, confusable names and hostile YAML end as one error
line and exit code 1, never a traceback, and change nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from headwater import Config, Platform
from headwater.cli import app

POLICY = """\
version: 1
roles:
  admin:
    grants:
      - {datasets: "*", actions: [select, insert, update, delete]}
  eu_writer:
    grants:
      - {datasets: "app.*", actions: [select, insert, update, delete]}
    row_filters:
      - {datasets: "app.*", where: "country IN principal.countries"}
principals:
  root: {roles: [admin]}
  carol: {roles: [eu_writer], attributes: {countries: [DE, FR]}}
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    cfg = Config.embedded(tmp_path / "hw")
    cfg.pii.scan_on_catalog = False
    path = tmp_path / "headwater.yaml"
    path.write_text(cfg.to_yaml_with_secrets())
    with Platform.open(str(path)) as platform:
        root = platform.session("root")
        root.write("app.people", [{"id": 1, "country": "DE"}, {"id": 2, "country": "US"}], key="id")
        # A table created behind the platform's back: in the store, not in the catalog.
        platform.store("app").write("hidden", root.sql("SELECT 9 AS id, 'US' AS country").to_arrow())
        platform.apply_policy(POLICY, source="test", applied_by="test")
    return path


def run(config_file: Path, *args: str) -> object:
    result = CliRunner().invoke(app, [*args], env={"HEADWATER_CONFIG": str(config_file), "USER": "root"},
                                catch_exceptions=False)
    assert "Traceback" not in result.output
    return result


def rows(config_file: Path, table: str) -> list[dict]:
    with Platform.open(str(config_file)) as platform:
        return platform.session("root").sql(f"SELECT * FROM app.{table} ORDER BY id").to_pylist()


def test_replacing_an_uncatalogued_table_is_checked(config_file: Path) -> None:
    res = run(config_file, "sql", "--as", "carol", "CREATE OR REPLACE TABLE app.hidden AS "
              "SELECT id, country FROM app.people WHERE country = 'DE'")
    assert res.exit_code == 1 and "AccessDenied" in res.output
    res = run(config_file, "sql", "--as", "root", "CREATE TABLE app.hidden AS SELECT 1 AS id")
    assert res.exit_code == 1 and "already exists" in res.output
    assert rows(config_file, "hidden") == [{"id": 9, "country": "US"}]


def test_columns_differing_only_in_case_are_refused(config_file: Path) -> None:
    for who in ("carol", "root"):
        res = run(config_file, "sql", "--as", who, 'INSERT INTO app.people (id, country, "COUNTRY") '
                  "SELECT 3, 'DE', 'US'")
        assert res.exit_code == 1 and "differ only in case" in res.output
    assert rows(config_file, "people") == [{"id": 1, "country": "DE"}, {"id": 2, "country": "US"}]


@pytest.mark.parametrize("name", ["app.peo\u200bple", "app.pe\u043eple", "app.x\u202e"])
def test_confusable_names_are_refused(config_file: Path, name: str) -> None:
    res = run(config_file, "sql", "--as", "root", f'CREATE TABLE {name} AS SELECT 1 AS id')
    assert res.exit_code == 1 and "InvalidInput" in res.output
    assert rows(config_file, "people") == [{"id": 1, "country": "DE"}, {"id": 2, "country": "US"}]


@pytest.mark.parametrize(("text", "line"), [
    ("version: 1\nroles: &r\n  x: *r\n", 3),
    ("version: 1\na: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
     "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
     "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n", 6),
    ("version: 1\nroles: " + "[" * 100 + "]" * 100 + "\n", 2),
    ("version: " + "9" * 5000 + "\n", 1),
])
def test_hostile_policy_yaml_is_one_error_naming_the_line(tmp_path: Path, config_file: Path, text: str,
                                                          line: int) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    for args in (["policy", "validate", str(path)], ["policy", "apply", str(path)]):
        res = run(config_file, *args)
        assert res.exit_code == 1, res.output
        assert "PolicyError" in res.output and f"policy.yaml:{line}:" in res.output


def test_hostile_config_yaml_is_one_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("stores: &s\n  app: *s\n")
    res = CliRunner().invoke(app, ["catalog", "ls", "--config", str(path)], catch_exceptions=False)
    assert res.exit_code == 1 and "ConfigError" in res.output and "line 2" in res.output
    assert "Traceback" not in res.output
