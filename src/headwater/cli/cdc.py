"""``headwater cdc start|status|stop``: change data capture from a Postgres store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from headwater.cli.app import ConfigOpt, app, console, handle_errors, open_platform
from headwater.errors import ConfigError, InvalidInput

__all__ = ["cdc_app"]

cdc_app = typer.Typer(help="Change data capture from Postgres into the event bus.", no_args_is_help=True)
app.add_typer(cdc_app, name="cdc")


def _source(platform, store: str):  # type: ignore[no-untyped-def]
    from headwater.config import PostgresConfig

    cfg = platform.config.stores.get(store)
    if not isinstance(cfg, PostgresConfig):
        raise ConfigError(f"store {store!r} is not a Postgres store; CDC reads Postgres logical replication")
    tables = [f"{cfg.schema_}.{d.table}" for d in platform.catalog.list(f"{store}.*")]
    return cfg, tables


@cdc_app.command("start")
@handle_errors
def cdc_start(
    config: ConfigOpt = None,
    store: Annotated[str, typer.Option("--store", help="The Postgres store to capture.")] = "app",
    slot: Annotated[str, typer.Option("--slot")] = "headwater",
    publication: Annotated[str, typer.Option("--publication")] = "headwater",
    reset: Annotated[bool, typer.Option("--reset", help="Drop the slot and take a new snapshot.")] = False,
    background: Annotated[bool, typer.Option("--background", help="Run detached; stop with cdc stop.")] = False,
) -> None:
    """Snapshot the catalogued tables, then stream their changes to cdc.<store>.<schema>.<table>."""
    with open_platform(config) as platform:
        cfg, tables = _source(platform, store)
        if not tables:
            raise InvalidInput(f"no catalogued tables in {store}; run `headwater catalog sync`")
        bus = platform.config.events.bus or f"embedded:{platform.dir / 'events.db'}"
        args = [sys.executable, "-m", "headwater.cdc", "--dsn", cfg.dsn.get_secret_value(), "--slot", slot,
                "--publication", publication, "--bus", bus, "--store", store]
        for t in tables:
            args += ["--table", t]
        if reset:
            args.append("--reset")
        pidfile = platform.dir / f"cdc-{store}.pid"
        if background:
            proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    start_new_session=True)
            pidfile.write_text(str(proc.pid))
            console.print(f"CDC for {store} running in the background (pid {proc.pid}); "
                          f"`headwater cdc status` / `headwater cdc stop`")
            return
    pidfile.write_text(str(os.getpid()))
    try:
        from headwater.cdc.__main__ import main as run

        raise typer.Exit(run(args[3:]))
    finally:
        pidfile.unlink(missing_ok=True)


@cdc_app.command("status")
@handle_errors
def cdc_status(
    config: ConfigOpt = None,
    store: Annotated[str, typer.Option("--store")] = "app",
    fmt: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
) -> None:
    """Slot position and lag (bytes of WAL retained) and events per table topic."""
    import psycopg

    with open_platform(config) as platform:
        cfg, tables = _source(platform, store)
        with psycopg.connect(cfg.dsn.get_secret_value(), autocommit=True) as conn:
            slots = conn.execute(
                "SELECT slot_name, active, confirmed_flush_lsn::text, "
                "(pg_current_wal_lsn() - confirmed_flush_lsn)::bigint, wal_status "
                "FROM pg_replication_slots WHERE plugin = 'pgoutput'").fetchall()
        topics = {t.name: t for t in platform.bus.topics()}
        pidfile = platform.dir / f"cdc-{store}.pid"
        doc = {
            "running_pid": int(pidfile.read_text()) if pidfile.exists() else None,
            "slots": [{"slot": s[0], "active": s[1], "confirmed_lsn": s[2], "lag_bytes": s[3], "wal_status": s[4]}
                      for s in slots],
            "tables": [{"table": t, "topic": f"cdc.{store}.{t}", "topic_exists": f"cdc.{store}.{t}" in topics}
                       for t in tables],
        }
        if fmt == "json":
            sys.stdout.write(json.dumps(doc) + "\n")
            return
        t = Table(header_style="bold cyan", title="replication slots")
        for col in ("slot", "active", "confirmed LSN", "lag bytes", "WAL"):
            t.add_column(col)
        for s in doc["slots"]:
            t.add_row(escape(s["slot"]), str(s["active"]), str(s["confirmed_lsn"]), f"{s['lag_bytes'] or 0:,}",
                      str(s["wal_status"]))
        console.print(t)
        for row in doc["tables"]:
            console.print(f"  {row['table']} -> {row['topic']}{'' if row['topic_exists'] else ' (no events yet)'}")


@cdc_app.command("stop")
@handle_errors
def cdc_stop(config: ConfigOpt = None, store: Annotated[str, typer.Option("--store")] = "app") -> None:
    """Stop a background connector (it publishes and confirms what it holds first)."""
    with open_platform(config) as platform:
        pidfile = platform.dir / f"cdc-{store}.pid"
        if not pidfile.exists():
            raise InvalidInput(f"no CDC connector is running for {store}")
        pid = int(pidfile.read_text())
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            console.print(f"connector {pid} had already exited")
        pidfile.unlink(missing_ok=True)
        console.print(f"stopped CDC for {store} (pid {pid})")
