"""The clock every SLO component reads, injectable so tests can drive time."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

Clock = Callable[[], dt.datetime]
"""A callable returning the current time as an aware datetime."""


def system_clock() -> dt.datetime:
    """The wall clock in UTC."""
    return dt.datetime.now(dt.UTC)


def as_utc(value: dt.datetime) -> dt.datetime:
    """``value`` in UTC; naive datetimes (SQLite returns them) are taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def minute_of(value: dt.datetime) -> int:
    """Whole minutes since the Unix epoch (the bucket key)."""
    return int(as_utc(value).timestamp() // 60)


def minute_start(minute: int) -> dt.datetime:
    """The UTC start of bucket ``minute``."""
    return dt.datetime.fromtimestamp(minute * 60, dt.UTC)
