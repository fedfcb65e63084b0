"""Alert notifiers: where fire and resolve notifications go.

A notifier is anything with ``send(notification)`` (raising on failure), a ``name`` and a
``severities`` attribute (a set of ``page``/``ticket``, or ``None`` for all)::

    class Notifier(Protocol):
        name: str
        severities: frozenset[str] | None
        def send(self, notification: AlertNotification) -> None: ...

The evaluator de-duplicates: a notifier hears of an incident once when it fires and once when
it resolves, however often the evaluator runs in between.

* :class:`~headwater.telemetry.slo.notify.webhook.WebhookNotifier`: HTTP POST of a Slack-shaped,
  PagerDuty Events v2-shaped or plain JSON payload (standard library ``urllib``).
* :class:`~headwater.telemetry.slo.notify.log.LogNotifier`: a log record per notification.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from headwater.telemetry.slo._model import AlertNotification
from headwater.telemetry.slo.notify.log import LogNotifier
from headwater.telemetry.slo.notify.webhook import (
    NotificationFailed,
    WebhookNotifier,
    generic_payload,
    pagerduty_payload,
    slack_payload,
)

__all__ = [
    "AlertNotification",
    "LogNotifier",
    "NotificationFailed",
    "Notifier",
    "WebhookNotifier",
    "generic_payload",
    "pagerduty_payload",
    "slack_payload",
]


@runtime_checkable
class Notifier(Protocol):
    """What the evaluator sends alert notifications to."""

    name: str
    severities: frozenset[str] | None

    def send(self, notification: AlertNotification) -> None:
        """Deliver one notification; raise on failure (the evaluator retries later)."""
