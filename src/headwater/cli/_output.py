"""Rendering results for the terminal and for scripts (table, json, csv, parquet)."""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

__all__ = ["json_default", "print_table", "write_result"]


def json_default(value: Any) -> Any:
    """JSON encoding for values Arrow hands back (dates, decimals, bytes)."""
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def print_table(console: Console, table: pa.Table, *, title: str | None = None, max_rows: int = 50) -> None:
    """A rich table of the first ``max_rows`` rows."""
    t = Table(title=title, show_lines=False, header_style="bold cyan")
    for name in table.column_names:
        t.add_column(name, overflow="fold")
    for row in table.slice(0, max_rows).to_pylist():
        t.add_row(*[Text("∅", style="dim") if v is None else Text(str(v)) for v in row.values()])
    console.print(t)
    if table.num_rows > max_rows:
        console.print(f"[dim]… {table.num_rows - max_rows} more row(s)[/dim]")


def write_result(
    result: Any, fmt: str, *, console: Console, output: Path | None, paged: bool
) -> int:
    """Write a ``Result`` in ``fmt``; returns rows written. Streams csv/parquet with progress."""
    if fmt == "json":
        table = result.to_arrow()
        doc = {"columns": table.column_names, "rows": table.to_pylist(), "next_cursor": result.next_cursor}
        text = json.dumps(doc, default=json_default)
        if output:
            output.write_text(text + "\n")
        else:
            sys.stdout.write(text + "\n")
        return table.num_rows
    if fmt == "table":
        table = result.to_arrow()
        print_table(console, table, max_rows=table.num_rows)
        console.print(f"[dim]{table.num_rows} row(s)[/dim]")
        if result.next_cursor:
            console.print(f"next cursor: {result.next_cursor}")
        return table.num_rows
    if fmt == "csv":
        out = output.open("w", newline="") if output else sys.stdout
        try:
            writer = csv.writer(out)
            writer.writerow(result.columns)
            n = 0
            for batch in _progress(result.batches(), console, enabled=output is not None):
                for row in batch.to_pylist():
                    writer.writerow(["" if v is None else json_default(v) if not isinstance(v, str | int | float) else v for v in row.values()])
                n += batch.num_rows
        finally:
            if output:
                out.close()
        if result.next_cursor:
            console.print(f"next cursor: {result.next_cursor}", highlight=False)
        return n
    if fmt == "parquet":
        if output is None:
            from headwater.errors import InvalidInput

            raise InvalidInput("--format parquet needs --output FILE")
        writer = None
        n = 0
        try:
            for batch in _progress(result.batches(), console, enabled=True):
                if writer is None:
                    writer = pq.ParquetWriter(output, batch.schema)
                writer.write_batch(batch)
                n += batch.num_rows
            if writer is None:
                pq.write_table(result.schema.empty_table(), output)
        finally:
            if writer is not None:
                writer.close()
        console.print(f"wrote {n} row(s) to {output}")
        if result.next_cursor:
            console.print(f"next cursor: {result.next_cursor}", highlight=False)
        return n
    from headwater.errors import InvalidInput

    raise InvalidInput(f"unknown format {fmt!r}; use table, json, csv or parquet")


def _progress(batches: Iterator[pa.RecordBatch], console: Console, *, enabled: bool) -> Iterator[pa.RecordBatch]:
    if not enabled:
        yield from batches
        return
    with Progress(
        SpinnerColumn(), TextColumn("exporting"), BarColumn(bar_width=None),
        TextColumn("{task.completed:,} rows"), TimeElapsedColumn(), console=console, transient=True,
    ) as progress:
        task = progress.add_task("export", total=None)
        for batch in batches:
            yield batch
            progress.advance(task, batch.num_rows)
