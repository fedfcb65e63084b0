"""Bus fixtures: one ``bus`` fixture parametrised over every backend.

* ``embedded`` -- a fresh SQLite log in ``tmp_path``;
* ``nats`` -- the JetStream server at ``HEADWATER_TEST_NATS_URL`` (default
  ``nats://127.0.0.1:4222``), with a random subject prefix per test and its streams deleted
  afterwards. Unreachable NATS skips with a reason, or fails under
  ``HEADWATER_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import Iterator
from urllib.parse import urlparse

import pytest

from headwater.events.bus import Bus, EmbeddedBus
from tests.fix_services import require_service

NATS_URL = os.environ.get("HEADWATER_TEST_NATS_URL", "nats://127.0.0.1:4222")
BACKENDS = ("embedded", "nats")


def nats_reachable(url: str = NATS_URL) -> str | None:
    """None when something listens at the NATS URL, else why not."""
    try:
        import nats  # noqa: F401
    except ImportError:
        return "nats-py is not installed (pip install nats-py)"
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 4222), timeout=2):
            return None
    except OSError as err:
        return f"nothing listens at {parsed.hostname}:{parsed.port} ({err.strerror or err})"


@pytest.fixture
def nats_url() -> str:
    """A reachable NATS URL, or a skip (a failure under HEADWATER_REQUIRE_SERVICES=1)."""
    reason = nats_reachable()
    if reason is not None:
        require_service("nats", reason + "; set HEADWATER_TEST_NATS_URL")
    return NATS_URL


def make_bus(kind: str, tmp_path, request) -> Bus:
    if kind == "embedded":
        return EmbeddedBus(tmp_path / "events.db")
    url = request.getfixturevalue("nats_url")
    from headwater.events.bus.nats import NatsBus

    return NatsBus(url, subject_prefix=f"t{uuid.uuid4().hex[:10]}", storage="memory")


@contextlib.contextmanager
def cleanup(bus: Bus) -> Iterator[Bus]:
    try:
        yield bus
    finally:
        if bus.capabilities.backend != "embedded":
            for topic in bus.topics():
                with contextlib.suppress(Exception):
                    bus.delete_topic(topic.name)
        bus.close()


@pytest.fixture(params=BACKENDS)
def bus(request, tmp_path) -> Iterator[Bus]:
    """A fresh, empty bus of each backend."""
    with cleanup(make_bus(request.param, tmp_path, request)) as b:
        yield b
