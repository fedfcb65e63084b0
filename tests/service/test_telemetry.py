"""HTTP server spans over the real server: FastAPI's OpenTelemetry instrumentation with the
semantic conventions, one trace from the caller through the query's database span."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
from opentelemetry.trace import SpanKind

from headwater.telemetry.otel import capture_spans
from tests.service.conftest import Served

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def _server_spans(exporter: Any, keep: Callable[[Any], bool], timeout: float = 10.0) -> list[Any]:
    """The finished server spans ``keep`` accepts, waiting for the first one.

    The ASGI instrumentation ends a request's span after the last body message is sent, so the
    client can hold the response a moment before the span is finished and exported."""
    deadline = time.monotonic() + timeout
    while True:
        found = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER and keep(s)]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.01)


def test_request_is_a_server_span_that_continues_the_callers_trace(served: Served) -> None:
    exporter = capture_spans()
    headers = {"X-API-Key": served.tokens["alice"], "traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"}
    r = httpx.post(f"{served.base_url}/v1/query", json={"sql": "SELECT count(*) AS n FROM app.customers"},
                   headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    server = _server_spans(exporter, lambda s: format(s.context.trace_id, "032x") == TRACE_ID)
    assert len(server) == 1
    spans = [s for s in exporter.get_finished_spans() if format(s.context.trace_id, "032x") == TRACE_ID]
    (srv,) = server
    assert srv.name == "POST /v1/query"
    assert srv.attributes["http.request.method"] == "POST"
    assert srv.attributes["http.route"] == "/v1/query"
    assert srv.attributes["http.response.status_code"] == 200
    assert format(srv.parent.span_id, "016x") == "00f067aa0ba902b7"
    db = [s for s in spans if s.kind is SpanKind.CLIENT and "db.system.name" in s.attributes]
    assert db, [s.name for s in spans]  # the query's database span joins the caller's trace
    assert all("app.customers" in s.attributes.get("db.collection.name", "app.customers") for s in db)


def test_denied_request_is_recorded_without_values(served: Served) -> None:
    exporter = capture_spans()
    r = httpx.post(f"{served.base_url}/v1/query", json={"sql": "SELECT ssn FROM app.customers WHERE ssn = '123-45-6789'"},
                   headers={"X-API-Key": served.tokens["bob"]}, timeout=30)
    assert r.status_code == 403
    server = _server_spans(exporter, lambda s: s.name == "POST /v1/query")
    assert server and server[-1].attributes["http.response.status_code"] == 403
    for s in exporter.get_finished_spans():
        assert "123-45-6789" not in str(dict(s.attributes or {}))
