"""``headwater slo status|report|rules``."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from headwater.cli._output import json_default
from headwater.cli.app import ConfigOpt, app, console, handle_errors, open_platform

__all__ = ["print_slo_status", "slo_app"]

slo_app = typer.Typer(help="SLOs: budget remaining, burn rates, alerts; Prometheus rules.", no_args_is_help=True)
app.add_typer(slo_app, name="slo")


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}%"


def print_slo_status(out: Console, rows: list[Any]) -> None:
    """The SLO status table (also the demo's last word)."""
    t = Table(header_style="bold cyan", title="SLO status")
    for col in ("slo", "objective", "window", "SLI", "events", "budget left", "burn 1h", "page", "ticket"):
        t.add_column(col)
    for s in rows:
        budget = s.error_budget_remaining
        style = "green" if budget >= 50 else "yellow" if budget > 0 else "red"
        alerts = {k: v.state for k, v in s.alerts.items()}
        burn = s.burn_rates.get("1h")
        t.add_row(escape(s.slo), f"{s.objective}%", s.window, _pct(s.sli), f"{s.good:,}/{s.total:,}",
                  f"[{style}]{budget:.1f}%[/{style}]", "-" if burn is None else f"{burn:.2f}x",
                  alerts.get("page", "ok"), alerts.get("ticket", "ok"))
    out.print(t)


@slo_app.command("status")
@handle_errors
def slo_status(
    config: ConfigOpt = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
) -> None:
    """Evaluate the SLOs now (firing and resolving alerts) and show budget and alert state."""
    with open_platform(config) as platform:
        if platform.slo_recorder is not None:
            platform.slo_recorder.flush()
        evaluator = platform.slo_evaluator()
        evaluator.evaluate()
        rows = evaluator.status()
        if fmt == "json":
            sys.stdout.write(json.dumps([r.as_dict() for r in rows], default=json_default) + "\n")
            return
        print_slo_status(console, rows)


@slo_app.command("report")
@handle_errors
def slo_report(config: ConfigOpt = None) -> None:
    """The full report: bad events, allowed bad events, budget consumed, history (JSON)."""
    with open_platform(config) as platform:
        if platform.slo_recorder is not None:
            platform.slo_recorder.flush()
        report = platform.slo_evaluator().report()
        sys.stdout.write(json.dumps(report.as_dict(), default=json_default, indent=2) + "\n")


@slo_app.command("rules")
@handle_errors
def slo_rules(config: ConfigOpt = None) -> None:
    """The same SLOs as Prometheus recording and alerting rules (YAML)."""
    from headwater.telemetry.slo import prometheus_rules

    with open_platform(config) as platform:
        sys.stdout.write(prometheus_rules(platform.slos))
