"""OpenTelemetry SDK fixtures: in-memory span exporter and metric reader.

A tracer/meter provider can be installed only once per process. When another test module
installed one first, the exporter is added to its span processors and its in-memory metric
reader is reused, so these tests see every span and metric whatever ran before them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

_STATE: dict[str, Any] = {}


def _install() -> tuple[InMemorySpanExporter, InMemoryMetricReader | None]:
    if "exporter" in _STATE:
        return _STATE["exporter"], _STATE["reader"]
    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader: InMemoryMetricReader | None = None
    mp = metrics.get_meter_provider()
    if isinstance(mp, MeterProvider):
        readers = (getattr(mp, "_metric_readers", None)  # the SDK keeps them here (1.3x)
                   or getattr(getattr(mp, "_sdk_config", None), "metric_readers", ()))
        reader = next((r for r in readers if isinstance(r, InMemoryMetricReader)), None)
    else:
        reader = InMemoryMetricReader()
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    _STATE.update(exporter=exporter, reader=reader)
    return exporter, reader


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """The in-memory span exporter, cleared before the test."""
    exporter, _ = _install()
    exporter.clear()
    yield exporter
    exporter.clear()  # the provider outlives the test: do not hold its spans


@pytest.fixture
def metric_points() -> Any:
    """``metric_points(name)``: the data points of metric ``name`` recorded so far."""
    _, reader = _install()
    if reader is None:
        pytest.skip("another module installed a meter provider without an in-memory reader")

    def points(name: str) -> list[Any]:
        data = reader.get_metrics_data()
        out: list[Any] = []
        for rm in data.resource_metrics if data else []:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name == name:
                        out.extend(m.data.data_points)
        return out

    return points
