"""``headwater retention plan|apply``: retention policies as code, dry run first."""

from __future__ import annotations

import getpass
import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from headwater.cli._output import json_default
from headwater.cli.app import ConfigOpt, app, console, handle_errors, open_platform

__all__ = ["retention_app"]

retention_app = typer.Typer(help="Retention: plan (dry run) and apply deletes, nulls, tokens, archives.",
                            no_args_is_help=True)
app.add_typer(retention_app, name="retention")

FileOpt = Annotated[Path | None, typer.Option("--file", "-F", help="Retention YAML (default: <platform dir>/retention.yaml).")]
ActorOpt = Annotated[str | None, typer.Option("--as", help="Who runs it, for the audit log (default: OS user).")]


def _actor(actor: str | None) -> str:
    if actor:
        return actor
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # pragma: no cover - no user database in some containers
        return "local"


@retention_app.command("plan")
@handle_errors
def retention_plan(
    file: FileOpt = None,
    config: ConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
    actor: ActorOpt = None,
) -> None:
    """Dry run: rows and approximate bytes per dataset and action, and what legal holds stop."""
    from headwater.retention import RetentionEngine
    from headwater.retention._render import print_plan

    with open_platform(config) as platform:
        plan = RetentionEngine(platform).plan(file, actor=_actor(actor))
        if as_json:
            sys.stdout.write(json.dumps(plan.to_dict(), default=json_default) + "\n")
            return
        print_plan(console, plan)


@retention_app.command("apply")
@handle_errors
def retention_apply(
    file: FileOpt = None,
    config: ConfigOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    actor: ActorOpt = None,
) -> None:
    """Plan, confirm, then delete / null / tokenise / archive / purge; every action audited."""
    from headwater.retention import RetentionEngine
    from headwater.retention._render import print_plan, print_report

    who = _actor(actor)
    with open_platform(config) as platform:
        engine = RetentionEngine(platform)
        plan = engine.plan(file, actor=who)
        if not as_json:
            print_plan(console, plan)
        if not plan.runnable:
            if as_json:
                sys.stdout.write(json.dumps({"plan": plan.to_dict(), "report": None}, default=json_default) + "\n")
            else:
                console.print("nothing to do")
            return
        if not yes and not typer.confirm(f"Apply {len(plan.runnable)} actions ({plan.total_rows:,} rows)?"):
            console.print("aborted; nothing changed")
            raise typer.Exit(1)
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                      TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                      console=console, transient=True, disable=as_json) as bar:
            task = bar.add_task("retention", total=len(plan.actions))

            def progress(done: int, total: int, label: str) -> None:
                bar.update(task, completed=done, total=total, description=label)

            report = engine.apply(plan, actor=who, progress=progress)
        if as_json:
            sys.stdout.write(json.dumps(report.to_dict(), default=json_default) + "\n")
        else:
            print_report(console, report)
        if not report.ok:
            raise typer.Exit(1)
