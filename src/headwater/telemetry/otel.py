"""OpenTelemetry instrumentation following the semantic conventions.

Every SDK query and write is a database client span named ``"{db.operation.name}
{db.collection.name}"`` with ``db.system.name``, ``db.operation.name``, ``db.collection.name``,
``db.query.summary`` and a parameterised ``db.query.text`` (literals replaced by ``?``: values
never leave the process through telemetry), and is measured by the
``db.client.operation.duration`` histogram (seconds). Policy decisions are
``headwater.policy.decide`` spans (:func:`policy_span`) carrying ``headwater.policy.decision``
(``allow``/``deny``) and, on a denial, the denying rule (``headwater.policy.rule``); decisions
are counted by ``headwater.policy.decisions`` and denials by ``headwater.policy.denials`` with
the denying rule as reason. Messaging spans (publish/process, trace context inside events) are
in :mod:`headwater.telemetry.messaging`.

The instrumentation uses the OpenTelemetry API only: with no SDK configured it costs a no-op
call. :func:`configure` installs the SDK with the exporters named in the ``telemetry`` config
section (``otlp_http``, ``otlp_grpc``, ``console``, ``prometheus``); nothing is exported by
default.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.trace import (
    NoOpTracerProvider,
    ProxyTracerProvider,
    SpanKind,
    Status,
    StatusCode,
)
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "TelemetryConfig", "capture_spans", "configure", "db_span", "metrics_on", "policy_denied", "policy_span",
    "query_summary", "query_text", "tracer", "tracing_on",
]

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
_decisions = _meter.create_counter("headwater.policy.decisions", unit="{decision}",
                                   description="Policy decisions, by outcome (allow or deny).")

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
    sample_ratio: float = Field(1.0, ge=0.0, le=1.0, description=(
        "Share of new traces recorded (parent-based: a trace continued from an event or a caller "
        "keeps its parent's decision). Below 1 cuts the cost of spans; metrics count everything."))


_configured = False
_local = threading.local()


def configure(cfg: TelemetryConfig) -> None:
    """Install the OpenTelemetry SDK with the configured exporters (once per process).

    ``otlp_http`` / ``otlp_grpc`` export spans and metrics (``otlp_endpoint``, else the
    ``OTEL_EXPORTER_OTLP_*`` environment variables), ``console`` prints spans to stdout,
    ``prometheus`` serves ``/metrics`` on ``127.0.0.1:<prometheus_port>``. No exporter named:
    nothing is installed and instrumentation stays a no-op. An unknown name raises
    :class:`~headwater.errors.ConfigError`; a missing exporter package raises
    :class:`~headwater.errors.MissingDependency` naming it.
    """
    global _configured
    from headwater.errors import ConfigError

    unknown = [n for n in cfg.exporters if n not in ("console", "otlp_http", "otlp_grpc", "prometheus")]
    if unknown:  # checked first: a bad name fails even when an earlier call installed the SDK
        raise ConfigError(f"unknown telemetry exporter {unknown[0]!r}; use otlp_http, otlp_grpc, console or prometheus")
    if _configured or not cfg.exporters:
        return
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    resource = Resource.create({"service.name": cfg.service_name})
    sampler = None
    if cfg.sample_ratio < 1.0:
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

        sampler = ParentBased(TraceIdRatioBased(cfg.sample_ratio))
    tracer_provider = TracerProvider(resource=resource, sampler=sampler)
    readers: list[Any] = []
    base = cfg.otlp_endpoint.rstrip("/") if cfg.otlp_endpoint else None
    for name in dict.fromkeys(cfg.exporters):
        if name == "console":
            tracer_provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        elif name == "otlp_http":
            span_mod = _exporter_module("opentelemetry.exporter.otlp.proto.http.trace_exporter", "opentelemetry-exporter-otlp-proto-http")
            metric_mod = _exporter_module("opentelemetry.exporter.otlp.proto.http.metric_exporter", "opentelemetry-exporter-otlp-proto-http")
            tracer_provider.add_span_processor(BatchSpanProcessor(
                span_mod.OTLPSpanExporter(**({"endpoint": f"{base}/v1/traces"} if base else {}))))
            readers.append(PeriodicExportingMetricReader(
                metric_mod.OTLPMetricExporter(**({"endpoint": f"{base}/v1/metrics"} if base else {}))))
        elif name == "otlp_grpc":
            span_mod = _exporter_module("opentelemetry.exporter.otlp.proto.grpc.trace_exporter", "opentelemetry-exporter-otlp-proto-grpc")
            metric_mod = _exporter_module("opentelemetry.exporter.otlp.proto.grpc.metric_exporter", "opentelemetry-exporter-otlp-proto-grpc")
            kw = {"endpoint": cfg.otlp_endpoint} if cfg.otlp_endpoint else {}
            tracer_provider.add_span_processor(BatchSpanProcessor(span_mod.OTLPSpanExporter(**kw)))
            readers.append(PeriodicExportingMetricReader(metric_mod.OTLPMetricExporter(**kw)))
        else:  # prometheus
            prom = _exporter_module("opentelemetry.exporter.prometheus", "opentelemetry-exporter-prometheus")
            readers.append(prom.PrometheusMetricReader())
            if cfg.prometheus_port:
                from prometheus_client import start_http_server

                start_http_server(cfg.prometheus_port, addr="127.0.0.1")
    trace.set_tracer_provider(tracer_provider)
    if readers:
        metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=readers))
    _configured = True


def _exporter_module(module: str, package: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        from headwater.errors import MissingDependency

        raise MissingDependency(f"this telemetry exporter needs {package}; pip install {package}") from None


def capture_spans() -> Any:
    """An ``InMemorySpanExporter`` receiving every span from now on (for tests and examples).

    Installs an SDK tracer provider when none is installed, else adds the exporter to the
    installed one (a process has one global provider)."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))  # type: ignore[attr-defined]
    return exporter


