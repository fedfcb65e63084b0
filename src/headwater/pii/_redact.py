"""Free-text redaction: replace only the PII spans inside a text value."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pyarrow as pa

from headwater.pii._detectors import DEFAULT_MIN_CONFIDENCE, DEFAULT_REGIONS, detect

__all__ = ["PLACEHOLDERS", "redact_pii", "redact_pii_arrow"]

PLACEHOLDERS: Mapping[str, str] = {
    "email": "<EMAIL>",
    "phone": "<PHONE>",
    "ssn": "<SSN>",
    "card": "<CARD>",
    "iban": "<IBAN>",
    "ip": "<IP>",
    "dob": "<DOB>",
    "secret": "<SECRET>",
    "name": "<NAME>",
    "address": "<ADDRESS>",
    "national_id": "<NATIONAL_ID>",
    "tax_id": "<TAX_ID>",
    "passport": "<PASSPORT>",
    "driving_licence": "<DRIVING_LICENCE>",
    "denied": "<REDACTED>",
}
"""What each kind of span becomes (a custom kind becomes ``<KIND>``)."""


def redact_pii(
    text: str | None,
    *,
    kinds: Iterable[str] | None = None,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    regions: tuple[str, ...] = DEFAULT_REGIONS,
    placeholders: Mapping[str, str] | None = None,
) -> str | None:
    """``text`` with every detected PII span replaced by its placeholder (``<EMAIL>`` ...).

    Everything outside the spans is kept byte for byte; ``None`` stays ``None``. This is the
    ``redact_pii`` masking strategy for free-text values.
    """
    if text is None:
        return None
    if not isinstance(text, str):
        raise TypeError(f"redact_pii takes str, not {type(text).__name__}")
    findings = detect(text, kinds=kinds, min_confidence=min_confidence, regions=regions)
    if not findings:
        return text
    marks = {**PLACEHOLDERS, **(placeholders or {})}
    out: list[str] = []
    pos = 0
    for f in findings:
        out.append(text[pos:f.start])
        out.append(marks.get(f.kind) or f"<{f.kind.upper()}>")
        pos = f.end
    out.append(text[pos:])
    return "".join(out)


def redact_pii_arrow(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """:func:`redact_pii` over an Arrow string array (the DuckDB ``hw_redact_pii`` function); nulls stay null."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    try:
        items = values.to_pylist()
    except (UnicodeDecodeError, pa.ArrowException):
        # invalid UTF-8 inside a string buffer: decode value by value, replacing bad bytes
        raw = values.cast(pa.binary()) if not pa.types.is_binary(values.type) else values
        items = [None if v is None else v.decode("utf-8", "replace") for v in raw.to_pylist()]
    out = [None if v is None else redact_pii(v if isinstance(v, str) else str(v)) for v in items]
    return pa.array(out, type=pa.string())
