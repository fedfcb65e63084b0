"""Column classification: a bounded sample of values plus the column name -> tag proposals.

Values are matched column-at-a-time with Arrow compute (RE2) and NumPy (Luhn, mod-97), so a
structured column costs a few passes of C++ over its bytes. Validators that only exist in
Python (``phonenumbers``, the calendar for birth dates, entropy for unprefixed secrets, free
text) run on at most ``validate`` candidates; when there are more, the pass rate of an evenly
spaced subset is scaled to all candidates and the proposal says ``estimated=True``.

Nothing here keeps a value: reports hold counts and confidences.
"""

from __future__ import annotations

import datetime as dt
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
from headwater.pii._validators import IBAN_LENGTHS, parse_birth_date, phone_verdict, shannon_entropy

__all__ = ["MAX_VALUE_CHARS", "ColumnReport", "Proposal", "classify_column", "inspect_column"]

MAX_VALUE_CHARS = 65_536
"""Values longer than this are not scanned; they count as unreadable (``oversized``)."""

TAGS = ("email", "phone", "ssn", "card", "iban", "ip", "dob", "secret", "name")


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
_RE_EMAIL = r"^[A-Za-z0-9](?:[A-Za-z0-9._%+-]{0,62}[A-Za-z0-9_%+-])?@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
_RE_SSN = (r"^(?:00[1-9]|0[1-9]\d|[1-578]\d\d|6[0-57-9]\d|66[0-57-9])(?:-(?:0[1-9]|[1-9]\d)-|(?:0[1-9]|[1-9]\d))"
           r"(?:000[1-9]|00[1-9]\d|0[1-9]\d\d|[1-9]\d{3})$")
_RE_CARD_SHAPE = r"^\d(?:[ -]?\d){11,18}$"
_RE_CARD_ISSUER = (
    r"^(?:3[47]\d{13}|4(?:\d{12}|\d{15}|\d{18})|(?:5[1-5]\d\d|222[1-9]|22[3-9]\d|2[3-6]\d\d|27[01]\d|2720)\d{12}"
    r"|(?:6011|64[4-9]\d|65\d\d)\d{12,15}|35[0-8]\d\d{12,15}|(?:2131|1800)\d{11}"
    r"|(?:30[0-5]|309|36\d|3[89]\d)\d{11,16}|62\d{14,17}|(?:50|5[6-9]|6\d)\d{10,17}|220[0-4]\d{12,15})$"
)
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
_RE_SECRET = (
    r"^(?:(?:AKIA|ASIA)[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255}"
    r"|xox[baprse]-[A-Za-z0-9-]{10,250}|(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,247}"
    r"|hwk_[a-z0-9]{12}\.[A-Za-z0-9_-]{43}|glpat-[A-Za-z0-9_-]{20}|AIza[0-9A-Za-z_-]{35}"
    r"|-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----(?s:.*))$"
)
_RE_SECRET_PREFIX = r"^(?:AKIA|ASIA|gh[pousr]_|github_pat_|xox[baprse]-|[sr]k_(?:live|test)_|hwk_|glpat-|AIza|-----BEGIN )"
_RE_WORDS = r"[^\W\d_]{2,}\s+\S|\S\s+[^\W\d_]{2,}"
"""Free text: a word of letters next to whitespace (spaced digit groups are not text)."""
_RE_TOKEN = r"^[A-Za-z0-9+/_.-]{24,512}={0,2}$"
_RE_DATE = (r"^(?:\d{4}[-/.]\d{1,2}[-/.]\d{1,2}(?:[T ]00:00(?::00(?:\.0+)?)?Z?)?|\d{1,2}[-/.]\d{1,2}[-/.]\d{4}"
            r"|\d{4}年\d{1,2}月\d{1,2}日|(?i:\d{1,2}\.?\s+[a-zéû]{3,9}\.?,?\s+\d{4}|[a-zéû]{3,9}\.?\s+\d{1,2},?\s+\d{4}))$")
