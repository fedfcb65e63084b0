"""Service level objectives: specs as code, SLI counters, burn-rate alerting, rule export.

::

    slos = load_slo_file("slos.yaml")                       # Sloth-style YAML, validated
    recorder = SLORecorder(meta, slos).start()              # one per process
    recorder.record_query(duration_ms=12.5, ok=True)        # hot path: a dict update
    evaluator = SLOEvaluator(meta, slos, notifiers=[LogNotifier()], recorder=recorder)
    evaluator.evaluate()                                    # fire / resolve, notify once
    evaluator.status(); evaluator.report()                  # data for ``headwater slo ...``
    prometheus_rules(slos)                                  # the same SLOs for Prometheus

Modules: ``_spec`` (model and YAML loader), ``_recorder`` (buffered 1-minute buckets),
``_evaluate`` (windows, multi-window multi-burn-rate rules, alert state machine),
``_prometheus`` (Sloth-shaped rules), ``notify`` (webhook and log notifiers), ``_tables``
(the tables of migration ``0008_slo``).
"""

from headwater.telemetry.slo._evaluate import SLOEvaluator, alert_name
from headwater.telemetry.slo._model import (
    AlertEvent,
    AlertNotification,
    AlertState,
    DailySLI,
    SLOReport,
    SLOReportEntry,
    SLOStatus,
    WindowBurn,
)
from headwater.telemetry.slo._prometheus import (
    METRIC_NAMES,
    prometheus_rules,
    rules_document,
    sli_queries,
)
from headwater.telemetry.slo._recorder import SLORecorder, retention_minutes
from headwater.telemetry.slo._spec import (
    BUILTIN_SLI_KINDS,
    DEFAULT_BURN_RATES,
    SLI,
    SLO,
    AlertingSpec,
    BurnRateRule,
    format_duration,
    load_slo_file,
    load_slos,
    parse_duration,
)
from headwater.telemetry.slo.notify import (
    LogNotifier,
    NotificationFailed,
    Notifier,
    WebhookNotifier,
)

__all__ = [
    "BUILTIN_SLI_KINDS",
    "DEFAULT_BURN_RATES",
    "METRIC_NAMES",
    "SLI",
    "SLO",
    "AlertEvent",
    "AlertNotification",
    "AlertState",
    "AlertingSpec",
    "BurnRateRule",
    "DailySLI",
    "LogNotifier",
    "NotificationFailed",
    "Notifier",
    "SLOEvaluator",
    "SLORecorder",
    "SLOReport",
    "SLOReportEntry",
    "SLOStatus",
    "WebhookNotifier",
    "WindowBurn",
    "alert_name",
    "format_duration",
    "load_slo_file",
    "load_slos",
    "parse_duration",
    "prometheus_rules",
    "retention_minutes",
    "rules_document",
    "sli_queries",
]
