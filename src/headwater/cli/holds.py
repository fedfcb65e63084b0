"""``headwater holds place|release|ls``: legal holds that stop retention and erasure."""

from __future__ import annotations

import os
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from headwater.cli.app import ConfigOpt, app, console, handle_errors, open_platform

__all__ = ["holds_app"]

holds_app = typer.Typer(help="Legal holds: stop retention and erasure on a dataset or a subject.",
                        no_args_is_help=True)
app.add_typer(holds_app, name="holds")

ActorOpt = Annotated[str | None, typer.Option("--actor", help="Who acts (default: $USER); audited.")]


def _actor(actor: str | None) -> str:
    return actor or os.environ.get("USER") or "local"


@holds_app.command("place")
@handle_errors
def holds_place(
    reason: Annotated[str, typer.Option("--reason", help="Why (case number, ticket).")],
    dataset: Annotated[str | None, typer.Option("--dataset", help="Dataset glob, e.g. app.orders or lake.*")] = None,
    subject: Annotated[str | None, typer.Option("--subject", help="Data subject, e.g. customers.id=123")] = None,
    config: ConfigOpt = None,
    actor: ActorOpt = None,
) -> None:
    """Place a hold; prints its id."""
    from headwater.retention.holds import LegalHolds

    with open_platform(config) as platform:
        hold = LegalHolds(platform).place(reason=reason, actor=_actor(actor), dataset=dataset, subject=subject)
        console.print(f"placed legal hold [bold]{hold.id}[/bold]")


@holds_app.command("release")
@handle_errors
def holds_release(hold_id: Annotated[str, typer.Argument(help="The hold's id.")],
                  config: ConfigOpt = None, actor: ActorOpt = None) -> None:
    """Release a hold (the record of it stays)."""
    from headwater.retention.holds import LegalHolds

    with open_platform(config) as platform:
        LegalHolds(platform).release(hold_id, actor=_actor(actor))
        console.print(f"released legal hold {escape(hold_id)}")


@holds_app.command("ls")
@handle_errors
def holds_ls(config: ConfigOpt = None) -> None:
    """List active holds."""
    from headwater.retention.holds import LegalHolds

    with open_platform(config) as platform:
        holds = LegalHolds(platform).list()
        t = Table(header_style="bold cyan", title=f"{len(holds)} active legal hold(s)")
        for col in ("id", "dataset", "subject", "reason", "by", "since"):
            t.add_column(col)
        for h in holds:
            t.add_row(h.id, escape(h.dataset or "*"), escape(str(h.subject) if h.subject else "-"),
                      escape(h.reason), escape(h.created_by), h.created_at.strftime("%Y-%m-%d %H:%M"))
        console.print(t)
