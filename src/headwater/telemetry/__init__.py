"""Observability: OpenTelemetry traces and metrics (``headwater.telemetry.otel``) and SLOs with
burn-rate alerting (``headwater.telemetry.slo``)."""
