"""National identifiers, tax and VAT numbers, passports and driving licences in free text.

Candidates are runs of upper-case letters and digits with the separators identifiers are written
with (``12.345.678-Z``, ``AB 12 34 56 C``, ``1 85 05 78 006 084 36``). A candidate is compacted
and its shape (length, where the letters are) picks the ``python-stdnum`` modules that could
validate it; only those run. Each scheme says whether its check is strong enough to report a
bare number (``strong``: check letters, two check digits, an embedded date and a checksum, or a
country prefix) or whether the text must name it first (``weak``: one mod-11 digit is passed by
one number in eleven, so an order number would be a Dutch BSN). Passports and driving licences
have no checksum outside the machine-readable zone: they are reported next to their name only
(plus MRZ lines and UK licences, whose structure and check digits identify them).

``stdnum`` validators cost 20-50 us a call, so the shape filter and the context check come first.
"""

from __future__ import annotations

import bisect
import importlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache

__all__ = ["ID_KINDS", "SCHEMES", "Scheme", "find_ids"]

ID_KINDS = ("national_id", "tax_id", "passport", "driving_licence")


@dataclass(frozen=True, slots=True)
class Scheme:
    """One identifier scheme: the stdnum module that validates it and when to trust it."""

    module: str
    """``python-stdnum`` module under ``stdnum.`` (``es.dni``), or ``""`` for a local check."""
    kind: str
    shape: str
    """Regular expression the compact (separator-free, upper-case) value must match in full."""
    strong: bool
    """Report without a context word (the check alone rules out chance)."""
    context: str
    """Words that name the scheme (regular expression, case-insensitive)."""


