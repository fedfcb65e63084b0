"""Notifiers: Slack- and PagerDuty-shaped webhooks received by a real HTTP server on loopback,
the log notifier, and end-to-end fire/resolve delivery through the evaluator."""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from headwater.errors import InvalidInput, Transient
from headwater.telemetry.slo import (
    AlertNotification,
    LogNotifier,
    NotificationFailed,
    Notifier,
    SLOEvaluator,
    SLORecorder,
    WebhookNotifier,
    load_slos,
)


class Receiver:
    """A loopback HTTP server that records each POST (path, headers, JSON body)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], dict]] = []
        self.status = 202
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests.append((self.path, dict(self.headers), json.loads(body)))
                self.send_response(outer.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def bodies(self, path: str) -> list[dict]:
        return [b for p, _, b in self.requests if p == path]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    try:
        yield r
    finally:
        r.close()


def note(action: str = "fire", severity: str = "page") -> AlertNotification:
    return AlertNotification(
        action=action, severity=severity, slo_id="hw-orders", service="hw", slo="orders",
        description="Orders API answers.", objective=99.9, window="28d", incident="hw-orders/page/20260302T120030Z",
        at=dt.datetime(2026, 3, 2, 12, 0, 30, tzinfo=dt.UTC), fired_at=dt.datetime(2026, 3, 2, 12, 0, 30, tzinfo=dt.UTC),
        triggered_by="1h/5m@14.4x", burn_rates={"5m": 20.0, "1h": 15.0, "28d": None}, error_budget_remaining=97.5,
        alert_name="HwOrdersBudgetBurn", labels={"team": "data"}, annotations={"runbook": "https://rb.example/orders"},
    )


def test_slack_payload_received(receiver):
    hook = WebhookNotifier(receiver.url + "/slack", shape="slack")
    assert isinstance(hook, Notifier)
    hook.send(note())
    hook.send(note("resolve"))
    fire, resolve = receiver.bodies("/slack")
    assert fire["text"].startswith("🔥 [PAGE] hw/orders")
    assert "1h/5m@14.4x" in fire["text"]
    assert fire["blocks"][0]["text"]["text"] == "*HwOrdersBudgetBurn* FIRING"
    fields = next(b for b in fire["blocks"] if b["type"] == "section" and "fields" in b)["fields"]
    assert {"type": "mrkdwn", "text": "*Objective*\n99.9% over 28d"} in fields
    assert any("5m: 20.00x" in e["text"] for b in fire["blocks"] if b["type"] == "context" for e in b["elements"])
    assert resolve["text"].startswith("✅ [RESOLVED page]")
    headers = receiver.requests[0][1]
    assert headers["Content-Type"] == "application/json"


def test_pagerduty_payload_received(receiver):
    hook = WebhookNotifier(receiver.url + "/v2/enqueue", shape="pagerduty", routing_key="R0UT1NGKEY0123456789012345678901")
    hook.send(note())
    hook.send(note("resolve"))
    trigger, resolve = receiver.bodies("/v2/enqueue")
    assert trigger["event_action"] == "trigger" and resolve["event_action"] == "resolve"
    assert trigger["routing_key"] == "R0UT1NGKEY0123456789012345678901"
    assert trigger["dedup_key"] == resolve["dedup_key"] == "hw-orders/page/20260302T120030Z"
    payload = trigger["payload"]
    assert set(payload) >= {"summary", "source", "severity", "timestamp"}
    assert payload["severity"] == "critical" and payload["source"] == "hw" and payload["component"] == "orders"
    assert payload["custom_details"]["burn_rates"]["1h"] == 15.0
    assert trigger["links"] == [{"href": "https://rb.example/orders", "text": "runbook"}]
    assert "payload" not in resolve
    ticket = WebhookNotifier(receiver.url + "/v2/enqueue", shape="pagerduty", routing_key="k" * 32).payload(note(severity="ticket"))
    assert ticket["payload"]["severity"] == "warning"


def test_json_payload_and_secrets_stay_out_of_repr(receiver):
    hook = WebhookNotifier(receiver.url + "/hook?token=s3cret", shape="json", headers={"X-Team": "data"})
    hook.send(note())
    (body,) = receiver.bodies("/hook?token=s3cret")
    assert body["slo_id"] == "hw-orders" and body["burn_rates"]["28d"] is None
    assert receiver.requests[0][1]["X-Team"] == "data"
    pd = WebhookNotifier(shape="pagerduty", routing_key="SECRETKEY")
    assert "s3cret" not in repr(hook) and "SECRETKEY" not in repr(pd)
    assert pd._url == "https://events.pagerduty.com/v2/enqueue"


def test_webhook_failures(receiver):
    receiver.status = 500
    hook = WebhookNotifier(receiver.url + "/x?token=s3cret", shape="slack")
    with pytest.raises(NotificationFailed, match="HTTP 500") as info:
        hook.send(note())
    assert isinstance(info.value, Transient) and "s3cret" not in str(info.value)
    dead = WebhookNotifier("http://127.0.0.1:9/", timeout_s=1)
    with pytest.raises(NotificationFailed):
        dead.send(note())
    with pytest.raises(InvalidInput):
        WebhookNotifier("ftp://x")
    with pytest.raises(InvalidInput, match="routing_key"):
        WebhookNotifier(shape="pagerduty")


def test_log_notifier(caplog):
    caplog.set_level(logging.INFO, logger="headwater.telemetry.slo.alerts")
    LogNotifier().send(note())
    LogNotifier().send(note("fire", "ticket"))
    LogNotifier().send(note("resolve"))
    levels = [(r.levelno, r.getMessage()[:16]) for r in caplog.records]
    assert levels == [(logging.ERROR, "[PAGE] hw/orders"), (logging.WARNING, "[TICKET] hw/orde"),
                      (logging.INFO, "[RESOLVED page] ")]
    assert caplog.records[0].slo_alert["incident"] == "hw-orders/page/20260302T120030Z"


SPEC = """
service: hw
slos:
  - name: orders
    objective: 99.9
    sli: {events: {name: orders}}
    alerting:
      min_events: 1
      page_alert: {labels: {severity: critical}}
      burn_rates:
        - {severity: page, long: 1h, short: 5m, factor: 14.4}
