"""The demo's erasure step: plan, erase one customer everywhere, show the verified report."""

from __future__ import annotations

from typing import TYPE_CHECKING

from headwater.erasure._engine import ErasureEngine
from headwater.erasure._model import ErasureReport

if TYPE_CHECKING:
    from rich.console import Console

    from headwater.platform import Platform

__all__ = ["erasure_demo_step"]


def erasure_demo_step(platform: Platform, console: Console, subject: str,
                      *, actor: str = "demo-dpo") -> ErasureReport:
    """Erase ``subject`` (``customers.id=7``) from every copy and print the plan and the report."""
    from headwater.erasure._render import print_erasure_plan, print_erasure_report

    engine = ErasureEngine(platform)
    console.rule(f"[bold]Erasure[/bold]: {subject}")
    plan = engine.plan(subject, actor=actor)
    print_erasure_plan(console, plan)
    report = engine.run(plan.subject, actor=actor)
    print_erasure_report(console, report)
    return report
