"""The demo's retention step: the demo runs it (plan, then apply); a second plan finds nothing."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from headwater.demo import run_demo
from headwater.retention import RetentionPlan
from headwater.retention.demo import retention_demo_step


def test_demo_plans_and_applies_retention(tmp_path: Path) -> None:
    console = Console(record=True, width=160)
    platform = run_demo(tmp_path, console=console, n_customers=300, n_orders=1_500, n_events=900)
    try:
        text = console.export_text()
        assert "Retention plan" in text and "Retention applied" in text
        records = platform.audit.query(action="retention")
        deleted = {r.datasets[0]: r.rows for r in records if r.datasets and r.extra.get("action") == "delete"}
        assert deleted.get("app.orders", 0) > 0 and deleted.get("lake.web_events", 0) > 0, deleted
        assert (platform.dir / "retention.yaml").exists()
        # applied once: planning again finds nothing left to delete, null or tokenise
        again = retention_demo_step(platform, Console(quiet=True), apply=False)
        assert isinstance(again, RetentionPlan)
        assert sum(a.rows for a in again.actions if a.dataset in ("app.orders", "lake.web_events")) == 0
        assert platform.audit.verify().ok
    finally:
        platform.close()
