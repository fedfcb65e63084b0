"""Person names and postal addresses in free text, from gazetteers, token shape and context.

**Names.** One pattern finds runs of capitalised words (with particles such as ``van``/``de la``
and initials). Each word is looked up: a known first name (F), last name (L), both a name and
a common word (A: ``May``, ``Rose``), a common word or title (a break), a street type or place
(a break), or unknown (U). A run is cut into segments of name-like words and each segment is
scored: ``F L``, ``F U`` (an unknown word after a first name is most likely a surname) and
``U L`` are names on their own; a single word or unknown words need context -- a title
(``Mr``, ``Frau``, ``Mme``, ``Sr.``), a greeting (``Dear``, ``Hallo``), a phrase that introduces a
name (``my name is``, ``customer``, ``signed by``) or a verb after it (``John wrote``).

**Addresses.** Every address this finds has a house number: the digits anchor it, which keeps
the cost off ordinary prose. Around a number it looks for a street: number first with a street
type after the name (``221B Baker Street``) or a type first (``12, rue de la Paix``), or the name
first (``Hauptstraße 5``, ``Via Roma 10``, ``Keizersgracht 123``, ``ul. Długa 5``). The span then
extends over a unit (``Apt 4``) and a postcode with its city on the same or the next line, using
the postal-code patterns of ~45 countries. Street types that are common words (``Green``,
``Park``) count only with a postcode or an address word nearby.

Offsets are returned; no value is kept.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache

from headwater.pii._gazetteer import (
    DIRECTIONS,
    PARTICLES,
    TITLES,
    WEAK_TYPES,
    gazetteer,
    name_likeness,
    normalise,
    upper_class,
)

__all__ = ["find_addresses", "find_names"]

# -- names ------------------------------------------------------------------------------------

_STRONG_LEFT = re.compile(
    r"(?:\b(?:nombre es|mi nombre es|il mio nome è|mein name ist|je m'appelle|meu nome é|mijn naam is|"
    r"jag heter|mitt namn är|jeg hedder|nimeni on|nazywam się|dear|hi|hello|hey|hallo|liebe|lieber|hola|ciao|salut|bonjour|cher|chère|querid[oa]|estimad[oa]|"
    r"gentile|caro|cara|beste|geachte|hej|witam|"
    r"name is|name's|named|called|i am|i'm|this is|ich bin|ich heiße|je suis|je m'appelle|me llamo|soy|"
    r"mi chiamo|sono|mijn naam is|ik ben|nazywam się|meu nome é|eu sou|"
    r"name|nom|nombre|nome|naam|imię|namn|navn|nimi|attn|c/o|z\. ?hd\.?|zu händen|"
    r"signed|sincerely|regards|cheers|thanks|thank you|grüße|grüßen|gruß|cordialement|saludos|saluti|groeten|pozdrawiam|"
    r"atenciosamente|mvh|hälsningar)[\s,.:;!-]*)$",
    re.I,
)
_PERSON_LEFT = re.compile(
    r"(?:\b(?:customer|client|patient|employee|tenant|applicant|user|member|guest|passenger|colleague|"
    r"spoke (?:to|with)|talked (?:to|with)|met with|meeting with|called|contacted|informed|told|asked|"
    r"kunde|kundin|mitarbeiter(?:in)?|cliente|klant|klienta|kund|asiakas|för|update:|"
    r"(?:address|adresse|anschrift|dirección|indirizzo|adres|endereço|adress|osoite)(?: for| für| de| di| van| voor)?:?|"
    r"von|de|di|da|van|af|från|fra|dla|klienta)[\s,.:;-]*)$",
    re.I,
)
_WEAK_LEFT = re.compile(
    r"(?:\b(?:customer|client|patient|employee|tenant|applicant|user|member|guest|passenger|driver|agent|contact|"
    r"contacted|spoke|spoke to|spoke with|talked to|met|meet|from|by|with|for|to|cc|manager|owner|holder|"
    r"kunde|kundin|mitarbeiter|patientin|von|mit|für|an|cliente|de|par|pour|avec|con|para|per|da|"
    r"met|voor|van|från|til|dla)[\s,.:;-]*)$",
    re.I,
)
_RIGHT = re.compile(
    r"[ \t]*(?:'s\b|’s\b|\(|,[ \t]*(?:who|our|your|the|der|die|qui|que|che)\b|[ \t](?:called|wrote|said|says|asked|"
    r"reports|writes|calls|asks|wants|needs|belde|ringde|ringede|soitti|ligou|llamó|a appelé|ha chiamato|hat|"
    r"reported|phoned|emailed|mentioned|requested|confirmed|complained|replied|will|would|has|had|is|was|"
    r"hat|ist|war|schrieb|rief|a écrit|a appelé|est|escribió|llamó|es|ha|è|heeft|is|har|jest|ma)\b)",
    re.I,
)
@lru_cache(maxsize=1)
def _strong_left() -> re.Pattern[str]:
    words = sorted({re.escape(w) for w in TITLES | GREETINGS}, key=len, reverse=True)
    return re.compile("(?:" + _STRONG_LEFT.pattern[:-1] + r")$|(?<![^\W\d_])(?:" + "|".join(words)
                      + r")[\s,.:;!-]*$", re.I)


# The context patterns end in "$": searching a window for them tries every alternative at every
# position. The window's last word must be one of the words the pattern can end with first (a
# set lookup), which spares the search for nearly every candidate.
_GATE_WORD = re.compile(r"[^\W\d_][\w'’/]*")


def _gate(*patterns: re.Pattern[str]) -> frozenset[str]:
    return frozenset(w.lower() for p in patterns for w in _GATE_WORD.findall(p.pattern))


_GATE_PERSON = _gate(_PERSON_LEFT)
_GATE_WEAK = _gate(_WEAK_LEFT)


@lru_cache(maxsize=1)
def _gate_strong() -> frozenset[str]:
    return _gate(_STRONG_LEFT) | frozenset(w.rstrip(".") for w in TITLES | GREETINGS) | TITLES


_TRAIL = " \t\n\r,.:;!-"


def _last_word(before: str) -> str:
    tail = before.rstrip(_TRAIL)
    cut = max(tail.rfind(" "), tail.rfind("\n"), tail.rfind("\t"), tail.rfind("("))
    return tail[cut + 1:].lower().rstrip(".")


def _at_sentence_start(before: str) -> bool:
    tail = before.rstrip()
    return not tail or tail[-1] in ".!?:;\n\"“„«("


_SENTENCE_END = re.compile(r"(?:^|[.!?:;\n]\s*|[\"“„«(]\s*)$")

_RUNS: re.Pattern[str] | None = None


def _runs() -> re.Pattern[str]:
    global _RUNS
    if _RUNS is None:
        up = upper_class()
        word = rf"[{up}][^\W\d_]*(?:['’][^\W\d_]+)*(?:-[{up}][^\W\d_]+)*\.?"
        particle = r"(?:" + "|".join(sorted(PARTICLES, key=len, reverse=True)) + r")"
        _RUNS = re.compile(rf"(?<![\w'’.@/-]){word}(?:[ \t]+(?:{particle}[ \t]+){{0,3}}{word}){{0,5}}(?![\w@/])")
    return _RUNS


_F, _L, _A, _U, _I, _P, _B = "F", "L", "A", "U", "I", "P", "B"  # first, last, ambiguous, unknown, initial, particle, break
_N = "N"  # unknown, but shaped like a name (the n-gram model)
_T, _W = "T", "W"  # a strong context word (title, greeting), a person noun (customer, Kunde)

_FUNCTION = frozenset("""
the a an and or but to of in on at by for with from your our my his her their this that it we you i
der die das den dem des ein eine und oder ihr ihre ihren sie wir le la les un une et ou votre vos nous
el los las y su sus nuestro il lo gli e o suo sua de het een en uw jullie
""".split())

GREETINGS = frozenset("""
dear hi hello hey hallo liebe lieber hola ciao salve salut bonjour bonsoir cher chère chers querido querida estimado
estimada gentile gentilissimo gentilissima caro cara egregio egregia beste geachte hej hei moi witam szanowny szanowna
szanowni olá prezado prezada caríssimo thanks regards cheers sincerely grüße gruß cordialement saludos saluti groet
groeten pozdrawiam atenciosamente hälsningar hilsen terveisin signed attn
""".split())
PERSON_NOUNS = frozenset("""
customer client patient employee tenant applicant user member guest passenger driver agent contact colleague
kunde kundin mitarbeiter mitarbeiterin patientin mieter mieterin bewerber bewerberin client cliente patiente salarié
locataire cliente paciente empleado empleada inquilino solicitante paziente dipendente inquilino klant patiënt
medewerker huurder cliente paciente funcionário funcionária klient klienta klientka pacjent pracownik kund patient
anställd hyresgäst kunde medarbejder lejer asiakas potilas työntekijä vuokralainen
""".split())


def _classify(token: str) -> str:
    g = gazetteer()
    bare = token.rstrip(".")
    key = normalise(bare)
    if (key in TITLES or normalise(token) in TITLES or key in GREETINGS) and not (len(bare) > 1 and bare.isupper()):
        return _T
    if key in PERSON_NOUNS:
        return _W
    if len(bare) == 1:
        return _I
    if key in PARTICLES and token[0].islower():
        return _P
    first, last = key in g.first, key in g.last
    common = key in g.common
    if first or last:
        if common or key in g.street_after or key in g.street_before:
            return _A
        if bare.isupper() and len(bare) > 1:
            return _B  # LIMIT, CASE, MARK: capitals are a keyword or a code more often than a name
        return _F if first else _L
    if common or key in g.street_after or key in g.street_before or key in g.regions:
        return _B
    if key in g.lorem:
        return _A  # an ordinary word somewhere, a name elsewhere (Celeste, Grande)
    if bare.isupper():
        return _B  # an acronym (API, USB, GmbH) unless it is a known name
    if key.endswith(g.street_glued) or key in g.city:
        return _B
    return _N if name_likeness(key) > 0 else _U


def _score(kinds: list[str], strong: bool, person: bool, weak: bool, right: bool, sentence_start: bool) -> float:
    """Confidence that a segment of classified words is a person's name, given its context."""
    core = [k for k in kinds if k not in (_P, _I)]
    if not core:
        return 0.0
    n = len(core)
    nf, nl, na, nu, nn = (core.count(k) for k in (_F, _L, _A, _U, _N))
    ctx = strong or person
    if n >= 2:
        if nu == 0 and nf and nl and na <= 1:
            return 0.93  # every word a known name, a first name among them
        if core[0] == _F and nu == 0:
            return 0.9 if (nl or nn or ctx or weak or right) else 0.45
        if nl and nu == 0:
            return 0.85 if (ctx or weak or right or nn) else 0.45
        if nf + nl + na == n:  # all names, some ambiguous (Will Long)
            return 0.85 if (ctx or weak or right) else 0.45
        if right and n <= 3 and na == 0:
            return 0.7  # "Brad Stafford wrote", "Lone Streich reports that"
        if nu + nn + na == n and nn:
            if ctx:
                return 0.85
            return 0.3
        if ctx:
            return 0.8 if (nf or nl or nn) else 0.6
        return 0.3
    k = core[0]
    if strong:
        return {_F: 0.9, _L: 0.88, _A: 0.75, _N: 0.85, _U: 0.7}[k]
    if person:
        return {_F: 0.85, _L: 0.85, _A: 0.3, _N: 0.8, _U: 0.6}[k]
    if right and k in (_F, _L, _N):
        return 0.75
    if weak and k in (_F, _L) and not sentence_start:
        return 0.6
    return 0.3


