"""Avro schema resolution (reader vs writer) following the Avro specification.

Schemas are parsed with ``fastavro.parse_schema`` (which validates them and qualifies every
name), then walked pairwise. Logical types are compared through their underlying type.
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["avro_resolution_errors", "parse_avro"]

_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})

#: writer type -> reader types it may be promoted to.
_PROMOTIONS = {
    "int": {"long", "float", "double"},
    "long": {"float", "double"},
    "float": {"double"},
    "string": {"bytes"},
    "bytes": {"string"},
}


def parse_avro(schema: Any, named: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
    """Parse with fastavro; return the parsed schema and its table of named types.

    ``named`` (name -> schema) is updated in place with the types ``schema`` defines.

    Raises ``ValueError`` (from fastavro) for an invalid schema and ``ImportError`` when
    fastavro is missing; the caller translates both.
    """
    import fastavro

    names: dict[str, Any] = named if named is not None else {}
    parsed = fastavro.parse_schema(copy.deepcopy(schema), named_schemas=names, _write_hint=False)
    return parsed, names


class _Resolver:
    def __init__(self, reader_names: dict[str, Any], writer_names: dict[str, Any]) -> None:
        self.rn = reader_names
        self.wn = writer_names
        self.active: set[tuple[str, str]] = set()

    @staticmethod
    def _deref(schema: Any, names: dict[str, Any]) -> Any:
        if isinstance(schema, str):
            if schema in _PRIMITIVES:
                return schema
            return names.get(schema, schema)
        if isinstance(schema, dict) and schema.get("type") in _PRIMITIVES:
            return schema["type"]  # drop logicalType and other attributes
        if isinstance(schema, dict) and isinstance(schema.get("type"), dict | list):
            return schema["type"]
        return schema

    @staticmethod
    def _kind(schema: Any) -> str:
        if isinstance(schema, list):
            return "union"
        if isinstance(schema, str):
            return schema
        return str(schema.get("type"))

    @staticmethod
    def _names_match(reader: dict[str, Any], writer: dict[str, Any]) -> bool:
        rname, wname = reader.get("name", ""), writer.get("name", "")
        if rname == wname:
            return True
        namespace = rname.rpartition(".")[0]
        aliases = {
            a if "." in a or not namespace else f"{namespace}.{a}"
            for a in reader.get("aliases", [])
        }
        return wname in aliases or wname.rpartition(".")[2] in set(reader.get("aliases", []))

    def check(self, reader: Any, writer: Any, path: str) -> list[str]:
        r = self._deref(reader, self.rn)
        w = self._deref(writer, self.wn)
        rk, wk = self._kind(r), self._kind(w)
        if wk == "union":
            msgs = []
            for i, branch in enumerate(w):
                sub = self.check(r, branch, f"{path}[writer union branch {i}]")
                if sub:
                    msgs.append(
                        f"{path}: writer union branch {self._describe(branch)} cannot be read "
                        f"as {self._describe(r)}"
                    )
            return msgs
        if rk == "union":
            if any(not self.check(branch, w, path) for branch in r):
                return []
            return [
                f"{path}: writer type {self._describe(w)} matches no branch of the reader union"
            ]
        if rk in _PRIMITIVES or wk in _PRIMITIVES:
            if rk == wk or rk in _PROMOTIONS.get(wk, ()):
                return []
            return [
                f"{path}: writer type {self._describe(w)} cannot be read as {self._describe(r)}"
            ]
        if rk != wk:
            return [f"{path}: writer type {wk} cannot be read as {rk}"]
        if rk in ("record", "error", "enum", "fixed") and not self._names_match(r, w):
            return [f"{path}: named type {w.get('name')!r} is now {r.get('name')!r}"]
        if rk in ("record", "error"):
            return self._record(r, w, path)
        if rk == "enum":
            missing = [s for s in w.get("symbols", []) if s not in r.get("symbols", [])]
            if missing and "default" not in r:
                return [f"{path}: enum {r.get('name')} lacks writer symbol(s) {', '.join(missing)}"]
            return []
        if rk == "fixed":
            if r.get("size") != w.get("size"):
                return [f"{path}: fixed size changed from {w.get('size')} to {r.get('size')}"]
            return []
        if rk == "array":
            return self.check(r.get("items"), w.get("items"), f"{path}[]")
        if rk == "map":
            return self.check(r.get("values"), w.get("values"), f"{path}{{}}")
        return [f"{path}: unsupported Avro type {rk!r}"]

    def _record(self, r: dict[str, Any], w: dict[str, Any], path: str) -> list[str]:
        key = (r.get("name", ""), w.get("name", ""))
        if key in self.active:
            return []  # recursive record: assume compatible (coinduction)
        self.active.add(key)
        try:
            by_name = {f["name"]: f for f in w.get("fields", [])}
            msgs = []
            for field in r.get("fields", []):
                name = field["name"]
                wf = by_name.get(name)
                if wf is None:
                    wf = next((by_name[a] for a in field.get("aliases", []) if a in by_name), None)
                sub_path = f"{path}.{name}"
                if wf is not None:
                    msgs += self.check(field["type"], wf["type"], sub_path)
                elif "default" not in field:
                    msgs.append(
                        f"{sub_path}: reader field {name!r} has no default and is missing "
                        "from the writer schema"
                    )
            return msgs
        finally:
            self.active.discard(key)

    @staticmethod
    def _describe(schema: Any) -> str:
        if isinstance(schema, str):
            return schema
        if isinstance(schema, list):
            return "union"
        return str(schema.get("name") or schema.get("type"))


def avro_resolution_errors(
    reader: Any,
    writer: Any,
    *,
    reader_names: dict[str, Any] | None = None,
    writer_names: dict[str, Any] | None = None,
) -> list[str]:
    """Reasons why data written with ``writer`` cannot be read with ``reader`` (empty: none).

    Both schemas must already be parsed by :func:`parse_avro`.
    """
    return _Resolver(reader_names or {}, writer_names or {}).check(reader, writer, "$")
