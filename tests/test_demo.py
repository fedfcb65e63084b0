"""The demo job builds a working platform and leaves a config other commands can use."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from headwater import Platform
from headwater.demo import run_demo


def test_demo_builds_every_dataset_and_is_rerunnable(tmp_path: Path) -> None:
    console = Console(record=True, width=120)
    for _ in range(2):  # a second run starts clean instead of failing or doubling data
        platform = run_demo(tmp_path, console=console, n_customers=300, n_orders=1_500, n_events=900)
        platform.close()
    with Platform.open(tmp_path / "headwater.yaml") as platform:
        s = platform.session("alice")
        counts = {
            name: s.sql(f"SELECT count(*) AS n FROM {name}").to_pylist()[0]["n"]
            for name in ("app.customers", "app.orders", "warehouse.order_facts", "lake.web_events")
        }
    # retention archived and deleted the oldest orders and web events; erasure removed customer 7
    # (one customer row, their order facts); the ages in retention.yaml are relative to the
    # demo's fixed dates, so these counts do not depend on the day or the hour the test runs
    assert counts == {"app.customers": 302, "app.orders": 1_233, "warehouse.order_facts": 1_496,
                      "lake.web_events": 395}
    text = console.export_text()
    assert "federated in DuckDB" in text
    assert "pages of 2,000" in text
    assert "HEADWATER_CONFIG=" in text
    assert "Retention applied" in text and "customers.id=7: completed" in text and "change events on cdc.app" in text
    assert "orders.big" in text and "PII proposals" in text
    assert "AccessDenied" in text and "was allowed" not in text
