"""SchemaRegistry behaviour, run against SQLite and Postgres."""

from __future__ import annotations

import json
import logging
import pickle

import pytest

from headwater.errors import NotFound, SchemaError
from headwater.events.registry import (
    CompatibilityMode,
    IncompatibleSchema,
    InvalidSchema,
    NotSoftDeleted,
    SchemaNotFound,
    SchemaReference,
    SchemaRegistry,
    SchemaType,
    SubjectNotFound,
    UnclassifiedPII,
    VersionNotFound,
)


def obj(props: dict, *, required=(), closed: bool = True) -> dict:
    schema = {"type": "object", "properties": props}
    if required:
        schema["required"] = list(required)
    if closed:
        schema["additionalProperties"] = False
    return schema


S = {"type": "string"}
INT = {"type": "integer"}
V1 = obj({"id": INT})
V2 = obj({"id": INT, "name": S})  # closed model: adding an optional property is backward only
V3 = obj({"id": INT, "name": S, "city": S})

AVRO_V1 = {
    "type": "record",
    "name": "Order",
    "namespace": "hw",
    "fields": [{"name": "id", "type": "long"}],
}
AVRO_V2 = {
    "type": "record",
    "name": "Order",
    "namespace": "hw",
    "fields": [{"name": "id", "type": "long"}, {"name": "total", "type": "double", "default": 0.0}],
}


# -- ids, idempotency, reads ------------------------------------------------------------------


def test_register_returns_ids_and_versions(registry: SchemaRegistry) -> None:
    first = registry.register("orders-value", V1)
    second = registry.register("orders-value", V2)
    assert first != second
    assert registry.versions("orders-value") == [1, 2]
    latest = registry.get_version("orders-value")
    assert (latest.version, latest.id, latest.schema_type) == (2, second, SchemaType.JSON)
    assert json.loads(latest.schema) == V2
    assert registry.get_version("orders-value", 1).id == first
    assert registry.subjects() == ["orders-value"]


def test_reregistering_is_idempotent(registry: SchemaRegistry) -> None:
    schema_id = registry.register("orders-value", V1)
    # same schema, different key order and whitespace: same id, no new version
    text = json.dumps(
        {"additionalProperties": False, "properties": {"id": INT}, "type": "object"}, indent=4
    )
    result = registry.register_detailed("orders-value", text)
    assert result.id == schema_id and result.version == 1 and result.created is False
    assert registry.versions("orders-value") == [1]


def test_same_schema_in_two_subjects_shares_the_id(registry: SchemaRegistry) -> None:
    a = registry.register("a-value", V1)
    b = registry.register("b-value", json.dumps(V1))
    assert a == b
    assert registry.get_by_id(a).schema == registry.get_version("b-value").schema
    assert registry.subject_versions_by_id(a) == [("a-value", 1), ("b-value", 1)]
    # the same text as another schema type is a different schema
    assert registry.register("c-value", {"type": "string"}, "AVRO") != registry.register(
        "d-value", {"type": "string"}, "JSON"
    )


def test_get_by_id_and_lookup(registry: SchemaRegistry) -> None:
    schema_id = registry.register("orders-value", V1)
    stored = registry.get_by_id(schema_id)
    assert stored.id == schema_id and json.loads(stored.schema) == V1
    found = registry.lookup("orders-value", json.dumps(V1, indent=2))
    assert (found.version, found.id) == (1, schema_id)
    with pytest.raises(SchemaNotFound):
        registry.lookup("orders-value", V2)
    with pytest.raises(SubjectNotFound):
        registry.lookup("nope", V1)
    with pytest.raises(SchemaNotFound) as err:
        registry.get_by_id(999_999)
    assert isinstance(err.value, NotFound) and err.value.schema_id == 999_999


def test_missing_subject_and_version(registry: SchemaRegistry) -> None:
    with pytest.raises(SubjectNotFound):
        registry.versions("ghost")
    with pytest.raises(SubjectNotFound):
        registry.get_version("ghost")
    registry.register("orders-value", V1)
    with pytest.raises(VersionNotFound) as err:
        registry.get_version("orders-value", 7)
    assert err.value.version == 7


