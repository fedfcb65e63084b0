"""OpenTelemetry instrumentation following the semantic conventions.

Every SDK query and write is a database client span named ``"{db.operation.name}
{db.collection.name}"`` with ``db.system.name``, ``db.operation.name``, ``db.collection.name``,
``db.query.summary`` and a parameterised ``db.query.text`` (literals replaced by ``?``: values
never leave the process through telemetry), and is measured by the
``db.client.operation.duration`` histogram (seconds). Policy decisions are ``headwater.policy``
spans; denials are counted by ``headwater.policy.denials`` with the denying rule as reason.

The instrumentation uses the OpenTelemetry API only: with no SDK configured it costs a no-op
call. :func:`configure` installs the SDK with the exporters named in the ``telemetry`` config
section (``otlp_http``, ``otlp_grpc``, ``console``, ``prometheus``); nothing is exported by
default.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator, Sequence
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["TelemetryConfig", "configure", "db_span", "policy_denied", "query_summary", "query_text", "tracer"]

_SCOPE = "headwater"
_MARKER = re.compile(r"__hwparam\d+__")
_tracer = trace.get_tracer(_SCOPE)
_meter = metrics.get_meter(_SCOPE)
_duration = _meter.create_histogram(
    "db.client.operation.duration", unit="s",
    description="Duration of database client operations.",
    explicit_bucket_boundaries_advisory=[0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10],
)
_denials = _meter.create_counter("headwater.policy.denials", unit="{denial}",
                                 description="Queries and writes denied by the policy engine.")

DB_SYSTEMS = {"sqlite": "sqlite", "postgres": "postgresql", "duckdb": "duckdb", "snowflake": "snowflake",
              "parquet": "duckdb", None: "duckdb"}


class TelemetryConfig(BaseModel):
    """The ``telemetry`` section: which exporters to install (none by default)."""

    model_config = ConfigDict(extra="forbid")

    exporters: list[str] = Field(default_factory=list,
                                 description="otlp_http, otlp_grpc, console, prometheus")
    otlp_endpoint: str | None = None
    prometheus_port: int | None = Field(None, description="Serve /metrics on this port (loopback).")
    service_name: str = "headwater"


_configured = False


def configure(cfg: TelemetryConfig) -> None:
    """Install the OpenTelemetry SDK with the configured exporters (once per process)."""
    global _configured
    if _configured or not cfg.exporters:
        return
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    resource = Resource.create({"service.name": cfg.service_name})
    tracer_provider = TracerProvider(resource=resource)
    readers: list[Any] = []
    for name in cfg.exporters:
        if name == "console":
            tracer_provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        elif name == "otlp_http":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            kw = {"endpoint": f"{cfg.otlp_endpoint.rstrip('/')}/v1/traces"} if cfg.otlp_endpoint else {}
            tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(**kw)))
        elif name == "otlp_grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # type: ignore[import-not-found]
                OTLPSpanExporter as GrpcExporter,
            )

            kw = {"endpoint": cfg.otlp_endpoint} if cfg.otlp_endpoint else {}
            tracer_provider.add_span_processor(BatchSpanProcessor(GrpcExporter(**kw)))
        elif name == "prometheus":
            from opentelemetry.exporter.prometheus import PrometheusMetricReader

            readers.append(PrometheusMetricReader())
            if cfg.prometheus_port:
                from prometheus_client import start_http_server

                start_http_server(cfg.prometheus_port, addr="127.0.0.1")
        else:
            from headwater.errors import ConfigError

            raise ConfigError(f"unknown telemetry exporter {name!r}; use otlp_http, otlp_grpc, console or prometheus")
    trace.set_tracer_provider(tracer_provider)
    if readers:
        metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=readers))
    _configured = True


def query_text(tree: Any) -> str:
    """The statement with every literal replaced by ``?`` (for ``db.query.text``)."""
    from sqlglot import exp

    out = tree.copy()
    for lit in list(out.find_all(exp.Literal)):
        lit.replace(exp.Placeholder())
    return _MARKER.sub("?", out.sql(dialect="duckdb"))


def query_summary(operation: str, collections: Sequence[str]) -> str:
    """``db.query.summary``: the operation and the datasets it touches."""
    return " ".join([operation, *collections])


@contextlib.contextmanager
def db_span(
    operation: str, collections: Sequence[str], *, store_kind: str | None, summary: str, text: str | None,
) -> Iterator[Any]:
    """A database client span plus a ``db.client.operation.duration`` measurement."""
    collection = collections[0] if len(collections) == 1 else None
    name = f"{operation} {collection}" if collection else operation
    attrs: dict[str, Any] = {"db.system.name": DB_SYSTEMS.get(store_kind, store_kind or "duckdb"),
                             "db.operation.name": operation, "db.query.summary": summary}
    if collection:
        attrs["db.collection.name"] = collection
    start = time.perf_counter()
    error: str | None = None
    with _tracer.start_as_current_span(name, kind=SpanKind.CLIENT, attributes=attrs) as span:
        if text is not None and span.is_recording():
            span.set_attribute("db.query.text", text)
        try:
            yield span
        except BaseException as err:
            error = type(err).__name__
            span.set_status(Status(StatusCode.ERROR, error))
            span.set_attribute("error.type", error)
            raise
        finally:
            if error:
                attrs["error.type"] = error
            _duration.record(time.perf_counter() - start, attrs)


def tracer() -> Any:
    """The package tracer (for spans outside database calls)."""
    return _tracer


def policy_denied(rule: str, action: str) -> None:
    """Count a denial by the rule that denied it."""
    _denials.add(1, {"headwater.policy.rule": rule, "db.operation.name": action})
