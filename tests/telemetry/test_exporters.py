"""Exporters by config (console, OTLP over HTTP, Prometheus), nothing by default.

The SDK's providers are global and set once per process, so each case runs in a fresh Python
process against an embedded platform."""

from __future__ import annotations

import http.server
import importlib.util
import json
import socket
import subprocess
import sys
import textwrap
import threading

import pytest

from headwater.errors import ConfigError, MissingDependency
from headwater.telemetry.otel import TelemetryConfig, configure

PRELUDE = """
import sys, tempfile
from headwater import Config, Platform
from headwater.telemetry.otel import TelemetryConfig, configure
tmp = tempfile.mkdtemp()
"""

WORK = """
p = Platform.open(Config.embedded(tmp + "/hw"))
s = p.session("alice")
s.write("app.t", [{"id": 1, "v": "zqv-secret"}], key="id")
s.sql("SELECT id FROM app.t WHERE v = 'zqv-secret'").to_arrow()
"""


def _run(code: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(PRELUDE) + textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=timeout)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_nothing_is_exported_or_stamped_by_default() -> None:
    out = _run(WORK + """
from opentelemetry import trace, metrics
from headwater.events.envelope import Event
from headwater.telemetry import messaging
assert type(trace.get_tracer_provider()).__name__ == "ProxyTracerProvider"
assert type(metrics.get_meter_provider()).__name__ == "_ProxyMeterProvider"
assert not messaging.telemetry_enabled()
p.bus.create_topic("t")
ev = Event(type="x", source="/x")
with messaging.publishing("headwater", "t", [ev]) as sent:
    assert sent[0] is ev            # no copy, no traceparent when no SDK is installed
messaging.publish(p.bus, "t", ev)
(m,) = p.bus.subscribe("t", "g").fetch(10, timeout=1)
assert m.event().traceparent is None
print("OK")
""")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "OK"


def test_console_exporter_prints_spans_without_values() -> None:
    out = _run("configure(TelemetryConfig(exporters=['console']))" + WORK + """
from opentelemetry import trace
trace.get_tracer_provider().force_flush()
""")
    assert out.returncode == 0, out.stderr
    assert '"name": "SELECT app.t"' in out.stdout
    assert '"db.query.text"' in out.stdout and "zqv-secret" not in out.stdout


def test_otlp_http_exports_traces_and_metrics() -> None:
    paths: list[str] = []

    class Collector(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server API
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            paths.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        out = _run(f"configure(TelemetryConfig(exporters=['otlp_http'], otlp_endpoint={endpoint!r}))" + WORK + """
from opentelemetry import metrics, trace
trace.get_tracer_provider().force_flush()
metrics.get_meter_provider().force_flush()
""")
    finally:
        server.shutdown()
    assert out.returncode == 0, out.stderr
    assert "/v1/traces" in paths and "/v1/metrics" in paths


def test_prometheus_endpoint_serves_metrics() -> None:
    port = _free_port()
    out = _run(f"configure(TelemetryConfig(exporters=['prometheus'], prometheus_port={port}))" + WORK + f"""
import urllib.request
print(urllib.request.urlopen("http://127.0.0.1:{port}/metrics", timeout=5).read().decode())
""")
    assert out.returncode == 0, out.stderr
    assert "db_client_operation_duration_seconds_bucket" in out.stdout
    assert 'db_operation_name="SELECT"' in out.stdout


def test_bad_exporter_names_fail_clearly() -> None:
    with pytest.raises(ConfigError, match="unknown telemetry exporter 'jaeger'"):
        configure(TelemetryConfig(exporters=["jaeger"]))
    if importlib.util.find_spec("opentelemetry.exporter.otlp.proto.grpc") is None:
        with pytest.raises(MissingDependency, match="opentelemetry-exporter-otlp-proto-grpc"):
            configure(TelemetryConfig(exporters=["otlp_grpc"]))
    assert json.dumps(TelemetryConfig().model_dump())  # nothing configured by default
    assert TelemetryConfig().exporters == []
