"""Retention end to end: SQLite or Postgres app, DuckDB warehouse, Parquet lake (local or S3)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from headwater import Platform
from headwater.errors import PolicyError
from headwater.retention import RetentionEngine
from headwater.retention.holds import LegalHolds
from tests.retention.conftest import N, Seeded, seed

POLICY = """\
version: 1
defaults:
  archive: lake
rules:
  - dataset: app.customers
    keep: 100d
  - tag: "pii.*"
    tokenise_after: 30d
  - dataset: warehouse.orders
    by: ordered_at
    keep: 60d
  - dataset: warehouse.orders
    columns: [coupon]
    null_after: 20d
"""

MASKING = """\
version: 1
roles:
  admin:
    grants: [{datasets: "*", actions: [select, insert, update, delete]}]
  analyst:
    grants: [{datasets: "*", actions: [select]}]
    columns: [{tag: "pii.*", mask: tokenise}]
principals:
  admin: {roles: [admin]}
  bob: {roles: [analyst]}
"""


def rows(platform: Platform, dataset: str, key: str, who: str = "admin") -> dict[int, dict[str, Any]]:
    table = platform.session(who).sql(f"SELECT * FROM {dataset}").to_arrow()
    return {r[key]: r for r in table.to_pylist()}


def read_archive(platform: Platform, path: str) -> pa.Table:
    lake = platform.store("lake")
    with lake.fs.open_input_file(path) as f:  # type: ignore[attr-defined]
        return pq.read_table(f)


def action(plan: Any, dataset: str, kind: str, column: str | None = None) -> Any:
    found = [a for a in plan.actions if a.dataset == dataset and a.action == kind
             and (column is None or column in a.columns)]
    assert len(found) == 1, (dataset, kind, plan.actions)
    return found[0]


def test_plan_counts_equal_what_apply_removes(seeded: Seeded) -> None:
    p = seeded.platform
    p.catalog.update("lake.events", retention_days=45)
    before = {d: rows(p, d, k) for d, k in (("app.customers", "id"), ("warehouse.orders", "id"),
                                            ("lake.events", "event_id"))}
    engine = RetentionEngine(p)
    plan = engine.plan(POLICY, now=seeded.now)

    old100, old60, old45 = seeded.older_than(100), seeded.older_than(60), seeded.older_than(45)
    assert action(plan, "app.customers", "delete").rows == len(old100) == 11
    assert action(plan, "warehouse.orders", "delete").rows == len(old60)
    assert action(plan, "lake.events", "delete").rows == len(old45)
    assert action(plan, "lake.events", "delete").rule == "catalog retention_days=45"
    # column actions count only rows the dataset's keep leaves
    assert action(plan, "app.customers", "tokenise", "email").rows == len(seeded.older_than(30) - old100)
    assert action(plan, "lake.events", "tokenise", "ip").rows == len(seeded.older_than(30) - old45)
    assert action(plan, "warehouse.orders", "null", "coupon").rows == len(seeded.older_than(20) - old60)
    assert all(a.bytes and a.bytes > 0 for a in plan.runnable if a.rows)

    report = engine.apply(plan, actor="ops")
    assert report.ok, report.results
    for a in plan.runnable:
        assert report.result(a.dataset, a.action, *a.columns).rows == a.rows, a

    after = {d: rows(p, d, k) for d, k in (("app.customers", "id"), ("warehouse.orders", "id"),
                                           ("lake.events", "event_id"))}
    assert set(after["app.customers"]) == set(range(1, N + 1)) - old100
    assert set(after["warehouse.orders"]) == set(range(1, N + 1)) - old60
    assert set(after["lake.events"]) == set(range(1, N + 1)) - old45
    for i, r in after["warehouse.orders"].items():
        expected = None if i in seeded.older_than(20) else f"C{i}"
        assert r["coupon"] == expected
        assert r["amount"] == before["warehouse.orders"][i]["amount"]
    # a second plan finds nothing left to do
    again = engine.plan(POLICY, now=seeded.now)
    assert again.total_rows == 0, [a for a in again.runnable if a.rows]


def test_archive_files_hold_exactly_the_deleted_rows(seeded: Seeded) -> None:
    p = seeded.platform
    before = rows(p, "warehouse.orders", "id")
    report = RetentionEngine(p).apply(POLICY, actor="ops")
    res = report.result("warehouse.orders", "delete")
    assert res.archive_path and "/archive/warehouse.orders/" in res.archive_path
    archived = read_archive(p, res.archive_path)
    assert archived.num_rows == res.rows == res.archived_rows == len(seeded.older_than(60))
    got = {r["id"]: r for r in archived.to_pylist()}
    assert set(got) == seeded.older_than(60)
    for i, r in got.items():
        # the archive has the rows as they were (coupon not yet nulled: delete and null are
        # separate actions over disjoint rows)
        assert r == before[i]
    # the archive folder is not mistaken for a lake dataset
    assert "archive" not in [t.name for t in p.store("lake").tables()]


def test_tokens_equal_the_masking_policys_tokens(seeded: Seeded) -> None:
    p = seeded.platform
    p.apply_policy(MASKING, source="policy.yaml", applied_by="test")
    masked_customers = rows(p, "app.customers", "id", who="bob")
    masked_events = rows(p, "lake.events", "event_id", who="bob")
    assert masked_customers[5]["email"].startswith("tok_")
    RetentionEngine(p).apply(POLICY, actor="ops")
    raw_customers = rows(p, "app.customers", "id")
    raw_events = rows(p, "lake.events", "event_id")
    tokenised = seeded.older_than(30) - seeded.older_than(100)
    assert tokenised
    for i, r in raw_customers.items():
        if i in tokenised:
            assert r["email"] == masked_customers[i]["email"]
        else:
            assert r["email"] == f"user{i}@example.com"
    for i, r in raw_events.items():
        assert r["ip"] == (masked_events[i]["ip"] if i in seeded.older_than(30) else f"10.0.0.{i}")


def test_dataset_hold_stops_every_action_on_it(seeded: Seeded) -> None:
    p = seeded.platform
    holds = LegalHolds(p)
    hold = holds.place(dataset="warehouse.*", reason="litigation 17", actor="legal")
    before = rows(p, "warehouse.orders", "id")
    engine = RetentionEngine(p)
    plan = engine.plan(POLICY, now=seeded.now)
    held = [a for a in plan.actions if a.dataset == "warehouse.orders"]
    assert [a.action for a in held] == ["held"] and held[0].holds == (hold.id,)
    assert "litigation 17" in (held[0].note or "")
    report = engine.apply(plan, actor="ops")
    assert report.result("warehouse.orders", "held").status == "held"
    assert rows(p, "warehouse.orders", "id") == before
    assert report.result("app.customers", "delete").rows == 11  # the others ran
    denied = p.audit.query(actor="ops")
    assert any(r.action == "retention" and r.decision == "deny" and "warehouse.orders" in r.datasets
               for r in denied)


def test_hold_placed_after_planning_is_respected(seeded: Seeded) -> None:
    p = seeded.platform
    engine = RetentionEngine(p)
    plan = engine.plan(POLICY, now=seeded.now)
    assert action(plan, "app.customers", "delete").rows == 11
    LegalHolds(p).place(dataset="app.customers", reason="late hold", actor="legal")
    report = engine.apply(plan, actor="ops")
    assert report.result("app.customers", "delete").status == "held"
    assert len(rows(p, "app.customers", "id")) == N


def test_subject_hold_keeps_that_subjects_rows(seeded: Seeded) -> None:
    p = seeded.platform
    LegalHolds(p).place(subject="customers.id=15", reason="subject access request", actor="legal")
    LegalHolds(p).place(subject="app.customers.id=5", reason="dispute", actor="legal")
    engine = RetentionEngine(p)
    plan = engine.plan(POLICY, now=seeded.now)
    assert action(plan, "app.customers", "delete").rows == 10  # 11 old, one held
    tok = action(plan, "app.customers", "tokenise", "email")
    assert tok.rows == len(seeded.older_than(30) - seeded.older_than(100)) - 1
    report = engine.apply(plan, actor="ops")
    after = rows(p, "app.customers", "id")
    assert 15 in after and after[15]["email"] == "user15@example.com"
    assert after[5]["email"] == "user5@example.com"
    assert report.result("app.customers", "delete").rows == 10
    # the hold is on customers only: the orders of customer 15 follow the orders' rule
    assert 15 not in rows(p, "warehouse.orders", "id")


def test_every_action_is_audited_without_values(seeded: Seeded) -> None:
    p = seeded.platform
    engine = RetentionEngine(p)
    plan = engine.plan(POLICY, now=seeded.now, actor="ops")
    report = engine.apply(plan, actor="ops")
    records = [r for r in p.audit.query(actor="ops") if r.action.startswith("retention")]
    assert records[0].action == "retention_plan"
    done = [r for r in records if r.action == "retention" and r.datasets]
    assert {(r.datasets[0], r.extra["action"]) for r in done} == {
        (a.dataset, a.action) for a in plan.runnable}
    for r in done:
        res = report.result(r.datasets[0], r.extra["action"], *r.columns)
        assert r.rows == res.rows
    delete = next(r for r in done if r.datasets[0] == "app.customers" and r.extra["action"] == "delete")
    assert delete.extra["archive"] and delete.extra["archived_rows"] == 11
    text = repr(records)
    assert "example.com" not in text and "10.0.0." not in text
    assert any(r.extra.get("summary") for r in records)
    assert p.audit.verify().ok


def test_unknown_columns_and_bad_archive_are_reported_not_applied(seeded: Seeded) -> None:
    p = seeded.platform
    text = """\
