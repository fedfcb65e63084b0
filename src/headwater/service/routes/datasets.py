"""Read (``GET``) and write (``POST``) a dataset's rows, governed as the caller."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated, Any

import pyarrow as pa
from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, Field

from headwater.errors import InvalidInput
from headwater.service.deps import session
from headwater.service.problems import PROBLEM_RESPONSES
from headwater.service.routes._common import (
    ARROW_RESPONSE,
    ARROW_STREAM,
    Page,
    page_response,
    sql_errors,
    wants_arrow,
)

__all__ = ["WriteMode", "WriteResponse", "router"]

router = APIRouter(prefix="/v1/datasets", tags=["datasets"], responses=PROBLEM_RESPONSES)

DatasetName = Annotated[str, Path(description="`<store>.<table>`", min_length=3, max_length=512,
                                  examples=["app.customers"])]


class WriteMode(StrEnum):
    """How written rows meet existing ones."""

    append = "append"
    upsert = "upsert"
    overwrite = "overwrite"


class WriteResponse(BaseModel):
    """What a write did."""

    dataset: str
    mode: str
    rows_written: int
    created: bool = Field(description="The write created the table.")


@router.get("/{dataset}/rows", response_model=Page, summary="Read a dataset", operation_id="read_dataset",
            responses=ARROW_RESPONSE)
def read_dataset(
    dataset: DatasetName,
    request: Request,
    page_size: Annotated[int | None, Query(ge=1, description="Rows per page (keyset paging).")] = None,
    cursor: Annotated[str | None, Query(max_length=8192, description="`next_cursor` of the previous page.")] = None,
    columns: Annotated[str | None, Query(max_length=10_000, description="Comma-separated columns (default: all).")] = None,
    order_by: Annotated[str | None, Query(max_length=10_000, description="Comma-separated sort columns (`col DESC`); "
                                          "default: the primary key when selected, else the selected columns.")] = None,
    sess: Any = Depends(session),
) -> Any:
    """Rows of one dataset as the caller may see them (denied columns left out), a page at a time."""
    cfg = request.app.state.service_config
    if page_size is None and cursor is None:
        page_size = cfg.default_page_size
    if page_size is not None and page_size > cfg.max_page_size:
        raise InvalidInput(f"page_size must be at most {cfg.max_page_size}")
    cols = [c.strip() for c in columns.split(",") if c.strip()] if columns else None
    order = [o.strip() for o in order_by.split(",") if o.strip()] if order_by else None
    if cols is None or order is None:
        ds = sess.platform.catalog.get(dataset)
        if cols is None:  # every column the caller may read (denied ones are not there for it)
            engine = sess.platform.policy_engine()
            hidden = {c.lower() for c in engine.hidden_columns(ds, sess.principal)} if engine is not None else set()
            cols = [c for c in ds.column_names if c.lower() not in hidden]
        if order is None:  # keyset paging needs the sort keys in the result
            chosen = {c.lower() for c in cols}
            key = list(ds.primary_key)
            order = key if key and all(k.lower() in chosen for k in key) else list(cols)
    with sql_errors():
        result = sess.read(dataset, columns=cols, order_by=order, page_size=page_size, cursor=cursor)
        return page_response(result, arrow=wants_arrow(request))


_WRITE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "Rows: a JSON array of objects (or `{\"rows\": [...]}`), or an Arrow IPC stream.",
        "content": {
            "application/json": {"schema": {"oneOf": [
                {"type": "array", "items": {"type": "object"}},
                {"type": "object", "properties": {"rows": {"type": "array", "items": {"type": "object"}}},
                 "required": ["rows"]},
            ]}},
            ARROW_STREAM: {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


def _rows_of(body: bytes, content_type: str) -> pa.Table:
    if content_type.split(";")[0].strip().lower() == ARROW_STREAM:
        try:
            return pa.ipc.open_stream(pa.BufferReader(body)).read_all()
        except (pa.ArrowInvalid, pa.ArrowException, OSError):
            raise InvalidInput("the body is not a valid Arrow IPC stream") from None
    try:
        data = json.loads(body or b"null")
    except ValueError:
        raise InvalidInput("the body is not valid JSON") from None
    if isinstance(data, dict) and set(data) == {"rows"}:
        data = data["rows"]
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise InvalidInput("send rows as a JSON array of objects, or {\"rows\": [...]}")
    if not data:
        raise InvalidInput("no rows to write")
    try:
        return pa.Table.from_pylist(data)
    except (pa.ArrowException, TypeError, ValueError, OverflowError) as err:
        raise InvalidInput(f"rows do not form a table: {str(err)[:200]}") from None


@router.post("/{dataset}/rows", response_model=WriteResponse, summary="Write rows", operation_id="write_dataset",
             openapi_extra=_WRITE_BODY)
async def write_dataset(
    dataset: DatasetName,
    request: Request,
    mode: Annotated[WriteMode, Query(description="append, upsert (by key) or overwrite.")] = WriteMode.append,
    key: Annotated[str | None, Query(max_length=10_000, description="Comma-separated upsert key "
                                     "(default: the primary key).")] = None,
    sess: Any = Depends(session),
) -> WriteResponse:
    """Write rows atomically as the caller (a missing table is created); nothing is written on error."""
    from starlette.concurrency import run_in_threadpool

    body = await request.body()
    table = _rows_of(body, request.headers.get("content-type", "application/json"))
    keys = [k.strip() for k in key.split(",") if k.strip()] if key else None
    result = await run_in_threadpool(sess.write, dataset, table, mode=mode.value, key=keys)
    mode_value = getattr(result.mode, "value", str(result.mode))
    return WriteResponse(dataset=dataset, mode=str(mode_value), rows_written=result.rows_written,
                         created=bool(result.created))
