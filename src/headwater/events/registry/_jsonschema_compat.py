"""Containment checking for JSON Schema: is every document valid under A also valid under B?

The checker proves ``A ⊆ B`` keyword by keyword. It is *sound but incomplete*: when it cannot
prove containment it reports an incompatibility (a registry must never accept a change that
might break readers). Both sides are first flattened: ``allOf`` conjuncts and in-document
``$ref`` targets are merged into one bag of constraints, so ``{"allOf": [{"type": "string"},
{"maxLength": 5}]}`` and ``{"type": "string", "maxLength": 5}`` compare equal.

Deliberate choices, each forced by the conformance suite in ``shared/conformance``:

* ``pattern``, ``format``, ``contentEncoding`` and ``contentMediaType`` are compared
  syntactically (B's value must also be A's), because regular-expression containment is
  undecidable in practice and the suite treats ``"[a-z]*"`` -> no pattern as a real widening.
* ``enum``/``const`` are compared as value sets, independently of ``type`` (an ``enum`` whose
  values all contradict ``type`` is *not* treated as the empty schema).
* ``oneOf`` on the right-hand side is only satisfied by a ``oneOf`` on the left whose branches
  each fit a branch of B, or by fitting one branch while being type-disjoint from the others;
  ``anyOf`` -> ``oneOf`` is therefore a narrowing.
* ``if``/``then``/``else`` in B is satisfied by an ``if``/``then``/``else`` in A with an
  equivalent ``if`` and narrower ``then``/``else`` branches.

Open content models: with the ``strict`` policy a property that B names but A does not name
(A being open, i.e. no ``additionalProperties``) is compared against A's implicit ``true``;
old documents may carry that property with any type, so giving it a type in B is
incompatible. The ``lenient`` policy assumes documents carry no undeclared properties and
skips that comparison.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

__all__ = ["JsonSchemaChecker", "json_subschema"]

ALL_TYPES = frozenset({"null", "boolean", "object", "array", "number", "integer", "string"})

#: Keywords that never restrict the instance set.
_ANNOTATIONS = frozenset(
    {
        "$schema",
        "$id",
        "id",
        "$anchor",
        "$dynamicAnchor",
        "$recursiveAnchor",
        "$comment",
        "$vocabulary",
        "title",
        "description",
        "default",
        "examples",
        "readOnly",
        "writeOnly",
        "deprecated",
        "definitions",
        "$defs",
    }
)

#: Assertion keywords the checker does not reason about: B may only keep A's exact value.
_OPAQUE = frozenset(
    {
        "unevaluatedProperties",
        "unevaluatedItems",
        "minContains",
        "maxContains",
        "$dynamicRef",
        "$recursiveRef",
        "contentSchema",
    }
)

#: Keywords consumed by flattening and the dedicated checks below.
_STRUCTURAL = frozenset(
    {
        "$ref",
        "allOf",
        "anyOf",
        "oneOf",
        "not",
        "if",
        "then",
        "else",
        "const",
        "enum",
        "type",
        "properties",
        "patternProperties",
        "additionalProperties",
        "items",
        "prefixItems",
        "additionalItems",
        "dependencies",
        "dependentRequired",
        "dependentSchemas",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "minLength",
        "maxLength",
        "pattern",
        "format",
        "contentEncoding",
        "contentMediaType",
        "required",
        "minProperties",
        "maxProperties",
        "propertyNames",
        "minItems",
        "maxItems",
        "uniqueItems",
        "contains",
    }
)


class _Doc:
    """One schema document: the root against which ``#...`` references resolve."""

    def __init__(self, schema: Any, externals: dict[str, Any] | None = None) -> None:
        self.schema = schema
        self.externals: dict[str, _Doc] = {}
        self._raw_externals = externals or {}
        self._anchors: dict[str, Any] | None = None

    def external(self, name: str) -> _Doc | None:
        if name not in self.externals and name in self._raw_externals:
            self.externals[name] = _Doc(self._raw_externals[name], self._raw_externals)
        return self.externals.get(name)

    def anchors(self) -> dict[str, Any]:
        if self._anchors is None:
            found: dict[str, Any] = {}

            def walk(node: Any) -> None:
                if isinstance(node, dict):
                    for key in ("$id", "id"):
                        value = node.get(key)
                        if isinstance(value, str) and "#" in value:
                            found.setdefault(value[value.index("#") + 1 :], node)
                    anchor = node.get("$anchor")
                    if isinstance(anchor, str):
                        found.setdefault(anchor, node)
                    for value in node.values():
                        walk(value)
                elif isinstance(node, list):
                    for value in node:
                        walk(value)

            walk(self.schema)
            self._anchors = found
        return self._anchors

    def resolve(self, ref: str) -> tuple[Any, _Doc] | None:
        base, _, fragment = ref.partition("#")
        doc: _Doc | None = self
        if base:
            doc = self.external(base)
            if doc is None:
                return None
        assert doc is not None
        if not fragment:
            return doc.schema, doc
        if fragment.startswith("/"):
            node: Any = doc.schema
            for raw in fragment[1:].split("/"):
                part = raw.replace("~1", "/").replace("~0", "~")
                if isinstance(node, dict) and part in node:
                    node = node[part]
                elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                    node = node[int(part)]
                else:
                    return None
            return node, doc
        target = doc.anchors().get(fragment)
        return (target, doc) if target is not None else None


