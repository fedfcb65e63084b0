"""Sending events to an OpenLineage HTTP endpoint (``POST <url>`` with the event as JSON).

Marquez and most OpenLineage backends take events at ``http://host:5000/api/v1/lineage``. The
API key, if any, is sent as a bearer token and never appears in ``repr`` or error messages.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from headwater.errors import ConfigError, HeadwaterError, Transient

__all__ = ["HttpTransport", "LineageDeliveryError"]


class LineageDeliveryError(HeadwaterError, Transient):
    """The OpenLineage endpoint did not accept an event (``status`` when it answered)."""


class HttpTransport:
    """POSTs OpenLineage events to ``url``."""

    def __init__(self, url: str, *, api_key: str | None = None, timeout_s: float = 5.0,
                 headers: Mapping[str, str] | None = None) -> None:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"lineage endpoint must be an http(s) URL, not {url.split('://')[0]!r}")
        self.url = url
        self.timeout_s = timeout_s
        self._api_key = api_key
        self._headers = {"Content-Type": "application/json", **(headers or {})}

    def __repr__(self) -> str:
        return f"HttpTransport(url={self.url!r}, api_key={'***' if self._api_key else None})"

    def send(self, event: Mapping[str, Any]) -> None:
        """Deliver one event; raises :class:`LineageDeliveryError` when it is not accepted."""
        headers = dict(self._headers)
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        req = urllib.request.Request(  # noqa: S310 - scheme checked in __init__
            self.url, data=json.dumps(event).encode(), headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:  # noqa: S310
                resp.read()
        except urllib.error.HTTPError as err:
            raise LineageDeliveryError(
                f"lineage endpoint {self.url} answered HTTP {err.code}", status=err.code
            ) from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise LineageDeliveryError(f"lineage endpoint {self.url} unreachable: {reason}") from None
