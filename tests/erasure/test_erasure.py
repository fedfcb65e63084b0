"""Erasure end to end: SQLite/Postgres source, DuckDB CTAS table and replica, Parquet (local and
S3) dataset written from a query, dead letters; delete and anonymise; legal holds."""

from __future__ import annotations

import json

import pytest
from tests.erasure._seed import SUBJECT, SUBJECT_EMAIL, N, count, lake_files_text, orders

from headwater.erasure import ErasureEngine, JobStatus, TargetKind, TargetState
from headwater.errors import (
    ColumnNotFound,
    DatasetNotFound,
    InvalidInput,
    LegalHoldActive,
    NotFound,
)
from headwater.events.dlq import DeadLetterStore
from headwater.retention.holds import LegalHolds

COPIES = {  # dataset -> key column holding the customer id
    "app.customers": "id",
    "warehouse.dim_customer": "customer_id",
    "lake.customer_export": "customer_id",
    "warehouse.customers_replica": "id",
}
PLATFORM_COPIES = {"lake.archive", "headwater.subject_keys", "storage:app", "storage:warehouse", "storage:lake",
                   "storage:headwater.metadata"}
"""Targets every seeded job has beside the datasets and dead letters (archives, keys, storage)."""


def _dead_ids(platform) -> set[int]:
    return {d.id for d in DeadLetterStore.for_platform(platform).list(status=None, limit=None)}


def test_plan_finds_every_copy_and_changes_nothing(seeded):
    platform, _ = seeded
    plan = ErasureEngine(platform).plan(SUBJECT, actor="dpo")
    assert str(plan.subject) == "app.customers.id=7"
    by_name = {t.dataset: t for t in plan.targets}
    for ds, col in COPIES.items():
        assert by_name[ds].addressable and by_name[ds].columns == (col,) and by_name[ds].rows == 1, ds
    assert by_name["warehouse.customers_replica"].found_by.startswith("cdc replica")
    assert by_name["headwater.dead_letters"].rows == 2
    agg = by_name["warehouse.by_country"]
    assert not agg.addressable and "not subject-addressable" in agg.reason
    assert "app.orders" not in by_name  # a foreign key is not lineage
    # derived copies come before the source
    names = [t.dataset for t in plan.erasable]
    assert names.index("lake.customer_export") < names.index("warehouse.dim_customer") < names.index("app.customers")
    assert count(platform, "app.customers", "id = 7") == 1


def test_delete_everywhere_verified_and_others_untouched(seeded):
    platform, dead = seeded
    engine = ErasureEngine(platform)
    report = engine.run(SUBJECT, actor="dpo")
    assert report.status is JobStatus.COMPLETED and report.ok
    results = {t.dataset: t for t in report.targets}
    for ds, col in COPIES.items():
        assert results[ds].state is TargetState.VERIFIED and results[ds].verified and results[ds].rows == 1
        assert count(platform, ds, f"{col} = 7") == 0, ds
        assert count(platform, ds) == N - 1, ds
    assert results["headwater.dead_letters"].rows == 2
    assert results["warehouse.by_country"].state is TargetState.RESIDUAL
    assert count(platform, "app.orders") == len(orders())  # untouched
    assert count(platform, "warehouse.by_country") == 3
    left = _dead_ids(platform)
    assert dead["cdc_7"] not in left and dead["order_of_7"] not in left
    assert {dead["order_7"], dead["cdc_8"], dead["garbage"]} <= left
    # the lake's files were rewritten: no file under the dataset still holds the subject
    assert SUBJECT_EMAIL not in lake_files_text(platform, "customer_export")
    assert "person8@example.com" in lake_files_text(platform, "customer_export")
    # the report: JSON on disk, the subject only as its reference
    text = report.path.read_text()
    doc = json.loads(text)
    assert doc["subject"] == "app.customers.id=7" and doc["status"] == "completed" and doc["job_id"] == report.job_id
    assert SUBJECT_EMAIL not in text and "Person 7" not in text
    assert {t["dataset"] for t in doc["targets"] if t["verified"]} == {*COPIES, "headwater.dead_letters",
                                                                        *PLATFORM_COPIES}
    # audit: one record per target plus one for the run, none holding the subject's value
    records = [r for r in platform.audit.query(action="erase", limit=None) if r.extra.get("job_id") == report.job_id]
    per_target = [r for r in records if "target" in r.extra]
    assert len(per_target) == len(COPIES) + 1 + len(PLATFORM_COPIES) and len(records) == len(per_target) + 1
    run = next(r for r in records if "target" not in r.extra)
    assert run.extra["status"] == "completed" and run.rows == report.rows == len(COPIES) + 2
    assert all("=7" not in json.dumps(r.to_dict()) for r in records)
    # status reads the same job back
    again = engine.status(report.job_id, actor="dpo")
    assert again.status is JobStatus.COMPLETED and [t.state for t in again.targets] == [t.state for t in report.targets]


