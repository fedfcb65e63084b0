"""Issue 14 (events) through the CLI: ``events tail``, ``events publish``, ``schemas register`` and
``dlq`` run as a principal (``--as``, ``--token``, default the OS user) and are governed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from headwater.cli import app
from tests.events.fix_governance import CUSTOMERS, ORDER_SCHEMA, governed_platform, pipeline


@pytest.fixture
def cli(tmp_path: Path):
    platform = governed_platform(tmp_path / "hw")
    pipe = pipeline(platform)
    pipe.sync()
    topic = pipe.topic_of("customers")
    key = platform.create_api_key("bob").token
    pipe.close()
    platform.close()
    config = tmp_path / "headwater.yaml"
    config.write_text(f"platform_dir: {tmp_path / 'hw'}\n")
    runner = CliRunner()

    def run(*args: str, user: str = "nobody") -> object:
        return runner.invoke(app, [*args, "--config", str(config)], env={"USER": user, "HEADWATER_TOKEN": ""},
                             catch_exceptions=False)

    return run, topic, key, tmp_path


def _ok(res) -> str:
    assert res.exit_code == 0, res.output
    return res.stdout


def _denied(res) -> None:
    assert res.exit_code == 1, res.output
    assert "AccessDenied" in res.stderr and "Traceback" not in res.output


def test_tail_shows_the_dataset_column_rules_of_the_principal(cli) -> None:
    run, topic, key, _ = cli
    lines = [json.loads(x) for x in _ok(run("events", "tail", topic, "--as", "bob", "--max", "50")).splitlines()]
    rows = [d["data"]["after"] for d in lines if d["type"] == "io.headwater.cdc.change"]
    assert len(rows) == len(CUSTOMERS)
    text = "\n".join(json.dumps(r) for r in rows)
    for c in CUSTOMERS:
        assert c["ssn"] not in text and c["email"] not in text  # denied, masked
    assert all(r["email"].startswith("***@") and "ssn" not in r for r in rows)
    # the same with bob's API key, and the OS user as the default principal
    by_key = _ok(run("events", "tail", topic, "--token", key, "--group", "k", "--max", "50"))
    assert "***@" in by_key and CUSTOMERS[0]["ssn"] not in by_key
    admin = _ok(run("events", "tail", topic, "--group", "a", "--max", "50", user="alice"))
    assert CUSTOMERS[0]["ssn"] in admin
    _denied(run("events", "tail", topic, "--as", "mallory"))
    _denied(run("events", "tail", topic, "--max", "50"))  # USER=nobody


def test_publish_register_and_dead_letters_are_governed(cli) -> None:
    run, topic, _, tmp_path = cli
    res = run("events", "publish", topic, "--as", "alice", "--type", "io.headwater.cdc.change",
              "--data", '{"before": null, "after": {"id": 9}, "op": "c", "source": {"lsn": 1}}')
    _denied(res)
    assert "reserved" in res.stderr
    schema = tmp_path / "order.json"
    schema.write_text(json.dumps(ORDER_SCHEMA))
    _ok(run("schemas", "register", "orders.placed-value", str(schema), "--as", "bob"))
    _denied(run("schemas", "register", "payments-value", str(schema), "--as", "bob"))
    weaker = json.loads(json.dumps(ORDER_SCHEMA))
    del weaker["properties"]["email"]["x-pii"]
    schema.write_text(json.dumps(weaker))
    res = run("schemas", "register", "orders.placed-value", str(schema), "--as", "bob")
    _denied(res)
    assert "declassify" in res.stderr
    _ok(run("events", "topics", "--as", "alice"))
    _denied(run("events", "publish", "orders.placed", "--as", "carol", "--type", "o",
                "--data", '{"order_id": 1, "customer_id": 1, "amount": 1}'))
    listed = _ok(run("dlq", "ls", "--as", "bob", "--format", "json"))
    assert listed == ""  # bob administers no topic


def test_dlq_show_keeps_pii_sealed_and_needs_admin(cli) -> None:
    run, topic, _, tmp_path = cli
    from headwater import Config, Platform

    platform = Platform.open(Config.load(None, overrides={"platform_dir": str(tmp_path / "hw")}))
    try:
        raw = platform.bus.subscribe(topic, "raw")
        msg = next(m for m in raw.fetch(20, timeout=2) if b'"op":"r"' in m.value)
        raw.close()
        letter = platform.dead_letters.add(msg.value, stage="sink", error=("WriteError", "x"), attempts=1,
                                           consumer_group="g", topic=topic, partition=0, offset=msg.offset)
    finally:
        platform.close()
    _denied(run("dlq", "show", str(letter.id), "--as", "bob"))
    shown = _ok(run("dlq", "show", str(letter.id), "--as", "alice"))
    assert "hwenc:v1:" in shown
    assert not any(c["ssn"] in shown or c["email"] in shown for c in CUSTOMERS)
