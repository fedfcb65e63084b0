"""SLO fixtures: a migrated metadata store on SQLite and on Postgres, an injectable clock, and
helpers that feed synthetic SLI streams.

Postgres comes from ``HEADWATER_TEST_PG_URL`` (default: the local test server); each test gets
a fresh ``hw_slo_<random>`` schema (through ``options=-csearch_path`` in the URL), dropped
afterwards. Unreachable Postgres skips with a reason, or fails under
``HEADWATER_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest

from headwater.metadata import MetadataStore
from tests.fix_services import pg_schema_url

START = dt.datetime(2026, 3, 2, 12, 0, 30, tzinfo=dt.UTC)
"""Thirty seconds into a minute, so 'now' and 'k minutes ago' land in distinct buckets."""


class FakeClock:
    """A clock tests move by hand."""

    def __init__(self, start: dt.datetime = START) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> dt.datetime:
        self.now += dt.timedelta(**delta)
        return self.now

    def ago(self, **delta: float) -> dt.datetime:
        return self.now - dt.timedelta(**delta)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def meta_url(request, tmp_path) -> Iterator[str]:
    """The URL of an empty metadata database, once per backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'meta.db'}"
    else:
        yield from pg_schema_url("hw_slo")


@pytest.fixture
def meta(meta_url: str) -> Iterator[MetadataStore]:
    """A metadata store migrated to head (0008_slo included)."""
    store = MetadataStore.open(meta_url)
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock starting at :data:`START`."""
    return FakeClock()


def feed(recorder, series: str, clock: FakeClock, minutes: range, good: int, total: int) -> None:
    """Record ``good``/``total`` in each minute ``k`` minutes ago for ``k`` in ``minutes``."""
    for k in minutes:
        recorder.record(series, good, total, at=clock.ago(minutes=k))
