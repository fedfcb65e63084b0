"""Column classification: value detection rate plus name evidence; bad values never crash."""

from __future__ import annotations

import datetime as dt
import random

import pyarrow as pa
import pytest

from headwater.pii import classify_column, inspect_column
from tests.pii.corpus import STRUCTURED, lookalikes, values_of


def _top(proposals):
    return proposals[0].tag if proposals else None


@pytest.mark.parametrize("kind", STRUCTURED)
def test_structured_columns_are_classified(kind: str) -> None:
    values = values_of(kind, 2000)
    # dates alone are not birth dates: a dob column needs its name
    name = "date_of_birth" if kind == "dob" else "col_a"
    proposals = classify_column(name, pa.array(values))
    assert _top(proposals) == f"pii.{kind}", proposals
    assert proposals[0].confidence >= 0.8
    assert proposals[0].sampled == 1000  # the default bound


@pytest.mark.parametrize("kind", STRUCTURED)
def test_name_evidence_raises_confidence(kind: str) -> None:
    values = values_of(kind, 300)
    names = {"email": "email", "phone": "mobile_phone", "ssn": "ssn", "card": "cc_number", "iban": "iban",
             "ip": "client_ip", "dob": "dob", "secret": "api_key"}
    with_name = classify_column(names[kind], values)
    assert with_name[0].tag == f"pii.{kind}" and "name" in with_name[0].evidence
    if kind != "dob":
        plain = classify_column("value", values)
        assert with_name[0].confidence >= plain[0].confidence


@pytest.mark.parametrize("group", sorted(lookalikes(1)))
def test_lookalike_columns_get_no_confident_proposal(group: str) -> None:
    values = lookalikes(400, seed=5)[group]
    proposals = classify_column("col_b", values)
    assert all(p.confidence < 0.5 for p in proposals), proposals


def test_name_columns_from_name_evidence_only() -> None:
    assert classify_column("first_name", ["Ann", "Bob"])[0].tag == "pii.name"
    assert classify_column("customerName", ["Ann"])[0].confidence >= 0.8
    assert classify_column("product_name", ["Chair"]) == []
    assert classify_column("file_name", ["a.txt"]) == []
    assert classify_column("name", ["x"])[0].confidence < 0.8  # bare "name" is ambiguous
    assert classify_column("email_verified", [True, False]) == []


def test_name_only_evidence_is_weak_and_contradicted_values_weaker() -> None:
    (empty,) = classify_column("email", [])
    assert empty.evidence == "name" and empty.confidence < 0.8
    (contradicted,) = classify_column("email", ["n/a"] * 100)
    assert contradicted.confidence < empty.confidence


def test_free_text_column_with_some_pii() -> None:
    rng = random.Random(1)
    texts = [f"ticket {i}: please call me back" if rng.random() < 0.6 else f"write to user{i}@example.com please"
             for i in range(500)]
    proposals = classify_column("notes", texts)
    assert proposals and proposals[0].tag == "pii.email"
    assert 0.2 < proposals[0].matches / proposals[0].sampled < 0.6


def test_date_columns_need_a_birth_name() -> None:
    dates = pa.array([dt.date(1950, 1, 1) + dt.timedelta(days=37 * i) for i in range(500)])
    assert classify_column("created_on", dates) == []
    (dob,) = classify_column("birth_date", dates)
    assert dob.tag == "pii.dob" and dob.confidence >= 0.9
    ts = pa.array([dt.datetime(1980, 5, 1, 0, 0)] * 10, pa.timestamp("us"))
    assert classify_column("dob", ts)[0].tag == "pii.dob"


def test_integer_card_and_ssn_columns() -> None:
    cards = pa.array([4111111111111111, 5555555555554444, 378282246310005] * 50, pa.int64())
    assert classify_column("x", cards)[0].tag == "pii.card"


def test_never_stores_values() -> None:
    report = inspect_column("contact", ["ann@example.org", "bob@example.org"])
    assert "example" not in repr(report)


def test_bad_values_are_counted_not_raised() -> None:
    values = ["ann@example.org", b"\xff\xfe\x00binary", "x" * 200_000, "bad \udcff surrogate",
              b"caf\xe9 latin-1", object(), None, 3.5, "bob@example.org"]
    report = inspect_column("email", values)
    assert report.unreadable == 5
    assert report.unreadable_reasons == {"binary": 2, "oversized": 1, "encoding": 1, "unsupported": 1}
    assert report.nulls == 1
    assert report.proposals[0].tag == "pii.email"


def test_binary_and_unsupported_arrow_columns() -> None:
    ok = inspect_column("blob", pa.array([b"ann@example.org", b"bob@example.org"], pa.binary()))
    assert ok.unreadable == 0 and ok.proposals[0].tag == "pii.email"
    mixed = inspect_column("blob", pa.array([b"\xff\x00", b"ann@example.org"], pa.binary()))
    assert mixed.unreadable == 1 and mixed.readable == 1
    nested = inspect_column("tags", pa.array([[1, 2], [3]]))
    assert nested.is_unreadable and nested.unreadable == 2
    structs = inspect_column("s", pa.array([{"a": 1}]))
    assert structs.is_unreadable
    allbinary = inspect_column("raw", pa.array([bytes(range(256))] * 20, pa.large_binary()))
    assert allbinary.is_unreadable and allbinary.unreadable_reasons == {"binary": 20}
    huge = inspect_column("doc", pa.array(["a" * 100_000, "ann@example.org"]))
    assert huge.unreadable_reasons == {"oversized": 1}


def test_sample_bounds_values_examined() -> None:
    values = pa.chunked_array([pa.array(values_of("email", 3000)), pa.array(values_of("email", 3000, seed=2))])
    report = inspect_column("e", values, sample=500)
    assert report.sampled == 500
    assert report.proposals[0].matches == 500
    dictionary = pa.array(values_of("ip", 100)).dictionary_encode()
    assert classify_column("x", dictionary)[0].tag == "pii.ip"
