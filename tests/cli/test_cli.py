"""The CLI end to end on a small demo platform: formats, paging, errors on stderr."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from headwater.cli import app
from headwater.demo import run_demo


@pytest.fixture(scope="module")
def demo_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("demo")
    from rich.console import Console

    platform = run_demo(directory, console=Console(quiet=True), n_customers=500, n_orders=2_000, n_events=1_000)
    platform.close()
    return directory / "headwater.yaml"


@pytest.fixture()
def run(demo_config: Path):
    runner = CliRunner()

    def invoke(*args: str) -> object:
        # The demo applies its policy (default deny), so act as its admin unless told otherwise.
        env = {"HEADWATER_CONFIG": str(demo_config), "USER": "alice"}
        return runner.invoke(app, list(args), env=env, catch_exceptions=False)

    return invoke


def test_sql_json_is_one_object_with_cursor(run) -> None:
    res = run("sql", "SELECT id, country FROM app.customers ORDER BY id", "--format", "json", "--page-size", "3")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["columns"] == ["id", "country"]
    assert [r["id"] for r in doc["rows"]] == [1, 2, 3]
    assert doc["next_cursor"]
    res2 = run("sql", "SELECT id, country FROM app.customers ORDER BY id", "--format", "json", "--page-size", "3",
               "--cursor", doc["next_cursor"])
    assert [r["id"] for r in json.loads(res2.stdout)["rows"]] == [4, 5, 6]


def test_sql_as_principal_and_last_page_has_null_cursor(run) -> None:
    res = run("sql", "SELECT count(*) AS n FROM app.orders", "--format", "json", "--as", "bob")
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    alice = json.loads(run("sql", "SELECT count(*) AS n FROM app.orders", "--format", "json", "--as", "alice").stdout)
    # the demo's retention step archived and deleted the oldest orders; bob sees every remaining one
    assert doc["rows"] == alice["rows"] and 0 < doc["rows"][0]["n"] < 2_000
    assert doc["next_cursor"] is None


def test_cursor_from_another_principal_is_refused(run) -> None:
    q = "SELECT id FROM app.customers"
    token = json.loads(run("sql", q, "--format", "json", "--page-size", "2", "--as", "alice").stdout)["next_cursor"]
    res = run("sql", q, "--format", "json", "--page-size", "2", "--as", "carol", "--cursor", token)
    assert res.exit_code == 1
    assert "InvalidCursor" in res.stderr
    assert "Traceback" not in res.stderr + res.stdout


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("SELEC 1", "QueryParseError"),
        ("SELECT nope FROM app.customers", "ColumnNotFound"),
        ("SELECT * FROM app.nothing", "DatasetNotFound"),
        ("DELETE FROM app.customers", "QueryRejected"),
        ("SELECT * FROM read_csv('/etc/passwd')", "QueryRejected"),
    ],
)
def test_errors_go_to_stderr_without_traceback(run, query: str, error: str) -> None:
    res = run("sql", query)
    assert res.exit_code == 1
    assert error in res.stderr
    assert "Traceback" not in res.stderr


def test_csv_and_parquet_exports(run, tmp_path: Path) -> None:
    out = tmp_path / "c.csv"
    assert run("sql", "SELECT * FROM app.customers", "--format", "csv", "--output", str(out)).exit_code == 0
    lines = out.read_text().splitlines()
    assert lines[0].split(",")[:2] == ["id", "name"]
    # header + 500 generated + 1 appended + 2 late customers (events step) + 1 inserted and
    # 1 deleted by the CDC step - 1 erased (customers.id=7)
    assert len(lines) == 1 + 502
    pq_out = tmp_path / "e.parquet"
    assert run("sql", "SELECT * FROM lake.web_events", "--format", "parquet", "--output", str(pq_out)).exit_code == 0
    n = json.loads(run("sql", "SELECT count(*) AS n FROM lake.web_events", "-f", "json").stdout)["rows"][0]["n"]
    assert pq.read_table(pq_out).num_rows == n and 0 < n < 1_000  # retention removed the oldest events


def test_parquet_needs_output(run) -> None:
    res = run("sql", "SELECT 1 AS x", "--format", "parquet")
    assert res.exit_code == 1 and "--output" in res.stderr


def test_catalog_commands(run) -> None:
    res = run("catalog", "ls", "--format", "json")
    names = {d["name"] for d in json.loads(res.stdout)}
    assert names == {"app.customers", "app.orders", "lake.web_events", "warehouse.order_facts",
                     "warehouse.order_events", "warehouse.customers"}
    show = json.loads(run("catalog", "show", "app.customers", "--format", "json").stdout)
    assert show["primary_key"] == ["id"]
    assert [c["name"] for c in show["columns"]][:3] == ["id", "name", "email"]
    assert run("catalog", "sync").exit_code == 0
    missing = run("catalog", "show", "app.nope")
    assert missing.exit_code == 1 and "DatasetNotFound" in missing.stderr


def test_bad_config_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "headwater.yaml"
    bad.write_text("stores:\n  app: {kind: sqlite}\n")
    res = CliRunner().invoke(app, ["catalog", "ls"], env={"HEADWATER_CONFIG": str(bad)})
    assert res.exit_code == 1
    assert "ConfigError" in res.stderr and "stores.app" in res.stderr


def test_init_writes_a_usable_config(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["init", "--dir", str(tmp_path)]).exit_code == 0
    cfg = tmp_path / "headwater.yaml"
    res = runner.invoke(app, ["sql", "SELECT 1 AS one", "--format", "json"], env={"HEADWATER_CONFIG": str(cfg)})
    assert json.loads(res.stdout)["rows"] == [{"one": 1}]
    assert (tmp_path / ".headwater" / "metadata.db").exists()
    again = runner.invoke(app, ["init", "--dir", str(tmp_path)])
    assert again.exit_code == 1 and "already exists" in again.stderr


def test_demo_principals_see_the_documented_views(run) -> None:
    q = "SELECT * FROM app.customers ORDER BY id LIMIT 50"
    alice = json.loads(run("sql", q, "-f", "json", "--as", "alice").stdout)
    bob = json.loads(run("sql", q, "-f", "json", "--as", "bob").stdout)
    carol = json.loads(run("sql", q, "-f", "json", "--as", "carol").stdout)
    assert "ssn" in alice["columns"] and "ssn" not in bob["columns"]
    raw = {r["id"]: r for r in alice["rows"]}
    # retention tokenised the oldest emails (tok_..., no domain left to show) and nulled old SSNs
    assert all(r["email"].startswith("***@") or (r["email"] == "****" and raw[r["id"]]["email"].startswith("tok_"))
               for r in bob["rows"])
    assert any(r["email"].startswith("***@") for r in bob["rows"])
    assert all(r["phone"].startswith("****") for r in bob["rows"])
    eu = {"DE", "FR", "IT", "ES", "NL", "IE", "PL"}
    assert carol["rows"] and all(r["country"] in eu for r in carol["rows"])
    assert all((r["ssn"] is None or r["ssn"].startswith("****"))
               and ("@" in r["email"] or r["email"].startswith("tok_")) and not r["email"].startswith("***")
               for r in carol["rows"])
    assert any(r["ssn"] is not None for r in carol["rows"])
    denied = run("sql", "SELECT ssn FROM app.customers", "--as", "bob")
    assert denied.exit_code == 1 and "AccessDenied" in denied.stderr and "rule" in denied.stderr
    nobody = run("sql", "SELECT 1 AS x FROM app.customers", "--as", "mallory")
    assert nobody.exit_code == 1 and "default-deny" in nobody.stderr


def test_policy_commands(run, tmp_path: Path) -> None:
    shown = run("policy", "show")
    assert shown.exit_code == 0 and "support_eu" in shown.stdout
    edited = tmp_path / "policy.yaml"
    edited.write_text(shown.stdout.replace("{tag: pii.phone, mask: last4}", "{tag: pii.phone, mask: redact}"))
    assert run("policy", "validate", str(edited)).exit_code == 0
    diff = run("policy", "diff", str(edited))
    assert diff.exit_code == 0 and "redact" in diff.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nroles:\n  x:\n    grants:\n      - {datasets: '*', actions: [fly]}\n")
    res = run("policy", "validate", str(bad))
    assert res.exit_code == 1 and "PolicyError" in res.stderr and ":5" in res.stderr
    hist = run("policy", "show", "--history")
    assert hist.exit_code == 0 and "demo" in hist.stdout


def test_api_keys_lifecycle(run) -> None:
    created = run("keys", "create", "carol", "--expires", "1d", "--description", "ci")
    assert created.exit_code == 0
    fields = dict(line.split(":", 1) for line in created.stdout.strip().splitlines())
    key_id, secret, token = fields["key id"].strip(), fields["secret"].strip(), fields["token"].strip()
    assert token == f"{key_id}.{secret}"
    listed = json.loads(run("keys", "ls", "--format", "json").stdout)
    mine = [k for k in listed if k["key_id"] == key_id]
    assert mine and mine[0]["active"] and mine[0]["principal"] == "carol"
    assert secret not in run("keys", "ls").stdout
    q = "SELECT DISTINCT country FROM app.customers"
    ok = run("sql", q, "-f", "json", "--token", token)
    assert ok.exit_code == 0, ok.stderr
    assert {r["country"] for r in json.loads(ok.stdout)["rows"]} <= {"DE", "FR", "IT", "ES", "NL", "IE", "PL"}
    assert run("keys", "revoke", key_id).exit_code == 0
    for bad in (token, f"{key_id}.wrong", "hwk_nosuchkey12.x", "not-a-token"):
        res = run("sql", q, "--token", bad)
        assert res.exit_code == 1 and "AuthenticationError" in res.stderr and "invalid credentials" in res.stderr
        assert secret not in res.stderr
    assert run("keys", "create", "bob", "--expires", "soon").exit_code == 1


def test_events_schemas_and_dead_letters(run, tmp_path: Path) -> None:
    topics = run("events", "topics")
    assert topics.exit_code == 0 and "orders" in topics.stdout
    assert "orders-value" in run("schemas", "ls").stdout
    shown = json.loads(run("schemas", "show", "orders-value").stdout)
    assert shown["version"] == 1 and "amount" in shown["schema"]["properties"]
    breaking = tmp_path / "s.json"
    breaking.write_text('{"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]}')
    check = run("schemas", "check", "orders-value", str(breaking))
    assert check.exit_code == 1 and "order_id" in check.stderr
    letters = [json.loads(line) for line in run("dlq", "ls", "-f", "json").stdout.splitlines()]
    assert {d["stage"] for d in letters} == {"validate", "deserialise"}
    first = letters[0]["id"]
    assert json.loads(run("dlq", "show", str(first)).stdout)["id"] == first
    dry = run("dlq", "replay", "--id", str(first), "--dry-run")
    assert dry.exit_code == 0 and "would replay 1" in dry.stdout
    bad = run("events", "publish", "orders", "--type", "order.created", "--data", '{"order_id": "x"}')
    assert bad.exit_code == 1 and "EventValidationError" in bad.stderr
    ok = run("events", "publish", "orders", "--type", "order.created", "--key", "7",
             "--data", '{"order_id": 1, "customer_id": 7, "amount": 3.5, "status": "paid"}')
    assert ok.exit_code == 0, ok.stderr
    tail = run("events", "tail", "orders", "--group", "cli-test", "--max", "5", "--timeout", "0.5")
    assert tail.exit_code == 0 and len(tail.stdout.splitlines()) == 5
    assert run("audit", "verify").exit_code == 0


def test_slo_commands(run) -> None:
    run("sql", "SELECT count(*) FROM app.orders")
    status = run("slo", "status", "-f", "json")
    assert status.exit_code == 0, status.stderr
    rows = {r["slo"]: r for r in json.loads(status.stdout)}
    assert set(rows) == {"query-success", "query-latency"}
    assert rows["query-success"]["total"] >= 1 and rows["query-success"]["error_budget_remaining"] == 100.0
    assert "SLO status" in run("slo", "status").stdout
    report = json.loads(run("slo", "report").stdout)
    assert report
    rules = run("slo", "rules").stdout
    assert "slo:sli_error:ratio_rate5m" in rules and "alert:" in rules


def test_pii_scan_and_apply(run) -> None:
    scanned = run("pii", "scan", "app.customers", "--as", "alice", "--sample", "300", "-f", "json")
    assert scanned.exit_code == 0, scanned.stderr
    (report,) = json.loads(scanned.stdout)
    tags = {p["tag"] for c in report["columns"] for p in c.get("proposals", [])}
    assert {"pii.email", "pii.ssn", "pii.phone"} <= tags
    assert "@example" not in scanned.stdout  # counts only, never values
    applied = run("pii", "apply", "app.orders", "--as", "alice", "--sample", "300")
    assert applied.exit_code == 0, applied.stderr
