"""``headwater cdc start|status|stop|pipeline``: change data capture from a SQLite or Postgres store."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from headwater.cli.app import ConfigOpt, app, console, handle_errors, open_platform
from headwater.errors import ConfigError, InvalidInput

__all__ = ["cdc_app"]

cdc_app = typer.Typer(help="Change data capture (SQLite triggers, Postgres logical replication) into the bus.",
                      no_args_is_help=True)
app.add_typer(cdc_app, name="cdc")


def _source(platform: Any, store: str) -> tuple[Any, list[str]]:
    from headwater.config import PostgresConfig, SQLiteConfig

    cfg = platform.config.stores.get(store)
    if not isinstance(cfg, PostgresConfig | SQLiteConfig):
        raise ConfigError(f"store {store!r} is neither SQLite nor Postgres; CDC reads SQLite (triggers) or "
                          "Postgres (logical replication)")
    names = [d.table for d in platform.catalog.list(f"{store}.*")]
    if isinstance(cfg, PostgresConfig):
        return cfg, [f"{cfg.schema_}.{t}" for t in names]
    return cfg, names


def _status_path(platform: Any, store: str) -> Any:
    return platform.dir / f"cdc-{store}.status.json"


@cdc_app.command("start")
@handle_errors
def cdc_start(
    config: ConfigOpt = None,
    store: Annotated[str, typer.Option("--store", help="The SQLite or Postgres store to capture.")] = "app",
    slot: Annotated[str, typer.Option("--slot", help="Slot (Postgres) or connector name (SQLite).")] = "headwater",
    publication: Annotated[str, typer.Option("--publication")] = "headwater",
    reset: Annotated[bool, typer.Option("--reset", help="Drop the slot / capture and take a new snapshot.")] = False,
    background: Annotated[bool, typer.Option("--background", help="Run detached; stop with cdc stop.")] = False,
) -> None:
    """Snapshot the catalogued tables, then stream their changes to cdc.<store>.<schema>.<table>."""
    from headwater.config import PostgresConfig

    env = dict(os.environ)
    with open_platform(config) as platform:
        cfg, tables = _source(platform, store)
        if not tables:
            raise InvalidInput(f"no catalogued tables in {store}; run `headwater catalog sync`")
        bus = platform.config.events.bus or f"embedded:{platform.dir / 'events.db'}"
        args = [sys.executable, "-m", "headwater.cdc", "--slot", slot, "--publication", publication, "--bus", bus,
                "--store", store, "--status-file", str(_status_path(platform, store)), "--platform"]
        if config:
            args += ["--config", str(config)]
        if isinstance(cfg, PostgresConfig):
            env["HEADWATER_CDC_DSN"] = cfg.dsn.get_secret_value()  # not on the command line
        else:
            args += ["--sqlite", str(platform.store(store).path)]
        for t in tables:
            args += ["--table", t]
        if reset:
            args.append("--reset")
        pidfile = platform.dir / f"cdc-{store}.pid"
        if background:
            proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    start_new_session=True, env=env)
            pidfile.write_text(str(proc.pid))
            console.print(f"CDC for {store} running in the background (pid {proc.pid}); "
                          f"`headwater cdc status` / `headwater cdc stop`")
            return
    pidfile.write_text(str(os.getpid()))
    try:
        from headwater.cdc.__main__ import main as run

        if "HEADWATER_CDC_DSN" in env:
            os.environ["HEADWATER_CDC_DSN"] = env["HEADWATER_CDC_DSN"]
        raise typer.Exit(run(args[3:]))
    finally:
        pidfile.unlink(missing_ok=True)


def _slots(cfg: Any) -> list[dict[str, Any]]:
    import psycopg

    with psycopg.connect(cfg.dsn.get_secret_value(), autocommit=True, connect_timeout=10) as conn:
        rows = conn.execute(
            "SELECT slot_name, active, restart_lsn::text, confirmed_flush_lsn::text, "
            "(pg_current_wal_lsn() - restart_lsn)::bigint, (pg_current_wal_lsn() - confirmed_flush_lsn)::bigint, "
            "wal_status FROM pg_replication_slots WHERE plugin = 'pgoutput' ORDER BY slot_name").fetchall()
    return [{"slot": r[0], "active": r[1], "restart_lsn": r[2], "confirmed_lsn": r[3], "retained_wal_bytes": r[4],
             "lag_bytes": r[5], "wal_status": r[6]} for r in rows]


def _change_table(path: Any) -> dict[str, Any]:
    import sqlite3

    from headwater.cdc.sqlite import CHANGE_TABLE

    out: dict[str, Any] = {"captured": False, "backlog": 0, "tables": {}, "oldest_age_s": None}
    if not path.exists():
        return out
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as con:
        if not con.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (CHANGE_TABLE,)).fetchone():
            return out
        rows = con.execute(f"SELECT tbl, count(*), min(ts_ms) FROM {CHANGE_TABLE} GROUP BY tbl").fetchall()
    out["captured"] = True
    out["tables"] = {r[0]: r[1] for r in rows}
    out["backlog"] = sum(r[1] for r in rows)
    oldest = min((r[2] for r in rows), default=None)
    out["oldest_age_s"] = None if oldest is None else round(time.time() - oldest / 1000, 1)
    return out


@cdc_app.command("status")
@handle_errors
def cdc_status(
    config: ConfigOpt = None,
    store: Annotated[str, typer.Option("--store")] = "app",
    fmt: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
) -> None:
    """Source position and backlog (Postgres slots: restart/confirmed LSN, retained WAL, wal_status;
    SQLite: change-table backlog), and per-table state (streaming or halted, with the error)."""
    from headwater.cdc.base import read_status_file
    from headwater.config import PostgresConfig

    with open_platform(config) as platform:
        cfg, tables = _source(platform, store)
        pidfile = platform.dir / f"cdc-{store}.pid"
        running = read_status_file(_status_path(platform, store))
        doc: dict[str, Any] = {
            "store": store,
            "kind": "postgres" if isinstance(cfg, PostgresConfig) else "sqlite",
            "running_pid": int(pidfile.read_text()) if pidfile.exists() else None,
            "connector": running,
        }
        if isinstance(cfg, PostgresConfig):
            doc["slots"] = _slots(cfg)
        else:
            doc["change_table"] = _change_table(platform.store(store).path)
        topics = {t.name for t in platform.bus.topics()}
        per_table = (running or {}).get("tables", {})
        rows = []
        for t in tables:
            qualified = t if "." in t else f"main.{t}"
            topic = f"cdc.{store}.{qualified}"
            info = per_table.get(qualified, {})
            rows.append({"table": qualified, "topic": topic, "topic_exists": topic in topics,
                         "state": info.get("state", "-"), "error": info.get("error"),
                         "events": sum(info.get(k, 0) for k in ("c", "u", "d", "r")),
                         "backlog": (doc["change_table"]["tables"].get(t, 0) if doc.get("change_table", {}).get("captured")
                                     else None)})
        doc["tables"] = rows
        if fmt == "json":
            sys.stdout.write(json.dumps(doc, default=str) + "\n")
            return
        if "slots" in doc:
            t = Table(header_style="bold cyan", title="replication slots")
            for col in ("slot", "active", "restart LSN", "confirmed LSN", "retained WAL", "lag bytes", "WAL"):
                t.add_column(col)
            for s in doc["slots"]:
                t.add_row(escape(s["slot"]), str(s["active"]), str(s["restart_lsn"]), str(s["confirmed_lsn"]),
                          f"{s['retained_wal_bytes'] or 0:,}", f"{s['lag_bytes'] or 0:,}", str(s["wal_status"]))
            console.print(t)
        else:
            ct = doc["change_table"]
            console.print(f"change table: {'capturing' if ct['captured'] else 'not set up'}; "
                          f"backlog {ct['backlog']:,} change(s)"
                          + (f", oldest {ct['oldest_age_s']}s old" if ct["oldest_age_s"] is not None else ""))
        if running:
            console.print(f"connector: {escape(str(running.get('state')))}, {running.get('events', 0):,} events"
                          + (f", pid {running['pid']}" if running.get("pid") else ""))
        t = Table(header_style="bold cyan", title="tables")
        for col in ("table", "topic", "state", "events", "backlog", "error"):
            t.add_column(col)
        for r in rows:
            state = "[red]halted[/red]" if r["state"] == "halted" else escape(str(r["state"]))
            t.add_row(escape(r["table"]), escape(r["topic"]) + ("" if r["topic_exists"] else " (no events yet)"),
                      state, f"{r['events']:,}", "-" if r["backlog"] is None else f"{r['backlog']:,}",
                      escape(r["error"] or ""))
        console.print(t)


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


@cdc_app.command("pipeline")
@handle_errors
def cdc_pipeline(
    config: ConfigOpt = None,
    source: Annotated[str, typer.Option("--source", help="The captured store (SQLite or Postgres).")] = "app",
    target: Annotated[str, typer.Option("--target", help="Where the replicas are written.")] = "warehouse",
    tables: Annotated[list[str] | None, typer.Option("--tables", help="Tables to replicate (repeat or comma-"
                                                     "separated); default: every catalogued table.")] = None,
    once: Annotated[bool, typer.Option("--once", help="Catch up, apply, and exit.")] = False,
    principal: Annotated[str, typer.Option("--principal", help="Who writes the replicas.")] = "headwater-cdc",
) -> None:
    """Replicate <source>.<table> -> bus -> <target>.<table> (idempotent; deletes as tombstones;
    lineage from each source column to its replica column)."""
    from headwater.cdc.pipeline import CDCPipeline

    names = [n.strip() for item in tables or [] for n in item.split(",") if n.strip()] or None
    with open_platform(config) as platform:
        pipe = CDCPipeline(platform, source=source, target=target, tables=names, principal=principal,
                           status_file=str(_status_path(platform, source)))
        try:
            if once:
                result = pipe.sync()
                t = Table(header_style="bold cyan", title=f"{source} -> {target}")
                t.add_column("table")
                t.add_column("replica")
                t.add_column("changes applied", justify="right")
                for name, n in result["applied"].items():
                    t.add_row(escape(name), escape(f"{target}.{name}"), f"{n:,}")
                console.print(t)
                for name in result["halted"]:
                    console.print(f"[red]halted[/red] {escape(name)}: "
                                  f"{escape(pipe.connector.schemas.halted[name].error)}")
                return
            signal.signal(signal.SIGTERM, lambda *_: pipe.stop())
            console.print(f"replicating {', '.join(pipe.tables)} from {source} to {target}; Ctrl-C stops")
            try:
                pipe.run()
            except KeyboardInterrupt:
                pipe.stop()
            console.print(f"stopped; {pipe.applied:,} change(s) applied")
        finally:
            pipe.close()