_S = Scheme
SCHEMES: tuple[Scheme, ...] = (
    # -- personal national identifiers (EU-27 first) --
    _S("at.vnr", "national_id", r"\d{10}", False, r"sozialversicherungs|SVNR|VSNR|SV-Nr"),
    _S("be.nn", "national_id", r"\d{11}", False, r"rijksregister|registre national|national number|NISS|INSZ"),
    _S("bg.egn", "national_id", r"\d{10}", False, r"ЕГН|EGN"),
    _S("hr.oib", "national_id", r"\d{11}", False, r"OIB"),
    _S("cz.rc", "national_id", r"\d{9,10}", False, r"rodné číslo|rodne cislo|RČ|birth number"),
    _S("sk.rc", "national_id", r"\d{9,10}", False, r"rodné číslo|RČ|birth number"),
    _S("dk.cpr", "national_id", r"\d{10}", False, r"CPR"),
    _S("ee.ik", "national_id", r"\d{11}", False, r"isikukood|personal code"),
    _S("fi.hetu", "national_id", r"\d{6}[+A-FU-Y]?\d{3}[0-9A-Y]", True, r"henkilötunnus|hetu|personal identity"),
    _S("fr.nir", "national_id", r"[12]\d{4}[0-9AB]\d{7}\d{2}", True, r"sécurité sociale|securite sociale|NIR|INSEE"),
    _S("de.idnr", "national_id", r"[1-9]\d{10}", False,
       r"steuer-?id|steueridentifikations|identifikationsnummer|IdNr|tax id"),
    _S("gr.amka", "national_id", r"\d{11}", False, r"AMKA|ΑΜΚΑ"),
    _S("ie.pps", "national_id", r"\d{7}[A-W][ABWTXZ]?", True, r"PPS|personal public service"),
    _S("it.codicefiscale", "national_id", r"[A-Z]{6}[0-9LMNPQRSTUV]{2}[ABCDEHLMPRST][0-9LMNPQRSTUV]{2}[A-Z][0-9LMNPQRSTUV]{3}[A-Z]",
       True, r"codice fiscale|C\.?F\."),
    _S("lt.asmens", "national_id", r"\d{11}", False, r"asmens kodas"),
    _S("nl.bsn", "national_id", r"\d{9}", False, r"BSN|burgerservice|sofinummer|sofi-nummer"),
    _S("pl.pesel", "national_id", r"\d{11}", False, r"PESEL"),
    _S("pt.cc", "national_id", r"\d{9}[A-Z]{2}\d", True, r"cartão de cidadão|cartao de cidadao|CC"),
    _S("ro.cnp", "national_id", r"[1-9]\d{12}", False, r"CNP|cod numeric personal"),
    _S("si.emso", "national_id", r"\d{13}", False, r"EMŠO|EMSO"),
    _S("es.dni", "national_id", r"\d{8}[A-Z]", True, r"DNI|documento nacional"),
    _S("es.nie", "national_id", r"[XYZ]\d{7}[A-Z]", True, r"NIE"),
    _S("se.personnummer", "national_id", r"(?:\d{2})?\d{6}[-+]?\d{4}", False, r"personnummer|person-?nr"),
    _S("no.fodselsnummer", "national_id", r"\d{11}", False, r"fødselsnummer|fodselsnummer|personnummer"),
    _S("ch.ssn", "national_id", r"756\d{10}", True, r"AHV|AVS|sozialversicherung|assurance"),
    _S("gb.nhs", "national_id", r"\d{10}", False, r"NHS"),
    _S("", "national_id", r"(?!BG|GB|KN|NK|NT|TN|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]\d{6}[A-D]", True,
       r"national insurance|NINO|NI number|NI no"),  # gb NINO: format rules only, but a rare shape
    _S("us.itin", "national_id", r"9\d{2}(?:5\d|6[0-5]|7\d|8[0-8]|9[0-2]|9[4-9])\d{4}", False, r"ITIN"),
    _S("ca.sin", "national_id", r"\d{9}", False, r"SIN|social insurance|NAS|assurance sociale"),
    _S("br.cpf", "national_id", r"\d{11}", False, r"CPF"),
    _S("in_.aadhaar", "national_id", r"[2-9]\d{11}", False, r"aadhaar|aadhar|आधार|UIDAI"),
    _S("in_.pan", "national_id", r"[A-Z]{3}[ABCFGHJLPT][A-Z]\d{4}[A-Z]", False, r"PAN|permanent account"),
    _S("cn.ric", "national_id", r"\d{17}[0-9X]", True, r"身份证|居民身份|resident identity|ID card"),
    _S("jp.in_", "national_id", r"\d{12}", False, r"個人番号|マイナンバー|my ?number|individual number"),
    _S("au.tfn", "national_id", r"\d{8,9}", False, r"TFN|tax file"),
    _S("mx.curp", "national_id", r"[A-Z]{4}\d{6}[HMX][A-Z]{5}[0-9A-Z]\d", True, r"CURP"),
    _S("tr.tckimlik", "national_id", r"[1-9]\d{10}", False, r"kimlik|TCKN|T\.C\."),
    _S("za.idnr", "national_id", r"\d{13}", False, r"ID number|identity number"),
    _S("il.idnr", "national_id", r"\d{9}", False, r"teudat|תעודת זהות|ת\.ז"),
    _S("kr.rrn", "national_id", r"\d{13}", False, r"주민등록|RRN|resident registration"),
    # -- tax, VAT and company numbers --
    _S("eu.vat", "tax_id",
       r"(?:ATU\d{8}|BE[01]\d{9}|BG\d{9,10}|CY\d{8}[A-Z]|CZ\d{8,10}|DE\d{9}|DK\d{8}|EE\d{9}|EL\d{9}|"
       r"ES[0-9A-Z]\d{7}[0-9A-Z]|FI\d{8}|FR[0-9A-Z]{2}\d{9}|HR\d{11}|HU\d{8}|IE\d[0-9A-Z+*]\d{5}[A-Z]{1,2}|"
       r"IT\d{11}|LT(?:\d{9}|\d{12})|LU\d{8}|LV\d{11}|MT\d{8}|NL\d{9}B\d{2}|PL\d{10}|PT\d{9}|RO\d{2,10}|"
       r"SE\d{12}|SI\d{8}|SK\d{10}|XI\d{9})", True, r"VAT|USt|TVA|IVA|BTW|MwSt|moms|ALV|DPH|ΑΦΜ"),
    _S("gb.vat", "tax_id", r"GB(?:\d{9}|\d{12}|GD\d{3}|HA\d{3})", True, r"VAT"),
    _S("ch.uid", "tax_id", r"CHE\d{9}", True, r"UID|MWST|TVA|IVA"),
    _S("br.cnpj", "tax_id", r"\d{14}", False, r"CNPJ"),
    _S("in_.gstin", "tax_id", r"\d{2}[A-Z]{5}\d{4}[A-Z][1-9A-Z]Z[0-9A-Z]", True, r"GST"),
    _S("cn.uscc", "tax_id", r"[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}", False, r"统一社会信用代码|USCC|credit code"),
    _S("au.abn", "tax_id", r"\d{11}", False, r"ABN|business number"),
    _S("au.acn", "tax_id", r"\d{9}", False, r"ACN|company number"),
    _S("fr.siren", "tax_id", r"\d{9}", False, r"SIREN"),
    _S("fr.siret", "tax_id", r"\d{14}", False, r"SIRET"),
    _S("fr.nif", "tax_id", r"[0-3]\d{12}", False, r"numéro fiscal|numero fiscal|NIF|SPI"),
    _S("de.stnr", "tax_id", r"\d{10,13}", False, r"steuernummer|St\.?-?Nr"),
    _S("es.cif", "tax_id", r"[ABCDEFGHJNPQRSUVW]\d{7}[0-9A-J]", True, r"CIF|NIF"),
    _S("pl.nip", "tax_id", r"\d{10}", False, r"NIP"),
    _S("pl.regon", "tax_id", r"\d{9}|\d{14}", False, r"REGON"),
    _S("it.iva", "tax_id", r"\d{11}", False, r"partita iva|P\.? ?IVA"),
    _S("pt.nif", "tax_id", r"[1-9]\d{8}", False, r"NIF|contribuinte"),
    _S("dk.cvr", "tax_id", r"\d{8}", False, r"CVR"),
    _S("fi.ytunnus", "tax_id", r"\d{7}-?\d", False, r"y-tunnus|business id"),
    _S("se.orgnr", "tax_id", r"\d{6}-?\d{4}", False, r"organisationsnummer|org\.? ?nr"),
    _S("us.ein", "tax_id", r"\d{9}", False, r"EIN|employer identification"),
    _S("ca.bn", "tax_id", r"\d{9}(?:[A-Z]{2}\d{4})?", False, r"business number|BN"),
    _S("gb.utr", "tax_id", r"K?\d{10}K?", False, r"UTR|unique taxpayer"),
)


