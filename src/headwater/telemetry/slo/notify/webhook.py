"""Webhook notifier: POST a JSON payload with ``urllib`` (no extra dependency).

Payload shapes:

* ``slack``: an incoming-webhook message, ``{"text": ..., "blocks": [...]}``;
* ``pagerduty``: a PagerDuty Events API v2 event, ``trigger`` on fire and ``resolve`` on resolve,
  sharing the incident's ``dedup_key``; ``page`` maps to severity ``critical``, ``ticket`` to
  ``warning``;
* ``json``: the notification itself (:meth:`AlertNotification.as_dict`).

The URL (Slack's carries a token) and the PagerDuty routing key are secrets: they never appear
in ``repr``, logs or error messages.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from headwater.errors import HeadwaterError, InvalidInput, Transient
from headwater.telemetry.slo._model import AlertNotification

__all__ = ["NotificationFailed", "WebhookNotifier", "generic_payload", "pagerduty_payload", "slack_payload"]

PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
"""PagerDuty's Events API v2 endpoint."""

_PD_SEVERITY = {"page": "critical", "ticket": "warning"}


class NotificationFailed(HeadwaterError, Transient):
    """A notifier could not deliver; the evaluator retries on its next run."""


def _fmt_burn(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def slack_payload(n: AlertNotification) -> dict[str, Any]:
    """A Slack incoming-webhook message for ``n``."""
    firing = n.action == "fire"
    title = f"{'🔥' if firing else '✅'} {n.summary}"
    fields = [
        {"type": "mrkdwn", "text": f"*SLO*\n{n.service}/{n.slo}"},
        {"type": "mrkdwn", "text": f"*Objective*\n{n.objective:g}% over {n.window}"},
        {"type": "mrkdwn", "text": f"*Severity*\n{n.severity}"},
        {"type": "mrkdwn", "text": f"*Budget remaining*\n{n.error_budget_remaining:.1f}%"},
    ]
    burns = ", ".join(f"{w}: {_fmt_burn(b)}" for w, b in n.burn_rates.items())
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*{n.alert_name}* {'FIRING' if firing else 'RESOLVED'}"}},
        {"type": "section", "fields": fields},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": f"Burn rates: {burns}"}]},
    ]
    if n.description:
        blocks.insert(1, {"type": "section", "text": {"type": "plain_text", "text": n.description}})
    for key, value in n.annotations.items():
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"*{key}*: {value}"}]})
    return {"text": title, "blocks": blocks}


def pagerduty_payload(n: AlertNotification, routing_key: str) -> dict[str, Any]:
    """A PagerDuty Events API v2 ``trigger`` (fire) or ``resolve`` event for ``n``."""
    event: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": "trigger" if n.action == "fire" else "resolve",
        "dedup_key": n.incident,
    }
    if n.action == "fire":
        event["payload"] = {
            "summary": n.summary[:1024],
            "source": n.service,
            "severity": _PD_SEVERITY.get(n.severity, "error"),
            "timestamp": n.at.isoformat(),
            "component": n.slo,
            "group": n.service,
            "class": "slo_burn_rate",
            "custom_details": {
                "slo_id": n.slo_id, "objective": n.objective, "window": n.window,
                "triggered_by": n.triggered_by, "burn_rates": dict(n.burn_rates),
                "error_budget_remaining": n.error_budget_remaining,
                "labels": dict(n.labels), "annotations": dict(n.annotations),
            },
        }
        links = [{"href": v, "text": k} for k, v in n.annotations.items() if str(v).startswith(("http://", "https://"))]
        if links:
            event["links"] = links
    return event


def generic_payload(n: AlertNotification) -> dict[str, Any]:
    """The notification as plain JSON."""
    return n.as_dict()


class WebhookNotifier:
    """POSTs each notification as JSON to ``url``.

    ``shape`` is ``slack``, ``pagerduty`` (needs ``routing_key``; ``url`` defaults to PagerDuty's
    Events v2 endpoint) or ``json``. ``severities`` limits which alerts it hears of (e.g.
    ``{"page"}`` for PagerDuty). A non-2xx answer or a network error raises
    :class:`NotificationFailed`.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        shape: Literal["slack", "pagerduty", "json"] = "json",
        routing_key: str | None = None,
        severities: Iterable[str] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout_s: float = 5.0,
        name: str | None = None,
    ) -> None:
        if shape not in ("slack", "pagerduty", "json"):
            raise InvalidInput(f"webhook shape must be slack, pagerduty or json, got {shape!r}")
        if shape == "pagerduty":
            if not routing_key:
                raise InvalidInput("a PagerDuty webhook needs routing_key")
            url = url or PAGERDUTY_EVENTS_URL
        if not url or not url.startswith(("http://", "https://")):
            raise InvalidInput("webhook url must be an http(s) URL")
        self._url = url
        self._routing_key = routing_key
        self.shape = shape
        self.severities = frozenset(severities) if severities is not None else None
        self.headers = dict(headers or {})
        self.timeout_s = timeout_s
        self.name = name or f"{shape}-webhook"

    def __repr__(self) -> str:
        return f"WebhookNotifier(name={self.name!r}, shape={self.shape!r}, url=<secret>)"

    def payload(self, notification: AlertNotification) -> dict[str, Any]:
        """The JSON body this notifier sends for ``notification``."""
        if self.shape == "slack":
            return slack_payload(notification)
        if self.shape == "pagerduty":
            return pagerduty_payload(notification, str(self._routing_key))
        return generic_payload(notification)

    def send(self, notification: AlertNotification) -> None:
        """POST the payload; raise :class:`NotificationFailed` unless the answer is 2xx."""
        body = json.dumps(self.payload(notification)).encode()
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked in __init__
            self._url, data=body, method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "headwater-slo", **self.headers},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310
                status = response.status
        except urllib.error.HTTPError as err:
            raise NotificationFailed(f"{self.name}: HTTP {err.code}", notifier=self.name, status=err.code) from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise NotificationFailed(f"{self.name}: {type(reason).__name__}", notifier=self.name) from None
        if not 200 <= status < 300:
            raise NotificationFailed(f"{self.name}: HTTP {status}", notifier=self.name, status=status)