_RE_PHONE = r"^(?:\+|\(\+?)?\d[\d ().\-/]{4,22}\d(?:\s*(?:x|ext\.?)\s*\d{1,6})?$"
_RE_DATE_SHAPE = r"^(?:\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4})$"
_RE_VERSIONISH = r"^\d+(?:\.\d+)+$"


def _mask(arr: pa.Array, pattern: str) -> np.ndarray:
    return pc.fill_null(pc.match_substring_regex(arr, pattern), False).to_numpy(zero_copy_only=False)


def _padded(arr: pa.Array) -> bool:
    """Whether any value starts or ends with whitespace (literal checks beat one RE2 pass)."""
    for ch in (" ", "\t", "\n", "\r"):
        if pc.any(pc.starts_with(arr, ch)).as_py() or pc.any(pc.ends_with(arr, ch)).as_py():
            return True
    return False


def _char_matrix(arr: pa.Array, rows: np.ndarray, width: int) -> np.ndarray:
    """Rows of a string array whose values are all ``width`` bytes, as a (k, width) uint8 matrix."""
    arr = arr.cast(pa.large_string())
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset:arr.offset + len(arr) + 1]
    data = np.frombuffer(arr.buffers()[2], dtype=np.uint8)
    idx = offsets[rows][:, None] + np.arange(width)[None, :]
    return data[idx]


def _luhn_many(digits: pa.Array, rows: np.ndarray) -> np.ndarray:
    lengths = pc.binary_length(digits).to_numpy(zero_copy_only=False)
    ok = np.zeros(len(rows), dtype=bool)
    for width in np.unique(lengths[rows]):
        sel = lengths[rows] == width
        d = _char_matrix(digits, rows[sel], int(width)).astype(np.int16) - 48
        doubled = np.arange(width)[::-1] % 2 == 1
        d[:, doubled] *= 2
        d[:, doubled] -= np.where(d[:, doubled] > 9, 9, 0).astype(np.int16)
        ok[sel] = d.sum(axis=1) % 10 == 0
    return ok


def _mod97_many(ibans: pa.Array, rows: np.ndarray) -> np.ndarray:
    lengths = pc.binary_length(ibans).to_numpy(zero_copy_only=False)
    ok = np.zeros(len(rows), dtype=bool)
    for width in np.unique(lengths[rows]):
        sel = lengths[rows] == width
        m = _char_matrix(ibans, rows[sel], int(width)).astype(np.int64)
        m = np.concatenate([m[:, 4:], m[:, :4]], axis=1)
        rem = np.zeros(m.shape[0], dtype=np.int64)
        for j in range(m.shape[1]):
            c = m[:, j]
            digit = c < 58
            val = np.where(digit, c - 48, c - 55)
            rem = np.where(digit, (rem * 10 + val) % 97, (rem * 100 + val) % 97)
        ok[sel] = rem == 1
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


def _validate_some(rows: np.ndarray, check: Any, budget: int) -> tuple[int, bool]:
    """How many of ``rows`` pass ``check(row)``; scaled from an even subset past ``budget``."""
    if len(rows) == 0:
        return 0, False
    if len(rows) <= budget:
        return sum(1 for r in rows if check(int(r))), False
    pick = rows[np.linspace(0, len(rows) - 1, budget).astype(int)]
    passed = sum(1 for r in pick if check(int(r)))
    return round(passed / budget * len(rows)), True


def _entropic(token: str) -> bool:
    if re.fullmatch(r"[0-9a-fA-F]+", token) or token.count(".") >= 2 and not token.startswith("ey"):
        return False
    if not (re.search(r"[a-z]", token) and re.search(r"[A-Z]", token) and re.search(r"\d", token)):
        return False
    return shannon_entropy(token) >= 4.0


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
    if _padded(arr):
        arr = pc.utf8_trim_whitespace(arr)
    lengths = pc.utf8_length(arr)
    present = pc.fill_null(pc.greater(lengths, 0), False).to_numpy(zero_copy_only=False)
    readable += int(present.sum())
    nbytes = int(pc.sum(pc.binary_length(text.arr)).as_py() or 0)
    if not present.any():
        return readable, counts, estimated, nbytes
    stages = None
    if len(arr) > 2 * _PRESCREEN:
        # Pre-screen: a stage with no candidate among the first values is skipped for the rest.
        # A kind absent from 256 values has a rate under ~1.2% (95% bound), which scores below
        # the proposal floor anyway; skipping saves a full RE2 pass per absent kind.
        stages = _prescreen(arr.slice(0, _PRESCREEN).to_pylist())
    c2, est2 = _match_stages(arr, present, evidence, regions, budget, stages, None)
    for k, v in c2.items():
        counts[k] = counts.get(k, 0) + v
    estimated |= est2
    return readable, counts, estimated, nbytes


