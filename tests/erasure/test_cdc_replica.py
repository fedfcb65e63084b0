"""Erasure with a live CDC pipeline (SQLite capture -> bus -> warehouse replica): the replica is
found through the pipeline's lineage; the capture's change table is pruned of the subject (the
erasure's own delete included), so the pipeline never ships it; a tombstone that arrives anyway
(a Postgres source ships its deletes from the WAL) is caught by ``verify`` and erased by a
resume."""

from __future__ import annotations

import pytest

from headwater.erasure import ErasureEngine, JobStatus, TargetKind, TargetState


@pytest.fixture
def pipeline(embedded):
    from headwater.cdc import CDCPipeline

    s = embedded.session("ops")
    s.write("app.customers", [{"id": i, "email": f"c{i}@example.com"} for i in range(1, 6)], key="id")
    pipe = CDCPipeline(embedded, source="app", target="warehouse", tables=["customers"])
    assert pipe.sync()["applied"] == {"customers": 5}
    try:
        yield pipe
    finally:
        pipe.close()


def _rows(platform, where: str) -> list[dict]:
    return platform.session("a").sql(f"SELECT * FROM warehouse.customers WHERE {where}").to_pylist()


def test_replica_tombstone_is_caught_and_erased(embedded, pipeline):
    engine = ErasureEngine(embedded)
    plan = engine.plan("customers.id=2", actor="dpo")  # the short name resolves to the source, not the replica
    assert str(plan.subject) == "app.customers.id=2"
    replica = next(t for t in plan.targets if t.dataset == "warehouse.customers")
    assert replica.addressable and replica.rows == 1 and replica.found_by.startswith("lineage")
    topic = next(t for t in plan.targets if t.kind is TargetKind.TOPIC)
    assert topic.dataset == "topic:cdc.app.main.customers" and not topic.addressable
    report = engine.run("customers.id=2", actor="dpo")
    assert report.ok and _rows(embedded, "id = 2") == []
    changes = next(t for t in report.targets if t.kind is TargetKind.CHANGE_TABLE)
    assert changes.dataset == "app._hw_changes" and changes.verified and changes.rows == 1  # its own delete
    # the source delete was pruned from the change table: nothing reaches the replica
    pipeline.sync()
    assert _rows(embedded, "id = 2") == []
    assert engine.verify(report.job_id, actor="dpo").ok
    # a tombstone carrying the key lands anyway (as a Postgres source's WAL would ship it)
    embedded.session("headwater-cdc").write(
        "warehouse.customers", [{"id": 2, "email": None, "_lsn": 10**9, "_seq": 0, "_deleted": True}],
        mode="upsert", key="id")
    assert [r["_deleted"] for r in _rows(embedded, "id = 2")] == [True]
    checked = engine.verify(report.job_id, actor="dpo")
    assert checked.status is JobStatus.PARTIAL
    back = next(t for t in checked.targets if t.dataset == "warehouse.customers")
    assert back.state is TargetState.FAILED and "reappeared" in back.error
    done = engine.run(actor="dpo", resume=report.job_id)
    assert done.ok and _rows(embedded, "id = 2") == []
    assert len(_rows(embedded, "TRUE")) == 4
    pipeline.sync()
    assert engine.verify(report.job_id, actor="dpo").ok  # nothing new arrives
