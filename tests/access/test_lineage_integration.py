"""Writes that derive data emit OpenLineage runs, and the graph answers upstream/impact."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from headwater import WriteError
from headwater.cli import app
from headwater.lineage import EventValidator


@pytest.fixture()
def derived(platform, session):
    session.write("app.customers", [{"id": 1, "email": "a@x.org", "country": "DE"},
                                    {"id": 2, "email": "b@y.org", "country": "US"}], key="id")
    session.write("app.orders", [{"id": 10, "customer_id": 1, "amount": 5.0}], key="id")
    session.sql("CREATE TABLE warehouse.order_facts AS SELECT o.id AS order_id, c.country, "
                "lower(c.email) AS email_lc, o.amount FROM app.orders o JOIN app.customers c "
                "ON c.id = o.customer_id")
    session.write("lake.contacts", session.sql("SELECT id, email FROM app.customers"))
    return platform


def test_ctas_and_result_writes_emit_valid_run_events(derived) -> None:
    events = derived.lineage.events()
    kinds = [e["eventType"] for e in events]
    assert kinds.count("START") == 2 and kinds.count("COMPLETE") == 2
    validator = EventValidator()
    for event in events:
        validator.validate(event)
    complete = [e for e in events if e["eventType"] == "COMPLETE"]
    facts = next(e for e in complete if e["outputs"][0]["name"] == "warehouse.order_facts")
    fields = facts["outputs"][0]["facets"]["columnLineage"]["fields"]
    assert {f["field"] for f in fields["email_lc"]["inputFields"]} == {"email"}
    assert fields["email_lc"]["inputFields"][0]["transformations"][0]["subtype"] == "TRANSFORMATION"
    assert facts["outputs"][0]["outputFacets"]["outputStatistics"]["rowCount"] == 1


def test_upstream_and_impact_to_the_column(derived) -> None:
    up = derived.lineage.upstream("warehouse.order_facts")
    assert set(up.datasets) == {"app.orders", "app.customers"}
    assert "app.customers.email" in up.columns
    impact = derived.lineage.impact("app.customers.email")
    assert set(impact.columns) >= {"warehouse.order_facts.email_lc", "lake.contacts.email"}


def test_failed_derivation_emits_fail(derived, session) -> None:
    session.sql("CREATE TABLE warehouse.nums AS SELECT id FROM app.customers")
    with pytest.raises(WriteError):
        session.sql("INSERT INTO warehouse.nums SELECT email FROM app.customers")
    last = derived.lineage.events()[-1]
    assert last["eventType"] == "FAIL"


def test_cli_lineage_show(derived) -> None:
    cfg = derived.dir / "headwater.yaml"
    cfg.write_text(f"platform_dir: {derived.dir}\n")
    res = CliRunner().invoke(app, ["lineage", "show", "warehouse.order_facts", "--upstream", "-f", "json"],
                             env={"HEADWATER_CONFIG": str(cfg)})
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    assert set(doc["datasets"]) == {"app.orders", "app.customers"}
