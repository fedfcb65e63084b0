"""PII detection quality and scan throughput, with Presidio on the same sets where it installs.

* **quality** -- precision and recall per PII type on the labelled Faker set (en_US, de_DE,
  fr_FR, en_GB, ja_JP) and the false-positive rate on the look-alike set (GUIDs, timestamps,
  Luhn-valid timestamps, order numbers, ISBNs, capitalised words, version strings, hashes ...),
  both from ``tests/pii/corpus.py``. Goals: >= 0.95 precision and recall per structured type;
  <= 1% false positives.
* **throughput** -- ``inspect_column`` on one structured column per type (10,000 values,
  every value examined, one thread), MB/s = UTF-8 bytes examined / median wall time; plus the
  free-text detector (``detect``) over the labelled texts. Goal: >= 50 MB/s per core on
  structured columns (the aggregate over all types).
* **Presidio** -- ``presidio-analyzer`` with its default recognizers on the same texts. Its
  usual spaCy model (``en_core_web_lg``) is a download that cannot happen offline, so it runs on
  ``spacy.blank("en")``: the pattern recognizers (email, phone, SSN, card, IBAN, IP ...) work,
  NER-based entities (PERSON, LOCATION) do not. Skipped with the reason when
  the package does not import.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import _common as c  # noqa: E402

N_LABELLED = c.sized(500, 100)
N_LOOKALIKE = c.sized(500, 100)
N_COLUMN = 10_000
REPEATS = c.sized(5, 2)
GOAL_PR = 0.95
GOAL_FP = 0.01
GOAL_MBPS = 50.0

PRESIDIO_KINDS = {
    "EMAIL_ADDRESS": "email", "PHONE_NUMBER": "phone", "US_SSN": "ssn", "CREDIT_CARD": "card",
    "IBAN_CODE": "iban", "IP_ADDRESS": "ip", "DATE_TIME": "dob",
}


def _presidio():  # type: ignore[no-untyped-def]
    """(analyze function, None) or (None, reason)."""
    try:
        import spacy
        from presidio_analyzer import AnalyzerEngine
        from presidio_analyzer.nlp_engine import SpacyNlpEngine
    except ImportError as err:
        return None, f"presidio-analyzer is not installed ({err}); pip install presidio-analyzer"
    logging.getLogger("tldextract").setLevel(logging.CRITICAL)
    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
    try:
        spacy.load("en_core_web_lg")
        model = "en_core_web_lg"
    except OSError:
        model = None

    class _Blank(SpacyNlpEngine):
        def load(self) -> None:
            self.nlp = {"en": spacy.blank("en")}

    if model:
        engine = None
        analyzer = AnalyzerEngine()
    else:
        engine = _Blank(models=[{"lang_code": "en", "model_name": "blank_en"}])
        engine.load()
        analyzer = AnalyzerEngine(nlp_engine=engine, supported_languages=["en"])
    note = (f"spaCy model {model}" if model else
            "no spaCy model (en_core_web_lg is a download, impossible offline): spacy.blank('en'), "
            "pattern recognizers only (NER entities such as PERSON and LOCATION are not found)")

    def analyze(text: str) -> list[tuple[str, int, int]]:
        return [(PRESIDIO_KINDS[r.entity_type], r.start, r.end)
                for r in analyzer.analyze(text, language="en") if r.entity_type in PRESIDIO_KINDS]

    return (analyze, note), None


def _quality(detect_fn, samples, looks):  # type: ignore[no-untyped-def]
    from tests.pii.corpus import evaluate

    t0 = time.perf_counter()
    res = evaluate(samples, looks, detect_fn)
    elapsed = time.perf_counter() - t0
    nbytes = sum(len(s.text.encode()) for s in samples) + sum(len(t.encode()) for ts in looks.values() for t in ts)
    res.pop("misses")
    res["flagged"] = len(res["flagged"])
    res["text_mb_per_s"] = round(nbytes / elapsed / 1e6, 3)
    res["elapsed_s"] = round(elapsed, 3)
    return res


def main() -> None:
    import pyarrow as pa
    from tests.pii.corpus import STRUCTURED, labelled, lookalikes, values_of

    from headwater.pii import detect, inspect_column

    print(f"pii_scan: labelled {N_LABELLED}/type, look-alikes {N_LOOKALIKE}/group, columns {N_COLUMN} values")
    samples = labelled(N_LABELLED, seed=101)
    looks = lookalikes(N_LOOKALIKE, seed=202)
    hw = _quality(lambda t: [(f.kind, f.start, f.end) for f in detect(t)], samples, looks)
    print(f"  {'type':8} {'P':>6} {'R':>6}")
    for kind, s in hw["per_kind"].items():
        print(f"  {kind:8} {s['precision']:6.3f} {s['recall']:6.3f}")
    print(f"  look-alike FP rate {hw['fp_rate']:.4f} {hw['fp_by_group']}")
    print(f"  free-text detect: {hw['text_mb_per_s']:.2f} MB/s")

    columns = {}
    total_bytes = 0
    total_s = 0.0
    for kind in STRUCTURED:
        arr = pa.array(values_of(kind, N_COLUMN, seed=303))
        name = "date_of_birth" if kind == "dob" else "col"
        report = inspect_column(name, arr, sample=0)
        times = c.measure(lambda arr=arr, name=name: inspect_column(name, arr, sample=0), warmup=1, repeats=REPEATS)
        med = c.median(times)
        top = report.proposals[0] if report.proposals else None
        columns[kind] = {
            "bytes": report.bytes, "median_s": round(med, 6), "mb_per_s": round(report.bytes / med / 1e6, 2),
            "top_tag": top.tag if top else None, "confidence": top.confidence if top else None,
            "estimated": top.estimated if top else None,
        }
        total_bytes += report.bytes
        total_s += med
        print(f"  column {kind:7} {columns[kind]['mb_per_s']:8.2f} MB/s  -> {columns[kind]['top_tag']} "
              f"{columns[kind]['confidence']}")
    aggregate = total_bytes / total_s / 1e6
    print(f"  structured columns aggregate: {aggregate:.2f} MB/s per core (goal >= {GOAL_MBPS})")

    presidio, reason = _presidio()
    pres = None
    if presidio is None:
        print(f"  Presidio skipped: {reason}")
    else:
        analyze, note = presidio
        print(f"  Presidio: {note}")
        pres = _quality(analyze, samples, looks)
        pres["setup"] = note
        for kind, s in pres["per_kind"].items():
            print(f"  presidio {kind:8} P {s['precision']:6.3f} R {s['recall']:6.3f}")
        print(f"  presidio look-alike FP rate {pres['fp_rate']:.4f}; text {pres['text_mb_per_s']:.3f} MB/s")

    structured_ok = all(s["precision"] >= GOAL_PR and s["recall"] >= GOAL_PR for s in hw["per_kind"].values())
    passed = structured_ok and hw["fp_rate"] <= GOAL_FP and aggregate >= GOAL_MBPS
    print(f"  {c.verdict(passed)}")
    c.write_result(
        "pii_scan",
        parameters={"labelled_per_type": N_LABELLED, "lookalikes_per_group": N_LOOKALIKE,
                    "column_values": N_COLUMN, "repeats": REPEATS},
        raw=pres,
        headwater={"quality": hw, "columns": columns, "structured_mb_per_s": round(aggregate, 2)},
        ratio=None,
        goal={"precision": GOAL_PR, "recall": GOAL_PR, "fp_rate": GOAL_FP, "mb_per_s_per_core": GOAL_MBPS},
        passed=passed,
        skipped=None if presidio else f"presidio: {reason}",
    )


if __name__ == "__main__":
    main()