def find_names(text: str) -> Iterator[tuple[int, int, float]]:
    """(start, end, confidence) of each person name found in ``text``."""
    for m in _runs().finditer(text):
        run = m.group()
        base = m.start()
        # token offsets
        tokens: list[tuple[int, int]] = []
        pos = 0
        for part in run.split():
            i = run.index(part, pos)
            tokens.append((base + i, base + i + len(part)))
            pos = i + len(part)
        kinds = [_classify(text[a:b]) for a, b in tokens]
        for t in range(1, len(kinds)):
            if kinds[t] == _B and kinds[t - 1] == _T:
                word = text[tokens[t][0]:tokens[t][1]]
                if not word.isupper() and normalise(word.rstrip(".")) not in _FUNCTION:
                    kinds[t] = _U
        ordinary = sum(k in (_A, _B) for k in kinds)
        if ordinary >= 3 and 2 * ordinary >= len(kinds) and _T not in kinds:
            continue  # Title Case Text ("Receive Door Happen Star"), not a list of names
        i = 0
        n = len(tokens)
        while i < n:
            if kinds[i] in (_T, _W, _B, _P):
                i += 1
                continue
            j = i
            while j < n and kinds[j] not in (_T, _W, _B):
                j += 1
            # trim particles at the edges
            a, b = i, j
            while a < b and kinds[a] == _P:
                a += 1
            while b > a and kinds[b - 1] == _P:
                b -= 1
            if a < b:
                yield from _segment(text, tokens, kinds, a, b, titled=i > 0 and kinds[i - 1] == _T,
                                    person=i > 0 and kinds[i - 1] == _W)
            i = j