@dataclass(frozen=True, eq=False)
class _Node:
    """A conjunction of (sub)schemas, each with its document; ``exclude`` drops split groups."""

    parts: tuple[tuple[Any, _Doc], ...]
    exclude: frozenset[int] = frozenset()

    def key(self) -> tuple[Any, ...]:
        return (tuple((id(s), id(d)) for s, d in self.parts), self.exclude)

    def plus(self, schema: Any, doc: _Doc, drop: int | None = None) -> _Node:
        exclude = self.exclude | {drop} if drop is not None else self.exclude
        return _Node(self.parts + ((schema, doc),), exclude)


@dataclass
class _Obj:
    properties: dict[str, Any]
    patterns: list[tuple[str, Any]]
    additional: Any  # None when absent (implicitly open)
    doc: _Doc


@dataclass
class _Arr:
    prefix: list[Any]
    rest: Any
    doc: _Doc


@dataclass
class _Bag:
    false: bool = False
    kw: dict[str, list[tuple[Any, _Doc]]] = field(default_factory=dict)
    groups: list[tuple[str, list[Any], _Doc, int]] = field(default_factory=list)
    conds: list[tuple[Any, Any, Any, _Doc]] = field(default_factory=list)
    objects: list[_Obj] = field(default_factory=list)
    arrays: list[_Arr] = field(default_factory=list)
    refs: list[str] = field(default_factory=list)

    def add(self, key: str, value: Any, doc: _Doc) -> None:
        self.kw.setdefault(key, []).append((value, doc))

    def values(self, key: str) -> list[Any]:
        return [v for v, _ in self.kw.get(key, [])]


def _flatten(node: _Node) -> _Bag:
    bag = _Bag()
    for schema, doc in node.parts:
        _merge(bag, schema, doc, node.exclude, set())
    return bag


