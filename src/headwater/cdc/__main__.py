"""Run one Postgres CDC connector in the foreground: ``python -m headwater.cdc --help``.

This is what ``headwater cdc start`` runs; SIGTERM or SIGINT stops it cleanly (what it holds
is published and confirmed first). It prints its status as JSON on exit.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from typing import Any


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the connector until stopped; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m headwater.cdc", description=__doc__)
    parser.add_argument("--dsn", required=True, help="libpq connection string of the source")
    parser.add_argument("--slot", required=True)
    parser.add_argument("--publication", required=True)
    parser.add_argument("--table", action="append", dest="tables", help="schema.table (repeat); default all")
    parser.add_argument("--bus", required=True, help="bus URL (embedded:/path/events.db, nats://host:4222)")
    parser.add_argument("--store", default="app")
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--heartbeat-interval", type=float, default=10.0)
    parser.add_argument("--idle-timeout", type=float, default=None)
    parser.add_argument("--max-events", type=int, default=None)
    parser.add_argument("--reset", action="store_true", help="drop the slot and re-snapshot")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    from headwater.cdc.postgres import PostgresCDC
    from headwater.events.bus import connect

    bus = connect(args.bus)
    cdc = PostgresCDC(args.dsn, slot=args.slot, publication=args.publication, tables=args.tables, bus=bus,
                      store=args.store, batch_size=args.batch_size, heartbeat_interval=args.heartbeat_interval,
                      reset=args.reset)

    def _stop(*_: Any) -> None:
        cdc.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        cdc.run(max_events=args.max_events, idle_timeout=args.idle_timeout)
    finally:
        print(json.dumps(cdc.status(), default=str), flush=True)
        bus.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