def _segment(text: str, tokens: list[tuple[int, int]], kinds: list[str], a: int, b: int,
             *, titled: bool, person: bool) -> Iterator[tuple[int, int, float]]:
    start = tokens[a][0]
    before = text[max(0, start - 40):start]
    sentence_start = _at_sentence_start(before) and not titled and not person
    seg = kinds[a:b]
    # "Unfortunately John Smith": an unknown capitalised word at a sentence start before a first
    # name is the sentence's first word, not part of the name
    if sentence_start and len(seg) >= 2 and seg[0] == _U and seg[1] in (_F, _A):
        a += 1
        seg = seg[1:]
        start = tokens[a][0]
        before = text[max(0, start - 40):start]
        sentence_start = False
    last = _last_word(before)
    strong = titled or (last in _gate_strong() and bool(_strong_left().search(before)))
    person = person or (not strong and last in _GATE_PERSON and bool(_PERSON_LEFT.search(before)))
    weak = not strong and not person and last in _GATE_WEAK and bool(_WEAK_LEFT.search(before))
    end = tokens[b - 1][1]
    if text[end - 1] == "." and kinds[b - 1] != _I:
        end -= 1  # a sentence's full stop, not part of the name
    right = bool(_RIGHT.match(text, end, end + 24))
    conf = _score(seg, strong, person, weak, right, sentence_start)
    if conf > 0:
        yield start, end, conf