def _merge(bag: _Bag, schema: Any, doc: _Doc, exclude: frozenset[int], active: set[int]) -> None:
    if schema is True or schema is None:
        return
    if schema is False:
        bag.false = True
        return
    if not isinstance(schema, dict):
        return
    if id(schema) in active:  # a $ref/allOf cycle adds nothing new
        return
    active = active | {id(schema)}
    for key, value in schema.items():
        if key in _ANNOTATIONS or key.startswith("x-"):
            continue
        if key == "$ref" and isinstance(value, str):
            target = doc.resolve(value)
            if target is None:
                bag.refs.append(value)
            else:
                _merge(bag, target[0], target[1], exclude, active)
        elif key == "allOf" and isinstance(value, list):
            for sub in value:
                _merge(bag, sub, doc, exclude, active)
        elif key in ("anyOf", "oneOf") and isinstance(value, list):
            if id(value) not in exclude:
                bag.groups.append((key, value, doc, id(value)))
        elif key == "if":
            bag.conds.append((value, schema.get("then", True), schema.get("else", True), doc))
        elif key in ("then", "else"):
            continue
        elif key == "const":
            bag.add("enum", [value], doc)
        elif key == "type":
            bag.add("type", frozenset([value] if isinstance(value, str) else value), doc)
        elif key == "dependencies" and isinstance(value, dict):
            for dep, spec in value.items():
                if isinstance(spec, list):
                    bag.add("dependentRequired", {dep: spec}, doc)
                else:
                    bag.add("dependentSchemas", {dep: spec}, doc)
        elif key == "minimum":
            if schema.get("exclusiveMinimum") is True:  # draft-04 boolean form
                bag.add("exclusiveMinimum", value, doc)
            else:
                bag.add("minimum", value, doc)
        elif key == "maximum":
            if schema.get("exclusiveMaximum") is True:
                bag.add("exclusiveMaximum", value, doc)
            else:
                bag.add("maximum", value, doc)
        elif key in ("exclusiveMinimum", "exclusiveMaximum"):
            if not isinstance(value, bool):
                bag.add(key, value, doc)
        elif key in ("properties", "patternProperties", "additionalProperties"):
            continue  # collected below, once per schema object
        elif key in ("items", "prefixItems", "additionalItems"):
            continue
        else:
            bag.add(key, value, doc)
    if any(k in schema for k in ("properties", "patternProperties", "additionalProperties")):
        bag.objects.append(
            _Obj(
                properties=dict(schema.get("properties") or {}),
                patterns=list((schema.get("patternProperties") or {}).items()),
                additional=schema.get("additionalProperties"),
                doc=doc,
            )
        )
    if any(k in schema for k in ("items", "prefixItems")):
        items = schema.get("items", True)
        if isinstance(items, list):
            bag.arrays.append(_Arr(list(items), schema.get("additionalItems", True), doc))
        elif "prefixItems" in schema:
            bag.arrays.append(_Arr(list(schema["prefixItems"]), items, doc))
        else:
            bag.arrays.append(_Arr([], items, doc))


def _canon(value: Any) -> str:
    def norm(v: Any) -> Any:
        if isinstance(v, float) and v.is_integer():
            return int(v)
        if isinstance(v, dict):
            return {k: norm(x) for k, x in v.items()}
        if isinstance(v, list):
            return [norm(x) for x in v]
        return v

    return json.dumps(norm(value), sort_keys=True)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _intersect_types(a: frozenset[str], b: frozenset[str]) -> frozenset[str]:
    out = set()
    for t in a:
        if t in b:
            out.add(t)
        elif t == "integer" and "number" in b:
            out.add("integer")
        elif t == "number" and "integer" in b:
            out.add("integer")
    return frozenset(out)


def _types(bag: _Bag) -> frozenset[str]:
    types = ALL_TYPES
    for value in bag.values("type"):
        types = _intersect_types(types, frozenset(value))
    return types


def _covered(t: str, types: frozenset[str]) -> bool:
    return t in types or (t == "integer" and "number" in types)


def _frac(x: Any) -> Fraction:
    return Fraction(repr(x)) if isinstance(x, float) else Fraction(x)


def _fmt(v: Any) -> str:
    return json.dumps(v, ensure_ascii=False)


def _is_true(schema: Any) -> bool:
    return schema is True or schema is None or schema == {}


