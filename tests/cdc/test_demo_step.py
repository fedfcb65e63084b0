"""The CDC demo step on the embedded platform, as ``headwater demo`` runs it (governed, tagged)."""

from __future__ import annotations

import pytest
from rich.console import Console

from headwater.cdc.demo import cdc_demo_step
from headwater.demo import DEMO_POLICY, DEMO_TAGS, generate_customers


@pytest.mark.parametrize("kind", ["embedded", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_cdc_demo_step_replicates_insert_update_delete(kind, request) -> None:
    if kind == "embedded":
        platform = request.getfixturevalue("platform")
    else:
        request.getfixturevalue("cdc_dsn")
        platform = request.getfixturevalue("pg_platform")
    session = platform.session("demo")
    session.write("app.customers", generate_customers(300), key="id")
    for column, tag in DEMO_TAGS.items():
        platform.catalog.set_tags("app.customers", column, [tag])
    platform.apply_policy(DEMO_POLICY, source="demo", applied_by="demo")
    console = Console(record=True, width=200)
    result = cdc_demo_step(platform, console)
    text = console.export_text()
    assert result["events"] == 3 and result["matches"] is True
    assert result["replica_rows"] == 300 and result["applied"] == 303
    assert "insert" in text and "update" in text and "delete" in text and "equal to" in text
    # bob's masks follow the tags onto the replica
    bob = platform.session("bob").sql("SELECT email FROM warehouse.customers WHERE NOT _deleted LIMIT 1").to_pylist()
    assert "@" in bob[0]["email"] and not bob[0]["email"].split("@")[0].isalpha()