@cache
def _validator(module: str) -> Callable[[str], bool]:
    if not module:
        return lambda _v: True
    try:
        mod = importlib.import_module(f"stdnum.{module}")
    except ImportError as err:  # pragma: no cover - a declared dependency of the pii extra
        from headwater.errors import MissingDependency

        raise MissingDependency("national identifier checks need python-stdnum (pip install 'headwater[pii]')",
                                package="python-stdnum") from err
    check = mod.is_valid

    def valid(value: str) -> bool:
        try:
            return bool(check(value))
        except Exception:  # noqa: BLE001 - some validators raise KeyError/IndexError on odd input
            return False

    return valid


def _by_length() -> dict[int, list[tuple[re.Pattern[str], Scheme]]]:
    """Schemes per compact length they can have (the shape's possible lengths)."""
    table: dict[int, list[tuple[re.Pattern[str], Scheme]]] = {}
    for s in SCHEMES:
        pattern = re.compile(s.shape)
        for n in _lengths(s.shape):
            table.setdefault(n, []).append((pattern, s))
    return table


def _lengths(shape: str) -> range | list[int]:
    """Lengths 5..20 between the shortest and longest string ``shape`` matches."""
    from re import _parser  # type: ignore[attr-defined]  # the stdlib's own width computation

    lo, hi = _parser.parse(shape).getwidth()
    return range(max(lo, 5), min(hi, 20) + 1)


_TABLE: dict[int, list[tuple[re.Pattern[str], Scheme]]] | None = None


def _table() -> dict[int, list[tuple[re.Pattern[str], Scheme]]]:
    global _TABLE
    if _TABLE is None:
        _TABLE = _by_length()
    return _TABLE


def _words(alternatives: list[str]) -> str:
    """Context words as one alternation: short ones whole words, long ones also as a compound's start
    (``rijksregister`` in ``rijksregisternummer``)."""
    parts = []
    for alt in alternatives:
        for word in alt.split("|"):
            parts.append(word if len(word) >= 6 else word + r"(?![^\W\d_])")
    return r"(?<![^\W\d_])(?:" + "|".join(sorted(set(parts), key=len, reverse=True)) + ")"


@cache
def _context(kind_or_module: str) -> re.Pattern[str]:
    words = [s.context for s in SCHEMES if s.module == kind_or_module or (not s.module and kind_or_module == "nino")]
    return re.compile(_words(words), re.I)