class JsonSchemaChecker:
    """Proves containment between two JSON Schema documents; see the module docstring."""

    def __init__(self, *, lenient: bool = False) -> None:
        self.lenient = lenient
        self._memo: dict[tuple[Any, Any], list[str]] = {}
        self._keep: list[Any] = []

    # -- entry point -------------------------------------------------------------------------
    def contained(
        self,
        a: Any,
        b: Any,
        *,
        a_refs: dict[str, Any] | None = None,
        b_refs: dict[str, Any] | None = None,
    ) -> list[str]:
        """Messages explaining why documents valid under ``a`` may be invalid under ``b``."""
        doc_a, doc_b = _Doc(a, a_refs), _Doc(b, b_refs)
        self._keep.extend([doc_a, doc_b])
        return self._sub(_Node(((a, doc_a),)), _Node(((b, doc_b),)), "#")

    # -- core --------------------------------------------------------------------------------
    def _sub(self, a: _Node, b: _Node, path: str) -> list[str]:
        if all(_is_true(s) for s, _ in b.parts):
            return []
        if any(s is False for s, _ in a.parts):
            return []
        key = (a.key(), b.key())
        if key in self._memo:
            return self._memo[key]
        self._keep.append((a, b))
        before = set(self._memo)
        self._memo[key] = []  # coinductive assumption for recursive schemas
        result = self._sub_uncached(a, b, path)
        if result:
            # successes proven meanwhile may rest on the assumption that just failed
            for k in [k for k in self._memo if k not in before and not self._memo[k]]:
                del self._memo[k]
        self._memo[key] = result
        return result

    def _sub_uncached(self, a: _Node, b: _Node, path: str) -> list[str]:
        ba, bb = _flatten(a), _flatten(b)
        if ba.false:
            return []
        if bb.false:
            return [f"{path}: the schema now rejects every value (false)"]
        if self._enum_values_fit(ba, b):
            return []
        msgs = self._direct(a, ba, b, bb, path)
        if msgs and ba.groups:
            kind, alternatives, doc, gid = ba.groups[0]
            split_msgs: list[str] = []
            for alt in alternatives:
                split_msgs = self._sub(a.plus(alt, doc, drop=gid), b, path)
                if split_msgs:
                    break
            if not split_msgs:
                return []
        return msgs

    def _enum_values_fit(self, ba: _Bag, b: _Node) -> bool:
        """A finite A (``enum``/``const``) fits B when each of its values validates under B."""
        if "enum" not in ba.kw:
            return False
        values = self._enum(ba)
        try:
            import jsonschema
        except ImportError:  # pragma: no cover - jsonschema is a registry dependency
            return False
        for schema, doc in b.parts:
            if "$ref" in json.dumps(schema):
                return False
            root = doc.schema if isinstance(doc.schema, dict) else {}
            cls = jsonschema.validators.validator_for(root, default=jsonschema.Draft7Validator)
            try:
                validator = cls(schema)
                if not all(validator.is_valid(v) for v in values):
                    return False
            except Exception:
                return False
        return True

    @staticmethod
    def _enum(bag: _Bag) -> list[Any]:
        enums = bag.values("enum")
        values = list(enums[0])
        for other in enums[1:]:
            keys = {_canon(v) for v in other}
            values = [v for v in values if _canon(v) in keys]
        return values

    def _direct(self, a: _Node, ba: _Bag, b: _Node, bb: _Bag, path: str) -> list[str]:
        msgs: list[str] = []
        ta, tb = _types(ba), _types(bb)
        if not ta:
            return []
        lost = sorted(t for t in ta if not _covered(t, tb))
        if lost:
            msgs.append(f"{path}: type {', '.join(lost)} is no longer allowed")
        ta = _intersect_types(ta, tb) if not lost else ta

        if "enum" in bb.kw:
            allowed = {_canon(v) for v in self._enum(bb)}
            if "enum" in ba.kw:
                missing = [v for v in self._enum(ba) if _canon(v) not in allowed]
                if missing:
                    msgs.append(
                        f"{path}: value(s) {', '.join(_fmt(v) for v in missing)} no longer allowed"
                    )
            else:
                msgs.append(f"{path}: values are newly restricted to {_fmt(self._enum(bb))}")

        if ta & {"number", "integer"}:
            msgs += self._numbers(ba, bb, path, integer_only="number" not in ta)
        if "string" in ta:
            msgs += self._strings(ba, bb, path)
        if "array" in ta:
            msgs += self._arrays(ba, bb, path)
        if "object" in ta:
            msgs += self._objects(a, ba, bb, path)

        for x, xdoc in bb.kw.get("not", []):
            if not self._not_ok(a, ba, x, xdoc):
                msgs.append(f"{path}/not: documents matching {_fmt(x)} are now rejected")

        for kind, alternatives, doc, _gid in bb.groups:
            if kind == "anyOf":
                ok = any(
                    not self._sub(a, _Node(((g, doc),)), f"{path}/anyOf") for g in alternatives
                )
            else:
                ok = self._one_of_ok(a, ba, alternatives, doc, path)
            if not ok:
                msgs.append(f"{path}/{kind}: some documents match none of the {kind} branches")

        for if_b, then_b, else_b, doc in bb.conds:
            msgs += self._cond(a, ba, if_b, then_b, else_b, doc, path)

        for ref in bb.refs:
            if ref not in ba.refs:
                msgs.append(f"{path}: unresolvable $ref {ref!r} cannot be verified")
        for key, entries in bb.kw.items():
            if key in _OPAQUE:
                theirs = {_canon(v) for v in ba.values(key)}
                for value, _ in entries:
                    if _canon(value) not in theirs:
                        msgs.append(f"{path}/{key}: {key} cannot be verified and changed")
        return msgs

    # -- numbers -----------------------------------------------------------------------------
    @staticmethod
    def _bound(bag: _Bag, incl: str, excl: str, lower: bool) -> tuple[Any, bool] | None:
        cands = [(v, False) for v in bag.values(incl) if isinstance(v, int | float)]
        cands += [(v, True) for v in bag.values(excl) if isinstance(v, int | float)]
        if not cands:
            return None
        if lower:
            return max(cands, key=lambda c: (c[0], c[1]))
        return min(cands, key=lambda c: (c[0], not c[1]))

    def _numbers(self, ba: _Bag, bb: _Bag, path: str, integer_only: bool) -> list[str]:
        msgs = []
        for lower, incl, excl in (
            (True, "minimum", "exclusiveMinimum"),
            (False, "maximum", "exclusiveMaximum"),
        ):
            need = self._bound(bb, incl, excl, lower)
            if need is None:
                continue
            have = self._bound(ba, incl, excl, lower)
            if have is not None and integer_only:
                v, ex = have
                if lower:
                    have = (math.floor(v) + 1 if ex else math.ceil(v), False)
                else:
                    have = (math.ceil(v) - 1 if ex else math.floor(v), False)
            word = "minimum" if lower else "maximum"
            if have is None:
                msgs.append(f"{path}/{incl if not need[1] else excl}: new {word} {need[0]} added")
                continue
            (hv, hx), (nv, nx) = have, need
            ok = (hv > nv if lower else hv < nv) or (hv == nv and (hx or not nx))
            if not ok:
                msgs.append(
                    f"{path}/{incl if not nx else excl}: {word} tightened to {nv}"
                    f"{' (exclusive)' if nx else ''}"
                )
        for m in bb.values("multipleOf"):
            try:
                mf = _frac(m)
                ok = any((_frac(x) / mf).denominator == 1 for x in ba.values("multipleOf"))
                ok = ok or (integer_only and (Fraction(1) / mf).denominator == 1)
            except (TypeError, ValueError, ZeroDivisionError):
                ok = False
            if not ok:
                msgs.append(f"{path}/multipleOf: values must now be a multiple of {m}")
        return msgs

    # -- strings -----------------------------------------------------------------------------
    def _strings(self, ba: _Bag, bb: _Bag, path: str) -> list[str]:
        msgs = []
        need_min = max(bb.values("minLength"), default=None)
        if need_min is not None and max(ba.values("minLength"), default=0) < need_min:
            msgs.append(f"{path}/minLength: minimum length raised to {need_min}")
        need_max = min(bb.values("maxLength"), default=None)
        have_max = min(ba.values("maxLength"), default=None)
        if need_max is not None and (have_max is None or have_max > need_max):
            msgs.append(f"{path}/maxLength: maximum length lowered to {need_max}")
        for key in ("pattern", "format", "contentEncoding", "contentMediaType"):
            have = ba.values(key)
            for value in bb.values(key):
                if value not in have:
                    msgs.append(f"{path}/{key}: {key} {_fmt(value)} added or changed")
        return msgs

    # -- arrays ------------------------------------------------------------------------------
    def _arrays(self, ba: _Bag, bb: _Bag, path: str) -> list[str]:
        msgs = []
        need_min = max(bb.values("minItems"), default=None)
        if need_min is not None and max(ba.values("minItems"), default=0) < need_min:
            msgs.append(f"{path}/minItems: minimum item count raised to {need_min}")
        have_max = min(ba.values("maxItems"), default=None)
        need_max = min(bb.values("maxItems"), default=None)
        if need_max is not None and (have_max is None or have_max > need_max):
            msgs.append(f"{path}/maxItems: maximum item count lowered to {need_max}")
        if any(bb.values("uniqueItems")) and not any(ba.values("uniqueItems")):
            if have_max is None or have_max > 1:
                msgs.append(f"{path}/uniqueItems: items must now be unique")
        for c, cdoc in bb.kw.get("contains", []):
            if not any(
                not self._sub(_Node(((ac, adoc),)), _Node(((c, cdoc),)), f"{path}/contains")
                for ac, adoc in ba.kw.get("contains", [])
            ):
                msgs.append(f"{path}/contains: new or narrower contains {_fmt(c)}")
        if not bb.arrays:
            return msgs

        def item(arrs: list[_Arr], i: int | None) -> _Node:
            parts = []
            for arr in arrs:
                sub = arr.prefix[i] if i is not None and i < len(arr.prefix) else arr.rest
                parts.append((sub, arr.doc))
            return _Node(tuple(parts))

        n = max(len(arr.prefix) for arr in ba.arrays + bb.arrays)
        for i in range(n):
            if have_max is not None and i >= have_max:
                return msgs
            a_i = item(ba.arrays, i)
            if any(s is False for s, _ in a_i.parts):
                return msgs  # A's arrays cannot be this long
            msgs += self._sub(a_i, item(bb.arrays, i), f"{path}/items/{i}")
        if have_max is None or have_max > n:
            msgs += self._sub(
                item(ba.arrays, None), item(bb.arrays, None), f"{path}/additionalItems"
            )
        return msgs

    # -- objects -----------------------------------------------------------------------------
    @staticmethod
    def _prop(objs: list[_Obj], name: str) -> tuple[_Node, bool]:
        parts: list[tuple[Any, _Doc]] = []
        implicit = True
        for obj in objs:
            matched = False
            if name in obj.properties:
                parts.append((obj.properties[name], obj.doc))
                matched = True
            for pattern, sub in obj.patterns:
                try:
                    hit = re.search(pattern, name) is not None
                except re.error:
                    hit = False
                if hit:
                    parts.append((sub, obj.doc))
                    matched = True
            if matched:
                implicit = False
            elif obj.additional is not None:
                parts.append((obj.additional, obj.doc))
                implicit = False
        return _Node(tuple(parts)), implicit

    def _objects(self, a: _Node, ba: _Bag, bb: _Bag, path: str) -> list[str]:
        msgs = []
        required_a = {r for rs in ba.values("required") for r in rs}
        for name in sorted({r for rs in bb.values("required") for r in rs} - required_a):
            msgs.append(f"{path}/required: property {name!r} is now required")
        need_min = max(bb.values("minProperties"), default=None)
        if need_min is not None and max(ba.values("minProperties"), default=0) < need_min:
            msgs.append(f"{path}/minProperties: minimum property count raised to {need_min}")
        need_max = min(bb.values("maxProperties"), default=None)
        have_max = min(ba.values("maxProperties"), default=None)
        if need_max is not None and (have_max is None or have_max > need_max):
            msgs.append(f"{path}/maxProperties: maximum property count lowered to {need_max}")
        a_names = _Node(tuple((s, d) for s, d in ba.kw.get("propertyNames", [])))
        for s, d in bb.kw.get("propertyNames", []):
            if self._sub(a_names, _Node(((s, d),)), f"{path}/propertyNames"):
                msgs.append(f"{path}/propertyNames: property names are newly restricted")

        def absent(name: str) -> bool:
            node, _ = self._prop(ba.objects, name)
            return any(s is False for s, _ in node.parts)

        deps_a: dict[str, set[str]] = {}
        for spec in ba.values("dependentRequired"):
            for k, v in spec.items():
                deps_a.setdefault(k, set()).update(v)
        for spec in bb.values("dependentRequired"):
            for k, v in spec.items():
                missing = set(v) - deps_a.get(k, set()) - required_a
                if missing and not absent(k):
                    msgs.append(
                        f"{path}/dependencies/{k}: now also requires {', '.join(sorted(missing))}"
                    )
        for spec, sdoc in bb.kw.get("dependentSchemas", []):
            for k, s in spec.items():
                target = _Node(((s, sdoc),))
                ok = absent(k) or not self._sub(a, target, f"{path}/dependencies/{k}")
                for aspec, adoc in ba.kw.get("dependentSchemas", []):
                    if not ok and k in aspec:
                        ok = not self._sub(_Node(((aspec[k], adoc),)), target, path)
                if not ok:
                    msgs.append(f"{path}/dependencies/{k}: new or narrower schema dependency")

        if not bb.objects:
            return msgs
        names = sorted({n for o in ba.objects + bb.objects for n in o.properties})
        for name in names:
            a_k, implicit = self._prop(ba.objects, name)
            if any(s is False for s, _ in a_k.parts):
                continue
            if implicit and self.lenient:
                continue
            b_k, _ = self._prop(bb.objects, name)
            sub_msgs = self._sub(a_k, b_k, f"{path}/properties/{name}")
            if sub_msgs and implicit and not a_k.parts:
                msgs.append(
                    f"{path}/properties/{name}: property added to an open content model; "
                    "existing documents may carry it with another type"
                )
            else:
                msgs += sub_msgs
        for bo in bb.objects:
            b_patterns = {p for p, _ in bo.patterns}
            for pattern, s_b in bo.patterns:
                target = _Node(((s_b, bo.doc),))
                if not any(self._pattern_ok(ao, pattern, target) for ao in ba.objects) and (
                    ba.objects or self._sub(_Node(()), target, path)
                ):
                    msgs.append(f"{path}/patternProperties/{pattern}: new or narrower schema")
            if _is_true(bo.additional):
                continue
            target = _Node(((bo.additional, bo.doc),))
            ok = False
            for ao in ba.objects:
                extra = [(s, ao.doc) for p, s in ao.patterns if p not in b_patterns]
                extra.append((True if ao.additional is None else ao.additional, ao.doc))
                if all(not self._sub(_Node((e,)), target, path) for e in extra):
                    ok = True
                    break
            if not ok:
                msgs.append(
                    f"{path}/additionalProperties: additional properties are newly restricted"
                )
        return msgs

    def _pattern_ok(self, ao: _Obj, pattern: str, target: _Node) -> bool:
        for p, s in ao.patterns:
            if p == pattern and not self._sub(_Node(((s, ao.doc),)), target, ""):
                return True
        everything = [(s, ao.doc) for _, s in ao.patterns]
        everything.append((True if ao.additional is None else ao.additional, ao.doc))
        return all(not self._sub(_Node((e,)), target, "") for e in everything)

    # -- combinators -------------------------------------------------------------------------
    def _disjoint(self, ba: _Bag, other: _Node) -> bool:
        return not _intersect_types(_types(ba), _types(_flatten(other)))

    def _not_ok(self, a: _Node, ba: _Bag, x: Any, xdoc: _Doc) -> bool:
        xnode = _Node(((x, xdoc),))
        for y, ydoc in ba.kw.get("not", []):
            if not self._sub(xnode, _Node(((y, ydoc),)), ""):
                return True
        return self._disjoint(ba, xnode)

    def _one_of_ok(self, a: _Node, ba: _Bag, alternatives: list[Any], doc: _Doc, path: str) -> bool:
        branches = [_Node(((g, doc),)) for g in alternatives]
        for kind, own, odoc, gid in ba.groups:
            if kind != "oneOf":
                continue
            if all(
                any(not self._sub(a.plus(h, odoc, drop=gid), g, f"{path}/oneOf") for g in branches)
                for h in own
            ):
                return True
        for i, g in enumerate(branches):
            if not self._sub(a, g, f"{path}/oneOf") and all(
                self._disjoint(ba, other) for j, other in enumerate(branches) if j != i
            ):
                return True
        return False

    def _cond(
        self, a: _Node, ba: _Bag, if_b: Any, then_b: Any, else_b: Any, doc: _Doc, path: str
    ) -> list[str]:
        if_node = _Node(((if_b, doc),))
        for if_a, then_a, else_a, adoc in ba.conds:
            a_if = _Node(((if_a, adoc),))
            if self._sub(a_if, if_node, path) or self._sub(if_node, a_if, path):
                continue
            msgs = self._sub(a.plus(then_a, adoc), _Node(((then_b, doc),)), f"{path}/then")
            msgs += self._sub(a.plus(else_a, adoc), _Node(((else_b, doc),)), f"{path}/else")
            if not msgs:
                return []
        msgs = self._sub(a, _Node(((then_b, doc),)), f"{path}/then")
        msgs += self._sub(a, _Node(((else_b, doc),)), f"{path}/else")
        if msgs:
            return [f"{path}/if: conditional constraints changed"] + msgs
        return []


def json_subschema(
    a: Any,
    b: Any,
    *,
    lenient: bool = False,
    a_refs: dict[str, Any] | None = None,
    b_refs: dict[str, Any] | None = None,
) -> list[str]:
    """Reasons why a document valid under ``a`` might be invalid under ``b`` (empty: none)."""
    return JsonSchemaChecker(lenient=lenient).contained(a, b, a_refs=a_refs, b_refs=b_refs)