def test_invalid_schemas_are_rejected(registry: SchemaRegistry) -> None:
    with pytest.raises(InvalidSchema):
        registry.register("x", "{not json")
    with pytest.raises(InvalidSchema):
        registry.register("x", {"type": "strin"})
    with pytest.raises(InvalidSchema):
        registry.register(
            "x", {"type": "record", "name": "R", "fields": [{"name": "a", "type": "nope"}]}, "AVRO"
        )
    with pytest.raises(SchemaError):
        registry.register("x", V1, "PROTOBUF")
    assert registry.subjects() == []


# -- compatibility enforcement ------------------------------------------------------------------


def test_backward_is_the_default_and_enforced(registry: SchemaRegistry) -> None:
    assert registry.get_config() is CompatibilityMode.BACKWARD
    assert registry.get_config("orders-value") is CompatibilityMode.BACKWARD
    registry.register("orders-value", V2)
    with pytest.raises(IncompatibleSchema) as err:
        registry.register("orders-value", obj({"id": S, "name": S}))
    exc = err.value
    assert isinstance(exc, SchemaError)
    assert exc.mode == "BACKWARD" and exc.subject == "orders-value"
    assert any("#/properties/id" in m and "integer" in m for m in exc.messages)
    assert pickle.loads(pickle.dumps(exc)).messages == exc.messages
    assert registry.versions("orders-value") == [1]


def test_forward_mode(registry: SchemaRegistry) -> None:
    registry.set_config("orders-value", "FORWARD")
    registry.register("orders-value", V2)
    # dropping a property from a closed model: old readers still accept new documents
    registry.register("orders-value", V1)
    # adding one to a closed model: old readers (closed) reject new documents
    with pytest.raises(IncompatibleSchema) as err:
        registry.register("orders-value", V3)
    assert all(m.startswith("FORWARD") for m in err.value.messages)


def test_full_and_none_modes(registry: SchemaRegistry) -> None:
    registry.set_config("s", CompatibilityMode.FULL)
    registry.register("s", V1)
    with pytest.raises(IncompatibleSchema):
        registry.register("s", V2)  # backward but not forward
    registry.set_config("s", "NONE")
    assert registry.register_detailed("s", obj({"id": S})).version == 2


def test_subject_config_overrides_global(registry: SchemaRegistry) -> None:
    registry.set_config(None, "NONE")
    assert registry.get_config() is CompatibilityMode.NONE
    assert registry.get_config("free") is CompatibilityMode.NONE
    registry.set_config("strict-subject", "FULL")
    assert registry.get_config("strict-subject", default_to_global=False) is CompatibilityMode.FULL
    assert registry.get_config("free", default_to_global=False) is None

    registry.register("free", V1)
    registry.register("free", obj({"id": S}))  # global NONE: anything goes
    registry.register("strict-subject", V1)
    with pytest.raises(IncompatibleSchema):
        registry.register("strict-subject", obj({"id": S}))

    registry.delete_config("strict-subject")
    assert registry.get_config("strict-subject") is CompatibilityMode.NONE
    registry.delete_config(None)
    assert registry.get_config() is CompatibilityMode.BACKWARD


@pytest.mark.parametrize(
    ("mode", "accepted"),
    [("FORWARD", True), ("FORWARD_TRANSITIVE", False), ("FULL_TRANSITIVE", False), ("NONE", True)],
)
def test_transitive_modes_check_every_version(
    registry: SchemaRegistry, mode: str, accepted: bool
) -> None:
    registry.set_config("s", "NONE")
    registry.register("s", obj({"x": INT}))
    registry.register("s", obj({"x": INT, "y": S}))
    registry.set_config("s", mode)
    # forward compatible with version 2 (narrower y) but not with version 1 (closed, no y)
    candidate = obj({"x": INT, "y": {"type": "string", "maxLength": 3}})
    if accepted:
        assert registry.register_detailed("s", candidate).version == 3
    else:
        with pytest.raises(IncompatibleSchema) as err:
            registry.register("s", candidate)
        assert any(m.startswith("FORWARD vs version 1") for m in err.value.messages)
        assert not any("version 2" in m and m.startswith("FORWARD") for m in err.value.messages)


