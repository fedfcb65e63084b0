"""Column classification: value detection rate plus name evidence; bad values never crash."""

from __future__ import annotations

import datetime as dt
import random
import re
import string

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from headwater.pii import _classify as fast
from headwater.pii import classify_column, inspect_column
from headwater.pii._validators import card_issuer, iban_valid, luhn_valid
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


# -- the vectorised column path -------------------------------------------------------------------
# (private helpers: these check that the fast path decides exactly what the validators decide)


def _odd_values(rng: random.Random, n: int) -> list[str | None]:
    """Short strings over a mixed alphabet (ASCII classes, whitespace, non-ASCII), some empty/None."""
    alphabet = string.ascii_letters + string.digits + " .-:@+/_()=%,#\t\n\u00e9\u5e74\u2014\u00a0"
    out: list[str | None] = []
    for _ in range(n):
        r = rng.random()
        out.append(None if r < 0.05 else "" if r < 0.1 else "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 30))))
    return out


def _corpus() -> list[str | None]:
    rng = random.Random(17)
    values: list[str | None] = [v for kind in STRUCTURED for v in values_of(kind, 150, seed=3)]
    values += [v for texts in lookalikes(60, seed=3).values() for v in texts]
    values += _odd_values(rng, 1500)
    # mutations of real values: a character dropped, doubled or swapped for another class
    for v in [v for kind in STRUCTURED for v in values_of(kind, 40, seed=4)]:
        i = rng.randrange(len(v))
        values += [v[:i] + v[i + 1:], v[:i] + v[i] + v[i:], v[:i] + rng.choice("x -.:9Z") + v[i + 1:]]
    return values


def test_byte_features_match_python() -> None:
    values = _corpus()
    arr = pa.array(["pad"] + values, pa.large_string()).slice(1)  # a sliced array: offset != 0
    f = fast._features(arr)
    for i, v in enumerate(values):
        b = (v or "").encode()
        assert f.present[i] == bool(v)
        if not v:
            continue
        assert f.nbytes[i] == len(b) and f.digits[i] == sum(48 <= c <= 57 for c in b)
        assert f.first[i] == b[0] and f.last[i] == b[-1]
        assert f.classes[i] == np.bitwise_or.reduce(fast._BYTE_CLASS[np.frombuffer(b, np.uint8)])


@pytest.mark.parametrize("stage, pattern", [
    ("email", fast._RE_EMAIL), ("email", fast._RE_EMAIL_EXACT), ("iban", "(?i)" + fast._RE_IBAN_SHAPE),
    ("ssn", fast._RE_SSN), ("card", fast._RE_CARD_SHAPE), ("ipv4", fast._RE_IPV4), ("ipv6", fast._RE_IPV6),
    ("date", fast._RE_DATE), ("phone", fast._RE_PHONE), ("token", fast._RE_TOKEN_EXACT),
    ("text", fast._RE_WORDS), ("secret", fast._RE_SECRET_EXACT),
])
def test_prefilters_never_drop_a_match(stage: str, pattern: str) -> None:
    values = _corpus()
    arr = pa.array(values, pa.large_string())
    matches = pc.fill_null(pc.match_substring_regex(arr, pattern), False).to_numpy(zero_copy_only=False)
    admitted = fast._prefilter(stage, fast._features(arr))
    assert matches.any()
    missed = [values[i] for i in np.flatnonzero(matches & ~admitted)]
    assert not missed, missed[:5]
    assert admitted.sum() < len(values)  # and it does reject something


def test_secret_families_cover_the_exact_pattern() -> None:
    values = [v for v in _corpus() if v] + ["ghp_" + "a1B" * 84, "ghp_" + "a1B" * 86, "xoxb-" + "a" * 250,
                                            "xoxb-" + "a" * 251, "-----BEGIN EC PRIVATE KEY-----\nabc"]
    exact = re.compile(fast._RE_SECRET_EXACT)
    text = fast._read(values, 0, 0)
    counts, _ = fast._match_stages(text.arr, fast._features(text.arr), {}, ("US",), 128, len(values))
    expected = sum(1 for v in values if exact.fullmatch(v))
    assert expected > 100 and counts.get("secret", 0) >= expected  # + unprefixed tokens
    prefixed = [v for v in values if exact.fullmatch(v)]
    text = fast._read(prefixed + ["ghp_" + "a1B" * 86], 0, 0)  # 262 bytes: over the bound
    counts, _ = fast._match_stages(text.arr, fast._features(text.arr), {}, ("US",), 128, len(prefixed) + 1)
    assert counts["secret"] == len(prefixed)


def test_vectorised_card_and_iban_checks_agree_with_validators() -> None:
    rng = random.Random(5)
    cards = [re.sub(r"\D", "", v) for v in values_of("card", 2000, seed=8)]
    cards += [str(rng.randrange(10 ** (n - 1), 10 ** n)) for n in range(12, 20) for _ in range(300)]
    got = fast._cards_many(pa.array(cards, pa.large_string()))
    assert got.tolist() == [luhn_valid(c) and card_issuer(c) is not None for c in cards]
    assert 0 < got.sum() < len(cards)
    ibans = [v.replace(" ", "") for v in values_of("iban", 2000, seed=8)]
    ibans += [v[:-2] + f"{rng.randrange(100):02d}" for v in ibans[:1000]]  # mostly broken check
    ibans += ["GB82WEST12345698765432", "MT84MALT011000012345MTLCAST001S", "LC55HEMM000100010012001200023015"]
    got = fast._mod97_many(pa.array(ibans, pa.large_string()), np.arange(len(ibans)))
    assert got.tolist() == [iban_valid(v) for v in ibans]


def test_column_counts_match_per_value_validators() -> None:
    rng = random.Random(9)
    cards = values_of("card", 3000, seed=12)
    cards = [c if rng.random() < 0.7 else c[:-1] + str((int(c[-1]) + 1) % 10) for c in cards]
    report = inspect_column("x", pa.array(cards), sample=0)
    digits = [re.sub(r"[ -]", "", c) for c in cards]
    want = sum(1 for c, d in zip(cards, digits, strict=True)
               if re.fullmatch(fast._RE_CARD_SHAPE, c) and luhn_valid(d) and card_issuer(d))
    assert next(p for p in report.proposals if p.tag == "pii.card").matches == want
    ibans = values_of("iban", 3000, seed=12)
    ibans = [v if rng.random() < 0.6 else v[:-1] + str((int(v[-1]) + 3) % 10) for v in ibans]
    report = inspect_column("x", pa.array(ibans), sample=0)
    want = sum(1 for v in ibans if iban_valid(v.replace(" ", "").upper()))
    assert next(p for p in report.proposals if p.tag == "pii.iban").matches == want


def test_validation_stops_early_with_a_bounded_error() -> None:
    calls: list[int] = []

    def always(i: int) -> bool:
        calls.append(i)
        return True

    rows = np.arange(10_000)
    n, est = fast._validate_some(rows, always, 128, 10_000)
    assert est and n == 10_000 and len(calls) == 40  # Wilson half-width of 40/40 < 0.05
    calls.clear()
    n, est = fast._validate_some(rows[:3000], always, 128, 10_000)  # 30% of the column
    assert est and n == 3000 and len(calls) == 8
    calls.clear()
    n, est = fast._validate_some(rows[:400], always, 128, 10_000)  # 4%: one value says enough
    assert est and n == 400 and len(calls) == 1
    calls.clear()
    n, est = fast._validate_some(rows[:6], always, 128, 10_000)
    assert not est and n == 6 and len(calls) == 6  # all of them: exact
    for rate in (0.1, 0.5, 0.9):
        hits = np.random.default_rng(1).random(10_000) < rate
        n, est = fast._validate_some(rows, lambda i, hits=hits: hits[i], 128, 10_000)
        assert est and abs(n / 10_000 - hits.mean()) < 0.1


def test_isbn_columns_are_not_phones() -> None:
    isbns = ["978-3-16-148410-0", "979-10-90636-07-1", "0-306-40615-2", "1-84356-028-3"] * 50
    assert classify_column("col", isbns) == []
    phones = values_of("phone", 400, seed=21)
    assert classify_column("col", phones)[0].tag == "pii.phone"


def test_iban_column_matches_the_shape_pattern_and_validator() -> None:
    rng = random.Random(23)
    values = []
    for v in values_of("iban", 1500, seed=31):
        compact = v.replace(" ", "")
        r = rng.random()
        if r < 0.15:
            v = compact.lower()
        elif r < 0.3:
            v = compact[:2] + " " + compact[2:]  # a space inside the first four characters
        elif r < 0.45:
            v = compact[:8] + "  " + compact[8:]  # two spaces in a row
        elif r < 0.55:
            v = compact[:4] + " " + compact[4:]  # a space right after the check digits: allowed
        elif r < 0.65:
            v = "ZZ" + compact[2:]  # no such country
        elif r < 0.75:
            v = compact[:-1]  # wrong length
        values.append(v)
    shape = re.compile(fast._RE_IBAN_SHAPE)

    def valid(v: str) -> bool:
        upper = v.upper()
        return bool(shape.fullmatch(upper)) and iban_valid(upper.replace(" ", ""))

    report = inspect_column("x", pa.array(values), sample=0)
    want = sum(valid(v) for v in values)
    assert 300 < want < 1500
    assert next(p for p in report.proposals if p.tag == "pii.iban").matches == want


def test_card_column_matches_the_shape_pattern_and_validators() -> None:
    rng = random.Random(29)
    values = []
    for v in values_of("card", 1500, seed=41):
        d = re.sub(r"\D", "", v)
        r = rng.random()
        if r < 0.15:
            v = " ".join(d[i:i + 4] for i in range(0, len(d), 4))
        elif r < 0.3:
            v = "-".join(d[i:i + 4] for i in range(0, len(d), 4))
        elif r < 0.4:
            v = d[:4] + "  " + d[4:]  # two separators in a row
        elif r < 0.5:
            v = d[:4] + " -" + d[4:]
        elif r < 0.6:
            v = "-" + d  # a separator first
        elif r < 0.7:
            v = d[:6] + "-" + d[6:10] + " " + d[10:]  # mixed single separators: the shape allows them
        values.append(v)
    shape = re.compile(fast._RE_CARD_SHAPE)

    def valid(v: str) -> bool:
        d = re.sub(r"[ -]", "", v)
        return bool(shape.fullmatch(v)) and luhn_valid(d) and card_issuer(d) is not None

    want = sum(valid(v) for v in values)
    assert 500 < want < 1500
    report = inspect_column("x", pa.array(values), sample=0)
    assert next(p for p in report.proposals if p.tag == "pii.card").matches == want
