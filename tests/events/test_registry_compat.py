"""The compatibility checker beyond the conformance cases: modes, messages, policies, Avro."""

from __future__ import annotations

import pytest

from headwater.errors import InvalidInput
from headwater.events.registry import CompatibilityMode, InvalidSchema, check_compatibility


def json_check(new, *old, mode="BACKWARD", **kw):
    return check_compatibility(new, list(old), schema_type="JSON", mode=mode, **kw)


def avro_check(new, *old, mode="BACKWARD"):
    return check_compatibility(new, list(old), schema_type="AVRO", mode=mode)


OPEN = {"type": "object", "properties": {"foo": {"type": "string"}}}
OPEN_PLUS_BAR = {
    "type": "object",
    "properties": {"foo": {"type": "string"}, "bar": {"type": "integer"}},
}


def test_messages_carry_direction_version_and_path() -> None:
    old = {
        "type": "object",
        "properties": {"a": {"type": "object", "properties": {"b": {"type": "integer"}}}},
    }
    new = {
        "type": "object",
        "properties": {"a": {"type": "object", "properties": {"b": {"type": "string"}}}},
    }
    result = json_check(new, old)
    assert not result and result.compatible is False
    assert result.messages == (
        "BACKWARD vs 1: #/properties/a/properties/b: type integer is no longer allowed",
    )


def test_strict_policy_rejects_adding_a_typed_property_to_an_open_model() -> None:
    result = json_check(OPEN_PLUS_BAR, OPEN)
    assert not result.compatible
    assert "open content model" in result.messages[0] and "/properties/bar" in result.messages[0]
    # forward direction of the same change is fine: new documents are valid old documents
    assert json_check(OPEN_PLUS_BAR, OPEN, mode="FORWARD").compatible


def test_lenient_policy_allows_it() -> None:
    assert json_check(OPEN_PLUS_BAR, OPEN, open_content="lenient").compatible
    assert json_check(OPEN, OPEN_PLUS_BAR, mode="FULL", open_content="lenient").compatible
    # a real type change of a declared property is incompatible under both policies
    changed = {"type": "object", "properties": {"foo": {"type": "integer"}}}
    assert not json_check(changed, OPEN, open_content="lenient").compatible
    with pytest.raises(InvalidInput):
        json_check(OPEN, OPEN, open_content="sloppy")


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("BACKWARD", True),
        ("FORWARD", False),
        ("FULL", False),
        ("NONE", True),
        ("BACKWARD_TRANSITIVE", False),
        ("FORWARD_TRANSITIVE", False),
        ("FULL_TRANSITIVE", False),
    ],
)
def test_modes(mode: str, expected: bool) -> None:
    v1 = {"type": "string", "maxLength": 20}
    v2 = {"type": "string", "maxLength": 5}
    v3 = {"type": "string", "maxLength": 10}  # widens v2 (backward), narrows v1
    assert json_check(v3, v1, v2, mode=mode).compatible is expected


def test_mode_parsing() -> None:
    assert CompatibilityMode.of("full_transitive") is CompatibilityMode.FULL_TRANSITIVE
    assert CompatibilityMode.FULL.backward and CompatibilityMode.FULL.forward
    assert not CompatibilityMode.FORWARD_TRANSITIVE.backward
    with pytest.raises(InvalidInput):
        CompatibilityMode.of("sideways")


def test_no_previous_versions_is_compatible() -> None:
    assert json_check({"type": "string"}).compatible


def test_type_unions_and_integer_promotion() -> None:
    assert json_check({"type": ["string", "number"]}, {"type": ["integer", "string"]}).compatible
    assert not json_check({"type": ["string", "integer"]}, {"type": ["number"]}).compatible


