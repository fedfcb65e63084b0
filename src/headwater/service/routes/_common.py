"""Helpers shared by the route modules: result encoding (JSON or Arrow IPC stream)."""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import json
import math
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
from fastapi import Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

__all__ = ["ARROW_STREAM", "NEXT_CURSOR_HEADER", "Page", "jsonable", "page_response", "sql_errors", "wants_arrow"]

ARROW_STREAM = "application/vnd.apache.arrow.stream"
NEXT_CURSOR_HEADER = "X-Next-Cursor"


class Page(BaseModel):
    """One page of rows: column names, rows as arrays in column order, the next page's cursor."""

    columns: list[str] = Field(description="Column names, in order.")
    rows: list[list[Any]] = Field(description="Rows, each an array of values in column order.")
    next_cursor: str | None = Field(None, description="Pass as `cursor` to get the next page; null on the last.")


@contextlib.contextmanager
def sql_errors() -> Iterator[None]:
    """Translate a SQL tokenizer/parser error the SDK let through into ``QueryParseError``."""
    from sqlglot.errors import SqlglotError

    try:
        yield
    except SqlglotError:
        from headwater.errors import QueryParseError

        raise QueryParseError("SQL does not parse (tokenizer error)") from None


def wants_arrow(request: Request) -> bool:
    """Whether the client asked for an Arrow IPC stream (``Accept``)."""
    accept = request.headers.get("accept", "")
    return any(part.split(";")[0].strip().lower() == ARROW_STREAM for part in accept.split(","))


def jsonable(value: Any) -> Any:
    """A JSON-safe form of a value Arrow hands back."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return str(value)


def _rows(table: pa.Table) -> list[list[Any]]:
    cols = [table.column(i).to_pylist() for i in range(table.num_columns)]
    return [[jsonable(c[r]) for c in cols] for r in range(table.num_rows)]


def page_response(result: Any, *, arrow: bool) -> Any:
    """The HTTP response for a :class:`~headwater.access.session.Result`."""
    headers = {NEXT_CURSOR_HEADER: result.next_cursor} if result.next_cursor else {}
    if arrow:
        batches = result.batches()
        first = next(batches, None)  # errors before the first batch still become problem details
        return StreamingResponse(_ipc_stream(result.schema, first, batches), media_type=ARROW_STREAM,
                                 headers=headers)
    table = result.to_arrow()
    body = {"columns": list(table.column_names), "rows": _rows(table), "next_cursor": result.next_cursor}
    return JSONResponse(json.loads(json.dumps(body, allow_nan=False)), headers=headers)


class _Sink:
    """A write-only file that hands its bytes out as they come (for streaming IPC)."""

    closed = False

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def flush(self) -> None:
        return None

    def close(self) -> None:
        return None

    def write(self, data: Any) -> int:
        self.chunks.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out = b"".join(self.chunks)
        self.chunks.clear()
        return out


def _ipc_stream(schema: pa.Schema, first: pa.RecordBatch | None, rest: Iterator[pa.RecordBatch]) -> Iterator[bytes]:
    sink = _Sink()
    out = pa.PythonFile(sink, mode="w")
    with pa.ipc.new_stream(out, schema) as writer:
        if first is not None:
            writer.write_batch(first)
            yield sink.take()
            for batch in rest:
                writer.write_batch(batch)
                yield sink.take()
    yield sink.take()


ARROW_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Rows as JSON, or as an Arrow IPC stream when `Accept: application/vnd.apache.arrow.stream`.",
        "content": {ARROW_STREAM: {"schema": {"type": "string", "format": "binary"}}},
        "headers": {NEXT_CURSOR_HEADER: {"description": "Cursor of the next page (paged requests).",
                                         "schema": {"type": "string"}}},
    }
}
"""OpenAPI ``responses`` entry for routes that return rows."""
