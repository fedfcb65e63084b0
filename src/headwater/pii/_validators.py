"""Validators behind the detectors: checksums, issuer tables, number rules, entropy.

A regex only finds candidates; these functions decide. They take the candidate text (never
log or keep it) and return a bool or a small verdict.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import math
import re
from collections import Counter
from functools import lru_cache

__all__ = [
    "IBAN_LENGTHS",
    "card_issuer",
    "iban_valid",
    "ip_version",
    "isbn_valid",
    "luhn_valid",
    "parse_birth_date",
    "phone_possible",
    "phone_verdict",
    "shannon_entropy",
    "ssn_valid",
]

# -- payment cards ------------------------------------------------------------------------
_CARD_ISSUERS: tuple[tuple[str, tuple[tuple[int, int], ...], frozenset[int]], ...] = (
    # (issuer, inclusive prefix ranges compared on the same number of leading digits, lengths)
    ("amex", ((34, 34), (37, 37)), frozenset({15})),
    ("visa", ((4, 4),), frozenset({13, 16, 19})),
    ("mastercard", ((51, 55), (2221, 2720)), frozenset({16})),
    ("discover", ((6011, 6011), (644, 649), (65, 65), (622126, 622925)), frozenset(range(16, 20))),
    # JCB's assigned block is 3528-3589; 3500-3527 is taken too: no other issuer uses it and
    # generators (Faker's jcb16) emit it.
    ("jcb", ((3500, 3589),), frozenset(range(16, 20))),
    ("jcb", ((2131, 2131), (1800, 1800)), frozenset({15})),
    ("diners", ((300, 305), (309, 309), (36, 36), (38, 39)), frozenset(range(14, 20))),
    ("unionpay", ((62, 62),), frozenset(range(16, 20))),
    ("maestro", ((50, 50), (56, 69), (6304, 6304), (6759, 6759), (6761, 6763)), frozenset(range(12, 20))),
    ("mir", ((2200, 2204),), frozenset(range(16, 20))),
)


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check over a string of ASCII digits."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i & 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def card_issuer(digits: str) -> str | None:
    """The issuer whose prefix range and length fit ``digits`` (Luhn not checked), else None."""
    n = len(digits)
    for issuer, ranges, lengths in _CARD_ISSUERS:
        if n not in lengths:
            continue
        for lo, hi in ranges:
            width = len(str(lo))
            if lo <= int(digits[:width]) <= hi:
                return issuer
    return None


# -- US social security numbers --------------------------------------------------------------
def ssn_valid(area: str, group: str, serial: str) -> bool:
    """SSA rules: area not 000, 666 or 900-999; group not 00; serial not 0000."""
    if len(area) != 3 or len(group) != 2 or len(serial) != 4:
        return False
    a = int(area)
    return a != 0 and a != 666 and a < 900 and group != "00" and serial != "0000"


# -- IBAN ---------------------------------------------------------------------------------------
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32,
    "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24,
    "PL": 28, "PS": 29, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31, "SD": 18,
    "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28, "TL": 23, "TN": 24,
    "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}
"""IBAN length per country (SWIFT IBAN registry)."""


def iban_valid(iban: str) -> bool:
    """Country length and the ISO 7064 mod-97 check (``iban`` without spaces, upper case)."""
    if IBAN_LENGTHS.get(iban[:2]) != len(iban) or not iban[2:4].isdigit() or not iban.isalnum():
        return False
    rearranged = iban[4:] + iban[:4]
    remainder = 0
    for ch in rearranged:
        if "0" <= ch <= "9":
            remainder = (remainder * 10 + ord(ch) - 48) % 97
        elif "A" <= ch <= "Z":
            remainder = (remainder * 100 + ord(ch) - 55) % 97
        else:
            return False
    return remainder == 1


# -- IP addresses -------------------------------------------------------------------------------
def ip_version(text: str) -> int | None:
    """4 or 6 when ``text`` is an IP address (``ipaddress`` rules: no leading zeros), else None."""
    try:
        return ipaddress.ip_address(text).version
    except ValueError:
        return None


# -- ISBN (a look-alike to reject) --------------------------------------------------------------
def isbn_valid(text: str) -> bool:
    """ISBN-10 or ISBN-13 check digit over ``text`` with hyphens/spaces removed."""
    s = re.sub(r"[\s-]", "", text).upper()
    if len(s) == 10 and s[:9].isdigit() and (s[9].isdigit() or s[9] == "X"):
        total = sum((10 - i) * int(c) for i, c in enumerate(s[:9])) + (10 if s[9] == "X" else int(s[9]))
        return total % 11 == 0
    if len(s) == 13 and s.isdigit() and s[:3] in ("978", "979"):
        total = sum(int(c) * (1 if i % 2 == 0 else 3) for i, c in enumerate(s))
        return total % 10 == 0
    return False


# -- phone numbers ------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _phonenumbers():  # type: ignore[no-untyped-def]
    try:
        import phonenumbers
    except ImportError as err:  # pragma: no cover - a declared dependency of the pii extra
        from headwater.errors import MissingDependency

        raise MissingDependency(
            "phone number detection needs phonenumbers (pip install 'headwater[pii]')",
            package="phonenumbers",
        ) from err
    return phonenumbers


def phone_verdict(text: str, regions: tuple[str, ...], *, first_possible: bool = False) -> float:
    """0.0 when ``text`` is not a phone number; 0.85 when valid, 0.7 when only possible.

    A number in international form (``+`` or ``00``) is parsed without a region; otherwise each
    region hint is tried in turn and the best verdict wins. ``first_possible`` stops at the
    first region where the number is possible (column classification only needs yes/no).
    """
    pn = _phonenumbers()
    candidates: tuple[str | None, ...] = (None,) if text.lstrip("(").startswith("+") else regions
    best = 0.0
    for region in candidates:
        try:
            num = pn.parse(text, region)
        except pn.NumberParseException:
            continue
        if pn.is_valid_number(num):
            return 0.85
        if best == 0.0 and pn.is_possible_number(num):
            best = 0.7
            if first_possible:
                return best
    return best


def phone_possible(text: str, regions: tuple[str, ...]) -> bool:
    """Whether ``text`` is a possible phone number (the yes/no column classification needs).

    The same regions as :func:`phone_verdict` are tried, but only the possible-length check is
    made (``is_valid_number`` costs more than the parse, and a valid number is possible, so
    the answer is the same): about a third of the cost per value.
    """
    pn = _phonenumbers()
    candidates: tuple[str | None, ...] = (None,) if text.lstrip("(").startswith("+") else regions
    for region in candidates:
        try:
            num = pn.parse(text, region)
        except pn.NumberParseException:
            continue
        if pn.is_possible_number(num):
            return True
    return False


# -- dates of birth -------------------------------------------------------------------------------
_MONTHS = {
    "jan": 1, "january": 1, "janvier": 1, "januar": 1, "jänner": 1,
    "feb": 2, "february": 2, "février": 2, "fevrier": 2, "februar": 2,
    "mar": 3, "march": 3, "mars": 3, "märz": 3, "maerz": 3,
    "apr": 4, "april": 4, "avril": 4,
    "may": 5, "mai": 5,
    "jun": 6, "june": 6, "juin": 6, "juni": 6,
    "jul": 7, "july": 7, "juillet": 7, "juli": 7,
    "aug": 8, "august": 8, "août": 8, "aout": 8,
    "sep": 9, "sept": 9, "september": 9, "septembre": 9,
    "oct": 10, "october": 10, "octobre": 10, "okt": 10, "oktober": 10,
    "nov": 11, "november": 11, "novembre": 11,
    "dec": 12, "december": 12, "décembre": 12, "decembre": 12, "dez": 12, "dezember": 12,
}
MONTH_WORDS = "|".join(sorted((re.escape(m) for m in _MONTHS), key=len, reverse=True))

_DATE_FORMS = (
    re.compile(r"(?P<y>\d{4})[-/.](?P<m>\d{1,2})[-/.](?P<d>\d{1,2})"),
    re.compile(r"(?P<y>\d{4})年(?P<m>\d{1,2})月(?P<d>\d{1,2})日"),
    re.compile(r"(?P<a>\d{1,2})[-/.](?P<b>\d{1,2})[-/.](?P<y>\d{4})"),
    re.compile(rf"(?P<d>\d{{1,2}})(?:st|nd|rd|th|er)?\.?\s+(?P<mw>{MONTH_WORDS})\.?,?\s+(?P<y>\d{{4}})", re.I),
    re.compile(rf"(?P<mw>{MONTH_WORDS})\.?\s+(?P<d>\d{{1,2}})(?:st|nd|rd|th)?,?\s+(?P<y>\d{{4}})", re.I),
)


def parse_birth_date(text: str, *, today: dt.date | None = None) -> dt.date | None:
    """The date ``text`` spells when it is a plausible birth date (1900 to today), else None.

    ``a/b/yyyy`` is read day-first and month-first; either reading that is a real date counts.
    """
    today = today or dt.date.today()
    for form in _DATE_FORMS:
        m = form.fullmatch(text.strip())
        if m is None:
            continue
        g = m.groupdict()
        y = int(g["y"])
        if g.get("mw"):
            pairs = [(_MONTHS.get(g["mw"].lower().rstrip(".")), int(g["d"]))]
        elif g.get("a"):
            a, b = int(g["a"]), int(g["b"])
            pairs = [(b, a), (a, b)]
        else:
            pairs = [(int(g["m"]), int(g["d"]))]
        for month, day in pairs:
            if month is None:
                continue
            try:
                d = dt.date(y, month, day)
            except ValueError:
                continue
            if dt.date(1900, 1, 1) <= d <= today:
                return d
        return None
    return None


# -- secrets --------------------------------------------------------------------------------------
def shannon_entropy(text: str) -> float:
    """Shannon entropy in bits per character."""
    if not text:
        return 0.0
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in Counter(text).values())