def query_text(tree: Any) -> str:
    """The statement with every literal replaced by ``?`` (for ``db.query.text``)."""
    from sqlglot import exp

    out = tree.copy()
    for lit in list(out.find_all(*_literal_types())):
        if lit is not out:
            lit.replace(exp.Placeholder())
    return _MARKER.sub("?", out.sql(dialect="duckdb"))


def _literal_types() -> tuple[type, ...]:
    """Every sqlglot node that holds a value written in the statement (strings of every
    flavour, numbers, JSON paths)."""
    from sqlglot import exp

    names = ("Literal", "ByteString", "RawString", "HexString", "BitString", "National", "UnicodeString", "JSONPath")
    return tuple(getattr(exp, n) for n in names if hasattr(exp, n))


def query_summary(operation: str, collections: Sequence[str]) -> str:
    """``db.query.summary``: the operation and the datasets it touches."""
    return " ".join([operation, *collections])


def tracing_on() -> bool:
    """Whether an SDK tracer provider is installed (checked cheaply; a global provider, once
    set, stays set)."""
    if _on["trace"]:
        return True
    if isinstance(trace.get_tracer_provider(), ProxyTracerProvider | NoOpTracerProvider):
        return False
    _on["trace"] = True
    return True


def metrics_on() -> bool:
    """Whether an SDK meter provider is installed."""
    if _on["metrics"]:
        return True
    provider = metrics.get_meter_provider()
    if isinstance(provider, metrics.NoOpMeterProvider) or type(provider).__name__ == "_ProxyMeterProvider":
        return False
    _on["metrics"] = True
    return True


_on = {"trace": False, "metrics": False}
_db_attrs: dict[tuple[Any, ...], tuple[str, dict[str, Any], dict[str, Any]]] = {}


class _DbSpan:
    """The context manager :func:`db_span` returns (a class: cheaper than a generator)."""

    __slots__ = ("metric_attrs", "name", "span", "span_attrs", "start", "token")

    def __init__(self, name: str, span_attrs: dict[str, Any], metric_attrs: dict[str, Any]) -> None:
        self.name = name
        self.span_attrs = span_attrs
        self.metric_attrs = metric_attrs
        self.span: Any = trace.INVALID_SPAN
        self.token: Any = None

    def __enter__(self) -> Any:
        if tracing_on():
            span = self.span = _tracer.start_span(
                self.name, kind=SpanKind.CLIENT, attributes=self.span_attrs,
                record_exception=False, set_status_on_exception=False)
            self.token = otel_context.attach(trace.set_span_in_context(span))
        self.start = time.perf_counter()
        return self.span

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        elapsed = time.perf_counter() - self.start
        attrs = self.metric_attrs
        if exc_type is not None:
            kind = exc_type.__name__
            attrs = {**attrs, "error.type": kind}
        if self.token is not None:
            otel_context.detach(self.token)
            span = self.span
            if exc_type is not None:
                span.set_status(Status(StatusCode.ERROR, kind))
                span.set_attribute("error.type", kind)
            span.end()
        _duration.record(elapsed, attrs)


