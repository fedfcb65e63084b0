"""Column classification: a bounded sample of values plus the column name -> tag proposals.

Structured columns are matched column-at-a-time without Python per-value work:

1. one NumPy pass over the column's UTF-8 buffer gives every value its set of byte classes
   (digit, letter, ``@``, ``:``, space ...), its byte length and its digit count;
2. each stage (secret prefix, email, IBAN, SSN, card, IP, date, phone, token, free text) keeps
   only the values its pattern could match -- a necessary condition, so nothing is lost -- and
   not yet claimed by an earlier stage, and runs its RE2 pattern (Arrow compute) on those rows
   alone; Luhn and mod-97 run vectorised in NumPy;
3. validators that only exist in Python (``phonenumbers``, the calendar for birth dates,
   entropy for unprefixed secrets, free text) run on at most ``validate`` candidates, in
   batches, stopping early once the 95% interval of the column's match rate is within +-0.05
   (see :func:`_validate_some`); the pass rate of that random subset is scaled to all
   candidates and the proposal says ``estimated=True``.

Nothing here keeps a value: reports hold counts and confidences.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from headwater.pii._detectors import DEFAULT_REGIONS, detect
from headwater.pii._validators import (
    _CARD_ISSUERS,
    IBAN_LENGTHS,
    parse_birth_date,
    phone_possible,
    shannon_entropy,
)

__all__ = ["MAX_VALUE_CHARS", "ColumnReport", "Proposal", "classify_column", "inspect_column"]

MAX_VALUE_CHARS = 65_536
"""Values longer than this are not scanned; they count as unreadable (``oversized``)."""

TAGS = ("email", "phone", "ssn", "card", "iban", "ip", "dob", "secret", "name", "address", "national_id", "tax_id",
        "passport", "driving_licence")


@dataclass(frozen=True, slots=True)
class Proposal:
    """A proposed tag for a column; counts only, never values."""

    tag: str
    confidence: float
    matches: int
    """Sampled values detected as this kind (scaled from a validated subset when ``estimated``)."""
    sampled: int
    """Non-null, readable values examined."""
    evidence: str = "values"
    """``values``, ``name`` or ``values+name``."""
    estimated: bool = False
    unreadable: int = 0


@dataclass(slots=True)
class ColumnReport:
    """What the scan saw in one column."""

    name: str
    type: str
    sampled: int = 0
    """Values taken from the column (nulls included)."""
    nulls: int = 0
    readable: int = 0
    unreadable: int = 0
    unreadable_reasons: dict[str, int] = field(default_factory=dict)
    bytes: int = 0
    """UTF-8 bytes of the readable values examined."""
    proposals: list[Proposal] = field(default_factory=list)
    error: str | None = None
    """Why the column could not be read at all (then it has no proposals from values)."""

    @property
    def is_unreadable(self) -> bool:
        """True when nothing in the column could be examined although something was there."""
        return self.error is not None or (self.readable == 0 and self.unreadable > 0)


# -- name evidence --------------------------------------------------------------------------------
_PERSON_PREFIX = {"first", "last", "given", "family", "middle", "full", "customer", "contact",
                  "person", "maiden", "legal", "user", "patient", "employee", "holder", "cardholder"}
_NOT_PERSONAL = {"type", "brand", "kind", "count", "expiry", "exp", "expires", "status", "last4",
                 "mask", "masked", "length", "len", "hash", "format", "verified", "enabled", "opt",
                 "optin", "flag", "sent", "template", "provider", "version", "limit", "scope"}


def _tokens(name: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    return [t for t in re.split(r"[^0-9a-zA-Z]+", spaced.lower()) if t]


def name_evidence(name: str) -> dict[str, float]:
    """Tag kind -> weight (0..1) that the column name alone gives."""
    toks = _tokens(name)
    s = set(toks)
    joined = "".join(toks)
    out: dict[str, float] = {}
    if s & _NOT_PERSONAL:
        return out
    if s & {"email", "emails", "mail"} or "email" in joined:
        out["email"] = 0.5
    if s & {"phone", "tel", "telephone", "mobile", "cell", "fax", "msisdn", "telefon", "phonenumber"} or "phone" in joined:
        out["phone"] = 0.5
    if s & {"ssn", "social"} or "socialsecurity" in joined:
        out["ssn"] = 0.6
    if s & {"card", "cc", "pan", "creditcard", "cardnumber", "ccnum", "ccnumber"} or "creditcard" in joined:
        out["card"] = 0.5
    if "iban" in s or "iban" in joined:
        out["iban"] = 0.6
    if s & {"ip", "ipv4", "ipv6", "ipaddress", "ipaddr"} or joined in ("remoteaddr", "clientaddr"):
        out["ip"] = 0.5
    if s & {"dob", "birth", "birthday", "birthdate", "born", "geburtsdatum", "naissance"}:
        out["dob"] = 0.6
    if s & {"secret", "token", "apikey", "password", "passwd", "pwd", "credential", "credentials"} or (
            "api" in s and "key" in s) or ("private" in s and "key" in s):
        out["secret"] = 0.5
    if s & {"surname", "firstname", "lastname", "fullname", "forename", "givenname", "familyname"}:
        out["name"] = 0.9
    elif "name" in s:
        idx = toks.index("name")
        if len(toks) == 1:
            out["name"] = 0.6
        elif idx > 0 and toks[idx - 1] in _PERSON_PREFIX:
            out["name"] = 0.9
    return out


# -- value patterns (RE2, anchored) --------------------------------------------------------------
# Counted repetitions are expanded by RE2 on every call (Arrow compiles the pattern per call), so
# long bounds such as {36,255} are written unbounded where a byte-length check makes them exact:
# see _EXACT_ABOVE below.
_RE_EMAIL = (r"^[A-Za-z0-9](?:[A-Za-z0-9._%+-]*[A-Za-z0-9_%+-])?@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+"
             r"[A-Za-z]{2,}$")
_RE_EMAIL_EXACT = (r"^[A-Za-z0-9](?:[A-Za-z0-9._%+-]{0,62}[A-Za-z0-9_%+-])?@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}"
                   r"[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$")
_RE_SSN = (r"^(?:00[1-9]|0[1-9]\d|[1-578]\d\d|6[0-57-9]\d|66[0-57-9])(?:-(?:0[1-9]|[1-9]\d)-|(?:0[1-9]|[1-9]\d))"
           r"(?:000[1-9]|00[1-9]\d|0[1-9]\d\d|[1-9]\d{3})$")
# The card and IBAN shapes are checked in NumPy (see _match_stages); the patterns say what those
# checks implement, and the tests compare the two.
_RE_CARD_SHAPE = r"^\d(?:[ -]?\d){11,18}$"
_RE_IBAN_SHAPE = r"^[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}$"
_OCT = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_RE_IPV4 = rf"^(?:{_OCT}\.){{3}}{_OCT}$"
_H = r"[0-9a-fA-F]{1,4}"
_RE_IPV6 = (
    rf"^(?:(?:{_H}:){{7}}{_H}|(?:{_H}:){{1,7}}:|(?:{_H}:){{1,6}}:{_H}|(?:{_H}:){{1,5}}(?::{_H}){{1,2}}"
    rf"|(?:{_H}:){{1,4}}(?::{_H}){{1,3}}|(?:{_H}:){{1,3}}(?::{_H}){{1,4}}|(?:{_H}:){{1,2}}(?::{_H}){{1,5}}"
    rf"|{_H}:(?::{_H}){{1,6}}|:(?:(?::{_H}){{1,7}}|:)|fe80:(?::[0-9a-fA-F]{{0,4}}){{0,4}}%[0-9a-zA-Z]+"
    rf"|::(?:ffff(?::0{{1,4}})?:)?(?:{_OCT}\.){{3}}{_OCT}|(?:{_H}:){{1,4}}:(?:{_OCT}\.){{3}}{_OCT})$"
)
_SECRET_ALTS = (
    "(?:AKIA|ASIA)[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{36,%s}|github_pat_[A-Za-z0-9_]{22,%s}"
    "|xox[baprse]-[A-Za-z0-9-]{10,%s}|(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,%s}"
    "|hwk_[a-z0-9]{12}\\.[A-Za-z0-9_-]{43}|glpat-[A-Za-z0-9_-]{20}|AIza[0-9A-Za-z_-]{35}"
    "|-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----(?s:.*)"
)
_RE_SECRET_EXACT = "^(?:" + _SECRET_ALTS % ("255", "255", "250", "247") + ")$"
# One pattern per prefix family, chosen by a value's first four bytes: small patterns keep RE2's
# per-call DFA small. Unbounded lengths are exact up to 255 bytes (see _EXACT_ABOVE); a private
# key's "(?s:.*)$" tail matches anything, so its header alone decides.
_SECRET_FAMILIES_SPEC: tuple[tuple[tuple[bytes, ...], str], ...] = (
    ((b"AKIA", b"ASIA"), r"^(?:AKIA|ASIA)[0-9A-Z]{16}$"),
    ((b"AIza",), r"^AIza[0-9A-Za-z_-]{35}$"),
    ((b"ghp_", b"gho_", b"ghu_", b"ghs_", b"ghr_"), r"^gh[pousr]_[A-Za-z0-9]{36,}$"),
    ((b"gith",), r"^github_pat_[A-Za-z0-9_]{22,}$"),
    ((b"glpa",), r"^glpat-[A-Za-z0-9_-]{20}$"),
    ((b"xoxb", b"xoxa", b"xoxp", b"xoxr", b"xoxs", b"xoxe"), r"^xox[baprse]-[A-Za-z0-9-]{10,}$"),
    ((b"sk_l", b"sk_t", b"rk_l", b"rk_t"), r"^(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}$"),
    ((b"hwk_",), r"^hwk_[a-z0-9]{12}\.[A-Za-z0-9_-]{43}$"),
    ((b"----",), r"^-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"),
)
_RE_WORDS = r"[^\W\d_]{2,}\s+\S|\S\s+[^\W\d_]{2,}"
"""Free text: a word of letters next to whitespace (spaced digit groups are not text)."""
_RE_TOKEN = r"^[A-Za-z0-9+/_.-]{24,}={0,2}$"
_RE_TOKEN_EXACT = r"^[A-Za-z0-9+/_.-]{24,512}={0,2}$"
_RE_DATE = (r"^(?:\d{4}[-/.]\d{1,2}[-/.]\d{1,2}(?:[T ]00:00(?::00(?:\.0+)?)?Z?)?|\d{1,2}[-/.]\d{1,2}[-/.]\d{4}"
            r"|\d{4}年\d{1,2}月\d{1,2}日|(?i:\d{1,2}\.?\s+[a-zéû]{3,9}\.?,?\s+\d{4}|[a-zéû]{3,9}\.?\s+\d{1,2},?\s+\d{4}))$")
_RE_PHONE = r"^(?:\+|\(\+?)?\d[\d ().\-/]{4,22}\d(?:\s*(?:x|ext\.?)\s*\d{1,6})?$"
_RE_DATE_SHAPE = r"^(?:\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4})$"
_RE_VERSIONISH = r"^\d+(?:\.\d+)+$"
_RE_ISBN_SHAPE = r"^(?:97[89][- ]\d{1,5}[- ]\d{1,7}[- ]\d{1,7}[- ]\d|\d{1,5}-\d{1,7}-\d{1,7}-[\dXx])$"

# A relaxed pattern decides alone for values of at most this many bytes; longer matches are
# checked again with the exact pattern in Python (rare: such values are longer than any bound).
_EXACT_ABOVE = {_RE_EMAIL: (63, _RE_EMAIL_EXACT), _RE_TOKEN: (512, _RE_TOKEN_EXACT),
                **{pattern: (255, _RE_SECRET_EXACT) for _heads, pattern in _SECRET_FAMILIES_SPEC
                   if pattern.endswith(",}$")}}


@lru_cache(maxsize=8)
def _python_pattern(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


# -- byte classes: one NumPy pass over the column's UTF-8 buffer ------------------------------------
# Every value gets the set of character classes it contains (an OR of one bit per byte), its
# length in bytes and its count of ASCII digits. Each stage below first keeps only the values
# whose classes and counts its pattern allows -- a necessary condition, so no value the pattern
# would match is dropped -- and runs RE2 on those rows alone.
# Sixteen classes fit a uint16 per byte. A few rare characters share a class ("(", ")" and "%";
# "=" and ","): a stage then admits both, which only widens its pre-filter.
(_DIG, _UP, _LO, _AT, _DOT, _DASH, _SP, _COLON, _PLUS, _SLASH, _USC, _PAREN_PCT, _EQ_COMMA, _WS, _NA,
 _OTHER) = (1 << i for i in range(16))
_LETTER = _UP | _LO
_ALLOWED = {
    "email": _DIG | _LETTER | _AT | _DOT | _DASH | _USC | _PAREN_PCT | _PLUS,
    "iban": _DIG | _LETTER | _SP,
    "ssn": _DIG | _DASH,
    "card": _DIG | _DASH | _SP,
    "ipv4": _DIG | _DOT,
    "ipv6": _DIG | _LETTER | _COLON | _DOT | _PAREN_PCT,
    "date": _DIG | _LETTER | _DASH | _SLASH | _DOT | _SP | _COLON | _EQ_COMMA | _WS | _NA,
    "phone": _DIG | _LO | _PLUS | _PAREN_PCT | _SP | _DOT | _DASH | _SLASH | _WS,
    "token": _DIG | _LETTER | _PLUS | _SLASH | _USC | _DOT | _DASH | _EQ_COMMA,
    "version": _DIG | _DOT,
    "date_shape": _DIG | _DASH | _SLASH | _DOT,
}


def _byte_table() -> np.ndarray:
    lut = np.full(256, _OTHER, dtype=np.uint16)
    lut[ord("0"):ord("9") + 1] = _DIG
    lut[ord("A"):ord("Z") + 1] = _UP
    lut[ord("a"):ord("z") + 1] = _LO
    for ch, cls in (("@", _AT), (".", _DOT), ("-", _DASH), (" ", _SP), (":", _COLON), ("+", _PLUS),
                    ("/", _SLASH), ("_", _USC), ("(", _PAREN_PCT), (")", _PAREN_PCT), ("%", _PAREN_PCT),
                    ("=", _EQ_COMMA), (",", _EQ_COMMA), ("\t", _WS), ("\n", _WS), ("\r", _WS), ("\f", _WS), ("\v", _WS)):
        lut[ord(ch)] = cls
    lut[0x80:] = _NA
    return lut


_BYTE_CLASS = _byte_table()
_SECRET_FIRST_BYTE = np.zeros(256, dtype=bool)
_SECRET_FIRST_BYTE[[h[0] for heads, _ in _SECRET_FAMILIES_SPEC for h in heads]] = True
_SECRET_FAMILIES = tuple((np.array([int.from_bytes(h, "little") for h in heads], dtype=np.uint32), pattern)
                         for heads, pattern in _SECRET_FAMILIES_SPEC)
"""(first four bytes as little-endian uint32 keys, pattern) per secret prefix family."""


@dataclass(slots=True)
class _Features:
    """Per-value byte statistics of a large_string array (absent values: all zero)."""

    classes: np.ndarray
    nbytes: np.ndarray
    digits: np.ndarray
    first: np.ndarray
    last: np.ndarray
    present: np.ndarray
    """Valid (not null) and not empty."""
    starts: np.ndarray
    """Start of each value in ``body``."""
    body: np.ndarray
    """The UTF-8 bytes of all values, back to back (a view of the Arrow buffer)."""

    def only(self, allowed: int) -> np.ndarray:
        """Values made only of the classes in ``allowed`` (absent values included)."""
        return (self.classes & np.uint16(~allowed & 0xFFFF)) == 0

    def has(self, cls: int) -> np.ndarray:
        """Values holding at least one byte of a class in ``cls``."""
        return (self.classes & np.uint16(cls)) != 0

    def head4(self, rows: np.ndarray) -> np.ndarray:
        """The first four bytes of ``rows`` (each at least four bytes long) as little-endian uint32."""
        b = self.body[self.starts[rows][:, None] + np.arange(4)].astype(np.uint32)
        return b[:, 0] | b[:, 1] << 8 | b[:, 2] << 16 | b[:, 3] << 24


def _offsets_and_data(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    bufs = arr.buffers()
    offsets = np.frombuffer(bufs[1], dtype=np.int64)[arr.offset:arr.offset + len(arr) + 1]
    if bufs[2] is None or len(offsets) == 0:
        return offsets, np.empty(0, dtype=np.uint8)
    return offsets, np.frombuffer(bufs[2], dtype=np.uint8)


def _features(arr: pa.Array) -> _Features:
    """Byte classes, byte lengths, digit counts and first/last bytes of every value of ``arr``."""
    n = len(arr)
    if n == 0:
        z = np.zeros(0, dtype=np.int64)
        return _Features(z.astype(np.uint16), z, z.astype(np.int32), z.astype(np.uint8), z.astype(np.uint8),
                         z.astype(bool), z, z.astype(np.uint8))
    offsets, data = _offsets_and_data(arr)
    o0, o1 = int(offsets[0]), int(offsets[-1])
    body = data[o0:o1]
    nbytes = np.diff(offsets)
    present = nbytes > 0
    if arr.null_count:
        present &= arr.is_valid().to_numpy(zero_copy_only=False)
    # Reduce over [start_i, end_i) for every value: bounds interleave starts and ends, and the
    # results at odd positions (the gaps between values) are dropped. A trailing sentinel keeps
    # every bound a valid index.
    bounds = np.empty(2 * n, dtype=np.int64)
    bounds[0::2] = offsets[:-1] - o0
    bounds[1::2] = offsets[1:] - o0
    size = len(body)
    flags = np.empty(size + 1, dtype=np.uint16)
    np.take(_BYTE_CLASS, body, out=flags[:size])
    flags[size] = 0
    classes = np.bitwise_or.reduceat(flags, bounds)[0::2]
    # (one byte per input byte: a running count in int32 would cost page faults on fresh memory)
    isdigit = np.empty(size + 1, dtype=np.uint8)
    np.less(body - np.uint8(48), 10, out=isdigit[:size].view(np.bool_))
    isdigit[size] = 0
    digits = np.add.reduceat(isdigit, bounds, dtype=np.int32)[0::2]
    if size:
        first = body[np.minimum(bounds[0::2], size - 1)]
        last = body[np.clip(bounds[1::2] - 1, 0, size - 1)]
    else:
        first = last = np.zeros(n, dtype=np.uint8)
    absent = ~present
    if absent.any():
        classes[absent] = 0
        digits[absent] = 0
        first[absent] = 0
        last[absent] = 0
    return _Features(classes, nbytes, digits, first, last, present, bounds[0::2], body)


_PAD_BYTES = np.zeros(256, dtype=bool)
_PAD_BYTES[[9, 10, 13, 32]] = True


def _padded(f: _Features) -> bool:
    """Whether any value starts or ends with ASCII whitespace (then values are trimmed)."""
    return bool((_PAD_BYTES[f.first] | _PAD_BYTES[f.last]).any())


def _match(arr: pa.Array, rows: np.ndarray, pattern: str) -> np.ndarray:
    """Which of ``rows`` of ``arr`` match ``pattern`` (RE2; only those rows are scanned)."""
    if len(rows) == 0:
        return np.zeros(0, dtype=bool)
    sub = arr if len(rows) == len(arr) else arr.take(pa.array(rows))
    ok = pc.fill_null(pc.match_substring_regex(sub, pattern), False).to_numpy(zero_copy_only=False)
    exact = _EXACT_ABOVE.get(pattern)
    if exact is not None:
        limit, strict = exact
        offsets, _ = _offsets_and_data(sub)
        long_hits = np.flatnonzero(ok & (np.diff(offsets) > limit))
        if len(long_hits):
            check = _python_pattern(strict)
            for i in long_hits:
                ok[i] = check.fullmatch(sub[int(i)].as_py()) is not None
    return ok


def _adjacent(arr: pa.Array, chars: bytes) -> np.ndarray:
    """Which values of ``arr`` hold two bytes of ``chars`` next to each other (``..``, ``- ``)."""
    offsets, data = _offsets_and_data(arr)
    body = data[int(offsets[0]):int(offsets[-1])]
    out = np.zeros(len(arr), dtype=bool)
    hit = body == chars[0]
    for ch in chars[1:]:
        hit |= body == ch
    at = np.flatnonzero(hit[:-1] & hit[1:])
    if len(at):
        row = np.searchsorted(offsets - offsets[0], at, side="right") - 1
        inside = at + 1 < offsets[row + 1] - offsets[0]  # both bytes in the same value
        out[row[inside]] = True
    return out


_DIGIT_BYTES = np.zeros(256, dtype=bool)
_DIGIT_BYTES[48:58] = True
_LETTER_BYTES = np.zeros(256, dtype=bool)
_LETTER_BYTES[65:91] = _LETTER_BYTES[97:123] = True


def _digits_only(arr: pa.Array, counts: np.ndarray) -> pa.Array:
    """``arr`` with every byte that is not an ASCII digit removed (``counts``: digits per value)."""
    offsets, data = _offsets_and_data(arr)
    body = data[int(offsets[0]):int(offsets[-1])]
    kept = body[(body - np.uint8(48)) < 10]
    new_offsets = np.zeros(len(arr) + 1, dtype=np.int64)
    np.cumsum(counts, out=new_offsets[1:])
    return pa.Array.from_buffers(pa.large_string(), len(arr), [None, pa.py_buffer(new_offsets), pa.py_buffer(kept)])


def _take(arr: pa.Array, rows: np.ndarray) -> pa.Array:
    return arr if len(rows) == len(arr) else arr.take(pa.array(rows))


def _compact_upper(arr: pa.Array) -> pa.Array:
    """ASCII values of ``arr`` without spaces and upper-cased (IBANs written in groups)."""
    offsets, data = _offsets_and_data(arr)
    body = data[int(offsets[0]):int(offsets[-1])]
    keep = body != 32
    kept = body[keep]
    kept -= ((kept >= 97) & (kept <= 122)).view(np.uint8) * np.uint8(32)
    spaces = np.flatnonzero(~keep)
    per_value = np.bincount(np.searchsorted(offsets - offsets[0], spaces, side="right") - 1, minlength=len(arr))
    new_offsets = np.zeros(len(arr) + 1, dtype=np.int64)
    np.cumsum(np.diff(offsets) - per_value[:len(arr)], out=new_offsets[1:])
    return pa.Array.from_buffers(pa.large_string(), len(arr), [None, pa.py_buffer(new_offsets), pa.py_buffer(kept)])


def _width_blocks(arr: pa.Array, rows: np.ndarray) -> Any:
    """``(positions in rows, (k, width) uint8 matrix)`` for each byte width among ``rows``.

    The rows are taken once, ordered by length, so every width is one contiguous block of the
    taken buffer and reshapes without a gather.
    """
    if len(rows) == 0:
        return
    lengths = np.diff(_offsets_and_data(arr)[0])[rows]
    order = np.argsort(lengths, kind="stable")
    sub = arr.take(pa.array(rows[order]))
    offsets, data = _offsets_and_data(sub)
    widths, starts = np.unique(lengths[order], return_index=True)
    ends = [*starts[1:], len(order)]
    for width, a, b in zip(widths.tolist(), starts.tolist(), ends, strict=True):
        if width:
            o = int(offsets[a])
            yield order[a:b], data[o:o + (b - a) * width].reshape(b - a, width)


@lru_cache(maxsize=1)
def _issuer_table() -> np.ndarray:
    """First six digits -> bit ``length - 12`` set for each card length an issuer has there.

    The table form of :func:`~headwater.pii._validators.card_issuer` (1 MB, built on first use).
    """
    table = np.zeros(10**6, dtype=np.uint8)
    for _issuer, ranges, lengths in _CARD_ISSUERS:
        bits = sum(1 << (n - 12) for n in lengths if 12 <= n <= 19)
        for lo, hi in ranges:
            scale = 10 ** (6 - len(str(lo)))
            table[lo * scale:(hi + 1) * scale] |= np.uint8(bits)
    return table


def _cards_many(digits: pa.Array) -> np.ndarray:
    """Issuer range and length (``card_issuer``) and Luhn, for every value of a digit array."""
    ok = np.zeros(len(digits), dtype=bool)
    for pos, m in _width_blocks(digits, np.arange(len(digits))):
        width = m.shape[1]
        d = np.ascontiguousarray((m - np.uint8(48)).T)  # one row per digit position
        six = d[0].astype(np.int32)
        for j in range(1, 6):
            six *= 10
            six += d[j]
        issuer = (_issuer_table()[six] >> np.uint8(width - 12)) & np.uint8(1) == 1
        # Luhn: every second digit from the right is doubled (a two-digit result adds its digits)
        doubled = d[width - 2::-2]
        total = d[width - 1::-2].sum(axis=0, dtype=np.uint32)
        total += (doubled * np.uint8(2) - (doubled > 4).view(np.uint8) * np.uint8(9)).sum(axis=0, dtype=np.uint32)
        ok[pos] = issuer & (total % 10 == 0)
    return ok


def _mod97_many(ibans: pa.Array, rows: np.ndarray) -> np.ndarray:
    """ISO 7064 mod-97 check of ``rows`` of an array of compact upper-case IBANs."""
    ok = np.zeros(len(rows), dtype=bool)
    for pos, m in _width_blocks(ibans, rows):
        # Horner's rule over the rearranged IBAN (first four characters moved to the end; a
        # letter is two digits, A=10), one character position at a time for all rows at once.
        # Eight steps of *100 stay below 2**64, so the remainder is taken every eighth step.
        cols = np.empty((m.shape[1], m.shape[0]), dtype=np.uint8)
        cols[:-4] = m[:, 4:].T
        cols[-4:] = m[:, :4].T
        letter = (cols > 57).view(np.uint8)
        val = cols - np.uint8(48) - letter * np.uint8(7)
        scale = letter * np.uint8(90) + np.uint8(10)
        rem = np.zeros(cols.shape[1], dtype=np.uint64)
        for j in range(cols.shape[0]):
            rem *= scale[j]
            rem += val[j]
            if j % 8 == 7:
                rem %= np.uint64(97)
        ok[pos] = rem % np.uint64(97) == 1
    return ok


# -- reading values robustly ------------------------------------------------------------------------
@dataclass(slots=True)
class _Text:
    arr: pa.Array | None  # string array, nulls where null or unreadable
    dates: np.ndarray | None  # datetime64[D] of date-typed values (NaT for null)
    sampled: int
    nulls: int
    unreadable: Counter[str]
    type: str


def _sample_indices(n: int, sample: int, seed: int) -> np.ndarray | None:
    if sample <= 0 or n <= sample:
        return None
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=sample, replace=False))


def _from_list(values: Sequence[Any], sample: int, seed: int) -> _Text:
    idx = _sample_indices(len(values), sample, seed)
    picked = values if idx is None else [values[int(i)] for i in idx]
    out: list[str | None] = []
    dates: list[Any] = []
    bad: Counter[str] = Counter()
    nulls = 0
    for v in picked:
        text: str | None = None
        try:
            if v is None:
                nulls += 1
            elif isinstance(v, str):
                v.encode("utf-8")
                text = v
            elif isinstance(v, (bytes, bytearray, memoryview)):
                try:
                    text = bytes(v).decode("utf-8")
                except UnicodeDecodeError:
                    bad["binary"] += 1
            elif isinstance(v, bool):
                pass
            elif isinstance(v, (int, Decimal)):
                text = str(v)
            elif isinstance(v, float):
                pass
            elif isinstance(v, (dt.date, dt.datetime)):
                dates.append(v.date() if isinstance(v, dt.datetime) else v)
            else:
                bad["unsupported"] += 1
        except UnicodeEncodeError:
            bad["encoding"] += 1
            text = None
        except Exception:  # noqa: BLE001 - a value that cannot even be inspected is unreadable
            bad["unsupported"] += 1
            text = None
        if text is not None and len(text) > MAX_VALUE_CHARS:
            bad["oversized"] += 1
            text = None
        out.append(text)
    arr = pa.array(out, type=pa.large_string())
    date_arr = np.array(dates, dtype="datetime64[D]") if dates else None
    return _Text(arr, date_arr, len(picked), nulls, bad, "mixed")


def _from_arrow(values: pa.Array | pa.ChunkedArray, sample: int, seed: int) -> _Text:
    idx = _sample_indices(len(values), sample, seed)
    if idx is not None:
        values = values.take(pa.array(idx))
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks else pa.array([], type=values.type)
    t = values.type
    if pa.types.is_dictionary(t):
        values = values.dictionary_decode()
        t = values.type
    nulls = values.null_count
    bad: Counter[str] = Counter()
    n = len(values)
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        arr = values.cast(pa.large_string())
    elif pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t) or pa.types.is_binary_view(t):
        try:
            arr = values.cast(pa.large_binary()).cast(pa.large_string())
            arr.validate(full=True)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return _from_list(values.to_pylist(), 0, seed)
    elif pa.types.is_integer(t) or pa.types.is_decimal(t):
        arr = values.cast(pa.large_string())
    elif pa.types.is_date(t) or pa.types.is_timestamp(t):
        days = values.cast(pa.date32()) if pa.types.is_date(t) else pc.cast(values, pa.date32(), safe=False)
        return _Text(None, days.to_numpy(zero_copy_only=False).astype("datetime64[D]"), n, nulls, bad, str(t))
    elif pa.types.is_null(t):
        return _Text(None, None, n, n, bad, str(t))
    elif pa.types.is_floating(t) or pa.types.is_boolean(t) or pa.types.is_temporal(t):
        return _Text(None, None, n, nulls, bad, str(t))
    else:
        bad["unsupported type"] = n - nulls
        return _Text(None, None, n, nulls, bad, str(t))
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset:arr.offset + len(arr) + 1]
    if len(arr) == 0 or int(np.diff(offsets).max()) <= MAX_VALUE_CHARS:
        return _Text(arr, None, n, nulls, bad, str(t))  # no value has more bytes than the limit
    lengths = pc.utf8_length(arr)
    big = pc.fill_null(pc.greater(lengths, MAX_VALUE_CHARS), False)
    n_big = pc.sum(big).as_py() or 0
    if n_big:
        bad["oversized"] += n_big
        arr = pc.if_else(big, pa.scalar(None, pa.large_string()), arr)
    return _Text(arr, None, n, nulls, bad, str(t))


def _read(values: Any, sample: int, seed: int) -> _Text:
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return _from_arrow(values, sample, seed)
    if isinstance(values, (str, bytes)):
        values = [values]
    return _from_list(list(values), sample, seed)


# -- scoring ------------------------------------------------------------------------------------------
def _rate_confidence(rate: float, n: int) -> float:
    if rate >= 0.8:
        base = 0.85 + 0.1 * (rate - 0.8) / 0.2
    elif rate >= 0.3:
        base = 0.5 + 0.35 * (rate - 0.3) / 0.5
    else:
        base = rate / 0.3 * 0.5
    return base * n / (n + 2)




# -- bounded validation with early stop -------------------------------------------------------------
_BATCH = 8
_TOLERANCE = 0.05
_Z = 1.96


def _validate_some(rows: np.ndarray, check: Any, budget: int, readable: int) -> tuple[int, bool]:
    """How many of ``rows`` pass ``check(row)``: exact, or estimated from a random subset.

    Candidates are validated in a seeded random order, in batches, and at most ``budget`` of
    them. After each batch the 95% Wilson score interval of the pass rate is computed; scaled to
    the column (times ``share`` = candidates / readable values) its half-width bounds the error
    the estimate adds to the column's match rate. Validation stops once that is at most 0.05:
    after 40 candidates when all of them pass and every value is a candidate, after 8 when
    candidates are under 30% of the column. The first batch is 8, or fewer when even the widest
    interval (a pass rate of 1/2) is narrow enough after fewer -- one value when candidates are
    under 5% of the column, whose rate no estimate can then move by more than 0.05. Up to 8
    candidates are all validated (exact). The pass rate of the validated subset is scaled to
    all candidates (``estimated``). Stopping on the data makes the 95% nominal: this is a
    stopping rule, not a guarantee.
    """
    total = len(rows)
    if total == 0:
        return 0, False
    limit = min(total, max(budget, 1))
    order = rows[np.random.default_rng(total).permutation(total)[:limit]]
    passed = checked = 0
    share = total / max(readable, 1)
    # worst-case half-width at m values is about z / (2 sqrt(m)): small enough once m reaches this
    # (a handful of candidates is validated outright)
    first = _BATCH if total <= _BATCH else min(_BATCH, max(1, math.ceil((_Z * share / (2 * _TOLERANCE)) ** 2)))
    stops = [first, *range(first + _BATCH, limit + _BATCH, _BATCH)]
    for stop in stops:
        stop = min(stop, limit)
        for r in order[checked:stop]:
            passed += bool(check(int(r)))
        checked = stop
        if checked == total:
            return passed, False
        if checked == limit or _wilson_half_width(passed, checked) * share <= _TOLERANCE:
            break
    return round(passed / checked * total), True


def _wilson_half_width(k: int, m: int) -> float:
    p = k / m
    z2 = _Z * _Z
    return _Z / (1 + z2 / m) * math.sqrt(p * (1 - p) / m + z2 / (4 * m * m))


def _entropic(token: str) -> bool:
    if _HEXRUN.fullmatch(token) or token.count(".") >= 2 and not token.startswith("ey"):
        return False
    if not (_LOWER.search(token) and _UPPER.search(token) and _DIGIT.search(token)):
        return False
    return shannon_entropy(token) >= 4.0


_HEXRUN = re.compile(r"[0-9a-fA-F]+")
_LOWER = re.compile(r"[a-z]")
_UPPER = re.compile(r"[A-Z]")
_DIGIT = re.compile(r"\d")


def _value_counts(text: _Text, evidence: dict[str, float], regions: tuple[str, ...],
                  budget: int) -> tuple[int, dict[str, int], set[str], int]:
    """(readable, matches per kind, kinds whose count is estimated, bytes examined)."""
    counts: dict[str, int] = {}
    estimated: set[str] = set()
    if text.dates is not None:
        d = text.dates
        valid = ~np.isnat(d)
        readable = int(valid.sum())
        lo, hi = np.datetime64("1900-01-01"), np.datetime64(dt.date.today())
        plausible = int(((d >= lo) & (d <= hi) & valid).sum())
        if "dob" in evidence:
            counts["dob"] = plausible
        if text.arr is None:
            return readable, counts, estimated, readable * 4
    else:
        readable = 0
    if text.arr is None:
        return readable, counts, estimated, 0
    arr = text.arr
    feats = _features(arr)
    nbytes = int(feats.nbytes[feats.present].sum())
    if _padded(feats):
        arr = pc.utf8_trim_whitespace(arr)
        feats = _features(arr)
    n_present = int(feats.present.sum())
    readable += n_present
    if not n_present:
        return readable, counts, estimated, nbytes
    c2, est2 = _match_stages(arr, feats, evidence, regions, budget, n_present)
    for k, v in c2.items():
        counts[k] = counts.get(k, 0) + v
    estimated |= est2
    return readable, counts, estimated, nbytes


def _prefilter(stage: str, f: _Features) -> np.ndarray:
    """Values the stage's pattern could match, from byte classes and counts alone.

    Every condition here follows from the pattern (a necessary condition), so a value it rejects
    is one the pattern would reject too; absent values are rejected.
    """
    if stage == "secret":  # a known prefix's first byte; the shortest (xoxb-...) is 15 bytes
        return f.present & _SECRET_FIRST_BYTE[f.first] & (f.nbytes >= 15)
    if stage == "email":
        return f.present & f.only(_ALLOWED["email"]) & f.has(_AT) & f.has(_DOT)
    if stage == "iban":  # a letter, then 3 + 11..30 characters, each maybe after one space
        return (f.present & f.only(_ALLOWED["iban"]) & f.has(_DIG) & _LETTER_BYTES[f.first]
                & (f.nbytes >= 15) & (f.nbytes <= 64))
    if stage == "ssn":  # no dash or two
        return f.present & f.only(_ALLOWED["ssn"]) & (f.digits == 9) & ((f.nbytes == 9) | (f.nbytes == 11))
    if stage == "card":  # 12..19 digits with single separators: starts and ends with a digit
        return (f.present & f.only(_ALLOWED["card"]) & (f.digits >= 12) & (f.digits <= 19)
                & _DIGIT_BYTES[f.first] & _DIGIT_BYTES[f.last])
    if stage == "ipv4":  # digits and exactly three dots
        return f.present & f.only(_ALLOWED["ipv4"]) & (f.nbytes - f.digits == 3) & (f.nbytes <= 15)
    if stage == "ipv6":
        return f.present & f.only(_ALLOWED["ipv6"]) & f.has(_COLON)
    if stage == "date":  # 5 to 8 digits, more only with a time part ("T00:00...")
        return f.present & f.only(_ALLOWED["date"]) & (f.digits >= 5) & ((f.digits <= 8) | f.has(_COLON))
    if stage == "phone":  # an opening digit and a closing one
        return f.present & f.only(_ALLOWED["phone"]) & (f.digits >= 2)
    if stage == "token":  # 24..512 characters and up to two "="
        return f.present & f.only(_ALLOWED["token"]) & (f.nbytes >= 24) & (f.nbytes <= 514)
    if stage == "text":  # a letter (ASCII, or any non-ASCII byte) and ASCII whitespace
        return f.present & f.has(_SP | _WS) & f.has(_LETTER | _NA)
    raise ValueError(stage)


def _match_stages(arr: pa.Array, f: _Features, evidence: dict[str, float], regions: tuple[str, ...],
                  budget: int, readable: int) -> tuple[dict[str, int], set[str]]:
    """Match every stage in priority order; a value claimed by one stage is not seen by later ones.

    Each stage narrows the rows with the byte-class pre-filter, runs its RE2 pattern on those rows
    only, then its vectorised validator (Luhn, mod-97) or a bounded Python one.
    """
    counts: dict[str, int] = {}
    estimated: set[str] = set()
    free = f.present.copy()  # not claimed by an earlier stage
    py_cache: dict[int, str] = {}

    def value(i: int) -> str:
        s = py_cache.get(i)
        if s is None:
            s = py_cache[i] = arr[i].as_py()
        return s

    def claim(kind: str, rows: np.ndarray) -> None:
        if len(rows):
            counts[kind] = counts.get(kind, 0) + len(rows)
            free[rows] = False

    def matched(candidates: np.ndarray, pattern: str) -> np.ndarray:
        rows = np.flatnonzero(candidates)
        return rows[_match(arr, rows, pattern)]

    def validated(kind: str, rows: np.ndarray, check: Any) -> None:
        n, est = _validate_some(rows, check, budget, readable)
        if n:
            counts[kind] = counts.get(kind, 0) + n
            if est:
                estimated.add(kind)

    # secrets with a known prefix
    rows = np.flatnonzero(free & _prefilter("secret", f))
    if len(rows):
        heads = f.head4(rows)
        for keys, pattern in _SECRET_FAMILIES:
            family = rows[np.isin(heads, keys)]
            claim("secret", family[_match(arr, family, pattern)])
    # email (the pattern allows "..", which no address has)
    rows = matched(free & _prefilter("email", f), _RE_EMAIL)
    if len(rows):
        rows = rows[~_adjacent(_take(arr, rows), b".")]
    claim("email", rows)
    # IBAN: shape, country length, mod-97. On top of the pre-filter (letters, digits, spaces;
    # a letter first) the shape ^[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}$ (case-insensitive) is: a
    # letter second, digits third and fourth, no two spaces in a row (none trails: values are
    # trimmed); its 11..30 count follows from the country length (15..33 characters).
    rows = np.flatnonzero(free & _prefilter("iban", f))
    if len(rows):
        s = f.starts[rows]
        rows = rows[_LETTER_BYTES[f.body[s + 1]] & _DIGIT_BYTES[f.body[s + 2]] & _DIGIT_BYTES[f.body[s + 3]]]
        sub = _take(arr, rows)
        if f.has(_SP)[rows].any():
            single = ~_adjacent(sub, b" ")
            rows, sub = rows[single], sub.filter(pa.array(single))
        compact = _compact_upper(sub)
        offsets, data = _offsets_and_data(compact)
        if len(rows):
            country = data[offsets[:-1]].astype(np.int32) << 8 | data[offsets[:-1] + 1]
            ok = np.flatnonzero(_IBAN_LENGTH_BY_COUNTRY[country] == np.diff(offsets))
            claim("iban", rows[ok[_mod97_many(compact, ok)]])
    # SSN
    claim("ssn", matched(free & _prefilter("ssn", f), _RE_SSN))
    # payment cards: shape (digits with single separators), issuer range and length, Luhn
    rows = np.flatnonzero(free & _prefilter("card", f))
    if len(rows):
        sub = _take(arr, rows)
        spaced = (f.classes[rows] & np.uint16(_DASH | _SP)) != 0
        if spaced.any():
            keep = ~_adjacent(sub, b" -")
            rows, sub = rows[keep], _digits_only(sub.filter(pa.array(keep)), f.digits[rows][keep])
        claim("card", rows[_cards_many(sub)])
    # IP addresses
    claim("ip", matched(free & _prefilter("ipv4", f), _RE_IPV4))
    claim("ip", matched(free & _prefilter("ipv6", f), _RE_IPV6))
    # dates: birth dates only when the column name says so; otherwise set aside so they are not
    # read as phone numbers
    date_rows = matched(free & _prefilter("date", f), _RE_DATE)
    if len(date_rows):
        if "dob" in evidence:
            today = dt.date.today()
            validated("dob", date_rows, lambda i: parse_birth_date(value(i), today=today) is not None)
        free[date_rows] = False
    # phone numbers: shape, then phonenumbers on a bounded sample
    cand = free & _prefilter("phone", f) & (f.digits >= 7) & (f.digits <= 21)
    if "phone" not in evidence:
        # bare digit runs and dotted numbers are order numbers and versions unless the column
        # is named for phones
        cand &= ~f.only(_DIG)
    rows = matched(cand, _RE_PHONE)
    if len(rows):
        sub = _take(arr, rows)
        drop = np.zeros(len(rows), dtype=bool)
        datish = np.flatnonzero(f.only(_ALLOWED["date_shape"])[rows] & (f.digits[rows] <= 8))
        drop[datish[_match(sub, datish, _RE_DATE_SHAPE)]] = True
        if "phone" not in evidence:
            dotted = np.flatnonzero(f.only(_ALLOWED["version"])[rows])
            drop[dotted[_match(sub, dotted, _RE_VERSIONISH)]] = True
        # ISBN-13 and ISBN-10 shapes (hyphenated groups) are books, as in free text
        second_last = f.body[f.starts[rows] + f.nbytes[rows] - 2]  # "-" or " " before the check digit
        isbnish = np.flatnonzero(np.isin(f.digits[rows], (9, 10, 13)) & ((second_last == 45) | (second_last == 32)))
        drop[isbnish[_match(sub, isbnish, _RE_ISBN_SHAPE)]] = True
        rows = rows[~drop]
        validated("phone", rows, lambda i: phone_possible(value(i), regions))
        free[rows] = False
    # unprefixed tokens: charset and length, then entropy on a bounded sample
    rows = matched(free & _prefilter("token", f), _RE_TOKEN)
    if len(rows):
        validated("secret", rows, lambda i: _entropic(value(i)))
        free[rows] = False
    # free text: values with letters and whitespace no structured kind claimed, span by span
    text_rows = matched(free & _prefilter("text", f), _RE_WORDS)
    if len(text_rows):
        sub = text_rows if len(text_rows) <= budget else text_rows[
            np.linspace(0, len(text_rows) - 1, budget).astype(int)]
        seen: Counter[str] = Counter()
        for i in sub:
            for kind in {x.kind for x in detect(value(int(i)), regions=regions)}:
                seen[kind] += 1
        scale = len(text_rows) / len(sub)
        for kind, c in seen.items():
            counts[kind] = counts.get(kind, 0) + round(c * scale)
            if scale != 1:
                estimated.add(kind)
    return counts, estimated


_IBAN_LENGTH_BY_COUNTRY = np.full(1 << 16, -1, dtype=np.int16)
"""Upper-case two-letter country code (first byte << 8 | second) -> IBAN length."""
for _cc, _length in IBAN_LENGTHS.items():
    _IBAN_LENGTH_BY_COUNTRY[ord(_cc[0]) << 8 | ord(_cc[1])] = _length


def inspect_column(
    name: str,
    values: pa.Array | pa.ChunkedArray | Sequence[Any],
    *,
    sample: int = 1000,
    regions: tuple[str, ...] = DEFAULT_REGIONS,
    validate: int = 128,
    seed: int = 0,
) -> ColumnReport:
    """Classify one column and say what was read: sampled/null/readable/unreadable counts.

    ``sample`` bounds the values examined (a seeded random subset; ``0`` means all);
    ``validate`` bounds the values that go through a Python-only validator. Never raises on a
    bad value: binary, oversized, malformed and mis-encoded values are counted as unreadable.
    """
    evidence = name_evidence(name)
    try:
        text = _read(values, sample, seed)
        readable, counts, estimated, nbytes = _value_counts(text, evidence, regions, validate)
    except Exception as err:  # noqa: BLE001 - a column that cannot be read is reported, not raised
        report = ColumnReport(name=name, type=_type_name(values), error=f"{type(err).__name__}: {err}"[:300])
        report.proposals = _propose(evidence, {}, set(), 0, 0, text_column=True)
        return report
    unreadable = sum(text.unreadable.values())
    report = ColumnReport(
        name=name, type=text.type, sampled=text.sampled, nulls=text.nulls, readable=readable,
        unreadable=unreadable, unreadable_reasons=dict(text.unreadable), bytes=nbytes,
    )
    report.proposals = _propose(evidence, counts, estimated, readable, unreadable,
                                text_column=text.arr is not None or text.sampled == text.nulls)
    return report


def _type_name(values: Any) -> str:
    t = getattr(values, "type", None)
    return str(t) if t is not None else "mixed"


def _propose(evidence: dict[str, float], counts: dict[str, int], estimated: set[str], readable: int,
             unreadable: int, *, text_column: bool) -> list[Proposal]:
    out: list[Proposal] = []
    for kind in TAGS:
        weight = evidence.get(kind, 0.0)
        matches = min(counts.get(kind, 0), readable)
        if kind == "name" and not counts.get("name"):
            # no name found in the values: the column name alone is the evidence
            if weight and text_column:
                out.append(Proposal("pii.name", round(weight, 3), 0, readable, "name", False, unreadable))
            continue
        if not matches and not weight:
            continue
        rate = matches / readable if readable else 0.0
        base = _rate_confidence(rate, readable) if matches else 0.0
        if matches and weight:
            conf, source = 1 - (1 - base) * (1 - weight), "values+name"
        elif matches:
            conf, source = base, "values"
        else:
            # Name only: weaker when many readable values contradict it.
            conf, source = (weight * 0.5 if readable >= 20 else weight), "name"
        if conf < 0.05:
            continue
        out.append(Proposal(f"pii.{kind}", round(min(conf, 0.99), 3), matches, readable, source,
                            kind in estimated, unreadable))
    out.sort(key=lambda p: -p.confidence)
    return out


def classify_column(
    name: str,
    values: pa.Array | pa.ChunkedArray | Sequence[Any],
    *,
    sample: int = 1000,
    regions: tuple[str, ...] = DEFAULT_REGIONS,
    validate: int = 128,
) -> list[Proposal]:
    """Proposed ``pii.*`` tags for a column, most confident first (see :func:`inspect_column`)."""
    return inspect_column(name, values, sample=sample, regions=regions, validate=validate).proposals
