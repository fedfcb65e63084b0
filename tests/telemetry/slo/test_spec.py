"""SLO specs: loading, defaults, and validation errors that name the line."""

from __future__ import annotations

import datetime as dt
import pickle

import pytest

from headwater.errors import ConfigError
from headwater.telemetry.slo import DEFAULT_BURN_RATES, load_slo_file, load_slos

FULL = """\
version: headwater/slo/v1
service: headwater
labels: {owner: data-platform}
window: 30d
alerting:
  min_events: 50
slos:
  - name: query-latency
    objective: 99.5
    description: Queries answer within 500 ms.
    sli:
      query_latency: {threshold_ms: 500}
    alerting:
      name: HeadwaterQueryLatency
      labels: {category: latency}
      annotations: {runbook: "https://runbooks.example/latency"}
      page_alert: {labels: {severity: critical}}
      ticket_alert: {disable: true}
  - name: query-success
    objective: 99.9
    window: 28d
    sli: {query_success: {}}
  - name: pipelines
    objective: 99
    sli: {pipeline_success: null}
    alerting:
      burn_rates:
        - {severity: page, long: 1h, short: 5m, budget_consumed: 2}
        - {severity: ticket, long: 1d, short: 2h, factor: 3, min_events: 7}
  - name: freshness
    objective: 95
    sli: {event_freshness: {threshold_ms: 60000}}
  - name: slot-lag
    objective: 99
    sli: {cdc_slot_lag: {max_bytes: 1048576}}
  - name: orders
    objective: 99.95
    sli:
      events:
        name: orders_api
        error_query: sum(rate(http_requests_total{code=~"5.."}[{{.window}}]))
        total_query: sum(rate(http_requests_total[{{.window}}]))
"""


def test_full_document_loads():
    slos = {s.name: s for s in load_slos(FULL)}
    assert list(slos) == ["query-latency", "query-success", "pipelines", "freshness", "slot-lag", "orders"]
    lat = slos["query-latency"]
    assert lat.id == "headwater-query-latency"
    assert lat.objective == 99.5 and lat.window == dt.timedelta(days=30) and lat.window_label == "30d"
    assert lat.sli.kind == "query_latency" and lat.sli.threshold == 500 and lat.sli.series == "query_latency:500ms"
    assert lat.labels == {"owner": "data-platform"}
    assert lat.severities() == ("page",)
    assert lat.alerting.labels_for("page") == {"category": "latency", "severity": "critical"}
    assert lat.alerting.annotations_for("page") == {"runbook": "https://runbooks.example/latency"}
    assert lat.line == 8
    assert slos["query-success"].window == dt.timedelta(days=28)
    assert slos["query-success"].sli.series == "query_success"
    # the document-level min_events applies to the default workbook rules
    rules = slos["query-success"].alerting.burn_rates
    assert [(r.severity, r.long, r.short, r.factor) for r in rules] == [
        (r.severity, r.long, r.short, r.factor) for r in DEFAULT_BURN_RATES]
    assert {r.min_events for r in rules} == {50}
    assert slos["freshness"].sli.series == "event_freshness:60000ms"
    assert slos["slot-lag"].sli.series == "cdc_slot_lag:1.04858e+06b"
    assert slos["orders"].sli.series == "orders_api"
    assert "{{.window}}" in slos["orders"].sli.error_query


def test_budget_consumed_becomes_a_factor_and_rules_keep_their_min_events():
    pipelines = next(s for s in load_slos(FULL) if s.name == "pipelines")
    page, ticket = pipelines.alerting.burn_rates
    # Sloth: 2 % of a 30-day budget in 1 hour is a 14.4x burn
    assert page.factor == pytest.approx(14.4) and page.min_events == 50
    assert ticket.factor == 3 and ticket.min_events == 7
    assert page.label == "1h/5m@14.4x"


def test_auto_min_events_stops_one_failure_from_firing():
    slo = load_slos("service: s\nslos: [{name: a, objective: 99.9, sli: {query_success: {}}}]")[0]
    page = slo.alerting.burn_rates[0]
    assert page.min_events is None
    n = page.required_events(99.9)
    assert n == 70  # 1/70 = 1.43 % < 1.44 % = 14.4 x 0.1 %
    assert 1 / n < float(page.threshold(99.9)) <= 1 / (n - 1)