_ANY_CONTEXT = re.compile(_words([s.context for s in SCHEMES] + [r"ID|no\.|number|nummer|numéro|número|numero|nr"]),
                          re.I)
_PASSPORT_CONTEXT = re.compile(
    r"(?:passport|reisepass|pass-?nr|passnummer|pasaporte|passeport|passaporto|paszport|paspoort|passi|pas\b|"
    r"паспорт|護照|旅券|パスポート|护照)", re.I)
_LICENCE_CONTEXT = re.compile(
    r"(?:driv(?:ing|er'?s?) licen[cs]e|licen[cs]e (?:no|number|#)|\bDL\b|führerschein|fuhrerschein|permis de conduire|"
    r"carnet de conducir|licencia de conducir|patente di guida|rijbewijs|prawo jazdy|körkort|ajokortti|kørekort|"
    r"carta de condução|carteira de motorista|CNH|водительское|運転免許)", re.I)

# A run of upper-case letters and digits with separators; must hold a digit (checked after).
_CANDIDATE = re.compile(r"(?<![\w.+/-])[0-9A-Z](?:[0-9A-Z]|[./-](?=[0-9A-Z])| (?=[0-9A-Z])){4,27}(?![\w/-]|[.-]\w)")
_SEPARATORS = re.compile(r"[ ./-]")
_TOKEN_ID = re.compile(r"(?<![\w./+-])[A-Z0-9][A-Z0-9./-]{4,24}[A-Z0-9](?![\w/-]|[.-]\w)")
# Machine-readable passport zone (ICAO 9303 TD3 line 2): number, check, nationality, birth date ...
_MRZ2 = re.compile(r"(?<![A-Z0-9<])([A-Z0-9<]{9})(\d)([A-Z<]{3})(\d{6})(\d)[MF<](\d{6})(\d)[A-Z0-9<]{14}(\d)(\d)(?![A-Z0-9<])")
# UK driving licence: surname (5, padded with 9), decade digit, month (+5 for women), day, year
# digit, initials (2, padded with 9), a digit, two check letters.
_UK_DL = re.compile(r"[A-Z9]{5}\d(?:[05][1-9]|[16][0-2])(?:0[1-9]|[12]\d|3[01])\d[A-Z9]{2}\d[A-Z]{2}(?:\d{2})?(?![\w-])")
_PASS_TOKEN = re.compile(r"(?<![\w-])(?=[A-Z0-9]*\d)[A-Z0-9]{6,10}(?![\w-])")
_LIC_TOKEN = re.compile(r"(?<![\w-])(?=[A-Z0-9 -]*\d)[A-Z0-9](?:[A-Z0-9]|[ -](?=[A-Z0-9])){4,17}(?![\w-])")
_WINDOW = 48


def _hits(spans: list[tuple[int, int]], start: int, end: int) -> bool:
    """Whether [start, end) overlaps one of ``spans`` (sorted, not overlapping each other)."""
    i = bisect.bisect_left(spans, (end,))
    return i > 0 and spans[i - 1][1] > start


def _mrz_check(field: str) -> int:
    weights = (7, 3, 1)
    total = 0
    for i, ch in enumerate(field):
        if ch.isdigit():
            v = ord(ch) - 48
        elif ch == "<":
            v = 0
        else:
            v = ord(ch) - 55
        total += v * weights[i % 3]
    return total % 10


_LETTER = re.compile(r"[^\W\d_]")


def _near(pattern: re.Pattern[str], text: str, start: int, end: int) -> bool:
    lo = max(0, start - _WINDOW)
    # a window without letters holds no context word: skip the big alternation (digit floods)
    return bool((_LETTER.search(text, lo, start) and pattern.search(text, lo, start))
                or (_LETTER.search(text, end, end + 16) and pattern.search(text, end, end + 16)))


