"""The demo's retention step: write a small retention.yaml for the demo datasets, print the
plan, apply it, print what happened.

The demo's data has fixed dates (from ``headwater.demo.EPOCH``), so the ages in the file are
computed from today: the step does the same thing whatever day it runs.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from rich.console import Console

from headwater.retention._engine import RetentionEngine
from headwater.retention._plan import RetentionPlan, RetentionReport
from headwater.retention._render import human_bytes, print_plan, print_report

if TYPE_CHECKING:
    from headwater.platform import Platform

__all__ = ["demo_retention_yaml", "retention_demo_step"]

DEMO_EPOCH = dt.datetime(2025, 1, 1)
"""``headwater.demo.EPOCH``: the demo's data starts here."""


def _age(now: dt.datetime, days_after_epoch: int) -> str:
    """The age of the instant ``days_after_epoch`` days after the demo's epoch, in seconds: the
    plan uses the same ``now``, so the cutoff falls exactly on that instant whatever the time of
    day (whole days would move it with the clock, and the counts with it)."""
    instant = DEMO_EPOCH + dt.timedelta(days=days_after_epoch)
    age = now.replace(tzinfo=None) - instant
    return f"{int(age.total_seconds())}s  # = older than {instant:%Y-%m-%d}"


def demo_retention_yaml(now: dt.datetime) -> str:
    """The demo's retention file, its ages relative to ``now``.

    Orders are kept from day 61 of the demo's year (older ones are archived to the lake, then
    deleted); web events from day 317; SSNs of customers
    created before day 91 are nulled and emails of those before day 31 tokenised (the same
    token the masking policy shows); dead letters go after 30 days.
    """
    return f"""\
version: 1
defaults:
  archive: lake
rules:
  - dataset: app.orders
    by: ordered_at
    keep: {_age(now, 61)}
  - dataset: lake.web_events
    by: ts
    keep: {_age(now, 317)}
  - tag: pii.ssn
    datasets: app.customers
    by: created_at
    null_after: {_age(now, 91)}
  - tag: pii.email
    datasets: app.customers
    by: created_at
    tokenise_after: {_age(now, 31)}
platform:
  dead_letters: 30d
"""


def retention_demo_step(platform: Platform, console: Console, *, apply: bool = True,
                        actor: str = "demo") -> RetentionReport | RetentionPlan:
    """Write ``<platform dir>/retention.yaml``, print the plan, apply it (unless ``apply`` is
    False) and print the report. Returns the report, or the plan when not applying."""
    now = dt.datetime.now(dt.UTC)
    engine = RetentionEngine(platform)
    engine.default_file.write_text(demo_retention_yaml(now), encoding="utf-8")
    plan = engine.plan(now=now, actor=actor)
    print_plan(console, plan, title=f"Retention plan from {engine.default_file.name} (dry run)")
    if not apply:
        return plan
    with console.status("Applying retention…"):
        report = engine.apply(plan, actor=actor)
    print_report(console, report)
    archived = [r for r in report.results if r.archive_path]
    console.print(f"  [green]✓[/green] {report.total_rows:,} rows deleted, nulled or tokenised "
                  f"(plan said {plan.total_rows:,}, ≈ {human_bytes(plan.total_bytes)}); "
                  f"{sum(r.archived_rows or 0 for r in archived):,} rows archived to lake:archive/ first; "
                  "every action is in the audit log", highlight=False)
    return report
