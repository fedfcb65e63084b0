"""Field classifications (``x-pii``) and the PII-name heuristic.

A JSON Schema property carries its tag as a keyword (``{"type": "string", "x-pii": "email"}``);
an Avro field carries it as a field attribute (``{"name": "email", "type": "string",
"x-pii": "email"}``). Any non-empty string counts as a classification, so ``"x-pii": "none"``
declares a PII-looking field as not personal data.

Field paths join names with ``.``; array items add ``[]`` and map values ``{}``
(``customer.addresses[].street``).
"""

from __future__ import annotations

import re
from typing import Any

from .compat import SchemaType, load_schema

__all__ = [
    "ANNOTATIONS", "PII_TAG", "annotations", "classifications", "declassified", "field_paths", "looks_like_pii",
    "pii_paths",
]

PII_TAG = "x-pii"
"""The keyword / field attribute that carries a field's classification."""

#: Token sequences that mark a field name as personal data.
_PII_TOKENS: tuple[tuple[str, ...], ...] = (
    ("email",),
    ("e", "mail"),
    ("phone",),
    ("mobile",),
    ("msisdn",),
    ("fax",),
    ("ssn",),
    ("social", "security"),
    ("national", "id"),
    ("tax", "id"),
    ("tin",),
    ("first", "name"),
    ("last", "name"),
    ("full", "name"),
    ("given", "name"),
    ("family", "name"),
    ("middle", "name"),
    ("maiden", "name"),
    ("surname",),
    ("firstname",),
    ("lastname",),
    ("fullname",),
    ("address",),
    ("street",),
    ("postcode",),
    ("zip", "code"),
    ("zipcode",),
    ("postal", "code"),
    ("dob",),
    ("date", "of", "birth"),
    ("birth", "date"),
    ("birthdate",),
    ("birthday",),
    ("ip",),
    ("ipv4",),
    ("ipv6",),
    ("credit", "card"),
    ("card", "number"),
    ("cc", "number"),
    ("pan",),
    ("cvv",),
    ("iban",),
    ("bic",),
    ("account", "number"),
    ("passport",),
    ("driver", "license"),
    ("drivers", "license"),
    ("driving", "licence"),
    ("license", "number"),
    ("geo", "location"),
    ("latitude",),
    ("longitude",),
)


