"""``headwater stores grants``: the reader role's grants, printed for an administrator or applied."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from headwater.cli.app import ConfigOpt, app, console, handle_errors, open_platform

__all__ = ["stores_app"]

stores_app = typer.Typer(help="The stores' backstop: reader roles and their grants (docs/store-security.md).",
                         no_args_is_help=True)
app.add_typer(stores_app, name="stores")


@stores_app.command("grants")
@handle_errors
def stores_grants(
    store: Annotated[str, typer.Argument(help="A Postgres or Snowflake store, e.g. app.")],
    apply: Annotated[bool, typer.Option("--apply", help="Run the script on the store's own connection.")] = False,
    config: ConfigOpt = None,
    actor: Annotated[str | None, typer.Option("--actor", help="Who acts (default: $USER); audited.")] = None,
) -> None:
    """Print (or apply) the SQL that gives the store's reader role SELECT on exactly its
    catalogued tables: the role, USAGE, one GRANT per table, REVOKE for the others."""
    import os

    from headwater.audit import AuditEvent

    with open_platform(config) as platform:
        if not apply:
            for stmt in platform.store_grants(store):
                console.print(escape(stmt) + ";", soft_wrap=True, highlight=False)
            return
        ran = platform.apply_store_grants(store)
        platform.record(AuditEvent(actor=actor or os.environ.get("USER") or "local", action="store_grants",
                                   reason=f"{len(ran)} statement(s) on {store}", extra={"store": store}))
        console.print(f"applied {len(ran)} statement(s) to {escape(store)}'s reader role")