"""


def test_evaluator_delivers_fire_and_resolve_once_each(meta, clock, receiver):
    slos = load_slos(SPEC)
    rec = SLORecorder(meta, slos, clock=clock)
    notifiers = [
        WebhookNotifier(receiver.url + "/slack", shape="slack"),
        WebhookNotifier(receiver.url + "/pd", shape="pagerduty", routing_key="k" * 32, severities={"page"}),
    ]
    ev = SLOEvaluator(meta, slos, notifiers=notifiers, recorder=rec, clock=clock)
    rec.record("orders", 0, 10)
    for _ in range(3):
        ev.evaluate()
        clock.advance(minutes=1)
    assert len(receiver.bodies("/slack")) == 1 and len(receiver.bodies("/pd")) == 1
    clock.advance(minutes=5)
    rec.record("orders", 10, 10)
    ev.evaluate()
    ev.evaluate()
    pd = receiver.bodies("/pd")
    assert [b["event_action"] for b in pd] == ["trigger", "resolve"]
    assert pd[0]["dedup_key"] == pd[1]["dedup_key"]
    assert pd[0]["payload"]["custom_details"]["labels"] == {"severity": "critical"}
    assert len(receiver.bodies("/slack")) == 2


def test_evaluator_retries_an_unreachable_webhook(meta, clock, receiver):
    slos = load_slos(SPEC)
    rec = SLORecorder(meta, slos, clock=clock)
    receiver.status = 503
    ev = SLOEvaluator(meta, slos, notifiers=[WebhookNotifier(receiver.url + "/s", shape="slack")],
                      recorder=rec, clock=clock)
    rec.record("orders", 0, 10)
    ev.evaluate()
    receiver.status = 200
    ev.evaluate()
    ev.evaluate()
    assert len(receiver.bodies("/s")) == 2   # the 503 and the successful retry, then nothing
