"""Field classifications and the PII-name heuristic."""

from __future__ import annotations

import pytest

from headwater.events.registry import classifications, field_paths, looks_like_pii


@pytest.mark.parametrize(
    "name",
    [
        "email",
        "userEmail",
        "phone_number",
        "ssn",
        "social_security_number",
        "firstName",
        "last_name",
        "full_name",
        "home_address",
        "dob",
        "dateOfBirth",
        "birth_date",
        "ip_address",
        "ipAddress",
        "credit_card",
        "cardNumber",
        "iban",
        "passport_no",
    ],
)
def test_pii_names(name: str) -> None:
    assert looks_like_pii(name)


@pytest.mark.parametrize(
    "name", ["id", "name", "zip_tip", "description", "shipping", "company_name", "amount"]
)
def test_non_pii_names(name: str) -> None:
    assert not looks_like_pii(name)


def test_json_classifications_follow_refs_arrays_and_combinators() -> None:
    schema = {
        "type": "object",
        "properties": {
            "email": {"type": "string", "x-pii": "email"},
            "home": {"$ref": "#/definitions/Address"},
            "contacts": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"phone": {"type": "string", "x-pii": "phone"}},
                },
            },
        },
        "anyOf": [{"properties": {"ssn": {"type": "string", "x-pii": "national_id"}}}],
        "definitions": {
            "Address": {
                "type": "object",
                "properties": {
                    "street": {"type": "string", "x-pii": "address"},
                    "parent": {"$ref": "#/definitions/Address"},
                },
            }
        },
    }
    assert classifications(schema, "JSON") == {
        "email": "email",
        "home.street": "address",
        "contacts[].phone": "phone",
        "ssn": "national_id",
    }
    assert field_paths(schema, "JSON")["home.parent"] is None


def test_avro_classifications() -> None:
    schema = {
        "type": "record",
        "name": "User",
        "namespace": "hw",
        "fields": [
            {"name": "email", "type": "string", "x-pii": "email"},
            {
                "name": "addresses",
                "type": {
                    "type": "array",
                    "items": {
                        "type": "record",
                        "name": "Address",
                        "fields": [{"name": "line1", "type": "string", "x-pii": "address"}],
                    },
                },
            },
            {"name": "billing", "type": ["null", "hw.Address"], "default": None},
            {"name": "friends", "type": {"type": "array", "items": "User"}},
        ],
    }
    assert classifications(schema, "AVRO") == {
        "email": "email",
        "addresses[].line1": "address",
        "billing.line1": "address",
    }
    assert classifications('{"type": "string"}', "AVRO") == {}