def test_ref_recursion_and_combinators() -> None:
    tree = {
        "$defs": {
            "node": {
                "type": "object",
                "properties": {
                    "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}},
                    "v": {"type": "integer"},
                },
            }
        },
        "$ref": "#/$defs/node",
    }
    wider = {
        "$defs": {
            "node": {
                "type": "object",
                "properties": {
                    "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}},
                    "v": {"type": "number"},
                },
            }
        },
        "$ref": "#/$defs/node",
    }
    assert json_check(wider, tree).compatible
    result = json_check(tree, wider)
    assert not result.compatible
    assert any("/properties/v" in m for m in result.messages)
    assert json_check(
        {"anyOf": [{"type": "string"}, {"type": "null"}]}, {"type": "string"}
    ).compatible
    assert not json_check({"not": {"type": "null"}}, {"type": ["string", "null"]}).compatible
    assert json_check({"not": {"type": "null"}}, {"type": "string"}).compatible


def test_prefix_items_2020_12() -> None:
    old = {"type": "array", "prefixItems": [{"type": "string"}], "items": False}
    new = {
        "type": "array",
        "prefixItems": [{"type": "string"}, {"type": "integer"}],
        "items": False,
    }
    assert json_check(new, old).compatible
    assert not json_check(new, old, mode="FORWARD").compatible


def test_invalid_json_schema() -> None:
    with pytest.raises(InvalidSchema):
        json_check({"type": 7}, {"type": "string"})


# -- Avro --------------------------------------------------------------------------------------


def record(*fields, name="R", **extra):
    return {"type": "record", "name": name, "fields": list(fields), **extra}


@pytest.mark.parametrize(
    ("writer", "reader", "ok"),
    [
        ("int", "long", True),
        ("int", "double", True),
        ("long", "float", True),
        ("float", "double", True),
        ("string", "bytes", True),
        ("bytes", "string", True),
        ("long", "int", False),
        ("double", "float", False),
        ("string", "int", False),
    ],
)
def test_avro_promotions(writer: str, reader: str, ok: bool) -> None:
    old = record({"name": "a", "type": writer})
    new = record({"name": "a", "type": reader})
    assert avro_check(new, old).compatible is ok


def test_avro_unions() -> None:
    plain = record({"name": "a", "type": "string"})
    nullable = record({"name": "a", "type": ["null", "string"], "default": None})
    assert avro_check(nullable, plain).compatible  # reader union has the writer's type
    result = avro_check(plain, nullable)  # writer may send null
    assert not result.compatible and "null" in result.messages[0]


def test_avro_enums_with_default_and_aliases() -> None:
    old = record(
        {"name": "c", "type": {"type": "enum", "name": "Color", "symbols": ["RED", "BLUE"]}}
    )
    narrower = record({"name": "c", "type": {"type": "enum", "name": "Color", "symbols": ["RED"]}})
    with_default = record(
        {
            "name": "c",
            "type": {
                "type": "enum",
                "name": "Color",
                "symbols": ["RED", "OTHER"],
                "default": "OTHER",
            },
        }
    )
    assert not avro_check(narrower, old).compatible
    assert avro_check(with_default, old).compatible
    renamed = record(
        {"name": "colour", "aliases": ["c"], "type": old["fields"][0]["type"]},
        name="S",
        aliases=["R"],
    )
    assert avro_check(renamed, old).compatible


def test_avro_nested_and_recursive_records() -> None:
    node = record(
        {"name": "value", "type": "int"},
        {"name": "next", "type": ["null", "Node"], "default": None},
        name="Node",
    )
    wider = record(
        {"name": "value", "type": "long"},
        {"name": "next", "type": ["null", "Node"], "default": None},
        {"name": "label", "type": "string", "default": ""},
        name="Node",
    )
    assert avro_check(wider, node, mode="BACKWARD").compatible
    result = avro_check(node, wider, mode="BACKWARD")
    assert not result.compatible and any("$.value" in m for m in result.messages)
    arrays = record({"name": "xs", "type": {"type": "array", "items": "int"}})
    maps = record({"name": "xs", "type": {"type": "map", "values": "int"}})
    assert not avro_check(maps, arrays).compatible


def test_invalid_avro() -> None:
    with pytest.raises(InvalidSchema):
        avro_check(record({"name": "a", "type": "nope"}), record({"name": "a", "type": "int"}))
