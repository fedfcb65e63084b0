"""scan_dataset on an embedded platform, then apply_proposals into the catalog."""

from __future__ import annotations

import pyarrow as pa
import pytest

from headwater import Config, Platform
from headwater.errors import DatasetNotFound, InvalidInput
from headwater.pii import apply_proposals, scan_dataset
from tests.pii.corpus import values_of

N = 600


@pytest.fixture
def hw(tmp_path):
    p = Platform.open(Config.embedded(tmp_path))
    try:
        yield p
    finally:
        p.close()


def _customers() -> pa.Table:
    return pa.table({
        "id": pa.array(range(N), pa.int64()),
        "contact": values_of("email", N),
        "phone_number": values_of("phone", N),
        "ssn": values_of("ssn", N),
        "card": values_of("card", N),
        "iban": values_of("iban", N),
        "last_ip": values_of("ip", N),
        "birth_date": values_of("dob", N),
        "first_name": [f"Name{i}" for i in range(N)],
        "status": ["active", "closed"] * (N // 2),
        "order_ref": [f"ORD-2024-{i:06d}" for i in range(N)],
        "payload": pa.array([bytes([i % 256, 255, 0]) for i in range(N)], pa.binary()),
    })


def test_scan_and_apply(hw: Platform) -> None:
    session = hw.session("alice")
    session.write("warehouse.customers", _customers())
    report = scan_dataset(session, "warehouse.customers", sample=500)
    assert report.rows_sampled == 500
    by_col = {c.name: c for c in report.columns}
    expected = {"contact": "pii.email", "phone_number": "pii.phone", "ssn": "pii.ssn", "card": "pii.card",
                "iban": "pii.iban", "last_ip": "pii.ip", "birth_date": "pii.dob", "first_name": "pii.name"}
    for col, tag in expected.items():
        top = by_col[col].proposals[0]
        assert top.tag == tag and top.confidence >= 0.8, (col, by_col[col].proposals)
    for col in ("id", "status", "order_ref"):
        assert all(p.confidence < 0.8 for p in by_col[col].proposals), (col, by_col[col].proposals)
    assert report.unreadable == ["payload"]
    assert by_col["payload"].unreadable_reasons == {"binary": 500}
    doc = report.to_dict()
    assert doc["bytes_scanned"] > 0
    assert "@" not in repr(doc)  # counts, never values

    applied = apply_proposals(hw.catalog, report)
    assert {c: tags[0] for c, tags in applied.items()} == expected
    ds = hw.catalog.get("warehouse.customers")
    for col, tag in expected.items():
        assert tag in ds.column(col).tags
    assert ds.column("status").tags == ()
    assert [c.name for c in ds.tagged("pii.*")] == [c for c in ds.column_names if c in expected]


def test_apply_respects_threshold_and_keeps_tags(hw: Platform) -> None:
    session = hw.session("alice")
    session.write("app.people", pa.table({"email": values_of("email", 50), "name": ["x"] * 50}))
    hw.catalog.set_tags("app.people", "email", ["owner.crm"])
    report = scan_dataset(session, "app.people")
    assert apply_proposals(hw.catalog, report, min_confidence=0.999) == {}
    applied = apply_proposals(hw.catalog, report, columns=["email"])
    assert applied == {"email": ["pii.email"]}
    assert hw.catalog.get("app.people").column("email").tags == ("owner.crm", "pii.email")


def test_scan_errors(hw: Platform) -> None:
    session = hw.session("alice")
    with pytest.raises(DatasetNotFound):
        scan_dataset(session, "warehouse.nope")
    session.write("warehouse.t", pa.table({"a": [1]}))
    with pytest.raises(InvalidInput):
        scan_dataset(session, "warehouse.t", sample=0)


def test_unreadable_column_is_reported_not_skipped(hw: Platform, monkeypatch) -> None:
    from headwater.errors import QueryError

    session = hw.session("alice")
    session.write("warehouse.mixed", pa.table({"email": values_of("email", 30), "broken": ["x"] * 30}))
    real = type(session).sql

    def flaky(self, query, *args, **kwargs):
        if "*" in query or "broken" in query:
            raise QueryError("the store could not decode this column")
        return real(self, query, *args, **kwargs)

    monkeypatch.setattr(type(session), "sql", flaky)
    report = scan_dataset(session, "warehouse.mixed")
    assert report.error is not None
    assert report.unreadable == ["broken"]
    broken = next(c for c in report.columns if c.name == "broken")
    assert "QueryError" in broken.error
    assert report.columns[0].proposals[0].tag == "pii.email"
