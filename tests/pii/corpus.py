"""The labelled PII set (Faker, several locales) and the adversarial look-alike set.

Shared by ``tests/pii`` and ``bench/pii_scan.py``. Everything is generated from a seed, so the
sets are the same on every run and nothing is downloaded.
"""

from __future__ import annotations

import base64
import random
import string
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from faker import Faker

LOCALES = ("en_US", "de_DE", "fr_FR", "en_GB", "ja_JP")
STRUCTURED = ("email", "phone", "ssn", "card", "iban", "ip", "dob", "secret")


@dataclass(frozen=True, slots=True)
class Sample:
    """A text with one labelled PII value at ``text[start:end]`` (``kind`` None: none)."""

    text: str
    kind: str | None
    start: int = 0
    end: int = 0


def _fakers(seed: int) -> dict[str, Faker]:
    out = {}
    for i, loc in enumerate(LOCALES):
        f = Faker(loc)
        f.seed_instance(seed + i)
        out[loc] = f
    return out


_TEMPLATES: dict[str, tuple[str, ...]] = {
    "email": ("Contact: {v}", "please write to {v} before Friday", "{v}", "Email {v}.", "メール: {v} まで",
              "Schreiben Sie an {v} bitte", "cc {v}; thanks"),
    "phone": ("Call me at {v}", "Tel: {v}", "phone {v} (mobile)", "Telefon: {v}", "Téléphone : {v}",
              "電話番号 {v}", "reach me on {v} after 5pm", "{v}", "Numéro {v}, merci"),
    "ssn": ("SSN {v}", "social security number: {v}", "{v} was on file", "ssn={v}", "Applicant {v} approved"),
    "card": ("card {v}", "paid with {v}", "{v}", "Kreditkarte: {v}", "CC# {v} exp 09/27", "charged {v} twice"),
    "iban": ("IBAN: {v}", "Überweisung an {v}", "{v}", "virement sur le compte {v}", "Please pay into {v}."),
    "ip": ("login from {v}", "{v} - - [10/Oct/2000:13:55:36 -0700] \"GET / HTTP/1.1\" 200",
           "client_ip={v}", "{v}", "blocked host {v} after 5 attempts"),
    "dob": ("DOB: {v}", "born {v}", "Date of birth {v}", "geboren am {v}", "né le {v} à Lyon",
            "生年月日: {v}", "birthday {v}", "Patient (dob {v}) admitted"),
    "secret": ("aws key {v}", "export TOKEN={v}", "{v}", "api_key: {v}", "password = {v}",
               "Authorization: Bearer {v}", "leaked {v} in the logs"),
}


