"""PII detection, free-text redaction and column classification.

* :func:`detect` finds PII spans in text with validators (Luhn and issuer ranges, mod-97, SSA
  rules, ``phonenumbers``, ``ipaddress``, a calendar, entropy) and context words; each
  :class:`Finding` has a confidence and never holds the value.
  Free text: person names and postal addresses (gazetteers from package data, token shape,
  context words, an n-gram model), national identifiers, tax/VAT numbers, passports and driving
  licences worldwide (python-stdnum checksums), plus configured recognizers (:func:`configure`).
* :func:`redact_pii` replaces only those spans (``<EMAIL>``, ``<PHONE>``, ``<NAME>`` ...).
* :func:`classify_column` proposes ``pii.*`` tags for a column from a bounded sample of its
  values plus its name; :func:`scan_dataset` does it for every column of a dataset through a
  session, and :func:`apply_proposals` writes accepted proposals to the catalog.
* :func:`scan_catalogued` runs when datasets enter the catalog (``pii.scan_on_catalog``) and
  keeps proposals on the dataset; :func:`scan_topic` checks event payload samples against the
  ``x-pii`` classifications of their schema.

Proposals and reports carry counts, never example values.
"""

from headwater.pii._classify import ColumnReport, Proposal, classify_column, inspect_column
from headwater.pii._detectors import (
    DEFAULT_REGIONS,
    KINDS,
    MAX_TEXT_CHARS,
    Finding,
    configure,
    detect,
)
from headwater.pii._redact import PLACEHOLDERS, redact_pii, redact_pii_arrow
from headwater.pii._scan import ScanReport, apply_proposals, scan_dataset
from headwater.pii._sources import TopicScanReport, scan_catalogued, scan_topic

__all__ = [
    "DEFAULT_REGIONS",
    "KINDS",
    "MAX_TEXT_CHARS",
    "PLACEHOLDERS",
    "ColumnReport",
    "Finding",
    "Proposal",
    "ScanReport",
    "TopicScanReport",
    "apply_proposals",
    "classify_column",
    "configure",
    "inspect_column",
    "detect",
    "redact_pii",
    "redact_pii_arrow",
    "scan_catalogued",
    "scan_dataset",
    "scan_topic",
]
