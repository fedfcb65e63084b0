"""The change-data-capture step of ``headwater demo``: :func:`cdc_demo_step`."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from typing import Any

__all__ = ["cdc_demo_step"]


def _summary(row: dict[str, Any] | None, keys: tuple[str, ...] = ("id", "name", "email", "country")) -> str:
    if row is None:
        return "—"
    shown = {k: row[k] for k in keys if k in row}
    return json.dumps(shown, ensure_ascii=False, default=str)


def _source_writes(platform: Any, table: str, new_id: int, update_id: int, delete_id: int) -> None:
    """What an application does to its transactional store (plain SQL, not through Headwater)."""
    from headwater.config import PostgresConfig

    cfg = platform.config.stores["app"]
    statements = [
        (f"INSERT INTO {table} (id, name, email, country) VALUES (?, ?, ?, ?)",
         (new_id, "Grace Hopper", "grace@example.com", "US")),
        (f"UPDATE {table} SET email = ?, country = ? WHERE id = ?", ("new.address@example.com", "IE", update_id)),
        (f"DELETE FROM {table} WHERE id = ?", (delete_id,)),
    ]
    if isinstance(cfg, PostgresConfig):
        import psycopg

        with psycopg.connect(cfg.dsn.get_secret_value()) as conn:
            conn.execute(f'SET search_path TO "{cfg.schema_}"')
            for sql, params in statements:
                conn.execute(sql.replace("?", "%s"), params)
        return
    with contextlib.closing(sqlite3.connect(platform.store("app").path, isolation_level=None)) as con:
        for sql, params in statements:  # three transactions, as an application would commit them
            con.execute(sql, params)


def cdc_demo_step(platform: Any, console: Any, *, table: str = "customers", principal: str = "demo") -> dict[str, Any]:
    """Replicate ``app.<table>`` into ``warehouse.<table>`` through change events and show it.

    Starts capture (SQLite triggers on the embedded platform, logical replication on Postgres)
    with an initial snapshot, makes an insert, an update and a delete in the source, runs the
    pipeline until caught up, prints the change events it saw and checks that the replica
    equals the source. Returns ``{"events", "applied", "replica_rows", "matches", "seconds"}``.
    """
    from rich.markup import escape
    from rich.table import Table

    from headwater.cdc.base import CHANGE_TYPE
    from headwater.cdc.pipeline import CDCPipeline

    started = time.perf_counter()
    session = platform.session(principal)
    pipe = CDCPipeline(platform, source="app", target="warehouse", tables=[table], session=session,
                       name="demo_replica")
    topic = pipe.topic_of(table)
    try:
        first = pipe.sync()
        snapshot_rows = first["applied"][table]
        # the two newest rows: the demo's earlier steps (and their documented views) use the oldest
        ids = [r["id"] for r in session.sql(f"SELECT id FROM app.{table} ORDER BY id DESC LIMIT 2").to_pylist()]
        top = session.sql(f"SELECT max(id) AS m FROM app.{table}").to_pylist()[0]["m"] or 0
        update_id, delete_id = (ids + [None, None])[:2]
        if update_id is None or delete_id is None:
            raise ValueError(f"app.{table} needs at least two rows for the CDC demo")
        # What a downstream consumer of the topic sees from here on.
        watcher = platform.bus.subscribe(topic, "demo-cdc-watch")
        while old := watcher.fetch(10_000, timeout=0.05):
            watcher.ack_many(old)
        seen: list[Any] = []
        _source_writes(platform, table, top + 1, update_id, delete_id)
        second = pipe.sync()
        while True:
            msgs = watcher.fetch(1000, timeout=0.05)
            if not msgs:
                break
            seen.extend(m.event() for m in msgs if m.event().type == CHANGE_TYPE)
            watcher.ack_many(msgs)
        watcher.close()
    finally:
        if pipe.connector.__class__.__name__ == "PostgresCDC":
            pipe.drop()  # a demo must not leave a slot retaining WAL behind
        else:
            pipe.close()  # the SQLite capture stays: `headwater cdc status` shows it

    t = Table(header_style="bold cyan", title=f"change events on {topic}")
    for col in ("op", "key", "position", "before", "after"):
        t.add_column(col)
    names = {"c": "insert", "u": "update", "d": "delete", "r": "read"}
    for ev in seen:
        d = ev.data
        t.add_row(names.get(d["op"], d["op"]), escape(str(ev.subject)), str(d["source"]["lsn"]),
                  escape(_summary(d["before"])), escape(_summary(d["after"])))
    console.print(t)
    src = session.sql(f"SELECT * FROM app.{table} ORDER BY id").to_pylist()
    rep = session.sql(f"SELECT * FROM warehouse.{table} WHERE NOT _deleted ORDER BY id").to_pylist()
    cols = list(src[0]) if src else []
    matches = [[_norm(r.get(c)) for c in cols] for r in rep] == [[_norm(r[c]) for c in cols] for r in src]
    seconds = time.perf_counter() - started
    mark = "[green]✓[/green]" if matches else "[red]✗[/red]"
    console.print(f"  {mark} warehouse.{table}: {len(rep):,} live rows "
                  f"({snapshot_rows:,} from the snapshot, then {second['applied'][table]} change(s)) — "
                  f"{'equal to' if matches else 'DIFFERENT from'} app.{table} "
                  f"[dim](tombstones keep deleted keys; lineage links each app.{table} column to its replica)"
                  f"[/dim] ({seconds:.1f}s)", highlight=False)
    return {"events": len(seen), "applied": snapshot_rows + second["applied"][table], "replica_rows": len(rep),
            "matches": matches, "seconds": round(seconds, 2)}


def _norm(value: Any) -> str | None:
    # The replica keeps change-event values (numbers exact, timestamps as ISO text): compare as
    # text, with the date-time separator of either form.
    return None if value is None else str(value).replace("T", " ")