def _rand(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _secret(rng: random.Random) -> str:
    alnum = string.ascii_letters + string.digits
    choice = rng.randrange(8)
    if choice == 0:
        return "AKIA" + _rand(rng, string.ascii_uppercase + string.digits, 16)
    if choice == 1:
        return "ghp_" + _rand(rng, alnum, 36)
    if choice == 2:
        return f"xoxb-{rng.randrange(10**11, 10**12)}-{rng.randrange(10**12, 10**13)}-{_rand(rng, alnum, 24)}"
    if choice == 3:
        return "sk_live_" + _rand(rng, alnum, 24)
    if choice == 4:
        return "hwk_" + _rand(rng, string.ascii_lowercase + string.digits, 12) + "." + _rand(rng, alnum + "_-", 43)
    if choice == 5:
        body = base64.b64encode(rng.randbytes(96)).decode()
        return f"-----BEGIN RSA PRIVATE KEY-----\n{body[:64]}\n{body[64:]}\n-----END RSA PRIVATE KEY-----"
    if choice == 6:
        return base64.urlsafe_b64encode(rng.randbytes(30)).decode().rstrip("=")
    # a random alphanumeric token of 32-40 characters (guaranteed all three classes)
    return _rand(rng, string.ascii_uppercase, 3) + _rand(rng, string.digits, 3) + _rand(rng, alnum, rng.randrange(26, 34))


def _dob(f: Faker, rng: random.Random, loc: str) -> str:
    d = f.date_of_birth(minimum_age=1, maximum_age=100)
    forms = {
        "en_US": ("%m/%d/%Y", "%B %d, %Y", "%Y-%m-%d"),
        "de_DE": ("%d.%m.%Y", "%Y-%m-%d"),
        "fr_FR": ("%d/%m/%Y", "%Y-%m-%d"),
        "en_GB": ("%d/%m/%Y", "%d %B %Y"),
        "ja_JP": ("%Y年%m月%d日", "%Y/%m/%d"),
    }[loc]
    return d.strftime(rng.choice(forms))


def _value(kind: str, f: Faker, rng: random.Random, loc: str) -> str:
    if kind == "email":
        return f.email()
    if kind == "phone":
        return f.phone_number()
    if kind == "ssn":
        return Faker("en_US").ssn() if loc != "en_US" else f.ssn()
    if kind == "card":
        number = f.credit_card_number()
        if rng.random() < 0.3 and len(number) == 16:
            number = " ".join(number[i:i + 4] for i in range(0, 16, 4))
        return number
    if kind == "iban":
        iban = f.iban()
        if rng.random() < 0.3:
            iban = " ".join(iban[i:i + 4] for i in range(0, len(iban), 4))
        return iban
    if kind == "ip":
        return rng.choice((f.ipv4, f.ipv6, f.ipv4_private, f.ipv4_public))()
    if kind == "dob":
        return _dob(f, rng, loc)
    if kind == "secret":
        return _secret(rng)
    raise ValueError(kind)


def labelled(n_per_kind: int = 200, *, seed: int = 7) -> list[Sample]:
    """``n_per_kind`` texts per structured kind, each holding one labelled value."""
    rng = random.Random(seed)
    fakers = _fakers(seed)
    out: list[Sample] = []
    for kind in STRUCTURED:
        for i in range(n_per_kind):
            loc = LOCALES[i % len(LOCALES)]
            if kind == "ssn":
                loc = "en_US"
            value = _value(kind, fakers[loc], rng, loc)
            template = rng.choice(_TEMPLATES[kind])
            start = template.index("{v}")
            text = template.replace("{v}", value)
            out.append(Sample(text, kind, start, start + len(value)))
    return out


def values_of(kind: str, n: int, *, seed: int = 11) -> list[str]:
    """Bare values of one kind (a structured column), across the locales."""
    rng = random.Random(seed)
    fakers = _fakers(seed)
    return [_value(kind, fakers[LOCALES[i % len(LOCALES)]], rng,
                   LOCALES[i % len(LOCALES)]) for i in range(n)]


def _luhn_digit(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def _isbn13(rng: random.Random) -> str:
    body = rng.choice(("978", "979")) + "".join(rng.choice(string.digits) for _ in range(9))
    check = (10 - sum(int(c) * (1 if i % 2 == 0 else 3) for i, c in enumerate(body)) % 10) % 10
    s = body + str(check)
    return f"{s[:3]}-{s[3]}-{s[4:8]}-{s[8:12]}-{s[12]}"


def _isbn10(rng: random.Random) -> str:
    body = "".join(rng.choice(string.digits) for _ in range(9))
    check = (11 - sum((10 - i) * int(c) for i, c in enumerate(body)) % 11) % 11
    c = "X" if check == 10 else str(check)
    return f"{body[0]}-{body[1:4]}-{body[4:9]}-{c}"


def lookalikes(n_per_group: int = 200, *, seed: int = 13) -> dict[str, list[str]]:
    """Texts that hold no PII but look like some: group name -> texts."""
    rng = random.Random(seed)
    f = Faker("en_US")
    f.seed_instance(seed)
    de = Faker("de_DE")
    de.seed_instance(seed)

    def ts() -> str:
        d = f.date_time_between(start_date="-5y", end_date="now")
        return rng.choice((
            d.strftime("%Y-%m-%dT%H:%M:%S") + f".{rng.randrange(1000):03d}Z",
            d.strftime("%Y-%m-%dT%H:%M:%S+02:00"),
            d.strftime("%Y-%m-%d %H:%M:%S"),
            d.strftime("%Y%m%d%H%M%S") + f"{rng.randrange(1000):03d}",
            d.strftime("%Y%m%d%H%M%S"),
            str(int(d.timestamp() * 1000)),
            d.strftime("[%Y-%m-%d %H:%M:%S,") + f"{rng.randrange(1000):03d}]",
            d.strftime("%Y-%m-%d"),
        ))

    def luhn_ts() -> str:
        # a compact timestamp whose digits happen to pass Luhn
        while True:
            d = f.date_time_between(start_date="-5y", end_date="now")
            body = d.strftime("%Y%m%d%H%M%S") + f"{rng.randrange(100):02d}"
            s = body + _luhn_digit(body)[:0]
            s = body[:-1] + _luhn_digit(body[:-1])
            if s[:8] == d.strftime("%Y%m%d"):
                return s

    def order() -> str:
        luhn_body = "4" + "".join(rng.choice(string.digits) for _ in range(14))
        return rng.choice((
            f"Order #{rng.randrange(10**7, 10**9)}",
            f"ORD-{rng.randrange(2019, 2026)}-{rng.randrange(10**6):06d}",
            f"order no. {luhn_body}{_luhn_digit(luhn_body)}",
            f"invoice INV-{rng.randrange(10**9):09d}",
            f"tracking 1Z{_rand(rng, string.ascii_uppercase + string.digits, 16)}",
            f"PO {rng.randrange(4500000000, 4600000000)}",
            f"Ticket #{rng.randrange(10**5, 10**7)} closed",
            f"ref: {rng.randrange(10**11, 10**12)}",
        ))

    def version() -> str:
        a, b, c, d = (rng.randrange(0, 20) for _ in range(4))
        return rng.choice((
            f"v{a}.{b}.{c}", f"version {a}.{b}.{c}", f"1.4.4.{rng.randrange(20200101, 20270101)}",
            f"release {a}.{b}.{c}.{d}", f"Python 3.{b}.{c}", f"build {a}.{b}.{c}.{d}",
            f"node v{a}.{b}.{c}", f"libfoo-{a}.{b}.{c}.tar.gz", f"upgraded to {a}.{b}.{c}-rc{d}",
            f"firmware {a}.{b}.{c}.{d}",
        ))

    def word() -> str:
        # (a person's name was here while names were not detected; it is PII now)
        return rng.choice((
            " ".join(w.capitalize() for w in f.words(rng.randrange(2, 6))),
            f.company(), f.city(), de.city(), f.catch_phrase(), f.sentence().title(),
            f"{f.day_of_week()} {f.month_name()}",
        ))

    def guid() -> str:
        u = uuid.UUID(int=rng.getrandbits(128), version=4)
        return rng.choice((f"request {u} failed", f"{u}".upper(), f"{{{u}}}", u.hex, f"id={u}"))

    def isbn() -> str:
        return rng.choice((f"ISBN {_isbn13(rng)}", _isbn13(rng), f"ISBN {_isbn10(rng)}",
                           f"ISBN-13: {_isbn13(rng).replace('-', '')}"))

    def other() -> str:
        return rng.choice((
            f"sha256:{rng.getrandbits(256):064x}", f"commit {rng.getrandbits(160):040x}",
            ":".join(f"{rng.randrange(256):02X}" for _ in range(6)),
            f"${rng.randrange(1, 99999):,}.{rng.randrange(100):02d}",
            f"{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}",
            f"{rng.uniform(-90, 90):.4f}, {rng.uniform(-180, 180):.4f}",
            f"/var/lib/{f.word()}/{f.word()}_{rng.randrange(100)}.log",
            f"https://{f.domain_name()}/{f.uri_path()}",
            f"qty {rng.randrange(1, 500)} @ {rng.randrange(1, 900)}.{rng.randrange(100):02d} EUR",
        ))

    groups: dict[str, Callable[[], str]] = {
        "guid": guid, "timestamp": ts, "luhn_timestamp": luhn_ts, "order_number": order,
        "isbn": isbn, "capitalised_words": word, "version": version, "other": other,
    }
    return {name: [make() for _ in range(n_per_group)] for name, make in groups.items()}


def evaluate(samples: list[Sample], lookalike_groups: dict[str, list[str]],
             detect: Callable[[str], list[tuple[str, int, int]]]) -> dict[str, object]:
    """Precision/recall per kind on ``samples`` and false-positive rate on the look-alikes.

    ``detect(text)`` returns ``(kind, start, end)`` triples. A finding is a true positive when
    its kind is the label and it overlaps the labelled span; any other finding is a false
    positive of its kind.
    """
    tp: dict[str, int] = dict.fromkeys(STRUCTURED, 0)
    fp: dict[str, int] = dict.fromkeys(STRUCTURED, 0)
    fn: dict[str, int] = dict.fromkeys(STRUCTURED, 0)
    misses: dict[str, list[str]] = {k: [] for k in STRUCTURED}
    for s in samples:
        hit = False
        for kind, start, end in detect(s.text):
            if kind not in tp:
                continue
            if kind == s.kind and start < s.end and s.start < end and not hit:
                tp[kind] += 1
                hit = True
            elif not (kind == s.kind and start < s.end and s.start < end):
                fp[kind] += 1
        if s.kind and not hit:
            fn[s.kind] += 1
            misses[s.kind].append(s.text)
    per_kind = {}
    for k in STRUCTURED:
        p = tp[k] / (tp[k] + fp[k]) if tp[k] + fp[k] else 1.0
        r = tp[k] / (tp[k] + fn[k]) if tp[k] + fn[k] else 1.0
        per_kind[k] = {"precision": round(p, 4), "recall": round(r, 4), "tp": tp[k], "fp": fp[k], "fn": fn[k]}
    fp_groups = {}
    flagged_total = 0
    total = 0
    flagged_examples: list[str] = []
    for name, texts in lookalike_groups.items():
        flagged = [t for t in texts if detect(t)]
        fp_groups[name] = round(len(flagged) / len(texts), 4)
        flagged_total += len(flagged)
        total += len(texts)
        flagged_examples.extend(flagged[:3])
    return {"per_kind": per_kind, "fp_rate": round(flagged_total / total, 4), "fp_by_group": fp_groups,
            "misses": misses, "flagged": flagged_examples}