# -- addresses ----------------------------------------------------------------------------------

_ADDRESS_WORDS = re.compile(
    r"(?:address|addr\.|live at|lives at|living at|located at|ship to|deliver(?:ed)? to|send to|mail to|moved to|"
    r"residing at|adresse|anschrift|wohnhaft|wohne|wohnt|domicile|habite|dirección|direccion|domicilio|vivo en|"
    r"indirizzo|abito|adres|woon|endereço|moro|adress|bor på|osoite|asun|adresa|bydlím|адрес)",
    re.I,
)
_NUMBER = r"\d{1,5}[A-Za-z]?(?:[-/]\d{1,4}[A-Za-z]?)?"
_WORD = r"[^\W\d_][\w'’.]*(?:-[^\W\d_][\w'’.]*)*"
_UNIT = (r"(?:,?[ \t]*(?:apt\.?|apartment|suite|ste\.?|unit|flat|floor|fl\.|#|piso|planta|étage|etg\.?|bus|app\.?|"
         r"appartamento|int\.?|scala|wohnung|whg\.?|top|lgh|m\.|lok\.|lokal|m)[ \t]*\d{1,4}[A-Za-z]?)?")
_CITY = r"[^\W\d_][\w'’.]*(?:[ \t-]+(?:[^\W\d_][\w'’.]*)){0,3}"


