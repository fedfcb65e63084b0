"""Rich tables for erasure plans and reports (the CLI and the demo print these)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

__all__ = ["STATUS_STYLE", "print_erasure_plan", "print_erasure_report"]

STATE_STYLE = {"verified": "green", "failed": "red", "pending": "yellow", "executed": "yellow",
               "residual": "magenta"}
STATUS_STYLE = {"completed": "green", "partial": "yellow", "refused": "red", "running": "yellow"}


def print_erasure_plan(out: Console, plan: Any) -> None:
    """The dry-run table: every target, its subject rows, or why it is not erasable."""
    t = Table(header_style="bold cyan", title=f"erasure plan for {escape(str(plan.subject))}")
    for col in ("target", "store", "key columns", "found by", "rows", "note"):
        t.add_column(col, overflow="fold")
    for x in plan.targets:
        rows = "-" if x.rows is None else f"{x.rows:,}"
        note = x.reason or ""
        if x.error:
            note = f"[red]{escape(x.error)}[/red]"
        elif not x.addressable:
            note = f"[magenta]{escape(note)}[/magenta]"
        t.add_row(escape(x.dataset), x.store or "-", ", ".join(x.columns) or "-", escape(x.found_by), rows, note)
    out.print(t)
    for h in plan.holds:
        out.print(f"[red]legal hold {h.id}[/red] ({escape(h.reason)}) covers "
                  f"{escape(h.dataset or str(h.subject))}: a run would be refused")


def print_erasure_report(out: Console, report: Any) -> None:
    """The per-target result table and the job's status line."""
    t = Table(header_style="bold cyan", title=f"erasure {report.job_id} ({report.mode.value})")
    for col in ("target", "store", "state", "rows", "verified", "note"):
        t.add_column(col, overflow="fold")
    for x in report.targets:
        style = STATE_STYLE.get(x.state.value, "white")
        note = x.error or x.reason or ""
        t.add_row(escape(x.dataset), x.store or "-", f"[{style}]{x.state.value}[/{style}]",
                  "-" if x.rows is None else f"{x.rows:,}", "yes" if x.verified else "no", escape(note))
    out.print(t)
    style = STATUS_STYLE.get(report.status.value, "white")
    out.print(f"subject {escape(report.subject)}: [{style}]{report.status.value}[/{style}], "
              f"{report.rows:,} row(s) changed, {sum(x.verified for x in report.targets)} target(s) verified, "
              f"{len(report.residual)} residual")
    if report.pending:
        out.print(f"[yellow]resume with: headwater erase --resume {report.job_id}[/yellow]")
    if report.path is not None:
        out.print(f"report: {escape(str(report.path))}")
