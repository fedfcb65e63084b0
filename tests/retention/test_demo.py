"""The demo's retention step on a small demo platform."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from headwater.demo import run_demo
from headwater.retention import RetentionPlan, RetentionReport
from headwater.retention.demo import retention_demo_step


def test_demo_step_plans_and_applies(tmp_path: Path) -> None:
    quiet = Console(quiet=True)
    platform = run_demo(tmp_path, console=quiet, n_customers=300, n_orders=1_500, n_events=900)
    try:
        session = platform.session("alice")

        def count(name: str) -> int:
            return session.sql(f"SELECT count(*) AS n FROM {name}").to_pylist()[0]["n"]

        before = {n: count(n) for n in ("app.orders", "lake.web_events")}
        console = Console(record=True, width=160)
        plan = retention_demo_step(platform, console, apply=False)
        assert isinstance(plan, RetentionPlan)
        report = retention_demo_step(platform, console)
        assert isinstance(report, RetentionReport) and report.ok
        text = console.export_text()
        assert "Retention plan" in text and "app.orders" in text and "lake.web_events" in text
        deleted = {r.dataset: r.rows for r in report.results if r.action == "delete"}
        assert all(deleted[n] > 0 for n in before), deleted
        assert not [r for r in report.results if r.status != "done"]
        for n, rows in before.items():
            assert count(n) == rows - deleted[n]
        tokenised = report.result("app.customers", "tokenise")
        nulled = report.result("app.customers", "null")
        assert tokenised.rows > 0 and nulled.rows > tokenised.rows
        assert (platform.dir / "retention.yaml").exists()
        assert platform.audit.verify().ok
    finally:
        platform.close()
