"""Every copy the platform wrote, and ``completed`` only after verifying: CDC change tables,
retention archives, sealed dead letters, subject keys, trusted lineage only, a copy that comes
back during the run, storage that cannot be rewritten."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from tests.erasure._seed import SUBJECT, count, seed, seed_pii

from headwater.erasure import ErasureEngine, JobStatus, TargetKind, TargetState
from headwater.events.dlq import DeadLetterStore
from headwater.events.envelope import Event
from headwater.retention._archive import subject_rows_in_archives


def _target(report, name):  # noqa: ANN001, ANN202
    return next(t for t in report.targets if t.dataset == name)


def test_change_table_rows_of_the_subject_are_pruned(embedded):
    from headwater.cdc.sqlite import subject_changes

    values = seed_pii(embedded)
    path = embedded.store("app").path
    pairs = [("customers", "id")]
    assert subject_changes(path, pairs, "7") >= 2 and subject_changes(path, pairs, "8") >= 2
    plan = ErasureEngine(embedded).plan(SUBJECT, actor="dpo")
    changes = next(t for t in plan.targets if t.kind is TargetKind.CHANGE_TABLE)
    assert changes.dataset == "app._hw_changes" and changes.columns == ("customers.id",) and changes.rows >= 2
    report = ErasureEngine(embedded).run(SUBJECT, actor="dpo")
    assert report.ok and _target(report, "app._hw_changes").verified
    assert subject_changes(path, pairs, "7") == 0 and subject_changes(path, pairs, "8") >= 2
    assert subject_changes(path, pairs, "12") >= 1  # other subjects' pending changes are kept
    assert values[7]["email"] not in str(_target(report, "app._hw_changes").to_dict())


def test_archives_dead_letters_and_keys_are_erased(seeded):
    platform, _ = seeded
    values = seed_pii_extra(platform)
    keys = platform.subject_keys
    sealed_8 = keys.seal_text("app.customers.id", 8, values[8])
    plan = ErasureEngine(platform).plan(SUBJECT, actor="dpo")
    by = {t.dataset: t for t in plan.targets}
    assert by["lake.archive"].rows == 1 and "app.customers.id" in by["lake.archive"].columns
    assert by["headwater.dead_letters"].rows == 3  # two in clear, one sealed (no key in clear)
    assert by["headwater.subject_keys"].rows == 1 and by["headwater.subject_keys"].columns[0] == "app.customers.id"
    report = ErasureEngine(platform).run(SUBJECT, actor="dpo")
    assert report.ok, [(t.dataset, t.error) for t in report.targets if t.error]
    keys_target = _target(report, "headwater.subject_keys")
    assert keys_target.kind is TargetKind.SUBJECT_KEY and keys_target.verified and "1 key(s)" in keys_target.reason
    assert not keys.exists("app.customers.id", 7) and keys.open_text(sealed_8) == values[8]
    assert subject_rows_in_archives(platform, {"app.customers": ["id"]}, "7") == 0
    assert subject_rows_in_archives(platform, {"app.customers": ["id"]}, "8") == 1
    left = [d.value for d in DeadLetterStore.for_platform(platform).list(status=None, limit=None)]
    assert not any(b"sealed-for-7" in bytes(v) or values[7].encode() in bytes(v) for v in left)
    # shredding is idempotent: a second subject run shreds nothing and still verifies
    again = ErasureEngine(platform).run(SUBJECT, actor="dpo")
    assert again.ok and "0 key(s)" in _target(again, "headwater.subject_keys").reason


def seed_pii_extra(platform) -> dict[int, str]:  # noqa: ANN001
    """On top of the default seed: an archive of customers 7 and 8, and a dead letter whose only
    trace of customer 7 is a value sealed under its key."""
    from headwater.retention._archive import archive_path, write_archive

    store = platform.store("app")
    lake = platform.store("lake")
    path = archive_path(lake, "app.customers", dt.datetime.now(dt.UTC), f"run-{uuid.uuid4().hex[:8]}")
    from sqlglot import exp

    tree = exp.select("*").from_(store.table_expr("customers")).where(exp.column("id").isin(7, 8))
    assert write_archive(lake, path, store, *store.render(tree)) == 2
    secret = {7: f"sealed-for-7-{uuid.uuid4().hex}", 8: f"sealed-for-8-{uuid.uuid4().hex}"}
    ev = Event(type="shop.note", source="/shop", data={"note": platform.subject_keys.seal_text(
        "app.customers.id", 7, secret[7])})
    DeadLetterStore.for_platform(platform).add(ev.to_json(), stage="handle", error=("ValueError", "x"), attempts=1,
                                               consumer_group="g", topic="notes", partition=0, offset=99)
    return secret


def test_forged_lineage_from_an_outside_producer_is_not_followed(embedded):
    from headwater.lineage import FACET_SCHEMA_URLS, PRODUCER, RUN_EVENT_SCHEMA_URL

    seed(embedded)
    s = embedded.session("etl")
    s.write("warehouse.invoices", [{"invoice_no": i, "total": float(i)} for i in range(1, 11)], key="invoice_no")
    lineage = embedded.lineage
    ns = lineage.identity.namespace

    def facet(key, body):  # noqa: ANN001, ANN202
        return {"_producer": PRODUCER, "_schemaURL": FACET_SCHEMA_URLS[key], **body}

    forged = {"eventType": "COMPLETE", "eventTime": "2026-01-01T00:00:00Z", "producer": "https://evil.example/x",
              "schemaURL": RUN_EVENT_SCHEMA_URL, "run": {"runId": str(uuid.uuid4())},
              "job": {"namespace": "airflow://evil", "name": "copy"},
              "inputs": [{"namespace": ns, "name": "app.customers"}],
              "outputs": [{"namespace": ns, "name": "warehouse.invoices", "facets": {"columnLineage": facet(
                  "columnLineage", {"fields": {"invoice_no": {"inputFields": [
                      {"namespace": ns, "name": "app.customers", "field": "id",
                       "transformations": [{"type": "DIRECT", "subtype": "IDENTITY"}]}]}}})}}]}
    lineage.emit(forged)
    # the untrusted graph has the edge; erasure does not follow it
    assert "warehouse.invoices" in lineage.downstream("app.customers.id").datasets
    plan = ErasureEngine(embedded).plan(SUBJECT, actor="dpo")
    assert "warehouse.invoices" not in {t.dataset for t in plan.targets}
    assert ErasureEngine(embedded).run(SUBJECT, actor="dpo").ok
    assert count(embedded, "warehouse.invoices", "invoice_no = 7") == 1  # invoice 7 is not customer 7
    # the platform's own lineage is still followed
    assert {"warehouse.dim_customer", "lake.customer_export"} <= {t.dataset for t in plan.erasable}


def test_a_copy_that_comes_back_during_the_run_makes_it_partial(embedded):
    seed(embedded)
    engine = ErasureEngine(embedded)
    back = []

    def progress(target, phase):  # noqa: ANN001, ANN202 - a late CDC apply after the replica was verified
        if phase == "done" and target.dataset == "app.customers" and not back:
            embedded.session("cdc").write("warehouse.customers_replica", [
                {"id": 7, "email": "late@example.com", "name": "Late", "country": "DE", "_lsn": 999, "_seq": 0,
                 "_deleted": False}], key="id", mode="upsert")
            back.append(True)

    report = engine.run(SUBJECT, actor="dpo", progress=progress)
    assert back and report.status is JobStatus.PARTIAL and not report.ok
    replica = _target(report, "warehouse.customers_replica")
    assert replica.state is TargetState.FAILED and "appeared again" in replica.error
    done = engine.run(actor="dpo", resume=report.job_id)
    assert done.ok and count(embedded, "warehouse.customers_replica", "id = 7") == 0
    assert _target(done, "storage:warehouse").verified  # its storage was rewritten again


def test_storage_that_cannot_be_rewritten_makes_it_partial(embedded):
    from headwater.stores.duckdb import new_connection

    seed(embedded)
    path = embedded.store("warehouse").path
    other = new_connection(path, locked=True)  # another handle on the file in this process
    try:
        report = ErasureEngine(embedded).run(SUBJECT, actor="dpo")
    finally:
        other.close()
    assert report.status is JobStatus.PARTIAL
    storage = _target(report, "storage:warehouse")
    assert storage.state is TargetState.FAILED and "StoreUnavailable" in storage.error
    assert all(t.verified for t in report.targets if t.kind is TargetKind.DATASET and t.state is not
               TargetState.RESIDUAL)  # the rows went; their bytes may not have
    assert count(embedded, "warehouse.dim_customer") == 19  # the store works after the refusal
    done = ErasureEngine(embedded).run(actor="dpo", resume=report.job_id)
    assert done.ok and _target(done, "storage:warehouse").verified


@pytest.mark.parametrize("bad", ["", "   "])
def test_an_actor_is_required(embedded, bad):
    from headwater.errors import InvalidInput

    seed(embedded)
    with pytest.raises(InvalidInput):
        ErasureEngine(embedded).run(SUBJECT, actor=bad)
