"""Fault test: the NATS server dies (SIGKILL) in the middle of a stream and comes back.

The shared NATS server of the test machine is never touched: the test starts its own
``nats-server -js`` on a free loopback port with a store directory in ``tmp_path``, publishes
a stream of events while a sink consumer drains it into a dataset, kills the server with
SIGKILL mid-stream and starts it again on the same port and store directory. Producer and
consumer carry on through the outage (retrying on :class:`BusUnavailable`). Afterwards
every event is in the sink exactly once or in the dead-letter store: events in = sink rows
+ dead letters.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from headwater import Config, Platform
from headwater.events.bus import BusUnavailable
from headwater.events.consumer import RetryPolicy
from headwater.events.dlq import DeadLetterStore
from headwater.events.envelope import Event
from headwater.events.sink import DatasetSink, sink_consumer
from tests.fix_services import free_port, require_service

GOOD, POISON, MALFORMED, BATCH = 3000, 5, 5, 50
NATS_SERVER = os.environ.get("HEADWATER_NATS_SERVER_BIN", "/usr/sbin/nats-server")


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.3):
            return True
    except OSError:
        return False


class _Server:
    """A private JetStream server on loopback (file storage in ``store``)."""

    def __init__(self, binary: str, port: int, store: Path, log: Path) -> None:
        self.argv = [binary, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store)]
        self.port = port
        self.log = log
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(  # noqa: S603 - fixed argv
                self.argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + 20
        while not _accepts(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"nats-server did not start: {self.log.read_text()[-800:]}")
            time.sleep(0.05)

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def private_nats(tmp_path):
    try:
        import nats  # noqa: F401
    except ImportError:
        require_service("nats", "nats-py is not installed (pip install 'headwater[nats]')")
    binary = NATS_SERVER if os.access(NATS_SERVER, os.X_OK) else shutil.which("nats-server")
    if not binary:
        require_service("nats", f"no nats-server binary at {NATS_SERVER} or on PATH "
                        "(set HEADWATER_NATS_SERVER_BIN)")
    server = _Server(binary, free_port(), tmp_path / "jetstream", tmp_path / "nats.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _retry(fn, deadline: float):
    """Call ``fn`` until it stops raising BusUnavailable (the server is restarting)."""
    while True:
        try:
            return fn()
        except BusUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _sink_rows(platform_dir: Path) -> list[str]:
    db = sqlite3.connect(platform_dir / "app.db")
    try:
        return [r[0] for r in db.execute("SELECT _event_id FROM restart_orders")]
    except sqlite3.OperationalError:
        return []
    finally:
        db.close()


def test_nats_server_sigkill_mid_stream_then_restart(private_nats, tmp_path):
    from headwater.events.bus.nats import NatsBus

    url = f"nats://127.0.0.1:{private_nats.port}"
    prefix = f"r{uuid.uuid4().hex[:8]}"
    platform_dir = tmp_path / "hw"
    platform = Platform.open(Config.embedded(platform_dir))
    dead_letters = DeadLetterStore.for_platform(platform)
    pub_bus = NatsBus(url, subject_prefix=prefix, storage="file", timeout=2.0)
    sub_bus = NatsBus(url, subject_prefix=prefix, storage="file", timeout=2.0)
    deadline = time.monotonic() + 120
    try:
        pub_bus.create_topic("orders", 3)
        good = [Event(type="order", source="/t", subject=f"o{i}", data={"order_id": i})
                for i in range(GOOD)]
        poison = [Event(type="order", source="/t", subject=f"p{i}",
                        data={"order_id": 10_000 + i, "poison": True}) for i in range(POISON)]
        stream = good[: GOOD // 2] + poison + good[GOOD // 2 :]
        published = {"n": 0}
        failures: list[BaseException] = []

        def produce() -> None:
            try:
                for i in range(0, len(stream), BATCH):
                    # a batch cut by the outage is sent again: Nats-Msg-Id de-duplicates it
                    _retry(lambda i=i: pub_bus.publish_many("orders", stream[i : i + BATCH]), deadline)
                    published["n"] = i + BATCH
                    time.sleep(0.01)
                for i in range(MALFORMED):
                    _retry(lambda i=i: pub_bus.publish_raw(
                        "orders", f"garbage {i}".encode(), key=f"g{i}", msg_id=f"garbage-{prefix}-{i}"),
                        deadline)
            except BaseException as err:  # noqa: BLE001 - reported by the test
                failures.append(err)

        def to_row(event: Event) -> dict:
            if event.data.get("poison"):
                raise RuntimeError(f"poison order {event.data['order_id']}")
            return event.data

        sink = DatasetSink(platform.session("worker"), "app.restart_orders", to_row=to_row)
        consumer = _retry(lambda: sink_consumer(
            sub_bus, "orders", "sinkers", sink, dead_letters=dead_letters,
            retry=RetryPolicy(max_attempts=2, base=0.01, max_delay=0.05),
            batch_size=100, ack_wait=2.0,
        ), deadline)
        stop_consuming = threading.Event()
        outages = {"n": 0}

        def consume() -> None:
            # the application's loop: carry on through BusUnavailable until told to stop
            try:
                while not stop_consuming.is_set():
                    try:
                        consumer.run(idle_timeout=1.0)
                    except BusUnavailable:
                        outages["n"] += 1
                        time.sleep(0.2)
            except BaseException as err:  # noqa: BLE001 - reported by the test
                failures.append(err)

        producer_t = threading.Thread(target=produce, daemon=True)
        consumer_t = threading.Thread(target=consume, daemon=True)
        producer_t.start()
        consumer_t.start()

        while published["n"] < len(stream) // 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        before = len(_sink_rows(platform_dir))
        private_nats.kill9()
        assert 0 < published["n"] < len(stream), "the kill should land mid-stream"
        time.sleep(1.0)  # producer and consumer see the outage
        private_nats.start()

        producer_t.join(timeout=max(deadline - time.monotonic(), 1))
        assert not producer_t.is_alive() and not failures, failures
        events_in = GOOD + POISON + MALFORMED
        while time.monotonic() < deadline:
            if len(set(_sink_rows(platform_dir))) + dead_letters.count() >= events_in:
                break
            time.sleep(0.2)
        time.sleep(1.5)  # anything redelivered late would land now (and must be de-duplicated)
        stop_consuming.set()
        consumer.stop()
        consumer_t.join(timeout=30)
        assert not failures, failures

        rows = _sink_rows(platform_dir)
        dead = dead_letters.list(limit=None)
        assert before < GOOD, "the sink should not have finished before the kill"
        assert len(rows) == len(set(rows)), "an event is in the sink twice"
        assert set(rows) == {e.id for e in good}
        assert len(dead) == POISON + MALFORMED
        assert dead_letters.count(stage="deserialise") == MALFORMED
        assert dead_letters.count(stage="sink") == POISON
        assert events_in == len(rows) + len(dead)
        with contextlib.suppress(Exception):
            consumer.close()
    finally:
        with contextlib.suppress(Exception):
            for t in pub_bus.topics():
                pub_bus.delete_topic(t.name)
        pub_bus.close()
        sub_bus.close()
        platform.close()