version: 1
rules:
  - dataset: app.customers
    by: no_such_column
    keep: 1d
  - dataset: warehouse.orders
    keep: 1d
    archive: app
  - dataset: lake.events
    columns: [missing]
    null_after: 1d
"""
    engine = RetentionEngine(p)
    plan = engine.plan(text, now=seeded.now)
    errors = [a for a in plan.actions if a.action == "error"]
    assert len(errors) == 3 and not plan.runnable
    assert any("no_such_column" in (a.note or "") for a in errors)
    assert any("Parquet" in (a.note or "") for a in errors)
    assert any("missing" in (a.note or "") and "retention" in (a.note or "") for a in errors)
    report = engine.apply(plan, actor="ops")
    assert {r.status for r in report.results} == {"skipped"}
    assert len(rows(p, "app.customers", "id")) == N


def test_tokenise_refuses_non_text_columns(platform: Platform) -> None:
    s = seed(platform)
    platform.catalog.set_tags("warehouse.orders", "amount", ["pii.money"])
    plan = RetentionEngine(platform).plan(
        "version: 1\nrules:\n  - tag: pii.money\n    tokenise_after: 1d\n", now=s.now)
    (a,) = plan.actions
    assert a.action == "error" and "not text" in (a.note or "")


def test_default_file_and_missing_file(platform: Platform) -> None:
    s = seed(platform)
    engine = RetentionEngine(platform)
    with pytest.raises(PolicyError, match="no retention file"):
        engine.plan()
    engine.default_file.write_text("version: 1\nrules:\n  - dataset: app.customers\n    keep: 100d\n")
    plan = engine.plan(now=s.now)
    assert plan.source == str(engine.default_file)
    assert action(plan, "app.customers", "delete").rows == 11


def test_date_and_timestamptz_columns(platform: Platform) -> None:
    now = dt.datetime.now(dt.UTC)
    platform.session("admin").write("warehouse.visits", pa.table({
        "id": [1, 2, 3],
        "day": pa.array([(now - dt.timedelta(days=d)).date() for d in (1, 40, 80)], pa.date32()),
        "at": pa.array([now - dt.timedelta(days=d) for d in (1, 40, 80)], pa.timestamp("us", tz="UTC")),
    }))
    engine = RetentionEngine(platform)
    by_day = engine.plan("version: 1\nrules:\n  - dataset: warehouse.visits\n    by: day\n    keep: 30d\n")
    by_at = engine.plan("version: 1\nrules:\n  - dataset: warehouse.visits\n    by: at\n    keep: 60d\n")
    assert action(by_day, "warehouse.visits", "delete").rows == 2
    assert action(by_at, "warehouse.visits", "delete").rows == 1
    assert engine.apply(by_at, actor="ops").result("warehouse.visits", "delete").rows == 1


def test_failed_archive_deletes_nothing(platform: Platform) -> None:
    s = seed(platform)
    lake = platform.store("lake")
    # a plain file where the archive folder should be: every archive write fails
    with lake.fs.open_output_stream(f"{lake.root}/archive") as f:  # type: ignore[attr-defined]
        f.write(b"not a folder")
    report = RetentionEngine(platform).apply(POLICY, actor="ops")
    res = report.result("app.customers", "delete")
    assert res.status == "failed" and "ArchiveError" in (res.error or "")
    assert not report.ok
    assert len(rows(platform, "app.customers", "id")) == N  # nothing deleted without its archive
    # actions that need no archive still ran
    assert report.result("warehouse.orders", "null", "coupon").status == "done"
    del s


def test_verify_archive_catches_a_short_file(platform: Platform) -> None:
    from headwater.retention._archive import ArchiveError, verify_archive

    lake = platform.store("lake")
    path = f"{lake.root}/archive/x/short.parquet"  # type: ignore[attr-defined]
    lake.fs.create_dir(path.rsplit("/", 1)[0], recursive=True)  # type: ignore[attr-defined]
    table = pa.table({"id": [1, 2, 3]})
    with lake.fs.open_output_stream(path) as f:  # type: ignore[attr-defined]
        pq.write_table(table.slice(0, 2), f)
    with pytest.raises(ArchiveError, match="holds 2 rows, 3 were written"):
        verify_archive(lake, path, 3, table.schema)
    with pytest.raises(ArchiveError, match="missing"):
        verify_archive(lake, f"{path}.gone", 3, table.schema)
    verify_archive(lake, path, 2, table.schema)


def test_erasure_reaches_archived_rows(seeded: Seeded) -> None:
    from headwater.retention import archive_files, erase_from_archives

    p = seeded.platform
    RetentionEngine(p).apply(POLICY, actor="ops")
    lake = p.store("lake")
    (path,) = archive_files(lake, "app.customers")
    assert 15 in read_archive(p, path).column("id").to_pylist()
    assert erase_from_archives(p, "app.customers", "ID", "15") == 1  # text value, cast to the column
    ids = read_archive(p, path).column("id").to_pylist()
    assert 15 not in ids and len(ids) == 10
    assert erase_from_archives(p, "app.customers", "id", 15) == 0
    assert erase_from_archives(p, "app.customers", "id", "not a number") == 0
    assert erase_from_archives(p, "warehouse.orders", "customer_id", 20) == 1
    assert archive_files(lake, "nothing.here") == []