def test_check_versions_all_vs_latest(registry: SchemaRegistry) -> None:
    registry.set_config("s", "NONE")
    registry.register("s", obj({"x": S}))
    registry.register("s", obj({"x": INT}))
    registry.set_config("s", "BACKWARD")
    candidate = obj({"x": INT, "y": S})
    assert registry.check("s", candidate).compatible  # latest: x integer
    result = registry.check("s", candidate, version="all")
    assert not result.compatible
    assert any("version 1" in m and "#/properties/x" in m for m in result.messages)
    assert registry.check("s", candidate, version=2).compatible
    assert not registry.check("s", candidate, version=1).compatible
    # a transitive mode makes register behave like version="all"
    registry.set_config("s", "BACKWARD_TRANSITIVE")
    with pytest.raises(IncompatibleSchema) as err:
        registry.register("s", candidate)
    assert any("version 1" in m for m in err.value.messages)
    registry.set_config("s", "BACKWARD")
    assert registry.register_detailed("s", candidate).version == 3


def test_check_on_new_subject_is_compatible(registry: SchemaRegistry) -> None:
    assert registry.check("new", V1).compatible


def test_avro_subject(registry: SchemaRegistry) -> None:
    one = registry.register("orders-avro", AVRO_V1, "AVRO")
    two = registry.register("orders-avro", json.dumps(AVRO_V2), "AVRO")
    assert one != two
    assert registry.get_version("orders-avro").schema_type is SchemaType.AVRO
    no_default = {**AVRO_V2, "fields": AVRO_V2["fields"] + [{"name": "note", "type": "string"}]}
    with pytest.raises(IncompatibleSchema) as err:
        registry.register("orders-avro", no_default, "AVRO")
    assert any("note" in m and "default" in m for m in err.value.messages)
    # changing the schema type of a subject is incompatible unless the mode is NONE
    with pytest.raises(IncompatibleSchema):
        registry.register("orders-avro", V1, "JSON")


def test_avro_references(registry: SchemaRegistry) -> None:
    money = {
        "type": "record",
        "name": "Money",
        "namespace": "hw",
        "fields": [{"name": "cents", "type": "long"}],
    }
    registry.register("money", money, "AVRO")
    order = {
        "type": "record",
        "name": "Order",
        "namespace": "hw",
        "fields": [{"name": "total", "type": "hw.Money"}],
    }
    ref = SchemaReference("hw.Money", "money", 1)
    schema_id = registry.register("order", order, "AVRO", references=[ref])
    assert registry.get_by_id(schema_id).references == (ref,)
    with pytest.raises(InvalidSchema):
        registry.register("order2", order, "AVRO")  # hw.Money unknown without the reference
    with pytest.raises(InvalidSchema):
        registry.register(
            "order3", order, "AVRO", references=[{"name": "x", "subject": "money", "version": 9}]
        )


def test_json_references(registry: SchemaRegistry) -> None:
    address = obj({"street": S}, required=["street"])
    registry.register("address", address)
    customer = {"type": "object", "properties": {"home": {"$ref": "address.json"}}}
    refs = [{"name": "address.json", "subject": "address", "version": 1}]
    registry.register("customer", customer, references=refs)
    looser = {"type": "object", "properties": {"home": {"type": "object"}}}
    assert registry.check("customer", looser).compatible
    stricter = {"type": "object", "properties": {"home": {"type": "string"}}}
    assert not registry.check("customer", stricter).compatible


# -- deletes ------------------------------------------------------------------------------------


def test_soft_and_hard_delete_version(registry: SchemaRegistry) -> None:
    first = registry.register("s", V1)
    registry.register("s", V2)
    with pytest.raises(NotSoftDeleted):
        registry.delete_version("s", 2, permanent=True)
    assert registry.delete_version("s", "latest") == 2
    assert registry.versions("s") == [1]
    assert registry.versions("s", include_deleted=True) == [1, 2]
    assert registry.get_version("s").version == 1
    assert registry.get_version("s", 2, include_deleted=True).deleted is True
    with pytest.raises(VersionNotFound):
        registry.get_version("s", 2)
    with pytest.raises(VersionNotFound):
        registry.delete_version("s", 2)  # already soft-deleted
    assert registry.delete_version("s", 2, permanent=True) == 2
    assert registry.versions("s", include_deleted=True) == [1]
    # the id survives; a soft-deleted schema no longer constrains compatibility
    assert registry.get_by_id(first).id == first


def test_deleted_versions_do_not_count_for_compatibility(registry: SchemaRegistry) -> None:
    registry.register("s", obj({"x": S}))
    registry.set_config("s", "NONE")
    registry.register("s", obj({"x": INT}))
    registry.set_config("s", "BACKWARD")
    assert not registry.check("s", obj({"x": S})).compatible
    registry.delete_version("s", 2)
    assert registry.check("s", obj({"x": S})).compatible


