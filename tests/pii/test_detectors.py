"""Detectors on the labelled Faker set and the look-alike set; validators; redaction."""

from __future__ import annotations

import pytest

from headwater.errors import InvalidInput
from headwater.pii import detect, redact_pii
from headwater.pii._validators import (
    card_issuer,
    iban_valid,
    luhn_valid,
    parse_birth_date,
    ssn_valid,
)
from tests.pii.corpus import STRUCTURED, evaluate, labelled, lookalikes


@pytest.fixture(scope="module")
def scores() -> dict:
    return evaluate(labelled(300), lookalikes(250),
                    lambda t: [(f.kind, f.start, f.end) for f in detect(t)])


@pytest.mark.parametrize("kind", STRUCTURED)
def test_precision_and_recall_per_kind(scores: dict, kind: str) -> None:
    s = scores["per_kind"][kind]
    assert s["precision"] >= 0.95, (kind, s, scores["misses"][kind][:5])
    assert s["recall"] >= 0.95, (kind, s, scores["misses"][kind][:5])


def test_false_positive_rate_on_lookalikes(scores: dict) -> None:
    assert scores["fp_rate"] <= 0.01, (scores["fp_by_group"], scores["flagged"][:10])
    for group, rate in scores["fp_by_group"].items():
        assert rate <= 0.02, (group, rate)


@pytest.mark.parametrize("text", [
    "request 123e4567-e89b-12d3-a456-426614174000 failed",
    "at 2023-10-05T14:48:00.000Z",
    "20231005144800123",
    "order no. 4539578763621486",
    "ISBN 978-3-16-148410-0",
    "ISBN 0-306-40615-2",
    "Paris Monday Apple Inc.",
    "version 1.2.3.4",
    "Python 3.11.2",
    "sha256:" + "ab" * 32,
    "00:1A:2B:3C:4D:5E",
    "-78.1197, 177.1966",
])
def test_lookalikes_are_not_pii(text: str) -> None:
    assert detect(text) == []


def test_validators() -> None:
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert card_issuer("4111111111111111") == "visa"
    assert card_issuer("378282246310005") == "amex"
    assert card_issuer("5555555555554444") == "mastercard"
    assert card_issuer("9111111111111111") is None
    assert card_issuer("41111111111111") is None  # visa has no 14-digit numbers
    assert ssn_valid("123", "45", "6789")
    for area, group, serial in (("000", "12", "3456"), ("666", "12", "3456"), ("900", "12", "3456"),
                                ("123", "00", "4567"), ("123", "45", "0000")):
        assert not ssn_valid(area, group, serial)
    assert iban_valid("DE89370400440532013000") and iban_valid("GB82WEST12345698765432")
    assert not iban_valid("DE89370400440532013001")
    assert not iban_valid("DE8937040044053201300")  # wrong length for DE
    assert parse_birth_date("12.03.1985") is not None
    assert parse_birth_date("1985年3月12日") is not None
    assert parse_birth_date("2999-01-01") is None
    assert parse_birth_date("1985-13-40") is None


@pytest.mark.parametrize("text, kind", [
    ("SSN 123-45-6789", "ssn"),
    ("SSN 666-45-6789", None),
    ("SSN 123-00-6789", None),
    ("card 4111 1111 1111 1111", "card"),
    ("card 4111 1111 1111 1112", None),
    ("IBAN DE89 3704 0044 0532 0130 00", "iban"),
    ("IBAN DE89 3704 0044 0532 0130 01", None),
    ("host 10.0.0.256", None),
    ("host 2001:db8::8a2e:370:7334", "ip"),
    ("born 1985-03-12", "dob"),
    ("shipped 1985-03-12", None),
    ("key AKIAIOSFODNN7EXAMPLE", "secret"),
    ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----", "secret"),
    ("call +44 20 7946 0958", "phone"),
    ("Order 2079460958 shipped", None),
])
def test_single_cases(text: str, kind: str | None) -> None:
    kinds = [f.kind for f in detect(text)]
    assert kinds == ([kind] if kind else []), kinds


def test_findings_have_confidence_and_no_values() -> None:
    (f,) = detect("mail ann@example.org")
    assert 0 < f.confidence <= 1 and f.tag == "pii.email"
    assert not any("ann" in str(v) for v in (f.kind, f.start, f.end, f.confidence))


def test_context_raises_confidence() -> None:
    (plain,) = detect("paid 4111111111111111")
    (ctx,) = detect("visa card 4111111111111111")
    assert ctx.confidence > plain.confidence


def test_unknown_kind_is_invalid_input() -> None:
    with pytest.raises(InvalidInput):
        detect("x", kinds=["no_such_kind"])


@pytest.mark.parametrize("text, expected", [
    ("Mail john.doe@example.com or call (591) 341-7776.", "Mail <EMAIL> or call <PHONE>."),
    ("SSN: 123-45-6789, card 4111-1111-1111-1111", "SSN: <SSN>, card <CARD>"),
    ("IBAN GB82 WEST 1234 5698 7654 32 please", "IBAN <IBAN> please"),
    ("from 192.168.1.20 at 2023-10-05T14:48:00Z", "from <IP> at 2023-10-05T14:48:00Z"),
    ("DOB: 12/03/1985, order #4111111111111111", "DOB: <DOB>, order #4111111111111111"),
    ("token=ghp_abcdefghijklmnopqrstuvwxyz0123456789 ok", "token=<SECRET> ok"),
    ("nothing here, Paris, v1.2.3", "nothing here, Paris, v1.2.3"),
    ("", ""),
])
def test_redact_pii(text: str, expected: str) -> None:
    assert redact_pii(text) == expected


def test_redact_pii_keeps_none_and_unicode() -> None:
    assert redact_pii(None) is None
    assert redact_pii("Grüße an jörg@example.de — 电话 +81 3-1234-5678") == "Grüße an <EMAIL> — 电话 <PHONE>"
    assert redact_pii("a@b.co", placeholders={"email": "[x]"}) == "[x]"


def test_redact_pii_on_huge_and_binaryish_text() -> None:
    text = ("lorem ipsum " * 50_000) + "x@example.com" + "\x00\ufffd" * 10
    out = redact_pii(text)
    assert out.endswith("<EMAIL>" + "\x00\ufffd" * 10)