def db_span(
    operation: str, collections: Sequence[str], *, store_kind: str | None, summary: str, text: str | None,
) -> _DbSpan:
    """A database client span plus a ``db.client.operation.duration`` measurement (a context
    manager yielding the span; the exception message of a failure is not recorded, only its
    type as ``error.type``)."""
    key = (operation, tuple(collections), store_kind, summary, text)
    hit = _db_attrs.get(key)
    if hit is None:
        collection = collections[0] if len(collections) == 1 else None
        name = f"{operation} {collection}" if collection else operation
        attrs: dict[str, Any] = {"db.system.name": DB_SYSTEMS.get(store_kind, store_kind or "duckdb"),
                                 "db.operation.name": operation, "db.query.summary": summary}
        if collection:
            attrs["db.collection.name"] = collection
        span_attrs = {**attrs, "db.query.text": text} if text is not None else attrs
        if len(_db_attrs) > 4096:
            _db_attrs.clear()
        hit = _db_attrs[key] = (name, span_attrs, attrs)
    return _DbSpan(*hit)


def tracer() -> Any:
    """The package tracer (for spans outside database calls)."""
    return _tracer


def policy_denied(rule: str, action: str) -> None:
    """Count a denial by the rule that denied it (the ``reason``) and mark the current span.

    A denial raised outside :func:`policy_span` (a check made while planning, before the
    decision proper) still gets its ``headwater.policy.decide`` span, with ``deny``."""
    _denials.add(1, {"headwater.policy.rule": rule, "headwater.policy.denial.reason": rule,
                     "db.operation.name": action})
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attribute("headwater.policy.decision", "deny")
        span.set_attribute("headwater.policy.rule", rule)
    if getattr(_local, "denial_spanned", False):
        _local.denial_spanned = False
        return
    _decisions.add(1, {"headwater.policy.decision": "deny", "headwater.policy.action": action})
    _tracer.start_span("headwater.policy.decide", attributes={
        "headwater.policy.action": action, "headwater.policy.decision": "deny", "headwater.policy.rule": rule,
    }).end()


@contextlib.contextmanager
def policy_span(action: str, principal: str, datasets: Sequence[str]) -> Iterator[Any]:
    """A ``headwater.policy.decide`` span around one authorisation.

    The span says ``headwater.policy.decision`` = ``allow`` or ``deny`` (an
    :class:`~headwater.errors.AccessDenied` or :class:`~headwater.errors.QueryRejected`
    leaving the block), with the denying rule as ``headwater.policy.rule``; the exception
    message is not recorded (it may name what the principal may not see). Decisions are counted
    by ``headwater.policy.decisions``; count denials with :func:`policy_denied` (the caller that
    audits the denial does so once).
    """
    from headwater.errors import AccessDenied, QueryRejected

    attrs = {"headwater.principal": principal, "headwater.policy.action": action,
             "db.query.summary": query_summary(action.upper(), datasets)}
    _local.denial_spanned = False
    with _tracer.start_as_current_span("headwater.policy.decide", attributes=attrs,
                                       record_exception=False, set_status_on_exception=False) as span:
        try:
            yield span
        except (AccessDenied, QueryRejected) as err:
            rule = str(getattr(err, "rule", "") or "unknown")
            _local.denial_spanned = True
            if span.is_recording():
                span.set_attribute("headwater.policy.decision", "deny")
                span.set_attribute("headwater.policy.rule", rule)
                span.set_attribute("error.type", type(err).__name__)
            _decisions.add(1, {"headwater.policy.decision": "deny", "headwater.policy.action": action})
            raise
        except BaseException as err:
            if span.is_recording():
                span.set_attribute("error.type", type(err).__name__)
                span.set_status(Status(StatusCode.ERROR, type(err).__name__))
            raise
        if span.is_recording():
            span.set_attribute("headwater.policy.decision", "allow")
        _decisions.add(1, {"headwater.policy.decision": "allow", "headwater.policy.action": action})