def test_reregister_after_soft_delete_makes_a_new_version_with_the_same_id(
    registry: SchemaRegistry,
) -> None:
    schema_id = registry.register("s", V1)
    registry.delete_version("s", 1)
    result = registry.register_detailed("s", V1)
    assert (result.id, result.version, result.created) == (schema_id, 2, True)


def test_delete_subject(registry: SchemaRegistry) -> None:
    schema_id = registry.register("s", V1)
    registry.register("s", V2)
    registry.register("other", V1)
    registry.set_config("s", "FULL")
    with pytest.raises(NotSoftDeleted):
        registry.delete_subject("s", permanent=True)
    assert registry.delete_subject("s") == [1, 2]
    assert registry.subjects() == ["other"]
    assert registry.subjects(include_deleted=True) == ["other", "s"]
    with pytest.raises(SubjectNotFound):
        registry.versions("s")
    with pytest.raises(SubjectNotFound):
        registry.delete_subject("s")
    assert registry.get_config("s", default_to_global=False) is CompatibilityMode.FULL
    assert registry.delete_subject("s", permanent=True) == [1, 2]
    assert registry.subjects(include_deleted=True) == ["other"]
    assert registry.get_config("s", default_to_global=False) is None
    with pytest.raises(SubjectNotFound):
        registry.delete_subject("s", permanent=True)
    # the global id is still resolvable and still shared with "other"
    assert registry.get_by_id(schema_id).id == registry.get_version("other").id
    # a hard-deleted subject starts again at version 1
    assert registry.register_detailed("s", V2).version == 1


# -- PII ---------------------------------------------------------------------------------------

PII_V2 = obj({"id": INT, "email": S})
PII_V2_TAGGED = obj({"id": INT, "email": {"type": "string", "x-pii": "email"}})


def test_pii_warn_is_the_default(registry: SchemaRegistry, caplog) -> None:
    registry.register("s", V1)
    with caplog.at_level(logging.WARNING, logger="headwater"):
        result = registry.register_detailed("s", PII_V2)
    assert result.created
    assert len(result.warnings) == 1 and "'email'" in result.warnings[0]
    assert any("email" in r.getMessage() and r.name == "headwater" for r in caplog.records)


def test_pii_reject(make_registry) -> None:
    registry = make_registry(pii_policy="reject")
    registry.register("s", V1)
    with pytest.raises(UnclassifiedPII) as err:
        registry.register("s", PII_V2)
    assert err.value.fields == ("email",)
    assert isinstance(err.value, SchemaError)
    assert registry.versions("s") == [1]
    assert registry.register_detailed("s", PII_V2_TAGGED).warnings == ()
    # the field already existed (classified): later versions do not re-trigger
    registry.set_config("s", "NONE")
    registry.register("s", obj({"id": INT, "email": S, "note": S}))
    # a first version is all "added" fields; nested names count too
    with pytest.raises(UnclassifiedPII) as err:
        registry.register("people", obj({"person": obj({"firstName": S, "dateOfBirth": S})}))
    assert err.value.fields == ("person.dateOfBirth", "person.firstName")


def test_pii_reject_avro(make_registry) -> None:
    registry = make_registry(pii_policy="reject")
    schema = {
        "type": "record",
        "name": "User",
        "fields": [
            {"name": "id", "type": "long"},
            {"name": "phone_number", "type": ["null", "string"], "default": None},
        ],
    }
    with pytest.raises(UnclassifiedPII):
        registry.register("users", schema, "AVRO")
    schema["fields"][1]["x-pii"] = "phone"
    assert registry.register("users", schema, "AVRO") > 0


def test_pii_off(make_registry) -> None:
    registry = make_registry(pii_policy="off")
    assert registry.register_detailed("s", PII_V2).warnings == ()


def test_bad_options(engine) -> None:
    with pytest.raises(ValueError):
        SchemaRegistry(engine, pii_policy="maybe")
    with pytest.raises(ValueError):
        SchemaRegistry(engine, open_content="loose")
    registry = SchemaRegistry(engine)
    with pytest.raises(ValueError):
        registry.set_config(None, "SIDEWAYS")
    with pytest.raises(ValueError):
        registry.register("", V1)
