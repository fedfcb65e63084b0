"""PII in free text: quality per type, false positives, throughput, adversarial input; Presidio beside it.

* **quality** -- precision and recall per type on the generated labelled corpus
  (``tests/pii/corpus_text.py``: 17 locales, templates with distractors; people, streets and
  cities drawn from the held-out 30% the gazetteer never contains). A finding of the labelled
  kind overlapping the labelled span is a true positive; anything else a false positive.
  Goals: >= 0.9 precision and recall for names and addresses, >= 0.97 for checksum-validated
  identifiers (national_id, tax_id, iban, card), phone precision >= 0.95 and recall >= 0.9.
* **false positives** -- share of documents of the PII-free corpus (code, logs, product and
  commerce text) with any finding. Goal <= 0.5%.
* **throughput** -- ``detect`` over the labelled and the PII-free corpus, per document and on
  the documents joined into one text; MB/s = UTF-8 bytes / process CPU time (one core). Goal
  >= 20 MB/s per core.
* **adversarial** -- 100 KB pathological inputs (long digit runs, capitalised runs, ``@`` runs,
  unterminated private keys, NULs, lone surrogates ...): CPU seconds each. Goal < 0.2 s each.
* **Presidio** -- ``presidio-analyzer``'s predefined pattern recognizers called directly
  (``AnalyzerEngine()`` would load a spaCy model, a download), in the benchmark-only virtual
  environment ``bench/.venv-presidio`` (``python bench/pii_text.py --setup-presidio`` makes
  it), on the same corpus: precision, recall, MB/s. Skipped with the reason when absent.

The ratio printed is Headwater's MB/s over Presidio's.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import _common as c  # noqa: E402

N_DOCS = c.sized(3000, 300)
N_CLEAN = c.sized(3000, 300)
GOALS = {"name": 0.9, "address": 0.9, "national_id": 0.97, "tax_id": 0.97, "iban": 0.97, "card": 0.97}
GOAL_PHONE_P, GOAL_PHONE_R = 0.95, 0.9
GOAL_FP = 0.005
GOAL_MBPS = 20.0
GOAL_ADVERSARIAL_S = 0.2
PRESIDIO_VENV = Path(__file__).resolve().parent / ".venv-presidio"

_PRESIDIO_RUNNER = r'''
import json, sys, time, logging
logging.disable(logging.CRITICAL)
from presidio_analyzer.predefined_recognizers import (
    EmailRecognizer, PhoneRecognizer, CreditCardRecognizer, IbanRecognizer, UsSsnRecognizer,
    IpRecognizer, EsNifRecognizer, ItFiscalCodeRecognizer, InAadhaarRecognizer, InPanRecognizer,
    AuTfnRecognizer, AuAbnRecognizer, UkNinoRecognizer, SgFinRecognizer)
KINDS = {"EMAIL_ADDRESS": "email", "PHONE_NUMBER": "phone", "CREDIT_CARD": "card", "IBAN_CODE": "iban",
         "US_SSN": "ssn", "IP_ADDRESS": "ip", "ES_NIF": "national_id", "IT_FISCAL_CODE": "national_id",
         "IN_AADHAAR": "national_id", "IN_PAN": "national_id", "AU_TFN": "national_id", "AU_ABN": "tax_id",
         "UK_NINO": "national_id", "SG_NRIC_FIN": "national_id"}
recognizers = []
for cls in (EmailRecognizer, PhoneRecognizer, CreditCardRecognizer, IbanRecognizer, UsSsnRecognizer, IpRecognizer,
            EsNifRecognizer, ItFiscalCodeRecognizer, InAadhaarRecognizer, InPanRecognizer, AuTfnRecognizer,
            AuAbnRecognizer, UkNinoRecognizer, SgFinRecognizer):
    try:
        recognizers.append(cls())
    except Exception:
        pass
texts = json.load(sys.stdin)
out = []
t0 = time.process_time()
for t in texts:
    found = []
    for r in recognizers:
        try:
            res = r.analyze(t, r.supported_entities, None)
        except Exception:
            res = []
        for x in res or []:
            if x.score > 0 and x.entity_type in KINDS:  # the AnalyzerEngine default threshold is 0
                found.append((KINDS[x.entity_type], x.start, x.end))
    out.append(found)
cpu = time.process_time() - t0
json.dump({"cpu_s": cpu, "found": out, "recognizers": [type(r).__name__ for r in recognizers]}, sys.stdout)
'''


def setup_presidio() -> None:
    """Create ``bench/.venv-presidio`` with presidio-analyzer (no spaCy model is downloaded)."""
    subprocess.run([sys.executable, "-m", "venv", str(PRESIDIO_VENV)], check=True)
    subprocess.run([str(PRESIDIO_VENV / "bin" / "pip"), "install", "-q", "presidio-analyzer"], check=True)


def _presidio(texts: list[str]) -> tuple[dict | None, str | None]:
    py = PRESIDIO_VENV / "bin" / "python"
    if not py.exists():
        return None, f"no {PRESIDIO_VENV.name} (python bench/pii_text.py --setup-presidio)"
    proc = subprocess.run([str(py), "-c", _PRESIDIO_RUNNER], input=json.dumps(texts), capture_output=True, text=True,
                          timeout=3600)
    if proc.returncode != 0:
        return None, f"presidio runner failed: {proc.stderr.strip().splitlines()[-1:]}"
    return json.loads(proc.stdout), None


def _adversarial() -> dict[str, float]:
    from tests.pii.test_text import ADVERSARIAL

    from headwater.pii import detect

    out = {}
    for name, text in ADVERSARIAL.items():
        t0 = time.process_time()
        detect(text)
        out[name] = round(time.process_time() - t0, 4)
    return out


def main() -> None:
    if "--setup-presidio" in sys.argv:
        setup_presidio()
    from tests.pii.corpus_text import clean_docs, evaluate_docs, labelled_docs

    from headwater.pii import detect

    docs = labelled_docs(N_DOCS, seed=101)
    clean = clean_docs(N_CLEAN, seed=202)
    print(f"pii_text: {len(docs)} labelled documents, {len(clean)} PII-free documents")
    detect("warm up: Dear John Smith, 12 Main Street")
    res = evaluate_docs(docs, clean, lambda t: [(f.kind, f.start, f.end) for f in detect(t)])
    print(f"  {'type':16} {'P':>6} {'R':>6} {'n':>5}")
    for kind, s in res["per_kind"].items():
        print(f"  {kind:16} {s['precision']:6.3f} {s['recall']:6.3f} {s['tp'] + s['fn']:5d}")
    print(f"  PII-free documents flagged: {res['clean_fp_rate']:.4f} (goal <= {GOAL_FP})")

    texts = [d.text for d in docs]
    speed = {}
    for label, batch in (("labelled", texts), ("pii_free", clean), ("labelled_joined", ["\n\n".join(texts)]),
                         ("pii_free_joined", ["\n\n".join(clean)])):
        nbytes = sum(len(t.encode()) for t in batch)
        cpu = []
        for _ in range(c.sized(3, 1)):
            t0 = time.process_time()
            for t in batch:
                detect(t)
            cpu.append(time.process_time() - t0)
        speed[label] = {"bytes": nbytes, "cpu_s": round(c.median(cpu), 4), "mb_per_s": round(nbytes / c.median(cpu) / 1e6, 3)}
        print(f"  throughput {label:16} {speed[label]['mb_per_s']:7.3f} MB/s per core (CPU time)")
    c.maybe_profile("pii_text", lambda: [detect(t) for t in texts])
    adversarial = _adversarial()
    worst = max(adversarial.values())
    print(f"  adversarial 100 KB inputs: worst {worst:.3f} s ({max(adversarial, key=adversarial.get)}; goal < "
          f"{GOAL_ADVERSARIAL_S})")

    pres, reason = _presidio(texts + clean)
    raw = None
    ratio = None
    hw_mbps = (speed["labelled"]["bytes"] + speed["pii_free"]["bytes"]) / (
        speed["labelled"]["cpu_s"] + speed["pii_free"]["cpu_s"]) / 1e6
    if pres is None:
        print(f"  Presidio skipped: {reason}")
    else:
        found = pres["found"]
        lookup = {t: f for t, f in zip(texts + clean, found, strict=True)}
        pres_res = evaluate_docs(docs, clean, lambda t: [tuple(x) for x in lookup[t]])
        nbytes = sum(len(t.encode()) for t in texts + clean)
        raw = {"per_kind": pres_res["per_kind"], "clean_fp_rate": pres_res["clean_fp_rate"],
               "mb_per_s": round(nbytes / pres["cpu_s"] / 1e6, 3), "recognizers": pres["recognizers"],
               "setup": "presidio-analyzer predefined recognizers called directly (no spaCy model, no NER)"}
        ratio = hw_mbps / raw["mb_per_s"] if raw["mb_per_s"] else None
        for kind, s in pres_res["per_kind"].items():
            print(f"  presidio {kind:16} P {s['precision']:6.3f} R {s['recall']:6.3f}")
        print(f"  presidio PII-free flagged {pres_res['clean_fp_rate']:.4f}; {raw['mb_per_s']:.3f} MB/s; "
              f"Headwater/Presidio throughput ratio {ratio:.2f}")

    pk = res["per_kind"]
    quality_ok = all(pk[k]["precision"] >= g and pk[k]["recall"] >= g for k, g in GOALS.items() if k in pk) and \
        pk["phone"]["precision"] >= GOAL_PHONE_P and pk["phone"]["recall"] >= GOAL_PHONE_R
    passed = quality_ok and res["clean_fp_rate"] <= GOAL_FP and hw_mbps >= GOAL_MBPS and worst < GOAL_ADVERSARIAL_S
    print(f"  quality {'met' if quality_ok else 'missed'}; throughput {hw_mbps:.3f} MB/s (goal {GOAL_MBPS}); "
          f"{c.verdict(passed)}")
    c.write_result(
        "pii_text",
        parameters={"labelled_docs": N_DOCS, "clean_docs": N_CLEAN},
        raw=raw,
        headwater={"per_kind": pk, "clean_fp_rate": res["clean_fp_rate"], "throughput": speed,
                   "mb_per_s": round(hw_mbps, 3), "adversarial_cpu_s": adversarial,
                   "clean_flagged": res["clean_flagged"][:10]},
        ratio=ratio,
        goal={"names_addresses": 0.9, "checksum_ids": 0.97, "phone_precision": GOAL_PHONE_P,
              "phone_recall": GOAL_PHONE_R, "clean_fp_rate": GOAL_FP, "mb_per_s_per_core": GOAL_MBPS,
              "adversarial_s_per_100kb": GOAL_ADVERSARIAL_S},
        passed=passed,
        skipped=None if pres else f"presidio: {reason}",
    )


if __name__ == "__main__":
    main()
