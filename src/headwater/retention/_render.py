"""Rich tables for retention plans and reports (shared by the CLI and the demo)."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from headwater.retention._plan import ERROR, HELD, RetentionPlan, RetentionReport

__all__ = ["human_bytes", "print_plan", "print_report"]

_STYLE = {"delete": "red", "null": "yellow", "tokenise": "yellow", "purge": "magenta", HELD: "cyan",
          ERROR: "bold red"}


def human_bytes(n: int | None) -> str:
    """``1536`` -> ``1.5 KiB``; None -> ``?``."""
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def _short(text: str) -> str:
    """``/long/path/retention.yaml:11`` -> ``retention.yaml:11`` (tables stay narrow)."""
    head, _, tail = text.partition(" ")
    return (head.rsplit("/", 1)[-1] + (" " + tail if tail else "")) if "/" in head else text


def print_plan(console: Console, plan: RetentionPlan, *, title: str = "Retention plan (dry run)") -> None:
    """One row per dataset and action: rows, approximate bytes, cutoff, rule, holds."""
    t = Table(title=title, header_style="bold cyan")
    for col in ("dataset", "action", "columns", "rows", "≈ bytes", "older than", "archive", "rule", "note"):
        t.add_column(col, overflow="fold")
    for a in plan.actions:
        style = _STYLE.get(a.action, "white")
        t.add_row(escape(a.dataset), f"[{style}]{a.action}[/{style}]", escape(", ".join(a.columns)),
                  "" if a.action in (HELD, ERROR) else f"{a.rows:,}",
                  "" if a.action in (HELD, ERROR) else human_bytes(a.bytes),
                  f"{a.cutoff:%Y-%m-%d}" if a.cutoff else "", escape(a.archive or ""),
                  escape(_short(a.rule)), escape(a.note or ""))
    console.print(t)
    console.print(f"  {plan.total_rows:,} rows (≈ {human_bytes(plan.total_bytes)}) in {len(plan.runnable)} "
                  f"actions; {len(plan.held)} held by legal holds")


def print_report(console: Console, report: RetentionReport) -> None:
    """What apply did, one row per action."""
    t = Table(title=f"Retention applied by {escape(report.actor)}", header_style="bold cyan")
    for col in ("dataset", "action", "columns", "status", "rows", "planned", "archived", "detail"):
        t.add_column(col, overflow="fold")
    for r in report.results:
        status = {"done": "green", "held": "cyan", "skipped": "yellow", "failed": "bold red"}[r.status]
        t.add_row(escape(r.dataset), r.action, escape(", ".join(r.columns)), f"[{status}]{r.status}[/{status}]",
                  f"{r.rows:,}", f"{r.planned_rows:,}",
                  "" if r.archived_rows is None else f"{r.archived_rows:,}",
                  escape(r.error or _short(r.archive_path or "")))
    console.print(t)
