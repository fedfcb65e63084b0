"""Export SLOs as Prometheus recording and alerting rules, in the shape Sloth generates.

Per SLO three rule groups, as Sloth writes them (so Sloth's Grafana dashboards work):

* ``headwater-slo-sli-recordings-<id>``: ``slo:sli_error:ratio_rate<w>`` for every burn-rate
  window (and 5m), the SLO window as the mean of the 5m ratio, and
  ``slo:sli_events:total<w>`` (events in each long alert window) for the min-events guard;
* ``headwater-slo-meta-recordings-<id>``: ``slo:objective:ratio``, ``slo:error_budget:ratio``,
  ``slo:time_period:days``, ``slo:current_burn_rate:ratio``, ``slo:period_burn_rate:ratio``,
  ``slo:period_error_budget_remaining:ratio`` and ``sloth_slo_info``;
* ``headwater-slo-alerts-<id>``: one alert per severity whose expression ORs its
  multi-window burn-rate rules, each ANDed with the min-events guard.

Every series carries ``sloth_id``, ``sloth_service``, ``sloth_slo`` (and ``sloth_window``) labels.
Thresholds compare with ``>=`` like the in-process evaluator.

Built-in SLIs read the metrics the OpenTelemetry instrumentation exports through the Prometheus
exporter (names below, overridable per SLO with ``error_query``/``good_query`` and
``total_query``):

* ``query_latency``, ``query_success``: the ``db.client.operation.duration`` histogram
  (``db_client_operation_duration_seconds``; failures carry ``error_type``);
* ``pipeline_success``: ``headwater_pipeline_runs_total`` with ``outcome="success"|"failure"``;
* ``event_freshness``: the ``headwater_event_end_to_end_duration_seconds`` histogram;
* ``cdc_slot_lag``: the ``headwater_cdc_slot_lag_bytes`` gauge, sampled each minute.

Histogram thresholds must be bucket boundaries of the exported histogram.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml

from headwater.telemetry.slo._evaluate import alert_name
from headwater.telemetry.slo._spec import SLI, SLO, format_duration, parse_duration

__all__ = ["METRIC_NAMES", "prometheus_rules", "rules_document", "sli_queries"]

METRIC_NAMES = {
    "query_duration": "db_client_operation_duration_seconds",
    "pipeline_runs": "headwater_pipeline_runs_total",
    "event_freshness": "headwater_event_end_to_end_duration_seconds",
    "cdc_slot_lag": "headwater_cdc_slot_lag_bytes",
}
"""The Prometheus names of the metrics the built-in SLIs read."""

_W = "{{.window}}"


def _le(seconds: float) -> str:
    text = f"{seconds:g}"
    return f'le=~"{text}|{text}.0"' if float(text).is_integer() else f'le="{text}"'


def sli_queries(sli: SLI) -> tuple[str, str, bool]:
    """``(error_query, total_query, total_is_count)`` for ``sli`` with Sloth's ``{{.window}}``
    placeholder; ``total_is_count`` is false when ``total_query`` is a per-second rate."""
    if sli.total_query:
        error = sli.error_query or f"(({sli.total_query}) - ({sli.good_query}))"
        return error, sli.total_query, False
    kind = sli.kind
    if kind in ("query_latency", "query_success"):
        h = METRIC_NAMES["query_duration"]
        total = f"sum(rate({h}_count[{_W}]))"
        if kind == "query_success":
            return f'sum(rate({h}_count{{error_type!=""}}[{_W}]))', total, False
        good = f"sum(rate({h}_bucket{{{_le(float(sli.threshold or 0) / 1000)}}}[{_W}]))"
        return f"({total} - {good})", total, False
    if kind == "pipeline_success":
        m = METRIC_NAMES["pipeline_runs"]
        return f'sum(rate({m}{{outcome!="success"}}[{_W}]))', f"sum(rate({m}[{_W}]))", False
    if kind == "event_freshness":
        h = METRIC_NAMES["event_freshness"]
        total = f"sum(rate({h}_count[{_W}]))"
        good = f"sum(rate({h}_bucket{{{_le(float(sli.threshold or 0) / 1000)}}}[{_W}]))"
        return f"({total} - {good})", total, False
    if kind == "cdc_slot_lag":
        g = METRIC_NAMES["cdc_slot_lag"]
        limit = f"{float(sli.threshold or 0):g}"
        return (f"sum(count_over_time(({g} > {limit})[{_W}:1m]))",
                f"sum(count_over_time({g}[{_W}:1m]))", True)
    # events without queries: the caller's own counter pair, named after the series
    base = f"headwater_sli_{sli.series.replace('-', '_').replace('.', '_')}"
    return f"sum(rate({base}_errors_total[{_W}]))", f"sum(rate({base}_total[{_W}]))", False


def _selector(slo: SLO) -> str:
    return f'sloth_id="{slo.id}", sloth_service="{slo.service}", sloth_slo="{slo.name}"'


def _num(value: float) -> str:
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


def _slo_groups(slo: SLO) -> list[dict[str, Any]]:
    sel = _selector(slo)
    base = {**slo.labels, "sloth_id": slo.id, "sloth_service": slo.service, "sloth_slo": slo.name}
    error_q, total_q, total_is_count = sli_queries(slo.sli)
    windows = {"5m"} | {format_duration(d) for r in slo.alerting.burn_rates for d in (r.long, r.short)}
    ordered = sorted(windows, key=lambda w: parse_duration(w))
    sli_rules: list[dict[str, Any]] = []
    for w in ordered:
        expr = f"({error_q.replace(_W, w)})\n/\n({total_q.replace(_W, w)})"
        sli_rules.append({"record": f"slo:sli_error:ratio_rate{w}", "expr": expr,
                          "labels": {**base, "sloth_window": w}})
    period = slo.window_label
    sli_rules.append({
        "record": f"slo:sli_error:ratio_rate{period}",
        "expr": (f"sum_over_time(slo:sli_error:ratio_rate5m{{{sel}}}[{period}])\n"
                 f"/ ignoring (sloth_window)\n"
                 f"count_over_time(slo:sli_error:ratio_rate5m{{{sel}}}[{period}])"),
        "labels": {**base, "sloth_window": period},
    })
    longs = sorted({format_duration(r.long) for r in slo.alerting.burn_rates}, key=lambda w: parse_duration(w))
    for w in longs:
        total = total_q.replace(_W, w)
        expr = total if total_is_count else f"({total}) * {int(parse_duration(w).total_seconds())}"
        sli_rules.append({"record": f"slo:sli_events:total{w}", "expr": expr,
                          "labels": {**base, "sloth_window": w}})

    budget = float(slo.budget)
    meta_rules = [
        {"record": "slo:objective:ratio", "expr": f"vector({_num(float(1 - slo.budget))})", "labels": dict(base)},
        {"record": "slo:error_budget:ratio", "expr": f"vector({_num(budget)})", "labels": dict(base)},
        {"record": "slo:time_period:days", "expr": f"vector({slo.window.days})", "labels": dict(base)},
        {"record": "slo:current_burn_rate:ratio",
         "expr": (f"slo:sli_error:ratio_rate5m{{{sel}}}\n/ on(sloth_id, sloth_slo, sloth_service) group_left\n"
                  f"slo:error_budget:ratio{{{sel}}}"), "labels": dict(base)},
        {"record": "slo:period_burn_rate:ratio",
         "expr": (f"slo:sli_error:ratio_rate{period}{{{sel}}}\n/ on(sloth_id, sloth_slo, sloth_service) group_left\n"
                  f"slo:error_budget:ratio{{{sel}}}"), "labels": dict(base)},
        {"record": "slo:period_error_budget_remaining:ratio",
         "expr": f"1 - slo:period_burn_rate:ratio{{{sel}}}", "labels": dict(base)},
        {"record": "sloth_slo_info", "expr": "vector(1)",
         "labels": {**base, "sloth_mode": "headwater", "sloth_version": "headwater/slo/v1",
                    "sloth_objective": _num(slo.objective)}},
    ]

    alert_rules = []
    name = alert_name(slo)
    for sev in slo.severities():
        clauses = []
        for rule in slo.alerting.rules(sev):
            long, short = format_duration(rule.long), format_duration(rule.short)
            thr = f"({_num(rule.factor)} * {_num(budget)})"
            clauses.append(
                "(\n"
                f"    max(slo:sli_error:ratio_rate{short}{{{sel}}} >= {thr}) without (sloth_window)\n"
                "    and\n"
                f"    max(slo:sli_error:ratio_rate{long}{{{sel}}} >= {thr}) without (sloth_window)\n"
                "    and\n"
                f"    max(slo:sli_events:total{long}{{{sel}}} >= {rule.required_events(slo.objective)}) without (sloth_window)\n"
                ")"
            )
        annotations = {
            "summary": "{{$labels.sloth_service}} {{$labels.sloth_slo}} SLO error budget burn rate is over expected.",
            "title": f"({sev}) {{{{$labels.sloth_service}}}} {{{{$labels.sloth_slo}}}} SLO error budget burn rate is too fast.",
            **slo.alerting.annotations_for(sev),
        }
        alert_rules.append({
            "alert": name,
            "expr": "\nor\n".join(clauses),
            "labels": {**slo.labels, **slo.alerting.labels_for(sev), "sloth_severity": sev},
            "annotations": annotations,
        })

    groups = [
        {"name": f"headwater-slo-sli-recordings-{slo.id}", "rules": sli_rules},
        {"name": f"headwater-slo-meta-recordings-{slo.id}", "rules": meta_rules},
    ]
    if alert_rules:
        groups.append({"name": f"headwater-slo-alerts-{slo.id}", "rules": alert_rules})
    return groups


def rules_document(slos: Iterable[SLO]) -> dict[str, Any]:
    """The rules file as data: ``{"groups": [...]}``."""
    return {"groups": [g for slo in slos for g in _slo_groups(slo)]}


class _Dumper(yaml.SafeDumper):
    """Writes multi-line strings as literal blocks, like Sloth's output."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value + "\n", style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _str)


def prometheus_rules(slos: Iterable[SLO]) -> str:
    """A Prometheus rules file (YAML) with recording and alerting rules for ``slos``."""
    header = "# Generated by headwater from SLO specs; do not edit by hand.\n"
    return header + yaml.dump(rules_document(slos), Dumper=_Dumper, sort_keys=False, width=10_000,
                              allow_unicode=True)