@lru_cache(maxsize=1)
def _patterns() -> tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str], re.Pattern[str]]:
    up = upper_class()
    postcode = gazetteer().postcode
    # number first: "221B Baker Street", "12, rue de la Paix", "1600 Pennsylvania Ave NW"
    number_first = re.compile(rf"(?<![\w.,:/#+-]){_NUMBER},?[ \t]+({_WORD}(?:[ \t]+{_WORD}){{0,6}})")
    # name first: the words before a number ("Hauptstraße 5", "Via Roma, 10")
    name_first = re.compile(rf"(?:{_WORD}[ \t]+){{0,4}}{_WORD},?[ \t]+$")
    cap = rf"[{up}][\w'’.]*(?:[ \t-]+[{up}][\w'’.]*){{0,3}}"
    # after the street: unit, then "<postcode> <City>" or "<City>, <ST> <postcode>" or "<City> <PC>"
    tail = re.compile(
        rf"{_UNIT}(?:,[ \t]*|[ \t]*\n[ \t]*|[ \t]+)"
        rf"(?:(?:[A-Z]{{1,2}}-)?{postcode}[ \t]+{cap}(?:,[ \t]*{cap})?"
        rf"|{cap},?[ \t]+(?:[A-Z]{{2,3}}\.?[ \t]+|[A-Z]{{2,3}},?[ \t]+)?{postcode}(?![\w-])"
        rf"|{cap}(?:[ \t]*\n[ \t]*|,[ \t]*){postcode}(?![\w-]))"
    )
    po_box = re.compile(r"\b(?:P\.?[ \t]?O\.?[ \t]?Box|Postfach|Apartado(?: de correos)?|Boîte postale|B\.?P\.|"
                        r"Casella postale|Caixa postal|Postbus|Skrytka pocztowa)[ \t]*\d{1,6}", re.I)
    return number_first, name_first, tail, po_box


_DIGIT_RUN = re.compile(r"(?<![\w.,:/#+-])\d{1,5}[A-Za-z]?(?:[-/]\d{1,4}[A-Za-z]?)?(?![\d])")


def _type_of(token: str) -> str | None:
    """``after``/``before``/``glued`` when ``token`` is a street type, else None."""
    g = gazetteer()
    key = normalise(token)
    bare = key.rstrip(".")
    if key in g.street_after or bare in g.street_after:
        return "after"
    if key in g.street_before or bare in g.street_before:
        return "before"
    if len(bare) > 4 and (bare.endswith(g.street_glued) or key.endswith(g.street_glued)):
        return "glued"
    return None


_LINKS = frozenset(("des", "d'", "l'", "of", "do", "dos", "da", "das", "de", "del", "della", "dei", "delle", "degli",
                    "la", "le", "du", "the"))


def _is_before(token: str) -> bool:
    key = normalise(token)
    return key in gazetteer().street_before or key.rstrip(".") in gazetteer().street_before


def _is_cap(token: str) -> bool:
    return token[:1].isupper()


def _near_address_word(text: str, start: int, end: int) -> bool:
    return bool(_ADDRESS_WORDS.search(text, max(0, start - 60), start) or _ADDRESS_WORDS.search(text, end, end + 30))


def _number_first(text: str, m: re.Match[str]) -> tuple[int, float] | None:
    """End and confidence of a street written number first, from the words after the number."""
    words = m.group(1)
    base = m.start(1)
    parts: list[tuple[int, int]] = []
    pos = 0
    for w in words.split():
        i = words.index(w, pos)
        parts.append((base + i, base + i + len(w)))
        pos = i + len(w)
    toks = [text[a:b] for a, b in parts]
    kind0 = _type_of(toks[0])
    if _is_before(toks[0]) and len(toks) >= 2 and toks[0][0].islower() or kind0 == "before" and len(toks) >= 2:
        # "rue de la Paix": the type, then lower-case particles and the capitalised name
        k = 1
        while k < len(toks) and (toks[k].lower() in PARTICLES or toks[k].lower() in _LINKS):
            k += 1
        if k < len(toks) and _is_cap(toks[k]):
            end_i = k
            while end_i + 1 < len(toks) and _is_cap(toks[end_i + 1]) and _type_of(toks[end_i + 1]) is None:
                end_i += 1
            return parts[end_i][1], 0.85
        return None
    for i in range(1, len(toks)):
        t = _type_of(toks[i])
        if t == "after" and all(_is_cap(x) for x in toks[:i]) and _is_cap(toks[i]) or (
                t == "after" and toks[i][0].islower() and all(_is_cap(x) for x in toks[:i]) and len(toks[i]) > 3):
            end = parts[i][1]
            if i + 1 < len(toks) and normalise(toks[i + 1]) in DIRECTIONS and toks[i + 1][0].isupper():
                end = parts[i + 1][1]
            if text[end - 1] == "." and normalise(toks[i]).rstrip(".") not in ("st", "ave", "rd", "blvd", "ln", "dr", "ct",
                                                                             "pl", "sq", "hwy", "pkwy", "str"):
                end -= 1
            weak = normalise(toks[i]).rstrip(".") in WEAK_TYPES
            return end, (0.45 if weak else 0.85)
        if not _is_cap(toks[i]):
            break
    if kind0 == "glued" and _is_cap(toks[0]):
        return parts[0][1], 0.75
    return None


