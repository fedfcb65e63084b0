"""The built-in SLIs are fed by the code that does the work: consumers (event freshness), CDC
pipelines (pipeline success, freshness) and the Postgres connector (slot lag)."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from headwater import Config, Platform
from headwater.events.consumer import EventConsumer
from headwater.events.envelope import Event

SLOS = """
service: headwater
slos:
  - name: freshness
    objective: 99
    sli: {event_freshness: {threshold_ms: 60000}}
  - name: pipelines
    objective: 99
    sli: {pipeline_success: {}}
  - name: slot-lag
    objective: 99
    sli: {cdc_slot_lag: {max_bytes: 1073741824}}
"""


def _platform(tmp_path, **stores) -> Platform:
    (tmp_path / "slos.yaml").write_text(SLOS)
    cfg = Config.embedded(tmp_path / "hw")
    cfg.slo.file = str(tmp_path / "slos.yaml")
    cfg.stores.update(stores)
    return Platform.open(cfg)


def _status(platform: Platform) -> dict[str, tuple[int, int]]:
    platform.slo_recorder.flush()
    return {s.slo: (s.good, s.total) for s in platform.slo_evaluator().status()}


def test_consumer_records_event_freshness(tmp_path):
    with _platform(tmp_path) as platform:
        platform.bus.create_topic("t", 1)
        fresh = [Event(type="x", source="/t", data={"i": i}) for i in range(5)]
        stale = [Event(type="x", source="/t", data={"i": 9}, time=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))]
        platform.bus.publish_many("t", fresh + stale)
        consumer = EventConsumer(platform.bus, "t", "g", lambda e: None, dead_letters=platform.dead_letters,
                                 slo=platform.slo_recorder)
        assert consumer.run(idle_timeout=0.5).handled == 6
        assert _status(platform)["freshness"] == (5, 6)  # the hour-old event missed the 60 s threshold


def test_sqlite_pipeline_records_runs_and_freshness(tmp_path):
    from headwater.cdc.pipeline import CDCPipeline

    with _platform(tmp_path) as platform:
        session = platform.session("setup")
        session.write("app.items", pa.table({"id": [1, 2, 3], "name": ["a", "b", "c"]}), key="id")
        pipe = CDCPipeline(platform, source="app", target="warehouse", tables=["items"])
        try:
            pipe.sync()
            session.write("app.items", pa.table({"id": [4], "name": ["d"]}), key="id")
            pipe.sync()
        finally:
            pipe.drop()
        status = _status(platform)
        assert status["pipelines"] == (2, 2)
        good, total = status["freshness"]
        assert total >= 4 and good == total


@pytest.mark.postgres
def test_postgres_connector_samples_slot_lag(tmp_path, pg_schema):
    from headwater.cdc.pipeline import CDCPipeline
    from headwater.config import PostgresConfig

    dsn, schema = pg_schema
    with _platform(tmp_path, app=PostgresConfig(dsn=dsn, schema=schema)) as platform:
        platform.session("setup").write("app.items", pa.table({"id": [1, 2], "name": ["a", "b"]}), key="id")
        pipe = CDCPipeline(platform, source="app", target="warehouse", tables=["items"], name=f"slo_{schema}")
        try:
            pipe.connector.heartbeat_interval = 0.05
            pipe.sync(idle_timeout=0.5)
        finally:
            pipe.drop()
        good, total = _status(platform)["slot-lag"]
        assert total >= 1 and good == total
        assert _status(platform)["pipelines"] == (1, 1)