def _tokens(name: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    spaced = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1 \2", spaced)
    return [t for t in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if t]


def looks_like_pii(name: str) -> bool:
    """Whether a field name (the last path segment) suggests personal data."""
    tokens = _tokens(name)
    for seq in _PII_TOKENS:
        n = len(seq)
        if any(tuple(tokens[i : i + n]) == seq for i in range(len(tokens) - n + 1)):
            return True
    return False


def field_paths(schema: Any, schema_type: str | SchemaType) -> dict[str, str | None]:
    """Every field path of ``schema`` mapped to its ``x-pii`` tag (``None`` if untagged)."""
    stype = SchemaType.of(schema_type)
    obj = load_schema(schema, stype) if isinstance(schema, str | bytes) else schema
    out: dict[str, str | None] = {}
    if stype is SchemaType.JSON:
        _walk_json(obj, obj, "", out, frozenset())
    else:
        from .compat import _parse_avro  # qualifies names (namespaces are inherited)

        try:
            parsed, names = _parse_avro(obj, {})
        except Exception:  # noqa: BLE001 - e.g. unresolved references: walk what we have
            parsed, names = obj, {}
        _walk_avro(parsed, "", out, names, set())
    return out


def classifications(schema: Any, schema_type: str | SchemaType) -> dict[str, str]:
    """Field path -> classification tag, for every field that carries ``x-pii``."""
    return {p: t for p, t in field_paths(schema, schema_type).items() if t}


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _tag(node: Any) -> str | None:
    if isinstance(node, dict):
        value = node.get(PII_TAG)
        if isinstance(value, str) and value:
            return value
    return None


def _resolve_json(root: Any, node: Any) -> Any:
    ref = node.get("$ref") if isinstance(node, dict) else None
    if not isinstance(ref, str) or not ref.startswith("#"):
        return node
    target: Any = root
    for part in ref[1:].split("/")[1:]:
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(target, dict) and part in target:
            target = target[part]
        else:
            return node
    merged = dict(target) if isinstance(target, dict) else {}
    merged.update({k: v for k, v in node.items() if k != "$ref"})
    return merged


def _walk_json(
    root: Any, node: Any, prefix: str, out: dict[str, str | None], seen: frozenset[str]
) -> None:
    if not isinstance(node, dict):
        return
    ref = node.get("$ref")
    if isinstance(ref, str):
        if ref in seen:  # recursive definition: its fields are already listed
            return
        seen = seen | {ref}
    node = _resolve_json(root, node)
    for name, sub in (node.get("properties") or {}).items():
        path = _join(prefix, name)
        resolved = _resolve_json(root, sub)
        tag = _tag(sub) or _tag(resolved)
        if tag or path not in out:
            out[path] = tag
        _walk_json(root, sub, path, out, seen)
    items = node.get("items")
    for sub in items if isinstance(items, list) else [items] if isinstance(items, dict) else []:
        _walk_json(root, sub, f"{prefix}[]", out, seen)
    for sub in node.get("prefixItems") or []:
        _walk_json(root, sub, f"{prefix}[]", out, seen)
    additional = node.get("additionalProperties")
    if isinstance(additional, dict):
        _walk_json(root, additional, f"{prefix}{{}}", out, seen)
    for key in ("allOf", "anyOf", "oneOf"):
        for sub in node.get(key) or []:
            _walk_json(root, sub, prefix, out, seen)
    for key in ("then", "else"):
        _walk_json(root, node.get(key), prefix, out, seen)


def _walk_avro(
    node: Any, prefix: str, out: dict[str, str | None], names: dict[str, Any], seen: set[str]
) -> None:
    if isinstance(node, list):
        for branch in node:
            _walk_avro(branch, prefix, out, names, seen)
        return
    if isinstance(node, str):
        if node in names and node not in seen:
            _walk_avro(names[node], prefix, out, names, seen | {node})
        return
    if not isinstance(node, dict):
        return
    kind = node.get("type")
    if isinstance(kind, dict | list):
        _walk_avro(kind, prefix, out, names, seen)
        return
    if kind in ("record", "error", "enum", "fixed") and isinstance(node.get("name"), str):
        name = node["name"]
        names.setdefault(name, node)
        if "namespace" in node and "." not in name:
            names.setdefault(f"{node['namespace']}.{name}", node)
        seen = seen | {name}
    if kind in ("record", "error"):
        for field in node.get("fields") or []:
            path = _join(prefix, str(field.get("name")))
            tag = _tag(field)
            if tag or path not in out:
                out[path] = tag
            _walk_avro(field.get("type"), path, out, names, seen)
    elif kind == "array":
        _walk_avro(node.get("items"), f"{prefix}[]", out, names, seen)
    elif kind == "map":
        _walk_avro(node.get("values"), f"{prefix}{{}}", out, names, seen)


ANNOTATIONS = ("x-dataset", "x-erasure-subject")
"""Root schema keywords that tie a topic to a dataset or a data subject (see
:mod:`headwater.events.sealing`); dropping or changing one is a declassification too."""


def annotations(schema: Any, schema_type: str | SchemaType) -> dict[str, Any]:
    """The root :data:`ANNOTATIONS` of a schema (a JSON Schema's root keywords, an Avro record's
    attributes)."""
    obj = load_schema(schema, SchemaType.of(schema_type)) if isinstance(schema, str | bytes) else schema
    if not isinstance(obj, dict):
        return {}
    return {k: obj[k] for k in ANNOTATIONS if k in obj}


def pii_paths(schema: Any, schema_type: str | SchemaType) -> dict[str, str]:
    """Field path -> tag for every field classified as personal data (``x-pii`` other than
    ``none``)."""
    return {p: t for p, t in classifications(schema, schema_type).items() if t.strip().lower() != "none"}


def declassified(old: Any, old_type: str | SchemaType, new: Any, new_type: str | SchemaType) -> list[str]:
    """What ``new`` weakens of ``old``'s classification: every PII field of ``old`` whose tag in
    ``new`` is missing, ``none`` or different (the field gone included: open content would let
    its values through unsealed), and every root annotation dropped or changed. Empty: nothing
    weakened."""
    before = pii_paths(old, old_type)
    after = field_paths(new, new_type)
    out = []
    for path, tag in sorted(before.items()):
        now = after.get(path, _GONE)
        if now != tag:
            out.append(f"{path} ({tag} -> {'removed' if now is _GONE else now or 'unclassified'})")
    old_notes, new_notes = annotations(old, old_type), annotations(new, new_type)
    for key in ANNOTATIONS:
        if key in old_notes and new_notes.get(key) != old_notes[key]:
            out.append(f"{key} ({'removed' if key not in new_notes else 'changed'})")
    return out


_GONE: Any = object()
