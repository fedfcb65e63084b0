"""Fault tests: SIGKILL a sink consumer process mid-batch and restart it; a message that kills
its consumer every time; afterwards events in == sink rows + dead letters, each event in the
sink exactly once."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from headwater import Config, Platform
from headwater.events.bus import connect
from headwater.events.dlq import DeadLetterStore, Stage
from headwater.events.envelope import Event

from .conftest import NATS_URL

REPO = Path(__file__).resolve().parents[3]
GOOD, POISON, MALFORMED = 1500, 5, 5
FAULT_BACKENDS = ("embedded", "nats")


def _start(platform_dir: Path, url: str, prefix: str, idle: float) -> subprocess.Popen:
    proc = subprocess.Popen(  # noqa: S603 - fixed argv
        [sys.executable, "-m", "tests.events.bus._sink_worker", str(platform_dir), url, prefix, str(idle)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "ready", proc.stderr.read() if proc.stderr else line
    return proc


def _sink_rows(platform_dir: Path) -> list[str]:
    db = sqlite3.connect(platform_dir / "app.db")
    try:
        return [r[0] for r in db.execute("SELECT _event_id FROM fault_orders")]
    except sqlite3.OperationalError:
        return []
    finally:
        db.close()


@pytest.fixture(params=FAULT_BACKENDS)
def setup(request, tmp_path):
    platform_dir = tmp_path / "hw"
    platform = Platform.open(Config.embedded(platform_dir))
    prefix = f"f{uuid.uuid4().hex[:10]}"
    if request.param == "embedded":
        url = f"embedded:{platform_dir / 'events.db'}"
        bus = connect(url)
    else:
        request.getfixturevalue("nats_url")
        url = NATS_URL
        bus = connect(url, subject_prefix=prefix)
    try:
        yield platform, platform_dir, bus, url, prefix
    finally:
        if request.param != "embedded":
            for t in bus.topics():
                bus.delete_topic(t.name)
        bus.close()
        platform.close()


def _publish(bus, extra: list[Event]) -> tuple[set[str], int]:
    bus.create_topic("orders", 3)
    good = [Event(type="order", source="/t", subject=f"o{i}", data={"order_id": i}) for i in range(GOOD)]
    poison = [Event(type="order", source="/t", data={"order_id": 10_000 + i, "poison": True}) for i in range(POISON)]
    for i in range(0, GOOD, 250):
        bus.publish_many("orders", good[i : i + 250])
    bus.publish_many("orders", poison + extra)
    for i in range(MALFORMED):
        bus.publish_raw("orders", f"garbage {i}".encode(), key=f"g{i}")
    return {e.id for e in good}, GOOD + POISON + MALFORMED + len(extra)


def _check(platform, platform_dir, good_ids: set[str], events_in: int, expected_dead: int) -> None:
    rows = _sink_rows(platform_dir)
    assert len(rows) == len(set(rows)), "an event is in the sink twice"
    assert set(rows) == good_ids
    dead = DeadLetterStore.for_platform(platform).list(limit=None)
    assert len(dead) == expected_dead
    assert events_in == len(rows) + len(dead)


def test_sigkill_mid_batch_then_restart(setup):
    platform, platform_dir, bus, url, prefix = setup
    good_ids, events_in = _publish(bus, [])
    worker = _start(platform_dir, url, prefix, idle=60)
    deadline = time.monotonic() + 60
    while len(_sink_rows(platform_dir)) < 300 and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(timeout=10)
    assert worker.returncode == -signal.SIGKILL
    partial = len(_sink_rows(platform_dir))
    assert 0 < partial < GOOD, "the kill should land mid-stream"

    worker = _start(platform_dir, url, prefix, idle=4)
    worker.wait(timeout=180)
    assert worker.returncode == 0, worker.stderr.read() if worker.stderr else ""
    _check(platform, platform_dir, good_ids, events_in, POISON + MALFORMED)
    dead = DeadLetterStore.for_platform(platform)
    assert dead.count(stage="deserialise") == MALFORMED and dead.count(stage="sink") == POISON


def test_message_that_kills_its_consumer_is_dead_lettered(setup):
    platform, platform_dir, bus, url, prefix = setup
    killer = Event(type="order", source="/t", data={"order_id": 99_999, "die": True})
    good_ids, events_in = _publish(bus, [killer])
    crashes = 0
    for _ in range(8):
        worker = _start(platform_dir, url, prefix, idle=4)
        worker.wait(timeout=180)
        if worker.returncode == 0:
            break
        assert worker.returncode == 3
        crashes += 1
    assert worker.returncode == 0
    # max_attempts=2 + crash_allowance=2: dead-lettered on the 5th delivery at the latest
    assert 1 <= crashes <= 4
    _check(platform, platform_dir, good_ids, events_in, POISON + MALFORMED + 1)
    [dl] = DeadLetterStore.for_platform(platform).list(error_class="DeliveryLimitExceeded")
    assert dl.reason.stage is Stage.SINK and dl.event().id == killer.id
