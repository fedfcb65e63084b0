"""``headwater erase --subject customers.id=123 [--anonymise] [--dry-run] [--resume JOB] [--json]``,
``headwater erase status JOB``, ``headwater erase verify JOB`` and ``headwater erase ls``.

Every command runs as a principal (``--token``: an API key or JWT; ``--as NAME``: trusted local
use; default the OS user) that needs the ``erase`` grant on the subject's dataset once a policy
is applied; a denial exits 1 with ``AccessDenied`` and is audited."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from headwater.cli._output import json_default
from headwater.cli.app import ConfigOpt, app, console, handle_errors, open_platform
from headwater.erasure._render import STATUS_STYLE, print_erasure_plan, print_erasure_report

__all__ = ["erase_app"]

erase_app = typer.Typer(
    help="Erase a data subject from every copy (source, replicas, derived tables, lake, dead letters).",
    invoke_without_command=True,
)
app.add_typer(erase_app, name="erase")


AsOpt = Annotated[str | None, typer.Option("--as", help="Principal to run as (trusted local use; default: $USER).")]
TokenOpt = Annotated[str | None, typer.Option("--token", envvar="HEADWATER_TOKEN",
                                              help="API key or JWT to authenticate with.")]


def _principal(platform: Any, as_: str | None, token: str | None) -> Any:
    """Who runs the command: the token's principal, else ``--as``, else the OS user."""
    import os

    from headwater.principal import Principal

    if token:
        if as_:
            from headwater.errors import InvalidInput

            raise InvalidInput("pass either --token or --as, not both")
        return platform.authenticate(token)
    return Principal.of(as_ or os.environ.get("USER") or "local")


@erase_app.callback()
@handle_errors
def erase(
    ctx: typer.Context,
    subject: Annotated[str | None, typer.Option("--subject", "-s",
                                                help="<dataset>.<column>=<value>, e.g. customers.id=123.")] = None,
    anonymise: Annotated[bool, typer.Option("--anonymise", help="Keep rows; replace the key, null PII columns.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the plan and row counts; change nothing.")] = False,
    resume: Annotated[str | None, typer.Option("--resume", help="Continue a partial or crashed job.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan or report as JSON.")] = False,
    as_: AsOpt = None,
    token: TokenOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Find every copy of a data subject, delete or anonymise it, verify, report."""
    if ctx.invoked_subcommand is not None:
        return
    if subject is None and resume is None:
        console.print(ctx.get_help())
        raise typer.Exit(2)
    from headwater.erasure import ErasureEngine

    with open_platform(config) as platform:
        engine = ErasureEngine(platform)
        who = _principal(platform, as_, token)
        if dry_run:
            if subject is None:
                from headwater.errors import InvalidInput

                raise InvalidInput("--dry-run needs --subject")
            plan = engine.plan(subject, actor=who)
            if as_json:
                sys.stdout.write(json.dumps(plan.to_dict(), default=json_default) + "\n")
            else:
                print_erasure_plan(console, plan)
            return
        mode = "anonymise" if anonymise else "delete"
        quiet = as_json or not console.is_terminal
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                      console=console, transient=True, disable=quiet) as bar:
            tasks: dict[int, Any] = {}

            def progress(target: Any, phase: str) -> None:
                if phase == "start":
                    tasks[target.position] = bar.add_task(f"erasing {escape(target.dataset)}", total=1)
                else:
                    bar.update(tasks[target.position], completed=1,
                               description=f"{escape(target.dataset)}: {target.state.value}")
                    if quiet and not as_json:
                        console.print(f"{escape(target.dataset)}: {target.state.value}")

            report = engine.run(subject, actor=who, mode=mode, resume=resume, progress=progress)
        _emit(report, as_json, path=True, fail=True)


def _emit(report: Any, as_json: bool, *, path: bool = False, fail: bool = False) -> None:
    """Print a report as JSON (with its file when ``path``) or a table; exit 3 when ``fail``
    and the job is not complete and verified."""
    if as_json:
        doc = report.to_dict() | ({"path": str(report.path)} if path else {})
        sys.stdout.write(json.dumps(doc, default=json_default) + "\n")
    else:
        print_erasure_report(console, report)
    if fail and not report.ok:
        raise typer.Exit(3)


@erase_app.command("status")
@handle_errors
def erase_status(
    job_id: Annotated[str, typer.Argument(help="The job id (erase_...).")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
    as_: AsOpt = None,
    token: TokenOpt = None,
    config: ConfigOpt = None,
) -> None:
    """A job's targets and their states."""
    from headwater.erasure import ErasureEngine

    with open_platform(config) as platform:
        _emit(ErasureEngine(platform).status(job_id, actor=_principal(platform, as_, token)), as_json)


@erase_app.command("verify")
@handle_errors
def erase_verify(
    job_id: Annotated[str, typer.Argument(help="The job id (erase_...).")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
    as_: AsOpt = None,
    token: TokenOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Query a job's verified targets again; re-open any where the subject reappeared."""
    from headwater.erasure import ErasureEngine

    with open_platform(config) as platform:
        _emit(ErasureEngine(platform).verify(job_id, actor=_principal(platform, as_, token)), as_json, fail=True)


@erase_app.command("ls")
@handle_errors
def erase_ls(
    limit: Annotated[int, typer.Option("--limit", "-n")] = 20,
    as_: AsOpt = None,
    token: TokenOpt = None,
    config: ConfigOpt = None,
) -> None:
    """The newest erasure jobs (those whose subject's dataset you may erase)."""
    from headwater.erasure import ErasureEngine

    with open_platform(config) as platform:
        who = _principal(platform, as_, token)
        t = Table(header_style="bold cyan", title="erasure jobs")
        for col in ("job", "mode", "status", "actor", "created", "runs", "rows", "verified", "open"):
            t.add_column(col)
        for r in ErasureEngine(platform).list_jobs(limit, actor=who):
            style = STATUS_STYLE.get(r.status.value, "white")
            t.add_row(r.job_id, r.mode.value, f"[{style}]{r.status.value}[/{style}]", escape(r.actor),
                      r.created_at.strftime("%Y-%m-%d %H:%M:%S"), str(r.runs), f"{r.rows:,}",
                      str(sum(x.verified for x in r.targets)), str(len(r.pending)))
        console.print(t)
