"""Spans and metrics of SDK calls, checked with OpenTelemetry's in-memory exporters."""

from __future__ import annotations

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from headwater import AccessDenied

_EXPORTER = InMemorySpanExporter()
_READER = InMemoryMetricReader()


@pytest.fixture(scope="module", autouse=True)
def _providers():
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
    trace.set_tracer_provider(provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[_READER]))
    yield


@pytest.fixture()
def spans():
    _EXPORTER.clear()
    return _EXPORTER


def _metric_points(name: str) -> list:
    data = _READER.get_metrics_data()
    out = []
    for rm in data.resource_metrics if data else []:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                if m.name == name:
                    out.extend(m.data.data_points)
    return out


def test_query_span_follows_db_semantic_conventions(session, spans) -> None:
    session.write("app.people", [{"id": 1, "email": "secret@example.com"}], key="id")
    spans.clear()
    session.sql("SELECT id FROM app.people WHERE email = 'secret@example.com' AND id = ?", [1]).to_arrow()
    (span,) = [s for s in spans.get_finished_spans() if s.name.startswith("SELECT")]
    assert span.name == "SELECT app.people"
    assert span.kind == trace.SpanKind.CLIENT
    a = span.attributes
    assert a["db.system.name"] == "sqlite"
    assert a["db.operation.name"] == "SELECT"
    assert a["db.collection.name"] == "app.people"
    assert a["db.query.summary"] == "SELECT app.people"
    assert "secret@example.com" not in a["db.query.text"]
    assert "?" in a["db.query.text"]


def test_federated_query_and_write_spans(session, spans) -> None:
    session.write("warehouse.o", [{"id": 1, "cid": 1}], key="id")
    session.write("app.c", [{"id": 1, "name": "x"}], key="id")
    session.sql("SELECT c.name FROM app.c c JOIN warehouse.o o ON o.cid = c.id").to_arrow()
    names = [s.name for s in spans.get_finished_spans()]
    assert "INSERT warehouse.o" in names and "INSERT app.c" in names
    fed = [s for s in spans.get_finished_spans() if s.name == "SELECT"]
    assert fed and fed[-1].attributes["db.query.summary"] == "SELECT app.c warehouse.o"
    points = _metric_points("db.client.operation.duration")
    assert any(p.attributes.get("db.operation.name") == "SELECT" and p.count >= 1 for p in points)


def test_errors_and_denials_are_recorded(platform, session, spans) -> None:
    session.write("app.t", [{"id": 1}], key="id")
    with pytest.raises(Exception):  # noqa: B017 - any typed error; the span must say so
        session.sql("SELECT id FROM app.t WHERE id = 'x' || 1 / 0 || nosuchfunc(1)").to_arrow()
    platform.policies.apply("version: 1\nroles: {r: {grants: [{datasets: 'app.*', actions: [select]}]}}\n"
                            "principals: {bob: {roles: [r]}}\n", source="p", applied_by="t")
    spans.clear()
    with pytest.raises(AccessDenied):
        platform.session("mallory").sql("SELECT id FROM app.t").to_arrow()
    platform.session("bob").sql("SELECT id FROM app.t").to_arrow()
    decided = [s for s in spans.get_finished_spans() if s.name == "headwater.policy.decide"]
    assert decided and decided[-1].attributes["headwater.principal"] == "bob"
    denials = _metric_points("headwater.policy.denials")
    assert any(p.attributes.get("headwater.policy.rule") == "default-deny" and p.value >= 1 for p in denials)
