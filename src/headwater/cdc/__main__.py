"""Run one CDC connector in the foreground: ``python -m headwater.cdc --help``.

This is what ``headwater cdc start`` runs; SIGTERM or SIGINT stops it cleanly (what it holds
is published and confirmed first). It prints its status as JSON on exit.

The Postgres source's connection string is read from ``HEADWATER_CDC_DSN`` (or ``--dsn``; the
environment keeps it out of process listings); ``--sqlite PATH`` captures a SQLite file
instead. ``--platform`` opens the Headwater platform (``--config`` / ``HEADWATER_CONFIG`` /
the embedded default) to register row schemas in its registry and classify fields from its
catalog, to seal PII columns under their data subject's key and to sign what it publishes (the
platform's pipelines apply signed change events only).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from typing import Any


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the connector until stopped; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m headwater.cdc", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dsn", default=None, help="libpq connection string (default: $HEADWATER_CDC_DSN)")
    parser.add_argument("--sqlite", default=None, help="capture this SQLite database file instead")
    parser.add_argument("--slot", default="headwater", help="Postgres slot (SQLite: the connector name)")
    parser.add_argument("--publication", default="headwater")
    parser.add_argument("--table", action="append", dest="tables", help="schema.table (repeat); default all")
    parser.add_argument("--bus", required=True, help="bus URL (embedded:/path/events.db, nats://host:4222)")
    parser.add_argument("--store", default="app")
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--heartbeat-interval", type=float, default=10.0)
    parser.add_argument("--idle-timeout", type=float, default=None)
    parser.add_argument("--max-events", type=int, default=None)
    parser.add_argument("--status-file", default=None, help="write the status here as JSON while running")
    parser.add_argument("--platform", action="store_true", help="use the platform's schema registry and catalog")
    parser.add_argument("--config", default=None, help="headwater.yaml for --platform")
    parser.add_argument("--reset", action="store_true", help="drop the slot / capture and re-snapshot")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    from headwater.events.bus import connect

    platform = None
    extra: dict[str, Any] = {}
    if args.platform:
        from headwater.platform import Platform

        platform = Platform.open(args.config)
        catalog = platform.catalog

        def classify(table: str) -> dict[str, str]:
            ds = catalog.find(f"{args.store}.{table.rpartition('.')[2]}")
            return {} if ds is None else {c.name: t[4:] for c in ds.columns for t in c.tags if t.startswith("pii.")}

        sealer = platform.event_governance.sealer

        def seal(topic: str) -> Any:
            return sealer.for_rows(topic, f"{args.store}.{topic.rpartition('.')[2]}")

        extra = {"registry": platform.schema_registry, "classify": classify, "seal": seal}

    def alert(info: dict[str, Any]) -> None:
        print(json.dumps({"alert": info}, default=str), file=sys.stderr, flush=True)

    bus = connect(args.bus)
    # With the platform, events are signed (its pipelines apply only those) and PII is sealed.
    publish_bus = platform.event_governance.provenance.signing_bus(bus) if platform is not None else bus
    cdc: Any
    if args.sqlite:
        from headwater.cdc.sqlite import SQLiteCDC

        cdc = SQLiteCDC(args.sqlite, bus=publish_bus, tables=args.tables, store=args.store, name=args.slot,
                        batch_size=args.batch_size, reset=args.reset, status_file=args.status_file,
                        on_alert=alert, **extra)
    else:
        from headwater.cdc.postgres import PostgresCDC

        dsn = args.dsn or os.environ.get("HEADWATER_CDC_DSN")
        if not dsn:
            parser.error("pass --sqlite PATH, or the Postgres DSN in HEADWATER_CDC_DSN (or --dsn)")
        cdc = PostgresCDC(dsn, slot=args.slot, publication=args.publication, tables=args.tables, bus=publish_bus,
                          store=args.store, batch_size=args.batch_size, heartbeat_interval=args.heartbeat_interval,
                          reset=args.reset, status_file=args.status_file, on_alert=alert, **extra)

    def _stop(*_: Any) -> None:
        cdc.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        cdc.run(max_events=args.max_events, idle_timeout=args.idle_timeout)
    finally:
        print(json.dumps(cdc.status(), default=str), flush=True)
        bus.close()
        if platform is not None:
            platform.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
