"""``POST /v1/query``: one governed SELECT, keyset-paged, as JSON or an Arrow IPC stream;
``POST /v1/explain``: where and how it would run, governed and audited like the query."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from headwater.service.deps import session
from headwater.service.problems import PROBLEM_RESPONSES
from headwater.service.routes._common import (
    ARROW_RESPONSE,
    Page,
    page_response,
    sql_errors,
    wants_arrow,
)

__all__ = ["ExplainRequest", "ExplainResponse", "QueryRequest", "router"]

router = APIRouter(prefix="/v1", tags=["query"], responses=PROBLEM_RESPONSES)


class QueryRequest(BaseModel):
    """A query: SQL, its parameters and the page wanted."""

    model_config = ConfigDict(extra="forbid")

    sql: str = Field(min_length=1, max_length=1_000_000,
                     description="One SELECT (DuckDB dialect; datasets named `<store>.<table>`).",
                     examples=["SELECT id, email FROM app.customers ORDER BY id"])
    params: list[Any] | dict[str, Any] | None = Field(
        None, description="Values for `?`/`$1` (a list) or `:name` (an object) placeholders.")
    page_size: int | None = Field(None, ge=1, description="Rows per page (keyset paging; needs ORDER BY).")
    cursor: str | None = Field(None, max_length=8192, description="`next_cursor` of the previous page.")


@router.post("/query", response_model=Page, summary="Run a governed query", operation_id="query",
             responses=ARROW_RESPONSE)
def query(body: QueryRequest, request: Request, sess: Any = Depends(session)) -> Any:
    """Run one SELECT as the caller: grants, masks and row filters apply.

    With `page_size` (or `cursor`) one keyset page comes back with `next_cursor`; without,
    the whole result (JSON, or streamed as Arrow IPC when the client accepts
    `application/vnd.apache.arrow.stream`).
    """
    cfg = request.app.state.service_config
    page_size = body.page_size
    if page_size is not None and page_size > cfg.max_page_size:
        from headwater.errors import InvalidInput

        raise InvalidInput(f"page_size must be at most {cfg.max_page_size}")
    with sql_errors():
        result = sess.sql(body.sql, body.params, page_size=page_size, cursor=body.cursor)
        return page_response(result, arrow=wants_arrow(request))


class ExplainRequest(BaseModel):
    """A query to explain: SQL and its parameters."""

    model_config = ConfigDict(extra="forbid")

    sql: str = Field(min_length=1, max_length=1_000_000,
                     description="One SELECT (DuckDB dialect; datasets named `<store>.<table>`).",
                     examples=["SELECT id, email FROM app.customers WHERE id = ?"])
    params: list[Any] | dict[str, Any] | None = Field(
        None, description="Values for `?`/`$1` (a list) or `:name` (an object) placeholders.")


class ExplainResponse(BaseModel):
    """The plan as text: the store (or the federation) and its plan, parameters as markers."""

    plan: str = Field(description="Where the query runs and how; under a policy, operator names only.")


@router.post("/explain", response_model=ExplainResponse, summary="Explain a governed query",
             operation_id="explain")
def explain(body: ExplainRequest, sess: Any = Depends(session)) -> ExplainResponse:
    """Where and how the query would run as the caller: denied when the query would be,
    audited (action `explain`), never showing parameter values, mask keys or row estimates of
    data the policy hides."""
    with sql_errors():
        return ExplainResponse(plan=sess.explain(body.sql, body.params))