def test_anonymise_keeps_rows_without_the_subject(embedded):
    from tests.erasure._seed import seed

    seed(embedded)
    report = ErasureEngine(embedded).run("app.customers.id=7", actor="dpo", mode="anonymise")
    assert report.ok
    for ds, col in COPIES.items():
        assert count(embedded, ds) == N, ds  # rows kept
        assert count(embedded, ds, f"{col} = 7") == 0, ds
        assert count(embedded, ds, f"{col} < 0") == 1, ds  # the surrogate key
    # PII-tagged columns of the source are nulled
    row = embedded.session("a").sql("SELECT email, name FROM app.customers WHERE id < 0").to_pylist()[0]
    assert row["email"] is None and row["name"] == "Person 7"
    src = next(t for t in report.targets if t.dataset == "app.customers")
    assert "email" in (src.reason or "")
    # copies of the tagged column (found through lineage) are nulled too; other rows keep theirs
    for ds in ("warehouse.dim_customer", "lake.customer_export"):
        rows = embedded.session("a").sql(f"SELECT email FROM {ds} WHERE customer_id < 0").to_pylist()
        assert rows == [{"email": None}], ds
        assert count(embedded, ds, "email IS NOT NULL") == N - 1, ds
    assert SUBJECT_EMAIL not in lake_files_text(embedded, "customer_export")


def test_legal_hold_refuses_before_touching_anything_then_resume(embedded):
    from tests.erasure._seed import seed

    seed(embedded)
    holds = LegalHolds(embedded)
    hold = holds.place(dataset="warehouse.*", reason="litigation 2026-17", actor="legal")
    before = _dead_ids(embedded)
    engine = ErasureEngine(embedded)
    assert [h.id for h in engine.plan(SUBJECT, actor="dpo").holds] == [hold.id]
    with pytest.raises(LegalHoldActive) as err:
        engine.run(SUBJECT, actor="dpo")
    assert hold.id in str(err.value)
    job_id = err.value.context["job_id"]
    for ds, col in COPIES.items():
        assert count(embedded, ds, f"{col} = 7") == 1, ds
    assert _dead_ids(embedded) == before
    assert engine.status(job_id, actor="dpo").status is JobStatus.REFUSED
    denied = [r for r in embedded.audit.query(action="erase", limit=None) if r.decision == "deny"]
    assert denied and denied[-1].extra["holds"] == [hold.id]
    # still held: resume refuses too
    with pytest.raises(LegalHoldActive):
        engine.run(actor="dpo", resume=job_id)
    holds.release(hold.id, actor="legal")
    report = engine.run(actor="dpo", resume=job_id)
    assert report.ok and report.job_id == job_id
    assert all(count(embedded, ds, f"{col} = 7") == 0 for ds, col in COPIES.items())


def test_subject_hold_refuses_only_that_subject(embedded):
    from tests.erasure._seed import seed

    seed(embedded)
    LegalHolds(embedded).place(subject="customers.id=7", reason="subpoena", actor="legal")
    engine = ErasureEngine(embedded)
    with pytest.raises(LegalHoldActive):
        engine.run(SUBJECT, actor="dpo")
    assert count(embedded, "app.customers", "id = 7") == 1
    assert engine.run("customers.id=8", actor="dpo").ok
    assert count(embedded, "app.customers", "id = 8") == 0


def test_bad_subjects_get_typed_errors(embedded):
    from tests.erasure._seed import seed

    seed(embedded)
    engine = ErasureEngine(embedded)
    with pytest.raises(InvalidInput):
        engine.plan("customers", actor="dpo")
    with pytest.raises(DatasetNotFound):
        engine.plan("nobody.id=1", actor="dpo")
    with pytest.raises(ColumnNotFound):
        engine.plan("customers.nope=1", actor="dpo")
    with pytest.raises(InvalidInput, match="int64"):
        engine.plan("customers.id=abc", actor="dpo")
    with pytest.raises(InvalidInput, match="mode"):
        engine.run(SUBJECT, actor="dpo", mode="shred")
    with pytest.raises(NotFound):
        engine.status("erase_nope", actor="dpo")
    with pytest.raises(NotFound):
        engine.run(actor="dpo", resume="erase_nope")


def test_short_name_shared_with_a_derived_copy(embedded):
    s = embedded.session("etl")
    s.write("app.people", [{"id": 1, "email": "a@x.io"}, {"id": 2, "email": "b@x.io"}], key="id")
    s.sql("CREATE TABLE warehouse.people AS SELECT id, email FROM app.people")
    engine = ErasureEngine(embedded)
    plan = engine.plan("people.id=1", actor="dpo")  # resolves to the source; the copy is found by lineage
    assert str(plan.subject) == "app.people.id=1"
    assert {t.dataset for t in plan.erasable} >= {"app.people", "warehouse.people"}
    s.write("lake.people", [{"id": 1, "email": "a@x.io"}])  # unrelated, same name: ambiguous
    with pytest.raises(InvalidInput, match="qualify"):
        engine.plan("people.id=1", actor="dpo")


