"""Free-text detection: candidate patterns, validators, context words and look-alike exclusion.

Each detector finds candidates with a whole-word pattern, then decides with a validator (Luhn
and issuer tables, mod-97, SSA rules, ``phonenumbers``, ``ipaddress``, a calendar, entropy).
Context words near a candidate raise or lower its confidence. Spans that are something else
(UUIDs, ISO timestamps, ISBNs, version strings) are found first and numeric detectors ignore
candidates inside them, which is what keeps Luhn-valid digit runs in timestamps and GUID
fragments from being reported.

A :class:`Finding` holds offsets and a confidence, never the matched text.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from headwater.pii._custom import TextRules, compile_rules
from headwater.pii._ids import ID_KINDS, find_ids
from headwater.pii._names import find_addresses, find_names
from headwater.pii._validators import (
    IBAN_LENGTHS,
    MONTH_WORDS,
    card_issuer,
    iban_valid,
    ip_version,
    luhn_valid,
    parse_birth_date,
    phone_verdict,
    shannon_entropy,
    ssn_valid,
)

__all__ = ["DEFAULT_REGIONS", "KINDS", "MAX_TEXT_CHARS", "Finding", "configure", "detect"]

KINDS = ("email", "phone", "ssn", "card", "iban", "ip", "dob", "secret", "name", "address", "national_id", "tax_id",
         "passport", "driving_licence")
"""Kinds the text detectors find; the tag of a kind is ``pii.<kind>``."""

DEFAULT_REGIONS = ("US", "GB", "DE", "FR", "JP")
"""Region hints for phone numbers written without a country code, tried in order."""

DEFAULT_MIN_CONFIDENCE = 0.5
_ID_WANTED = frozenset(ID_KINDS)


@dataclass(frozen=True, slots=True)
class Finding:
    """One PII span in a text: ``text[start:end]`` is the value (not kept here)."""

    kind: str
    start: int
    end: int
    confidence: float
    scheme: str | None = None
    """The identifier scheme for identifiers (``es.dni``, ``eu.vat``, ``mrz``), else None."""

    @property
    def tag(self) -> str:
        """The catalog tag for this kind, ``pii.<kind>``."""
        return f"pii.{self.kind}"


# -- look-alikes -------------------------------------------------------------------------------
_UUID = re.compile(r"(?<![0-9A-Za-z])[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}(?![0-9A-Za-z])")
_ISO_TS = re.compile(
    r"(?<!\d)\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2})?(?!\d)"
    r"|(?<!\d)\d{4}-?\d{2}-?\d{2}T\d{2}:?\d{2}(?::?\d{2}(?:[.,]\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2})?(?!\d)"
)
# A run of digits that opens with a plausible yyyymmdd[hhmm[ss[fff]]] is a compact timestamp.
_COMPACT_TS = re.compile(
    r"(?<![\d])(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])(?:[01]\d|2[0-3])[0-5]\d(?:[0-5]\d)?\d{0,9}(?!\d)"
)
_ISBN = re.compile(r"\bISBN(?:-1[03])?:?\s*[0-9][0-9 -]{8,16}[0-9Xx]\b|(?<![\d-])97[89][- ]\d{1,5}[- ]\d{1,7}[- ]\d{1,7}[- ]\d(?![\d-])")
_ISBN10_SHAPE = re.compile(r"\d{1,5}-\d{1,7}-\d{1,7}-[\dXx]")
_VERSION_BEFORE = re.compile(r"(?:\bv|\bver\.?|\bversion|\brelease|\bbuild|\brev\.?|\bfirmware|\bOS)\s*$", re.I)

# -- context words -------------------------------------------------------------------------------
_NEGATIVE = re.compile(
    r"(?:\b(?:order|invoice|ref(?:erence)?|tracking|ticket|shipment|sku|isbn|po|case|id|no\.|nr\.?|nº|n°|"
    r"account|factura|facture|fattura|rechnung|factuur|faktura|bestellung|commande|pedido|ordine|ärende|sag)|#)\W{0,3}$",
    re.I,
)
_CONTEXT = {
    "phone": re.compile(
        r"\b(?:tel|phone|mobile|mob|cell|call|fax|whatsapp|sms|contact|reach|telefon|handy|rufnummer|rückruf|"
        r"téléphone|portable|tél|numéro|appel|rappeler|llam|teléfono|móvil|número|richiamare|chiamare|cellulare|"
        r"retornar|ligar|celular|terugbellen|bel|mobiel|zadzwo|telefonu|ring|mobil|soita|numeroon|puhelin|電話|携帯)",
        re.I),
    "card": re.compile(r"\b(?:card|visa|mastercard|amex|discover|credit|debit|cc|pan|kreditkarte|carte)", re.I),
    "ssn": re.compile(r"\b(?:ssn|social security|soc\.? sec|tax id|tin)\b", re.I),
    "dob": re.compile(
        r"(?:\bdob\b|\bd\.o\.b\b|date of birth|\bborn\b|\bbirth|\bbirthday|geboren|geburtsdatum|\bgeb\.|"
        r"\bné\b|\bnée\b|naissance|生年月日|生まれ|誕生日|age\b)",
        re.I,
    ),
    "secret": re.compile(r"(?:secret|token|api[_ -]?key|apikey|password|passwd|pwd|credential|bearer|auth)", re.I),
}
_WINDOW = 40

# -- candidates ---------------------------------------------------------------------------------
_EMAIL = re.compile(
    # Unicode letters are allowed (RFC 6531 addresses, IDN domains).
    r"(?<![\w.+%-])[^\W_](?:[\w.%+-]{0,62}[\w%+-])?"
    r"@(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.)+[^\W\d_]{2,63}(?![\w@-])"
)
_FILE_TLDS = frozenset({"png", "jpg", "jpeg", "gif", "svg", "webp", "ico", "bmp", "tif", "tiff"})
_SSN = re.compile(r"(?<![\w-])(\d{3})([- ]?)(\d{2})\2(\d{4})(?![\w-])")
_CARD = re.compile(r"(?<![\w-])\d(?:[ -]?\d){11,18}(?![\w-])")
_IBAN = re.compile(r"(?<![\w])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}(?![\w])")
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w]|\.\d)")
_IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?(?![\w:.])")
_PHONE = re.compile(
    r"(?<![\w+/.-])(?:\+|\(\+?)?\d[\d ().\-/]{4,22}\d(?:\s*(?:x|ext\.?|#)\s*\d{1,6})?(?![\w-]|\.\d)"
)
_DATE = re.compile(
    r"(?<![\w/.-])(?:\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{4}|\d{4}年\d{1,2}月\d{1,2}日"
    rf"|\d{{1,2}}(?:st|nd|rd|th|er)?\.?\s+(?:{MONTH_WORDS})\.?,?\s+\d{{4}}"
    rf"|(?:{MONTH_WORDS})\.?\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}})(?![\w/-])",
    re.I,
)
_YEAR_REF = re.compile(r"(?:19|20)\d\d[/-]\d{3,7}")
_DATE_SHAPE = re.compile(r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}")
_SECRET_PREFIXED = re.compile(
    r"(?<![\w])(?:"
    r"(?:AKIA|ASIA)[0-9A-Z]{16}"
    r"|gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255}"
    r"|xox[baprse]-[A-Za-z0-9-]{10,250}"
    r"|(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,247}"
    r"|hwk_[a-z0-9]{12}\.[A-Za-z0-9_-]{43}"
    r"|glpat-[A-Za-z0-9_-]{20}"
    r"|AIza[0-9A-Za-z_-]{35}"
    r")(?![\w-])"
)
_PRIVATE_KEY = re.compile(
    r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
    r"(?:[\s\S]{0,20000}?-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|[A-Za-z0-9+/=\s:,-]*)"
)
_TOKEN = re.compile(r"(?<![\w+/.-])[A-Za-z0-9+/_.-]{24,512}={0,2}(?![\w+/=.-])")
_HEX = re.compile(r"[0-9a-fA-F]+")


def _before(text: str, start: int, width: int = _WINDOW) -> str:
    return text[max(0, start - width):start]


_LETTER = re.compile(r"[^\W\d_]")


def _near(text: str, start: int, end: int, kind: str, width: int = _WINDOW) -> bool:
    pattern = _CONTEXT[kind]
    lo, hi = max(0, start - width), end + width // 2
    return bool((_LETTER.search(text, lo, start) and pattern.search(text, lo, start))
                or (_LETTER.search(text, end, hi) and pattern.search(text, end, hi)))


def _overlaps(spans: list[tuple[int, int]], start: int, end: int) -> bool:
    """Whether [start, end) overlaps a span of ``spans``, sorted by start and not overlapping each
    other (what :func:`_excluded` returns): a binary search, so big texts stay linear."""
    i = bisect.bisect_left(spans, (end,))
    return i > 0 and spans[i - 1][1] > start


def _overlaps_any(spans: list[tuple[int, int]], start: int, end: int) -> bool:
    return any(s < end and start < e for s, e in spans)


def _excluded(text: str) -> list[tuple[int, int]]:
    """Look-alike spans, sorted and merged."""
    spans: list[tuple[int, int]] = []
    for pattern in (_UUID, _ISO_TS, _COMPACT_TS, _ISBN):
        spans.extend(m.span() for m in pattern.finditer(text))
    spans.sort()
    merged: list[tuple[int, int]] = []
    for s, e in spans:
        if merged and s < merged[-1][1]:
            if e > merged[-1][1]:
                merged[-1] = (merged[-1][0], e)
        else:
            merged.append((s, e))
    return merged


# -- detectors ----------------------------------------------------------------------------------
def _emails(text: str, excluded: list[tuple[int, int]]) -> Iterable[Finding]:
    if "@" not in text:
        return
    for m in _EMAIL.finditer(text):
        value = m.group()
        local, _, domain = value.rpartition("@")
        if ".." in local or len(local) > 64 or len(value) > 254:
            continue
        if domain.rsplit(".", 1)[-1].lower() in _FILE_TLDS:
            continue
        yield Finding("email", m.start(), m.end(), 0.95)


def _ssns(text: str, excluded: list[tuple[int, int]]) -> Iterable[Finding]:
    for m in _SSN.finditer(text):
        if _overlaps(excluded, *m.span()) or not ssn_valid(m.group(1), m.group(3), m.group(4)):
            continue
        context = _near(text, m.start(), m.end(), "ssn")
        if m.group(2) == "-":
            conf = 0.95 if context else 0.85
        else:  # a bare nine-digit run is an SSN only when the text says so
            conf = 0.85 if context else 0.3
        if not context and _NEGATIVE.search(_before(text, m.start(), 16)):
            conf = 0.2
        yield Finding("ssn", m.start(), m.end(), conf)


def _cards(text: str, excluded: list[tuple[int, int]]) -> Iterable[Finding]:
    for m in _CARD.finditer(text):
        if _overlaps(excluded, *m.span()):
            continue
        raw = m.group()
        seps = set(re.sub(r"\d", "", raw))
        if len(seps) > 1:
            continue
        digits = re.sub(r"\D", "", raw)
        if not luhn_valid(digits) or card_issuer(digits) is None:
            continue
        context = _near(text, m.start(), m.end(), "card")
        conf = 0.97 if context else 0.9
        if not context and _NEGATIVE.search(_before(text, m.start(), 16)):
            conf = 0.3
        yield Finding("card", m.start(), m.end(), conf)


def _ibans(text: str, excluded: list[tuple[int, int]]) -> Iterable[Finding]:
    for m in _IBAN.finditer(text):
        raw = m.group()
        compact = raw.replace(" ", "")
        # The pattern may run into a following word-free token; shrink to the country length.
        want = IBAN_LENGTHS.get(compact[:2])
        if want is None or len(compact) < want:
            continue
        if len(compact) > want:
            if " " not in raw:
                continue
            compact = compact[:want]
            # end offset: walk raw until ``want`` alphanumerics are consumed
            seen = 0
            for i, ch in enumerate(raw):
                if ch != " ":
                    seen += 1
                if seen == want:
                    end = m.start() + i + 1
                    break
        else:
            end = m.end()
        if iban_valid(compact):
            yield Finding("iban", m.start(), end, 0.97)


def _ips(text: str, excluded: list[tuple[int, int]]) -> Iterable[Finding]:
    if "." in text:
        for m in _IPV4.finditer(text):
            if ip_version(m.group()) != 4 or _VERSION_BEFORE.search(_before(text, m.start(), 12)):
                continue
            yield Finding("ip", m.start(), m.end(), 0.85)
    if text.count(":") >= 2:
        for m in _IPV6.finditer(text):
            if _overlaps(excluded, *m.span()):
                continue
            if ip_version(m.group()) == 6:
                yield Finding("ip", m.start(), m.end(), 0.9)


def _phones(text: str, excluded: list[tuple[int, int]], regions: tuple[str, ...]) -> Iterable[Finding]:
    for m in _PHONE.finditer(text):
        start, end = m.span()
        raw = m.group().rstrip(" ")
        end = start + len(raw)
        if _overlaps(excluded, start, end):
            continue
        core = re.split(r"\s*(?:x|ext\.?|#)\s*\d", raw, maxsplit=1)[0]
        digits = re.sub(r"\D", "", core)
        if not 7 <= len(digits) <= 15:
            continue
        formatted = not core.isdigit()
        seps = set(re.sub(r"[\d+]", "", core))
        if _DATE_SHAPE.fullmatch(core) or _ISBN10_SHAPE.fullmatch(core):
            continue
        if seps == {"."}:
            # dotted numbers: a version string or an IP unless every group is 2-4 digits
            groups = core.split(".")
            if core.startswith("+") and len(groups) >= 3:
                groups = groups[2:]  # "+61.2.0252.7634": country and area codes may be one digit
            if len(groups) < (2 if core.startswith("+") else 3) or any(not 2 <= len(g) <= 4 for g in groups) or _VERSION_BEFORE.search(_before(text, start, 12)):
                continue
        if re.fullmatch(r"\d{3}-\d{2}-\d{4}", core):
            continue  # SSN shape
        if _YEAR_REF.fullmatch(core):
            continue  # a year-numbered reference (2024/04474, 2019-00123)
        if 12 <= len(digits) <= 19 and luhn_valid(digits) and card_issuer(digits) and not core.startswith("+"):
            continue  # card shape
        if start and text[start - 1] == "#":
            continue  # "#7928684" is a reference whatever words are near
        context = _near(text, start, end, "phone")
        negative = _NEGATIVE.search(_before(text, start, 16))
        if negative and not formatted:
            continue  # "pedido 1053051738": a bare run right after a reference word
        if not context and (negative or not formatted):
            continue  # a bare digit run, or one labelled as an order/invoice number
        verdict = phone_verdict(raw, regions)
        if verdict == 0.0:
            continue
        conf = min(0.95, verdict + (0.1 if context else 0.0))
        yield Finding("phone", start, end, conf)


def _dobs(text: str, excluded: list[tuple[int, int]]) -> Iterable[Finding]:
    for m in _DATE.finditer(text):
        if not _near(text, m.start(), m.end(), "dob"):
            continue
        if parse_birth_date(m.group()) is not None:
            yield Finding("dob", m.start(), m.end(), 0.85)


def _secrets(text: str, excluded: list[tuple[int, int]]) -> Iterable[Finding]:
    found: list[tuple[int, int]] = []
    if "PRIVATE KEY" in text:
        for m in _PRIVATE_KEY.finditer(text):
            found.append(m.span())
            yield Finding("secret", m.start(), m.end(), 0.99)
    for m in _SECRET_PREFIXED.finditer(text):
        if not _overlaps_any(found, *m.span()):
            found.append(m.span())
            yield Finding("secret", m.start(), m.end(), 0.95)
    for m in _TOKEN.finditer(text):
        start, end = m.span()
        token = m.group()
        if _overlaps_any(found, start, end) or _overlaps(excluded, start, end):
            continue
        if token.count(".") >= 2 and not token.startswith("ey"):
            continue  # dotted names (hosts, packages); a JWT starts with "ey"
        classes = sum((any(c.islower() for c in token), any(c.isupper() for c in token),
                       any(c.isdigit() for c in token)))
        if classes < 3 or _HEX.fullmatch(token):
            continue
        entropy = shannon_entropy(token)
        if entropy < 4.0:
            continue
        context = _near(text, start, end, "secret")
        yield Finding("secret", start, end, 0.9 if context else 0.6)


def _resolve(findings: list[Finding]) -> list[Finding]:
    """Keep the most confident of overlapping findings (longer wins a tie), in text order."""
    kept: list[Finding] = []
    spans: list[tuple[int, int]] = []  # kept spans in text order (they never overlap each other)
    for f in sorted(findings, key=lambda f: (-f.confidence, -(f.end - f.start), f.start)):
        i = bisect.bisect_left(spans, (f.start, f.end))
        if (i > 0 and spans[i - 1][1] > f.start) or (i < len(spans) and spans[i][0] < f.end):
            continue
        spans.insert(i, (f.start, f.end))
        kept.append(f)
    return sorted(kept, key=lambda f: f.start)


_RULES: TextRules = TextRules()
_DIGIT = re.compile(r"\d")
MAX_TEXT_CHARS = 16 * 1024 * 1024
"""Texts longer than this are refused (:class:`~headwater.errors.InvalidInput`): scan them in parts."""


def configure(rules: TextRules | Any | None) -> TextRules:
    """Install custom recognizers and allow/deny lists for every caller of :func:`detect`.

    ``rules`` is a :class:`~headwater.pii._custom.TextRules`, a ``PiiTextConfig`` (the
    ``pii.text`` section of the platform config) or None to clear them. The platform calls this
    when it opens, so the ``redact_pii`` mask, scans and topic checks all use the same rules.
    """
    global _RULES
    if rules is None:
        _RULES = TextRules()
    elif isinstance(rules, TextRules):
        _RULES = rules
    else:
        _RULES = compile_rules(getattr(rules, "recognizers", ()), getattr(rules, "lists", ()))
    return _RULES


def detect(
    text: str,
    *,
    kinds: Iterable[str] | None = None,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    regions: tuple[str, ...] = DEFAULT_REGIONS,
    dataset: str | None = None,
    column: str | None = None,
) -> list[Finding]:
    """PII spans in ``text``, non-overlapping, in text order, at or above ``min_confidence``.

    ``kinds`` restricts the detectors (default: all of :data:`KINDS` and the configured custom
    kinds); ``regions`` are the phone region hints for numbers written without a country code;
    ``dataset``/``column`` pick the allow/deny lists that apply (see :func:`configure`).
    """
    if not isinstance(text, str):
        from headwater.errors import InvalidInput

        raise InvalidInput(f"PII detection takes text (str), not {type(text).__name__}")
    if not text:
        return []
    if len(text) > MAX_TEXT_CHARS:
        from headwater.errors import InvalidInput

        raise InvalidInput(f"text of {len(text)} characters is over the {MAX_TEXT_CHARS} limit; scan it in parts")
    rules = _RULES
    custom = {r.kind for r in rules.recognizers}
    wanted = set(KINDS) | custom if kinds is None else set(kinds)
    unknown = wanted - set(KINDS) - custom - {"denied"}
    if unknown:
        from headwater.errors import InvalidInput

        raise InvalidInput(f"unknown PII kinds {sorted(unknown)}; known: {', '.join(KINDS)}")
    findings = _builtin(text, wanted, min_confidence, regions)
    for r in rules.recognizers:
        if r.kind in wanted:
            findings.extend(Finding(r.kind, a, b, c) for a, b, c in r.find(text))
    allow, deny = rules.scoped(dataset, column) if rules.lists else (frozenset(), ())
    folded = text.casefold() if (allow or deny) and len(text.casefold()) == len(text) else text.lower()
    for term in deny:
        findings.extend(Finding("denied", a, b, 0.99) for a, b in _occurrences(folded, term.casefold()))
    resolved = [f for f in _resolve(findings) if f.confidence >= min_confidence]
    if allow:
        # an allowed value is never reported, nor any finding inside one of its occurrences
        spans = sorted(span for term in allow for span in _occurrences(folded, term))
        resolved = [f for f in resolved
                    if text[f.start:f.end].casefold() not in allow and not any(a <= f.start and f.end <= b for a, b in spans)]
    return resolved


def _occurrences(folded: str, term: str) -> list[tuple[int, int]]:
    out = []
    pos = folded.find(term) if term else -1
    while pos >= 0:
        out.append((pos, pos + len(term)))
        pos = folded.find(term, pos + len(term))
    return out


def _builtin(text: str, wanted: set[str], min_confidence: float, regions: tuple[str, ...]) -> list[Finding]:
    has_digit = _DIGIT.search(text) is not None
    excluded = _excluded(text) if has_digit else []
    findings: list[Finding] = []
    if "email" in wanted:
        findings.extend(_emails(text, excluded))
    if "secret" in wanted:
        findings.extend(_secrets(text, excluded))
    if has_digit:
        if "ssn" in wanted:
            findings.extend(_ssns(text, excluded))
        if "card" in wanted:
            findings.extend(_cards(text, excluded))
        if "iban" in wanted:
            findings.extend(_ibans(text, excluded))
        if "ip" in wanted:
            findings.extend(_ips(text, excluded))
        if "dob" in wanted:
            findings.extend(_dobs(text, excluded))
        if "phone" in wanted:
            findings.extend(_phones(text, excluded, regions))
    elif "ip" in wanted and "::" in text:
        findings.extend(_ips(text, excluded))
    if has_digit and wanted & _ID_WANTED:
        findings.extend(Finding(s.kind, s.start, s.end, s.confidence, s.scheme)
                        for s in find_ids(text, excluded) if s.kind in wanted)
    if has_digit and "address" in wanted:
        findings.extend(Finding("address", a, b, c) for a, b, c in find_addresses(text))
    if "name" in wanted:
        findings.extend(Finding("name", a, b, c) for a, b, c in find_names(text) if c >= min_confidence)
    return findings