_PRESCREEN = 256


@lru_cache(maxsize=1)
def _stage_patterns() -> dict[str, re.Pattern[str]]:
    # The RE2 patterns are also valid Python patterns; Python's engine is cheaper for a few
    # hundred values than an Arrow call per pattern (RE2 compiles on every call).
    return {
        "secret": re.compile(_RE_SECRET), "email": re.compile(_RE_EMAIL),
        "iban": re.compile(_RE_IBAN_SHAPE, re.I), "ssn": re.compile(_RE_SSN),
        "card": re.compile(_RE_CARD_SHAPE), "ipv4": re.compile(_RE_IPV4),
        "ipv6": re.compile(_RE_IPV6), "date": re.compile(_RE_DATE), "phone": re.compile(_RE_PHONE),
        "token": re.compile(_RE_TOKEN), "text": re.compile(_RE_WORDS),
    }


def _prescreen(values: list[str | None]) -> set[str]:
    """Stages with at least one candidate among ``values``."""
    found: set[str] = set()
    patterns = _stage_patterns()
    for v in values:
        if not v:
            continue
        for stage, pattern in patterns.items():
            if stage not in found and pattern.search(v):
                found.add(stage)
    return found


def _match_stages(arr: pa.Array, present: np.ndarray, evidence: dict[str, float], regions: tuple[str, ...],
                  budget: int, only: set[str] | None, seen: set[str] | None) -> tuple[dict[str, int], set[str]]:
    """Run the matching stages (all, or those in ``only``); add stages with candidates to ``seen``."""
    counts: dict[str, int] = {}
    estimated: set[str] = set()
    taken = ~present
    py_cache: dict[int, str] = {}

    def value(i: int) -> str:
        s = py_cache.get(i)
        if s is None:
            s = py_cache[i] = arr[i].as_py()
        return s

    def claim(kind: str, hits: np.ndarray) -> None:
        nonlocal taken
        hits = hits & ~taken
        if hits.any():
            counts[kind] = counts.get(kind, 0) + int(hits.sum())
            taken = taken | hits

    def on(stage: str) -> bool:
        return only is None or stage in only

    def saw(stage: str, mask: np.ndarray) -> np.ndarray:
        if seen is not None and mask.any():
            seen.add(stage)
        return mask

    if on("secret"):
        prefixed = _mask(arr, _RE_SECRET_PREFIX)
        if prefixed.any():
            rows = np.flatnonzero(prefixed)
            hits = np.zeros(len(arr), dtype=bool)
            hits[rows[_mask(arr.take(pa.array(rows)), _RE_SECRET)]] = True
            claim("secret", saw("secret", hits))
    if on("email"):
        claim("email", saw("email", _mask(arr, _RE_EMAIL) & ~pc.fill_null(pc.match_substring(arr, ".."), False)
                            .to_numpy(zero_copy_only=False)))
    iban_shape = None
    if on("iban"):
        upper = pc.ascii_upper(arr)
        iban_shape = saw("iban", _mask(upper, _RE_IBAN_SHAPE) & ~taken)
    if iban_shape is not None and iban_shape.any():
        compact = pc.replace_substring(upper, " ", "")
        cc = pc.utf8_slice_codeunits(compact, 0, 2)
        want = pc.index_in(cc, value_set=pa.array(list(IBAN_LENGTHS)))
        lengths = np.array(list(IBAN_LENGTHS.values()) + [-1])
        want_len = lengths[pc.fill_null(want, len(lengths) - 1).to_numpy(zero_copy_only=False)]
        have = pc.utf8_length(compact).to_numpy(zero_copy_only=False)
        rows = np.flatnonzero(iban_shape & (want_len == have))
        hits = np.zeros(len(arr), dtype=bool)
        hits[rows[_mod97_many(compact, rows)]] = True
        claim("iban", hits)
    if on("ssn"):
        claim("ssn", saw("ssn", _mask(arr, _RE_SSN)))
    card_shape = saw("card", _mask(arr, _RE_CARD_SHAPE) & ~taken) if on("card") else None
    if card_shape is not None and card_shape.any():
        digits = pc.replace_substring_regex(arr, r"[ -]", "")
        issuer = _mask(digits, _RE_CARD_ISSUER)
        rows = np.flatnonzero(card_shape & issuer)
        hits = np.zeros(len(arr), dtype=bool)
        if len(rows):
            hits[rows[_luhn_many(digits, rows)]] = True
        claim("card", hits)
    if on("ipv4"):
        claim("ip", saw("ipv4", _mask(arr, _RE_IPV4)))
    if on("ipv6") and (_mask(arr, ":") & ~taken).any():
        claim("ip", saw("ipv6", _mask(arr, _RE_IPV6)))
    date_rows = np.flatnonzero(saw("date", _mask(arr, _RE_DATE) & ~taken)) if on("date") else np.empty(0, int)
    if len(date_rows):
        n, est = _validate_some(date_rows, lambda i: parse_birth_date(value(i)) is not None, budget)
        # A column of dates is birth dates only when its name says so; otherwise they are taken
        # out of the way so they are not read as phone numbers.
        taken[date_rows] = True
        if "dob" in evidence and n:
            counts["dob"] = counts.get("dob", 0) + n
            if est:
                estimated.add("dob")
    rows = np.empty(0, int)
    if on("phone"):
        phone_shape = _mask(arr, _RE_PHONE) & ~taken
        if phone_shape.any():
            phone_shape &= ~_mask(arr, _RE_DATE_SHAPE)
            if "phone" not in evidence:
                # bare digit runs and dotted numbers are order numbers and versions unless the
                # column is named for phones
                phone_shape &= ~_mask(arr, r"^\d+$") & ~_mask(arr, _RE_VERSIONISH)
        rows = np.flatnonzero(saw("phone", phone_shape))
    if len(rows):
        ndig = pc.utf8_length(pc.replace_substring_regex(arr.take(pa.array(rows)), r"\D+", ""))
        ndig = ndig.to_numpy(zero_copy_only=False)
        rows = rows[(ndig >= 7) & (ndig <= 21)]
        n, est = _validate_some(rows, lambda i: phone_verdict(value(i), regions, first_possible=True) > 0, budget)
        if n:
            counts["phone"] = counts.get("phone", 0) + n
            if est:
                estimated.add("phone")
        taken[rows] = True
    token_rows = np.flatnonzero(saw("token", _mask(arr, _RE_TOKEN) & ~taken)) if on("token") else np.empty(0, int)
    if len(token_rows):
        n, est = _validate_some(token_rows, lambda i: _entropic(value(i)), budget)
        if n:
            counts["secret"] = counts.get("secret", 0) + n
            if est:
                estimated.add("secret")
        taken[token_rows] = True
    # Free text: values with spaces that no structured kind claimed, checked span by span.
    text_rows = np.flatnonzero(saw("text", ~taken & _mask(arr, _RE_WORDS))) if on("text") else np.empty(0, int)
    if len(text_rows):
        sub = text_rows if len(text_rows) <= budget else text_rows[
            np.linspace(0, len(text_rows) - 1, budget).astype(int)]
        seen: Counter[str] = Counter()
        for i in sub:
            for kind in {f.kind for f in detect(value(int(i)), regions=regions)}:
                seen[kind] += 1
        scale = len(text_rows) / len(sub)
        for kind, c in seen.items():
            counts[kind] = counts.get(kind, 0) + round(c * scale)
            if scale != 1:
                estimated.add(kind)
    return counts, estimated


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
        if kind == "name":
            # Person names have no validator: the column name is the evidence.
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