def test_topics_are_reported_not_claimed(embedded):
    from tests.erasure._seed import seed

    seed(embedded)
    embedded.bus.create_topic("cdc.app.public.customers")
    embedded.bus.create_topic("billing.invoices")
    report = ErasureEngine(embedded).run(SUBJECT, actor="dpo")
    topics = [t for t in report.targets if t.kind is TargetKind.TOPIC]
    assert [t.dataset for t in topics] == ["topic:cdc.app.public.customers"]
    assert topics[0].state is TargetState.RESIDUAL and not topics[0].verified
    assert "append-only" in topics[0].reason
    assert report.ok  # every erasable target verified; the topic is listed as residual
    assert report.residual and topics[0] in report.residual


def test_join_on_a_foreign_key_makes_derived_rows_addressable(embedded):
    s = embedded.session("etl")
    s.write("app.customers", [{"id": i, "email": f"c{i}@x.io", "country": "DE"} for i in range(1, 10)], key="id")
    s.write("app.products", [{"id": i, "title": f"p{i}"} for i in range(1, 10)], key="id")
    s.write("app.orders", [{"id": i, "customer_id": i % 9 + 1, "product_id": (i * 2) % 9 + 1}
                           for i in range(1, 37)], key="id")
    s.sql("CREATE TABLE warehouse.order_facts AS "
          "SELECT o.id AS order_id, o.customer_id, o.product_id, c.country, p.title "
          "FROM app.orders o JOIN app.customers c ON c.id = o.customer_id "
          "JOIN app.products p ON p.id = o.product_id")
    engine = ErasureEngine(embedded)
    facts = next(t for t in engine.plan("customers.id=7", actor="dpo").targets if t.dataset == "warehouse.order_facts")
    assert facts.addressable and facts.columns == ("customer_id",)  # never product_id
    assert "app.orders.customer_id" in facts.found_by
    mine = count(embedded, "warehouse.order_facts", "customer_id = 7")
    by_product = count(embedded, "warehouse.order_facts", "product_id = 7 AND customer_id <> 7")
    assert mine == 4 and by_product > 0 and facts.rows == mine
    assert engine.run("customers.id=7", actor="dpo").ok
    assert count(embedded, "warehouse.order_facts", "customer_id = 7") == 0
    assert count(embedded, "warehouse.order_facts", "product_id = 7 AND customer_id <> 7") == by_product
    assert count(embedded, "warehouse.order_facts") == 36 - mine
    assert count(embedded, "app.orders") == 36  # the source's own foreign keys are not lineage


def test_two_processes_cannot_start_the_same_run(embedded):
    from headwater.erasure._jobs import JobStore

    embedded.session("etl").write("app.customers", [{"id": 1}, {"id": 2}], key="id")
    engine = ErasureEngine(embedded)
    report = engine.run("customers.id=1", actor="dpo")
    jobs = JobStore(embedded.meta)
    runs = jobs.job(report.job_id).runs
    assert jobs.claim(report.job_id, runs) is True
    assert jobs.claim(report.job_id, runs) is False  # the second claimant read the same counter
    assert jobs.job(report.job_id).runs == runs + 1


def test_hold_placed_during_a_run_leaves_that_target(embedded):
    from tests.erasure._seed import seed

    seed(embedded)
    engine = ErasureEngine(embedded)
    holds = LegalHolds(embedded)
    placed = []

    def progress(target, phase):  # a hold arrives after the first target is done
        if phase == "done" and not placed:
            placed.append(holds.place(dataset="app.customers", reason="late subpoena", actor="legal"))

    report = engine.run(SUBJECT, actor="dpo", progress=progress)
    assert report.status is JobStatus.PARTIAL
    src = next(t for t in report.targets if t.dataset == "app.customers")
    assert src.state is TargetState.FAILED and placed[0].id in src.error
    assert count(embedded, "app.customers", "id = 7") == 1
    holds.release(placed[0].id, actor="legal")
    assert engine.run(actor="dpo", resume=report.job_id).ok
    assert count(embedded, "app.customers", "id = 7") == 0


def test_erasing_a_copy_reports_its_source_as_residual(embedded):
    from tests.erasure._seed import seed

    seed(embedded)
    report = ErasureEngine(embedded).run("warehouse.dim_customer.customer_id=7", actor="dpo")
    states = {t.dataset: t for t in report.targets}
    assert states["warehouse.dim_customer"].verified and states["lake.customer_export"].verified
    src = states["app.customers"]
    assert src.state is TargetState.RESIDUAL and "upstream" in src.reason
    assert count(embedded, "app.customers", "id = 7") == 1
