"""Schema compatibility checking for JSON Schema and Avro.

Directions (Confluent semantics):

* ``BACKWARD``: consumers using the *new* schema can read data written with the old one.
  JSON Schema: every document valid under the old schema is valid under the new one.
  Avro: the new schema, as reader, resolves data written with the old schema.
* ``FORWARD``: consumers still on the *old* schema can read data written with the new one.
* ``FULL``: both. The ``_TRANSITIVE`` variants check against every earlier version instead of
  only the latest. ``NONE`` checks nothing.

JSON Schema open content models (``open_content``):

* ``"strict"`` (the default) -- a property named by the new schema but not by the old one,
  whose old schema was open (no ``additionalProperties``), is compared against the old
  schema's implicit ``true``. Old documents may already carry that property with any type, so
  e.g. adding ``{"bar": {"type": "string"}}`` to an open model is *not* backward compatible,
  and removing a typed property from an open model is *not* forward compatible.
* ``"lenient"`` -- assumes documents never carry undeclared properties, so adding a typed
  property to an open model is compatible in both directions.

The conformance suite in ``shared/conformance/schema-registry`` (Apicurio's compatibility
cases) implies ``"strict"``: e.g. "Object: properties 1" and "Issue 4965-O2" (a property
removed from an open model) are expected to be backward but *not* forward compatible, which
only the strict policy yields; the lenient policy fails exactly those cases and
"Object: schemaDependencies 1".
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from headwater.errors import MissingDependency

from ._avro_compat import avro_resolution_errors, parse_avro
from ._jsonschema_compat import json_subschema
from .errors import InvalidSchema

__all__ = [
    "CompatibilityMode",
    "CompatibilityResult",
    "OpenContentPolicy",
    "SchemaType",
    "check_compatibility",
    "load_schema",
]

OpenContentPolicy = Literal["strict", "lenient"]
"""How JSON Schema open content models are treated; see the module docstring."""


class SchemaType(StrEnum):
    """The schema languages the registry understands."""

    JSON = "JSON"
    AVRO = "AVRO"

    @classmethod
    def of(cls, value: str | SchemaType) -> SchemaType:
        """Accept ``"JSON"``, ``"json"``, ``"JSONSCHEMA"``, ``"AVRO"`` or a member."""
        if isinstance(value, SchemaType):
            return value
        norm = str(value).upper().replace("_", "").replace(" ", "")
        if norm in ("JSON", "JSONSCHEMA"):
            return cls.JSON
        if norm == "AVRO":
            return cls.AVRO
        raise InvalidSchema(f"unknown schema type {value!r}; use JSON or AVRO", schema_type=value)


class CompatibilityMode(StrEnum):
    """Compatibility modes, as in Confluent Schema Registry."""

    BACKWARD = "BACKWARD"
    BACKWARD_TRANSITIVE = "BACKWARD_TRANSITIVE"
    FORWARD = "FORWARD"
    FORWARD_TRANSITIVE = "FORWARD_TRANSITIVE"
    FULL = "FULL"
    FULL_TRANSITIVE = "FULL_TRANSITIVE"
    NONE = "NONE"

    @classmethod
    def of(cls, value: str | CompatibilityMode) -> CompatibilityMode:
        """Parse a mode name (case-insensitive)."""
        if isinstance(value, CompatibilityMode):
            return value
        try:
            return cls(str(value).upper())
        except ValueError:
            from headwater.errors import InvalidInput

            raise InvalidInput(
                f"unknown compatibility mode {value!r}; use one of "
                + ", ".join(m.value for m in cls),
                mode=value,
            ) from None

    @property
    def transitive(self) -> bool:
        """Whether every earlier version is checked, not only the latest."""
        return self.value.endswith("_TRANSITIVE")

    @property
    def backward(self) -> bool:
        """Whether new-reads-old is required."""
        return self.value.startswith(("BACKWARD", "FULL"))

    @property
    def forward(self) -> bool:
        """Whether old-reads-new is required."""
        return self.value.startswith(("FORWARD", "FULL"))


@dataclass(frozen=True)
class CompatibilityResult:
    """Outcome of a compatibility check; truthy when compatible."""

    compatible: bool
    """True when no incompatibility was found."""
    messages: tuple[str, ...] = ()
    """One human-readable line per incompatibility: direction, version, path and reason."""

    def __bool__(self) -> bool:
        return self.compatible


def load_schema(
    schema: Any, schema_type: str | SchemaType, references: Mapping[str, Any] | None = None
) -> Any:
    """Turn schema text (or an already-parsed object) into Python data, validating it.

    JSON Schema is checked against its meta-schema (``jsonschema``); Avro is parsed with
    ``fastavro``, with the named types of ``references`` (name -> schema) in scope. Raises
    :class:`InvalidSchema` when either rejects it.
    """
    stype = SchemaType.of(schema_type)
    obj = schema
    if isinstance(schema, str | bytes):
        try:
            obj = json.loads(schema)
        except ValueError as err:
            if stype is SchemaType.AVRO and isinstance(schema, str) and schema.isidentifier():
                obj = schema  # a bare Avro primitive / type name
            else:
                raise InvalidSchema(f"schema is not valid JSON: {err}") from None
    if stype is SchemaType.JSON:
        if not isinstance(obj, dict | bool):
            raise InvalidSchema("a JSON Schema must be an object or a boolean")
        try:
            import jsonschema
        except ImportError as err:  # pragma: no cover
            raise MissingDependency(
                "JSON Schema support needs jsonschema: pip install jsonschema", package="jsonschema"
            ) from err
        if isinstance(obj, dict):
            cls = jsonschema.validators.validator_for(obj, default=jsonschema.Draft7Validator)
            try:
                cls.check_schema(obj)
            except jsonschema.SchemaError as err:
                raise InvalidSchema(f"invalid JSON Schema: {err.message}") from None
    else:
        _parse_avro(obj, _avro_named(references))
    return obj


def _parse_avro(obj: Any, named: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
    try:
        return parse_avro(obj, named)
    except ImportError as err:
        raise MissingDependency(
            "Avro support needs fastavro: pip install fastavro", package="fastavro"
        ) from err
    except Exception as err:  # fastavro raises several unrelated exception types
        raise InvalidSchema(f"invalid Avro schema: {err}") from None


def _direction_errors(
    reader_or_new: Any,
    writer_or_old: Any,
    stype: SchemaType,
    open_content: OpenContentPolicy,
    new_refs: Mapping[str, Any] | None,
    old_refs: Mapping[str, Any] | None,
) -> list[str]:
    """Errors for "can ``reader_or_new`` consume data produced under ``writer_or_old``"."""
    if stype is SchemaType.JSON:
        return json_subschema(
            writer_or_old,
            reader_or_new,
            lenient=open_content == "lenient",
            a_refs=dict(old_refs or {}),
            b_refs=dict(new_refs or {}),
        )
    reader, reader_names = _parse_avro(reader_or_new, _avro_named(new_refs))  # fresh tables
    writer, writer_names = _parse_avro(writer_or_old, _avro_named(old_refs))
    return avro_resolution_errors(
        reader, writer, reader_names=reader_names, writer_names=writer_names
    )


def _avro_named(refs: Mapping[str, Any] | None) -> dict[str, Any]:
    names: dict[str, Any] = {}
    for ref in (refs or {}).values():
        _parse_avro(ref, names)
    return names


def check_compatibility(
    new: Any,
    existing: Sequence[Any] | Mapping[Any, Any],
    *,
    schema_type: str | SchemaType,
    mode: str | CompatibilityMode = CompatibilityMode.BACKWARD,
    open_content: OpenContentPolicy = "strict",
    new_references: Mapping[str, Any] | None = None,
    existing_references: Mapping[Any, Mapping[str, Any]] | None = None,
) -> CompatibilityResult:
    """Check ``new`` against earlier schemas under ``mode``.

    ``existing`` is ordered oldest first: a sequence, or a mapping from a label (e.g. the
    version number) to the schema. Non-transitive modes only check the last entry.
    ``new_references`` maps reference names (a JSON Schema ``$ref`` URL without fragment, or
    any name for Avro) to the referenced schemas; ``existing_references`` does the same per
    label of ``existing``. Schemas may be text or parsed objects.
    """
    stype = SchemaType.of(schema_type)
    cmode = CompatibilityMode.of(mode)
    if open_content not in ("strict", "lenient"):
        from headwater.errors import InvalidInput

        raise InvalidInput(f"open_content must be 'strict' or 'lenient', not {open_content!r}")
    items = (
        list(existing.items())
        if isinstance(existing, Mapping)
        else list(enumerate(existing, start=1))
    )
    if cmode is CompatibilityMode.NONE or not items:
        return CompatibilityResult(True)
    if not cmode.transitive:
        items = items[-1:]
    new_obj = load_schema(new, stype, new_references)
    messages: list[str] = []
    for label, old in reversed(items):
        old_refs = (existing_references or {}).get(label)
        old_obj = load_schema(old, stype, old_refs)
        if cmode.backward:
            for msg in _direction_errors(
                new_obj, old_obj, stype, open_content, new_references, old_refs
            ):
                messages.append(f"BACKWARD vs {label}: {msg}")
        if cmode.forward:
            for msg in _direction_errors(
                old_obj, new_obj, stype, open_content, old_refs, new_references
            ):
                messages.append(f"FORWARD vs {label}: {msg}")
    return CompatibilityResult(not messages, tuple(messages))