def _name_first(text: str, num_start: int) -> tuple[int, float] | None:
    """Start and confidence of a street whose name comes before its number."""
    _nf, name_first, _tail, _po = _patterns()
    lo = max(0, num_start - 48)
    if not text[num_start - 2:num_start - 1].isalpha() and not text[num_start - 3:num_start - 2].isalpha():
        return None  # the words must end right before the number ("Hauptstraße 5", "Mayor, 5")
    m = name_first.search(text, lo, num_start)
    if m is None:
        return None
    words = m.group().rstrip(", \t")
    base = m.start()
    parts: list[tuple[int, int]] = []
    pos = 0
    for w in words.split():
        i = words.index(w, pos)
        parts.append((base + i, base + i + len(w)))
        pos = i + len(w)
    toks = [text[a:b] for a, b in parts]
    last = toks[-1]
    t = _type_of(last)
    if t in ("glued", "after") and _is_cap(last) or t == "after" and len(toks) >= 2 and _is_cap(toks[-2]):
        # "Hauptstraße 5", "Lange Straße 5", "Am Alten Markt 3": include capitalised words before
        k = len(toks) - 1
        while k > 0 and _is_cap(toks[k - 1]) and _type_of(toks[k - 1]) is None and len(toks) - k < 4:
            k -= 1
        weak = normalise(last).rstrip(".") in WEAK_TYPES
        if t == "glued" and k == len(toks) - 1 and normalise(last) in gazetteer().common:
            return None
        return parts[k][0], (0.45 if weak else 0.85)
    # a type word first: "Via Roma 10", "Calle Mayor, 5", "ul. Długa 5", "Avenida Paulista 1000"
    for k in range(len(toks) - 1):
        if _is_before(toks[k]):
            rest = toks[k + 1:]
            if rest and _is_cap(rest[-1]) and all(_is_cap(x) or x.lower() in PARTICLES or x.lower() in _LINKS
                                                  for x in rest):
                return parts[k][0], 0.85
    return None


def find_addresses(text: str) -> Iterator[tuple[int, int, float]]:
    """(start, end, confidence) of each postal address found in ``text``."""
    number_first, _name_first_re, tail, po_box = _patterns()
    last_end = -1
    for m in _DIGIT_RUN.finditer(text):
        s, e = m.span()
        if s < last_end:
            continue
        span: tuple[int, int, float] | None = None
        nf = number_first.match(text, s)
        if nf is not None and not text[e:e + 1].isdigit():
            found = _number_first(text, nf)
            if found is not None:
                span = (s, found[0], found[1])
        if span is None:
            found2 = _name_first(text, s)
            if found2 is not None:
                span = (found2[0], e, found2[1])
        if span is None:
            continue
        start, end, conf = span
        t = tail.match(text, end)
        if t is not None:
            end = t.end()
            if text[end - 1] == ".":
                end -= 1  # the sentence's full stop after the city
            conf = max(conf, 0.9)
        elif conf < 0.85 and _near_address_word(text, start, end):
            conf = max(conf, 0.85)
        if conf >= 0.5:
            last_end = end
            yield start, end, conf
    if "ox" in text or "ost" in text or "B" in text or "ado" in text or "krytka" in text:
        for m in po_box.finditer(text):
            t = tail.match(text, m.end())
            yield m.start(), (t.end() if t else m.end()), 0.85
