"""Custom recognizers and allow/deny lists from configuration (``pii.text`` in ``headwater.yaml``).

.. code-block:: yaml

    pii:
      text:
        recognizers:
          - kind: employee_id
            pattern: 'EMP-\\d{6}'
            context: [employee, staff]     # optional: only report with one of these nearby
            validator: luhn                # optional: luhn, mod97, or stdnum:<module>
            score: 0.9
        lists:
          - dataset: 'app.*'               # glob; '*' when omitted
            column: notes                  # glob; '*' when omitted
            allow: ['Acme Support']        # never reported there
            deny: ['Project Falcon']       # always reported there (kind: ``denied``)

Patterns run on RE2 (``google-re2``: linear time, so a configured pattern cannot hang a scan);
without it, Python's engine is used and patterns with nested quantifiers are refused.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from headwater.errors import ConfigError

__all__ = ["CustomRecognizer", "TextRules", "compile_rules"]

_NESTED = re.compile(r"\([^()]*[+*}][^()]*\)[+*{]")


def _engine(pattern: str, kind: str) -> Any:
    try:
        import re2  # type: ignore[import-not-found,import-untyped]
    except ImportError:
        if _NESTED.search(pattern):
            raise ConfigError(f"pii recognizer {kind!r}: nested quantifiers need RE2 "
                              "(pip install google-re2)") from None
        try:
            return re.compile(pattern)
        except re.error as err:
            raise ConfigError(f"pii recognizer {kind!r}: invalid pattern ({err})") from None
    try:
        return re2.compile(pattern)
    except Exception as err:  # noqa: BLE001 - re2 raises its own error type
        raise ConfigError(f"pii recognizer {kind!r}: invalid pattern ({err})") from None


def _validator(name: str | None, kind: str) -> Any:
    if name is None:
        return None
    from headwater.pii._validators import iban_valid, luhn_valid

    if name == "luhn":
        return lambda v: luhn_valid("".join(ch for ch in v if ch.isdigit()))
    if name == "mod97":
        return lambda v: iban_valid(v.replace(" ", "").upper())
    if name.startswith("stdnum:"):
        from headwater.pii._ids import _validator as stdnum_validator

        try:
            return stdnum_validator(name.split(":", 1)[1])
        except Exception as err:  # noqa: BLE001
            raise ConfigError(f"pii recognizer {kind!r}: unknown validator {name!r}") from err
    raise ConfigError(f"pii recognizer {kind!r}: validator must be luhn, mod97 or stdnum:<module>, not {name!r}")


@dataclass(frozen=True, slots=True)
class CustomRecognizer:
    """A configured recognizer: pattern, optional context words and validator, score."""

    kind: str
    pattern: Any
    context: re.Pattern[str] | None
    validator: Any
    score: float

    def find(self, text: str) -> Iterable[tuple[int, int, float]]:
        """(start, end, score) of each match that has its context and passes its validator."""
        for m in self.pattern.finditer(text):
            start, end = m.span()
            if end == start:
                continue
            if self.context is not None and not (self.context.search(text, max(0, start - 40), start)
                                                 or self.context.search(text, end, end + 20)):
                continue
            if self.validator is not None and not self.validator(text[start:end]):
                continue
            yield start, end, self.score


@dataclass(frozen=True, slots=True)
class _List:
    dataset: str
    column: str
    allow: frozenset[str]
    deny: tuple[str, ...]


@dataclass(slots=True)
class TextRules:
    """Compiled ``pii.text`` configuration."""

    recognizers: list[CustomRecognizer] = field(default_factory=list)
    lists: list[_List] = field(default_factory=list)

    def scoped(self, dataset: str | None, column: str | None) -> tuple[frozenset[str], tuple[str, ...]]:
        """(allowed values, denied terms) that apply to ``dataset``/``column`` (None: no scope)."""
        allow: set[str] = set()
        deny: list[str] = []
        for rule in self.lists:
            if dataset is None and rule.dataset != "*" or column is None and rule.column != "*":
                continue
            if fnmatch.fnmatchcase((dataset or "*").lower(), rule.dataset) and \
                    fnmatch.fnmatchcase((column or "*").lower(), rule.column):
                allow |= rule.allow
                deny.extend(rule.deny)
        return frozenset(allow), tuple(deny)


def compile_rules(recognizers: Sequence[Any] = (), lists: Sequence[Any] = ()) -> TextRules:
    """Compile configuration entries (pydantic models or dicts) into :class:`TextRules`.

    Raises :class:`~headwater.errors.ConfigError` naming the recognizer for a bad pattern,
    validator or score.
    """
    from headwater.pii._detectors import KINDS

    def get(obj: Any, key: str, default: Any = None) -> Any:
        return obj.get(key, default) if isinstance(obj, dict) else getattr(obj, key, default)

    rules = TextRules()
    for r in recognizers:
        kind = str(get(r, "kind") or "")
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,39}", kind) or kind in KINDS:
            raise ConfigError(f"pii recognizer kind {kind!r} must be a new lower-case name (not one of {KINDS})")
        score = float(get(r, "score", 0.8))
        if not 0 < score <= 1:
            raise ConfigError(f"pii recognizer {kind!r}: score must be in (0, 1]")
        words = [str(w) for w in (get(r, "context") or [])]
        context = re.compile("|".join(re.escape(w) for w in words), re.I) if words else None
        rules.recognizers.append(CustomRecognizer(kind, _engine(str(get(r, "pattern")), kind), context,
                                                  _validator(get(r, "validator"), kind), score))
    for entry in lists:
        rules.lists.append(_List(str(get(entry, "dataset") or "*").lower(), str(get(entry, "column") or "*").lower(),
                                 frozenset(v.casefold() for v in (get(entry, "allow") or [])),
                                 tuple(str(v) for v in (get(entry, "deny") or []))))
    return rules
