"""A notifier that writes each notification to a logger."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from headwater.telemetry.slo._model import AlertNotification

__all__ = ["LogNotifier"]


class LogNotifier:
    """Logs fires at WARNING (``page`` at ERROR) and resolves at INFO on ``logger``
    (default ``headwater.telemetry.slo.alerts``), with the notification in ``extra["slo_alert"]``."""

    def __init__(self, logger: logging.Logger | str = "headwater.telemetry.slo.alerts", *,
                 severities: Iterable[str] | None = None, name: str = "log") -> None:
        self.logger = logging.getLogger(logger) if isinstance(logger, str) else logger
        self.severities = frozenset(severities) if severities is not None else None
        self.name = name

    def __repr__(self) -> str:
        return f"LogNotifier(logger={self.logger.name!r})"

    def send(self, notification: AlertNotification) -> None:
        """Log one notification."""
        if notification.action == "resolve":
            level = logging.INFO
        else:
            level = logging.ERROR if notification.severity == "page" else logging.WARNING
        self.logger.log(level, "%s", notification.summary, extra={"slo_alert": notification.as_dict()})