def test_events_name_defaults_to_the_slo_name():
    slo = load_slos("service: s\nslos: [{name: checkout, objective: 99, sli: {events: {}}}]")[0]
    assert slo.sli.series == "checkout"


def test_load_slo_file(tmp_path):
    path = tmp_path / "slos.yaml"
    path.write_text(FULL)
    assert len(load_slo_file(path)) == 6
    with pytest.raises(ConfigError, match="cannot read SLO file"):
        load_slo_file(tmp_path / "missing.yaml")


def test_several_documents_and_duplicates():
    two = "service: a\nslos: [{name: x, objective: 99, sli: {query_success: {}}}]\n---\n" \
          "service: b\nslos: [{name: x, objective: 99, sli: {query_success: {}}}]\n"
    assert [s.id for s in load_slos(two)] == ["a-x", "b-x"]
    dup = "service: a\nslos:\n  - {name: x, objective: 99, sli: {query_success: {}}}\n" \
          "  - {name: x, objective: 98, sli: {query_success: {}}}\n"
    with pytest.raises(ConfigError, match=r"<slos>:4: SLO 'a-x' is defined twice \(first on line 3\)"):
        load_slos(dup)


BASE = "service: s\nslos:\n  - name: a\n    objective: 99.9\n    sli:\n      query_success: {}\n"


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("service: s\nslos: [\n", 3, "not valid YAML"),
        ("", 1, "empty SLO document"),
        ("slos: []\n", 1, "missing service"),
        ("service: s\nslos: []\n", 2, "slos must be a non-empty list"),
        ("service: s\nservice: t\n", 2, "duplicate key"),
        ("service: s\ncolour: red\n", 2, "colour: unknown key"),
        (BASE.replace("99.9", "100"), 4, "objective must be a percentage"),
        (BASE.replace("99.9", "'high'"), 4, "objective must be a percentage"),
        (BASE + "    window: 7d\n", 7, "window must be 28d or 30d"),
        (BASE.replace("query_success: {}", "query_latency: {}"), 6, "query_latency needs threshold_ms"),
        (BASE.replace("query_success: {}", "query_latency: {threshold_ms: -5}"), 6, "threshold_ms must be a positive number"),
        (BASE.replace("query_success: {}", "latency: {}"), 6, "unknown SLI kind"),
        (BASE.replace("query_success: {}", "events: {name: query_success}"), 6, "built-in SLI kind"),
        (BASE.replace("query_success: {}", "events: {error_query: x}"), 6, "go together"),
        (BASE + "    alerting: {min_events: 0}\n", 7, "min_events must be 'auto' or a positive integer"),
        (BASE + "    alerting:\n      burn_rates:\n        - {severity: page, long: 5m, short: 1h, factor: 2}\n",
         9, "short window must be shorter"),
        (BASE + "    alerting:\n      burn_rates:\n        - {severity: sms, long: 1h, short: 5m, factor: 2}\n",
         9, "severity must be page or ticket"),
        (BASE + "    alerting:\n      burn_rates:\n        - {severity: page, long: 1h, short: 5m}\n",
         9, "exactly one of factor or budget_consumed"),
        (BASE + "    alerting:\n      burn_rates:\n        - {severity: page, long: 1x, short: 5m, factor: 1}\n",
         9, "not a duration"),
        (BASE + "    alerting:\n      burn_rates:\n        - {severity: page, long: 40d, short: 5m, factor: 1}\n",
         7, "longer than the SLO window"),
        (BASE.replace("name: a", "name: 'a b'"), 3, "must be a name"),
    ],
)
def test_validation_errors_name_the_line(text, line, message):
    with pytest.raises(ConfigError) as info:
        load_slos(text, source="slos.yaml")
    err = info.value
    assert message in str(err)
    assert err.line == line, str(err)
    assert str(err).startswith(f"slos.yaml:{line}:")
    assert isinstance(err, ValueError)
    assert pickle.loads(pickle.dumps(err)).line == line