def _variants(raw: str) -> Iterator[tuple[int, int, str]]:
    """(offset, length, compact) for the whole run, then the run without leading labels, then each token."""
    compact = _SEPARATORS.sub("", raw)
    yield 0, len(raw), compact
    parts = raw.split(" ")
    if len(parts) > 1:
        skip = 0
        while skip < len(parts) - 1 and parts[skip].isalpha():
            skip += 1
        offsets = []
        pos = 0
        for p in parts:
            offsets.append(pos)
            pos += len(p) + 1
        for k in range(1, skip + 1):
            rest = " ".join(parts[k:])
            yield offsets[k], len(rest), _SEPARATORS.sub("", rest)
        for i, p in enumerate(parts[skip:], start=skip):
            if len(p) >= 5:
                yield offsets[i], len(p), _SEPARATORS.sub("", p)
        # a trailing label after the number ("12345678Z DNI") or a number split from a
        # following word: everything but the last token
        if len(parts) - skip > 2:
            head = " ".join(parts[skip:-1])
            yield offsets[skip], len(head), _SEPARATORS.sub("", head)


def _match(compact: str, text: str, start: int, end: int) -> tuple[Scheme, float] | None:
    """The best scheme whose shape fits ``compact`` and whose check passes on ``text[start:end]``."""
    schemes = _table().get(len(compact))
    if not schemes:
        return None
    context_any: bool | None = None
    best: tuple[Scheme, float] | None = None
    for pattern, s in schemes:
        if not pattern.fullmatch(compact):
            continue
        value = text[start:end]
        if s.strong:
            if not _validator(s.module)(value):
                continue
            named = _near(_context(s.module or "nino"), text, start, end)
            conf = 0.97 if named else 0.9
        else:
            if context_any is None:
                context_any = _near(_ANY_CONTEXT, text, start, end)
            if not context_any or not _near(_context(s.module), text, start, end):
                continue
            if not _validator(s.module)(value):
                continue
            conf = 0.92
        if best is None or conf > best[1]:
            best = (s, conf)
            if conf >= 0.97:
                break
    return best


@dataclass(frozen=True, slots=True)
class IdSpan:
    """A found identifier: kind, offsets, confidence and the scheme (``es.dni``; ``mrz``; ``gb.dl``)."""

    kind: str
    start: int
    end: int
    confidence: float
    scheme: str


def find_ids(text: str, excluded: list[tuple[int, int]]) -> list[IdSpan]:
    """Identifiers in ``text`` (upper-case runs with digits), validated as described above."""
    out: list[IdSpan] = []
    taken: list[tuple[int, int]] = []
    if "<" in text:
        for m in _MRZ2.finditer(text):
            g = m.groups()
            if (_mrz_check(g[0]) == int(g[1]) and _mrz_check(g[3]) == int(g[4])
                    and _mrz_check(g[5]) == int(g[6])):
                out.append(IdSpan("passport", m.start(), m.end(), 0.97, "mrz"))
                taken.append(m.span())
    for m in _CANDIDATE.finditer(text):
        raw = m.group()
        if not any(ch.isdigit() for ch in raw):
            continue
        s0 = m.start()
        if _hits(excluded, s0, m.end()) or taken and taken[-1][1] > s0:
            continue
        dl = _UK_DL.match(raw)
        if dl is not None:
            out.append(IdSpan("driving_licence", s0, s0 + dl.end(), 0.9, "gb.dl"))
            continue
        for off, length, compact in _variants(raw):
            if not 5 <= len(compact) <= 20:
                continue
            found = _match(compact, text, s0 + off, s0 + off + length)
            if found is not None:
                scheme, conf = found
                out.append(IdSpan(scheme.kind, s0 + off, s0 + off + length, conf, scheme.module or "gb.nino"))
                taken.append((s0 + off, s0 + off + length))
                break
    out.extend(_documents(text, taken))
    return out


def _documents(text: str, taken: list[tuple[int, int]]) -> Iterator[IdSpan]:
    """Passport and driving-licence numbers written right after their name."""
    ordered = sorted(taken)
    for context, token, kind in ((_PASSPORT_CONTEXT, _PASS_TOKEN, "passport"),
                                 (_LICENCE_CONTEXT, _LIC_TOKEN, "driving_licence")):
        for c in context.finditer(text):
            # the number follows within a few words ("passport no. X1234567", "Reisepass: C01X00T47")
            m = token.search(text, c.end(), c.end() + 24)
            if m is None or _hits(ordered, m.start(), m.end()):
                continue
            value = m.group()
            if sum(ch.isdigit() for ch in value) < 3 or value.isdigit() and len(value) < 6:
                continue
            bisect.insort(ordered, m.span())
            yield IdSpan(kind, m.start(), m.end(), 0.85, kind)
