"""Validation of OpenLineage events against the specification's JSON Schemas, offline.

The schemas (``OpenLineage.json`` and ``facets/*.json``, Apache-2.0, see ``spec/SOURCE``) ship
in this package and are loaded into one ``referencing.Registry`` keyed by each file's ``$id``, so
``$ref``s resolve without the network. An event is checked against the RunEvent schema, and
every facet whose ``_schemaURL`` names a known facet schema is checked against that schema too
(the event schema alone only checks a facet's ``_producer``/``_schemaURL``).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from headwater.errors import InvalidInput

__all__ = ["EventValidator", "InvalidLineageEvent", "default_validator"]

SPEC_DIR = Path(__file__).resolve().parent / "spec"
"""The specification files this package ships."""

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:[^\s]*$")


class InvalidLineageEvent(InvalidInput):
    """An OpenLineage event that does not validate; ``errors`` lists where and why."""


class EventValidator:
    """Validates OpenLineage events against the schemas in ``spec_dir``."""

    def __init__(self, spec_dir: str | Path = SPEC_DIR) -> None:
        from jsonschema import Draft202012Validator, FormatChecker
        from referencing import Registry, Resource

        self.spec_dir = Path(spec_dir)
        resources = []
        self.ids: set[str] = set()
        for path in sorted(self.spec_dir.rglob("*.json")):
            doc = json.loads(path.read_text())
            resources.append((doc["$id"], Resource.from_contents(doc)))
            self.ids.add(doc["$id"])
        core = next((i for i in self.ids if i.endswith("/OpenLineage.json")), None)
        if core is None:
            raise InvalidInput(f"{self.spec_dir} holds no OpenLineage.json")
        self.registry = Registry().with_resources(resources)
        checker = FormatChecker()
        # jsonschema checks "uri" only with an optional package; a scheme and no blanks is
        # what the specification's examples need.
        checker.checks("uri")(lambda v: not isinstance(v, str) or bool(_URI.match(v)))
        self._format_checker = checker
        self._cls = Draft202012Validator
        self._core = self._validator({"$ref": core})
        # The event schema is a oneOf of three kinds; its errors say only "matches none", so
        # a run event is re-checked against the RunEvent definition for a useful message.
        self._run = self._validator({"$ref": core + "#/$defs/RunEvent"})
        self._by_url: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"EventValidator(spec_dir={str(self.spec_dir)!r}, schemas={len(self.ids)})"

    def _validator(self, schema: Mapping[str, Any]) -> Any:
        return self._cls(schema, registry=self.registry, format_checker=self._format_checker)

    def _facet_validator(self, url: str) -> Any | None:
        base = url.split("#", 1)[0]
        if base not in self.ids:
            return None
        with self._lock:
            v = self._by_url.get(url)
            if v is None:
                v = self._by_url[url] = self._validator({"$ref": url})
            return v

    def errors(self, event: Any) -> list[str]:
        """Every reason ``event`` does not validate (empty when it does)."""
        if isinstance(event, Mapping) and "run" in event and "job" in event:
            # With both run and job present, neither DatasetEvent nor JobEvent can match, so
            # the event schema's oneOf holds exactly when RunEvent does (and says why not).
            out = [_fmt("", e) for e in self._run.iter_errors(event)]
        else:
            out = [_fmt("", e) for e in self._core.iter_errors(event)]
        if out or not isinstance(event, Mapping):
            return out
        for where, f in _facets(event):
            url = f.get("_schemaURL") if isinstance(f, Mapping) else None
            v = self._facet_validator(url) if isinstance(url, str) else None
            if v is not None:
                out.extend(_fmt(where, e) for e in v.iter_errors(f))
        return out

    def validate(self, event: Any) -> None:
        """Raise :class:`InvalidLineageEvent` unless ``event`` validates."""
        errs = self.errors(event)
        if errs:
            raise InvalidLineageEvent(
                f"OpenLineage event does not validate: {'; '.join(errs[:5])}"
                + (f" (and {len(errs) - 5} more)" if len(errs) > 5 else ""),
                errors=errs,
            )


def _fmt(where: str, err: Any) -> str:
    path = "/".join(str(p) for p in err.absolute_path)
    loc = "/".join(p for p in (where, path) if p) or "(event)"
    return f"{loc}: {err.message[:200]}"


def _facets(event: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    run = event.get("run") or {}
    for k, f in (run.get("facets") or {}).items():
        yield f"run/facets/{k}", f
    job = event.get("job") or {}
    for k, f in (job.get("facets") or {}).items():
        yield f"job/facets/{k}", f
    for kind, extra in (("inputs", "inputFacets"), ("outputs", "outputFacets")):
        for i, ds in enumerate(event.get(kind) or ()):
            if not isinstance(ds, Mapping):
                continue
            for group in ("facets", extra):
                for k, f in (ds.get(group) or {}).items():
                    yield f"{kind}/{i}/{group}/{k}", f


@lru_cache(maxsize=1)
def default_validator() -> EventValidator:
    """The validator on the schemas this package ships (built once)."""
    return EventValidator()
